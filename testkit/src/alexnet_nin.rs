//! The helpers of `scripts/gen_alexnet_nin_fixtures.py` (AlexNet, ZFNet and NiN reference
//! tests): the script's `pattern` and `sample`, its weights, close comparisons, a
//! safetensors writer, a few real MNIST digits (nearest-neighbour upsampled), a few SGD steps on
//! them and the check of a configuration's dropout.

use backbone::init::{trainable_vars, SeededVarMap};
use backbone::{Backbone, Error};
use candle_core::{DType, Device, Tensor};
use candle_nn::{Optimizer, VarBuilder, VarMap};
use std::collections::HashMap;

/// The generator script's `pattern`: element `i` is `scale * (2u - 1)`, `u` the top 24 bits
/// of SplitMix64 at state `seed * 2^32 + i`, over 2^24.
pub fn pattern(shape: &[usize], seed: u64, scale: f64) -> Tensor {
    pattern_offset(shape, seed, scale, 0.0)
}

/// [`pattern`] plus `offset`: element `i` is `offset + scale * (2u - 1)`, computed in f64 and
/// rounded to f32 once (also `scripts/gen_googlenet_fixtures.py`'s `pattern`).
pub fn pattern_offset(shape: &[usize], seed: u64, scale: f64, offset: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let value = |i: u64| {
        let mut z = ((seed << 32) + i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let u = (z >> 40) as f64 / (1u64 << 24) as f64;
        (offset + scale * (2.0 * u - 1.0)) as f32
    };
    // Tens of millions of values in an unoptimised test build: split over the cores.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = n.div_ceil(threads).max(1);
    let mut values = vec![0f32; n];
    std::thread::scope(|s| {
        for (c, out) in values.chunks_mut(chunk).enumerate() {
            s.spawn(move || {
                let start = (c * chunk) as u64;
                for (k, v) in out.iter_mut().enumerate() {
                    *v = value(start + k as u64);
                }
            });
        }
    });
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// Sets the variables of `vars` to the script's weights: variable `j` of the sorted names gets
/// `pattern(shape, j, sqrt(6 / fan_in))` if a weight of rank > 1, `pattern(shape, j, 0.1)`
/// otherwise (biases).
pub fn fill_vars(vars: &VarMap) {
    let data = vars.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for (j, name) in names.into_iter().enumerate() {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let scale = if dims.len() > 1 {
            (6.0 / dims[1..].iter().product::<usize>() as f64).sqrt()
        } else {
            0.1
        };
        var.set(&pattern(&dims, j as u64, scale)).unwrap();
    }
}

/// A fresh model built by `new` over a plain `VarMap` (candle's unseeded generator: faster
/// than `SeededVarMap` for large models, for tests that need no particular weights), and
/// that map.
pub fn fresh<M>(new: impl FnOnce(VarBuilder) -> backbone::Result<M>) -> (M, VarMap) {
    let vars = VarMap::new();
    let model = new(VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu)).unwrap();
    (model, vars)
}

/// The per-layer names, kinds and output shapes of a summary.
pub fn layer_shapes(summary: &backbone::Summary) -> Vec<(&str, &str, &[usize])> {
    summary
        .layers
        .iter()
        .map(|l| (l.name.as_str(), l.kind.as_str(), l.output.as_slice()))
        .collect()
}

/// [`fresh`] with the script's weights ([`fill_vars`]), as trainable variables.
pub fn with_pattern<M>(new: impl FnOnce(VarBuilder) -> backbone::Result<M>) -> (M, VarMap) {
    let (model, vars) = fresh(new);
    fill_vars(&vars);
    (model, vars)
}

/// The script's `sample`: every `stride`-th value of the flattened tensor, `stride` 1 up to
/// 1024 values, `numel / 1024 + 1` above.
pub fn sample(t: &Tensor) -> Tensor {
    let n = t.elem_count();
    let stride = if n <= 1024 { 1 } else { n / 1024 + 1 };
    let idx: Vec<u32> = (0..n).step_by(stride).map(|i| i as u32).collect();
    let idx = Tensor::new(idx.as_slice(), &Device::Cpu).unwrap();
    t.flatten_all().unwrap().index_select(&idx, 0).unwrap()
}

/// Asserts the shapes agree and every element is within `rel * max|reference|` (f32 tensors),
/// naming the first element that is not.
#[track_caller]
pub fn assert_close(name: &str, ours: &Tensor, reference: &Tensor, rel: f32) {
    assert_eq!(ours.dims(), reference.dims(), "{name}: shape");
    let a = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = reference.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!((x - y).abs() <= rel * scale, "{name}[{i}]: ours {x}, PyTorch {y}");
    }
}

/// Writes `tensors` to `dir/name` as safetensors and returns the path.
pub fn save(dir: &std::path::Path, name: &str, tensors: &HashMap<String, Tensor>) -> std::path::PathBuf {
    let path = dir.join(name);
    candle_core::safetensors::save(tensors, &path).unwrap();
    path
}

