//! timm's pretrained semantics: one record per published checkpoint, equal to timm's own
//! `default_cfgs` (`testkit/fixtures/catalogue/pretrained_cfgs.json`, written by
//! `scripts/gen_pretrained_cfgs.py` from the installed timm); tagged names; and the evaluation
//! transform of checkpoints with a test size (tv2, a1, a1h, ra2 tags) equal to timm's
//! `resolve_data_config(use_test_size=True)` + `create_transform` (`tagged-*.json`, written by
//! `scripts/gen_catalogue_fixtures.py tagged` with the real timm on a PNG).

use candle_core::Tensor;
use convnets::{create_model, find_checkpoint, pretrained_cfg, CreateOptions, DataConfig, PretrainedConfig};
use rand::SeedableRng;
use serde_json::Value;
use std::collections::HashMap;
use testkit::catalogue;

const TAGGED: [&str; 4] = [
    "resnet18.a1_in1k",
    "resnet50.a1h_in1k",
    "resnet50.tv2_in1k",
    "efficientnet_b3.ra2_in1k",
];

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn size(v: &Value) -> Option<(usize, usize, usize)> {
    let a = v.as_array()?;
    let d = |i: usize| a[i].as_u64().unwrap() as usize;
    Some((d(0), d(1), d(2)))
}

