//! Weights references, the Hugging Face cache layout and timm's `config.json`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use hub::Error;
use hub::{resolve, HubOptions, Interpolation, PretrainedConfig, WeightsRef};
use serde_json::{json, Value};

const HASH: &str = "0123456789abcdef0123456789abcdef01234567";
const HASH_V1: &str = "fedcba9876543210fedcba9876543210fedcba98";

const TIMM_CONFIG: &str = r#"{"architecture": "resnet18", "num_classes": 1000, "num_features": 512,
    "global_pool": "avg", "pretrained_cfg": {"tag": "a1_in1k", "custom_load": false,
    "input_size": [3, 224, 224], "test_input_size": [3, 288, 288], "fixed_input_size": false,
    "interpolation": "bicubic", "crop_pct": 0.95, "test_crop_pct": 1.0, "crop_mode": "center",
    "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "num_classes": 1000,
    "pool_size": [7, 7], "first_conv": "conv1", "classifier": "fc"}}"#;

fn write_weights(path: &Path, dtype: DType) {
    let w = Tensor::arange(0f32, 6.0, &Device::Cpu)
        .unwrap()
        .reshape((2, 3))
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    candle_core::safetensors::save(&HashMap::from([("fc.weight".to_string(), w)]), path).unwrap();
}

/// A snapshot `hash` of `repo` in `cache` holding `files` (model.safetensors written as a real
/// safetensors file, anything else with the given text), and `refs/<r>` -> `hash` for each ref.
fn fake_snapshot(cache: &Path, repo: &str, hash: &str, refs: &[&str], files: &[(&str, &str)]) -> PathBuf {
    let repo_dir = cache.join(format!("models--{}", repo.replace('/', "--")));
    let snapshot = repo_dir.join("snapshots").join(hash);
    std::fs::create_dir_all(&snapshot).unwrap();
    for (name, text) in files {
        if *name == "model.safetensors" {
            write_weights(&snapshot.join(name), DType::F32);
        } else {
            std::fs::write(snapshot.join(name), text).unwrap();
        }
    }
    for r in refs {
        let ref_file = repo_dir.join("refs").join(r);
        std::fs::create_dir_all(ref_file.parent().unwrap()).unwrap();
        std::fs::write(ref_file, hash).unwrap();
    }
    snapshot
}

fn hub(repo: &str, revision: &str) -> WeightsRef {
    WeightsRef::Hub {
        repo: repo.into(),
        revision: revision.into(),
    }
}

fn offline(cache: &Path) -> HubOptions {
    HubOptions::with_cache_dir(cache).with_offline(true)
}

fn pretrained_error(e: Error) -> (String, String) {
    match e {
        Error::Pretrained { location, problem } => (location, problem),
        other => panic!("expected Error::Pretrained, got {other:?}"),
    }
}

#[test]
fn resolves_branch_ref_from_cache() {
    let cache = tempfile::tempdir().unwrap();
    let snapshot = fake_snapshot(
        cache.path(),
        "timm/resnet18.a1_in1k",
        HASH,
        &["main"],
        &[("model.safetensors", ""), ("config.json", TIMM_CONFIG)],
    );
    let reference = WeightsRef::parse("timm/resnet18.a1_in1k").unwrap();
    assert_eq!(reference, hub("timm/resnet18.a1_in1k", "main"));
    // Offline: the cache alone must be enough.
    let resolved = resolve(&reference, &offline(cache.path())).unwrap();
    assert_eq!(resolved.weights_file, snapshot.join("model.safetensors"));
    assert_eq!(resolved.config_file, Some(snapshot.join("config.json")));
    assert_eq!(resolved.source, "timm/resnet18.a1_in1k@main");
    let config = resolved.config.unwrap();
    assert_eq!(config.architecture.as_deref(), Some("resnet18"));
    assert_eq!(config.num_classes, Some(1000));
    // Online with the files cached: no network access needed either.
    let online = resolve(&reference, &HubOptions::with_cache_dir(cache.path())).unwrap();
    assert_eq!(online.weights_file, snapshot.join("model.safetensors"));
}

