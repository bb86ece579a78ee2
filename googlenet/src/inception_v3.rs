//! Inception-v3, torchvision's (and timm's) layout.

use crate::common::{self, basic_conv, conv, normal};
use backbone::init::torch_default;
use backbone::layers::{
    AdaptiveAvgPool2d, AvgPool2d, ConvBlock, Dropout, Flatten, Layer, Linear, MaxPool2d, PoolConfig,
};
use backbone::{check_input, Backbone, Error, FeatureInfo, InputSpec, InputType, ModelOutput, Result};
use candle_core::Tensor;
use candle_nn::VarBuilder;

/// An Inception-v3 variant; see the [crate documentation](crate) for the layer table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InceptionV3Config {
    /// Input channels (3 for ImageNet).
    pub in_channels: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// Whether the auxiliary classifier `AuxLogits` exists (its variables are created only
    /// then). In training it needs inputs of at least 299x299.
    pub aux_logits: bool,
    /// torchvision's `transform_input`: re-normalise an ImageNet-normalised input to mean 0.5,
    /// standard deviation 0.5 per channel, what the ported weights expect (torchvision's
    /// `inception_v3(weights=...)` switches it on; timm's `inception_v3.tv_in1k` instead
    /// declares mean and std 0.5 in its preprocessing). Needs 3 input channels.
    pub transform_input: bool,
    /// Dropout before `fc` (0.5; 0 switches it off). The auxiliary head has none.
    pub dropout: f32,
}

impl InceptionV3Config {
    /// torchvision's `Inception3()`: auxiliary head, 1000 classes, no input transform,
    /// dropout 0.5.
    pub fn inception_v3() -> Self {
        Self {
            in_channels: 3,
            num_classes: 1000,
            aux_logits: true,
            transform_input: false,
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

    /// Switches the auxiliary classifier on or off.
    pub fn with_aux_logits(mut self, aux_logits: bool) -> Self {
        self.aux_logits = aux_logits;
        self
    }

    /// Switches torchvision's input transform on or off.
    pub fn with_transform_input(mut self, transform_input: bool) -> Self {
        self.transform_input = transform_input;
        self
    }

    /// Sets the dropout probability before `fc` (0 switches it off).
    pub fn with_dropout(mut self, dropout: f32) -> Self {
        self.dropout = dropout;
        self
    }
}

impl Default for InceptionV3Config {
    fn default() -> Self {
        Self::inception_v3()
    }
}

/// torchvision's initialisation of Inception-v3's convolution and linear weights.
const INIT_STD: f64 = 0.1;
const FEATURES: usize = 2048;
/// The smallest input (torchvision's `min_size`): `Mixed_7a`'s stride-2 3x3 convolutions
/// need a 3x3 map.
const MIN_SIZE: usize = 75;
/// The smallest input of the auxiliary head (5x5 average pool, stride 3, then a 5x5
/// convolution: `Mixed_6e` must be at least 17x17).
const MIN_SIZE_AUX: usize = 299;

fn bc(config: backbone::layers::Conv2dConfig, vb: VarBuilder) -> Result<ConvBlock> {
    basic_conv(config, INIT_STD, vb)
}

fn avg_pool_3x3(name: String) -> Result<AvgPool2d> {
    // F.avg_pool2d(x, 3, stride=1, padding=1), count_include_pad=True.
    Ok(AvgPool2d::new(PoolConfig::new(3).stride(1).padding(1))?.named(name))
}

fn max_pool_3x3_s2(name: String) -> Result<MaxPool2d> {
    Ok(MaxPool2d::new(PoolConfig::new(3).stride(2))?.named(name))
}

fn run_chain(layers: &[ConvBlock], xs: &Tensor, train: bool) -> Result<Tensor> {
    let mut xs = xs.clone();
    for layer in layers {
        xs = layer.forward_t(&xs, train)?;
    }
    Ok(xs)
}

/// `InceptionA` (`Mixed_5b`..`Mixed_5d`): 1x1, 1x1 -> 5x5, 1x1 -> 3x3 -> 3x3, avg pool -> 1x1.
struct InceptionA {
    branch1x1: ConvBlock,
    branch5x5: [ConvBlock; 2],
    branch3x3dbl: [ConvBlock; 3],
    pool: AvgPool2d,
    branch_pool: ConvBlock,
}

impl InceptionA {
    fn new(cin: usize, pool_features: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            branch1x1: bc(conv(cin, 64, 1), vb.pp("branch1x1"))?,
            branch5x5: [
                bc(conv(cin, 48, 1), vb.pp("branch5x5_1"))?,
                bc(conv(48, 64, 5).padding(2), vb.pp("branch5x5_2"))?,
            ],
            branch3x3dbl: [
                bc(conv(cin, 64, 1), vb.pp("branch3x3dbl_1"))?,
                bc(conv(64, 96, 3).padding(1), vb.pp("branch3x3dbl_2"))?,
                bc(conv(96, 96, 3).padding(1), vb.pp("branch3x3dbl_3"))?,
            ],
            pool: avg_pool_3x3(format!("{}.avg_pool", vb.prefix()))?,
            branch_pool: bc(conv(cin, pool_features, 1), vb.pp("branch_pool"))?,
        })
    }
}

