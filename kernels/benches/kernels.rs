//! Kernel micro-benchmarks at representative shapes, on slices (no tensors, no autograd).
//!
//! `cargo bench -p kernels` (`CONVNETS_KERNELS_ISA=portable|avx2|avx512` to force a path).
//! Throughput is in elements per second where one element is one floating-point operation
//! (2 per multiply-add), so criterion's `Gelem/s` reads as GFLOP/s; `peak` is the machine's
//! measured FMA peak on the chosen path ([`kernels::peak`]) and `conv1x1_1024` a plain
//! matrix product (a pointwise convolution of one 1024-channel 32x32 image) for reference.
//! The allocator is mimalloc, as in xtask.

use criterion::{criterion_group, Criterion, Throughput};
use kernels::conv::{ConvGeometry, ConvParams};
use kernels::pool::{max_pool_bwd, max_pool_fwd, windows, View4};
use std::hint::black_box;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn values(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919 % 2003) as f32 / 1001.5) - 1.0)
        .collect()
}

fn conv_case(c: &mut Criterion, name: &str, x: [usize; 4], w: [usize; 4], padding: usize, stride: usize) {
    let p = ConvParams {
        padding,
        stride,
        dilation: 1,
        groups: 1,
    };
    let Ok(g) = ConvGeometry::new(&x, &w, p) else {
        return;
    };
    let (xs, ws) = (values(x.iter().product()), values(w.iter().product()));
    let grad = values(g.n() * g.cout() * g.oh() * g.ow());
    let macs = (g.n() * g.cout() * g.oh() * g.ow() * w[1] * w[2] * w[3]) as u64;
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    group.throughput(Throughput::Elements(2 * macs));
    group.bench_function("forward", |b| {
        b.iter(|| kernels::conv::forward(&g, &xs, &ws, None, None))
    });
    group.bench_function("input_grad", |b| {
        b.iter(|| kernels::conv::input_grad(&g, &grad, &ws))
    });
    group.bench_function("input_grad_im2col", |b| {
        b.iter(|| kernels::conv::input_grad_im2col(&g, &grad, &ws))
    });
    group.bench_function("weight_grad", |b| {
        b.iter(|| kernels::conv::weight_grad(&g, &xs, &grad, None))
    });
    group.finish();
}

fn convolutions(c: &mut Criterion) {
    conv_case(
        c,
        "conv1x1_1024_32x32_b1",
        [1, 1024, 32, 32],
        [1024, 1024, 1, 1],
        0,
        1,
    );
    conv_case(
        c,
        "conv3x3_64_64_56x56_b16",
        [16, 64, 56, 56],
        [64, 64, 3, 3],
        1,
        1,
    );
    conv_case(
        c,
        "conv3x3_128_128_16x16_b64",
        [64, 128, 16, 16],
        [128, 128, 3, 3],
        1,
        1,
    );
    conv_case(
        c,
        "conv1x1_256_64_56x56_b16",
        [16, 256, 56, 56],
        [64, 256, 1, 1],
        0,
        1,
    );
    conv_case(
        c,
        "conv7x7s2_3_64_224x224_b8",
        [8, 3, 224, 224],
        [64, 3, 7, 7],
        3,
        2,
    );
}

fn pooling_and_elementwise(c: &mut Criterion) {
    let dims = [16, 64, 112, 112];
    let x = values(dims.iter().product());
    let grad = values(16 * 64 * 56 * 56);
    let mut group = c.benchmark_group("maxpool3x3s2_64_112x112_b16");
    group.sample_size(10);
    group.throughput(Throughput::Elements(x.len() as u64));
    if let (Ok(view), Ok(gview), Ok(wh), Ok(ww)) = (
        View4::contiguous("bench", &x, dims),
        View4::contiguous("bench", &grad, [16, 64, 56, 56]),
        windows(56, 3, 2, 1, 112),
        windows(56, 3, 2, 1, 112),
    ) {
        group.bench_function("forward", |b| b.iter(|| max_pool_fwd(&view, &wh, &ww)));
        group.bench_function("backward", |b| b.iter(|| max_pool_bwd(&view, &gview, &wh, &ww)));
    }
    group.finish();

    let x = values(16 * 64 * 56 * 56);
    let mut group = c.benchmark_group("elementwise_64_56x56_b16");
    group.sample_size(10);
    group.throughput(Throughput::Elements(x.len() as u64));
    group.bench_function("relu", |b| b.iter(|| kernels::elementwise::relu(&x)));
    group.bench_function("add_relu", |b| {
        b.iter(|| kernels::elementwise::add_relu(&x, &grad))
    });
    if let (Ok(p), Ok(k)) = (
        kernels::batch_norm::Planes::new("bench", &[16, 64, 56, 56], 64),
        kernels::batch_norm::Coefs::<f32>::new(&[0.1; 64], &[1.5; 64], &[0.2; 64], &[]),
    ) {
        group.bench_function("batch_norm_moments", |b| {
            b.iter(|| kernels::batch_norm::moments(&x, p))
        });
        group.bench_function("batch_norm_eval_relu", |b| {
            b.iter(|| kernels::batch_norm::affine1::<f32, true>(&x, p, &k))
        });
    }
    group.finish();
}

