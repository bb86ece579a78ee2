//! Parameter counts and state-dict names of every variant against torchvision, MACs,
//! initialisation, `zero_init_residual`, the CIFAR stem, the configuration, input and weights
//! errors of ResNet's own (every model's: `convnets/tests/contract.rs`), and a few SGD steps on
//! real MNIST digits.

mod common;

use backbone::catalogue::{ModelOptions, Variant};
use backbone::init::trainable_vars;
use backbone::layers::Layer;
use backbone::weights::Weights;
use backbone::{Backbone, Error};
use candle_core::{DType, Device, Tensor, D};
use common::{assert_close, count_params, pattern, seeded, var, variable_shapes};
use resnet::{BlockKind, ResNet, ResNetConfig};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;

/// `scripts/gen_resnet_fixtures.py`'s `state_dicts.txt.gz`: per variant, its parameter count
/// and its state dict (name -> shape, without `num_batches_tracked`), torchvision's (timm's
/// for the SE variants).
fn torchvision_state_dicts() -> BTreeMap<String, (usize, BTreeMap<String, Vec<usize>>)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/state_dicts.txt.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let mut out: BTreeMap<String, (usize, BTreeMap<String, Vec<usize>>)> = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let [variant, name, value] = fields[..] else {
            panic!("bad line `{line}`")
        };
        let entry = out.entry(variant.to_string()).or_default();
        if name == "#params" {
            entry.0 = value.parse().unwrap();
        } else {
            let shape = value.split('x').map(|d| d.parse().unwrap()).collect();
            entry.1.insert(name.to_string(), shape);
        }
    }
    out
}

#[test]
fn every_variant_has_torchvision_state_dict_and_parameter_count() {
    let reference = torchvision_state_dicts();
    let expected_counts = [
        ("resnet18", 11_689_512),
        ("resnet34", 21_797_672),
        ("resnet50", 25_557_032),
        ("resnet101", 44_549_160),
        ("resnet152", 60_192_808),
        ("resnext50_32x4d", 25_028_904),
        ("resnext101_32x8d", 88_791_336),
        ("resnext101_64x4d", 83_455_272),
        ("wide_resnet50_2", 68_883_240),
        ("wide_resnet101_2", 126_886_696),
        ("seresnet50", 28_088_024),
        ("seresnext50_32x4d", 27_559_896),
    ];
    let variants = ResNetConfig::variants();
    assert_eq!(variants.len(), expected_counts.len());
    for (config, (name, count)) in variants.iter().zip(expected_counts) {
        assert_eq!(config.name(), name);
        // The catalogue's variant of that name builds the same network.
        let variant = Variant::find(resnet::VARIANTS, name).unwrap();
        let built = backbone::catalogue::variable_shapes(variant, &variant.reference_options()).unwrap();
        assert_eq!(&built, &variable_shapes(config), "{name}: catalogue variant");
        // torchvision's (timm's for the SE variants).
        let (torch_count, torch_shapes) = &reference[name];
        assert_eq!(*torch_count, count, "{name}: the reference's count");
        // Built (shapes only): exactly torchvision's names and shapes.
        let shapes = variable_shapes(config);
        assert_eq!(&shapes, torch_shapes, "{name}: state dict");
        let params: usize = shapes
            .iter()
            .filter(|(k, _)| !backbone::init::is_buffer(k))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        assert_eq!(params, count, "{name}: parameters of the built model");
        assert_eq!(config.num_params(), count, "{name}: ResNetConfig::num_params");
    }
    let cifar = Variant::find(resnet::VARIANTS, "resnet18_cifar").unwrap();
    let options = ModelOptions {
        num_classes: 1000,
        ..cifar.reference_options()
    };
    assert_eq!(
        backbone::catalogue::variable_shapes(cifar, &options).unwrap(),
        variable_shapes(&ResNetConfig::resnet18().with_cifar_stem(true))
    );
    assert!(Variant::find(resnet::VARIANTS, "resnet19").is_err());
}

