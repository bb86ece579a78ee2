//! # Network in Network
//!
//! M. Lin, Q. Chen, S. Yan, *Network in network*, ICLR 2014 (arXiv:1312.4400, 2013).
//!
//! Stacks of "mlpconv" blocks, each a convolution followed by two 1x1 convolutions (a small
//! per-pixel MLP), every one followed by a ReLU; the last block has one 1x1 output channel per
//! class, and global average pooling turns those maps into the logits: no fully connected
//! layer. Two configurations, after the authors' Caffe models (the model zoo's NIN-ImageNet and
//! the CIFAR-10 model of the paper). Key names follow torchvision's layout (as its SqueezeNet,
//! which borrows NiN's head): `features.N` for the mlpconv blocks, `N` the index in the
//! `nn.Sequential` counting the parameter-free layers, and `classifier.0` for the last 1x1
//! convolution.
//!
//! ## [`NinConfig::nin`]: ImageNet
//!
//! Input `[N, 3, H, W]` with `H, W >= 39` (224x224 usually); **7,595,176 parameters** with
//! 1000 classes; 1,100,188,800 multiply-accumulates at 224x224.
//!
//! | key            | layer                                   | output at 224x224 | parameters |
//! |----------------|-----------------------------------------|-------------------|-----------:|
//! | `features.0`   | conv 96 @ 11x11, stride 4 (+ ReLU `.1`) | 96 x 54 x 54      |     34,944 |
//! | `features.2`   | conv 96 @ 1x1 (+ ReLU `.3`)             | 96 x 54 x 54      |      9,312 |
//! | `features.4`   | conv 96 @ 1x1 (+ ReLU `.5`)             | 96 x 54 x 54      |      9,312 |
//! | `features.6`   | max pool 3x3, stride 2, ceil mode       | 96 x 27 x 27      |          - |
//! | `features.7`   | conv 256 @ 5x5, pad 2 (+ ReLU `.8`)     | 256 x 27 x 27     |    614,656 |
//! | `features.9`   | conv 256 @ 1x1 (+ ReLU `.10`)           | 256 x 27 x 27     |     65,792 |
//! | `features.11`  | conv 256 @ 1x1 (+ ReLU `.12`)           | 256 x 27 x 27     |     65,792 |
//! | `features.13`  | max pool 3x3, stride 2, ceil mode       | 256 x 13 x 13     |          - |
//! | `features.14`  | conv 384 @ 3x3, pad 1 (+ ReLU `.15`)    | 384 x 13 x 13     |    885,120 |
//! | `features.16`  | conv 384 @ 1x1 (+ ReLU `.17`)           | 384 x 13 x 13     |    147,840 |
//! | `features.18`  | conv 384 @ 1x1 (+ ReLU `.19`)           | 384 x 13 x 13     |    147,840 |
//! | `features.20`  | max pool 3x3, stride 2, ceil mode       | 384 x 6 x 6       |          - |
//! | `features.21`  | dropout                                 |                   |          - |
//! | `features.22`  | conv 1024 @ 3x3, pad 1 (+ ReLU `.23`)   | 1024 x 6 x 6      |  3,539,968 |
//! | `features.24`  | conv 1024 @ 1x1 (+ ReLU `.25`)          | 1024 x 6 x 6      |  1,049,600 |
//! | `classifier.0` | conv classes @ 1x1 (+ ReLU `.1`)        | 1000 x 6 x 6      |  1,025,000 |
//! | `classifier.2` | global average pool                     | 1000              |          - |
//!
//! ## [`NinConfig::nin_cifar`]: CIFAR-10
//!
//! Input `[N, 3, H, W]` with `H, W >= 4` (32x32 usually); **966,986 parameters** with 10
//! classes; 222,486,528 multiply-accumulates at 32x32.
//!
//! | key            | layer                                   | output at 32x32   | parameters |
//! |----------------|-----------------------------------------|-------------------|-----------:|
//! | `features.0`   | conv 192 @ 5x5, pad 2 (+ ReLU `.1`)     | 192 x 32 x 32     |     14,592 |
//! | `features.2`   | conv 160 @ 1x1 (+ ReLU `.3`)            | 160 x 32 x 32     |     30,880 |
//! | `features.4`   | conv 96 @ 1x1 (+ ReLU `.5`)             | 96 x 32 x 32      |     15,456 |
//! | `features.6`   | max pool 3x3, stride 2, ceil mode       | 96 x 16 x 16      |          - |
//! | `features.7`   | dropout                                 |                   |          - |
//! | `features.8`   | conv 192 @ 5x5, pad 2 (+ ReLU `.9`)     | 192 x 16 x 16     |    460,992 |
//! | `features.10`  | conv 192 @ 1x1 (+ ReLU `.11`)           | 192 x 16 x 16     |     37,056 |
//! | `features.12`  | conv 192 @ 1x1 (+ ReLU `.13`)           | 192 x 16 x 16     |     37,056 |
//! | `features.14`  | average pool 3x3, stride 2, ceil mode   | 192 x 8 x 8       |          - |
//! | `features.15`  | dropout                                 |                   |          - |
//! | `features.16`  | conv 192 @ 3x3, pad 1 (+ ReLU `.17`)    | 192 x 8 x 8       |    331,968 |
//! | `features.18`  | conv 192 @ 1x1 (+ ReLU `.19`)           | 192 x 8 x 8       |     37,056 |
//! | `classifier.0` | conv classes @ 1x1 (+ ReLU `.1`)        | 10 x 8 x 8        |      1,930 |
//! | `classifier.2` | global average pool                     | 10                |          - |
//!
//! ## Choices
//!
//! * **Rounding**: the poolings round up (`ceil_mode`), as Caffe's do. This gives Caffe's map
//!   sizes: 54 -> 27 -> 13 -> 6 on ImageNet (where Caffe's last pooling is a 6x6 average) and
//!   32 -> 16 -> 8 on CIFAR (an 8x8 average); floor mode would give 26, 12, 5 and 15, 7.
//!   The average pooling of the CIFAR model counts the zero padding PyTorch's way
//!   (`count_include_pad`; there is no padding here, so only the clipped last window matters,
//!   and it is divided by its clipped size, like Caffe).
//! * **The last ReLU**: both Caffe models apply a ReLU to the class maps before the global
//!   average, so the logits are never negative; kept for fidelity.
//! * **Global pooling** is adaptive (any map size gives one value per class), so any input
//!   from the minimum size up works.
//! * Fresh weights use PyTorch's default initialisation (Caffe's models used Gaussian
//!   initialisation with hand-picked standard deviations).
//!
//! ## Features and head
//!
//! The head is the last 1x1 convolution (`classifier.0`, the only layer whose shape depends on
//! the number of classes), its ReLU and the global average pooling.
//! [`Backbone::forward_features`] returns the tensor entering it: the output of the last
//! mlpconv block's second 1x1 convolution after its ReLU, `[N, 1024, h, w]` (ImageNet) or
//! `[N, 192, h, w]` (CIFAR), `h x w` being 6x6 at 224x224 and 8x8 at 32x32.
//!
//! The smallest inputs: ImageNet 39x39 (conv1 gives 8x8, then 4, 2 and 1 after the ceil-mode
//! poolings); CIFAR 4x4 (2x2 after the first pooling, 1x1 after the second).

