//! Synchronised batch norm (`backbone::layers::sync_batch_norm`, PyTorch's `SyncBatchNorm`) over
//! an in-process group (one "rank" per thread, an all-reduce through a barrier) against plain
//! batch norm on the concatenated batch: the outputs, the gradients of the input (each rank's
//! part), of the weight and bias (summed over the ranks) and the running statistics of every
//! rank, in training mode, for equal and unequal local batches, in f32 and f64; eval mode and a
//! group of one are plain batch norm.

use crate::common;

use backbone::layers::{sync_batch_norm, BatchNorm2d, BatchNormConfig, BatchNormSync, Layer};
use candle_core::{DType, Result, Tensor, Var};
use common::{assert_close, uniform, var_builder, TestResult};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Barrier, Mutex};

/// What the ranks of a [`ThreadGroup`] share: each rank's contribution, a barrier.
struct Shared {
    slots: Mutex<Vec<Vec<f64>>>,
    barrier: Barrier,
}

/// One rank of a group of threads.
struct ThreadGroup {
    rank: usize,
    shared: Arc<Shared>,
}

impl BatchNormSync for ThreadGroup {
    fn world_size(&self) -> usize {
        self.shared.slots.lock().map_or(0, |s| s.len())
    }

    fn all_reduce_sum(&self, values: &mut [f64]) -> Result<()> {
        self.shared
            .slots
            .lock()
            .map_err(|_| candle_core::Error::Msg("poisoned".into()))?[self.rank] = values.to_vec();
        self.shared.barrier.wait();
        {
            let slots = self
                .shared
                .slots
                .lock()
                .map_err(|_| candle_core::Error::Msg("poisoned".into()))?;
            // In rank order on every rank: the same sums everywhere.
            for (i, v) in values.iter_mut().enumerate() {
                *v = slots.iter().map(|s| s[i]).sum();
            }
        }
        // Nobody writes the next contribution before every rank has read this one.
        self.shared.barrier.wait();
        Ok(())
    }
}

/// A layer over fresh variables (seeded weight, bias and running statistics) in `dtype`.
fn layer(c: usize, dtype: DType) -> Result<BatchNorm2d> {
    let tensors = [
        ("weight", (uniform(c, 0.5, 1)? + 1.0)?),
        ("bias", uniform(c, 1.0, 2)?),
        ("running_mean", uniform(c, 1.0, 3)?),
        ("running_var", (uniform(c, 0.5, 4)? + 1.0)?),
    ];
    let mut vars = HashMap::new();
    for (name, t) in tensors {
        let var = Var::from_tensor(&t.to_dtype(dtype)?)?;
        vars.insert(format!("bn.{name}"), var.as_tensor().clone());
    }
    BatchNorm2d::new(c, BatchNormConfig::default(), var_builder(vars, dtype).pp("bn"))
        .map_err(|e| candle_core::Error::Msg(e.to_string()))
}

/// A training pass of `sum(out * g)` and what it changed.
struct Outcome {
    out: Tensor,
    input_grad: Tensor,
    weight_grad: Tensor,
    bias_grad: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
}

fn train_pass(bn: &BatchNorm2d, x: &Tensor, g: &Tensor) -> Result<Outcome> {
    let x = Var::from_tensor(x)?;
    let out = bn
        .forward_t(x.as_tensor(), true)
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let grads = out.mul(g)?.sum_all()?.backward()?;
    let grad = |t: &Tensor, what: &str| {
        grads
            .get(t)
            .cloned()
            .ok_or_else(|| candle_core::Error::Msg(format!("no gradient reached the {what}")))
    };
    let (w, b) = bn.weight().zip(bn.bias()).expect("affine layer");
    Ok(Outcome {
        input_grad: grad(x.as_tensor(), "input")?,
        weight_grad: grad(w, "weight")?,
        bias_grad: grad(b, "bias")?,
        out,
        running_mean: bn.running_mean().clone(),
        running_var: bn.running_var().clone(),
    })
}