impl Layer for InceptionA {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let b1 = self.branch1x1.forward_t(xs, train)?;
        let b5 = run_chain(&self.branch5x5, xs, train)?;
        let b3 = run_chain(&self.branch3x3dbl, xs, train)?;
        let bp = self
            .branch_pool
            .forward_t(&self.pool.forward_t(xs, train)?, train)?;
        Ok(Tensor::cat(&[b1, b5, b3, bp], 1)?)
    }
}

/// `InceptionB` (`Mixed_6a`, grid reduction 35 -> 17): 3x3/2, 1x1 -> 3x3 -> 3x3/2, max pool.
struct InceptionB {
    branch3x3: ConvBlock,
    branch3x3dbl: [ConvBlock; 3],
    pool: MaxPool2d,
}

impl InceptionB {
    fn new(cin: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            branch3x3: bc(conv(cin, 384, 3).stride(2), vb.pp("branch3x3"))?,
            branch3x3dbl: [
                bc(conv(cin, 64, 1), vb.pp("branch3x3dbl_1"))?,
                bc(conv(64, 96, 3).padding(1), vb.pp("branch3x3dbl_2"))?,
                bc(conv(96, 96, 3).stride(2), vb.pp("branch3x3dbl_3"))?,
            ],
            pool: max_pool_3x3_s2(format!("{}.max_pool", vb.prefix()))?,
        })
    }
}

impl Layer for InceptionB {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let b3 = self.branch3x3.forward_t(xs, train)?;
        let bd = run_chain(&self.branch3x3dbl, xs, train)?;
        let bp = self.pool.forward_t(xs, train)?;
        Ok(Tensor::cat(&[b3, bd, bp], 1)?)
    }
}

/// `InceptionC` (`Mixed_6b`..`Mixed_6e`): factorised 7x7 convolutions as 1x7 and 7x1 pairs
/// (padding (0, 3) and (3, 0)).
struct InceptionC {
    branch1x1: ConvBlock,
    branch7x7: [ConvBlock; 3],
    branch7x7dbl: [ConvBlock; 5],
    pool: AvgPool2d,
    branch_pool: ConvBlock,
}

impl InceptionC {
    fn new(cin: usize, c7: usize, vb: VarBuilder) -> Result<Self> {
        let c1x7 = |i: usize, o: usize| conv(i, o, 1).kernel_hw(1, 7).padding_hw(0, 3);
        let c7x1 = |i: usize, o: usize| conv(i, o, 1).kernel_hw(7, 1).padding_hw(3, 0);
        Ok(Self {
            branch1x1: bc(conv(cin, 192, 1), vb.pp("branch1x1"))?,
            branch7x7: [
                bc(conv(cin, c7, 1), vb.pp("branch7x7_1"))?,
                bc(c1x7(c7, c7), vb.pp("branch7x7_2"))?,
                bc(c7x1(c7, 192), vb.pp("branch7x7_3"))?,
            ],
            branch7x7dbl: [
                bc(conv(cin, c7, 1), vb.pp("branch7x7dbl_1"))?,
                bc(c7x1(c7, c7), vb.pp("branch7x7dbl_2"))?,
                bc(c1x7(c7, c7), vb.pp("branch7x7dbl_3"))?,
                bc(c7x1(c7, c7), vb.pp("branch7x7dbl_4"))?,
                bc(c1x7(c7, 192), vb.pp("branch7x7dbl_5"))?,
            ],
            pool: avg_pool_3x3(format!("{}.avg_pool", vb.prefix()))?,
            branch_pool: bc(conv(cin, 192, 1), vb.pp("branch_pool"))?,
        })
    }
}

