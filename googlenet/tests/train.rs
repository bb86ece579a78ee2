//! A training smoke test: GoogLeNet (one input channel, ten classes, auxiliary heads) on 16
//! real MNIST digits, upsampled to 32x32, with Adam on the main loss plus 0.3 times each
//! auxiliary loss. The loss must fall.

use backbone::init::{self, SeededVarMap};
use backbone::Backbone;
use candle_core::{DType, Device, Tensor};
use googlenet::{GoogLeNet, GoogLeNetConfig};
use std::io::Read;
use testkit::densenet_efficientnet::adam_steps;

const DIGITS: usize = 16;

fn read_gz(name: &str) -> Vec<u8> {
    let path = format!("{}/../trainer/data/mnist-10k/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

/// The first `DIGITS` training images, normalised, `[N, 1, 32, 32]`, and their labels.
fn mnist() -> (Tensor, Tensor) {
    let images = read_gz("train-images-idx3-ubyte.gz");
    let labels = read_gz("train-labels-idx1-ubyte.gz");
    let be = |b: &[u8], at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize;
    assert_eq!(
        (be(&images, 0), be(&labels, 0)),
        (0x803, 0x801),
        "IDX magic numbers"
    );
    let (rows, cols) = (be(&images, 8), be(&images, 12));
    assert_eq!((rows, cols), (28, 28));
    let pixels: Vec<f32> = images[16..16 + DIGITS * rows * cols]
        .iter()
        .map(|&p| (p as f32 / 255.0 - 0.1307) / 0.3081)
        .collect();
    let x = Tensor::from_vec(pixels, (DIGITS, 1, rows, cols), &Device::Cpu)
        .unwrap()
        .upsample_nearest2d(32, 32)
        .unwrap();
    let y: Vec<u32> = labels[8..8 + DIGITS].iter().map(|&l| l as u32).collect();
    (x, Tensor::new(y, &Device::Cpu).unwrap())
}

/// The main loss plus 0.3 times each auxiliary loss, in training mode, with the dropout masks
/// of generator seed `seed`.
fn loss(model: &GoogLeNet, x: &Tensor, y: &Tensor, seed: u64) -> Tensor {
    init::seed(seed);
    let out = model.forward_aux(x, true).unwrap();
    assert_eq!(out.aux_logits.len(), 2);
    let ce = |logits: &Tensor| candle_nn::loss::cross_entropy(logits, y).unwrap();
    let mut loss = ce(&out.logits);
    for aux in &out.aux_logits {
        loss = (loss + (ce(aux) * 0.3).unwrap()).unwrap();
    }
    loss
}

/// Adam (PyTorch's defaults, lr 1e-3) on the 16 digits. Adam's steps are bounded by the learning
/// rate whatever the gradients' scale, so the trajectory stays in the smooth regime where the
/// rounding of the matrix-product kernel a CPU picks (AVX2, AVX-512, thread count) moves the
/// losses by far less than the margin: the loss measured before and after training, with the
/// same dropout masks, must fall to under half. (Twelve plain SGD steps at lr 0.05, the
/// previous version of this test, were chaotic: the result flipped with the CPU.)
#[test]
fn googlenet_loss_falls_on_mnist_digits() {
    let (x, y) = mnist();
    let vars = SeededVarMap::new(0);
    // torchvision's dropout (0.2 main, 0.7 auxiliary), with seeded masks.
    let config = GoogLeNetConfig::googlenet().with_in_channels(1).with_classes(10);
    let model = GoogLeNet::new(&config, vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    const PROBE: u64 = 1234;
    let (before, after, losses) = adam_steps(&vars, 15, PROBE, |step| loss(&model, &x, &y, step));
    assert!(
        after < 0.5 * before,
        "the loss should fall: {before} -> {after} ({losses:?})"
    );
    let logits = model.forward_t(&x, false).unwrap();
    assert_eq!(logits.dims(), [DIGITS, 10]);
}
