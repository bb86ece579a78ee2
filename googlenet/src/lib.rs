//! # GoogLeNet (Inception v1), Inception-v3, Inception-v4 and Inception-ResNet-v2
//!
//! GoogLeNet and Inception-v3 as torchvision implements them, with its state-dict names, so
//! its checkpoints (and timm's `inception_v3.tv_in1k`) load as they are. Every convolution is
//! torchvision's `BasicConv2d`: a convolution without bias (`*.conv`), batch norm with
//! `eps = 1e-3` (`*.bn`) and ReLU. Inception-v4 and Inception-ResNet-v2 as timm implements
//! them (`timm/inception_v4.tf_in1k`, `timm/inception_resnet_v2.tf_in1k`): the same block,
//! timm's `ConvNormAct` with `norm_eps=1e-3`, under the same `conv` / `bn` names.
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
//! ## Inception-v4 and Inception-ResNet-v2
//!
//! C. Szegedy, S. Ioffe, V. Vanhoucke, A. Alemi, *Inception-v4, Inception-ResNet and the
//! Impact of Residual Connections on Learning*, AAAI 2017 (arXiv:1602.07261).
//!
//! [`InceptionV4`] ([`InceptionV4Config`]) and [`InceptionResNetV2`]
//! ([`InceptionResNetV2Config`]), timm's `inception_v4` and `inception_resnet_v2` with timm's
//! names. Input `[N, 3, 299, 299]` (any size from **75x75**). Each block is written as data
//! (its branches, each branch's convolutions with their keys, kernels, strides and paddings);
//! every convolution of a branch is `ConvNormAct` (no bias, batch norm `eps = 1e-3`, ReLU); the
//! branch pools are 3x3 stride-2 max pools (floor mode) and 3x3 stride-1 average pools that
//! **exclude the padding** (`count_include_pad=False`, unlike Inception-v3's).
//!
//! Inception-v4: **42,679,816 parameters** (timm's figure), 12,253,974,624
//! multiply-accumulates at 299x299.
//!
//! | layer         | key                          | block                                     | output (299x299) | parameters |
//! |---------------|------------------------------|-------------------------------------------|------------------|-----------:|
//! | stem convs    | `features.0` .. `features.2` | 32 @ 3x3/2, 32 @ 3x3, 64 @ 3x3 pad 1      | 64 x 147 x 147   |     28,768 |
//! | Mixed3a       | `features.3`                 | max pool 3x3/2 beside 96 @ 3x3/2          | 160 x 73 x 73    |     55,488 |
//! | Mixed4a       | `features.4`                 | 1x1 -> 3x3; 1x1 -> 1x7 -> 7x1 -> 3x3      | 192 x 71 x 71    |    189,312 |
//! | Mixed5a       | `features.5`                 | 192 @ 3x3/2 beside max pool 3x3/2         | 384 x 35 x 35    |    332,160 |
//! | InceptionA x4 | `features.6` .. `features.9` | 96; 64 -> 96; 64 -> 96 -> 96; pool -> 96  | 384 x 35 x 35    |  4 x 317,632 |
//! | ReductionA    | `features.10`                | 384 @ 3x3/2; 192 -> 224 -> 256/2; max pool| 1024 x 17 x 17   |  2,306,112 |
//! | InceptionB x7 | `features.11` .. `features.17` | 1x7 / 7x1 factorised                    | 1024 x 17 x 17   | 7 x 2,936,256 |
//! | ReductionB    | `features.18`                | 192 -> 192/2; 256 -> 1x7 -> 7x1 -> 320/2; max pool | 1536 x 8 x 8 | 2,747,392 |
//! | InceptionC x3 | `features.19` .. `features.21` | 1x3 / 3x1 split outputs                 | 1536 x 8 x 8     | 3 x 4,553,088 |
//! | pool, fc      | `last_linear`                | global average, dropout (0), linear       | classes          |  1,537,000 |
//!
//! Inception-ResNet-v2: **55,843,464 parameters** (timm's figure), 13,155,794,016
//! multiply-accumulates at 299x299. The stem is Inception-v3's (timm's keys), then residual
//! blocks: the concatenated branches, a 1x1 convolution **with bias** (`conv2d`) back to the
//! block's input width, scaled (0.17, 0.10, 0.20 in the three repeats), added to the input,
//! ReLU. The last `block8` has scale 1 and **no ReLU**.
//!
//! | layer                   | key                         | block                                    | output (299x299) | parameters |
//! |-------------------------|-----------------------------|------------------------------------------|------------------|-----------:|
//! | stem convs, pools       | `conv2d_1a` .. `maxpool_5a` | Inception-v3's stem                      | 192 x 35 x 35    |    172,672 |
//! | Mixed_5b                | `mixed_5b`                  | 96; 48 -> 64 (5x5); 64 -> 96 -> 96; pool -> 64 | 320 x 35 x 35 |  268,320 |
//! | Block35 x10, scale 0.17 | `repeat.0` .. `repeat.9`    | 32; 32 -> 32; 32 -> 48 -> 64; 1x1 to 320 | 320 x 35 x 35    | 10 x 123,168 |
//! | Mixed_6a                | `mixed_6a`                  | 384/2; 256 -> 256 -> 384/2; max pool     | 1088 x 17 x 17   |  2,664,960 |
//! | Block17 x20, scale 0.10 | `repeat_1.0` .. `repeat_1.19` | 192; 128 -> 1x7 160 -> 7x1 192; 1x1 to 1088 | 1088 x 17 x 17 | 20 x 1,126,784 |
//! | Mixed_7a                | `mixed_7a`                  | 256 -> 384/2; 256 -> 288/2; 256 -> 288 -> 320/2; max pool | 2080 x 8 x 8 | 3,880,960 |
//! | Block8 x9, scale 0.20   | `repeat_2.0` .. `repeat_2.8` | 192; 192 -> 1x3 224 -> 3x1 256; 1x1 to 2080 | 2080 x 8 x 8 | 9 x 2,035,424 |
//! | Block8, scale 1, no ReLU | `block8`                   | as above                                 | 2080 x 8 x 8     |  2,035,424 |
//! | conv                    | `conv2d_7b`                 | 1536 @ 1x1                               | 1536 x 8 x 8     |  3,197,952 |
//! | pool, fc                | `classif`                   | global average, dropout (0), linear      | classes          |  1,537,000 |
//!
//! Fresh variables have PyTorch's default initialisation (timm sets none of its own for these
//! two), batch norm scale 1 and shift 0. timm's feature maps (`features_only`): Inception-v4's
//! `features.2, 3, 9, 17, 21`, Inception-ResNet-v2's `conv2d_2b`, `conv2d_4a`, `repeat`,
//! `repeat_1`, `conv2d_7b` (reductions 2 to 32).
//!
//! ## Initialisation of GoogLeNet and Inception-v3
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

mod blocks;
mod common;
mod inception_resnet_v2;
mod inception_v1;
mod inception_v3;
mod inception_v4;

pub use inception_resnet_v2::{InceptionResNetV2, InceptionResNetV2Config};
pub use inception_v1::{Branch3Kernel, GoogLeNet, GoogLeNetConfig};
pub use inception_v3::{InceptionAux, InceptionV3, InceptionV3Config};
pub use inception_v4::{InceptionV4, InceptionV4Config};