#[test]
fn resolves_commit_hash_and_tag_refs() {
    let cache = tempfile::tempdir().unwrap();
    let main = fake_snapshot(
        cache.path(),
        "owner/name",
        HASH,
        &["main"],
        &[("model.safetensors", "")],
    );
    let v1 = fake_snapshot(
        cache.path(),
        "owner/name",
        HASH_V1,
        &["v1.0"],
        &[("model.safetensors", ""), ("config.json", "{}")],
    );
    let options = offline(cache.path());

    let by_hash = WeightsRef::parse(&format!("owner/name@{HASH}")).unwrap();
    assert_eq!(by_hash, hub("owner/name", HASH));
    let resolved = resolve(&by_hash, &options).unwrap();
    assert_eq!(resolved.weights_file, main.join("model.safetensors"));
    assert_eq!((resolved.config_file, resolved.config), (None, None));
    assert_eq!(resolved.source, format!("owner/name@{HASH}"));

    let tagged = WeightsRef::parse("owner/name@v1.0").unwrap();
    let resolved = resolve(&tagged, &options).unwrap();
    assert_eq!(resolved.weights_file, v1.join("model.safetensors"));
    assert_eq!(resolved.config_file, Some(v1.join("config.json")));
    assert_eq!(
        resolved.config,
        Some(PretrainedConfig::from_json_str("{}", "x").unwrap())
    );

    // A ref whose name has a slash (pull requests).
    let pr = fake_snapshot(
        cache.path(),
        "owner/name",
        "abc123",
        &["refs/pr/1"],
        &[("model.safetensors", "")],
    );
    let resolved = resolve(&WeightsRef::parse("owner/name@refs/pr/1").unwrap(), &options).unwrap();
    assert_eq!(resolved.weights_file, pr.join("model.safetensors"));
}

#[test]
fn ref_file_with_trailing_newline() {
    let cache = tempfile::tempdir().unwrap();
    let snapshot = fake_snapshot(
        cache.path(),
        "owner/name",
        HASH,
        &[],
        &[("model.safetensors", "")],
    );
    let refs = cache.path().join("models--owner--name/refs");
    std::fs::create_dir_all(&refs).unwrap();
    std::fs::write(refs.join("main"), format!("{HASH}\n")).unwrap();
    let resolved = resolve(&hub("owner/name", "main"), &offline(cache.path())).unwrap();
    assert_eq!(resolved.weights_file, snapshot.join("model.safetensors"));
}

#[test]
fn offline_miss_names_repo_revision_and_paths() {
    let cache = tempfile::tempdir().unwrap();
    // Cached at another revision only.
    fake_snapshot(
        cache.path(),
        "owner/name",
        HASH,
        &["main"],
        &[("model.safetensors", "")],
    );
    let err = resolve(&hub("owner/name", "v2"), &offline(cache.path())).unwrap_err();
    let message = err.to_string();
    let (location, problem) = pretrained_error(err);
    assert_eq!(location, "owner/name@v2");
    let repo_dir = cache.path().join("models--owner--name");
    for needle in [
        "owner/name".to_string(),
        "`v2`".to_string(),
        repo_dir.join("refs/v2").display().to_string(),
        repo_dir
            .join("snapshots/v2/model.safetensors")
            .display()
            .to_string(),
        "HF_HUB_OFFLINE".to_string(),
        "network".to_string(),
    ] {
        assert!(problem.contains(&needle), "{needle:?} not in {problem}");
    }
    assert!(message.contains("owner/name@v2"), "{message}");

    // Nothing cached at all.
    let err = resolve(&hub("other/repo", "main"), &offline(cache.path())).unwrap_err();
    let (_, problem) = pretrained_error(err);
    assert!(problem.contains("models--other--repo"), "{problem}");
}

#[test]
fn cached_pickle_only_says_safetensors_only() {
    let cache = tempfile::tempdir().unwrap();
    fake_snapshot(
        cache.path(),
        "owner/old",
        HASH,
        &["main"],
        &[("pytorch_model.bin", "pickle"), ("config.json", "{}")],
    );
    let err = resolve(&hub("owner/old", "main"), &offline(cache.path())).unwrap_err();
    let (_, problem) = pretrained_error(err);
    assert!(problem.contains("pytorch_model.bin"), "{problem}");
    assert!(problem.contains("only safetensors"), "{problem}");
}

