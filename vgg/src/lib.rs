//! # VGG
//!
//! K. Simonyan, A. Zisserman, *Very Deep Convolutional Networks for Large-Scale Image
//! Recognition*, ICLR 2015 (arXiv:1409.1556).
//!
//! Stacks of 3x3 convolutions (stride 1, padding 1, ReLU) in five stages, each closed by a
//! 2x2 max pool, then three fully connected layers. The paper's configurations A, B, D and E
//! are VGG-11, -13, -16 and -19 (the number of weight layers); each exists without and with
//! batch norm after every convolution (`vgg16` / `vgg16_bn`, as in torchvision, where batch
//! norm was added after the paper).
//!
//! | stage | A (VGG-11)    | B (VGG-13)    | D (VGG-16)    | E (VGG-19)    | output at 224x224 |
//! |-------|---------------|---------------|---------------|---------------|-------------------|
//! | 1     | conv3-64      | conv3-64 x2   | conv3-64 x2   | conv3-64 x2   | 64 x 112 x 112    |
//! | 2     | conv3-128     | conv3-128 x2  | conv3-128 x2  | conv3-128 x2  | 128 x 56 x 56     |
//! | 3     | conv3-256 x2  | conv3-256 x2  | conv3-256 x3  | conv3-256 x4  | 256 x 28 x 28     |
//! | 4     | conv3-512 x2  | conv3-512 x2  | conv3-512 x3  | conv3-512 x4  | 512 x 14 x 14     |
//! | 5     | conv3-512 x2  | conv3-512 x2  | conv3-512 x3  | conv3-512 x4  | 512 x 7 x 7       |
//!
//! Every stage ends with a 2x2 max pool, stride 2. The head is an adaptive average pool to 7x7,
//! FC-4096, FC-4096 and FC-classes, with ReLU and dropout 0.5 after the first two.
//!
//! Parameters with three input channels and 1000 classes, equal to torchvision's;
//! multiply-accumulates of one 224x224 image (convolutions and linear layers, as
//! [`backbone::summarize`] counts them; batch norm counts none, so the `_bn` variants show the
//! same figures where torchvision's tables, which count it, give 7.64, 11.34, 15.5 and 19.67):
//!
//! | variant    | parameters  | GMACs at 224x224 |
//! |------------|------------:|-----------------:|
//! | `vgg11`    | 132,863,336 |             7.61 |
//! | `vgg11_bn` | 132,868,840 |             7.61 |
//! | `vgg13`    | 133,047,848 |            11.31 |
//! | `vgg13_bn` | 133,053,736 |            11.31 |
//! | `vgg16`    | 138,357,544 |            15.47 |
//! | `vgg16_bn` | 138,365,992 |            15.47 |
//! | `vgg19`    | 143,667,240 |            19.63 |
//! | `vgg19_bn` | 143,678,248 |            19.63 |
//!
//! 102,760,448 of them (77% of VGG-16's) are the weights of the first fully connected layer.
//! The paper's configuration C (VGG-16 with three 1x1 convolutions) and A-LRN are not provided
//! (torchvision and timm have neither).
//!
//! ## Input
//!
//! `[N, C, H, W]` with `H, W >= 32` (five 2x2 pools); trained at 224x224. An adaptive average
//! pool brings the last feature map to 7x7 before the classifier, as in torchvision, so any
//! size from 32x32 up gives the same classifier shapes (a 1x1 map is replicated to 7x7).
//!
//! ## Variable names (torchvision's)
//!
//! `features.N` indexes torchvision's `nn.Sequential`: per convolution `conv, relu` (or
//! `conv, bn, relu` in the `_bn` variants), then a max pool per stage; for VGG-16 the
//! convolutions are `features.{0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28}` and the pools
//! `features.{4, 9, 16, 23, 30}`. The classifier is `classifier.0` (25,088 -> 4096),
//! `classifier.3` (4096 -> 4096) and `classifier.6` (4096 -> classes); `classifier.{1, 2, 4, 5}`
//! are the ReLUs and dropouts, which have no variables.
//!
//! ## Features and head
//!
//! As in timm, [`Backbone::forward_features`](backbone::Backbone::forward_features) returns the
//! output of the convolutional trunk, `[N, 512, H/32, W/32]` (after the last max pool, [`FEATURES`]
//! channels); [`Backbone::forward_head`](backbone::Backbone::forward_head) is the adaptive average
//! pool to 7x7, the flatten and the whole classifier. `classifier.0` and `classifier.3` are the
//! *pre-logits* (timm's `pre_logits.fc1`/`fc2`,
//! [`Backbone::forward_pre_logits`](backbone::Backbone::forward_pre_logits)), [`HIDDEN`] = 4096
//! wide, the model's [`Backbone::num_features`](backbone::Backbone::num_features); only
//! `classifier.6`, the head, depends on the class count.
//!
//! ## Initialisation and weights
//!
//! Fresh variables follow torchvision: convolutions Kaiming-normal (fan-out, ReLU gain) with zero
//! biases, batch norm scale 1 and shift 0, linear layers normal(0, 0.01) with zero biases.
//!
//! The catalogue ([`VARIANTS`], `Variant::load`) loads a torchvision state dict (`vgg16-397923af.pth` converted to
//! safetensors) or the Hugging Face hub layout of timm's weights (`timm/vgg16.tv_in1k`), whose
//! first two classifier layers are convolutions (`pre_logits.fc1.weight` `[4096, 512, 7, 7]`,
//! `pre_logits.fc2.weight` `[4096, 4096, 1, 1]`) and whose last is `head.fc`; [`remap_timm`]
//! reshapes them into the torchvision layout. Both layouts give identical outputs. (timm's own
//! `ConvMlp` head equals torchvision's on feature maps up to 7x7, i.e. inputs up to 224x224;
//! on larger ones timm slides `fc1` over the map and averages the pre-logits, whereas this
//! model, like torchvision, pools the map to 7x7 first.)