#[test]
fn resnet18_fresh_model_counts_macs_and_initialisation() {
    let config = ResNetConfig::resnet18();
    let (model, vars) = seeded(&config, 7);
    assert_eq!(count_params(&vars), 11_689_512);
    assert_eq!(model.name(), "resnet18");
    assert_eq!(
        (model.num_features(), model.num_classes(), model.head_prefix()),
        (512, 1000, "fc")
    );
    let summary = backbone::summarize(&model, &[1, 3, 224, 224], &Device::Cpu).unwrap();
    assert_eq!(summary.total_params(), 11_689_512);
    // torchvision: 1.81 GFLOPS (multiply-accumulates of the convolutions and fc).
    assert_eq!(summary.total_macs(), 1_814_073_344);

    // torchvision's init: kaiming normal, fan_out, relu for convolutions.
    let stats = |name: &str| {
        let v = var(&vars, name).flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt(), v)
    };
    for (name, fan_out) in [
        ("conv1.weight", 64 * 49),
        ("layer1.0.conv1.weight", 64 * 9),
        ("layer4.1.conv2.weight", 512 * 9),
        ("layer3.0.downsample.0.weight", 256),
    ] {
        let (mean, std, _) = stats(name);
        let expected = (2.0 / fan_out as f64).sqrt();
        assert!(mean.abs() < 0.05 * expected, "{name}: mean {mean}");
        assert!(
            (std / expected - 1.0).abs() < 0.05,
            "{name}: std {std}, expected {expected}"
        );
    }
    for (name, value) in [
        ("bn1.weight", 1.0),
        ("bn1.bias", 0.0),
        ("layer2.1.bn2.weight", 1.0),
        ("layer3.0.downsample.1.bias", 0.0),
        ("layer4.1.bn2.running_mean", 0.0),
        ("layer4.1.bn2.running_var", 1.0),
    ] {
        assert!(stats(name).2.iter().all(|&x| x == value), "{name}");
    }
    // fc: PyTorch's default Linear init, uniform in +-1/sqrt(512).
    let (_, std, fc) = stats("fc.weight");
    let bound = 1.0 / 512f32.sqrt();
    assert!(fc.iter().all(|w| w.abs() <= bound));
    assert!((std / (bound as f64 / 3f64.sqrt()) - 1.0).abs() < 0.05);
    // The same seed gives the same weights.
    let (_, again) = seeded(&config, 7);
    let (_, other) = seeded(&config, 8);
    let conv = |v| {
        var(v, "layer2.0.conv1.weight")
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    assert_eq!(conv(&vars), conv(&again));
    assert_ne!(conv(&vars), conv(&other));
}

#[test]
fn squeeze_excite_widths_and_macs() {
    // timm's make_divisible(C / 16, 8, round_limit=0).
    for (c, rd) in [
        (64, 8),
        (256, 16),
        (512, 32),
        (1024, 64),
        (2048, 128),
        (200, 16),
        (184, 8),
    ] {
        assert_eq!(resnet::se_width(c), rd, "{c}");
    }
    let config = ResNetConfig::seresnet50();
    let (model, vars) = seeded(&config, 1);
    assert_eq!(count_params(&vars), 28_088_024);
    assert_eq!(var(&vars, "layer4.2.se.fc1.weight").dims(), [128, 2048, 1, 1]);
    assert_eq!(var(&vars, "layer1.0.se.fc2.bias").dims(), [256]);
    // ResNet-50's and the SE convolutions' on 1x1 maps: 2 C C/16 per block.
    let summary = backbone::summarize(&model, &[1, 3, 224, 224], &Device::Cpu).unwrap();
    assert_eq!(summary.total_macs(), 4_089_184_256 + 2_514_944);
    assert_eq!(model.name(), "seresnet50");
    assert_eq!(ResNetConfig::seresnext50_32x4d().name(), "seresnext50_32x4d");
}