/// Each rank's pass on its part (`batches[r]` images) of `x`, on its own thread and layer,
/// synchronised over the group.
fn synced(x: &Tensor, g: &Tensor, batches: &[usize]) -> Result<Vec<Outcome>> {
    let shared = Arc::new(Shared {
        slots: Mutex::new(vec![Vec::new(); batches.len()]),
        barrier: Barrier::new(batches.len()),
    });
    let (c, dtype) = (x.dim(1)?, x.dtype());
    let mut starts = vec![0];
    for b in batches {
        starts.push(starts[starts.len() - 1] + b);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = batches
            .iter()
            .enumerate()
            .map(|(rank, &n)| {
                let shared = Arc::clone(&shared);
                let (x, g) = (x.narrow(0, starts[rank], n), g.narrow(0, starts[rank], n));
                scope.spawn(move || -> Result<Outcome> {
                    let bn = layer(c, dtype)?;
                    let group: Rc<dyn BatchNormSync> = Rc::new(ThreadGroup { rank, shared });
                    sync_batch_norm(group, || train_pass(&bn, &x?, &g?))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a rank panicked"))
            .collect()
    })
}

#[test]
fn synced_ranks_equal_plain_batch_norm_on_the_whole_batch() -> TestResult {
    // (shape of one image, local batches): equal and unequal batches, maps and rank 2.
    let cases: [(&[usize], &[usize]); 4] = [
        (&[3, 5, 4], &[2, 2]),
        (&[3, 5, 4], &[1, 2, 3]),
        (&[4, 1, 1], &[3, 1]),
        (&[6], &[3, 3]),
    ];
    for (i, (image, batches)) in cases.into_iter().enumerate() {
        let n: usize = batches.iter().sum();
        let shape: Vec<usize> = std::iter::once(n).chain(image.iter().copied()).collect();
        let x64 = (uniform(shape.as_slice(), 2.0, 10 + i as u64)? + 0.7)?;
        let g64 = uniform(shape.as_slice(), 1.0, 20 + i as u64)?;
        for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 1e-5)] {
            let what = format!("{shape:?} as {batches:?} in {dtype:?}");
            let (x, g) = (x64.to_dtype(dtype)?, g64.to_dtype(dtype)?);
            let whole = train_pass(&layer(image[0], dtype)?, &x, &g)?;
            let ranks = synced(&x, &g, batches)?;
            let cat = |f: fn(&Outcome) -> &Tensor| Tensor::cat(&ranks.iter().map(f).collect::<Vec<_>>(), 0);
            let sum = |f: fn(&Outcome) -> &Tensor| -> Result<Tensor> {
                ranks
                    .iter()
                    .skip(1)
                    .try_fold(f(&ranks[0]).clone(), |acc, r| acc + f(r))
            };
            assert_close(&cat(|o| &o.out)?, &whole.out, tol, &format!("{what}: output"));
            assert_close(
                &cat(|o| &o.input_grad)?,
                &whole.input_grad,
                tol,
                &format!("{what}: input gradient"),
            );
            assert_close(
                &sum(|o| &o.weight_grad)?,
                &whole.weight_grad,
                tol,
                &format!("{what}: weight gradient"),
            );
            assert_close(
                &sum(|o| &o.bias_grad)?,
                &whole.bias_grad,
                tol,
                &format!("{what}: bias gradient"),
            );
            for (r, rank) in ranks.iter().enumerate() {
                assert_close(
                    &rank.running_mean,
                    &whole.running_mean,
                    tol,
                    &format!("{what}: rank {r}'s running mean"),
                );
                assert_close(
                    &rank.running_var,
                    &whole.running_var,
                    tol,
                    &format!("{what}: rank {r}'s running variance"),
                );
            }
            // And the ranks alone (per-rank statistics) would not: the test can fail.
            let alone = train_pass(
                &layer(image[0], dtype)?,
                &x.narrow(0, 0, batches[0])?,
                &g.narrow(0, 0, batches[0])?,
            )?;
            let diff = (alone.running_mean - &whole.running_mean)?.abs()?.max(0)?;
            assert!(diff.to_dtype(DType::F64)?.to_scalar::<f64>()? > 1e-3, "{what}");
        }
    }
    Ok(())
}

#[test]
fn eval_mode_and_a_group_of_one_are_plain_batch_norm() -> TestResult {
    let x = (uniform(&[4, 3, 5, 5], 2.0, 7)? + 0.3)?.to_dtype(DType::F32)?;
    let g = uniform(&[4, 3, 5, 5], 1.0, 8)?.to_dtype(DType::F32)?;
    let plain = train_pass(&layer(3, DType::F32)?, &x, &g)?;
    let one: Rc<dyn BatchNormSync> = Rc::new(ThreadGroup {
        rank: 0,
        shared: Arc::new(Shared {
            slots: Mutex::new(vec![Vec::new()]),
            barrier: Barrier::new(1),
        }),
    });
    let alone = sync_batch_norm(one.clone(), || train_pass(&layer(3, DType::F32)?, &x, &g))?;
    assert_close(&alone.out, &plain.out, 0.0, "a group of one: output");
    assert_close(
        &alone.input_grad,
        &plain.input_grad,
        0.0,
        "a group of one: input gradient",
    );
    // Eval mode reads the running statistics, in or out of a group.
    let bn = layer(3, DType::F32)?;
    let outside = bn.forward_t(&x, false)?;
    let two: Rc<dyn BatchNormSync> = Rc::new(ThreadGroup {
        rank: 0,
        shared: Arc::new(Shared {
            slots: Mutex::new(vec![Vec::new(); 2]),
            barrier: Barrier::new(2),
        }),
    });
    // (A training pass here would wait for rank 1 forever: eval mode must not call the group.)
    let inside = sync_batch_norm(two, || bn.forward_t(&x, false))?;
    assert_close(&inside, &outside, 0.0, "eval mode in a group");
    assert!(backbone::layers::batch_norm_group().is_none(), "the scope ended");
    let err =
        backbone::layers::sync_bn::all_reduce_sum(&Tensor::new(&[1f64, 2.], &candle_core::Device::Cpu)?)
            .unwrap_err()
            .to_string();
    assert!(err.contains("no batch-norm group"), "{err}");
    Ok(())
}
