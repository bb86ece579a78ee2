//! One Backbone contract (timm's): `forward_features` is the last unpooled map of every
//! architecture, `forward_pre_logits` what enters the final classifier, `feature_info` and
//! `forward_intermediates` / `FeaturesOnly` the feature pyramid. Checked against timm's
//! `features_only=True` models and torchvision's modules (forward hooks) on the published
//! layouts with the fixtures' closed-form weights (`testkit/fixtures/catalogue/features-*.json`,
//! `scripts/gen_feature_fixtures.py`), and for every variant of the catalogue for consistency.

use backbone::catalogue::ModelOptions;
use backbone::weights::Weights;
use backbone::{Backbone, FeaturesOnly};
use candle_core::{DType, Device, Tensor};
use serde_json::Value;
use testkit::catalogue;
use testkit::densenet_efficientnet::pattern;

/// The model a features fixture describes, with the catalogue fixture's weights.
fn reference_model(features: &Value) -> Box<dyn Backbone> {
    let name = features["model"].as_str().unwrap();
    let library = features["library"].as_str().unwrap();
    let fixture = catalogue::fixture(&format!("{library}-{name}"));
    let variant = convnets::find_model(name).unwrap();
    // googlenet: the no-aux model and its weights.
    let layouts = catalogue::layouts(&fixture);
    let (keys, expected, _) = layouts.last().unwrap();
    let (tensors, info) = variant
        .canonical(catalogue::reference_weights(keys, expected), Some(3))
        .unwrap();
    let options = ModelOptions {
        aux_logits: info.has_aux,
        ..variant.reference_options()
    };
    Weights::from_tensors(tensors, None)
        .build(DType::F32, &Device::Cpu, true, |vb| variant.create(&options, vb))
        .unwrap()
}

/// Compares a map with a fixture's statistics (shape, head, samples, sums) to 1e-4 relative.
fn check_stats(what: &str, got: &Tensor, want: &Value) {
    let shape: Vec<usize> = want["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(got.dims(), shape.as_slice(), "{what}: shape");
    let values: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
    let scale = values.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let close = |a: f32, b: f64, i: &str| {
        assert!(
            ((a as f64) - b).abs() <= 1e-4 * scale as f64 + 1e-6,
            "{what}: {i}: {a} vs {b} (scale {scale})"
        );
    };
    for (i, v) in want["head"].as_array().unwrap().iter().enumerate() {
        close(values[i], v.as_f64().unwrap(), &format!("head {i}"));
    }
    if let Some(idx) = want.get("samples_idx") {
        for (i, v) in idx
            .as_array()
            .unwrap()
            .iter()
            .zip(want["samples"].as_array().unwrap())
        {
            let i = i.as_u64().unwrap() as usize;
            close(values[i], v.as_f64().unwrap(), &format!("sample {i}"));
        }
    }
    let sum: f64 = values.iter().map(|&v| v as f64).sum();
    let n = values.len() as f64;
    let want_sum = want["sum"].as_f64().unwrap();
    assert!(
        (sum - want_sum).abs() <= 1e-4 * scale as f64 * n.sqrt() + 1e-3,
        "{what}: sum {sum} vs {want_sum}"
    );
}

#[test]
fn feature_maps_equal_timms_features_only_and_torchvisions_modules() {
    let fixtures: Vec<(String, Value)> = catalogue::fixtures()
        .into_iter()
        .filter(|(n, _)| n.starts_with("features-"))
        .collect();
    assert_eq!(fixtures.len(), 22);
    for (file, fixture) in fixtures {
        let model = reference_model(&fixture);
        let info: Vec<(String, usize, usize)> = model
            .feature_info()
            .into_iter()
            .map(|f| (f.module, f.channels, f.reduction))
            .collect();
        let want: Vec<(String, usize, usize)> = fixture["feature_info"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["module"].as_str().unwrap().to_string(),
                    f["num_chs"].as_u64().unwrap() as usize,
                    f["reduction"].as_u64().unwrap() as usize,
                )
            })
            .collect();
        assert_eq!(info, want, "{file}: feature_info");
        let size = fixture["image_size"].as_u64().unwrap() as usize;
        let image = pattern(&[1, 3, size, size], 997, 1.0, 0.0);
        let maps = backbone::inference_mode(|| model.forward_stages(&image, false)).unwrap();
        for (i, (map, want)) in maps
            .iter()
            .zip(fixture["features"].as_array().unwrap())
            .enumerate()
        {
            check_stats(&format!("{file}: stage {i}"), map, want);
        }
        let features = backbone::inference_mode(|| model.forward_features(&image, false)).unwrap();
        check_stats(
            &format!("{file}: forward_features"),
            &features,
            &fixture["forward_features"],
        );
        let pre_logits = backbone::inference_mode(|| model.forward_pre_logits(&features, false)).unwrap();
        check_stats(
            &format!("{file}: pre_logits"),
            &pre_logits,
            &fixture["pre_logits"],
        );
        // timm's features_only model: the stages asked for, in the order asked.
        let last = want.len() - 1;
        let only = FeaturesOnly::new(model.as_ref(), Some(vec![last, 1])).unwrap();
        assert_eq!(only.feature_info()[0].module, want[last].0);
        let picked = backbone::inference_mode(|| only.forward(&image, false)).unwrap();
        assert_eq!(picked[0].dims(), maps[last].dims(), "{file}");
        assert_eq!(picked[1].dims(), maps[1].dims(), "{file}");
    }
}

/// For every variant: the stages match `feature_info` (channels, about `side / reduction`), the
/// last map has `forward_features`' channels or precedes it, the pre-logits are
/// `[N, num_features]` and the head on them gives `forward_t`'s logits; an index past the last
/// stage is an error naming the model.
#[test]
fn every_variant_keeps_the_contract() {
    for variant in convnets::catalogue() {
        let (channels, classes) = variant.reference;
        let model = convnets::create_model(
            variant.name,
            &convnets::CreateOptions {
                num_classes: Some(7),
                ..Default::default()
            },
        )
        .unwrap();
        let spec = model.input_spec();
        let side = spec.fixed_size.map_or(spec.min_size.0.max(64), |s| s.0);
        let x = Tensor::randn(0f32, 1f32, (2, channels, side, side), &Device::Cpu).unwrap();
        let info = model.feature_info();
        assert!(!info.is_empty(), "{}", variant.name);
        let maps = model.forward_stages(&x, false).unwrap();
        assert_eq!(maps.len(), info.len(), "{}", variant.name);
        let mut previous = 0;
        for (map, stage) in maps.iter().zip(&info) {
            assert_eq!(
                map.dims()[..2],
                [2, stage.channels],
                "{} {}",
                variant.name,
                stage.module
            );
            assert!(stage.reduction >= previous, "{}: reductions grow", variant.name);
            previous = stage.reduction;
        }
        let features = model.forward_features(&x, false).unwrap();
        assert_eq!(features.rank(), 4, "{}: forward_features is a map", variant.name);
        let pre_logits = model.forward_pre_logits(&features, false).unwrap();
        assert_eq!(
            pre_logits.dims()[..2],
            [2, model.num_features()],
            "{}",
            variant.name
        );
        let logits = model.forward_classifier(&pre_logits, false).unwrap();
        let direct = model.forward_t(&x, false).unwrap();
        assert_eq!(logits.dims(), [2, 7], "{}", variant.name);
        let diff: f32 = (logits - direct)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(diff < 1e-5, "{}: {diff}", variant.name);
        let err = model
            .forward_intermediates(&x, &[info.len()], false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(variant.name) && err.contains("no feature stage"),
            "{err}"
        );
        let _ = classes;
    }
}
