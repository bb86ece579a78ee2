//! vgg (in progress)
