//! The channel-boosted network: auxiliary learners add channels to the input, a main network
//! classifies the boosted input.

use crate::autoencoder::{AutoencoderConfig, ConvAutoencoder};
use backbone::summary::{record, LayerRecord};
use backbone::{
    check_input, Backbone, Error, FeatureInfo, InputSpec, InputType, ModelOutput, Reconstructor, Result,
};
use candle_core::Tensor;
use candle_nn::VarBuilder;

/// Prefix of the autoencoder's variables.
pub const AE_PREFIX: &str = "booster.ae";
/// Prefix of the frozen feature extractor's variables (its own state-dict names below).
pub const EXTRACTOR_PREFIX: &str = "booster.extractor";
/// Prefix of the main network's variables (its own state-dict names below).
pub const MAIN_PREFIX: &str = "main";

/// A channel-boosted network's configuration; the main network and the extractor are built by
/// the caller (see [`ChannelBoosted::new`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelBoostedConfig {
    /// The name of the variant (`cbcnn_lenet`).
    pub name: String,
    /// Channels of the images.
    pub in_channels: usize,
    /// The autoencoder's widths (its input channels are `in_channels`), if it has one.
    pub autoencoder: Option<AutoencoderConfig>,
    /// The stage of the frozen extractor's [`Backbone::feature_info`] whose map is resized to
    /// the input and added, if it has an extractor.
    pub extractor_stage: Option<usize>,
}

impl ChannelBoostedConfig {
    /// Sets the number of input channels (the autoencoder's follow).
    pub fn with_in_channels(mut self, in_channels: usize) -> Self {
        self.in_channels = in_channels;
        if let Some(ae) = &mut self.autoencoder {
            ae.in_channels = in_channels;
        }
        self
    }
}

/// Where the boosted input's channels come from, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoostedChannels {
    /// The image's own channels.
    pub original: usize,
    /// The autoencoder's code channels.
    pub autoencoder: usize,
    /// The extractor stage's channels.
    pub extractor: usize,
}

impl BoostedChannels {
    /// All of them: the main network's input channels.
    pub fn total(&self) -> usize {
        self.original + self.autoencoder + self.extractor
    }
}

/// Builds a part of the composite (the main network, the extractor) from a var builder under
/// its prefix; the main network's builder also receives its input channels.
pub type PartBuilder<'a> = &'a dyn Fn(usize, VarBuilder) -> Result<Box<dyn Backbone>>;

/// A frozen model of the catalogue used as a feature extractor.
struct Extractor {
    model: Box<dyn Backbone>,
    stage: usize,
    channels: usize,
}

/// Khan et al.'s channel-boosted CNN: the image's channels, the frozen autoencoder's code
/// (upsampled to the input size) and a frozen extractor's stage map (resized bilinearly to
/// the input size) concatenated, then the main network. See the [crate documentation](crate).
pub struct ChannelBoosted {
    config: ChannelBoostedConfig,
    input_type: InputType,
    channels: BoostedChannels,
    autoencoder: Option<ConvAutoencoder>,
    extractor: Option<Extractor>,
    main: Box<dyn Backbone>,
    head_prefix: String,
}

