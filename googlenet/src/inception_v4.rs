//! Inception-v4, timm's layout (`inception_v4`, `timm/inception_v4.tf_in1k`).

use crate::blocks::{self, avg, c, convs, r, split, Block, Branch, MAX_POOL};
use crate::common;
use backbone::layers::{AdaptiveAvgPool2d, Dropout, Layer, Linear};
use backbone::{check_input, Backbone, Error, FeatureInfo, InputSpec, InputType, Result};
use candle_core::Tensor;
use candle_nn::VarBuilder;

/// `Mixed3a` (`features.3`): a 3x3 stride-2 max pool beside a 3x3 stride-2 convolution.
const MIXED_3A: &[Branch] = &[MAX_POOL, convs(&[c("conv", 96, 3, 2, 0)])];

/// `Mixed4a` (`features.4`): 1x1 -> 3x3, and 1x1 -> 1x7 -> 7x1 -> 3x3, both unpadded.
const MIXED_4A: &[Branch] = &[
    convs(&[c("branch0.0", 64, 1, 1, 0), c("branch0.1", 96, 3, 1, 0)]),
    convs(&[
        c("branch1.0", 64, 1, 1, 0),
        r("branch1.1", 64, 1, 7),
        r("branch1.2", 64, 7, 1),
        c("branch1.3", 96, 3, 1, 0),
    ]),
];

/// `Mixed5a` (`features.5`): a 3x3 stride-2 convolution beside a max pool.
const MIXED_5A: &[Branch] = &[convs(&[c("conv", 192, 3, 2, 0)]), MAX_POOL];

/// `InceptionA` (35x35, the paper's Figure 4).
const INCEPTION_A: &[Branch] = &[
    convs(&[c("branch0", 96, 1, 1, 0)]),
    convs(&[c("branch1.0", 64, 1, 1, 0), c("branch1.1", 96, 3, 1, 1)]),
    convs(&[
        c("branch2.0", 64, 1, 1, 0),
        c("branch2.1", 96, 3, 1, 1),
        c("branch2.2", 96, 3, 1, 1),
    ]),
    avg(&[c("branch3.1", 96, 1, 1, 0)]),
];

/// `ReductionA` (35 -> 17, Figure 7 with k, l, m, n = 192, 224, 256, 384).
const REDUCTION_A: &[Branch] = &[
    convs(&[c("branch0", 384, 3, 2, 0)]),
    convs(&[
        c("branch1.0", 192, 1, 1, 0),
        c("branch1.1", 224, 3, 1, 1),
        c("branch1.2", 256, 3, 2, 0),
    ]),
    MAX_POOL,
];

/// `InceptionB` (17x17, Figure 5).
const INCEPTION_B: &[Branch] = &[
    convs(&[c("branch0", 384, 1, 1, 0)]),
    convs(&[
        c("branch1.0", 192, 1, 1, 0),
        r("branch1.1", 224, 1, 7),
        r("branch1.2", 256, 7, 1),
    ]),
    convs(&[
        c("branch2.0", 192, 1, 1, 0),
        r("branch2.1", 192, 7, 1),
        r("branch2.2", 224, 1, 7),
        r("branch2.3", 224, 7, 1),
        r("branch2.4", 256, 1, 7),
    ]),
    avg(&[c("branch3.1", 128, 1, 1, 0)]),
];

/// `ReductionB` (17 -> 8, Figure 8).
const REDUCTION_B: &[Branch] = &[
    convs(&[c("branch0.0", 192, 1, 1, 0), c("branch0.1", 192, 3, 2, 0)]),
    convs(&[
        c("branch1.0", 256, 1, 1, 0),
        r("branch1.1", 256, 1, 7),
        r("branch1.2", 320, 7, 1),
        c("branch1.3", 320, 3, 2, 0),
    ]),
    MAX_POOL,
];

/// `InceptionC` (8x8, Figure 6): the 3x3 outputs split into parallel 1x3 and 3x1.
const INCEPTION_C: &[Branch] = &[
    convs(&[c("branch0", 256, 1, 1, 0)]),
    split(
        &[c("branch1_0", 384, 1, 1, 0)],
        &[r("branch1_1a", 256, 1, 3), r("branch1_1b", 256, 3, 1)],
    ),
    split(
        &[
            c("branch2_0", 384, 1, 1, 0),
            r("branch2_1", 448, 3, 1),
            r("branch2_2", 512, 1, 3),
        ],
        &[r("branch2_3a", 256, 1, 3), r("branch2_3b", 256, 3, 1)],
    ),
    avg(&[c("branch3.1", 256, 1, 1, 0)]),
];