impl Layer for InceptionC {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let b1 = self.branch1x1.forward_t(xs, train)?;
        let b7 = run_chain(&self.branch7x7, xs, train)?;
        let bd = run_chain(&self.branch7x7dbl, xs, train)?;
        let bp = self
            .branch_pool
            .forward_t(&self.pool.forward_t(xs, train)?, train)?;
        Ok(Tensor::cat(&[b1, b7, bd, bp], 1)?)
    }
}

/// `InceptionD` (`Mixed_7a`, grid reduction 17 -> 8): 1x1 -> 3x3/2, 1x1 -> 1x7 -> 7x1 ->
/// 3x3/2, max pool.
struct InceptionD {
    branch3x3: [ConvBlock; 2],
    branch7x7x3: [ConvBlock; 4],
    pool: MaxPool2d,
}

impl InceptionD {
    fn new(cin: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            branch3x3: [
                bc(conv(cin, 192, 1), vb.pp("branch3x3_1"))?,
                bc(conv(192, 320, 3).stride(2), vb.pp("branch3x3_2"))?,
            ],
            branch7x7x3: [
                bc(conv(cin, 192, 1), vb.pp("branch7x7x3_1"))?,
                bc(
                    conv(192, 192, 1).kernel_hw(1, 7).padding_hw(0, 3),
                    vb.pp("branch7x7x3_2"),
                )?,
                bc(
                    conv(192, 192, 1).kernel_hw(7, 1).padding_hw(3, 0),
                    vb.pp("branch7x7x3_3"),
                )?,
                bc(conv(192, 192, 3).stride(2), vb.pp("branch7x7x3_4"))?,
            ],
            pool: max_pool_3x3_s2(format!("{}.max_pool", vb.prefix()))?,
        })
    }
}

impl Layer for InceptionD {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let b3 = run_chain(&self.branch3x3, xs, train)?;
        let b7 = run_chain(&self.branch7x7x3, xs, train)?;
        let bp = self.pool.forward_t(xs, train)?;
        Ok(Tensor::cat(&[b3, b7, bp], 1)?)
    }
}

/// `InceptionE` (`Mixed_7b`, `Mixed_7c`): expanded filter banks, each 3x3 split into parallel
/// 1x3 and 3x1 outputs.
struct InceptionE {
    branch1x1: ConvBlock,
    branch3x3_1: ConvBlock,
    branch3x3_2: [ConvBlock; 2],
    branch3x3dbl_12: [ConvBlock; 2],
    branch3x3dbl_3: [ConvBlock; 2],
    pool: AvgPool2d,
    branch_pool: ConvBlock,
}

impl InceptionE {
    fn new(cin: usize, vb: VarBuilder) -> Result<Self> {
        let c1x3 = |i: usize, o: usize| conv(i, o, 1).kernel_hw(1, 3).padding_hw(0, 1);
        let c3x1 = |i: usize, o: usize| conv(i, o, 1).kernel_hw(3, 1).padding_hw(1, 0);
        Ok(Self {
            branch1x1: bc(conv(cin, 320, 1), vb.pp("branch1x1"))?,
            branch3x3_1: bc(conv(cin, 384, 1), vb.pp("branch3x3_1"))?,
            branch3x3_2: [
                bc(c1x3(384, 384), vb.pp("branch3x3_2a"))?,
                bc(c3x1(384, 384), vb.pp("branch3x3_2b"))?,
            ],
            branch3x3dbl_12: [
                bc(conv(cin, 448, 1), vb.pp("branch3x3dbl_1"))?,
                bc(conv(448, 384, 3).padding(1), vb.pp("branch3x3dbl_2"))?,
            ],
            branch3x3dbl_3: [
                bc(c1x3(384, 384), vb.pp("branch3x3dbl_3a"))?,
                bc(c3x1(384, 384), vb.pp("branch3x3dbl_3b"))?,
            ],
            pool: avg_pool_3x3(format!("{}.avg_pool", vb.prefix()))?,
            branch_pool: bc(conv(cin, 192, 1), vb.pp("branch_pool"))?,
        })
    }
}

