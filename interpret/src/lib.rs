//! # interpret: see inside the networks
//!
//! Interpretability methods for every model of this workspace, through the
//! [`backbone::Backbone`] contract alone (no per-model code):
//!
//! - **Filters** ([`filter_images`]): the first convolution's kernels, each scaled by its own
//!   range, as in the first-layer figures of Krizhevsky et al. 2012 (AlexNet) and Zeiler &
//!   Fergus 2013 (ZFNet).
//! - **Activations** ([`stage_activations`], [`top_channels`]): the strongest channels of the
//!   feature stages ([`backbone::Backbone::feature_info`]).
//! - **Deconvnet** ([`deconvnet`]): M. D. Zeiler, R. Fergus, *Visualizing and Understanding
//!   Convolutional Networks*, ECCV 2014 (arXiv 1311.2901, 2013): a layer's strongest
//!   activations projected back to pixels by unpooling with the max-pooling switches,
//!   rectifying, and filtering with the transposed kernels. For plain stacks
//!   ([`backbone::Backbone::plain_features`]: LeNet, AlexNet, ZFNet, VGG).
//! - **Guided backpropagation** ([`guided_backprop`]): J. T. Springenberg, A. Dosovitskiy,
//!   T. Brox, M. Riedmiller, *Striving for Simplicity: The All Convolutional Net*, ICLR
//!   workshop 2015. Any model.
//! - **Occlusion sensitivity** ([`occlusion()`]): Zeiler & Fergus, section 4.2: the class
//!   probability as a grey square slides over the image, batched.
//! - **Grad-CAM** and **Grad-CAM++** ([`grad_cam`]): R. R. Selvaraju et al., *Grad-CAM: Visual
//!   Explanations from Deep Networks via Gradient-based Localization*, ICCV 2017; A.
//!   Chattopadhyay et al., *Grad-CAM++*, WACV 2018; at the last stage
//!   ([`backbone::Backbone::forward_features`]) of any model, equal to `pytorch_grad_cam`.
//! - **Figures** ([`render`]): grids with titles, captions, colour maps and colour bars, as PNG.
//!
//! Inputs are one preprocessed image `[1, C, H, W]` (what the model takes); the methods run the
//! model in eval mode. Errors ([`Error`]) name the model, the layer and what was expected.

pub mod activations;
pub mod deconv;
mod error;
pub mod gradients;
mod input;
pub mod occlusion;
pub mod render;

pub use activations::{filter_images, stage_activations, top_channels, ChannelMap};
pub use deconv::{deconv_layers, deconvnet, Projection};
pub use error::{Error, Result};
pub use gradients::{grad_cam, guided_backprop, min_max, resize_bilinear, Cam, CamMethod};
pub use input::{predict, Prediction};
pub use occlusion::{occlusion, OcclusionConfig, OcclusionMap};