/// The number of units of `features`.
const INCEPTION_V4_BLOCKS: usize = 22;
/// Inception-v4's `features` (the paper's Figure 9), each block with its repeat count:
/// `features.0` .. `features.21`.
const INCEPTION_V4: [(Block, usize); 11] = [
    (Block::Conv(c("", 32, 3, 2, 0)), 1),
    (Block::Conv(c("", 32, 3, 1, 0)), 1),
    (Block::Conv(c("", 64, 3, 1, 1)), 1),
    (Block::Mixed(MIXED_3A), 1),
    (Block::Mixed(MIXED_4A), 1),
    (Block::Mixed(MIXED_5A), 1),
    (Block::Mixed(INCEPTION_A), 4),
    (Block::Mixed(REDUCTION_A), 1),
    (Block::Mixed(INCEPTION_B), 7),
    (Block::Mixed(REDUCTION_B), 1),
    (Block::Mixed(INCEPTION_C), 3),
];

/// The features entering the head.
const FEATURES: usize = 1536;
/// The smallest input: `ReductionB`'s stride-2 3x3 convolutions need a 3x3 map.
const MIN_SIZE: usize = 75;
/// timm's feature taps: (`features.i`, channels, reduction).
const TAPS: [(usize, usize, usize); 5] = [
    (2, 64, 2),
    (3, 160, 4),
    (9, 384, 8),
    (17, 1024, 16),
    (21, FEATURES, 32),
];

/// An Inception-v4 variant; see the [crate documentation](crate) for the layer table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InceptionV4Config {
    /// Input channels (3 for ImageNet).
    pub in_channels: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// Dropout before `last_linear` in training (timm's `drop_rate`, 0 by default).
    pub dropout: f32,
}

impl InceptionV4Config {
    /// timm's `inception_v4`: 1000 classes, no dropout.
    pub fn inception_v4() -> Self {
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

    /// Sets the dropout probability before `last_linear` (0 switches it off).
    pub fn with_dropout(mut self, dropout: f32) -> Self {
        self.dropout = dropout;
        self
    }
}

impl Default for InceptionV4Config {
    fn default() -> Self {
        Self::inception_v4()
    }
}

/// Inception-v4; see the [crate documentation](crate).
pub struct InceptionV4 {
    config: InceptionV4Config,
    /// The dtype and device of the weights, which inputs must have.
    input_type: InputType,
    features: Vec<Box<dyn Layer>>,
    avgpool: AdaptiveAvgPool2d,
    dropout: Dropout,
    last_linear: Linear,
}

impl InceptionV4 {
    /// Builds the model with timm's variable names (`features.0.conv.weight`,
    /// `features.21.branch2_3b.bn.running_var`, `last_linear.weight`, ...). Fresh variables
    /// have PyTorch's default initialisation, as timm's (batch norm scale 1, shift 0).
    pub fn new(config: &InceptionV4Config, vb: VarBuilder) -> Result<Self> {
        let input_type = InputType::of(&vb);
        if config.num_classes == 0 || config.in_channels == 0 {
            return Err(Error::config(format!(
                "inception_v4: need at least one class and one input channel: {config:?}"
            )));
        }
        let mut features = Vec::with_capacity(INCEPTION_V4_BLOCKS);
        let mut channels = config.in_channels;
        for (block, repeat) in &INCEPTION_V4 {
            for _ in 0..*repeat {
                let name = format!("features.{}", features.len());
                let (layer, out) = blocks::build(block, channels, &name, vb.pp(&name))?;
                features.push(layer);
                channels = out;
            }
        }
        Ok(Self {
            config: *config,
            input_type,
            features,
            avgpool: AdaptiveAvgPool2d::new((1, 1))?.named("global_pool"),
            dropout: Dropout::new(config.dropout)?,
            last_linear: Linear::new(FEATURES, config.num_classes, vb.pp("last_linear"))?,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &InceptionV4Config {
        &self.config
    }

    fn run(&self, xs: &Tensor, train: bool, stages: Option<&mut Vec<Tensor>>) -> Result<Tensor> {
        check_input(self.name(), &self.input_spec(), &self.input_type, xs)?;
        blocks::run(&self.features, xs, train, &TAPS.map(|t| t.0), stages)
    }
}

impl Backbone for InceptionV4 {
    fn name(&self) -> &str {
        "inception_v4"
    }

    fn input_spec(&self) -> InputSpec {
        InputSpec {
            channels: self.config.in_channels,
            min_size: (MIN_SIZE, MIN_SIZE),
            fixed_size: None,
            default_size: (299, 299),
        }
    }

    /// `features.21`'s map, `[N, 1536, h, w]`.
    fn forward_features(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        self.run(xs, train, None)
    }

    /// Global average pool, flatten, dropout (in training).
    fn forward_pre_logits(&self, features: &Tensor, train: bool) -> Result<Tensor> {
        common::pooled_pre_logits(&self.avgpool, &self.dropout, features, train)
    }

    fn forward_classifier(&self, pre_logits: &Tensor, train: bool) -> Result<Tensor> {
        self.last_linear.forward_t(pre_logits, train)
    }

    /// timm's: `features.2`, `features.3`, `features.9`, `features.17`, `features.21`.
    fn feature_info(&self) -> Vec<FeatureInfo> {
        TAPS.iter()
            .map(|&(i, channels, reduction)| FeatureInfo::new(format!("features.{i}"), channels, reduction))
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
        "last_linear"
    }
}
