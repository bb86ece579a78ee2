//! GoogLeNet (Inception v1), torchvision's layout.

use crate::common::{self, basic_conv, conv, normal};
use backbone::init::torch_default;
use backbone::layers::{
    AdaptiveAvgPool2d, ConvBlock, Dropout, Flatten, Layer, Linear, MaxPool2d, PoolConfig,
};
use backbone::{check_input, Backbone, Error, FeatureInfo, InputSpec, InputType, ModelOutput, Result};
use candle_core::Tensor;
use candle_nn::VarBuilder;

/// The kernel of the second convolution of each inception module's third branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Branch3Kernel {
    /// 3x3, padding 1: torchvision's implementation (and the weights it ports), a known
    /// deviation from the paper kept for compatibility (pytorch/vision#906).
    Torchvision3x3,
    /// 5x5, padding 2: the paper's "5x5" branch.
    Paper5x5,
}

impl Branch3Kernel {
    fn kernel_and_padding(self) -> (usize, usize) {
        match self {
            Branch3Kernel::Torchvision3x3 => (3, 1),
            Branch3Kernel::Paper5x5 => (5, 2),
        }
    }
}

/// A GoogLeNet variant; see the [crate documentation](crate) for the layer table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GoogLeNetConfig {
    /// Input channels (3 for ImageNet).
    pub in_channels: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// Whether the two auxiliary classifiers `aux1` and `aux2` exist (their variables are
    /// created only then).
    pub aux_logits: bool,
    /// torchvision's `transform_input`: re-normalise an ImageNet-normalised input to mean 0.5,
    /// standard deviation 0.5 per channel (what torchvision's ported weights expect; its
    /// `googlenet(weights=...)` switches it on). Needs 3 input channels.
    pub transform_input: bool,
    /// The kernel of the inception modules' branch3 (torchvision's 3x3 or the paper's 5x5).
    pub branch3: Branch3Kernel,
    /// Dropout before `fc` (0.2; 0 switches it off).
    pub dropout: f32,
    /// Dropout between the auxiliary heads' `fc1` and `fc2` (0.7; 0 switches it off).
    pub aux_dropout: f32,
}

impl GoogLeNetConfig {
    /// torchvision's `GoogLeNet()`: 3x3 branch3 convolutions, auxiliary heads, 1000 classes,
    /// no input transform, dropout 0.2 and 0.7.
    pub fn googlenet() -> Self {
        Self {
            in_channels: 3,
            num_classes: 1000,
            aux_logits: true,
            transform_input: false,
            branch3: Branch3Kernel::Torchvision3x3,
            dropout: 0.2,
            aux_dropout: 0.7,
        }
    }