#[test]
fn resnext_counts_grouped_macs() {
    // Built for real with 1000 classes (the other variants are checked from their shapes).
    let config = ResNetConfig::resnext50_32x4d();
    let (model, vars) = seeded(&config, 1);
    assert_eq!(count_params(&vars), 25_028_904);
    assert_eq!(var(&vars, "layer1.0.conv2.weight").dims(), [128, 4, 3, 3]);
    assert_eq!(var(&vars, "layer4.2.conv2.weight").dims(), [1024, 32, 3, 3]);
    // torchvision: 4.23 GFLOPS.
    let summary = backbone::summarize(&model, &[1, 3, 224, 224], &Device::Cpu).unwrap();
    assert_eq!(summary.total_macs(), 4_230_479_872);
}

/// Feeds `xs` through every block and checks that each one computes `relu(shortcut(x))`.
fn assert_blocks_are_identities(model: &ResNet, xs: &Tensor, train: bool) {
    let mut xs = model.forward_stem(xs, train).unwrap();
    for block in model.stages().iter().flatten() {
        let out = block.forward_t(&xs, train).unwrap();
        let shortcut = block.shortcut(&xs, train).unwrap().relu().unwrap();
        assert_close(
            &format!("{} (train {train})", block.name()),
            &out,
            &shortcut,
            1e-6,
        );
        if !block.has_downsample() {
            // The input already went through a ReLU: the block is the identity.
            assert_close(block.name(), &out, &xs, 1e-6);
        }
        xs = out;
    }
}

#[test]
fn zero_init_residual_blocks_start_as_identities() {
    let x = pattern(&[2, 3, 40, 36], 0.5, 1.0, 0.0);
    for config in [ResNetConfig::resnet18(), ResNetConfig::resnet50()] {
        let config = config.with_classes(10).with_zero_init_residual(true);
        let (model, vars) = seeded(&config, 3);
        let last = if config.block == BlockKind::Basic {
            "bn2"
        } else {
            "bn3"
        };
        for (s, stage) in model.stages().iter().enumerate() {
            for (i, block) in stage.iter().enumerate() {
                let name = format!("layer{}.{i}.{last}", s + 1);
                let weight = var(&vars, &format!("{name}.weight"));
                assert_eq!(
                    weight
                        .abs()
                        .unwrap()
                        .max_all()
                        .unwrap()
                        .to_scalar::<f32>()
                        .unwrap(),
                    0.0
                );
                assert_eq!(
                    block.last_bn().and_then(|bn| bn.weight()).map(|w| w.dims()),
                    Some(weight.dims())
                );
            }
        }
        // The other batch norms start at 1.
        assert_eq!(
            var(&vars, "layer1.0.bn1.weight")
                .min_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            1.0
        );
        assert_blocks_are_identities(&model, &x, false);
        assert_blocks_are_identities(&model, &x, true);
    }
    // Without zero_init_residual the residual branches are not zero.
    let (model, _) = seeded(&ResNetConfig::resnet18().with_classes(10), 3);
    let block = &model.stages()[0][0];
    let xs = model.forward_stem(&x, false).unwrap();
    let residual = block.residual(&xs, false).unwrap();
    assert!(
        residual
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            > 0.1
    );
}

