//! The plain convolutional networks' one [`Backbone`] implementation (AlexNet, ZFNet, VGG): a
//! `features` chain of convolutions, ReLUs (batch norms, LRNs) and poolings, its feature
//! stages, an MLP pre-logits and a linear final classifier `classifier.6` (torchvision's
//! names). A network holds its parts as data ([`PlainParts`]) and gets the whole contract by
//! returning them ([`PlainNet`]); AlexNet and ZFNet, which share AlexNet's classifier, build
//! theirs with [`PlainParts::alexnet`].

use crate::geometry::{build_stack, Stages, Step};
use crate::layers::{
    check_nchw, Activation, AdaptiveAvgPool2d, Dropout, Flatten, Layer, Linear, PlainLayer, PoolConfig,
    Sequential,
};
use crate::{check_input, Backbone, FeatureInfo, InputSpec, InputType, Result};
use candle_core::Tensor;
use candle_nn::VarBuilder;

/// The parts of a plain convolutional network, as data.
pub struct PlainParts {
    /// The model's name (`alexnet`, `vgg16_bn`).
    pub name: String,
    /// The inputs it accepts.
    pub input_spec: InputSpec,
    /// The dtype and device of its weights, which inputs must have.
    pub input_type: InputType,
    /// The convolutional part, `features.*`: `[N, C, H, W]` -> `[N, feature_channels, h, w]`.
    pub features: Sequential,
    /// Its feature stages (positions in `features`).
    pub stages: Stages,
    /// Channels of the features' output, which the pre-logits accept.
    pub feature_channels: usize,
    /// The features -> what enters the final classifier, `[N, num_features]`: adaptive
    /// pooling, flatten, the MLP's hidden layers and dropouts.
    pub pre_logits: Sequential,
    /// The final classifier, `classifier.6`: its input width is the model's `num_features`,
    /// its output width the class count.
    pub head: Linear,
}

/// Width of AlexNet's two hidden fully connected layers, ZFNet's too: the pre-logits.
pub const ALEXNET_HIDDEN: usize = 4096;

/// Side of the adaptive average pooling before AlexNet's classifier.
pub const ALEXNET_POOLED: usize = 6;

impl PlainParts {
    /// An AlexNet-style network (AlexNet, ZFNet): `features` built from `steps` (every pooling
    /// with `pool`, its smallest input computed from them; default input 224x224), then
    /// AlexNet's classifier, torchvision's: `avgpool` (adaptive average pool to 6x6), flatten,
    /// `classifier.0` to `classifier.5` (dropout, fc 4096, ReLU, dropout, fc 4096, ReLU: the
    /// pre-logits) and `classifier.6` (fc 4096 -> classes).
    ///
    /// Fails with [`Error::Config`](crate::Error::Config) on zero channels or classes or a
    /// dropout probability outside `[0, 1)`, and with the builder's error on a missing or
    /// mis-shaped variable.
    pub fn alexnet(
        name: &str,
        steps: &[Step],
        pool: PoolConfig,
        in_channels: usize,
        num_classes: usize,
        dropout: f32,
        vb: VarBuilder,
    ) -> Result<Self> {
        let input_type = InputType::of(&vb);
        let dropout = Dropout::new(dropout)?;
        let stack = build_stack(name, steps, in_channels, pool, dropout, vb.pp("features"))?;
        let flat = stack.out_channels * ALEXNET_POOLED * ALEXNET_POOLED;
        let vc = vb.pp("classifier");
        let pre_logits = Sequential::new()
            .with(AdaptiveAvgPool2d::new((ALEXNET_POOLED, ALEXNET_POOLED))?.named("avgpool"))
            .with(Flatten::new())
            .with(dropout)
            .with(Linear::new(flat, ALEXNET_HIDDEN, vc.pp("1"))?)
            .with(Activation::Relu)
            .with(dropout)
            .with(Linear::new(ALEXNET_HIDDEN, ALEXNET_HIDDEN, vc.pp("4"))?)
            .with(Activation::Relu);
        Ok(Self {
            name: name.to_string(),
            input_spec: InputSpec {
                channels: in_channels,
                min_size: (stack.min_size, stack.min_size),
                fixed_size: None,
                default_size: (224, 224),
            },
            input_type,
            features: stack.layers,
            stages: stack.stages,
            feature_channels: stack.out_channels,
            pre_logits,
            head: Linear::new(ALEXNET_HIDDEN, num_classes, vc.pp("6"))?,
        })
    }
}

/// A plain convolutional network: its [`PlainParts`] make it a [`Backbone`].
pub trait PlainNet: Send + Sync {
    /// Its parts.
    fn plain_parts(&self) -> &PlainParts;
}

impl<T: PlainNet> Backbone for T {
    fn name(&self) -> &str {
        &self.plain_parts().name
    }

    fn input_spec(&self) -> InputSpec {
        self.plain_parts().input_spec
    }

    /// The convolutional part's output, `[N, C, h, w]`, before the adaptive pooling.
    fn forward_features(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let parts = self.plain_parts();
        check_input(&parts.name, &parts.input_spec, &parts.input_type, xs)?;
        parts.features.forward_t(xs, train)
    }

    /// Adaptive average pooling, flatten, the hidden layers of the classifier (with their
    /// dropouts): what enters `classifier.6`. The features must have the convolutional part's
    /// channels (the error names `<model> head`).
    fn forward_pre_logits(&self, features: &Tensor, train: bool) -> Result<Tensor> {
        let parts = self.plain_parts();
        check_nchw(
            &format!("{} head", parts.name),
            features,
            parts.feature_channels,
            (1, 1),
        )?;
        parts.pre_logits.forward_t(features, train)
    }

    fn forward_classifier(&self, pre_logits: &Tensor, train: bool) -> Result<Tensor> {
        self.plain_parts().head.forward_t(pre_logits, train)
    }

    fn feature_info(&self) -> Vec<FeatureInfo> {
        self.plain_parts().stages.info()
    }

    fn forward_stages(&self, xs: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        let parts = self.plain_parts();
        check_input(&parts.name, &parts.input_spec, &parts.input_type, xs)?;
        parts.stages.forward(&parts.features, xs, train)
    }

    fn num_features(&self) -> usize {
        self.plain_parts().head.in_features()
    }

    fn num_classes(&self) -> usize {
        self.plain_parts().head.out_features()
    }

    fn head_prefix(&self) -> &str {
        "classifier.6"
    }

    /// `features`: convolutions with their ReLUs (and batch norms), LRNs, poolings.
    fn plain_features(&self) -> Option<Vec<PlainLayer<'_>>> {
        Layer::plain(&self.plain_parts().features)
    }
}