#[test]
fn file_refs_with_and_without_config() {
    let dir = tempfile::tempdir().unwrap();
    let options = offline(&dir.path().join("no-cache"));

    let lone = dir.path().join("lone/weights.safetensors");
    write_weights(&lone, DType::F32);
    let reference = WeightsRef::parse(lone.to_str().unwrap()).unwrap();
    assert_eq!(reference, WeightsRef::File(lone.clone()));
    let resolved = resolve(&reference, &options).unwrap();
    assert_eq!(resolved.weights_file, lone);
    assert_eq!((resolved.config_file, resolved.config), (None, None));
    assert_eq!(resolved.source, lone.display().to_string());

    let with_config = dir.path().join("cfg/anything.safetensors");
    write_weights(&with_config, DType::F32);
    std::fs::write(dir.path().join("cfg/config.json"), TIMM_CONFIG).unwrap();
    let resolved = resolve(&WeightsRef::File(with_config.clone()), &options).unwrap();
    assert_eq!(resolved.config_file, Some(dir.path().join("cfg/config.json")));
    assert_eq!(resolved.config.unwrap().interpolation, Interpolation::Bicubic);

    // A missing file parses (it ends in .safetensors) but does not resolve.
    let missing = dir.path().join("missing.safetensors");
    let reference = WeightsRef::parse(missing.to_str().unwrap()).unwrap();
    match resolve(&reference, &options).unwrap_err() {
        Error::Io { path, .. } => assert_eq!(path, missing),
        other => panic!("expected Error::Io, got {other:?}"),
    }

    // A broken config beside the weights is an error naming it, not silently ignored.
    std::fs::write(dir.path().join("lone/config.json"), "{").unwrap();
    let err = resolve(&WeightsRef::File(lone), &options).unwrap_err();
    assert!(err.to_string().contains("lone/config.json"), "{err}");
}

#[test]
fn pickle_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("pytorch_model.bin");
    std::fs::write(&bin, "pickle").unwrap();
    let reference = WeightsRef::parse(bin.to_str().unwrap()).unwrap();
    assert_eq!(reference, WeightsRef::File(bin));
    let (_, problem) = pretrained_error(resolve(&reference, &offline(dir.path())).unwrap_err());
    assert!(problem.contains("only safetensors"), "{problem}");
}

#[test]
fn directory_refs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("finetuned");
    write_weights(&out.join("model.safetensors"), DType::F32);
    let reference = WeightsRef::parse(out.to_str().unwrap()).unwrap();
    assert_eq!(reference, WeightsRef::File(out.join("model.safetensors")));
    let options = offline(dir.path());
    assert_eq!(
        resolve(&reference, &options).unwrap().weights_file,
        out.join("model.safetensors")
    );
    // WeightsRef::File of the directory itself resolves the same way.
    assert_eq!(
        resolve(&WeightsRef::File(out.clone()), &options)
            .unwrap()
            .weights_file,
        out.join("model.safetensors")
    );

    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (location, problem) = pretrained_error(WeightsRef::parse(empty.to_str().unwrap()).unwrap_err());
    assert_eq!(location, empty.to_str().unwrap());
    assert!(problem.contains("no model.safetensors"), "{problem}");
}

#[test]
fn bad_refs_are_errors_listing_accepted_forms() {
    for bad in [
        "",
        "   ",
        "a/b/c",
        "resnet18",
        "owner/na me",
        "owner/name@",
        "owner/name@../x",
        "owner/name@a b",
        "-owner/name",
        "owner/name.",
        "own--er/name",
        "owner/",
        "/owner",
        "owner\\name",
        "owner/name@v1@v2",
    ] {
        let err = WeightsRef::parse(bad).unwrap_err();
        let (_, problem) = pretrained_error(err);
        assert!(
            problem.contains("owner/name@revision") && problem.contains(".safetensors"),
            "{bad:?}: {problem}"
        );
    }
    let long = format!("owner/{}", "x".repeat(97));
    assert!(WeightsRef::parse(&long).is_err());
    // Hub refs constructed by hand are checked too: no escaping the cache directory.
    let cache = tempfile::tempdir().unwrap();
    for (repo, revision) in [("owner/name", "../../x"), ("../x/y", "main"), ("a/b/c", "main")] {
        let (_, problem) =
            pretrained_error(resolve(&hub(repo, revision), &offline(cache.path())).unwrap_err());
        assert!(problem.starts_with("invalid"), "{problem}");
    }
}

