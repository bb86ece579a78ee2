//! The helpers of `scripts/gen_densenet_fixtures.py` and `scripts/gen_efficientnet_fixtures.py`
//! (DenseNet and EfficientNet reference tests): the scripts' closed-form weights, close
//! comparisons, a few real MNIST digits (zero padded) and a builder that records shapes.

use backbone::init::{trainable_vars, SeededVarMap};
use candle_core::{DType, Device, Tensor};
use candle_nn::Optimizer;
use std::collections::HashMap;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// `offset + scale * u`, `u` uniform in `[-1, 1)` from a splitmix64 hash of (element,
/// `index`): the generator scripts' `pattern`, bit for bit.
pub fn pattern(shape: &[usize], index: u64, scale: f64, offset: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let base = index.wrapping_mul(GOLDEN).wrapping_add(GOLDEN);
    let values: Vec<f32> = (0..n as u64)
        .map(|i| {
            let mut z = i.wrapping_add(base);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let u = (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
            (offset + scale * u) as f32
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// The scripts' `fill`: the value of variable `name` of rank `index` among the sorted names.
pub fn fill(name: &str, shape: &[usize], index: u64) -> Tensor {
    if name.ends_with("running_mean") {
        pattern(shape, index, 0.1, 0.0)
    } else if name.ends_with("running_var") {
        pattern(shape, index, 0.4, 1.0)
    } else if shape.len() > 1 {
        let fan_in: usize = shape[1..].iter().product();
        pattern(shape, index, (6.0 / fan_in as f64).sqrt(), 0.0)
    } else if name.ends_with("weight") {
        pattern(shape, index, 0.2, 1.0)
    } else {
        pattern(shape, index, 0.1, 0.0)
    }
}

/// Sets every variable of `vars` to [`fill`]'s value (ranks over the sorted names).
pub fn fill_vars(vars: &SeededVarMap) {
    let data = vars.varmap().data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for (j, name) in names.into_iter().enumerate() {
        let var = &data[name];
        var.set(&fill(name, var.dims(), j as u64)).unwrap();
    }
}

/// The variables of `vars` as plain tensors, by name.
pub fn state(vars: &SeededVarMap) -> HashMap<String, Tensor> {
    let data = vars.varmap().data().lock().unwrap();
    data.iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().copy().unwrap()))
        .collect()
}

/// Asserts the shapes agree and every element is within `rel * max|reference|`.
#[track_caller]
pub fn assert_close(name: &str, ours: &Tensor, reference: &Tensor, rel: f32) {
    assert_eq!(ours.dims(), reference.dims(), "{name}: shape");
    let a = ours
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let b = reference
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let (worst, err) =
        a.iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .enumerate()
            .fold(
                (0, 0f32),
                |(wi, we), (i, e)| if e > we { (i, e) } else { (wi, we) },
            );
    assert!(
        err <= rel * scale,
        "{name}[{worst}]: ours {}, PyTorch {} (|diff| {err:e} > {rel:e} x max {scale})",
        a[worst],
        b[worst]
    );
}

/// The first `n` training digits of the bundled MNIST sample, `[n, 1, size, size]` (zero
/// padded around the 28x28 digit, normalised with MNIST's mean and deviation), and labels.
pub fn mnist(n: usize, size: usize) -> (Tensor, Tensor) {
    let (_, images) = crate::mnist_gz("train-images-idx3-ubyte.gz");
    let (_, labels) = crate::mnist_gz("train-labels-idx1-ubyte.gz");
    assert_eq!(&images[..4], &[0, 0, 8, 3], "IDX image magic");
    assert_eq!(&labels[..4], &[0, 0, 8, 1], "IDX label magic");
    assert!(size >= 28);
    let pad = (size - 28) / 2;
    let mut pixels = vec![0f32; n * size * size];
    for i in 0..n {
        for y in 0..28 {
            for x in 0..28 {
                let v = images[16 + i * 784 + y * 28 + x] as f32 / 255.0;
                pixels[i * size * size + (y + pad) * size + x + pad] = v;
            }
        }
    }
    let xs = Tensor::from_vec(pixels, (n, 1, size, size), &Device::Cpu).unwrap();
    let xs = ((xs - 0.1307).unwrap() / 0.3081).unwrap();
    let ys: Vec<u32> = labels[8..8 + n].iter().map(|&l| l as u32).collect();
    (xs, Tensor::from_vec(ys, n, &Device::Cpu).unwrap())
}

/// A variable's name and shape.
pub type Recorded = (String, Vec<usize>);

/// A [`candle_nn::VarBuilder`] backend that hands out zeros and remembers every variable's
/// name and shape: counts the parameters of large variants without drawing random weights.
#[derive(Clone, Default)]
pub struct ShapeRecorder {
    shapes: std::sync::Arc<std::sync::Mutex<Vec<Recorded>>>,
}

impl ShapeRecorder {
    /// A builder over a fresh recorder.
    pub fn var_builder(&self) -> candle_nn::VarBuilder<'static> {
        candle_nn::VarBuilder::from_backend(Box::new(self.clone()), DType::F32, Device::Cpu)
    }

    /// The recorded variables.
    pub fn shapes(&self) -> Vec<Recorded> {
        self.shapes.lock().unwrap().clone()
    }

    /// Trainable parameters (everything but batch-norm running statistics).
    pub fn trainable(&self) -> usize {
        self.shapes()
            .iter()
            .filter(|(name, _)| !backbone::init::is_buffer(name))
            .map(|(_, shape)| shape.iter().product::<usize>())
            .sum()
    }
}

impl candle_nn::var_builder::SimpleBackend for ShapeRecorder {
    fn get(
        &self,
        shape: candle_core::Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        // A variable asked for twice (a fresh value created first, then found by its layer)
        // is one variable, as in a VarMap.
        let mut shapes = self.shapes.lock().unwrap();
        if !shapes.iter().any(|(n, _)| n == name) {
            shapes.push((name.to_string(), shape.dims().to_vec()));
        }
        Tensor::zeros(shape, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("{name}: shape unknown")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// `steps` steps of Adam (PyTorch's defaults, lr 1e-3, no weight decay) on the trainable
/// variables of `vars`, step `i` minimising `loss(i)`: the loss `loss(probe)` before and after,
/// and the training losses, which must be finite.
pub fn adam_steps(
    vars: &SeededVarMap,
    steps: u64,
    probe: u64,
    loss: impl Fn(u64) -> Tensor,
) -> (f32, f32, Vec<f32>) {
    let value = |t: &Tensor| t.to_scalar::<f32>().unwrap();
    let params: Vec<_> = trainable_vars(vars.varmap())
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let mut adam = candle_nn::AdamW::new(
        params,
        candle_nn::ParamsAdamW {
            lr: 1e-3,
            weight_decay: 0.0,
            ..Default::default()
        },
    )
    .unwrap();
    let before = value(&loss(probe));
    let mut losses = Vec::new();
    for step in 0..steps {
        let loss = loss(step);
        losses.push(value(&loss));
        adam.backward_step(&loss).unwrap();
    }
    let after = value(&loss(probe));
    eprintln!("before {before}, after {after}, training losses {losses:?}");
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    (before, after, losses)
}