pub mod catalogue;
pub use catalogue::VARIANTS;

/// What a program using this crate alone needs (with `candle-core` for tensors): the model
/// contract, the catalogue types, a fresh seeded variable map, the weights loader, the var
/// builder and the error type, the same in every architecture crate (`backbone::prelude`).
/// `use vgg::prelude::*;`
pub use backbone::prelude;

/// The shared `backbone` crate, for everything beyond the prelude.
pub use backbone;

use backbone::geometry::Stages;
use backbone::layers::{
    Activation, AdaptiveAvgPool2d, BatchNorm2d, BatchNormConfig, Conv2d, Conv2dConfig, ConvBlock, Dropout,
    Flatten, Linear, MaxPool2d, PoolConfig, Sequential,
};
use backbone::plain::{PlainNet, PlainParts};
use backbone::{Error, FeatureInfo, InputSpec, InputType, Result};
use candle_core::Tensor;
use candle_nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use candle_nn::{Init, VarBuilder};
use std::collections::HashMap;

/// Output channels of the five stages.
pub const STAGE_WIDTHS: [usize; 5] = [64, 128, 256, 512, 512];

/// Channels of the trunk's output, which the pre-logits accept.
pub const FEATURES: usize = 512;

/// Width of the two hidden fully connected layers (the pre-logits).
pub const HIDDEN: usize = 4096;

/// Spatial size of the adaptive average pool before the classifier.
pub const POOL_SIZE: usize = 7;

/// The depth: the paper's configurations A, B, D and E.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Depth {
    /// Configuration A: 8 convolutions + 3 fully connected layers.
    Vgg11,
    /// Configuration B: 10 convolutions + 3 fully connected layers.
    Vgg13,
    /// Configuration D: 13 convolutions + 3 fully connected layers.
    Vgg16,
    /// Configuration E: 16 convolutions + 3 fully connected layers.
    Vgg19,
}

impl Depth {
    /// The 3x3 convolutions of each of the five stages.
    pub fn convs_per_stage(self) -> [usize; 5] {
        match self {
            Depth::Vgg11 => [1, 1, 2, 2, 2],
            Depth::Vgg13 => [2, 2, 2, 2, 2],
            Depth::Vgg16 => [2, 2, 3, 3, 3],
            Depth::Vgg19 => [2, 2, 4, 4, 4],
        }
    }