#[test]
fn parse_and_display() {
    for (text, repo, revision) in [
        ("timm/resnet18.a1_in1k", "timm/resnet18.a1_in1k", "main"),
        ("owner/name@v1.0", "owner/name", "v1.0"),
        ("Owner_1/Name-2@refs/pr/3", "Owner_1/Name-2", "refs/pr/3"),
    ] {
        let reference: WeightsRef = text.parse().unwrap();
        assert_eq!(reference, hub(repo, revision));
        assert_eq!(reference.to_string(), format!("{repo}@{revision}"));
    }
    let file = WeightsRef::parse("some/where/missing.safetensors").unwrap();
    assert_eq!(
        file,
        WeightsRef::File(PathBuf::from("some/where/missing.safetensors"))
    );
    assert_eq!(file.to_string(), "some/where/missing.safetensors");
}

#[test]
fn f16_weights_resolve() {
    let cache = tempfile::tempdir().unwrap();
    let snapshot = fake_snapshot(cache.path(), "owner/half", HASH, &["main"], &[]);
    write_weights(&snapshot.join("model.safetensors"), DType::F16);
    let resolved = resolve(&hub("owner/half", "main"), &offline(cache.path())).unwrap();
    let tensors = candle_core::safetensors::load(&resolved.weights_file, &Device::Cpu).unwrap();
    assert_eq!(tensors["fc.weight"].dtype(), DType::F16);
}

#[test]
fn unreachable_endpoint_is_a_clean_error() {
    // Only the download path reads HF_ENDPOINT, and no other test of this binary downloads.
    std::env::set_var("HF_ENDPOINT", "http://127.0.0.1:1");
    let cache = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let err = resolve(
        &hub("owner/absent", "main"),
        &HubOptions::with_cache_dir(cache.path()),
    )
    .unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(30));
    let (location, problem) = pretrained_error(err);
    assert_eq!(location, "owner/absent@main");
    assert!(
        problem.contains("cannot download model.safetensors of repo `owner/absent`"),
        "{problem}"
    );
}

#[test]
fn options_follow_huggingface_hub_rules() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| PathBuf::from(v))
        }
    };
    let o = HubOptions::from_vars(vars(&[("HOME", "/home/u")]));
    assert_eq!(o.cache_dir, Some(PathBuf::from("/home/u/.cache/huggingface/hub")));
    assert!(!o.offline);
    let o = HubOptions::from_vars(vars(&[("HOME", "/home/u"), ("HF_HOME", "/data/hf")]));
    assert_eq!(o.cache_dir, Some(PathBuf::from("/data/hf/hub")));
    let o = HubOptions::from_vars(vars(&[
        ("HOME", "/home/u"),
        ("HF_HOME", "/data/hf"),
        ("HF_HUB_CACHE", "~/hub-cache"),
    ]));
    assert_eq!(o.cache_dir, Some(PathBuf::from("/home/u/hub-cache")));
    let o = HubOptions::from_vars(vars(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "/xdg")]));
    assert_eq!(o.cache_dir, Some(PathBuf::from("/xdg/huggingface/hub")));
    let o = HubOptions::from_vars(vars(&[("HOME", "/home/u"), ("HF_HOME", "")]));
    assert_eq!(o.cache_dir, Some(PathBuf::from("/home/u/.cache/huggingface/hub")));
    assert_eq!(HubOptions::from_vars(vars(&[])).cache_dir, None);
    for (value, expected) in [
        ("1", true),
        ("true", true),
        ("YES", true),
        ("on", true),
        ("0", false),
        ("false", false),
        ("", false),
    ] {
        let pairs: &'static [(&str, &str)] = Box::leak(Box::new([("HF_HUB_OFFLINE", value)]));
        assert_eq!(HubOptions::from_vars(vars(pairs)).offline, expected, "{value:?}");
    }
    assert_eq!(
        HubOptions::with_cache_dir("/c").with_offline(true),
        HubOptions {
            cache_dir: Some(PathBuf::from("/c")),
            offline: true
        }
    );
}