#[test]
fn cifar_stem_keeps_32x32_resolution() {
    let config = ResNetConfig::resnet18().with_classes(10).with_cifar_stem(true);
    let (model, vars) = seeded(&config, 2);
    assert_eq!(model.name(), "resnet18_cifar");
    assert_eq!(var(&vars, "conv1.weight").dims(), [64, 3, 3, 3]);
    assert_eq!(count_params(&vars), config.num_params());
    // The ImageNet stem's 9,408 conv1 weights become 1,728; 512 * 990 fewer in fc.
    assert_eq!(
        config.num_params(),
        ResNetConfig::resnet18().num_params() - 9_408 + 1_728 - 512 * 990 - 990
    );
    assert_eq!(model.input_spec().default_size, (32, 32));
    let x = pattern(&[2, 3, 32, 32], 0.0, 1.0, 0.0);
    assert_eq!(model.forward_stem(&x, false).unwrap().dims(), [2, 64, 32, 32]);
    assert_eq!(model.forward_features(&x, false).unwrap().dims(), [2, 512, 4, 4]);
    assert_eq!(model.forward_t(&x, true).unwrap().dims(), [2, 10]);
    // The ImageNet stem on the same images: 1x1 features.
    let (model, _) = seeded(&ResNetConfig::resnet18().with_classes(10), 2);
    assert_eq!(model.forward_stem(&x, false).unwrap().dims(), [2, 64, 8, 8]);
    assert_eq!(model.forward_features(&x, false).unwrap().dims(), [2, 512, 1, 1]);
}

#[test]
fn configurable_classes_and_channels() {
    let config = ResNetConfig::resnet50().with_classes(7).with_in_channels(1);
    let (model, vars) = seeded(&config, 1);
    assert_eq!(var(&vars, "conv1.weight").dims(), [64, 1, 7, 7]);
    assert_eq!(var(&vars, "fc.weight").dims(), [7, 2048]);
    assert_eq!(count_params(&vars), config.num_params());
    let x = pattern(&[2, 1, 64, 48], 0.0, 1.0, 0.0);
    let features = model.forward_features(&x, true).unwrap();
    assert_eq!(features.dims(), [2, 2048, 2, 2]);
    assert_eq!(model.forward_head(&features, true).unwrap().dims(), [2, 7]);
    assert_eq!(model.input_spec().channels, 1);
    assert_eq!((model.num_features(), model.num_classes()), (2048, 7));
}

#[test]
fn invalid_configurations_are_errors() {
    let bad = [
        ResNetConfig {
            groups: 32,
            ..ResNetConfig::resnet18()
        },
        ResNetConfig {
            width_per_group: 128,
            ..ResNetConfig::resnet34()
        },
        ResNetConfig {
            layers: [3, 0, 6, 3],
            ..ResNetConfig::resnet50()
        },
        ResNetConfig {
            groups: 0,
            ..ResNetConfig::resnext50_32x4d()
        },
    ];
    for config in bad {
        let vars = backbone::init::SeededVarMap::new(0);
        match ResNet::new(&config, vars.var_builder(DType::F32, &Device::Cpu)) {
            Err(Error::Config(msg)) => assert!(msg.starts_with("resnet:"), "{msg}"),
            other => panic!(
                "{config:?}: expected a configuration error, got {:?}",
                other.err()
            ),
        }
        assert!(
            vars.varmap().all_vars().is_empty(),
            "nothing built before the check"
        );
    }
}