impl Layer for InceptionE {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let b1 = self.branch1x1.forward_t(xs, train)?;
        let b3 = self.branch3x3_1.forward_t(xs, train)?;
        let b3a = self.branch3x3_2[0].forward_t(&b3, train)?;
        let b3b = self.branch3x3_2[1].forward_t(&b3, train)?;
        let bd = run_chain(&self.branch3x3dbl_12, xs, train)?;
        let bda = self.branch3x3dbl_3[0].forward_t(&bd, train)?;
        let bdb = self.branch3x3dbl_3[1].forward_t(&bd, train)?;
        let bp = self
            .branch_pool
            .forward_t(&self.pool.forward_t(xs, train)?, train)?;
        Ok(Tensor::cat(&[b1, b3a, b3b, bda, bdb, bp], 1)?)
    }
}

/// Inception-v3's auxiliary classifier (torchvision's `InceptionAux`, variables `AuxLogits.*`
/// in the whole model): average pool 5x5 stride 3, `conv0` 1x1 `BasicConv2d` to 128 channels,
/// `conv1` 5x5 `BasicConv2d` to 768 channels, adaptive average pool to 1x1, `fc` 768 ->
/// classes. Needs a `[N, C, H>=17, W>=17]` input (`Mixed_6e`'s output of a 299x299 image).
///
/// Fresh variables as torchvision: convolution weights normal with standard deviation 0.1
/// (torchvision sets `stddev = 0.01` on the `conv1` wrapper module, which its init loop never
/// looks at, so `conv1` gets the 0.1 of every other convolution), `fc.weight` 0.001,
/// `fc.bias` PyTorch's default.
pub struct InceptionAux {
    pool: AvgPool2d,
    conv0: ConvBlock,
    conv1: ConvBlock,
    avgpool: AdaptiveAvgPool2d,
    fc: Linear,
}

impl InceptionAux {
    /// Builds the head over `in_channels` (768 in Inception-v3); variables `conv0.*`,
    /// `conv1.*`, `fc.*` under `vb`.
    pub fn new(in_channels: usize, num_classes: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            pool: AvgPool2d::new(PoolConfig::new(5).stride(3))?.named(format!("{}.avg_pool", vb.prefix())),
            conv0: bc(conv(in_channels, 128, 1), vb.pp("conv0"))?,
            conv1: bc(conv(128, 768, 5), vb.pp("conv1"))?,
            avgpool: AdaptiveAvgPool2d::new((1, 1))?.named(format!("{}.avgpool", vb.prefix())),
            fc: Linear::with_init(
                768,
                num_classes,
                true,
                normal(0.001),
                torch_default(768),
                vb.pp("fc"),
            )?,
        })
    }
}

impl Layer for InceptionAux {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let xs = self.pool.forward_t(xs, train)?;
        let xs = self.conv1.forward_t(&self.conv0.forward_t(&xs, train)?, train)?;
        let xs = Flatten::new().forward_t(&self.avgpool.forward_t(&xs, train)?, train)?;
        self.fc.forward_t(&xs, train)
    }
}

/// Inception-v3; see the [crate documentation](crate).
pub struct InceptionV3 {
    config: InceptionV3Config,
    /// The dtype and device of the weights, which inputs must have.
    input_type: InputType,
    stem: Vec<Box<dyn Layer>>,
    mixed_5_6: Vec<Box<dyn Layer>>,
    aux: Option<InceptionAux>,
    mixed_7: Vec<Box<dyn Layer>>,
    avgpool: AdaptiveAvgPool2d,
    dropout: Dropout,
    fc: Linear,
}

impl InceptionV3 {
    /// Builds the model with torchvision's (and timm's) variable names
    /// (`Conv2d_1a_3x3.conv.weight`, `Mixed_6b.branch7x7_2.bn.running_var`,
    /// `AuxLogits.fc.weight`, `fc.weight`, ...); `AuxLogits.*` only when `config.aux_logits`.
    ///
    /// Fresh variables follow torchvision's `init_weights=True`: convolution and linear
    /// weights normal with standard deviation 0.1 (0.001 for `AuxLogits.fc`; torchvision
    /// truncates at +-2, 20 standard deviations away, which never happens), linear biases
    /// PyTorch's default, batch norm scale 1 and shift 0.
    pub fn new(config: &InceptionV3Config, vb: VarBuilder) -> Result<Self> {
        Self::build(config, vb.clone(), vb.pp("AuxLogits"))
    }

