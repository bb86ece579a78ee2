//! `cargo xtask finetune` end to end, as the issue's "done when" describes: an ImageFolder of
//! real digits written as 3-channel PNGs, a fake Hugging Face cache holding a ResNet-18 in
//! timm's layout with a timm-style config.json, a frozen-backbone fine-tune, then `predict`
//! on the result. Plus the error messages of bad inputs.

use backbone::init::SeededVarMap;
use candle_core::{DType, Device, Tensor};
use resnet::{ResNet, ResNetConfig};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env_remove("HF_HUB_OFFLINE")
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .expect("run xtask")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const HASH: &str = "0123456789abcdef0123456789abcdef01234567";

const TIMM_CONFIG: &str = r#"{
    "architecture": "resnet18",
    "num_classes": 1000,
    "num_features": 512,
    "global_pool": "avg",
    "pretrained_cfg": {
        "tag": "a1_in1k",
        "custom_load": false,
        "input_size": [3, 224, 224],
        "test_input_size": [3, 288, 288],
        "fixed_input_size": false,
        "interpolation": "bicubic",
        "crop_pct": 0.95,
        "test_crop_pct": 1.0,
        "crop_mode": "center",
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "num_classes": 1000,
        "pool_size": [7, 7],
        "first_conv": "conv1",
        "classifier": "fc"
    }
}"#;

/// A Hugging Face cache with `timm/resnet18.test` at `main`: a seeded ImageNet ResNet-18 in
/// timm's layout (torchvision's names, with `num_batches_tracked`), stored in f16 like many hub
/// files, and a timm config.json. Returns the cache dir and the stored tensors (as f32).
fn fake_hub(root: &Path) -> (PathBuf, HashMap<String, Tensor>) {
    let cache = root.join("hub");
    let repo = cache.join("models--timm--resnet18.test");
    let snapshot = repo.join("snapshots").join(HASH);
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::write(repo.join("refs").join("main"), HASH).unwrap();
    let vars = SeededVarMap::new(5);
    let model = ResNet::new(
        &ResNetConfig::resnet18(),
        vars.var_builder(DType::F32, &Device::Cpu),
    )
    .unwrap();
    calibrate_batch_norm(&model);
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (name, var) in vars.varmap().data().lock().unwrap().iter() {
        if name.ends_with("running_mean") {
            let tracked = name.replace("running_mean", "num_batches_tracked");
            tensors.insert(tracked, Tensor::new(30i64, &Device::Cpu).unwrap());
        }
        tensors.insert(name.clone(), var.as_tensor().to_dtype(DType::F16).unwrap());
    }
    candle_core::safetensors::save(&tensors, snapshot.join("model.safetensors")).unwrap();
    std::fs::write(snapshot.join("config.json"), TIMM_CONFIG).unwrap();
    let as_f32 = tensors
        .into_iter()
        .filter(|(k, _)| !k.ends_with("num_batches_tracked"))
        .map(|(k, v)| (k, v.to_dtype(DType::F32).unwrap()))
        .collect();
    (cache, as_f32)
}

/// A random network is a poor stand-in for a pretrained one mostly because its batch-norm
/// statistics are 0 and 1: set them from 30 training-mode passes over digits, as a real
/// pretrained model's are set from its data (no weight is trained).
fn calibrate_batch_norm(model: &ResNet) {
    use backbone::Backbone;
    use trainer::data::{DataLoader, GrayImages, LoaderConfig, Preprocess};
    let mnist = trainer::data::Mnist::bundled().unwrap();
    let preprocess = Preprocess {
        pad: 0,
        mean: 0.456,
        std: 0.224,
        resize: Some((64, 64)),
    };
    let data = GrayImages::new(mnist.train.head(960), "digits").unwrap();
    let loader = DataLoader::new(
        std::sync::Arc::new(data),
        preprocess.pipeline(None).unwrap(),
        LoaderConfig::new(32),
    )
    .unwrap();
    for batch in loader.epoch(0, &Device::Cpu) {
        let images = batch.unwrap().images;
        model
            .forward_t(&images.repeat((1, 3, 1, 1)).unwrap(), true)
            .unwrap();
    }
}

