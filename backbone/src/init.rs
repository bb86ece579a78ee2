//! Seeded initialisation: the same seed gives the same weights and the same dropout masks.
//!
//! candle's CPU random generator cannot be seeded, so fresh models are built through
//! [`SeededVarMap`], a [`candle_nn::VarMap`] whose new variables are drawn from a seeded
//! ChaCha generator, and [`crate::layers::Dropout`] draws its masks from [`with_rng`].

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use candle_nn::{Init, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use std::sync::{Arc, Mutex, OnceLock};

/// The default initialisation of PyTorch's `Conv2d` and `Linear` weights and biases:
/// uniform in `±1/sqrt(fan_in)` (kaiming_uniform with `a = sqrt(5)`).
pub fn torch_default(fan_in: usize) -> Init {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// A [`VarMap`] whose new variables are drawn from a seeded generator, in the order the
/// model's constructor asks for them.
#[derive(Clone)]
pub struct SeededVarMap {
    varmap: VarMap,
    rng: Arc<Mutex<ChaCha8Rng>>,
}

impl SeededVarMap {
    /// A new, empty map seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            varmap: VarMap::new(),
            rng: Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed))),
        }
    }

    /// The underlying [`VarMap`] (all variables, parameters and buffers).
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// A [`VarBuilder`] creating (or returning) variables of this map.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, device.clone())
    }

    /// The initial values of a variable of `shape`, each sampled in f64 and then `cast` (so
    /// that a float32 model holds no f64 copy of its weights, even for a moment).
    fn sample<T>(&self, shape: &Shape, init: Init, cast: impl Fn(f64) -> T) -> candle_core::Result<Vec<T>> {
        let n = shape.elem_count();
        let mut rng = self
            .rng
            .lock()
            .map_err(|_| candle_core::Error::Msg("rng poisoned".into()))?;
        let values = match init {
            Init::Const(v) => (0..n).map(|_| cast(v)).collect(),
            Init::Uniform { lo, up } => (0..n).map(|_| cast(rng.random_range(lo..up))).collect(),
            Init::Randn { mean, stdev } => normal(&mut rng, mean, stdev, n, cast)?,
            Init::Kaiming {
                dist,
                fan,
                non_linearity,
            } => {
                let dims = shape.dims();
                let receptive: usize = dims.iter().skip(2).product();
                let fan = match (fan, dims) {
                    (FanInOut::FanIn, [_, i, ..]) => i * receptive,
                    (FanInOut::FanOut, [o, ..]) => o * receptive,
                    (_, [d]) => *d,
                    _ => 1,
                };
                let gain = match non_linearity {
                    NonLinearity::ReLU => 2f64.sqrt(),
                    NonLinearity::Tanh => 5.0 / 3.0,
                    NonLinearity::Linear | NonLinearity::Sigmoid => 1.0,
                    NonLinearity::SELU => 0.75,
                    NonLinearity::ExplicitGain(g) => g,
                };
                let std = gain / (fan.max(1) as f64).sqrt();
                match dist {
                    NormalOrUniform::Normal => normal(&mut rng, 0.0, std, n, cast)?,
                    NormalOrUniform::Uniform => {
                        let bound = 3f64.sqrt() * std;
                        (0..n).map(|_| cast(rng.random_range(-bound..bound))).collect()
                    }
                }
            }
        };
        Ok(values)
    }
}

fn normal<T>(
    rng: &mut ChaCha8Rng,
    mean: f64,
    stdev: f64,
    n: usize,
    cast: impl Fn(f64) -> T,
) -> candle_core::Result<Vec<T>> {
    let dist = Normal::new(mean, stdev).map_err(|e| candle_core::Error::Msg(format!("normal init: {e}")))?;
    Ok((0..n).map(|_| cast(dist.sample(rng))).collect())
}