#[test]
fn every_checkpoint_record_is_timms() {
    let fixture = catalogue::fixture("pretrained_cfgs");
    let records = fixture["checkpoints"].as_array().unwrap();
    let mut seen = 0;
    for r in records {
        let name = r["name"].as_str().unwrap();
        let (variant, checkpoint) = find_checkpoint(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let checkpoint = checkpoint.unwrap_or_else(|| panic!("{name}: no checkpoint"));
        let cfg = checkpoint.cfg;
        assert_eq!(checkpoint.hub_id, r["hub_id"].as_str().unwrap(), "{name}");
        assert_eq!(Some(cfg.input_size), size(&r["input_size"]), "{name}: input_size");
        assert_eq!(
            cfg.test_input_size,
            size(&r["test_input_size"]),
            "{name}: test_input_size"
        );
        assert_eq!(cfg.crop_pct, r["crop_pct"].as_f64().unwrap(), "{name}: crop_pct");
        assert_eq!(
            cfg.test_crop_pct,
            r["test_crop_pct"].as_f64(),
            "{name}: test_crop_pct"
        );
        assert_eq!(cfg.interpolation, r["interpolation"].as_str().unwrap(), "{name}");
        assert_eq!(cfg.mean, floats(&r["mean"]).as_slice(), "{name}: mean");
        assert_eq!(cfg.std, floats(&r["std"]).as_slice(), "{name}: std");
        assert_eq!(pretrained_cfg(name).unwrap(), cfg, "{name}");
        assert!(variant.pretrained.iter().any(|p| p.hub_id == checkpoint.hub_id));
        seen += 1;
    }
    // Nothing in the catalogue that timm does not publish.
    let total: usize = convnets::catalogue().iter().map(|v| v.pretrained.len()).sum();
    assert_eq!(total, seen);
    // An unknown tag names the valid ones.
    let err = find_checkpoint("resnet50.a9_in1k").unwrap_err().to_string();
    assert!(
        err.contains("resnet50.a1_in1k") && err.contains("resnet50.tv2_in1k"),
        "{err}"
    );
}

fn data_config(v: &Value) -> DataConfig {
    DataConfig {
        input_size: size(&v["input_size"]).unwrap(),
        mean: floats(&v["mean"]),
        std: floats(&v["std"]),
        crop_pct: v["crop_pct"].as_f64().unwrap(),
        interpolation: convnets::Interpolation::from_name(v["interpolation"].as_str().unwrap()).unwrap(),
    }
}

fn assert_same(what: &str, ours: &DataConfig, timm: &DataConfig) {
    assert_eq!(ours.input_size, timm.input_size, "{what}: input size");
    assert!(
        (ours.crop_pct - timm.crop_pct).abs() < 1e-12,
        "{what}: crop {} vs {}",
        ours.crop_pct,
        timm.crop_pct
    );
    assert_eq!(ours.interpolation, timm.interpolation, "{what}");
    assert_eq!(ours.mean, timm.mean, "{what}: mean");
    assert_eq!(ours.std, timm.std, "{what}: std");
}

/// timm's config.json as the hub has it, and the catalogue's record of the tag (weights
/// without a config.json), resolve to timm's data config at the test and the training size.
#[test]
fn tagged_checkpoints_resolve_timms_data_config() {
    for name in TAGGED {
        let fixture = catalogue::fixture(&format!("tagged-{name}"));
        let test = data_config(&fixture["data_config"]["use_test_size"]);
        let train = data_config(&fixture["data_config"]["use_train_size"]);
        assert_ne!(test, train, "{name}: a checkpoint with a test size");
        let from_json =
            PretrainedConfig::from_json_str(&fixture["config"].to_string(), "config.json").unwrap();
        assert_same(
            &format!("{name} config.json, test size"),
            &from_json.data_config(true),
            &test,
        );
        assert_same(
            &format!("{name} config.json, train size"),
            &from_json.data_config(false),
            &train,
        );
        let record = PretrainedConfig::from_preprocessing(&pretrained_cfg(name).unwrap());
        assert_same(
            &format!("{name} catalogue, test size"),
            &record.data_config(true),
            &test,
        );
        assert_same(
            &format!("{name} catalogue, train size"),
            &record.data_config(false),
            &train,
        );
    }
}

/// `create_model` with a timm-layout file and timm's config.json (a hub cache, by tagged name
/// and by hub id; a directory) gives the eval transform timm's `create_transform` builds: the
/// same first values of the transformed PNG.
/// A Hugging Face cache under `root` holding the tagged fixture `name`'s timm-layout weights
/// (the fixtures' closed-form rule) and timm's config.json; returns the snapshot folder.
fn hub_cache(root: &std::path::Path, name: &str) -> std::path::PathBuf {
    let fixture = catalogue::fixture(&format!("tagged-{name}"));
    let tensors: HashMap<String, Tensor> =
        catalogue::reference_weights(&catalogue::keys(&fixture["keys"]), &fixture["expected"]);
    let hash = "0123456789abcdef0123456789abcdef01234567";
    let repo = root.join(format!("models--timm--{name}"));
    let snapshot = repo.join("snapshots").join(hash);
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::write(repo.join("refs").join("main"), hash).unwrap();
    candle_core::safetensors::save(&tensors, snapshot.join("model.safetensors")).unwrap();
    std::fs::write(snapshot.join("config.json"), fixture["config"].to_string()).unwrap();
    snapshot
}

#[test]
fn create_model_gives_timms_eval_transform() {
    let name = "resnet18.a1_in1k";
    let fixture = catalogue::fixture(&format!("tagged-{name}"));
    let root = tempfile::tempdir().unwrap();
    let snapshot = hub_cache(root.path(), name);
    let hub = CreateOptions {
        offline: true,
        cache_dir: Some(root.path().to_path_buf()),
        ..Default::default()
    };
    let models = [
        (
            "tagged name",
            create_model(
                name,
                &CreateOptions {
                    pretrained: true,
                    ..hub.clone()
                },
            ),
        ),
        (
            "hub id",
            create_model(
                "resnet18",
                &CreateOptions {
                    weights: Some(format!("timm/{name}")),
                    ..hub.clone()
                },
            ),
        ),
        (
            "directory",
            create_model(
                "resnet18",
                &CreateOptions {
                    weights: Some(snapshot.to_string_lossy().into_owned()),
                    ..Default::default()
                },
            ),
        ),
    ];
    for (how, model) in models {
        let model = model.unwrap_or_else(|e| panic!("{how}: {e}"));
        for (use_test, key) in [(true, "predict"), (false, "predict_train_size")] {
            let record = &fixture[key];
            let config = model.data_config(use_test);
            let timm = data_config(
                &fixture["data_config"][if use_test {
                    "use_test_size"
                } else {
                    "use_train_size"
                }],
            );
            assert_same(&format!("{how} {key}"), &config, &timm);
            let transform = trainer::data::Pipeline::eval_config(&config).unwrap();
            let image =
                trainer::data::Image::open(catalogue::dir().join(record["image"].as_str().unwrap())).unwrap();
            let mut rng = rand::rngs::StdRng::seed_from_u64(0);
            let x = transform.apply(image, &mut rng).unwrap();
            let (_, h, w) = timm.input_size;
            assert_eq!((x.channels, x.height, x.width), (3, h, w), "{how} {key}");
            for (i, (a, b)) in x.data.iter().zip(floats(&record["input_head"])).enumerate() {
                assert!((a - b).abs() < 1e-5, "{how} {key}: input[{i}] {a} vs timm's {b}");
            }
        }
    }
}

/// timm's `create_model(name, pretrained=True, num_classes=10)`: the 1000-class file's
/// classifier is replaced by a fresh one, everything else loaded, and the model's variables
/// come back to train when asked.
#[test]
fn another_class_count_gives_a_fresh_classifier() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lenet.safetensors");
    let source = create_model(
        "lenet5",
        &CreateOptions {
            num_classes: Some(1000),
            seed: 1,
            ..Default::default()
        },
    )
    .unwrap();
    source.vars.as_ref().unwrap().varmap().save(&file).unwrap();
    let model = create_model(
        "lenet5",
        &CreateOptions {
            weights: Some(file.to_string_lossy().into_owned()),
            num_classes: Some(10),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(model.num_classes(), 10);
    let report = model
        .weights
        .as_ref()
        .unwrap()
        .report
        .as_ref()
        .expect("a load report");
    let fresh: Vec<&str> = report.initialised.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(fresh, ["fc3.bias", "fc3.weight"]);
    assert_eq!(report.loaded.len(), 8);
    let trainable = model.trainable_vars().expect("variables");
    assert_eq!(trainable.len(), 10);
    // Without num_classes the file must fit the variant's 10 classes: an error naming the tensor.
    let err = create_model(
        "lenet5",
        &CreateOptions {
            weights: Some(file.to_string_lossy().into_owned()),
            ..Default::default()
        },
    )
    .err()
    .expect("a 1000-class file as a 10-class lenet5")
    .to_string();
    assert!(err.contains("fc3.weight") && err.contains("[1000, 84]"), "{err}");
    // The file's class count, not asked to train: constants, no variables.
    let constant = create_model(
        "lenet5",
        &CreateOptions {
            weights: Some(file.to_string_lossy().into_owned()),
            num_classes: Some(1000),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(constant.vars.is_none() && constant.num_classes() == 1000);
    // Asked to train: the same weights in variables.
    let trainable = create_model(
        "lenet5",
        &CreateOptions {
            weights: Some(file.to_string_lossy().into_owned()),
            num_classes: Some(1000),
            trainable: true,
            ..Default::default()
        },
    )
    .unwrap();
    let report = trainable.weights.as_ref().unwrap().report.as_ref().unwrap();
    assert!(report.initialised.is_empty() && report.loaded.len() == 10);
}

/// The README's library fine-tune (`convnets/examples/finetune.rs`), line for line, on a
/// cached timm checkpoint (resnet18.a1_in1k here, resnet50.a1_in1k in the example: the same
/// code) and a small image folder: pretrained weights by tagged name, a fresh 10-class head,
/// the backbone frozen, the loop the command line runs.
#[test]
fn library_finetune_in_a_few_lines() {
    let root = tempfile::tempdir().unwrap();
    hub_cache(root.path(), "resnet18.a1_in1k");
    let images = root.path().join("images");
    for class in 0..10u8 {
        let dir = images.join(format!("class{class}"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..2u8 {
            image::RgbImage::from_fn(40, 32, |x, y| {
                image::Rgb([class * 20 + i, x as u8 * 3, y as u8 * 5])
            })
            .save(dir.join(format!("{i}.png")))
            .unwrap();
        }
    }
    let out = root.path().join("run");
    // The example's lines (with the cache and an output folder named).
    let options = CreateOptions {
        pretrained: true,
        num_classes: Some(10),
        trainable: true,
        offline: true,
        cache_dir: Some(root.path().to_path_buf()),
        ..Default::default()
    };
    let model = create_model("resnet18.a1_in1k", &options).unwrap();
    let data = trainer::train::TrainData::image_folder(
        &images,
        0.2,
        42,
        trainer::data::Pipeline::eval_config(&model.data_config(false)).unwrap(),
    )
    .unwrap();
    let vars = model.vars.as_ref().unwrap();
    let config = trainer::train::TrainConfig {
        epochs: 1,
        batch_size: 4,
        out_dir: out.clone(),
        verbose: false,
        ..trainer::train::TrainConfig::finetune()
    };
    let before = vars.varmap().data().lock().unwrap()["layer1.0.conv1.weight"]
        .as_tensor()
        .copy()
        .unwrap();
    let report =
        trainer::train::train(&*model, vars.varmap(), data, &config, &candle_core::Device::Cpu).unwrap();
    assert_eq!(report.final_eval.count, 4);
    assert_eq!(model.num_classes(), 10);
    assert_eq!(model.data_config(false).input_size, (3, 224, 224));
    // The backbone stayed frozen; the new head trained.
    let after = vars.varmap().data().lock().unwrap()["layer1.0.conv1.weight"]
        .as_tensor()
        .copy()
        .unwrap();
    let diff = (after - before)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(diff, 0.0);
    assert!(out.join("metrics.json").is_file());
}