/// `per_class` digits per class from the bundled MNIST sample, as RGB PNGs in `root/<digit>/`.
fn digit_folder(root: &Path, per_class: usize) -> Vec<(PathBuf, u8)> {
    let mnist = trainer::data::Mnist::bundled().unwrap();
    let train = &mnist.train;
    let mut counts = [0usize; 10];
    let mut written = Vec::new();
    for i in 0..train.len() {
        let label = train.labels[i];
        if counts[label as usize] >= per_class {
            continue;
        }
        counts[label as usize] += 1;
        let gray = train.image(i).unwrap();
        let mut rgb = image::RgbImage::new(train.cols as u32, train.rows as u32);
        for (p, &v) in rgb.pixels_mut().zip(gray) {
            *p = image::Rgb([v, v, v]);
        }
        let dir = root.join(label.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{i:05}.png"));
        rgb.save(&path).unwrap();
        written.push((path, label));
        if counts.iter().all(|&c| c >= per_class) {
            break;
        }
    }
    written
}

fn load(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

#[test]
fn finetune_a_hub_resnet18_on_digit_pngs_then_predict() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, pretrained) = fake_hub(dir.path());
    let data = dir.path().join("digits");
    let files = digit_folder(&data, 30);
    // A corrupt file in a class folder is skipped and counted, not fatal.
    std::fs::write(data.join("3").join("broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let out = dir.path().join("run");
    let o = xtask(&[
        "finetune",
        "resnet18",
        "--weights",
        "timm/resnet18.test",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--offline",
        "--data",
        data.to_str().unwrap(),
        "--img-size",
        "64",
        "--epochs",
        "4",
        "--batch-size",
        "32",
        "--lr",
        "0.01",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    println!("{stdout}");
    // The log names what was loaded and what was initialised.
    assert!(stdout.contains("loaded 100 tensors from"), "{stdout}");
    assert!(
        stdout.contains("bn1 (4), conv1 (1), layer1 (20), layer2 (25)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("initialised fc.bias") && stdout.contains("initialised fc.weight"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[1000, 512]") && stdout.contains("[10, 512]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("broken.png"),
        "the skipped file is reported:\n{stdout}"
    );

    // The frozen backbone, running statistics included, is bit-identical to the hub file.
    let tuned = load(&out.join("model.safetensors"));
    let mut checked = 0;
    for (name, t) in &pretrained {
        if name.starts_with("fc.") {
            continue;
        }
        assert_eq!(bits(&tuned[name]), bits(t), "{name} changed");
        checked += 1;
    }
    assert_eq!(checked, 100, "weights and running statistics compared");
    assert_eq!(tuned["fc.weight"].dims(), [10, 512]);

    // Accuracy rises above chance (10%).
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    let top1 = metrics["final_eval"]["top1"].as_f64().unwrap();
    assert!(top1 > 0.3, "validation top-1 {top1}");
    for file in ["metrics.csv", "curves.png", "confusion.png", "config.json"] {
        assert!(out.join(file).is_file(), "{file} missing");
    }

    // The output loads back as a weights reference.
    let image = &files[0].0;
    let o = xtask(&[
        "predict",
        "resnet18",
        "--weights",
        out.to_str().unwrap(),
        image.to_str().unwrap(),
        files[1].0.to_str().unwrap(),
    ]);
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", text(&o.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 12, "{stdout}");
    assert!(lines[0].contains(&image.display().to_string()));
    assert!(lines[1..6].iter().all(|l| l.contains('%')), "{stdout}");
    let digits: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    assert!(
        lines[1..6]
            .iter()
            .all(|l| digits.iter().any(|d| l.ends_with(&format!("  {d}")))),
        "labels come from the fine-tuned config.json:\n{stdout}"
    );

    // The hub model itself has 1000 classes and no label names: ImageNet's names are used.
    let o = xtask(&[
        "predict",
        "resnet18",
        "--weights",
        "timm/resnet18.test",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--offline",
        image.to_str().unwrap(),
    ]);
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", text(&o.stderr));
    let names = trainer::imagenet::imagenet_classes();
    for line in stdout.lines().skip(1) {
        assert!(
            names.iter().any(|n| line.ends_with(n)),
            "`{line}` is not an ImageNet class"
        );
    }
}

#[test]
fn bad_inputs_have_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, _) = fake_hub(dir.path());
    let data = dir.path().join("digits");
    digit_folder(&data, 2);
    let cache = cache.to_str().unwrap();
    let data_s = data.to_str().unwrap();
    let run = |args: &[&str]| {
        let o = xtask(args);
        assert!(!o.status.success(), "should fail: {args:?}");
        text(&o.stderr)
    };
    // A hub id not in the cache, offline.
    let err = run(&[
        "finetune",
        "resnet18",
        "--weights",
        "timm/resnet50.nope",
        "--cache-dir",
        cache,
        "--offline",
        "--data",
        data_s,
    ]);
    assert!(
        err.contains("timm/resnet50.nope") && err.contains("offline"),
        "{err}"
    );
    // A weights file of another architecture.
    let other = dir.path().join("vgg.safetensors");
    let t = Tensor::zeros((4, 3, 3, 3), DType::F32, &Device::Cpu).unwrap();
    candle_core::safetensors::save(&HashMap::from([("features.0.weight".to_string(), t)]), &other).unwrap();
    let err = run(&[
        "finetune",
        "resnet18",
        "--weights",
        other.to_str().unwrap(),
        "--data",
        data_s,
    ]);
    assert!(
        err.contains("vgg.safetensors") && err.contains("features.0.weight"),
        "{err}"
    );
    assert!(err.contains("another architecture"), "{err}");
    // A data folder that does not exist.
    let err = run(&[
        "finetune",
        "resnet18",
        "--weights",
        "timm/resnet18.test",
        "--cache-dir",
        cache,
        "--offline",
        "--data",
        "/nonexistent/images",
    ]);
    assert!(err.contains("/nonexistent/images"), "{err}");
    // Predict on a corrupt image names it.
    let bad = dir.path().join("bad.jpg");
    std::fs::write(&bad, b"\xff\xd8\xff garbage").unwrap();
    let err = run(&[
        "predict",
        "resnet18",
        "--weights",
        "timm/resnet18.test",
        "--cache-dir",
        cache,
        "--offline",
        bad.to_str().unwrap(),
    ]);
    assert!(err.contains("bad.jpg"), "{err}");
    // An unknown weights reference.
    let err = run(&[
        "predict",
        "resnet18",
        "--weights",
        "not a ref",
        bad.to_str().unwrap(),
    ]);
    assert!(err.contains("not a ref"), "{err}");
}

/// Synthetic CIFAR-10 binaries: class `c` is an image whose red plane is bright in row band
/// `c` (learnable), 20 records per training file, 40 in the test file.
fn cifar_dir(root: &Path) -> PathBuf {
    let dir = root.join("cifar");
    std::fs::create_dir_all(&dir).unwrap();
    let record = |i: usize| {
        let label = (i % 10) as u8;
        let mut r = vec![label];
        for plane in 0..3 {
            for y in 0..32 {
                for x in 0..32 {
                    let band = y / 4 == label as usize % 8 && plane == (label as usize / 8);
                    r.push(if band {
                        230
                    } else {
                        ((x * 7 + y * 3 + i) % 40) as u8
                    });
                }
            }
        }
        r
    };
    for (f, n) in [
        ("data_batch_1.bin", 20),
        ("data_batch_2.bin", 20),
        ("data_batch_3.bin", 20),
        ("data_batch_4.bin", 20),
        ("data_batch_5.bin", 20),
        ("test_batch.bin", 40),
    ] {
        let bytes: Vec<u8> = (0..n).flat_map(record).collect();
        std::fs::write(dir.join(f), bytes).unwrap();
    }
    dir
}

#[test]
fn finetune_on_cifar10_binaries_from_a_local_file_with_unfreezing() {
    let dir = tempfile::tempdir().unwrap();
    let data = cifar_dir(dir.path());
    // A local weights file without config.json: ImageNet defaults, size from --img-size.
    let weights = dir.path().join("lenet3.safetensors");
    let vars = SeededVarMap::new(9);
    let config = lenet::LeNetConfig::lenet5().with_in_channels(3);
    lenet::LeNet::new(&config, vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    let tensors: HashMap<String, Tensor> = vars
        .varmap()
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().copy().unwrap()))
        .collect();
    candle_core::safetensors::save(&tensors, &weights).unwrap();
    let out = dir.path().join("run");
    let o = xtask(&[
        "finetune",
        "lenet",
        "--weights",
        weights.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--img-size",
        "32",
        "--crop-pct",
        "1.0",
        "--epochs",
        "3",
        "--batch-size",
        "16",
        "--optimizer",
        "sgd",
        "--lr",
        "0.05",
        "--nesterov",
        "--schedule",
        "step",
        "--step-epochs",
        "2",
        "--gamma",
        "0.5",
        "--warmup-epochs",
        "1",
        "--label-smoothing",
        "0.1",
        "--clip-grad",
        "5",
        "--unfreeze-after",
        "1",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    // Same class count (10): the head is loaded too, nothing initialised.
    assert!(stdout.contains("loaded 10 tensors"), "{stdout}");
    assert!(!stdout.contains("initialised"), "{stdout}");
    assert!(
        stdout.contains("100 training and 40 validation images"),
        "{stdout}"
    );
    assert!(
        stdout.contains("airplane") && stdout.contains("truck"),
        "{stdout}"
    );
    // Unfrozen after epoch 1: the backbone moved.
    let tuned = load(&out.join("model.safetensors"));
    assert_ne!(bits(&tuned["conv1.weight"]), bits(&tensors["conv1.weight"]));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architecture"], "lenet5");
    assert_eq!(config["num_classes"], 10);
    assert_eq!(config["label_names"][9], "truck");
    assert_eq!(
        config["pretrained_cfg"]["input_size"],
        serde_json::json!([3, 32, 32])
    );
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");

    // The output directory is a weights reference; its labels come from config.json.
    let png = dir.path().join("x.png");
    image::RgbImage::from_pixel(32, 32, image::Rgb([200, 10, 10]))
        .save(&png)
        .unwrap();
    let o = xtask(&[
        "predict",
        "lenet",
        "--weights",
        out.to_str().unwrap(),
        "--top-k",
        "3",
        png.to_str().unwrap(),
    ]);
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", text(&o.stderr));
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
    let names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ];
    assert!(
        stdout
            .lines()
            .skip(1)
            .all(|l| names.iter().any(|n| l.ends_with(n))),
        "{stdout}"
    );
}