/// The loading errors of a weights layout name what the file has: each `(state, key)` of
/// `missing`, saved without `key`, fails with an [`Error::Weights`] naming the file and `key`;
/// `misshaped`'s state with `key` replaced by the tensor `wrong` fails with a message naming
/// the file, `key` and both `shapes` (expected, actual). `load` reads a file (a catalogue
/// variant's `load`).
pub fn assert_load_errors_name_the_tensor<T>(
    load: impl Fn(&std::path::Path) -> backbone::Result<T>,
    dir: &std::path::Path,
    missing: &[(&HashMap<String, Tensor>, &str)],
    misshaped: (&HashMap<String, Tensor>, &str, Tensor, [&str; 2]),
) {
    for (tensors, key) in missing {
        let mut missing = (*tensors).clone();
        assert!(missing.remove(*key).is_some(), "{key}");
        let path = save(dir, "missing.safetensors", &missing);
        match load(&path) {
            Err(Error::Weights {
                file,
                tensor,
                problem,
            }) => {
                assert_eq!(file.as_deref(), Some(path.as_path()));
                assert_eq!(tensor, *key);
                assert!(problem.contains("missing"), "{problem}");
            }
            other => panic!("expected a missing-tensor error, got {:?}", other.err()),
        }
    }
    let (state, key, wrong, shapes) = misshaped;
    let mut misshaped = state.clone();
    misshaped.insert(key.into(), wrong);
    let path = save(dir, "misshaped.safetensors", &misshaped);
    let msg = load(&path)
        .err()
        .expect("a mis-shaped tensor must fail")
        .to_string();
    for needle in ["misshaped.safetensors", key, shapes[0], shapes[1]] {
        assert!(msg.contains(needle), "`{msg}` should mention {needle}");
    }
}

/// `count` MNIST training digits, nearest-neighbour upsampled from 28x28 to `size`x`size`,
/// normalised with MNIST's mean and standard deviation; and their labels.
pub fn mnist(count: usize, size: usize) -> (Tensor, Tensor) {
    let read = |name: &str, magic: u32, header: usize| -> Vec<u8> {
        let (path, mut bytes) = crate::mnist_gz(name);
        assert_eq!(
            u32::from_be_bytes(bytes[..4].try_into().unwrap()),
            magic,
            "{path}"
        );
        bytes.split_off(header)
    };
    let pixels = read("train-images-idx3-ubyte.gz", 2051, 16);
    let labels = read("train-labels-idx1-ubyte.gz", 2049, 8);
    let mut images = Vec::with_capacity(count * size * size);
    for n in 0..count {
        let digit = &pixels[n * 784..(n + 1) * 784];
        for y in 0..size {
            for x in 0..size {
                let p = digit[y * 28 / size * 28 + x * 28 / size] as f32 / 255.0;
                images.push((p - 0.1307) / 0.3081);
            }
        }
    }
    let labels: Vec<u32> = labels[..count].iter().map(|&l| l as u32).collect();
    (
        Tensor::from_vec(images, (count, 1, size, size), &Device::Cpu).unwrap(),
        Tensor::new(labels.as_slice(), &Device::Cpu).unwrap(),
    )
}

/// `steps` steps of plain SGD at `lr` on the first 64 MNIST digits at the model's smallest input
/// size (one channel; training mode, dropout seeded with 0): the eval-mode loss before and after,
/// and the training losses.
pub fn sgd_on_mnist(
    model: &dyn Backbone,
    vars: &SeededVarMap,
    lr: f64,
    steps: usize,
) -> (f32, f32, Vec<f32>) {
    let (min, _) = model.input_spec().min_size;
    let (images, labels) = mnist(64, min);
    let loss = |train: bool| {
        let logits = model.forward_t(&images, train).unwrap();
        candle_nn::loss::cross_entropy(&logits, &labels).unwrap()
    };
    let value = |t: &Tensor| t.to_scalar::<f32>().unwrap();
    let before = value(&loss(false));
    let params: Vec<_> = trainable_vars(vars.varmap())
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let mut sgd = candle_nn::SGD::new(params, lr).unwrap();
    backbone::init::seed(0);
    let mut losses = Vec::new();
    for _ in 0..steps {
        let loss = loss(true);
        losses.push(value(&loss));
        sgd.backward_step(&loss).unwrap();
    }
    (before, value(&loss(false)), losses)
}

/// Asserts that `build` with a dropout probability outside `[0, 1)` (negative, 1, NaN) fails
/// with a configuration error that says `dropout`.
pub fn assert_dropout_refused<M>(build: impl Fn(f32) -> backbone::Result<M>) {
    for p in [-0.1, 1.0, f32::NAN] {
        match build(p) {
            Err(Error::Config(msg)) => assert!(msg.contains("dropout"), "{msg}"),
            Err(other) => panic!("dropout {p}: expected a config error, got {other}"),
            Ok(_) => panic!("dropout {p}: expected a config error, got a model"),
        }
    }
}