impl candle_nn::var_builder::SimpleBackend for SeededVarMap {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("varmap poisoned".into()))?;
        if let Some(var) = data.get(name) {
            if var.shape() != &shape {
                candle_core::bail!(
                    "variable `{name}`: expected shape {shape:?}, found {:?}",
                    var.shape()
                )
            }
            return Ok(var.as_tensor().clone());
        }
        // f32 and f64 on the CPU: the values rounded one by one (as `to_dtype` rounds) and
        // moved into the variable, rather than an f64 vector, its tensor, the converted tensor
        // and the variable's copy (VGG-16's 411 MB classifier weight was alive in four
        // copies for a moment, which the allocator then kept: 1.3 GB after building VGG-16).
        let var = match (dtype, dev) {
            (DType::F32, Device::Cpu) => Var::from_vec(self.sample(&shape, init, |v| v as f32)?, shape, dev)?,
            (DType::F64, Device::Cpu) => Var::from_vec(self.sample(&shape, init, |v| v)?, shape, dev)?,
            _ => Var::from_tensor(
                &Tensor::from_vec(self.sample(&shape, init, |v| v)?, shape, &Device::Cpu)?
                    .to_dtype(dtype)?
                    .to_device(dev)?,
            )?,
        };
        let out = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> candle_core::Result<Tensor> {
        let data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("varmap poisoned".into()))?;
        match data.get(name) {
            Some(var) => Ok(var.as_tensor().clone()),
            None => candle_core::bail!("variable `{name}` has not been created"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap
            .data()
            .lock()
            .map(|d| d.contains_key(name))
            .unwrap_or(false)
    }
}

fn global_rng() -> &'static Mutex<ChaCha8Rng> {
    static RNG: OnceLock<Mutex<ChaCha8Rng>> = OnceLock::new();
    RNG.get_or_init(|| Mutex::new(ChaCha8Rng::seed_from_u64(0)))
}

/// Reseeds the generator used by stochastic layers (dropout, stochastic depth).
pub fn seed(seed: u64) {
    let mut rng = global_rng().lock().unwrap_or_else(|e| e.into_inner());
    *rng = ChaCha8Rng::seed_from_u64(seed);
}

/// Runs `f` with the generator of stochastic layers.
pub fn with_rng<T>(f: impl FnOnce(&mut ChaCha8Rng) -> T) -> T {
    let mut rng = global_rng().lock().unwrap_or_else(|e| e.into_inner());
    f(&mut rng)
}

/// Whether a variable name is a buffer (batch-norm running statistics) rather than a
/// trainable parameter: buffers are saved in checkpoints but never given to an optimizer.
pub fn is_buffer(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var") || name.ends_with("num_batches_tracked")
}

/// The trainable variables of a map (everything but buffers), sorted by name so the
/// optimizer sees them in a stable order.
pub fn trainable_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
    let mut vars: Vec<(String, Var)> = data
        .iter()
        .filter(|(name, _)| !is_buffer(name))
        .map(|(name, var)| (name.clone(), var.clone()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// Whether the variable `name` is `prefix` or lies under `prefix.` (an empty prefix holds
/// nothing).
pub fn is_under(name: &str, prefix: &str) -> bool {
    !prefix.is_empty()
        && name.starts_with(prefix)
        && (name.len() == prefix.len() || name.as_bytes().get(prefix.len()) == Some(&b'.'))
}

/// The variables of `model` an optimizer may train: [`trainable_vars`] without those under the
/// model's [`crate::Backbone::frozen_prefixes`] (a frozen auxiliary learner), sorted by name.
pub fn trainable_model_vars(varmap: &VarMap, model: &dyn crate::Backbone) -> Vec<(String, Var)> {
    let frozen = model.frozen_prefixes();
    let mut vars = trainable_vars(varmap);
    vars.retain(|(name, _)| !frozen.iter().any(|p| is_under(name, p)));
    vars
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::init::DEFAULT_KAIMING_NORMAL;

    /// A float32 variable holds its float64 twin's values rounded (as `to_dtype` rounds), for
    /// every kind of initialisation, and a bfloat16 one (the path through `to_dtype`) too.
    #[test]
    fn float32_and_bfloat16_variables_are_their_float64_twins_rounded() {
        let inits = [
            DEFAULT_KAIMING_NORMAL,
            Init::Uniform { lo: -0.3, up: 0.7 },
            Init::Randn {
                mean: 0.5,
                stdev: 2.0,
            },
            Init::Const(0.1),
        ];
        for (i, init) in inits.into_iter().enumerate() {
            let get = |dtype| {
                let map = SeededVarMap::new(7);
                map.var_builder(dtype, &Device::Cpu)
                    .get_with_hints((3, 4, 5), "w", init)
                    .unwrap()
            };
            let f64s = get(DType::F64);
            for dtype in [DType::F32, DType::BF16] {
                let ours = get(dtype).to_dtype(DType::F64).unwrap();
                let expected = f64s.to_dtype(dtype).unwrap().to_dtype(DType::F64).unwrap();
                let (a, b): (Vec<f64>, Vec<f64>) = (
                    ours.flatten_all().unwrap().to_vec1().unwrap(),
                    expected.flatten_all().unwrap().to_vec1().unwrap(),
                );
                assert_eq!(a, b, "init {i}, {dtype:?}");
            }
        }
    }
}
