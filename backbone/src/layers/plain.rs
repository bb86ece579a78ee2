//! A plain chain of layers as data: what methods that walk a network layer by layer need (the
//! deconvnet of Zeiler & Fergus projects activations back through each convolution, ReLU and
//! pooling in turn).

use super::{Activation, AvgPool2d, Conv2d, Dropout, LocalResponseNorm, MaxPool2d};

/// One layer of a plain chain (no branch, no residual), borrowed from the model.
#[derive(Debug, Clone)]
pub enum PlainLayer<'a> {
    /// A convolution with the activation that follows it in the same block, if any.
    Conv {
        /// The convolution (its `name()` is its state-dict prefix).
        conv: &'a Conv2d,
        /// The activation applied to its output.
        activation: Option<Activation>,
    },
    /// A standalone element-wise activation.
    Activation(Activation),
    /// Max pooling.
    MaxPool(&'a MaxPool2d),
    /// Average pooling.
    AvgPool(&'a AvgPool2d),
    /// Local response normalisation.
    Lrn(&'a LocalResponseNorm),
    /// Dropout (the identity in eval mode).
    Dropout(&'a Dropout),
    /// Any other layer (a batch norm inside a block, ...): its name and kind.
    Other {
        /// The layer's state-dict name, or its kind when it has none.
        name: String,
        /// The layer's type (`BatchNorm2d`).
        kind: &'static str,
    },
}

impl PlainLayer<'_> {
    /// The layer's name: the state-dict prefix of a convolution, the name of a pooling or LRN,
    /// the kind of an unnamed layer.
    pub fn name(&self) -> String {
        let or = |name: &str, kind: &str| {
            if name.is_empty() {
                kind.to_string()
            } else {
                name.to_string()
            }
        };
        match self {
            PlainLayer::Conv { conv, .. } => or(conv.name(), "Conv2d"),
            PlainLayer::Activation(a) => format!("{a:?}"),
            PlainLayer::MaxPool(p) => or(p.name(), "MaxPool2d"),
            PlainLayer::AvgPool(p) => or(p.name(), "AvgPool2d"),
            PlainLayer::Lrn(l) => or(l.name(), "LocalResponseNorm"),
            PlainLayer::Dropout(_) => "Dropout".to_string(),
            PlainLayer::Other { name, .. } => name.clone(),
        }
    }

    /// The layer's type, in words (`Conv2d + Relu`, `MaxPool2d`, ...).
    pub fn kind(&self) -> String {
        match self {
            PlainLayer::Conv {
                activation: Some(a), ..
            } => format!("Conv2d + {a:?}"),
            PlainLayer::Conv { activation: None, .. } => "Conv2d".to_string(),
            PlainLayer::Activation(a) => format!("{a:?}"),
            PlainLayer::MaxPool(_) => "MaxPool2d".to_string(),
            PlainLayer::AvgPool(_) => "AvgPool2d".to_string(),
            PlainLayer::Lrn(_) => "LocalResponseNorm".to_string(),
            PlainLayer::Dropout(_) => "Dropout".to_string(),
            PlainLayer::Other { kind, .. } => kind.to_string(),
        }
    }
}