impl ChannelBoosted {
    /// Builds the network: the autoencoder under `booster.ae`, `extractor` (a model taking the
    /// images, called with `in_channels` and a var builder under `booster.extractor`; needed
    /// exactly when `config.extractor_stage` is set) and `main` (called with the boosted
    /// channel count and a var builder under `main`). Errors name what disagrees: an
    /// extractor without a stage or a stage past its last, a main network with other input
    /// channels.
    pub fn new(
        config: &ChannelBoostedConfig,
        vb: VarBuilder,
        main: PartBuilder,
        extractor: Option<PartBuilder>,
    ) -> Result<Self> {
        let input_type = InputType::of(&vb);
        let autoencoder = match &config.autoencoder {
            Some(ae) if ae.in_channels != config.in_channels => {
                return Err(Error::config(format!(
                    "{}: the autoencoder takes {} channels but the images have {}",
                    config.name, ae.in_channels, config.in_channels
                )))
            }
            Some(ae) => Some(ConvAutoencoder::new(ae, vb.pp(AE_PREFIX))?),
            None => None,
        };
        let extractor = match (config.extractor_stage, extractor) {
            (Some(stage), Some(build)) => {
                let model = build(config.in_channels, vb.pp(EXTRACTOR_PREFIX))?;
                let info = model.feature_info();
                let channels = info
                    .get(stage)
                    .ok_or_else(|| {
                        Error::config(format!(
                            "{}: the extractor {} has no feature stage {stage}; it has {}",
                            config.name,
                            model.name(),
                            info.len()
                        ))
                    })?
                    .channels;
                Some(Extractor {
                    model,
                    stage,
                    channels,
                })
            }
            (None, None) => None,
            (stage, build) => {
                return Err(Error::config(format!(
                    "{}: an extractor needs both a stage and a builder, got stage {stage:?} and {} builder",
                    config.name,
                    if build.is_some() { "a" } else { "no" }
                )))
            }
        };
        let channels = BoostedChannels {
            original: config.in_channels,
            autoencoder: config.autoencoder.map_or(0, |ae| ae.code),
            extractor: extractor.as_ref().map_or(0, |e| e.channels),
        };
        let main = main(channels.total(), vb.pp(MAIN_PREFIX))?;
        if main.input_spec().channels != channels.total() {
            return Err(Error::config(format!(
                "{}: the main network {} takes {} channels, expected the {} boosted ones",
                config.name,
                main.name(),
                main.input_spec().channels,
                channels.total()
            )));
        }
        let head_prefix = format!("{MAIN_PREFIX}.{}", main.head_prefix());
        Ok(Self {
            config: config.clone(),
            input_type,
            channels,
            autoencoder,
            extractor,
            main,
            head_prefix,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ChannelBoostedConfig {
        &self.config
    }

    /// Where the boosted channels come from.
    pub fn channels(&self) -> BoostedChannels {
        self.channels
    }

    /// The main network.
    pub fn main(&self) -> &dyn Backbone {
        self.main.as_ref()
    }

    /// The autoencoder, if any.
    pub fn autoencoder(&self) -> Option<&ConvAutoencoder> {
        self.autoencoder.as_ref()
    }

    /// The frozen extractor, if any.
    pub fn extractor(&self) -> Option<&dyn Backbone> {
        self.extractor.as_ref().map(|e| e.model.as_ref())
    }

    /// Images `[N, C, H, W]` -> the boosted input `[N, C + code + extractor, H, W]`: the
    /// auxiliary learners run in eval mode, detached (no gradient reaches them, batch norm
    /// statistics untouched).
    pub fn boost(&self, xs: &Tensor) -> Result<Tensor> {
        check_input(&self.config.name, &self.input_spec(), &self.input_type, xs)?;
        let (n, _, h, w) = xs.dims4()?;
        let mut parts = vec![xs.clone()];
        if let Some(ae) = &self.autoencoder {
            // Detached through backbone::trace, so that an ONNX export sees the link.
            let code = backbone::trace::detach(&backbone::inference_mode(|| ae.encode(xs, false))?);
            parts.push(ae.upsample(&code)?);
        }
        if let Some(e) = &self.extractor {
            let map = backbone::trace::detach(
                &backbone::inference_mode(|| e.model.forward_intermediates(xs, &[e.stage], false))?.remove(0),
            );
            let resized = map.upsample_bilinear2d(h, w, false)?;
            record(|| {
                LayerRecord::shape_only(
                    &format!("{EXTRACTOR_PREFIX}.resize"),
                    "Resize",
                    map.dims(),
                    resized.dims(),
                )
            });
            parts.push(resized);
        }
        let boosted = Tensor::cat(&parts, 1)?;
        let c = self.channels;
        record(|| {
            LayerRecord::shape_only(
                &format!(
                    "boost ({} + ae {} + extractor {})",
                    c.original, c.autoencoder, c.extractor
                ),
                "ChannelBoost",
                &[n, c.original, h, w],
                boosted.dims(),
            )
        });
        Ok(boosted)
    }
}

impl Backbone for ChannelBoosted {
    fn name(&self) -> &str {
        &self.config.name
    }

    /// The images' channels, the sizes both the main network and the extractor accept, even
    /// when there is an autoencoder (checked by [`ChannelBoosted::boost`]).
    fn input_spec(&self) -> InputSpec {
        let main = self.main.input_spec();
        let mut spec = InputSpec {
            channels: self.config.in_channels,
            ..main
        };
        if let Some(e) = &self.extractor {
            let other = e.model.input_spec();
            spec.min_size = (
                spec.min_size.0.max(other.min_size.0),
                spec.min_size.1.max(other.min_size.1),
            );
            spec.fixed_size = spec.fixed_size.or(other.fixed_size);
        }
        if self.autoencoder.is_some() {
            spec.min_size = (spec.min_size.0.max(2), spec.min_size.1.max(2));
        }
        spec
    }

    /// The main network's last map, from the boosted input.
    fn forward_features(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        self.main.forward_features(&self.boost(xs)?, train)
    }

    fn forward_pre_logits(&self, features: &Tensor, train: bool) -> Result<Tensor> {
        self.main.forward_pre_logits(features, train)
    }

    fn forward_classifier(&self, pre_logits: &Tensor, train: bool) -> Result<Tensor> {
        self.main.forward_classifier(pre_logits, train)
    }

    /// The main network's stages, under `main.`.
    fn feature_info(&self) -> Vec<FeatureInfo> {
        self.main
            .feature_info()
            .into_iter()
            .map(|f| FeatureInfo::new(format!("{MAIN_PREFIX}.{}", f.module), f.channels, f.reduction))
            .collect()
    }

    fn forward_stages(&self, xs: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        self.main.forward_stages(&self.boost(xs)?, train)
    }

    fn forward_aux(&self, xs: &Tensor, train: bool) -> Result<ModelOutput> {
        self.main.forward_aux(&self.boost(xs)?, train)
    }

    fn num_features(&self) -> usize {
        self.main.num_features()
    }

    fn num_classes(&self) -> usize {
        self.main.num_classes()
    }

    fn head_prefix(&self) -> &str {
        &self.head_prefix
    }

    fn aux_head_prefixes(&self) -> Vec<String> {
        self.main
            .aux_head_prefixes()
            .into_iter()
            .map(|p| format!("{MAIN_PREFIX}.{p}"))
            .collect()
    }

    /// The autoencoder (trained before, by [`Backbone::reconstructors`]) and the extractor.
    fn frozen_prefixes(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.autoencoder.is_some() {
            out.push(AE_PREFIX.to_string());
        }
        if self.extractor.is_some() {
            out.push(EXTRACTOR_PREFIX.to_string());
        }
        out
    }

    fn reconstructors(&self) -> Vec<&dyn Reconstructor> {
        self.autoencoder
            .iter()
            .map(|ae| ae as &dyn Reconstructor)
            .collect()
    }
}
