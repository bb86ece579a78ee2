//! The plain convolutional networks' one [`Backbone`] implementation (AlexNet, ZFNet, VGG): a
//! `features` chain of convolutions, ReLUs (batch norms, LRNs) and poolings, its feature
//! stages, an MLP pre-logits and a linear final classifier `classifier.6` (torchvision's
//! names). A network implements [`PlainNet`] (its parts) and gets the whole contract.

use crate::geometry::Stages;
use crate::layers::{Layer, Linear, PlainLayer, Sequential};
use crate::{check_input, Backbone, FeatureInfo, InputSpec, InputType, Result};
use candle_core::Tensor;

/// The parts of a plain convolutional network; every such type is a [`Backbone`].
pub trait PlainNet: Send + Sync {
    /// The model's name (`alexnet`, `vgg16_bn`).
    fn plain_name(&self) -> &str;
    /// The inputs it accepts.
    fn plain_input_spec(&self) -> InputSpec;
    /// The dtype and device of its weights, which inputs must have.
    fn plain_input_type(&self) -> &InputType;
    /// The convolutional part, `features.*`.
    fn plain_layers(&self) -> &Sequential;
    /// Its feature stages (positions in [`PlainNet::plain_layers`]).
    fn plain_stages(&self) -> &Stages;
    /// The features `[N, C, h, w]` -> what enters the final classifier `[N, num_features]`
    /// (adaptive pooling, flatten, the MLP's hidden layers and dropouts).
    fn plain_pre_logits(&self, features: &Tensor, train: bool) -> Result<Tensor>;
    /// The final classifier, `classifier.6`.
    fn plain_head(&self) -> &Linear;
    /// `(num_features, num_classes)`: the widths of the final classifier.
    fn plain_widths(&self) -> (usize, usize);
}

impl<T: PlainNet> Backbone for T {
    fn name(&self) -> &str {
        self.plain_name()
    }

    fn input_spec(&self) -> InputSpec {
        self.plain_input_spec()
    }

    /// The convolutional part's output, `[N, C, h, w]`, before the adaptive pooling.
    fn forward_features(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        check_input(
            self.plain_name(),
            &self.plain_input_spec(),
            self.plain_input_type(),
            xs,
        )?;
        self.plain_layers().forward_t(xs, train)
    }

    fn forward_pre_logits(&self, features: &Tensor, train: bool) -> Result<Tensor> {
        self.plain_pre_logits(features, train)
    }

    fn forward_classifier(&self, pre_logits: &Tensor, train: bool) -> Result<Tensor> {
        self.plain_head().forward_t(pre_logits, train)
    }

    fn feature_info(&self) -> Vec<FeatureInfo> {
        self.plain_stages().info()
    }

    fn forward_stages(&self, xs: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        check_input(
            self.plain_name(),
            &self.plain_input_spec(),
            self.plain_input_type(),
            xs,
        )?;
        self.plain_stages().forward(self.plain_layers(), xs, train)
    }

    fn num_features(&self) -> usize {
        self.plain_widths().0
    }

    fn num_classes(&self) -> usize {
        self.plain_widths().1
    }

    fn head_prefix(&self) -> &str {
        "classifier.6"
    }

    /// `features`: convolutions with their ReLUs (and batch norms), LRNs, poolings.
    fn plain_features(&self) -> Option<Vec<PlainLayer<'_>>> {
        Layer::plain(self.plain_layers())
    }
}