    /// The paper's name of the configuration (`'A'`, `'B'`, `'D'`, `'E'`).
    pub fn paper_column(self) -> char {
        match self {
            Depth::Vgg11 => 'A',
            Depth::Vgg13 => 'B',
            Depth::Vgg16 => 'D',
            Depth::Vgg19 => 'E',
        }
    }

    /// The number of weight layers (11, 13, 16, 19).
    pub fn weight_layers(self) -> usize {
        self.convs_per_stage().iter().sum::<usize>() + 3
    }
}

/// A VGG variant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VggConfig {
    /// The configuration (number of convolutions per stage).
    pub depth: Depth,
    /// Batch norm after every convolution (its bias is kept, as in torchvision).
    pub batch_norm: bool,
    /// Input channels (3 for RGB images).
    pub in_channels: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// Drop probability of the two dropouts of the classifier (0.5; 0 switches them off).
    pub dropout: f32,
}

impl VggConfig {
    /// A variant with 3 input channels, 1000 classes and dropout 0.5.
    pub fn new(depth: Depth, batch_norm: bool) -> Self {
        Self {
            depth,
            batch_norm,
            in_channels: 3,
            num_classes: 1000,
            dropout: 0.5,
        }
    }

    /// VGG-11 (configuration A).
    pub fn vgg11() -> Self {
        Self::new(Depth::Vgg11, false)
    }

    /// VGG-11 with batch norm.
    pub fn vgg11_bn() -> Self {
        Self::new(Depth::Vgg11, true)
    }

    /// VGG-13 (configuration B).
    pub fn vgg13() -> Self {
        Self::new(Depth::Vgg13, false)
    }

    /// VGG-13 with batch norm.
    pub fn vgg13_bn() -> Self {
        Self::new(Depth::Vgg13, true)
    }

    /// VGG-16 (configuration D).
    pub fn vgg16() -> Self {
        Self::new(Depth::Vgg16, false)
    }

    /// VGG-16 with batch norm.
    pub fn vgg16_bn() -> Self {
        Self::new(Depth::Vgg16, true)
    }

    /// VGG-19 (configuration E).
    pub fn vgg19() -> Self {
        Self::new(Depth::Vgg19, false)
    }

    /// VGG-19 with batch norm.
    pub fn vgg19_bn() -> Self {
        Self::new(Depth::Vgg19, true)
    }

    /// Every variant, in the order of the paper, each without then with batch norm.
    pub fn all() -> [Self; 8] {
        [
            Self::vgg11(),
            Self::vgg11_bn(),
            Self::vgg13(),
            Self::vgg13_bn(),
            Self::vgg16(),
            Self::vgg16_bn(),
            Self::vgg19(),
            Self::vgg19_bn(),
        ]
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

    /// Sets the dropout probability of the classifier (0 switches dropout off).
    pub fn with_dropout(mut self, dropout: f32) -> Self {
        self.dropout = dropout;
        self
    }

    /// The variant's name: `vgg11`, `vgg11_bn`, ..., `vgg19_bn` (torchvision's function names).
    pub fn name(&self) -> &'static str {
        match (self.depth, self.batch_norm) {
            (Depth::Vgg11, false) => "vgg11",
            (Depth::Vgg11, true) => "vgg11_bn",
            (Depth::Vgg13, false) => "vgg13",
            (Depth::Vgg13, true) => "vgg13_bn",
            (Depth::Vgg16, false) => "vgg16",
            (Depth::Vgg16, true) => "vgg16_bn",
            (Depth::Vgg19, false) => "vgg19",
            (Depth::Vgg19, true) => "vgg19_bn",
        }
    }
}

impl Default for VggConfig {
    fn default() -> Self {
        Self::vgg16()
    }
}

/// torchvision's initialisation of convolutions: `kaiming_normal_(mode="fan_out",
/// nonlinearity="relu")`.
const CONV_INIT: Init = Init::Kaiming {
    dist: NormalOrUniform::Normal,
    fan: FanInOut::FanOut,
    non_linearity: NonLinearity::ReLU,
};