#[test]
fn parses_timm_config() {
    let c = PretrainedConfig::from_json_str(TIMM_CONFIG, "config.json").unwrap();
    assert_eq!(c.architecture.as_deref(), Some("resnet18"));
    assert_eq!(c.num_classes, Some(1000));
    assert_eq!(c.input_size, (3, 224, 224));
    assert_eq!(c.interpolation, Interpolation::Bicubic);
    assert_eq!(c.crop_pct, 0.95);
    assert_eq!(c.mean, vec![0.485f32, 0.456, 0.406]);
    assert_eq!(c.std, vec![0.229f32, 0.224, 0.225]);
    assert_eq!(c.label_names, None);
    assert_eq!(c.extra["pretrained_cfg"]["tag"], "a1_in1k");
    assert_eq!(c.extra["num_features"], 512);

    let mut with_labels: Value = serde_json::from_str(TIMM_CONFIG).unwrap();
    with_labels["num_classes"] = json!(2);
    with_labels["label_names"] = json!(["cat", "dog"]);
    let c = PretrainedConfig::from_json_str(&with_labels.to_string(), "config.json").unwrap();
    assert_eq!(c.num_classes, Some(2));
    assert_eq!(c.label_names, Some(vec!["cat".to_string(), "dog".to_string()]));
}

