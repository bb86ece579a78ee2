//! The GPU check `scripts/gpu_check.sh` runs: for the smallest variant of every family, seeded
//! weights copied to the device, the eval forward on the device against the CPU (max relative
//! error, `max|device - cpu| / max|cpu|`, at most 1e-4), and one training step on each
//! (cross-entropy, backward, SGD at 0.01): the loss on both and the updated weights' relative
//! error (models with dropout draw other masks on another device: their step is only checked
//! finite). One row per family on stdout, tab-separated; exits 1 when a forward is off.
//!
//! ```text
//! cargo run --release -p convnets --features cuda --example gpu_check -- --device cuda
//! cargo run --release -p convnets --example gpu_check -- --device cpu --families lenet --size 32
//! ```

use backbone::Backbone;
use candle_core::{DType, Device, Tensor, Var};
use convnets::{catalogue, create_model, families, CreateOptions};
use std::collections::HashMap;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn relative(a: &Tensor, b: &Tensor) -> Res<f64> {
    let a = a.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    let b = b.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    let diff = (a - &b)?.abs()?.max_all()?.to_scalar::<f64>()?;
    let scale = b.abs()?.max_all()?.to_scalar::<f64>()?.max(1e-30);
    Ok(diff / scale)
}

fn vars_of(model: &convnets::Model) -> Res<Vec<(String, Var)>> {
    let vars = model.vars.as_ref().ok_or("fresh models have variables")?;
    let data = vars.varmap().data().lock().map_err(|_| "poisoned lock")?;
    let mut out: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// One SGD step at 0.01 on a fixed batch; returns the loss.
fn train_step(net: &dyn Backbone, vars: &[(String, Var)], x: &Tensor, labels: &Tensor) -> Res<f32> {
    let logits = net.forward_t(x, true)?;
    let loss = candle_nn::loss::cross_entropy(&logits, labels)?;
    let grads = loss.backward()?;
    for (_, var) in vars {
        if let Some(g) = grads.get(var.as_tensor()) {
            var.set(&(var.as_tensor() - (g * 0.01)?)?)?;
        }
    }
    Ok(loss.to_scalar::<f32>()?)
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let device = match value("--device").as_deref().unwrap_or("cuda") {
        "cpu" => Device::Cpu,
        _ => Device::new_cuda(0)?,
    };
    let wanted: Option<Vec<String>> = value("--families").map(|f| f.split(',').map(String::from).collect());
    let size: Option<usize> = value("--size").map(|s| s.parse()).transpose()?;
    let batch = 2;
    println!(
        "family\tvariant\tinput\tforward rel err\ttrain loss cpu\ttrain loss device\tstep rel err\tresult"
    );
    let mut failed = 0;
    for family in families() {
        if wanted.as_ref().is_some_and(|w| !w.iter().any(|f| f == family)) {
            continue;
        }
        let Some(variant) = catalogue()
            .into_iter()
            .filter(|v| v.family == family)
            .min_by_key(|v| v.params)
        else {
            continue;
        };
        let make = |device: &Device| {
            create_model(
                variant.name,
                &CreateOptions {
                    num_classes: Some(10),
                    device: device.clone(),
                    seed: 1,
                    ..CreateOptions::default()
                },
            )
        };
        let (cpu, dev) = (make(&Device::Cpu)?, make(&device)?);
        let (cpu_vars, dev_vars) = (vars_of(&cpu)?, vars_of(&dev)?);
        // The same weights on both: the CPU's copied to the device.
        let by_name: HashMap<&str, &Var> = cpu_vars.iter().map(|(k, v)| (k.as_str(), v)).collect();
        for (name, var) in &dev_vars {
            let src = by_name
                .get(name.as_str())
                .ok_or("the same model has the same variables")?;
            var.set(&src.as_tensor().to_device(&device)?)?;
        }
        let c = cpu.pretrained_cfg.input_size.0;
        let (h, w) = match size {
            Some(s) => (s, s),
            None => (cpu.pretrained_cfg.input_size.1, cpu.pretrained_cfg.input_size.2),
        };
        let x = Tensor::randn(0f32, 1.0, (batch, c, h, w), &Device::Cpu)?;
        let labels = Tensor::new(&[1u32, 7], &Device::Cpu)?;
        let eval = |net: &dyn Backbone, x: &Tensor| backbone::inference_mode(|| net.forward_t(x, false));
        let y_cpu = eval(&*cpu.net, &x)?;
        let y_dev = eval(&*dev.net, &x.to_device(&device)?)?;
        let forward = relative(&y_dev, &y_cpu)?;
        let loss_cpu = train_step(&*cpu.net, &cpu_vars, &x, &labels)?;
        let loss_dev = train_step(
            &*dev.net,
            &dev_vars,
            &x.to_device(&device)?,
            &labels.to_device(&device)?,
        )?;
        let mut step: f64 = 0.0;
        for ((_, a), (_, b)) in dev_vars.iter().zip(&cpu_vars) {
            step = step.max(relative(a.as_tensor(), b.as_tensor())?);
        }
        let ok = forward <= 1e-4 && loss_dev.is_finite();
        failed += usize::from(!ok);
        println!(
            "{family}\t{}\t{c}x{h}x{w}\t{forward:.2e}\t{loss_cpu:.6}\t{loss_dev:.6}\t{step:.2e}\t{}",
            variant.name,
            if ok { "ok" } else { "FAILED" }
        );
    }
    if failed > 0 {
        eprintln!("{failed} families failed the forward check (1e-4) or trained to a non-finite loss");
        std::process::exit(1);
    }
    Ok(())
}