pub mod catalogue;
pub use catalogue::VARIANTS;

/// What a program using this crate alone needs (with `candle-core` for tensors): the model
/// contract, the catalogue types, a fresh seeded variable map, the weights loader, the var
/// builder and the error type, the same in every architecture crate (`backbone::prelude`).
/// `use nin::prelude::*;`
pub use backbone::prelude;

/// The shared `backbone` crate, for everything beyond the prelude.
pub use backbone;

use backbone::geometry::{build_stack, conv, Stages, Step};
use backbone::layers::{
    AdaptiveAvgPool2d, Conv2d, Conv2dConfig, Dropout, Flatten, Layer, PoolConfig, Sequential,
};
use backbone::{check_input, Backbone, FeatureInfo, InputSpec, InputType, Result};
use candle_core::Tensor;
use candle_nn::VarBuilder;

/// Which Network in Network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// The Caffe model zoo's NIN-ImageNet: four mlpconv blocks, 96/256/384/1024 channels.
    ImageNet,
    /// The paper's CIFAR-10 model: three mlpconv blocks of 192 channels (160 and 96 in the
    /// first block's 1x1 layers).
    Cifar,
}

/// A Network in Network variant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NinConfig {
    /// Input channels (3 for RGB).
    pub in_channels: usize,
    /// Number of classes (the channels of the last 1x1 convolution).
    pub num_classes: usize,
    /// Drop probability of the dropout layers between mlpconv blocks (0.5; 0 switches them
    /// off). Must lie in `[0, 1)`.
    pub dropout: f32,
    /// Which layout.
    pub layout: Layout,
}