fn peak(c: &mut Criterion) {
    let threads = rayon::current_num_threads();
    let peak = kernels::peak::measure(threads, std::time::Duration::from_millis(300));
    println!(
        "FMA peak, {} ({} f32 lanes), {} threads: {:.0} GFLOP/s ({:?} per thread)",
        peak.isa,
        peak.lanes,
        peak.threads,
        peak.total(),
        peak.per_thread.iter().map(|g| g.round()).collect::<Vec<_>>()
    );
    black_box(c);
}

/// ResNet-18's convolutions at batch 1 (224x224 images): the blocked direct convolution
/// (input already blocked, as between layers) against the im2col / Winograd inference pass.
fn blocked(c: &mut Criterion) {
    let layers: [([usize; 4], [usize; 4], usize, usize); 6] = [
        ([1, 3, 224, 224], [64, 3, 7, 7], 2, 3),
        ([1, 64, 56, 56], [64, 64, 3, 3], 1, 1),
        ([1, 128, 28, 28], [128, 128, 3, 3], 1, 1),
        ([1, 256, 14, 14], [256, 256, 3, 3], 1, 1),
        ([1, 512, 7, 7], [512, 512, 3, 3], 1, 1),
        ([1, 64, 56, 56], [128, 64, 1, 1], 2, 0),
    ];
    for (xd, wd, stride, padding) in layers {
        let p = ConvParams {
            padding,
            stride,
            dilation: 1,
            groups: 1,
        };
        let Ok(g) = ConvGeometry::new(&xd, &wd, p) else {
            continue;
        };
        let (x, w) = (values(xd.iter().product()), values(wd.iter().product()));
        let Ok(conv) = kernels::blocked::BlockedConv::new(&w, None, wd, stride, padding, true) else {
            continue;
        };
        let Ok(bx) = kernels::blocked::Blocked::from_nchw(&x, xd, conv.block()) else {
            continue;
        };
        let macs = (g.n() * g.cout() * g.oh() * g.ow() * wd[1] * wd[2] * wd[3]) as u64;
        let mut group = c.benchmark_group(format!(
            "resnet18_conv_{}x{}_{}_{}_{}x{}_s{stride}",
            wd[2], wd[3], wd[1], wd[0], xd[2], xd[3]
        ));
        group.sample_size(20);
        group.throughput(Throughput::Elements(2 * macs));
        group.bench_function("im2col_winograd", |b| {
            b.iter(|| kernels::conv::forward_inference(&g, &x, &w, None))
        });
        group.bench_function("blocked", |b| b.iter(|| conv.forward(&bx, None)));
        group.finish();
    }
}

/// ResNet's 3x3 stride-1 convolutions at batch 1 and 16 (224x224 images), VGG's first at
/// batch 8 and ResNet-18's first two stages at batch 64 on 32x32 images: the inference pass
/// with Winograd F(4x4, 3x3) where it qualifies, with F(2x2, 3x3) only, and with im2col only
/// ([`kernels::conv::set_winograd`]); and with the weight prepared once (`prepared`:
/// [`kernels::conv::prepare_weight`] before the timing, as `backbone::with_frozen_weights`
/// does), which also takes Winograd on the small maps of batch 1 (ResNet's 28x28, 14x14, 7x7).
fn winograd(c: &mut Criterion) {
    use kernels::conv::{set_winograd, Winograd};
    let layers: [(usize, usize, usize); 11] = [
        (1, 64, 56),
        (1, 128, 28),
        (1, 256, 14),
        (1, 512, 7),
        (16, 512, 7),
        (16, 64, 56),
        (16, 128, 28),
        (16, 256, 14),
        (8, 64, 224),
        (64, 64, 32),
        (64, 128, 16),
    ];
    let p = ConvParams {
        padding: 1,
        stride: 1,
        dilation: 1,
        groups: 1,
    };
    for (n, ch, size) in layers {
        let (xd, wd) = ([n, ch, size, size], [ch, ch, 3, 3]);
        let Ok(g) = ConvGeometry::new(&xd, &wd, p) else {
            continue;
        };
        let (x, w) = (values(xd.iter().product()), values(wd.iter().product()));
        let macs = (g.n() * g.cout() * g.oh() * g.ow() * ch * 9) as u64;
        let mut group = c.benchmark_group(format!("winograd_3x3_{ch}_{size}x{size}_b{n}"));
        group.sample_size(10);
        group.throughput(Throughput::Elements(2 * macs));
        for (name, setting) in [
            ("f4", Winograd::Both),
            ("f2", Winograd::F2Only),
            ("im2col", Winograd::Off),
        ] {
            let previous = set_winograd(setting);
            group.bench_function(name, |b| {
                b.iter(|| kernels::conv::forward_inference(&g, &x, &w, None))
            });
            set_winograd(previous);
        }
        if let Some(choice) = kernels::conv::prepared_choice(&g) {
            let prepared = kernels::conv::prepare_weight(&g, &w, choice).expect("prepare");
            group.bench_function("prepared", |b| {
                b.iter(|| kernels::conv::forward_prepared(&g, &x, &prepared, None))
            });
        }
        group.finish();
    }
}

criterion_group!(
    benches,
    peak,
    winograd,
    blocked,
    convolutions,
    pooling_and_elementwise
);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