#[test]
fn defaults_without_pretrained_cfg() {
    let c = PretrainedConfig::from_json_str(r#"{"architecture": "lenet5"}"#, "config.json").unwrap();
    assert_eq!(c.architecture.as_deref(), Some("lenet5"));
    assert_eq!(c.num_classes, None);
    assert_eq!(c.input_size, (3, 224, 224));
    assert_eq!(c.mean, vec![0.485f32, 0.456, 0.406]);
    assert_eq!(c.std, vec![0.229f32, 0.224, 0.225]);
    assert_eq!(c.crop_pct, 0.875);
    assert_eq!(c.interpolation, Interpolation::Bilinear);
    // num_classes falls back to pretrained_cfg; the older default_cfg name is read too.
    let c = PretrainedConfig::from_json_str(
        r#"{"default_cfg": {"num_classes": 10, "input_size": [1, 28, 28], "mean": [0.5], "std": [0.25]}}"#,
        "config.json",
    )
    .unwrap();
    assert_eq!((c.num_classes, c.input_size), (Some(10), (1, 28, 28)));
    assert_eq!((c.mean, c.std), (vec![0.5], vec![0.25]));
}

fn config_error(json: &str) -> String {
    let (location, problem) =
        pretrained_error(PretrainedConfig::from_json_str(json, "dir/config.json").unwrap_err());
    assert_eq!(location, "dir/config.json");
    problem
}

#[test]
fn config_errors_name_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, r#"{"architecture": "resnet18",,}"#).unwrap();
    let err = PretrainedConfig::from_file(&path).unwrap_err();
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    assert!(err.to_string().contains("not valid JSON"), "{err}");

    let problem = config_error(r#"{"pretrained_cfg": {"interpolation": "lanczos"}}"#);
    assert!(
        problem.contains("pretrained_cfg.interpolation") && problem.contains("\"lanczos\""),
        "{problem}"
    );
    let problem = config_error(r#"{"pretrained_cfg": {"mean": [0.5, 0.5]}}"#);
    assert!(
        problem.contains("pretrained_cfg.mean") && problem.contains("2 value(s)"),
        "{problem}"
    );
    let problem = config_error(r#"{"num_classes": "ten"}"#);
    assert!(
        problem.contains("`num_classes`") && problem.contains("\"ten\""),
        "{problem}"
    );
    let problem = config_error(r#"{"pretrained_cfg": {"std": [0.2, "x", 0.2]}}"#);
    assert!(problem.contains("pretrained_cfg.std[1]"), "{problem}");
    let problem = config_error(r#"{"pretrained_cfg": {"std": [0.2, 0.0, 0.2]}}"#);
    assert!(problem.contains("outside [0.001, 1000]"), "{problem}");
    // Positive but absurd: every input would become ~1e30.
    let problem = config_error(r#"{"pretrained_cfg": {"std": [0.2, 1e-30, 0.2]}}"#);
    assert!(
        problem.contains("pretrained_cfg.std") && problem.contains("1e-30 is outside"),
        "{problem}"
    );
    let problem = config_error(r#"{"pretrained_cfg": {"crop_pct": 4.5}}"#);
    assert!(problem.contains("crop_pct"), "{problem}");
    let problem = config_error(r#"{"pretrained_cfg": {"input_size": [224, 224]}}"#);
    assert!(problem.contains("input_size"), "{problem}");
    let problem = config_error(r#"{"pretrained_cfg": "resnet"}"#);
    assert!(problem.contains("`pretrained_cfg`"), "{problem}");
    let problem = config_error(r#"{"num_classes": 3, "label_names": ["a", "b"]}"#);
    assert!(problem.contains("label_names"), "{problem}");
    let problem = config_error(r#"{"label_names": ["a", 2]}"#);
    assert!(problem.contains("label_names[1]"), "{problem}");
    let problem = config_error("[1, 2]");
    assert!(problem.contains("JSON object"), "{problem}");
}

#[test]
fn write_read_round_trip_preserves_unknown_fields() {
    let dir = tempfile::tempdir().unwrap();
    let mut original: Value = serde_json::from_str(TIMM_CONFIG).unwrap();
    original["label_descriptions"] = json!({"n01440764": "tench, Tinca tinca"});
    original["model_args"] = json!({"drop_rate": 0.1});
    let config = PretrainedConfig::from_json_str(&original.to_string(), "config.json").unwrap();

    // Unchanged: the document comes back equal.
    let same = dir.path().join("same/config.json");
    config.write(&same).unwrap();
    let text = std::fs::read_to_string(&same).unwrap();
    assert!(text.contains("0.485"), "f32 values written in short form: {text}");
    assert!(!text.contains("0.4850000"), "{text}");
    let back: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(back, original);
    assert_eq!(PretrainedConfig::from_file(&same).unwrap(), config);

    // Fine-tuned: new classes, everything else preserved.
    let tuned = config
        .clone()
        .with_architecture("resnet18")
        .with_label_names(vec!["cat".into(), "dog".into(), "fox".into()]);
    let out = dir.path().join("finetuned");
    write_weights(&out.join("model.safetensors"), DType::F32);
    tuned.write(out.join("config.json")).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "temporary files left: {leftovers:?}");

    let resolved = resolve(
        &WeightsRef::parse(out.to_str().unwrap()).unwrap(),
        &offline(dir.path()),
    )
    .unwrap();
    assert_eq!(resolved.weights_file, out.join("model.safetensors"));
    assert_eq!(
        resolved.source,
        out.join("model.safetensors").display().to_string()
    );
    let read = resolved.config.unwrap();
    assert_eq!(read.num_classes, Some(3));
    assert_eq!(read.label_names.as_deref().map(<[String]>::len), Some(3));
    assert_eq!(read.interpolation, Interpolation::Bicubic);
    let json = read.extra;
    assert_eq!(json["num_classes"], 3);
    assert_eq!(json["pretrained_cfg"]["num_classes"], 3);
    assert_eq!(json["pretrained_cfg"]["tag"], "a1_in1k");
    assert_eq!(json["pretrained_cfg"]["test_input_size"], json!([3, 288, 288]));
    assert_eq!(json["model_args"]["drop_rate"], 0.1);
    assert_eq!(json["num_features"], 512);
    assert!(
        json.get("label_descriptions").is_none(),
        "stale descriptions dropped"
    );

    // with_num_classes drops label names of another count.
    let resized = tuned.clone().with_num_classes(5);
    assert_eq!((resized.num_classes, resized.label_names), (Some(5), None));
    let kept = tuned.with_num_classes(3);
    assert_eq!(kept.label_names.map(|n| n.len()), Some(3));

    // A config built in code writes timm's layout.
    let fresh = PretrainedConfig::default()
        .with_architecture("lenet5")
        .with_num_classes(10);
    let json = fresh.to_json();
    assert_eq!(json["architecture"], "lenet5");
    assert_eq!(json["pretrained_cfg"]["input_size"], json!([3, 224, 224]));
    assert_eq!(json["pretrained_cfg"]["interpolation"], "bilinear");
    assert_eq!(json["pretrained_cfg"]["crop_pct"], 0.875);

    // An invalid config is not written.
    let bad = PretrainedConfig {
        mean: vec![0.5],
        ..PretrainedConfig::default()
    };
    assert!(bad.validate().is_err());
    let target = dir.path().join("bad/config.json");
    assert!(bad.write(&target).is_err());
    assert!(!target.exists());
}
