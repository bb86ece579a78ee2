//! # ZFNet
//!
//! M. D. Zeiler, R. Fergus, *Visualizing and understanding convolutional networks*, ECCV 2014
//! (arXiv:1311.2901, 2013): AlexNet with a smaller, denser first layer (7x7 stride 2 instead
//! of 11x11 stride 4) and dense connections in layers 3, 4 and 5.
//!
//! Input `[N, 3, H, W]` with `H, W >= 47` (224x224 in the paper); **62,357,608 parameters**
//! with 1000 classes; 1,168,032,896 multiply-accumulates at 224x224. No reference weights
//! exist; the key names follow torchvision's AlexNet (`features.N`, `classifier.N`, `N` the
//! index in the `nn.Sequential`, counting the parameter-free layers).
//!
//! | key            | layer                                  | output at 224x224 | parameters |
//! |----------------|----------------------------------------|-------------------|-----------:|
//! | `features.0`   | conv 96 @ 7x7, stride 2, pad 1         | 96 x 110 x 110    |     14,208 |
//! | `features.1`   | ReLU                                   |                   |          - |
//! | `features.2`   | max pool 3x3, stride 2, ceil mode      | 96 x 55 x 55      |          - |
//! | `features.3`   | LRN (5, 1e-4, 0.75, 2)                 |                   |          - |
//! | `features.4`   | conv 256 @ 5x5, stride 2               | 256 x 26 x 26     |    614,656 |
//! | `features.5`   | ReLU                                   |                   |          - |
//! | `features.6`   | max pool 3x3, stride 2, ceil mode      | 256 x 13 x 13     |          - |
//! | `features.7`   | LRN (5, 1e-4, 0.75, 2)                 |                   |          - |
//! | `features.8`   | conv 384 @ 3x3, pad 1                  | 384 x 13 x 13     |    885,120 |
//! | `features.9`   | ReLU                                   |                   |          - |
//! | `features.10`  | conv 384 @ 3x3, pad 1                  | 384 x 13 x 13     |  1,327,488 |
//! | `features.11`  | ReLU                                   |                   |          - |
//! | `features.12`  | conv 256 @ 3x3, pad 1                  | 256 x 13 x 13     |    884,992 |
//! | `features.13`  | ReLU                                   |                   |          - |
//! | `features.14`  | max pool 3x3, stride 2, ceil mode      | 256 x 6 x 6       |          - |
//! | `avgpool`      | adaptive average pool to 6x6           | 256 x 6 x 6       |          - |
//! | `classifier.0` | dropout                                | 9216              |          - |
//! | `classifier.1` | fc 9216 -> 4096                        | 4096              | 37,752,832 |
//! | `classifier.2` | ReLU                                   |                   |          - |
//! | `classifier.3` | dropout                                |                   |          - |
//! | `classifier.4` | fc 4096 -> 4096                        | 4096              | 16,781,312 |
//! | `classifier.5` | ReLU                                   |                   |          - |
//! | `classifier.6` | fc 4096 -> classes                     | 1000              |  4,097,000 |
//!
//! ## Choices the paper leaves open
//!
//! * **Padding and rounding**, chosen so that the paper's map sizes come out at 224x224
//!   (110, 55, 26, 13, 6): conv1 is padded by 1 (`(224 + 2 - 7) / 2 + 1 = 110`), conv2 is not
//!   padded (`(55 - 5) / 2 + 1 = 26`), and the three poolings round up (`ceil_mode`, as in
//!   Caffe): floor mode would give 54 after pool1 (and 12 after pool2).
//! * **Order**: the paper max-pools, then normalises ("max pooled ... and contrast normalized
//!   across feature maps"), so LRN comes after the pooling here, unlike AlexNet's.
//! * **Normalisation**: the paper does not give its parameters; AlexNet's are used, as
//!   PyTorch's `nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2)`.
//! * **Adaptive average pooling** to 6x6 before the classifier (torchvision's AlexNet does the
//!   same): the identity at 224x224, it lets inputs from 47x47 up through the fixed-size
//!   classifier (smaller maps are upsampled by averaging over overlapping windows).
//! * Fresh weights use PyTorch's default initialisation (the paper used `N(0, 0.01)` weights
//!   and zero biases, with a filter renormalisation this crate does not do).
//!
//! ## Features and head
//!
//! The classifier is AlexNet's ([`PlainParts::alexnet`]).
//! [`Backbone::forward_features`](backbone::Backbone::forward_features) returns the
//! convolutional part's output, `[N, 256, h, w]` before the adaptive pooling (the maps the
//! paper visualises); [`Backbone::forward_pre_logits`](backbone::Backbone::forward_pre_logits)
//! the 4096 outputs of `classifier.5` (after the ReLU; dropout in training); the head is
//! `classifier.6`, the only layer whose shape depends on the number of classes.
//!
//! The smallest input is 47x47: pool3 needs a 2x2 input (ceil mode), hence 4x4 entering pool2,
//! 11x11 entering conv2, 22x22 entering pool1 and 47x47 entering conv1
//! (`(47 + 2 - 7) / 2 + 1 = 22`).

