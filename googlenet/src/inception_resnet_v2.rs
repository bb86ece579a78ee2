//! Inception-ResNet-v2, timm's layout (`inception_resnet_v2`,
//! `timm/inception_resnet_v2.tf_in1k`).

use crate::blocks::{self, avg, c, convs, r, Block, Branch, MAX_POOL};
use crate::common;
use backbone::layers::{AdaptiveAvgPool2d, Dropout, Layer, Linear};
use backbone::{check_input, Backbone, Error, FeatureInfo, InputSpec, InputType, Result};
use candle_core::Tensor;
use candle_nn::VarBuilder;

/// `mixed_5b` (35x35): Inception-v3's `InceptionA` with 96, 48 -> 64 (5x5), 64 -> 96 -> 96 and
/// pool -> 64 channels.
const MIXED_5B: &[Branch] = &[
    convs(&[c("branch0", 96, 1, 1, 0)]),
    convs(&[c("branch1.0", 48, 1, 1, 0), c("branch1.1", 64, 5, 1, 2)]),
    convs(&[
        c("branch2.0", 64, 1, 1, 0),
        c("branch2.1", 96, 3, 1, 1),
        c("branch2.2", 96, 3, 1, 1),
    ]),
    avg(&[c("branch3.1", 64, 1, 1, 0)]),
];

/// `Block35` (Inception-ResNet-A, the paper's Figure 16): 128 channels back to 320.
const BLOCK35: &[Branch] = &[
    convs(&[c("branch0", 32, 1, 1, 0)]),
    convs(&[c("branch1.0", 32, 1, 1, 0), c("branch1.1", 32, 3, 1, 1)]),
    convs(&[
        c("branch2.0", 32, 1, 1, 0),
        c("branch2.1", 48, 3, 1, 1),
        c("branch2.2", 64, 3, 1, 1),
    ]),
];

/// `mixed_6a` (Reduction-A, 35 -> 17, k, l, m, n = 256, 256, 384, 384).
const MIXED_6A: &[Branch] = &[
    convs(&[c("branch0", 384, 3, 2, 0)]),
    convs(&[
        c("branch1.0", 256, 1, 1, 0),
        c("branch1.1", 256, 3, 1, 1),
        c("branch1.2", 384, 3, 2, 0),
    ]),
    MAX_POOL,
];

/// `Block17` (Inception-ResNet-B, Figure 17): 384 channels back to 1088.
const BLOCK17: &[Branch] = &[
    convs(&[c("branch0", 192, 1, 1, 0)]),
    convs(&[
        c("branch1.0", 128, 1, 1, 0),
        r("branch1.1", 160, 1, 7),
        r("branch1.2", 192, 7, 1),
    ]),
];

/// `mixed_7a` (Reduction-B, 17 -> 8, Figure 18).
const MIXED_7A: &[Branch] = &[
    convs(&[c("branch0.0", 256, 1, 1, 0), c("branch0.1", 384, 3, 2, 0)]),
    convs(&[c("branch1.0", 256, 1, 1, 0), c("branch1.1", 288, 3, 2, 0)]),
    convs(&[
        c("branch2.0", 256, 1, 1, 0),
        c("branch2.1", 288, 3, 1, 1),
        c("branch2.2", 320, 3, 2, 0),
    ]),
    MAX_POOL,
];

/// `Block8` (Inception-ResNet-C, Figure 19): 448 channels back to 2080.
const BLOCK8: &[Branch] = &[
    convs(&[c("branch0", 192, 1, 1, 0)]),
    convs(&[
        c("branch1.0", 192, 1, 1, 0),
        r("branch1.1", 224, 1, 3),
        r("branch1.2", 256, 3, 1),
    ]),
];

const fn residual(branches: &'static [Branch], scale: f64, relu: bool) -> Block {
    Block::Residual {
        branches,
        scale,
        relu,
    }
}

/// Inception-ResNet-v2's trunk (the paper's Figure 15 with timm's stem, Inception-v3's): each
/// unit's key, block and repeat count (`Some(n)`: an `nn.Sequential` of `n` blocks, `key.0` ..
/// `key.{n-1}`). The residual scales are the paper's 0.17, 0.10 and 0.20; the last `Block8`
/// has scale 1 and no ReLU.
const INCEPTION_RESNET_V2: [(&str, Block, Option<usize>); 15] = [
    ("conv2d_1a", Block::Conv(c("", 32, 3, 2, 0)), None),
    ("conv2d_2a", Block::Conv(c("", 32, 3, 1, 0)), None),
    ("conv2d_2b", Block::Conv(c("", 64, 3, 1, 1)), None),
    ("maxpool_3a", Block::MaxPool, None),
    ("conv2d_3b", Block::Conv(c("", 80, 1, 1, 0)), None),
    ("conv2d_4a", Block::Conv(c("", 192, 3, 1, 0)), None),
    ("maxpool_5a", Block::MaxPool, None),
    ("mixed_5b", Block::Mixed(MIXED_5B), None),
    ("repeat", residual(BLOCK35, 0.17, true), Some(10)),
    ("mixed_6a", Block::Mixed(MIXED_6A), None),
    ("repeat_1", residual(BLOCK17, 0.10, true), Some(20)),
    ("mixed_7a", Block::Mixed(MIXED_7A), None),
    ("repeat_2", residual(BLOCK8, 0.20, true), Some(9)),
    ("block8", residual(BLOCK8, 1.0, false), None),
    ("conv2d_7b", Block::Conv(c("", 1536, 1, 1, 0)), None),
];

