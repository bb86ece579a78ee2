//! # GoogLeNet (Inception v1) and Inception-v3
//!
//! Both as torchvision implements them, with its state-dict names, so its checkpoints (and
//! timm's `inception_v3.tv_in1k`) load as they are. Every convolution is torchvision's
//! `BasicConv2d`: a convolution without bias (`*.conv`), batch norm with `eps = 1e-3`
//! (`*.bn`) and ReLU.
//!
//! ## GoogLeNet
//!
//! C. Szegedy, W. Liu, Y. Jia, P. Sermanet, S. Reed, D. Anguelov, D. Erhan, V. Vanhoucke,
//! A. Rabinovich, *Going Deeper with Convolutions*, CVPR 2015.
//!
//! [`GoogLeNet`], configured by [`GoogLeNetConfig`]. Input `[N, 3, 224, 224]` (any size from
//! **15x15**: the smallest that survives the ceil-mode max pools); **13,004,888 parameters**
//! with the two auxiliary classifiers and 1000 classes, **6,624,904** without them
//! (torchvision's figures); 1,498,376,192 multiply-accumulates at 224x224 (torchvision: 1.498
//! GFLOPS).
//!
//! | layer         | key             | kernel / size                          | output (224x224) | parameters |
//! |---------------|-----------------|----------------------------------------|------------------|-----------:|
//! | conv          | `conv1`         | 64 @ 7x7 stride 2 pad 3                | 64 x 112 x 112   |      9,536 |
//! | max pool      | `maxpool1`      | 3x3 stride 2, ceil mode                | 64 x 56 x 56     |          - |
//! | conv          | `conv2`         | 64 @ 1x1                               | 64 x 56 x 56     |      4,224 |
//! | conv          | `conv3`         | 192 @ 3x3 pad 1                        | 192 x 56 x 56    |    110,976 |
//! | max pool      | `maxpool2`      | 3x3 stride 2, ceil mode                | 192 x 28 x 28    |          - |
//! | inception     | `inception3a`   | 64, 96 -> 128, 16 -> 32, pool -> 32    | 256 x 28 x 28    |    155,872 |
//! | inception     | `inception3b`   | 128, 128 -> 192, 32 -> 96, pool -> 64  | 480 x 28 x 28    |    340,224 |
//! | max pool      | `maxpool3`      | 3x3 stride 2, ceil mode                | 480 x 14 x 14    |          - |
//! | inception     | `inception4a`   | 192, 96 -> 208, 16 -> 48, pool -> 64   | 512 x 14 x 14    |    364,512 |
//! | aux head 1    | `aux1`          | from `inception4a`, training only      | classes          |  3,188,968 |
//! | inception     | `inception4b`   | 160, 112 -> 224, 24 -> 64, pool -> 64  | 512 x 14 x 14    |    425,232 |
//! | inception     | `inception4c`   | 128, 128 -> 256, 24 -> 64, pool -> 64  | 512 x 14 x 14    |    486,192 |
//! | inception     | `inception4d`   | 112, 144 -> 288, 32 -> 64, pool -> 64  | 528 x 14 x 14    |    573,312 |
//! | aux head 2    | `aux2`          | from `inception4d`, training only      | classes          |  3,191,016 |
//! | inception     | `inception4e`   | 256, 160 -> 320, 32 -> 128, pool -> 128| 832 x 14 x 14    |    803,840 |
//! | max pool      | `maxpool4`      | 2x2 stride 2, ceil mode                | 832 x 7 x 7      |          - |
//! | inception     | `inception5a`   | 256, 160 -> 320, 32 -> 128, pool -> 128| 832 x 7 x 7      |    978,944 |
//! | inception     | `inception5b`   | 384, 192 -> 384, 48 -> 128, pool -> 128| 1024 x 7 x 7     |  1,347,040 |
//! | avg pool      | `avgpool`       | global                                 | 1024             |          - |
//! | dropout + fc  | `fc`            | p = 0.2, 1024 -> classes               | classes          |  1,025,000 |
//!
//! An inception module concatenates four branches: `branch1` (1x1), `branch2` (1x1 reduce
//! `branch2.0`, then 3x3 pad 1 `branch2.1`), `branch3` (1x1 reduce `branch3.0`, then
//! `branch3.1`), `branch4` (3x3 stride 1 pad 1 ceil-mode max pool `branch4.0`, then 1x1
//! projection `branch4.1`).
//!
//! **torchvision's branch3 quirk.** The paper's third branch is a 5x5 convolution;
//! torchvision's (and the weights it ports) is 3x3 with padding 1 (pytorch/vision#906). The
//! default [`GoogLeNetConfig::googlenet`] reproduces torchvision;
//! [`GoogLeNetConfig::googlenet_paper`] ([`Branch3Kernel::Paper5x5`]) has the paper's 5x5
//! with padding 2: 13,385,816 parameters with the auxiliary heads, 7,005,832 without,
//! 1,582,671,872 multiply-accumulates at 224x224.
//!
//! **Ceil mode.** Every max pool rounds its output size up (`ceil_mode=True`): at 112x112 the
//! four pools give 28, 14, 7 and 4 where floor mode would give 27, 13, 6 and 3.
//!
//! **Auxiliary classifiers** (`aux1`, `aux2`, switched off by `aux_logits: false`, which does
//! not create their variables): adaptive average pool to 4x4, 1x1 `BasicConv2d` to 128
//! channels (`conv`), flatten, `fc1` 2048 -> 1024, ReLU, dropout 0.7, `fc2` 1024 -> classes.
//! They run only in training, through [`backbone::Backbone::forward_aux`], which returns them
//! in the order **`[aux1, aux2]`** (torchvision's tuple is `(logits, aux2, aux1)`);
//! `forward_t` returns the main logits only and skips them. The adaptive pool accepts any
//! map, so they add no constraint on the input size.
//!
//! ## Inception-v3
//!
//! C. Szegedy, V. Vanhoucke, S. Ioffe, J. Shlens, Z. Wojna, *Rethinking the Inception
//! Architecture for Computer Vision*, CVPR 2016.
//!
//! [`InceptionV3`], configured by [`InceptionV3Config`]. Input `[N, 3, 299, 299]` (any size
//! from **75x75**, torchvision's `min_size`; the auxiliary head in training needs
//! **299x299**); **27,161,264 parameters** with the auxiliary head and 1000 classes,
//! **23,834,568** without; 5,713,216,096 multiply-accumulates at 299x299 (torchvision: 5.713
//! GFLOPS).
//!
//! | layer         | key             | kernel / size                          | output (299x299) | parameters |
//! |---------------|-----------------|----------------------------------------|------------------|-----------:|
//! | conv          | `Conv2d_1a_3x3` | 32 @ 3x3 stride 2                      | 32 x 149 x 149   |        928 |
//! | conv          | `Conv2d_2a_3x3` | 32 @ 3x3                               | 32 x 147 x 147   |      9,280 |
//! | conv          | `Conv2d_2b_3x3` | 64 @ 3x3 pad 1                         | 64 x 147 x 147   |     18,560 |
//! | max pool      | `maxpool1`      | 3x3 stride 2                           | 64 x 73 x 73     |          - |
//! | conv          | `Conv2d_3b_1x1` | 80 @ 1x1                               | 80 x 73 x 73     |      5,280 |
//! | conv          | `Conv2d_4a_3x3` | 192 @ 3x3                              | 192 x 71 x 71    |    138,624 |
//! | max pool      | `maxpool2`      | 3x3 stride 2                           | 192 x 35 x 35    |          - |
//! | InceptionA    | `Mixed_5b`      | pool features 32                       | 256 x 35 x 35    |    255,904 |
//! | InceptionA    | `Mixed_5c`      | pool features 64                       | 288 x 35 x 35    |    277,472 |
//! | InceptionA    | `Mixed_5d`      | pool features 64                       | 288 x 35 x 35    |    285,152 |
//! | InceptionB    | `Mixed_6a`      | grid reduction                         | 768 x 17 x 17    |  1,153,280 |
//! | InceptionC    | `Mixed_6b`      | 7x7 channels 128                       | 768 x 17 x 17    |  1,297,408 |
//! | InceptionC    | `Mixed_6c`      | 7x7 channels 160                       | 768 x 17 x 17    |  1,691,008 |
//! | InceptionC    | `Mixed_6d`      | 7x7 channels 160                       | 768 x 17 x 17    |  1,691,008 |
//! | InceptionC    | `Mixed_6e`      | 7x7 channels 192                       | 768 x 17 x 17    |  2,141,952 |
//! | aux head      | `AuxLogits`     | from `Mixed_6e`, training only         | classes          |  3,326,696 |
//! | InceptionD    | `Mixed_7a`      | grid reduction                         | 1280 x 8 x 8     |  1,698,304 |
//! | InceptionE    | `Mixed_7b`      | expanded filter bank                   | 2048 x 8 x 8     |  5,044,608 |
//! | InceptionE    | `Mixed_7c`      | expanded filter bank                   | 2048 x 8 x 8     |  6,076,800 |
//! | avg pool      | `avgpool`       | global                                 | 2048             |          - |
//! | dropout + fc  | `fc`            | p = 0.5, 2048 -> classes               | classes          |  2,049,000 |
//!
//! Max pools use floor mode; the branch pools of `InceptionA`, `C` and `E` are 3x3 stride 1
//! pad 1 average pools counting the padding (PyTorch's `F.avg_pool2d` default). `InceptionC`
//! and `InceptionD` factorise 7x7 convolutions into 1x7 (padding (0, 3)) and 7x1 (padding
//! (3, 0)) pairs; `InceptionE` splits 3x3 outputs into parallel 1x3 and 3x1 convolutions.
//!
//! **Auxiliary classifier** ([`InceptionAux`], `AuxLogits`): average pool 5x5 stride 3,
//! `conv0` 1x1 to 128 channels, `conv1` 5x5 to 768 channels, adaptive average pool to 1x1,
//! `fc` 768 -> classes. It runs only in training, through
//! [`backbone::Backbone::forward_aux`] (one entry), and needs `Mixed_6e` to be at least 17x17,
//! i.e. an input of at least 299x299. timm's `inception_v3.tv_in1k` has no `AuxLogits.*`
//! tensors: the catalogue's loader builds the model without it (`Variant::load`), or with a
//! fresh one to train (`Variant::load_trainable`).
//!
//! ## Initialisation
//!
//! Fresh models follow torchvision's `init_weights=True`: convolution and linear weights from
//! a normal distribution of standard deviation 0.01 (GoogLeNet) or 0.1 (Inception-v3;
//! 0.001 for `AuxLogits.fc`), linear biases PyTorch's default uniform, batch norm scale 1 and
//! shift 0. torchvision truncates the normal at +-2; that is 20 or more standard deviations
//! away, never reached in practice, so a plain normal is the same distribution.
//!
//! ## Input transform
//!
//! torchvision's pretrained GoogLeNet and Inception-v3 come from TensorFlow and expect inputs
//! normalised to mean 0.5, standard deviation 0.5; with `transform_input: true` (3 channels
//! only) the model maps an ImageNet-normalised input to that, as torchvision does when it
//! loads its weights.

pub mod catalogue;
pub use catalogue::VARIANTS;

/// What a program using this crate alone needs (with `candle-core` for tensors): the model
/// contract, the catalogue types, a fresh seeded variable map, the weights loader, the var
/// builder and the error type, the same in every architecture crate (`backbone::prelude`).
/// `use googlenet::prelude::*;`
pub use backbone::prelude;

/// The shared `backbone` crate, for everything beyond the prelude.
pub use backbone;

mod common;
mod inception_v1;
mod inception_v3;

pub use inception_v1::{Branch3Kernel, GoogLeNet, GoogLeNetConfig};
pub use inception_v3::{InceptionAux, InceptionV3, InceptionV3Config};