pub mod catalogue;
pub use catalogue::VARIANTS;

/// What a program using this crate alone needs (with `candle-core` for tensors): the model
/// contract, the catalogue types, a fresh seeded variable map, the weights loader, the var
/// builder and the error type, the same in every architecture crate (`backbone::prelude`).
/// `use zfnet::prelude::*;`
pub use backbone::prelude;

/// The shared `backbone` crate, for everything beyond the prelude.
pub use backbone;

use backbone::geometry::{conv, Step};
use backbone::layers::PoolConfig;
use backbone::plain::{PlainNet, PlainParts};
use backbone::Result;
use candle_nn::VarBuilder;

/// A ZFNet configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZfNetConfig {
    /// Input channels (3 for RGB).
    pub in_channels: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// Drop probability of the two dropout layers of the classifier (0.5; 0 switches them
    /// off). Must lie in `[0, 1)`.
    pub dropout: f32,
}

impl ZfNetConfig {
    /// The paper's ZFNet: 3 channels, 1000 classes, dropout 0.5.
    pub fn zfnet() -> Self {
        Self {
            in_channels: 3,
            num_classes: 1000,
            dropout: 0.5,
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

impl Default for ZfNetConfig {
    fn default() -> Self {
        Self::zfnet()
    }
}

/// `features`, index by index.
const FEATURE_STEPS: [Step; 15] = [
    conv(96, 7, 2, 1),
    Step::Relu,
    Step::MaxPool,
    Step::Lrn,
    conv(256, 5, 2, 0),
    Step::Relu,
    Step::MaxPool,
    Step::Lrn,
    conv(384, 3, 1, 1),
    Step::Relu,
    conv(384, 3, 1, 1),
    Step::Relu,
    conv(256, 3, 1, 1),
    Step::Relu,
    Step::MaxPool,
];

/// The pooling of `features`: 3x3 windows, stride 2, rounding up.
fn max_pool() -> PoolConfig {
    PoolConfig::new(3).stride(2).ceil_mode(true)
}

/// ZFNet; see the [crate documentation](crate).
pub struct ZfNet {
    config: ZfNetConfig,
    /// `features`, its stages (the poolings' outputs), AlexNet's classifier.
    parts: PlainParts,
}

impl ZfNet {
    /// Builds the model; variables `features.{0,4,8,10,12}.{weight,bias}` and
    /// `classifier.{1,4,6}.{weight,bias}` (see the table of the crate documentation).
    ///
    /// Fails with [`Error::Config`](backbone::Error::Config) on zero channels or classes or a
    /// dropout probability outside `[0, 1)`, and with the builder's error on a missing or
    /// mis-shaped variable.
    pub fn new(config: &ZfNetConfig, vb: VarBuilder) -> Result<Self> {
        let parts = PlainParts::alexnet(
            "zfnet",
            &FEATURE_STEPS,
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
    pub fn config(&self) -> &ZfNetConfig {
        &self.config
    }
}

impl PlainNet for ZfNet {
    fn plain_parts(&self) -> &PlainParts {
        &self.parts
    }
}
