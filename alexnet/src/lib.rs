//! # AlexNet
//!
//! A. Krizhevsky, I. Sutskever, G. E. Hinton, *ImageNet classification with deep convolutional
//! neural networks*, NIPS 2012; and the "one weird trick" variant that torchvision implements
//! (A. Krizhevsky, *One weird trick for parallelizing convolutional neural networks*,
//! arXiv:1404.5997, 2014).
//!
//! Two layouts, both with torchvision's key names (`features.N`, `classifier.N`, `N` the index
//! in torchvision's `nn.Sequential`, counting the parameter-free layers):
//!
//! ## [`AlexNetConfig::alexnet`]: torchvision's `alexnet` (the default)
//!
//! Input `[N, 3, H, W]` with `H, W >= 63` (224x224 usually); **61,100,840 parameters** with
//! 1000 classes; 714,188,480 multiply-accumulates at 224x224 (torchvision's published
//! 0.71 GFLOPS).
//!
//! | key            | layer                        | output at 224x224 | parameters |
//! |----------------|------------------------------|-------------------|-----------:|
//! | `features.0`   | conv 64 @ 11x11, stride 4, pad 2 | 64 x 55 x 55  |     23,296 |
//! | `features.1`   | ReLU                         |                   |          - |
//! | `features.2`   | max pool 3x3, stride 2       | 64 x 27 x 27      |          - |
//! | `features.3`   | conv 192 @ 5x5, pad 2        | 192 x 27 x 27     |    307,392 |
//! | `features.4`   | ReLU                         |                   |          - |
//! | `features.5`   | max pool 3x3, stride 2       | 192 x 13 x 13     |          - |
//! | `features.6`   | conv 384 @ 3x3, pad 1        | 384 x 13 x 13     |    663,936 |
//! | `features.7`   | ReLU                         |                   |          - |
//! | `features.8`   | conv 256 @ 3x3, pad 1        | 256 x 13 x 13     |    884,992 |
//! | `features.9`   | ReLU                         |                   |          - |
//! | `features.10`  | conv 256 @ 3x3, pad 1        | 256 x 13 x 13     |    590,080 |
//! | `features.11`  | ReLU                         |                   |          - |
//! | `features.12`  | max pool 3x3, stride 2       | 256 x 6 x 6       |          - |
//! | `avgpool`      | adaptive average pool to 6x6 | 256 x 6 x 6       |          - |
//! | `classifier.0` | dropout                      | 9216              |          - |
//! | `classifier.1` | fc 9216 -> 4096              | 4096              | 37,752,832 |
//! | `classifier.2` | ReLU                         |                   |          - |
//! | `classifier.3` | dropout                      |                   |          - |
//! | `classifier.4` | fc 4096 -> 4096              | 4096              | 16,781,312 |
//! | `classifier.5` | ReLU                         |                   |          - |
//! | `classifier.6` | fc 4096 -> classes           | 1000              |  4,097,000 |
//!
//! ## [`AlexNetConfig::alexnet_2012`]: the 2012 paper's layout
//!
//! Input `[N, 3, H, W]` with `H, W >= 63`; **62,378,344 parameters** with 1000 classes;
//! 1,135,256,096 multiply-accumulates at 224x224.
//!
//! | key            | layer                        | output at 224x224 | parameters |
//! |----------------|------------------------------|-------------------|-----------:|
//! | `features.0`   | conv 96 @ 11x11, stride 4, pad 2 | 96 x 55 x 55  |     34,944 |
//! | `features.1`   | ReLU                         |                   |          - |
//! | `features.2`   | LRN (5, 1e-4, 0.75, 2)       |                   |          - |
//! | `features.3`   | max pool 3x3, stride 2       | 96 x 27 x 27      |          - |
//! | `features.4`   | conv 256 @ 5x5, pad 2        | 256 x 27 x 27     |    614,656 |
//! | `features.5`   | ReLU                         |                   |          - |
//! | `features.6`   | LRN (5, 1e-4, 0.75, 2)       |                   |          - |
//! | `features.7`   | max pool 3x3, stride 2       | 256 x 13 x 13     |          - |
//! | `features.8`   | conv 384 @ 3x3, pad 1        | 384 x 13 x 13     |    885,120 |
//! | `features.9`   | ReLU                         |                   |          - |
//! | `features.10`  | conv 384 @ 3x3, pad 1        | 384 x 13 x 13     |  1,327,488 |
//! | `features.11`  | ReLU                         |                   |          - |
//! | `features.12`  | conv 256 @ 3x3, pad 1        | 256 x 13 x 13     |    884,992 |
//! | `features.13`  | ReLU                         |                   |          - |
//! | `features.14`  | max pool 3x3, stride 2       | 256 x 6 x 6       |          - |
//! | `avgpool`      | adaptive average pool to 6x6 | 256 x 6 x 6       |          - |
//! | `classifier.*` | as above                     | 1000              | 58,631,144 |
//!
//! Differences from torchvision's layout: 96/256/384/384/256 channels instead of
//! 64/192/384/256/256, and local response normalisation after the ReLUs of conv1 and conv2,
//! before their pooling. The adaptive average pool is kept: it is the identity on the paper's
//! 6x6 maps (any input from 223 to 254 pixels), and lets smaller inputs through (torchvision's
//! behaviour). Other choices, as in the common re-implementations:
//!
//! * conv1 has padding 2, so that a 224x224 input gives the paper's 55x55 maps (the paper's
//!   arithmetic only works for 227x227 without padding);
//! * the convolutions are dense: the paper splits conv2, conv4 and conv5 over two GPUs
//!   (grouped convolutions, about 60M parameters in all), which is not reproduced;
//! * LRN is PyTorch's `nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2)`, which divides
//!   `alpha` by the window size like Caffe's `bvlc_alexnet`; the paper's formula does not
//!   (its `alpha = 1e-4` is `alpha = 5e-4` in PyTorch's convention);
//! * fresh weights use PyTorch's default initialisation (as torchvision's AlexNet), not the
//!   paper's `N(0, 0.01)` weights with biases 1 in conv2, conv4, conv5 and the fully
//!   connected layers, 0 elsewhere.
//!
//! ## Features and head
//!
//! Both layouts share the classifier, which ZFNet keeps too ([`PlainParts::alexnet`]).
//! [`Backbone::forward_features`](backbone::Backbone::forward_features) returns the
//! convolutional part's output, `[N, 256, h, w]` before the adaptive pooling;
//! [`Backbone::forward_pre_logits`](backbone::Backbone::forward_pre_logits) the 4096 outputs of
//! `classifier.5` (after the ReLU; dropout in training); the head is `classifier.6`, the only
//! layer whose shape depends on the number of classes.
//!
//! The smallest input is 63x63 for both layouts: conv1 needs 15x15 maps to survive the three
//! 3x3 stride-2 poolings (15 -> 7 -> 3 -> 1), i.e. `(H + 4 - 11) / 4 + 1 >= 15`.