/// torchvision's initialisation of linear layers: `normal_(0, 0.01)`.
const LINEAR_INIT: Init = Init::Randn {
    mean: 0.0,
    stdev: 0.01,
};

/// VGG; see the [crate documentation](crate).
pub struct Vgg {
    config: VggConfig,
    /// `features`, its stages (timm's: the last ReLU before each pooling and the last
    /// pooling), the classifier.
    parts: PlainParts,
}

impl Vgg {
    /// Builds the model; variables `features.N.{weight, bias}` (and `running_mean`,
    /// `running_var` for batch norm) and `classifier.{0, 3, 6}.{weight, bias}`, torchvision's
    /// names, with torchvision's initialisation when the builder creates them.
    pub fn new(config: &VggConfig, vb: VarBuilder) -> Result<Self> {
        let input_type = InputType::of(&vb);
        if config.in_channels == 0 || config.num_classes == 0 {
            return Err(Error::config(format!(
                "{}: in_channels and num_classes must be positive, got {} and {}",
                config.name(),
                config.in_channels,
                config.num_classes
            )));
        }
        let dropout = Dropout::new(config.dropout)?;
        let vf = vb.pp("features");
        let mut features = Sequential::new();
        let mut index = 0;
        let mut channels = config.in_channels;
        let mut stages = Stages::new();
        for (&convs, &width) in config.depth.convs_per_stage().iter().zip(&STAGE_WIDTHS) {
            for _ in 0..convs {
                let conv = Conv2dConfig::new(channels, width, 3)
                    .padding(1)
                    .init(CONV_INIT, Init::Const(0.0));
                // conv (, bn), relu as one block: the fused kernels of `ConvBlock` (conv + bias
                // + ReLU in one op; batch norm + ReLU in one op, folded in eval mode).
                let conv = Conv2d::new(conv, vf.pp(index))?;
                index += 1;
                let norm = if config.batch_norm {
                    let bn = BatchNorm2d::new(width, BatchNormConfig::with_eps(1e-5), vf.pp(index))?;
                    index += 1;
                    Some(bn)
                } else {
                    None
                };
                features.push(ConvBlock::new(conv, norm, Some(Activation::Relu)));
                index += 1;
                channels = width;
            }
            // The block's ReLU is `features.{index - 1}`; each pooling halves the maps.
            let reduction = 1 << stages.len();
            stages.push(
                features.len() - 1,
                FeatureInfo::new(format!("features.{}", index - 1), width, reduction),
            );
            features.push(MaxPool2d::new(PoolConfig::new(2).stride(2))?.named(format!("features.{index}")));
            index += 1;
        }
        // timm's last stage: the last pooling's output, the trunk's.
        stages.push(
            features.len() - 1,
            FeatureInfo::new(format!("features.{}", index - 1), channels, 1 << stages.len()),
        );
        let vc = vb.pp("classifier");
        let linear = |i: usize, o: usize, name: &str| {
            Linear::with_init(i, o, true, LINEAR_INIT, Init::Const(0.0), vc.pp(name))
        };
        // Adaptive average pool to 7x7, flatten, `classifier.0` to `classifier.5`: the 4096
        // features entering `classifier.6`.
        let pre_logits = Sequential::new()
            .with(AdaptiveAvgPool2d::new((POOL_SIZE, POOL_SIZE))?.named("avgpool"))
            .with(Flatten::new())
            .with(linear(FEATURES * POOL_SIZE * POOL_SIZE, HIDDEN, "0")?)
            .with(Activation::Relu)
            .with(dropout)
            .with(linear(HIDDEN, HIDDEN, "3")?)
            .with(Activation::Relu)
            .with(dropout);
        let parts = PlainParts {
            name: config.name().to_string(),
            input_spec: InputSpec {
                channels: config.in_channels,
                min_size: (32, 32),
                fixed_size: None,
                default_size: (224, 224),
            },
            input_type,
            features,
            stages,
            feature_channels: FEATURES,
            pre_logits,
            head: linear(HIDDEN, config.num_classes, "6")?,
        };
        Ok(Self {
            config: *config,
            parts,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &VggConfig {
        &self.config
    }
}

impl PlainNet for Vgg {
    fn plain_parts(&self) -> &PlainParts {
        &self.parts
    }
}

/// timm's names of the classifier layers and torchvision's.
const TIMM_NAMES: [(&str, &str); 3] = [
    ("pre_logits.fc1", "classifier.0"),
    ("pre_logits.fc2", "classifier.3"),
    ("head.fc", "classifier.6"),
];

/// Whether a state dict uses timm's layout (a `pre_logits.*` or `head.*` tensor).
pub fn is_timm_layout(tensors: &HashMap<String, Tensor>) -> bool {
    tensors
        .keys()
        .any(|k| k.starts_with("pre_logits.") || k.starts_with("head."))
}

fn weights_error(tensor: &str, problem: String) -> Error {
    Error::Weights {
        file: None,
        tensor: tensor.to_string(),
        problem,
    }
}

/// Converts timm's layout of a VGG state dict (the Hugging Face hub files `timm/vgg*.tv_in1k`)
/// into torchvision's: `pre_logits.fc1.weight` `[O, I, 7, 7]` becomes `classifier.0.weight`
/// `[O, I * 49]`, `pre_logits.fc2.weight` `[O, I, 1, 1]` becomes `classifier.3.weight`
/// `[O, I]`, `head.fc.*` becomes `classifier.6.*`; the biases are renamed and `features.*`
/// is kept. A state dict in torchvision's layout is returned unchanged.
///
/// Errors ([`Error::Weights`], naming the tensor, the expected and the actual shape) on an
/// `fc1` that is not `[4096, 512, 7, 7]` or an `fc2` that is not `[4096, 4096, 1, 1]` (the
/// widths of every VGG), and on a state dict mixing both layouts. Other tensors are checked
/// when the model is built from the result (errors then name them as in the file: see
/// the catalogue's loader ([`crate::VARIANTS`])).
pub fn remap_timm(tensors: HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    if !is_timm_layout(&tensors) {
        return Ok(tensors);
    }
    let mut out = HashMap::with_capacity(tensors.len());
    for key in tensors.keys() {
        if key.starts_with("classifier.") {
            return Err(weights_error(
                key,
                "torchvision's name in a state dict in timm's layout (pre_logits/head): mixed layouts".into(),
            ));
        }
    }
    for (key, tensor) in tensors {
        let renamed = TIMM_NAMES.iter().find_map(|(timm, tv)| {
            key.strip_prefix(timm)
                .filter(|rest| rest.starts_with('.'))
                .map(|rest| (*timm, format!("{tv}{rest}")))
        });
        let Some((timm, new_key)) = renamed else {
            out.insert(key, tensor);
            continue;
        };
        // timm's convolutional pre-logits: [out, in, k, k] -> torchvision's [out, in * k * k].
        let conv_shape = match (timm, new_key.ends_with(".weight")) {
            ("pre_logits.fc1", true) => Some([HIDDEN, FEATURES, POOL_SIZE, POOL_SIZE]),
            ("pre_logits.fc2", true) => Some([HIDDEN, HIDDEN, 1, 1]),
            _ => None,
        };
        let tensor = match conv_shape {
            Some(shape) if tensor.dims() == shape => {
                tensor.reshape((shape[0], shape[1] * shape[2] * shape[3]))?
            }
            Some(shape) => {
                let k = shape[2];
                let problem = format!(
                    "expected shape {shape:?} (a {k}x{k} convolution), found {:?}",
                    tensor.dims()
                );
                return Err(weights_error(&key, problem));
            }
            None => tensor,
        };
        out.insert(new_key, tensor);
    }
    Ok(out)
}

/// The name timm's layout gives a tensor this crate (torchvision) calls `tensor`
/// (`classifier.0.bias` -> `pre_logits.fc1.bias`), if it differs: errors on a timm file name
/// the tensor as the file does (the catalogue's `Layout::file_name`).
pub fn timm_name(tensor: &str) -> Option<String> {
    TIMM_NAMES.iter().find_map(|(timm, tv)| {
        tensor
            .strip_prefix(tv)
            .filter(|rest| rest.starts_with('.'))
            .map(|rest| format!("{timm}{rest}"))
    })
}
