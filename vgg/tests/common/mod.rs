//! Helpers shared by the integration tests: the fixture generator's weight rule, a variable
//! builder that only records shapes, comparisons.

#![allow(dead_code)]

use backbone::Result;
use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use vgg::{Vgg, VggConfig};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// `offset + scale * (2u - 1)` with `u` the splitmix64 hash of `(index, element)`: the
/// generator script's `hashed`, bit for bit (integer and f64 arithmetic only). Computed on
/// all cores, as VGG-16 has 138M weights and this crate's tests are not optimised.
pub fn hashed_values(n: usize, index: usize, scale: f64, offset: f64) -> Vec<f32> {
    let base = (index as u64).wrapping_mul(GOLDEN);
    let value = |i: u64| -> f32 {
        let mut z = i.wrapping_add(base).wrapping_mul(GOLDEN);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let u = (z >> 11) as f64 / (1u64 << 53) as f64;
        (offset + scale * (2.0 * u - 1.0)) as f32
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if n < 1 << 20 || threads == 1 {
        return (0..n as u64).map(value).collect();
    }
    let mut out = vec![0f32; n];
    let chunk = n.div_ceil(threads);
    std::thread::scope(|s| {
        for (c, slice) in out.chunks_mut(chunk).enumerate() {
            s.spawn(move || {
                let start = (c * chunk) as u64;
                for (k, v) in slice.iter_mut().enumerate() {
                    *v = value(start + k as u64);
                }
            });
        }
    });
    out
}

/// [`hashed_values`] as a tensor.
pub fn hashed(shape: &[usize], index: usize, scale: f64, offset: f64) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(hashed_values(n, index, scale, offset), shape, &Device::Cpu).unwrap()
}

/// A variable builder backend that records the name and shape of every variable asked for
/// and hands out zeros (allocated lazily by the OS, so a VGG costs nothing).
#[derive(Clone, Default)]
pub struct ShapeRecorder(Arc<Mutex<BTreeMap<String, Vec<usize>>>>);

impl SimpleBackend for ShapeRecorder {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.0
            .lock()
            .unwrap()
            .insert(name.to_string(), shape.dims().to_vec());
        Tensor::zeros(shape, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("unexpected get_unchecked({name})")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        false
    }
}

/// The variables of a configuration (names -> shapes, sorted by name), without building
/// any weights.
pub fn variable_shapes(config: &VggConfig) -> BTreeMap<String, Vec<usize>> {
    let recorder = ShapeRecorder::default();
    let vb = VarBuilder::from_backend(Box::new(recorder.clone()), DType::F32, Device::Cpu);
    Vgg::new(config, vb).unwrap();
    let shapes = recorder.0.lock().unwrap().clone();
    shapes
}

/// Whether a variable is a batch-norm running statistic.
pub fn is_buffer(name: &str) -> bool {
    backbone::init::is_buffer(name)
}

/// The generator script's `fill`: variable `j` of the sorted state dict gets He-uniform
/// weights, batch-norm scales 1 +- 0.25, running variances 1 +- 0.5, biases and running
/// means +- 0.1.
pub fn fill_values(name: &str, shape: &[usize], j: usize) -> Vec<f32> {
    let n = shape.iter().product();
    if shape.len() > 1 {
        let fan_in: usize = shape[1..].iter().product();
        hashed_values(n, j, (6.0 / fan_in as f64).sqrt(), 0.0)
    } else if name.ends_with("running_var") {
        hashed_values(n, j, 0.5, 1.0)
    } else if name.ends_with("weight") {
        hashed_values(n, j, 0.25, 1.0)
    } else {
        hashed_values(n, j, 0.1, 0.0)
    }
}

/// The script's state dict of a configuration, as tensors.
pub fn filled_state(config: &VggConfig) -> HashMap<String, Tensor> {
    variable_shapes(config)
        .into_iter()
        .enumerate()
        .map(|(j, (name, shape))| {
            let values = fill_values(&name, &shape, j);
            let tensor = Tensor::from_vec(values, shape.as_slice(), &Device::Cpu).unwrap();
            (name, tensor)
        })
        .collect()
}

/// A model whose variables (trainable, in a [`VarMap`]) hold the script's weights.
pub fn model_with_fill(config: &VggConfig) -> Result<(Vgg, VarMap)> {
    let varmap = VarMap::new();
    {
        let mut data = varmap.data().lock().unwrap();
        for (j, (name, shape)) in variable_shapes(config).into_iter().enumerate() {
            let values = fill_values(&name, &shape, j);
            data.insert(name, Var::from_vec(values, shape.as_slice(), &Device::Cpu)?);
        }
    }
    let model = Vgg::new(config, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))?;
    Ok((model, varmap))
}

/// Asserts `|ours - reference| <= rel * max|reference|` element-wise.
pub fn assert_close(name: &str, ours: &Tensor, reference: &Tensor, rel: f32) {
    assert_eq!(ours.dims(), reference.dims(), "{name}: shape");
    let a = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = reference.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= rel * scale,
            "{name}[{i}]: ours {x}, reference {y} (scale {scale}, worst {worst})"
        );
    }
}
