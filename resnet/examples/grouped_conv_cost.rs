//! What ResNeXt's grouped convolutions cost on this machine.
//!
//! candle runs a grouped convolution as one convolution per group, one after the other, and
//! `backbone`'s convolution backward loops over the groups the same way. This times:
//!
//! 1. ResNeXt-50 32x4d against ResNet-50 (nearly the same MACs: 4.23 G and 4.09 G per
//!    224x224 image): eval forward, train forward, train forward + backward;
//! 2. one 3x3 convolution of 256 channels at 28x28 (ResNeXt-50's `layer2`), 32 groups against
//!    dense (32 times the MACs), and a dense 3x3 convolution of 256 / sqrt(32) ~ 45 channels
//!    (about the grouped MACs);
//! 3. the 16 grouped convolutions of ResNeXt-50 alone, at their shapes.
//!
//! ```sh
//! cargo run --release -p resnet --example grouped_conv_cost            # batch 8, 224x224
//! cargo run --release -p resnet --example grouped_conv_cost -- 2 3     # batch 2, 3 runs
//! ```

use backbone::init::SeededVarMap;
use backbone::layers::{Conv2d, Conv2dConfig, Layer};
use backbone::Backbone;
use candle_core::{DType, Device, Tensor, Var};
use resnet::{ResNet, ResNetConfig};
use std::time::Instant;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Median wall time of `runs` calls of `f`, in milliseconds, after one warm-up call.
fn time_ms(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn model(config: &ResNetConfig) -> Result<(ResNet, SeededVarMap)> {
    let vars = SeededVarMap::new(0);
    let model = ResNet::new(config, vars.var_builder(DType::F32, &Device::Cpu))?;
    Ok((model, vars))
}

fn whole_models(batch: usize, runs: usize) -> Result<()> {
    let x = Tensor::randn(0f32, 1.0, (batch, 3, 224, 224), &Device::Cpu)?;
    let targets = Tensor::from_vec((0..batch as u32).collect::<Vec<_>>(), batch, &Device::Cpu)?;
    println!("whole models, batch {batch}, 3x224x224 (median of {runs} runs):");
    println!(
        "  {:<18} {:>8} {:>14} {:>14} {:>18}",
        "model", "GMACs", "eval fwd ms", "train fwd ms", "train fwd+bwd ms"
    );
    for config in [ResNetConfig::resnet50(), ResNetConfig::resnext50_32x4d()] {
        let (model, _vars) = model(&config)?;
        let macs = backbone::summarize(&model, &[batch, 3, 224, 224], &Device::Cpu)?.total_macs();
        let eval = time_ms(runs, || {
            model.forward_t(&x, false)?;
            Ok(())
        })?;
        let train = time_ms(runs, || {
            model.forward_t(&x, true)?;
            Ok(())
        })?;
        let step = time_ms(runs, || {
            let logits = model.forward_t(&x, true)?;
            candle_nn::loss::cross_entropy(&logits, &targets)?.backward()?;
            Ok(())
        })?;
        println!(
            "  {:<18} {:>8.2} {:>14.1} {:>14.1} {:>18.1}",
            config.name(),
            macs as f64 / 1e9,
            eval,
            train,
            step
        );
    }
    Ok(())
}

/// Forward and forward + backward (input and weight gradients) of one convolution.
fn conv_cost(
    label: &str,
    config: Conv2dConfig,
    batch: usize,
    hw: usize,
    runs: usize,
) -> Result<(f64, f64, f64)> {
    let vars = SeededVarMap::new(1);
    let conv = Conv2d::new(config, vars.var_builder(DType::F32, &Device::Cpu))?;
    let x = Var::from_tensor(&Tensor::randn(
        0f32,
        1.0,
        (batch, config.in_channels, hw, hw),
        &Device::Cpu,
    )?)?;
    let fwd = time_ms(runs, || {
        conv.forward_t(x.as_tensor(), true)?;
        Ok(())
    })?;
    let both = time_ms(runs, || {
        conv.forward_t(x.as_tensor(), true)?.sum_all()?.backward()?;
        Ok(())
    })?;
    let out = (hw + 2 * config.padding.0 - config.kernel.0) / config.stride + 1;
    let macs = (batch * config.out_channels * out * out) as f64
        * (config.in_channels / config.groups * config.kernel.0 * config.kernel.1) as f64;
    println!(
        "  {label:<44} {:>8.3} {:>10.2} {:>14.2} {:>12.1}",
        macs / 1e9,
        fwd,
        both,
        macs / fwd / 1e6
    );
    Ok((macs, fwd, both))
}

fn single_convs(batch: usize, runs: usize) -> Result<()> {
    println!("\none 3x3 convolution, batch {batch}, 28x28, padding 1 (median of {runs} runs):");
    println!(
        "  {:<44} {:>8} {:>10} {:>14} {:>12}",
        "convolution", "GMACs", "fwd ms", "fwd+bwd ms", "fwd GMAC/s"
    );
    let conv3 = |c_in, c_out, groups| {
        Conv2dConfig::new(c_in, c_out, 3)
            .padding(1)
            .groups(groups)
            .no_bias()
    };
    let (_, grouped, grouped_both) =
        conv_cost("256 -> 256, 32 groups of 8", conv3(256, 256, 32), batch, 28, runs)?;
    let (_, dense, dense_both) = conv_cost(
        "256 -> 256, dense (32x the MACs)",
        conv3(256, 256, 1),
        batch,
        28,
        runs,
    )?;
    conv_cost(
        "45 -> 45, dense (about the grouped MACs)",
        conv3(45, 45, 1),
        batch,
        28,
        runs,
    )?;
    conv_cost("8 -> 8, dense (one group)", conv3(8, 8, 1), batch, 28, runs)?;
    println!(
        "  grouped / dense time: forward {:.2}, forward+backward {:.2} (MACs ratio 1/32 = 0.031)",
        grouped / dense,
        grouped_both / dense_both
    );
    Ok(())
}

fn resnext_grouped_convs(batch: usize, runs: usize) -> Result<()> {
    let config = ResNetConfig::resnext50_32x4d();
    println!("\nthe grouped 3x3 convolutions of ResNeXt-50 32x4d alone, batch {batch} (224x224 input):");
    println!(
        "  {:<44} {:>8} {:>10} {:>14} {:>12}",
        "convolution (x count)", "GMACs", "fwd ms", "fwd+bwd ms", "fwd GMAC/s"
    );
    let (mut fwd_total, mut both_total, mut macs_total) = (0.0, 0.0, 0.0);
    // (input size, stride, blocks of that shape) per stage; the first block of stages 2-4
    // is strided.
    let sizes = [56, 56, 28, 14];
    for (stage, (&planes, &blocks)) in resnet::STAGE_PLANES.iter().zip(&config.layers).enumerate() {
        let width = config.inner_width(planes);
        let shapes: &[(usize, usize, usize)] = if stage == 0 {
            &[(sizes[0], 1, blocks)]
        } else {
            &[(sizes[stage], 2, 1), (sizes[stage] / 2, 1, blocks - 1)]
        };
        for &(hw, stride, count) in shapes {
            let cfg = Conv2dConfig::new(width, width, 3)
                .padding(1)
                .stride(stride)
                .groups(config.groups)
                .no_bias();
            let label = format!(
                "layer{} {width}ch {hw}x{hw} stride {stride} (x{count})",
                stage + 1
            );
            let (macs, fwd, both) = conv_cost(&label, cfg, batch, hw, runs)?;
            fwd_total += fwd * count as f64;
            both_total += both * count as f64;
            macs_total += macs * count as f64;
        }
    }
    println!(
        "  all 16: {:.3} GMACs, forward {fwd_total:.1} ms, forward+backward {both_total:.1} ms",
        macs_total / 1e9
    );
    Ok(())
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let batch: usize = args.next().map_or(Ok(8), |a| a.parse())?;
    let runs: usize = args.next().map_or(Ok(3), |a| a.parse())?;
    println!(
        "CPU threads: {}",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    whole_models(batch, runs)?;
    single_convs(batch, runs.max(5))?;
    resnext_grouped_convs(batch, runs.max(5))?;
    Ok(())
}