pub mod catalogue;
pub use catalogue::VARIANTS;

/// What a program using this crate alone needs (with `candle-core` for tensors): the model
/// contract, the catalogue types, a fresh seeded variable map, the weights loader, the var
/// builder and the error type, the same in every architecture crate (`backbone::prelude`).
/// `use alexnet::prelude::*;`
pub use backbone::prelude;

/// The shared `backbone` crate, for everything beyond the prelude.
pub use backbone;

use backbone::geometry::{conv, Step};
use backbone::layers::PoolConfig;
use backbone::plain::{PlainNet, PlainParts};
use backbone::Result;
use candle_nn::VarBuilder;

/// Which AlexNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// torchvision's `alexnet`: 64/192/384/256/256 channels, no LRN.
    Torchvision,
    /// The 2012 paper's: 96/256/384/384/256 channels, LRN after conv1 and conv2.
    Paper2012,
}

/// An AlexNet variant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlexNetConfig {
    /// Input channels (3 for RGB).
    pub in_channels: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// Drop probability of the two dropout layers of the classifier (0.5; 0 switches them
    /// off). Must lie in `[0, 1)`.
    pub dropout: f32,
    /// Which layout of the convolutional part.
    pub layout: Layout,
}

impl AlexNetConfig {
    /// torchvision's AlexNet (the default): 3 channels, 1000 classes, dropout 0.5.
    pub fn alexnet() -> Self {
        Self {
            in_channels: 3,
            num_classes: 1000,
            dropout: 0.5,
            layout: Layout::Torchvision,
        }
    }

