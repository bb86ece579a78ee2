//! Dev-only helpers shared by the architecture crates' reference tests (a `[dev-dependencies]`
//! of those crates only, never published): fixture files, the generator scripts' closed-form
//! weights, comparisons with PyTorch and a few real MNIST digits.
//!
//! - [`alexnet_nin`]: the helpers of `scripts/gen_alexnet_nin_fixtures.py` (AlexNet, ZFNet,
//!   NiN).
//! - [`catalogue`]: the fixtures of `scripts/gen_catalogue_fixtures.py` (timm's and
//!   torchvision's published layouts and reference outputs) and its weights rule.
//! - [`densenet_efficientnet`]: the helpers of `scripts/gen_densenet_fixtures.py` and
//!   `scripts/gen_efficientnet_fixtures.py`.
//!
//! Fixtures live in the `tests/fixtures/` folder of the crate under test: [`fixture!`] and
//! [`reference_keys!`] find it from that crate's `CARGO_MANIFEST_DIR`.

use candle_core::{Device, Tensor};
use std::collections::HashMap;

/// The workspace README's Rust snippets, compiled and run as doc tests (here, in the crate that
/// is never published, so no published package includes a file outside itself).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
use std::io::Read;

pub mod alexnet_nin;
pub mod catalogue;
pub mod densenet_efficientnet;

/// Loads `tests/fixtures/<name>` of the crate whose test calls it, as [`load_fixture`].
#[macro_export]
macro_rules! fixture {
    ($name:expr) => {
        $crate::load_fixture(env!("CARGO_MANIFEST_DIR"), $name)
    };
}

/// The `name shape` lines of `tests/fixtures/<name>` of the crate whose test calls it, as
/// [`read_reference_keys`].
#[macro_export]
macro_rules! reference_keys {
    ($name:expr) => {
        $crate::read_reference_keys(env!("CARGO_MANIFEST_DIR"), $name)
    };
}

/// Loads the safetensors file `<manifest_dir>/tests/fixtures/<name>`; panics, naming the file
/// and the script to regenerate it, when it cannot.
pub fn load_fixture(manifest_dir: &str, name: &str) -> HashMap<String, Tensor> {
    let path = format!("{manifest_dir}/tests/fixtures/{name}");
    candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("cannot load {path}: {e}; regenerate it with the script in scripts/"))
}

/// `name shape` lines of the `*.keys.txt` fixture `<manifest_dir>/tests/fixtures/<name>`: the
/// reference state dict's keys and shapes (`shape` comma-separated).
pub fn read_reference_keys(manifest_dir: &str, name: &str) -> Vec<(String, Vec<usize>)> {
    let path = format!("{manifest_dir}/tests/fixtures/{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    text.lines()
        .map(|line| {
            let (key, shape) = line.split_once(' ').expect("`name shape` lines");
            let shape = shape
                .split(',')
                .map(|d| d.parse().expect("a dimension"))
                .collect();
            (key.to_string(), shape)
        })
        .collect()
}

/// The decompressed bytes of `trainer/data/mnist-10k/<name>`, the bundled MNIST sample.
fn mnist_gz(name: &str) -> (String, Vec<u8>) {
    let path = format!("{}/../trainer/data/mnist-10k/{name}", env!("CARGO_MANIFEST_DIR"));
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .unwrap();
    (path, bytes)
}