impl NinConfig {
    /// The ImageNet model: 3 channels, 1000 classes, dropout 0.5.
    pub fn nin() -> Self {
        Self {
            in_channels: 3,
            num_classes: 1000,
            dropout: 0.5,
            layout: Layout::ImageNet,
        }
    }

    /// The CIFAR-10 model: 3 channels, 10 classes, dropout 0.5.
    pub fn nin_cifar() -> Self {
        Self {
            in_channels: 3,
            num_classes: 10,
            dropout: 0.5,
            layout: Layout::Cifar,
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

    /// Sets the dropout probability between blocks.
    pub fn with_dropout(mut self, dropout: f32) -> Self {
        self.dropout = dropout;
        self
    }
}

impl Default for NinConfig {
    fn default() -> Self {
        Self::nin()
    }
}

/// A 1x1 convolution.
const fn cccp(out: usize) -> Step {
    conv(out, 1, 1, 0)
}

/// The ImageNet model's `features`, index by index.
const IMAGENET: [Step; 26] = [
    conv(96, 11, 4, 0),
    Step::Relu,
    cccp(96),
    Step::Relu,
    cccp(96),
    Step::Relu,
    Step::MaxPool,
    conv(256, 5, 1, 2),
    Step::Relu,
    cccp(256),
    Step::Relu,
    cccp(256),
    Step::Relu,
    Step::MaxPool,
    conv(384, 3, 1, 1),
    Step::Relu,
    cccp(384),
    Step::Relu,
    cccp(384),
    Step::Relu,
    Step::MaxPool,
    Step::Dropout,
    conv(1024, 3, 1, 1),
    Step::Relu,
    cccp(1024),
    Step::Relu,
];

/// The CIFAR model's `features`, index by index.
const CIFAR: [Step; 20] = [
    conv(192, 5, 1, 2),
    Step::Relu,
    cccp(160),
    Step::Relu,
    cccp(96),
    Step::Relu,
    Step::MaxPool,
    Step::Dropout,
    conv(192, 5, 1, 2),
    Step::Relu,
    cccp(192),
    Step::Relu,
    cccp(192),
    Step::Relu,
    Step::AvgPool,
    Step::Dropout,
    conv(192, 3, 1, 1),
    Step::Relu,
    cccp(192),
    Step::Relu,
];

impl Layout {
    fn steps(self) -> &'static [Step] {
        match self {
            Layout::ImageNet => &IMAGENET,
            Layout::Cifar => &CIFAR,
        }
    }
}

/// The poolings between blocks: 3x3 windows, stride 2, rounding up.
fn pool() -> PoolConfig {
    PoolConfig::new(3).stride(2).ceil_mode(true)
}

/// Network in Network; see the [crate documentation](crate).
pub struct Nin {
    config: NinConfig,
    /// The dtype and device of the weights, which inputs must have.
    input_type: InputType,
    features: Sequential,
    /// The feature stages: the poolings' outputs and the last block's (position in
    /// `features`, description).
    stages: Stages,
    num_features: usize,
    classifier: Conv2d,
    global_pool: AdaptiveAvgPool2d,
    min_size: usize,
}

impl Nin {
    /// Builds the model; variables `features.N.{weight,bias}` for the convolutions of the
    /// mlpconv blocks and `classifier.0.{weight,bias}` for the last 1x1 convolution (see the
    /// tables of the crate documentation).
    ///
    /// Fails with [`Error::Config`](backbone::Error::Config) on zero channels or classes or a
    /// dropout probability outside `[0, 1)`, and with the builder's error on a missing or
    /// mis-shaped variable.
    pub fn new(config: &NinConfig, vb: VarBuilder) -> Result<Self> {
        let input_type = InputType::of(&vb);
        let dropout = Dropout::new(config.dropout)?;
        let stack = build_stack(
            "NiN",
            config.layout.steps(),
            config.in_channels,
            pool(),
            dropout,
            vb.pp("features"),
        )?;
        let (stages, min_size) = (stack.stages, stack.min_size);
        let (features, channels) = (stack.layers, stack.out_channels);
        let classifier = Conv2d::new(
            Conv2dConfig::new(channels, config.num_classes, 1),
            vb.pp("classifier.0"),
        )?;
        Ok(Self {
            input_type,
            config: *config,
            features,
            stages,
            num_features: channels,
            classifier,
            global_pool: AdaptiveAvgPool2d::new((1, 1))?.named("classifier.2"),
            min_size,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &NinConfig {
        &self.config
    }

    /// The class maps before the global average: `[N, num_classes, h, w]`, after the last
    /// ReLU (where each class responds in the image).
    pub fn class_maps(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let features = self.forward_features(xs, train)?;
        self.head_maps(&features, train)
    }

    fn head_maps(&self, features: &Tensor, train: bool) -> Result<Tensor> {
        self.classifier.forward_relu(features, train)
    }
}

impl Backbone for Nin {
    fn name(&self) -> &str {
        match self.config.layout {
            Layout::ImageNet => "nin",
            Layout::Cifar => "nin_cifar",
        }
    }

    fn input_spec(&self) -> InputSpec {
        let default = match self.config.layout {
            Layout::ImageNet => 224,
            Layout::Cifar => 32,
        };
        InputSpec {
            channels: self.config.in_channels,
            min_size: (self.min_size, self.min_size),
            fixed_size: None,
            default_size: (default, default),
        }
    }

    /// `[N, C, H, W]` -> the last mlpconv block's output before the class convolution,
    /// `[N, num_features, h, w]`.
    fn forward_features(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        check_input(self.name(), &self.input_spec(), &self.input_type, xs)?;
        self.features.forward_t(xs, train)
    }

    /// NiN's classifier is a convolution over the map: the pre-logits are the map itself.
    fn forward_pre_logits(&self, features: &Tensor, _train: bool) -> Result<Tensor> {
        Ok(features.clone())
    }

    /// `[N, num_features, h, w]` -> logits `[N, num_classes]`: the class convolution, its
    /// ReLU and the global average pooling.
    fn forward_classifier(&self, pre_logits: &Tensor, train: bool) -> Result<Tensor> {
        let maps = self.head_maps(pre_logits, train)?;
        let pooled = self.global_pool.forward_t(&maps, train)?;
        Flatten::new().forward_t(&pooled, train)
    }

    /// Each pooling's output (`features.N`) and the last mlpconv block's.
    fn feature_info(&self) -> Vec<FeatureInfo> {
        self.stages.info()
    }

    fn forward_stages(&self, xs: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        check_input(self.name(), &self.input_spec(), &self.input_type, xs)?;
        self.stages.forward(&self.features, xs, train)
    }

    fn num_features(&self) -> usize {
        self.num_features
    }

    fn num_classes(&self) -> usize {
        self.config.num_classes
    }

    fn head_prefix(&self) -> &str {
        "classifier.0"
    }
}
