//! The small convolutional autoencoder that boosts channels: trained alone on reconstructing
//! the images (the paper's auxiliary learner), then frozen; its code, upsampled back to the
//! input size, is the boosted channels.

use backbone::layers::{Activation, Conv2d, Conv2dConfig, ConvBlock, Layer, MaxPool2d, PoolConfig};
use backbone::summary::{record, LayerRecord};
use backbone::{Error, Reconstructor, Result};
use candle_core::Tensor;
use candle_nn::VarBuilder;

/// The autoencoder's widths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoencoderConfig {
    /// Channels of the images (and of the reconstruction).
    pub in_channels: usize,
    /// Channels of the hidden convolutions.
    pub hidden: usize,
    /// Channels of the code: the boosted channels it adds.
    pub code: usize,
}

impl AutoencoderConfig {
    /// 16 hidden channels, a 4-channel code at half resolution.
    pub const fn small(in_channels: usize) -> Self {
        Self {
            in_channels,
            hidden: 16,
            code: 4,
        }
    }

    /// Its parameters: four 3x3 convolutions with biases.
    pub const fn params(&self) -> usize {
        let (c, h, k) = (self.in_channels, self.hidden, self.code);
        (c * h * 9 + h) + (h * k * 9 + k) + (k * h * 9 + h) + (h * c * 9 + c)
    }
}

/// A convolutional autoencoder; variables (PyTorch `nn.Sequential` indices):
///
/// | key         | layer                              | output          |
/// |-------------|------------------------------------|-----------------|
/// | `encoder.0` | conv 3x3, pad 1, `in -> hidden`, ReLU | hidden x H x W |
/// | `encoder.2` | max pool 2x2                       | hidden x H/2 x W/2 |
/// | `encoder.3` | conv 3x3, pad 1, `hidden -> code`, ReLU | code x H/2 x W/2 |
/// | `decoder.0` | nearest upsampling x2              | code x H x W    |
/// | `decoder.1` | conv 3x3, pad 1, `code -> hidden`, ReLU | hidden x H x W |
/// | `decoder.3` | conv 3x3, pad 1, `hidden -> in`    | in x H x W      |
///
/// Heights and widths must be even (the pooling halves them, the upsampling doubles them).
pub struct ConvAutoencoder {
    config: AutoencoderConfig,
    prefix: String,
    encoder0: ConvBlock,
    pool: MaxPool2d,
    encoder3: ConvBlock,
    decoder1: ConvBlock,
    decoder3: Conv2d,
}

impl ConvAutoencoder {
    /// Builds it under `vb`'s prefix.
    pub fn new(config: &AutoencoderConfig, vb: VarBuilder) -> Result<Self> {
        if config.in_channels == 0 || config.hidden == 0 || config.code == 0 {
            return Err(Error::config(format!(
                "an autoencoder needs positive widths, got {config:?}"
            )));
        }
        let conv = |i, o, name: &str| Conv2d::new(Conv2dConfig::new(i, o, 3).padding(1), vb.pp(name));
        let relu = |conv| ConvBlock::new(conv, None, Some(Activation::Relu));
        let prefix = vb.prefix();
        Ok(Self {
            config: *config,
            encoder0: relu(conv(config.in_channels, config.hidden, "encoder.0")?),
            pool: MaxPool2d::new(PoolConfig::new(2))?.named(join(&prefix, "encoder.2")),
            encoder3: relu(conv(config.hidden, config.code, "encoder.3")?),
            decoder1: relu(conv(config.code, config.hidden, "decoder.1")?),
            decoder3: conv(config.hidden, config.in_channels, "decoder.3")?,
            prefix,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &AutoencoderConfig {
        &self.config
    }

    /// Images `[N, in, H, W]` (H and W even) -> the code `[N, code, H/2, W/2]`.
    pub fn encode(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let (_, c, h, w) = xs.dims4()?;
        if c != self.config.in_channels || h % 2 != 0 || w % 2 != 0 || h < 2 || w < 2 {
            return Err(Error::input_shape(
                self.name(),
                format!("[N, {}, H, W] with H and W even", self.config.in_channels),
                xs.dims(),
            ));
        }
        let xs = self.encoder0.forward_t(xs, train)?;
        let xs = self.pool.forward_t(&xs, train)?;
        self.encoder3.forward_t(&xs, train)
    }

    /// The code `[N, code, h, w]` -> upsampled to `[N, code, 2h, 2w]` (nearest).
    pub fn upsample(&self, code: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = code.dims4()?;
        let out = code.upsample_nearest2d(2 * h, 2 * w)?;
        record(|| {
            LayerRecord::shape_only(
                &join(&self.prefix, "decoder.0"),
                "Upsample",
                &[n, c, h, w],
                out.dims(),
            )
        });
        Ok(out)
    }

    /// The code -> the reconstruction `[N, in, H, W]`.
    pub fn decode(&self, code: &Tensor, train: bool) -> Result<Tensor> {
        let xs = self.upsample(code)?;
        let xs = self.decoder1.forward_t(&xs, train)?;
        self.decoder3.forward_t(&xs, train)
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

impl Reconstructor for ConvAutoencoder {
    fn name(&self) -> &str {
        "autoencoder"
    }

    fn var_prefix(&self) -> &str {
        &self.prefix
    }

    fn reconstruct(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let code = self.encode(xs, train)?;
        self.decode(&code, train)
    }
}
