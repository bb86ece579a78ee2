//! The cost of a depthwise convolution (`groups == channels`) on the CPU, in f32, forward and
//! forward + backward, through three paths:
//!
//! * candle's own grouped convolution (`Tensor::conv2d`, one convolution per channel, and
//!   candle's autograd);
//! * [`backbone::ops::conv2d`] with `groups = channels` (what `Conv2d` ran before it
//!   dispatched depthwise convolutions to the direct kernel);
//! * [`backbone::ops::depthwise_conv2d`], the direct kernels.
//!
//! The backward pass is that of `sum(out)` w.r.t. both the input and the weight; the last row
//! is the autograd bookkeeping of that loss alone (the same for every path). Times are the
//! fastest of several runs, which is robust to other load on the machine.
//!
//! ```sh
//! cargo run --release -p backbone --example depthwise_cost
//! ```

use backbone::ops::{conv2d, depthwise_conv2d, ConvParams, DepthwiseParams};
use candle_core::{Device, Result, Tensor, Var};
use std::time::Instant;

const RUNS: usize = 9;

/// Fastest wall time of `RUNS` calls of `f`, in ms, after one warm-up call.
fn time_ms(mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut best = f64::INFINITY;
    for _ in 0..RUNS {
        let start = Instant::now();
        f()?;
        best = best.min(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(best)
}

type Path<'a> = Box<dyn Fn(&Tensor, &Tensor) -> Result<Tensor> + 'a>;

fn main() -> Result<()> {
    let dev = Device::Cpu;
    println!(
        "rayon threads: {}; f32; fastest of {RUNS} runs",
        rayon::current_num_threads()
    );
    for (n, c, hw, k) in [(8, 240, 28, 3), (8, 672, 14, 5)] {
        let pad = k / 2;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, c, hw, hw), &dev)?)?;
        let w = Var::from_tensor(&(Tensor::randn(0f32, 1.0, (c, 1, k, k), &dev)? * 0.2)?)?;
        let paths: Vec<(&str, Path)> = vec![
            (
                "candle grouped conv (Tensor::conv2d)",
                Box::new(move |x: &Tensor, w: &Tensor| x.conv2d(w, pad, 1, 1, c)),
            ),
            (
                "backbone::ops::conv2d, groups = C",
                Box::new(move |x: &Tensor, w: &Tensor| {
                    let p = ConvParams {
                        padding: pad,
                        stride: 1,
                        dilation: 1,
                        groups: c,
                    };
                    conv2d(x, w, p)
                }),
            ),
            (
                "backbone::ops::depthwise_conv2d",
                Box::new(move |x: &Tensor, w: &Tensor| {
                    depthwise_conv2d(x, w, DepthwiseParams::new().padding(pad))
                }),
            ),
        ];
        println!("\n{k}x{k} depthwise over [{n}, {c}, {hw}, {hw}]");
        println!("  {:<40} {:>10} {:>12}", "path", "forward", "fwd + bwd");
        let reference = (paths[2].1)(x.as_tensor(), w.as_tensor())?;
        for (label, f) in &paths {
            // Same numbers before timing anything.
            let diff = (f(x.as_tensor(), w.as_tensor())? - &reference)?
                .abs()?
                .max_all()?
                .to_scalar::<f32>()?;
            assert!(diff < 1e-3, "{label} disagrees by {diff}");
            let fwd = time_ms(|| f(&x.as_tensor().detach(), &w.as_tensor().detach()).map(|_| ()))?;
            let train = time_ms(|| {
                let grads = f(x.as_tensor(), w.as_tensor())?.sum_all()?.backward()?;
                assert!(grads.get(x.as_tensor()).is_some() && grads.get(w.as_tensor()).is_some());
                Ok(())
            })?;
            println!("  {label:<40} {fwd:>7.1} ms {train:>9.1} ms");
        }
        let loss_only = time_ms(|| {
            let out = Var::from_tensor(&reference)?;
            out.as_tensor().sum_all()?.backward()?;
            Ok(())
        })?;
        println!(
            "  {:<40} {:>10} {loss_only:>9.1} ms",
            "(the loss's own autograd)", "-"
        );
    }
    Ok(())
}