/// The features entering the head.
const FEATURES: usize = 1536;
/// The smallest input: `mixed_7a`'s stride-2 3x3 convolutions need a 3x3 map.
const MIN_SIZE: usize = 75;
/// timm's feature taps: (unit, channels, reduction).
const TAPS: [(&str, usize, usize); 5] = [
    ("conv2d_2b", 64, 2),
    ("conv2d_4a", 192, 4),
    ("repeat", 320, 8),
    ("repeat_1", 1088, 16),
    ("conv2d_7b", FEATURES, 32),
];

/// An Inception-ResNet-v2 variant; see the [crate documentation](crate) for the layer table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InceptionResNetV2Config {
    /// Input channels (3 for ImageNet).
    pub in_channels: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// Dropout before `classif` in training (timm's `drop_rate`, 0 by default).
    pub dropout: f32,
}

impl InceptionResNetV2Config {
    /// timm's `inception_resnet_v2`: 1000 classes, no dropout.
    pub fn inception_resnet_v2() -> Self {
        Self {
            in_channels: 3,
            num_classes: 1000,
            dropout: 0.0,
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

    /// Sets the dropout probability before `classif` (0 switches it off).
    pub fn with_dropout(mut self, dropout: f32) -> Self {
        self.dropout = dropout;
        self
    }
}

impl Default for InceptionResNetV2Config {
    fn default() -> Self {
        Self::inception_resnet_v2()
    }
}

/// Inception-ResNet-v2; see the [crate documentation](crate).
pub struct InceptionResNetV2 {
    config: InceptionResNetV2Config,
    /// The dtype and device of the weights, which inputs must have.
    input_type: InputType,
    /// Every block in order, the repeated ones one by one.
    units: Vec<Box<dyn Layer>>,
    /// The index in `units` of each feature tap's last block.
    taps: Vec<usize>,
    avgpool: AdaptiveAvgPool2d,
    dropout: Dropout,
    classif: Linear,
}

impl InceptionResNetV2 {
    /// Builds the model with timm's variable names (`conv2d_1a.conv.weight`,
    /// `repeat_1.19.branch1.2.bn.running_var`, `block8.conv2d.bias`, `classif.weight`, ...).
    /// Fresh variables have PyTorch's default initialisation, as timm's (batch norm scale 1,
    /// shift 0).
    pub fn new(config: &InceptionResNetV2Config, vb: VarBuilder) -> Result<Self> {
        let input_type = InputType::of(&vb);
        if config.num_classes == 0 || config.in_channels == 0 {
            return Err(Error::config(format!(
                "inception_resnet_v2: need at least one class and one input channel: {config:?}"
            )));
        }
        let mut units = Vec::new();
        let mut taps = Vec::with_capacity(TAPS.len());
        let mut channels = config.in_channels;
        for (key, block, repeat) in &INCEPTION_RESNET_V2 {
            let names: Vec<String> = match repeat {
                Some(n) => (0..*n).map(|i| format!("{key}.{i}")).collect(),
                None => vec![key.to_string()],
            };
            for name in names {
                let (layer, out) = blocks::build(block, channels, &name, vb.pp(&name))?;
                units.push(layer);
                channels = out;
            }
            if TAPS.iter().any(|t| t.0 == *key) {
                taps.push(units.len() - 1);
            }
        }
        Ok(Self {
            config: *config,
            input_type,
            units,
            taps,
            avgpool: AdaptiveAvgPool2d::new((1, 1))?.named("global_pool"),
            dropout: Dropout::new(config.dropout)?,
            classif: Linear::new(FEATURES, config.num_classes, vb.pp("classif"))?,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &InceptionResNetV2Config {
        &self.config
    }

    fn run(&self, xs: &Tensor, train: bool, stages: Option<&mut Vec<Tensor>>) -> Result<Tensor> {
        check_input(self.name(), &self.input_spec(), &self.input_type, xs)?;
        blocks::run(&self.units, xs, train, &self.taps, stages)
    }
}

impl Backbone for InceptionResNetV2 {
    fn name(&self) -> &str {
        "inception_resnet_v2"
    }

    fn input_spec(&self) -> InputSpec {
        InputSpec {
            channels: self.config.in_channels,
            min_size: (MIN_SIZE, MIN_SIZE),
            fixed_size: None,
            default_size: (299, 299),
        }
    }

    /// `conv2d_7b`'s map, `[N, 1536, h, w]`.
    fn forward_features(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        self.run(xs, train, None)
    }

    /// Global average pool, flatten, dropout (in training).
    fn forward_pre_logits(&self, features: &Tensor, train: bool) -> Result<Tensor> {
        common::pooled_pre_logits(&self.avgpool, &self.dropout, features, train)
    }

    fn forward_classifier(&self, pre_logits: &Tensor, train: bool) -> Result<Tensor> {
        self.classif.forward_t(pre_logits, train)
    }

    /// timm's: `conv2d_2b`, `conv2d_4a`, `repeat`, `repeat_1`, `conv2d_7b`.
    fn feature_info(&self) -> Vec<FeatureInfo> {
        TAPS.iter()
            .map(|&(key, channels, reduction)| FeatureInfo::new(key, channels, reduction))
            .collect()
    }

    fn forward_stages(&self, xs: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        let mut stages = Vec::with_capacity(TAPS.len());
        self.run(xs, train, Some(&mut stages))?;
        Ok(stages)
    }

    fn num_features(&self) -> usize {
        FEATURES
    }

    fn num_classes(&self) -> usize {
        self.config.num_classes
    }

    fn head_prefix(&self) -> &str {
        "classif"
    }
}