    /// The 2012 paper's layout: 3 channels, 1000 classes, dropout 0.5.
    pub fn alexnet_2012() -> Self {
        Self {
            layout: Layout::Paper2012,
            ..Self::alexnet()
        }
    }

    /// Sets the number of classes.
    pub fn with_classes(mut self, num_classes: usize) -> Self {
        self.num_classes = num_classes;
        self
    }

    /// Sets the number of input channels.
    pub fn with_in_channels(mut self, in_channels: usize) -> Self {
        self.in_channels = in_channels;
        self
    }

    /// Sets the dropout probability of the classifier.
    pub fn with_dropout(mut self, dropout: f32) -> Self {
        self.dropout = dropout;
        self
    }
}

impl Default for AlexNetConfig {
    fn default() -> Self {
        Self::alexnet()
    }
}

/// torchvision's `features`, index by index.
const TORCHVISION: [Step; 13] = [
    conv(64, 11, 4, 2),
    Step::Relu,
    Step::MaxPool,
    conv(192, 5, 1, 2),
    Step::Relu,
    Step::MaxPool,
    conv(384, 3, 1, 1),
    Step::Relu,
    conv(256, 3, 1, 1),
    Step::Relu,
    conv(256, 3, 1, 1),
    Step::Relu,
    Step::MaxPool,
];

/// The 2012 paper's `features`, index by index.
const PAPER_2012: [Step; 15] = [
    conv(96, 11, 4, 2),
    Step::Relu,
    Step::Lrn,
    Step::MaxPool,
    conv(256, 5, 1, 2),
    Step::Relu,
    Step::Lrn,
    Step::MaxPool,
    conv(384, 3, 1, 1),
    Step::Relu,
    conv(384, 3, 1, 1),
    Step::Relu,
    conv(256, 3, 1, 1),
    Step::Relu,
    Step::MaxPool,
];

impl Layout {
    fn steps(self) -> &'static [Step] {
        match self {
            Layout::Torchvision => &TORCHVISION,
            Layout::Paper2012 => &PAPER_2012,
        }
    }

    /// The variant's name.
    fn name(self) -> &'static str {
        match self {
            Layout::Torchvision => "alexnet",
            Layout::Paper2012 => "alexnet_2012",
        }
    }
}

/// The pooling of `features`: 3x3 windows, stride 2, floor mode.
fn max_pool() -> PoolConfig {
    PoolConfig::new(3).stride(2)
}

/// AlexNet; see the [crate documentation](crate).
pub struct AlexNet {
    config: AlexNetConfig,
    /// `features`, its stages (the poolings' outputs), the classifier.
    parts: PlainParts,
}

impl AlexNet {
    /// Builds the model; variables `features.N.{weight,bias}` for the convolutions and
    /// `classifier.{1,4,6}.{weight,bias}` (see the tables of the crate documentation).
    ///
    /// Fails with [`Error::Config`](backbone::Error::Config) on zero channels or classes or a
    /// dropout probability outside `[0, 1)`, and with the builder's error on a missing or
    /// mis-shaped variable.
    pub fn new(config: &AlexNetConfig, vb: VarBuilder) -> Result<Self> {
        let parts = PlainParts::alexnet(
            config.layout.name(),
            config.layout.steps(),
            max_pool(),
            config.in_channels,
            config.num_classes,
            config.dropout,
            vb,
        )?;
        Ok(Self {
            config: *config,
            parts,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &AlexNetConfig {
        &self.config
    }
}

impl PlainNet for AlexNet {
    fn plain_parts(&self) -> &PlainParts {
        &self.parts
    }
}
