//! Layer micro-benchmarks at representative shapes, forward and backward, through candle's
//! tensors and autograd (the kernels alone: `cargo bench -p kernels`).
//!
//! `cargo bench -p backbone`. Throughput is reported in elements per second where one
//! element is one floating-point operation (2 per multiply-accumulate), so criterion's
//! `Gelem/s` reads as GFLOP/s. `matmul_1024` is the machine's reference: the convolutions are
//! matrix products at heart, so their GFLOP/s is measured against it.
//!
//! The benches run with mimalloc, as xtask does (with glibc's allocator each iteration's
//! large buffers come fresh from the kernel, and page faults dominated the backward passes:
//! the max-pooling backward took 200 ms, 90% of it faults), and candle's idle threads
//! spinning briefly (`CANDLE_BARRIER_POOL_SPIN_LIMIT`, xtask's setting, unless set). xtask
//! also keeps mimalloc from purging freed pages (`xtask/src/runtime.rs`); set
//! `MIMALLOC_PURGE_DELAY=-1` for the same here.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use backbone::init::SeededVarMap;
use backbone::layers::{
    Activation, BatchNorm2d, BatchNormConfig, Conv2d, Conv2dConfig, ConvBlock, Layer, MaxPool2d, PoolConfig,
};
use candle_core::{DType, Device, Tensor, Var};
use criterion::{criterion_group, Criterion, Throughput};

fn conv_case(c: &mut Criterion, name: &str, cfg: Conv2dConfig, input: (usize, usize, usize, usize)) {
    let dev = Device::Cpu;
    let vars = SeededVarMap::new(0);
    let conv = Conv2d::new(cfg, vars.var_builder(DType::F32, &dev).pp("conv")).expect("conv");
    let x = Var::from_tensor(&Tensor::randn(0f32, 1f32, input, &dev).expect("input")).expect("var");
    let out = conv.forward_t(x.as_tensor(), true).expect("forward");
    let macs = out.elem_count() as u64 * (cfg.in_channels / cfg.groups * cfg.kernel.0 * cfg.kernel.1) as u64;
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    group.throughput(Throughput::Elements(2 * macs));
    group.bench_function("forward", |b| {
        b.iter(|| conv.forward_t(x.as_tensor(), true).expect("forward"))
    });
    // Backward: weight gradient and input gradient, each as costly as the forward.
    group.throughput(Throughput::Elements(4 * macs));
    group.bench_function("backward", |b| {
        let out = conv.forward_t(x.as_tensor(), true).expect("forward");
        let loss = out.sum_all().expect("sum");
        b.iter(|| loss.backward().expect("backward"))
    });
    group.finish();
}

fn convolutions(c: &mut Criterion) {
    conv_case(
        c,
        "conv3x3_64_64_56x56_b16",
        Conv2dConfig::new(64, 64, 3).padding(1).no_bias(),
        (16, 64, 56, 56),
    );
    conv_case(
        c,
        "conv1x1_256_64_56x56_b16",
        Conv2dConfig::new(256, 64, 1).no_bias(),
        (16, 256, 56, 56),
    );
    conv_case(
        c,
        "conv7x7s2_3_64_224x224_b8",
        Conv2dConfig::new(3, 64, 7).stride(2).padding(3).no_bias(),
        (8, 3, 224, 224),
    );
}

