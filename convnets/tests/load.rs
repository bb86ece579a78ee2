//! One loader for every layout: a model saved in its own layout, in another layout the variant
//! accepts, with f16 tensors, with `num_batches_tracked` counters, without its auxiliary heads
//! or for another number of input channels loads through `create_model` and computes what the
//! saved model computes.

use backbone::catalogue::StateDict;
use candle_core::{DType, Device, Tensor};
use convnets::{create_model, CreateOptions, Model};
use std::path::{Path, PathBuf};

fn fresh(name: &str, options: CreateOptions) -> Model {
    create_model(name, &CreateOptions { seed: 3, ..options }).unwrap()
}

fn state(model: &Model) -> StateDict {
    let vars = model.vars.as_ref().expect("fresh weights");
    let data = vars.varmap().data().lock().unwrap();
    data.iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect()
}

fn save(dir: &Path, file: &str, tensors: &StateDict) -> PathBuf {
    let path = dir.join(file);
    candle_core::safetensors::save(tensors, &path).unwrap();
    path
}

fn input(shape: (usize, usize, usize, usize)) -> Tensor {
    Tensor::randn(0f32, 1f32, shape, &Device::Cpu).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

fn load_as(name: &str, path: &Path, options: CreateOptions) -> Model {
    create_model(
        name,
        &CreateOptions {
            weights: Some(path.display().to_string()),
            ..options
        },
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn a_saved_model_loads_back_in_its_own_layout_with_counters_and_f16() {
    let dir = tempfile::tempdir().unwrap();
    for (name, shape) in [
        ("resnet18", (2, 3, 64, 64)),
        ("densenet121", (1, 3, 64, 64)),
        ("lenet5", (2, 1, 32, 32)),
    ] {
        let model = fresh(name, CreateOptions::default());
        let mut tensors = state(&model);
        if name != "lenet5" {
            tensors.insert(
                "bn1.num_batches_tracked".into(),
                Tensor::new(&[7i64], &Device::Cpu).unwrap(),
            );
        }
        let path = save(dir.path(), &format!("{name}.safetensors"), &tensors);
        let loaded = load_as(name, &path, CreateOptions::default());
        assert_eq!(loaded.weights.as_ref().unwrap().info.layout, "torchvision");
        let x = input(shape);
        let (a, b) = (
            model.forward_t(&x, false).unwrap(),
            loaded.forward_t(&x, false).unwrap(),
        );
        assert_eq!(max_diff(&a, &b), 0.0, "{name}");

        // f16 weights are converted (to within f16's rounding).
        let half: StateDict = tensors
            .iter()
            .map(|(k, t)| {
                (
                    k.clone(),
                    if t.dtype() == DType::F32 {
                        t.to_dtype(DType::F16).unwrap()
                    } else {
                        t.clone()
                    },
                )
            })
            .collect();
        let path = save(dir.path(), &format!("{name}-f16.safetensors"), &half);
        let loaded = load_as(name, &path, CreateOptions::default());
        let c = loaded.forward_t(&x, false).unwrap();
        let scale = a
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(max_diff(&a, &c) <= 0.05 * scale.max(1.0), "{name} f16");
    }
    // The name is needed: the file alone does not say which architecture it holds.
    assert!(create_model("", &CreateOptions::default()).is_err());
}

#[test]
fn efficientnet_loads_torchvision_layout_and_densenet_the_legacy_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let x = input((1, 3, 64, 64));

    let model = fresh("efficientnet_b0", CreateOptions::default());
    let tv = efficientnet::timm_to_torchvision(state(&model), &efficientnet::EfficientNetConfig::b0());
    assert!(tv.contains_key("features.0.0.weight") && tv.contains_key("classifier.1.weight"));
    let path = save(dir.path(), "b0-tv.safetensors", &tv);
    let loaded = load_as("efficientnet_b0", &path, CreateOptions::default());
    assert_eq!(loaded.weights.as_ref().unwrap().info.layout, "torchvision");
    assert_eq!(
        max_diff(
            &model.forward_t(&x, false).unwrap(),
            &loaded.forward_t(&x, false).unwrap()
        ),
        0.0
    );

    let model = fresh("densenet121", CreateOptions::default());
    let legacy: StateDict = state(&model)
        .into_iter()
        .map(|(k, t)| {
            let k = k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2.");
            (k, t)
        })
        .collect();
    assert!(legacy.keys().any(|k| k.contains(".norm.1.")));
    let path = save(dir.path(), "densenet-legacy.safetensors", &legacy);
    let loaded = load_as("densenet121", &path, CreateOptions::default());
    assert_eq!(
        loaded.weights.as_ref().unwrap().info.layout,
        "legacy torchvision (norm.1)"
    );
    assert_eq!(
        max_diff(
            &model.forward_t(&x, false).unwrap(),
            &loaded.forward_t(&x, false).unwrap()
        ),
        0.0
    );
}

#[test]
fn a_file_without_auxiliary_heads_builds_the_model_without_them() {
    let dir = tempfile::tempdir().unwrap();
    for (name, prefix) in [("inception_v3", "AuxLogits."), ("googlenet", "aux")] {
        let model = fresh(name, CreateOptions::default());
        let mut tensors = state(&model);
        tensors.retain(|k, _| !k.starts_with(prefix));
        let path = save(dir.path(), &format!("{name}.safetensors"), &tensors);
        let loaded = load_as(name, &path, CreateOptions::default());
        assert!(!loaded.weights.as_ref().unwrap().info.has_aux);
        let size = if name == "inception_v3" { 75 } else { 64 };
        let x = input((2, 3, size, size));
        assert_eq!(
            max_diff(
                &model.forward_t(&x, false).unwrap(),
                &loaded.forward_t(&x, false).unwrap()
            ),
            0.0,
            "{name}"
        );
        assert!(
            loaded.forward_aux(&x, true).unwrap().aux_logits.is_empty(),
            "{name}"
        );
    }
}

#[test]
fn rgb_weights_adapt_to_one_input_channel_and_to_four() {
    let dir = tempfile::tempdir().unwrap();
    let model = fresh("resnet18", CreateOptions::default());
    let path = save(dir.path(), "rgb.safetensors", &state(&model));
    // One channel: the input convolution's weights summed over RGB, so a gray image gives what
    // the RGB model gives on the same image in three channels.
    let gray = load_as(
        "resnet18",
        &path,
        CreateOptions {
            in_channels: Some(1),
            ..Default::default()
        },
    );
    assert_eq!(gray.weights.as_ref().unwrap().info.adapted_channels, Some((3, 1)));
    let x = input((2, 1, 64, 64));
    let rgb = Tensor::cat(&[&x, &x, &x], 1).unwrap();
    let (a, b) = (
        model.forward_t(&rgb, false).unwrap(),
        gray.forward_t(&x, false).unwrap(),
    );
    assert!(max_diff(&a, &b) < 1e-4, "{}", max_diff(&a, &b));
    // Four channels: RGB repeated cyclically and rescaled by 3/4 (timm's `adapt_input_conv`).
    let four = load_as(
        "resnet18",
        &path,
        CreateOptions {
            in_channels: Some(4),
            ..Default::default()
        },
    );
    assert_eq!(four.weights.as_ref().unwrap().info.adapted_channels, Some((3, 4)));
    let w = Tensor::arange(0f32, 12., &Device::Cpu)
        .unwrap()
        .reshape((2, 3, 1, 2))
        .unwrap();
    let adapted = backbone::catalogue::adapt_input_conv(&w, 4).unwrap();
    let expected: Vec<f32> = [0., 1., 2., 3., 4., 5., 0., 1., 6., 7., 8., 9., 10., 11., 6., 7.]
        .iter()
        .map(|v| v * 0.75)
        .collect();
    assert_eq!(adapted.flatten_all().unwrap().to_vec1::<f32>().unwrap(), expected);
    let one = backbone::catalogue::adapt_input_conv(&w, 1).unwrap();
    assert_eq!(
        one.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        [6., 9., 24., 27.]
    );
}

#[test]
fn bad_weights_name_the_file_the_tensor_and_the_layout() {
    let dir = tempfile::tempdir().unwrap();
    let model = fresh("resnet18", CreateOptions::default());
    let mut tensors = state(&model);
    tensors.insert(
        "fc.weight".into(),
        Tensor::zeros((10, 512), DType::F32, &Device::Cpu).unwrap(),
    );
    tensors.insert(
        "fc.bias".into(),
        Tensor::zeros(10, DType::F32, &Device::Cpu).unwrap(),
    );
    let path = save(dir.path(), "ten.safetensors", &tensors);
    let err = create_model(
        "resnet18",
        &CreateOptions {
            weights: Some(path.display().to_string()),
            ..Default::default()
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("ten.safetensors")
            && err.contains("fc.weight")
            && err.contains("[1000, 512]")
            && err.contains("[10, 512]")
            && err.contains("torchvision"),
        "{err}"
    );
    // With 10 classes it loads.
    load_as(
        "resnet18",
        &path,
        CreateOptions {
            num_classes: Some(10),
            ..Default::default()
        },
    );
    // A directory without model.safetensors.
    let err = create_model(
        "resnet18",
        &CreateOptions {
            weights: Some(dir.path().join("nothing").display().to_string()),
            ..Default::default()
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("nothing"), "{err}");
}

/// `pretrained: true` takes the variant's default hub weights from the Hugging Face cache
/// (timm's layout and config.json, as timm writes them), offline; the config's classes size
/// the head; a hub id missing from the cache while offline is a clear error.
#[test]
fn pretrained_weights_come_from_the_hub_cache() {
    let root = tempfile::tempdir().unwrap();
    let fixture = testkit::catalogue::fixture("timm-resnet18");
    let layouts = testkit::catalogue::layouts(&fixture);
    let (keys, expected, _) = &layouts[0];
    let tensors = testkit::catalogue::reference_weights(keys, expected);
    let hash = "0123456789abcdef0123456789abcdef01234567";
    let repo = root.path().join("models--timm--resnet18.a1_in1k");
    let snapshot = repo.join("snapshots").join(hash);
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::write(repo.join("refs").join("main"), hash).unwrap();
    candle_core::safetensors::save(&tensors, snapshot.join("model.safetensors")).unwrap();
    std::fs::write(snapshot.join("config.json"), fixture["config"].to_string()).unwrap();
    let options = CreateOptions {
        pretrained: true,
        offline: true,
        cache_dir: Some(root.path().to_path_buf()),
        ..Default::default()
    };
    let model = create_model("resnet18", &options).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        model.weights.as_ref().unwrap().file,
        snapshot.join("model.safetensors")
    );
    let config = &model.pretrained_cfg;
    assert_eq!((config.crop_pct, config.num_classes), (0.95, Some(1000)));
    assert_eq!(model.num_classes(), 1000);
    // The same weights by id.
    let by_id = create_model(
        "resnet18",
        &CreateOptions {
            weights: Some("timm/resnet18.a1_in1k".into()),
            ..options.clone()
        },
    )
    .unwrap();
    let x = input((1, 3, 64, 64));
    assert_eq!(
        max_diff(
            &model.forward_t(&x, false).unwrap(),
            &by_id.forward_t(&x, false).unwrap()
        ),
        0.0
    );
    // Not in the cache, offline.
    let err = create_model("resnet50", &options).err().unwrap().to_string();
    assert!(
        err.contains("timm/resnet50.a1_in1k") && err.contains("offline"),
        "{err}"
    );
}