    /// The paper's 5x5 convolutions (padding 2) in the inception modules' third branch.
    pub fn googlenet_paper() -> Self {
        Self {
            branch3: Branch3Kernel::Paper5x5,
            ..Self::googlenet()
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

    /// Switches the auxiliary classifiers on or off.
    pub fn with_aux_logits(mut self, aux_logits: bool) -> Self {
        self.aux_logits = aux_logits;
        self
    }

    /// Switches torchvision's input transform on or off.
    pub fn with_transform_input(mut self, transform_input: bool) -> Self {
        self.transform_input = transform_input;
        self
    }

    /// Sets the main and the auxiliary dropout probabilities (0 switches dropout off).
    pub fn with_dropout(mut self, dropout: f32, aux_dropout: f32) -> Self {
        self.dropout = dropout;
        self.aux_dropout = aux_dropout;
        self
    }
}

impl Default for GoogLeNetConfig {
    fn default() -> Self {
        Self::googlenet()
    }
}

/// The standard deviation of torchvision's initialisation of every convolution and linear
/// weight of GoogLeNet.
const INIT_STD: f64 = 0.01;
const FEATURES: usize = 1024;
/// The smallest input every ceil-mode max pool accepts (torchvision's `min_size`).
const MIN_SIZE: usize = 15;

/// An inception module: four branches concatenated along the channels.
struct Inception {
    branch1: ConvBlock,
    branch2: [ConvBlock; 2],
    branch3: [ConvBlock; 2],
    pool: MaxPool2d,
    branch4: ConvBlock,
}

/// The widths of an inception module: `(in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj)`.
type Widths = (usize, usize, usize, usize, usize, usize, usize);

impl Inception {
    fn new(widths: Widths, branch3: Branch3Kernel, vb: VarBuilder) -> Result<Self> {
        let (cin, c1, c3r, c3, c5r, c5, pool_proj) = widths;
        let (k5, p5) = branch3.kernel_and_padding();
        let b2 = vb.pp("branch2");
        let b3 = vb.pp("branch3");
        Ok(Self {
            branch1: basic_conv(conv(cin, c1, 1), INIT_STD, vb.pp("branch1"))?,
            branch2: [
                basic_conv(conv(cin, c3r, 1), INIT_STD, b2.pp("0"))?,
                basic_conv(conv(c3r, c3, 3).padding(1), INIT_STD, b2.pp("1"))?,
            ],
            branch3: [
                basic_conv(conv(cin, c5r, 1), INIT_STD, b3.pp("0"))?,
                basic_conv(conv(c5r, c5, k5).padding(p5), INIT_STD, b3.pp("1"))?,
            ],
            pool: MaxPool2d::new(PoolConfig::new(3).stride(1).padding(1).ceil_mode(true))?
                .named(format!("{}.branch4.0", vb.prefix())),
            branch4: basic_conv(conv(cin, pool_proj, 1), INIT_STD, vb.pp("branch4").pp("1"))?,
        })
    }
}

impl Layer for Inception {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let b1 = self.branch1.forward_t(xs, train)?;
        let b2 = self.branch2[1].forward_t(&self.branch2[0].forward_t(xs, train)?, train)?;
        let b3 = self.branch3[1].forward_t(&self.branch3[0].forward_t(xs, train)?, train)?;
        let b4 = self.branch4.forward_t(&self.pool.forward_t(xs, train)?, train)?;
        Ok(Tensor::cat(&[b1, b2, b3, b4], 1)?)
    }
}

/// An auxiliary classifier (torchvision's `InceptionAux` of GoogLeNet): adaptive average
/// pooling to 4x4, a 1x1 `BasicConv2d` to 128 channels, `fc1` 2048 -> 1024, ReLU, dropout,
/// `fc2` 1024 -> classes.
struct AuxHead {
    pool: AdaptiveAvgPool2d,
    conv: ConvBlock,
    fc1: Linear,
    dropout: Dropout,
    fc2: Linear,
}

impl AuxHead {
    fn new(in_channels: usize, config: &GoogLeNetConfig, vb: VarBuilder) -> Result<Self> {
        let linear = |fan_in: usize, out: usize, vb: VarBuilder| {
            Linear::with_init(fan_in, out, true, normal(INIT_STD), torch_default(fan_in), vb)
        };
        Ok(Self {
            pool: AdaptiveAvgPool2d::new((4, 4))?.named(format!("{}.avgpool", vb.prefix())),
            conv: basic_conv(conv(in_channels, 128, 1), INIT_STD, vb.pp("conv"))?,
            fc1: linear(2048, 1024, vb.pp("fc1"))?,
            dropout: Dropout::new(config.aux_dropout)?,
            fc2: linear(1024, config.num_classes, vb.pp("fc2"))?,
        })
    }
}

impl Layer for AuxHead {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let xs = self.conv.forward_t(&self.pool.forward_t(xs, train)?, train)?;
        let xs = Flatten::new().forward_t(&xs, train)?;
        let xs = self.fc1.forward_t(&xs, train)?.relu()?;
        let xs = self.dropout.forward_t(&xs, train)?;
        self.fc2.forward_t(&xs, train)
    }
}