/// What ResNet's input checks add to every model's (`convnets/tests/contract.rs`): a single
/// pixel runs in eval mode, not in training, and the head checks its input's width.
#[test]
fn one_pixel_runs_in_eval_mode_and_the_head_checks_its_width() {
    let (model, _) = seeded(&ResNetConfig::resnet18().with_classes(10), 1);
    // Any size >= 1x1 is accepted (torchvision's min_size): every stride-2 layer maps 1 to 1.
    let tiny = Tensor::zeros((1, 3, 1, 1), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(
        model.forward_features(&tiny, false).unwrap().dims(),
        [1, 512, 1, 1]
    );
    assert_eq!(model.forward_t(&tiny, false).unwrap().dims(), [1, 10]);
    // Training needs more than one value per channel in every batch norm: one 1x1 image
    // fails at the first one.
    match model.forward_t(&tiny, true) {
        Err(Error::InputShape { layer, .. }) => assert_eq!(layer, "bn1"),
        other => panic!("expected a batch-norm input error, got {:?}", other.err()),
    }
    // The head wants [N, 512, h, w].
    let wrong = Tensor::zeros((2, 256, 3, 3), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(
        model.forward_head(&wrong, false),
        Err(Error::InputShape { .. })
    ));
}

fn state_of(config: &ResNetConfig, seed: u64) -> HashMap<String, Tensor> {
    let (_, vars) = seeded(config, seed);
    let data = vars.varmap().data().lock().unwrap();
    data.iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect()
}

fn write(dir: &std::path::Path, tensors: &HashMap<String, Tensor>) -> std::path::PathBuf {
    let path = dir.join("resnet.safetensors");
    candle_core::safetensors::save(tensors, &path).unwrap();
    path
}

/// What ResNet's loading adds to every model's (`convnets/tests/contract.rs`): a reloaded file
/// keeps its batch norms whatever `zero_init_residual` says, and a deeper ResNet reading a
/// shallower one's file names the first block it lacks.
#[test]
fn reloads_keep_the_file_and_a_deeper_resnet_names_the_block_it_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let config = ResNetConfig::resnet18().with_classes(10);
    let build = |config: &ResNetConfig, path: &std::path::Path| {
        let weights = Weights::from_file(path, &Device::Cpu)?;
        weights.build(DType::F32, &Device::Cpu, true, |vb| ResNet::new(config, vb))
    };
    let mut state = state_of(&config, 5);
    // Non-trivial batch norms, so that a zero-initialised one would show.
    for (name, t) in state.iter_mut() {
        if name.contains("bn") && name.ends_with("weight") {
            *t = (t.ones_like().unwrap() * 0.5).unwrap();
        }
    }
    let path = write(dir.path(), &state);
    let x = pattern(&[2, 3, 48, 40], 1.0, 1.0, 0.0);
    let reference = ResNet::new(
        &config,
        candle_nn::VarBuilder::from_tensors(state.clone(), DType::F32, &Device::Cpu),
    )
    .unwrap()
    .forward_t(&x, false)
    .unwrap();
    let loaded = build(&config, &path).unwrap();
    assert_close("reloaded", &loaded.forward_t(&x, false).unwrap(), &reference, 0.0);
    // zero_init_residual only affects fresh weights: loaded ones are kept.
    let loaded = build(&config.with_zero_init_residual(true), &path).unwrap();
    assert_close(
        "reloaded, zero-init config",
        &loaded.forward_t(&x, false).unwrap(),
        &reference,
        0.0,
    );

    // A ResNet-34 reading a ResNet-18 file: the first block ResNet-18 lacks.
    match build(&ResNetConfig::resnet34().with_classes(10), &path) {
        Err(Error::Weights { tensor, problem, .. }) => {
            assert!(tensor.starts_with("layer1.2."), "{tensor}");
            assert!(problem.contains("missing"), "{problem}");
        }
        other => panic!("expected a missing-tensor error, got {:?}", other.err()),
    }
}

/// The first `n` training digits of the bundled MNIST sample, padded to 32x32 and normalised,
/// and their labels.
fn mnist(n: usize) -> (Tensor, Tensor) {
    let read = |file: &str| {
        let path = format!("{}/../trainer/data/mnist-10k/{file}", env!("CARGO_MANIFEST_DIR"));
        let mut bytes = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
            .read_to_end(&mut bytes)
            .unwrap();
        bytes
    };
    let images = read("train-images-idx3-ubyte.gz");
    let labels = read("train-labels-idx1-ubyte.gz");
    assert_eq!(images[..4], [0, 0, 8, 3]);
    assert_eq!(labels[..4], [0, 0, 8, 1]);
    let mut pixels = vec![0f32; n * 32 * 32];
    for (i, image) in images[16..].chunks(28 * 28).take(n).enumerate() {
        for (r, row) in image.chunks(28).enumerate() {
            for (c, &p) in row.iter().enumerate() {
                pixels[i * 1024 + (r + 2) * 32 + c + 2] = p as f32 / 255.0;
            }
        }
    }
    let x = Tensor::from_vec(pixels, (n, 1, 32, 32), &Device::Cpu).unwrap();
    let x = ((x - 0.1307).unwrap() / 0.3081).unwrap();
    let y: Vec<u32> = labels[8..8 + n].iter().map(|&l| l as u32).collect();
    (x, Tensor::from_vec(y, n, &Device::Cpu).unwrap())
}