    /// Builds the model with the auxiliary head's variables taken from `aux_vb`.
    fn build(config: &InceptionV3Config, vb: VarBuilder, aux_vb: VarBuilder) -> Result<Self> {
        let input_type = InputType::of(&vb);
        if config.num_classes == 0 || config.in_channels == 0 {
            return Err(Error::config(format!(
                "inception_v3: need at least one class and one input channel: {config:?}"
            )));
        }
        common::check_transform("inception_v3", config.transform_input, config.in_channels)?;
        let stem: Vec<Box<dyn Layer>> = vec![
            Box::new(bc(
                conv(config.in_channels, 32, 3).stride(2),
                vb.pp("Conv2d_1a_3x3"),
            )?),
            Box::new(bc(conv(32, 32, 3), vb.pp("Conv2d_2a_3x3"))?),
            Box::new(bc(conv(32, 64, 3).padding(1), vb.pp("Conv2d_2b_3x3"))?),
            Box::new(max_pool_3x3_s2("maxpool1".into())?),
            Box::new(bc(conv(64, 80, 1), vb.pp("Conv2d_3b_1x1"))?),
            Box::new(bc(conv(80, 192, 3), vb.pp("Conv2d_4a_3x3"))?),
            Box::new(max_pool_3x3_s2("maxpool2".into())?),
        ];
        let mixed_5_6: Vec<Box<dyn Layer>> = vec![
            Box::new(InceptionA::new(192, 32, vb.pp("Mixed_5b"))?),
            Box::new(InceptionA::new(256, 64, vb.pp("Mixed_5c"))?),
            Box::new(InceptionA::new(288, 64, vb.pp("Mixed_5d"))?),
            Box::new(InceptionB::new(288, vb.pp("Mixed_6a"))?),
            Box::new(InceptionC::new(768, 128, vb.pp("Mixed_6b"))?),
            Box::new(InceptionC::new(768, 160, vb.pp("Mixed_6c"))?),
            Box::new(InceptionC::new(768, 160, vb.pp("Mixed_6d"))?),
            Box::new(InceptionC::new(768, 192, vb.pp("Mixed_6e"))?),
        ];
        let aux = if config.aux_logits {
            Some(InceptionAux::new(768, config.num_classes, aux_vb)?)
        } else {
            None
        };
        let mixed_7: Vec<Box<dyn Layer>> = vec![
            Box::new(InceptionD::new(768, vb.pp("Mixed_7a"))?),
            Box::new(InceptionE::new(1280, vb.pp("Mixed_7b"))?),
            Box::new(InceptionE::new(2048, vb.pp("Mixed_7c"))?),
        ];
        Ok(Self {
            input_type,
            config: *config,
            stem,
            mixed_5_6,
            aux,
            mixed_7,
            avgpool: AdaptiveAvgPool2d::new((1, 1))?.named("avgpool"),
            dropout: Dropout::new(config.dropout)?,
            fc: Linear::with_init(
                FEATURES,
                config.num_classes,
                true,
                normal(INIT_STD),
                torch_default(FEATURES),
                vb.pp("fc"),
            )?,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &InceptionV3Config {
        &self.config
    }

    /// The trunk up to the flattened global average pool `[N, 2048]`, and the auxiliary
    /// logits when `with_aux` and the head exists (empty otherwise).
    /// The network up to `Mixed_7c`'s map, the auxiliary logits when `with_aux`, and the
    /// feature stages' maps when `stages` is given.
    fn run(
        &self,
        xs: &Tensor,
        train: bool,
        with_aux: bool,
        mut stages: Option<&mut Vec<Tensor>>,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        check_input(self.name(), &self.input_spec(), &self.input_type, xs)?;
        let head = self.aux.as_ref().filter(|_| with_aux);
        if head.is_some() {
            let spec = InputSpec {
                min_size: (MIN_SIZE_AUX, MIN_SIZE_AUX),
                ..self.input_spec()
            };
            check_input(
                "inception_v3 (auxiliary head, in training)",
                &spec,
                &self.input_type,
                xs,
            )?;
        }
        let mut xs = if self.config.transform_input {
            common::transform_input(xs)?
        } else {
            xs.clone()
        };
        // Feature stages: Conv2d_2b_3x3, Conv2d_4a_3x3, Mixed_5d, Mixed_6e (and Mixed_7c).
        let last_6 = self.mixed_5_6.len() - 1;
        let chain = self
            .stem
            .iter()
            .enumerate()
            .chain(self.mixed_5_6.iter().enumerate().map(|(i, l)| (i + 100, l)));
        for (i, layer) in chain {
            xs = layer.forward_t(&xs, train)?;
            if let Some(stages) = stages.as_deref_mut() {
                if [2, 5, 102, 100 + last_6].contains(&i) {
                    stages.push(xs.clone());
                }
            }
        }
        let aux_logits = match head {
            Some(head) => vec![head.forward_t(&xs, train)?],
            None => Vec::new(),
        };
        for layer in &self.mixed_7 {
            xs = layer.forward_t(&xs, train)?;
        }
        if let Some(stages) = stages {
            stages.push(xs.clone());
        }
        Ok((xs, aux_logits))
    }
}

impl Backbone for InceptionV3 {
    fn name(&self) -> &str {
        "inception_v3"
    }

    fn input_spec(&self) -> InputSpec {
        InputSpec {
            channels: self.config.in_channels,
            min_size: (MIN_SIZE, MIN_SIZE),
            fixed_size: None,
            default_size: (299, 299),
        }
    }

    /// `Mixed_7c`'s map, `[N, 2048, h, w]`. The auxiliary head never runs here (see
    /// [`Backbone::forward_aux`]).
    fn forward_features(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.run(xs, train, false, None)?.0)
    }

    /// Global average pool, flatten, dropout (in training).
    fn forward_pre_logits(&self, features: &Tensor, train: bool) -> Result<Tensor> {
        common::pooled_pre_logits(&self.avgpool, &self.dropout, features, train)
    }

    fn forward_classifier(&self, pre_logits: &Tensor, train: bool) -> Result<Tensor> {
        self.fc.forward_t(pre_logits, train)
    }

    /// timm's: `Conv2d_2b_3x3`, `Conv2d_4a_3x3`, `Mixed_5d`, `Mixed_6e`, `Mixed_7c`.
    fn feature_info(&self) -> Vec<FeatureInfo> {
        vec![
            FeatureInfo::new("Conv2d_2b_3x3", 64, 2),
            FeatureInfo::new("Conv2d_4a_3x3", 192, 4),
            FeatureInfo::new("Mixed_5d", 288, 8),
            FeatureInfo::new("Mixed_6e", 768, 16),
            FeatureInfo::new("Mixed_7c", FEATURES, 32),
        ]
    }

    fn forward_stages(&self, xs: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        let mut stages = Vec::with_capacity(5);
        self.run(xs, train, false, Some(&mut stages))?;
        Ok(stages)
    }

    /// The main logits and, when `train` and the auxiliary head exists, its logits
    /// (`aux_logits` of length 1; torchvision's `InceptionOutputs.aux_logits`). The head
    /// needs inputs of at least 299x299; smaller inputs are refused with
    /// [`Error::InputShape`] in that case (torchvision fails inside `AuxLogits.conv1`).
    fn forward_aux(&self, xs: &Tensor, train: bool) -> Result<ModelOutput> {
        let (features, aux_logits) = self.run(xs, train, train, None)?;
        Ok(ModelOutput {
            logits: self.forward_head(&features, train)?,
            aux_logits,
        })
    }

    fn num_features(&self) -> usize {
        FEATURES
    }

    fn num_classes(&self) -> usize {
        self.config.num_classes
    }

    fn head_prefix(&self) -> &str {
        "fc"
    }

    /// `["AuxLogits.fc"]` when the auxiliary head exists.
    fn aux_head_prefixes(&self) -> Vec<String> {
        if self.aux.is_some() {
            vec!["AuxLogits.fc".into()]
        } else {
            Vec::new()
        }
    }
}