fn pooling_and_norm(c: &mut Criterion) {
    let dev = Device::Cpu;
    let x =
        Var::from_tensor(&Tensor::randn(0f32, 1f32, (16, 64, 112, 112), &dev).expect("input")).expect("var");
    let pool = MaxPool2d::new(PoolConfig::new(3).stride(2).padding(1)).expect("pool");
    let mut group = c.benchmark_group("maxpool3x3s2_64_112x112_b16");
    group.sample_size(10);
    group.throughput(Throughput::Elements(x.elem_count() as u64));
    group.bench_function("forward", |b| {
        b.iter(|| pool.forward_t(x.as_tensor(), true).expect("pool"))
    });
    group.bench_function("backward", |b| {
        let loss = pool
            .forward_t(x.as_tensor(), true)
            .expect("pool")
            .sum_all()
            .expect("sum");
        b.iter(|| loss.backward().expect("backward"))
    });
    group.finish();

    let vars = SeededVarMap::new(0);
    let bn = BatchNorm2d::new(
        64,
        BatchNormConfig::default(),
        vars.var_builder(DType::F32, &dev).pp("bn"),
    )
    .expect("bn");
    let x =
        Var::from_tensor(&Tensor::randn(0f32, 1f32, (16, 64, 56, 56), &dev).expect("input")).expect("var");
    let mut group = c.benchmark_group("batchnorm_64_56x56_b16");
    group.sample_size(10);
    group.throughput(Throughput::Elements(x.elem_count() as u64));
    group.bench_function("train_forward", |b| {
        b.iter(|| bn.forward_t(x.as_tensor(), true).expect("bn"))
    });
    group.bench_function("eval_forward", |b| {
        b.iter(|| bn.forward_t(x.as_tensor(), false).expect("bn"))
    });
    group.bench_function("train_backward", |b| {
        let loss = bn
            .forward_t(x.as_tensor(), true)
            .expect("bn")
            .sum_all()
            .expect("sum");
        b.iter(|| loss.backward().expect("backward"))
    });
    // A whole training step of the layer, fused kernels against the composite candle path.
    group.bench_function("train_forward_backward", |b| {
        b.iter(|| {
            let out = bn.forward_t(x.as_tensor(), true).expect("bn");
            out.sum_all().expect("sum").backward().expect("backward")
        })
    });
    group.bench_function("train_forward_backward_composite", |b| {
        b.iter(|| {
            let out = bn.forward_reference(x.as_tensor(), true).expect("bn");
            out.sum_all().expect("sum").backward().expect("backward")
        })
    });
    group.finish();
}

fn relu(c: &mut Criterion) {
    let dev = Device::Cpu;
    let x =
        Var::from_tensor(&Tensor::randn(0f32, 1f32, (16, 64, 56, 56), &dev).expect("input")).expect("var");
    let mut group = c.benchmark_group("relu_64_56x56_b16");
    group.sample_size(10);
    group.throughput(Throughput::Elements(x.elem_count() as u64));
    group.bench_function("forward", |b| {
        b.iter(|| Activation::Relu.forward_t(x.as_tensor(), true).expect("relu"))
    });
    // A training step of the layer: the op against the composite form it replaces.
    group.bench_function("forward_backward", |b| {
        b.iter(|| {
            let out = Activation::Relu.forward_t(x.as_tensor(), true).expect("relu");
            out.sum_all().expect("sum").backward().expect("backward")
        })
    });
    group.bench_function("forward_backward_composite", |b| {
        b.iter(|| {
            let out = backbone::ops::relu_reference(x.as_tensor()).expect("relu");
            out.sum_all().expect("sum").backward().expect("backward")
        })
    });
    group.finish();

    // Eval-mode conv + batch norm + ReLU: folded (inference mode) against the layers.
    let vars = SeededVarMap::new(0);
    let vb = vars.var_builder(DType::F32, &dev);
    let conv = Conv2d::new(Conv2dConfig::new(64, 64, 3).padding(1).no_bias(), vb.pp("conv")).expect("conv");
    let bn = BatchNorm2d::new(64, BatchNormConfig::default(), vb.pp("bn")).expect("bn");
    let block = ConvBlock::new(conv, Some(bn), Some(Activation::Relu));
    for batch in [1, 16] {
        let x = Tensor::randn(0f32, 1f32, (batch, 64, 56, 56), &dev).expect("input");
        let mut group = c.benchmark_group(format!("conv_bn_relu_64_56x56_b{batch}_eval"));
        group.sample_size(10);
        group.bench_function("folded", |b| {
            b.iter(|| backbone::inference_mode(|| block.forward_t(&x, false)).expect("block"))
        });
        group.bench_function("unfolded", |b| {
            b.iter(|| block.forward_unfolded(&x, false).expect("block"))
        });
        group.finish();
    }
}

fn matmul(c: &mut Criterion) {
    let dev = Device::Cpu;
    let a = Tensor::randn(0f32, 1f32, (1024, 1024), &dev).expect("a");
    let b = Tensor::randn(0f32, 1f32, (1024, 1024), &dev).expect("b");
    let mut group = c.benchmark_group("matmul_1024");
    group.sample_size(10);
    group.throughput(Throughput::Elements(2 * 1024 * 1024 * 1024));
    group.bench_function("f32", |bench| bench.iter(|| a.matmul(&b).expect("matmul")));
    group.finish();
}

criterion_group!(benches, matmul, convolutions, pooling_and_norm, relu);

fn main() {
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "200");
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