/// GoogLeNet (Inception v1); see the [crate documentation](crate).
pub struct GoogLeNet {
    config: GoogLeNetConfig,
    /// The dtype and device of the weights, which inputs must have.
    input_type: InputType,
    conv1: ConvBlock,
    maxpool1: MaxPool2d,
    conv2: ConvBlock,
    conv3: ConvBlock,
    maxpool2: MaxPool2d,
    inception3: [Inception; 2],
    maxpool3: MaxPool2d,
    inception4: [Inception; 5],
    maxpool4: MaxPool2d,
    inception5: [Inception; 2],
    aux: Option<[AuxHead; 2]>,
    avgpool: AdaptiveAvgPool2d,
    dropout: Dropout,
    fc: Linear,
}

impl GoogLeNet {
    /// Builds the model with torchvision's variable names (`conv1.conv.weight`,
    /// `conv1.bn.running_mean`, `inception3a.branch2.1.conv.weight`, `aux1.fc2.weight`,
    /// `fc.weight`, ...); `aux1.*` and `aux2.*` only when `config.aux_logits`.
    ///
    /// Fresh variables follow torchvision's `init_weights=True`: convolution and linear
    /// weights normal with standard deviation 0.01 (torchvision truncates at +-2, 200
    /// standard deviations away, which never happens), linear biases PyTorch's default,
    /// batch norm scale 1 and shift 0.
    pub fn new(config: &GoogLeNetConfig, vb: VarBuilder) -> Result<Self> {
        let input_type = InputType::of(&vb);
        if config.num_classes == 0 || config.in_channels == 0 {
            return Err(Error::config(format!(
                "googlenet: need at least one class and one input channel: {config:?}"
            )));
        }
        common::check_transform("googlenet", config.transform_input, config.in_channels)?;
        let maxpool = |kernel: usize, name: &str| -> Result<MaxPool2d> {
            Ok(MaxPool2d::new(PoolConfig::new(kernel).stride(2).ceil_mode(true))?.named(name))
        };
        let inception = |name: &str, widths: Widths| Inception::new(widths, config.branch3, vb.pp(name));
        let aux = if config.aux_logits {
            Some([
                AuxHead::new(512, config, vb.pp("aux1"))?,
                AuxHead::new(528, config, vb.pp("aux2"))?,
            ])
        } else {
            None
        };
        Ok(Self {
            input_type,
            config: *config,
            conv1: basic_conv(
                conv(config.in_channels, 64, 7).stride(2).padding(3),
                INIT_STD,
                vb.pp("conv1"),
            )?,
            maxpool1: maxpool(3, "maxpool1")?,
            conv2: basic_conv(conv(64, 64, 1), INIT_STD, vb.pp("conv2"))?,
            conv3: basic_conv(conv(64, 192, 3).padding(1), INIT_STD, vb.pp("conv3"))?,
            maxpool2: maxpool(3, "maxpool2")?,
            inception3: [
                inception("inception3a", (192, 64, 96, 128, 16, 32, 32))?,
                inception("inception3b", (256, 128, 128, 192, 32, 96, 64))?,
            ],
            maxpool3: maxpool(3, "maxpool3")?,
            inception4: [
                inception("inception4a", (480, 192, 96, 208, 16, 48, 64))?,
                inception("inception4b", (512, 160, 112, 224, 24, 64, 64))?,
                inception("inception4c", (512, 128, 128, 256, 24, 64, 64))?,
                inception("inception4d", (512, 112, 144, 288, 32, 64, 64))?,
                inception("inception4e", (528, 256, 160, 320, 32, 128, 128))?,
            ],
            maxpool4: maxpool(2, "maxpool4")?,
            inception5: [
                inception("inception5a", (832, 256, 160, 320, 32, 128, 128))?,
                inception("inception5b", (832, 384, 192, 384, 48, 128, 128))?,
            ],
            aux,
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
    pub fn config(&self) -> &GoogLeNetConfig {
        &self.config
    }

    /// The trunk up to the flattened global average pool `[N, 1024]`, and the auxiliary
    /// logits `[aux1, aux2]` when `with_aux` (empty otherwise).
    /// The network up to `inception5b`'s map, the auxiliary logits when `with_aux`, and the
    /// feature stages' maps (`conv1`, `conv3`, `inception3b`, `inception4e`, `inception5b`)
    /// when `stages` is given.
    fn run(
        &self,
        xs: &Tensor,
        train: bool,
        with_aux: bool,
        mut stages: Option<&mut Vec<Tensor>>,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        check_input(self.name(), &self.input_spec(), &self.input_type, xs)?;
        let heads = self.aux.as_ref().filter(|_| with_aux);
        let mut aux_logits = Vec::new();
        let mut xs = if self.config.transform_input {
            common::transform_input(xs)?
        } else {
            xs.clone()
        };
        let mut keep = |xs: &Tensor| {
            if let Some(stages) = stages.as_deref_mut() {
                stages.push(xs.clone());
            }
        };
        for (i, layer) in [
            &self.conv1 as &dyn Layer,
            &self.maxpool1,
            &self.conv2,
            &self.conv3,
            &self.maxpool2,
            &self.inception3[0],
            &self.inception3[1],
            &self.maxpool3,
        ]
        .into_iter()
        .enumerate()
        {
            xs = layer.forward_t(&xs, train)?;
            if [0, 3, 6].contains(&i) {
                keep(&xs);
            }
        }
        for (i, module) in self.inception4.iter().enumerate() {
            xs = module.forward_t(&xs, train)?;
            // aux1 reads inception4a's output, aux2 inception4d's.
            let head = match i {
                0 => heads.map(|h| &h[0]),
                3 => heads.map(|h| &h[1]),
                _ => None,
            };
            if let Some(head) = head {
                aux_logits.push(head.forward_t(&xs, train)?);
            }
        }
        keep(&xs);
        for layer in [
            &self.maxpool4 as &dyn Layer,
            &self.inception5[0],
            &self.inception5[1],
        ] {
            xs = layer.forward_t(&xs, train)?;
        }
        keep(&xs);
        Ok((xs, aux_logits))
    }
}

impl Backbone for GoogLeNet {
    fn name(&self) -> &str {
        match self.config.branch3 {
            Branch3Kernel::Torchvision3x3 => "googlenet",
            Branch3Kernel::Paper5x5 => "googlenet_paper",
        }
    }

    fn input_spec(&self) -> InputSpec {
        InputSpec {
            channels: self.config.in_channels,
            min_size: (MIN_SIZE, MIN_SIZE),
            fixed_size: None,
            default_size: (224, 224),
        }
    }

    /// `inception5b`'s map, `[N, 1024, h, w]`. The auxiliary heads never run here (see
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

    /// `conv1`, `conv3`, `inception3b`, `inception4e`, `inception5b` (the last map before each
    /// halving, as timm's Inception-v3).
    fn feature_info(&self) -> Vec<FeatureInfo> {
        vec![
            FeatureInfo::new("conv1", 64, 2),
            FeatureInfo::new("conv3", 192, 4),
            FeatureInfo::new("inception3b", 480, 8),
            FeatureInfo::new("inception4e", 832, 16),
            FeatureInfo::new("inception5b", FEATURES, 32),
        ]
    }

    fn forward_stages(&self, xs: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        let mut stages = Vec::with_capacity(5);
        self.run(xs, train, false, Some(&mut stages))?;
        Ok(stages)
    }

    /// The main logits and, when `train` and the auxiliary heads exist, their logits in the
    /// order **`[aux1, aux2]`** (the network's order: `aux1` after `inception4a`, `aux2` after
    /// `inception4d`). torchvision returns `(logits, aux2, aux1)`; here `aux_logits[0]` is
    /// torchvision's third element. In eval mode `aux_logits` is empty, as torchvision
    /// returns the logits alone.
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

    /// `["aux1.fc2", "aux2.fc2"]` when the auxiliary heads exist.
    fn aux_head_prefixes(&self) -> Vec<String> {
        if self.aux.is_some() {
            vec!["aux1.fc2".into(), "aux2.fc2".into()]
        } else {
            Vec::new()
        }
    }
}