#[test]
fn sgd_steps_on_mnist_digits_lower_the_loss() {
    sgd_on_mnist(ResNetConfig::resnet18());
}

/// The same with squeeze-and-excitation in every block (timm's `seresnet18` layout).
#[test]
fn sgd_steps_on_mnist_digits_lower_the_loss_with_squeeze_excite() {
    sgd_on_mnist(ResNetConfig::resnet18().with_attention(resnet::Attention::SqueezeExcite));
}

fn sgd_on_mnist(config: ResNetConfig) {
    let (x, y) = mnist(32);
    let config = config.with_in_channels(1).with_classes(10);
    let (model, vars) = seeded(&config, 11);
    let params = trainable_vars(vars.varmap());
    assert_eq!(
        params.iter().map(|(_, v)| v.elem_count()).sum::<usize>(),
        config.num_params()
    );
    let lr = 0.05;
    let mut losses = Vec::new();
    for _ in 0..5 {
        let logits = model.forward_t(&x, true).unwrap();
        let loss = candle_nn::loss::cross_entropy(&logits, &y).unwrap();
        losses.push(loss.to_scalar::<f32>().unwrap());
        let grads = loss.backward().unwrap();
        for (name, var) in &params {
            let grad = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            var.set(&(var.as_tensor() - (grad * lr).unwrap()).unwrap())
                .unwrap();
        }
    }
    eprintln!("losses: {losses:?}");
    assert!(losses.iter().all(|l| l.is_finite()));
    assert!(losses[0] > 2.0, "{losses:?}");
    assert!(*losses.last().unwrap() < 0.5 * losses[0], "{losses:?}");
    // The running statistics moved (batch norm in training mode).
    assert!(
        var(&vars, "bn1.running_mean")
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            > 0.0
    );
    let accuracy = model
        .forward_t(&x, true)
        .unwrap()
        .argmax(D::Minus1)
        .unwrap()
        .eq(&y)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(accuracy > 0.5, "training accuracy {accuracy}");
}

/// In eval mode each block's output (inside `inference_mode`: its last batch norm, the
/// shortcut's addition and the ReLU in its last convolution's own pass) is the bits of the
/// separate ops: the branch, the shortcut, then `add_relu`; for basic and bottleneck blocks,
/// with and without a projection shortcut.
#[test]
fn eval_blocks_add_the_shortcut_in_the_last_convolution_bit_for_bit() {
    let bits = |t: &Tensor| -> Vec<u32> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect()
    };
    for config in [ResNetConfig::resnet18(), ResNetConfig::resnet50()] {
        let (model, _vars) = seeded(&config.with_classes(10), 7);
        let x = pattern(&[2, 3, 40, 40], 0.5, 1.0, 0.0);
        for inference in [false, true] {
            let check = || {
                let mut xs = model.forward_stem(&x, false).unwrap();
                for block in model.stages().iter().flatten() {
                    let out = block.forward_t(&xs, false).unwrap();
                    let residual = block.residual(&xs, false).unwrap();
                    let shortcut = block.shortcut(&xs, false).unwrap();
                    let expected = backbone::ops::add_relu(&residual, &shortcut).unwrap();
                    assert_eq!(
                        bits(&out),
                        bits(&expected),
                        "{} (inference mode {inference})",
                        block.name()
                    );
                    xs = out;
                }
            };
            if inference {
                backbone::inference_mode(check);
            } else {
                check();
            }
        }
    }
}
