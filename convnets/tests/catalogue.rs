//! The catalogue: every variant's data is consistent with the model it builds.

use backbone::catalogue::count_params;
use convnets::{catalogue, find_model, list_models, select_models};

#[test]
fn parameter_counts_match_the_models() {
    let mut wrong = Vec::new();
    for variant in catalogue() {
        let counted = count_params(variant, &variant.reference_options()).unwrap();
        println!("{} {counted}", variant.name);
        if counted != variant.params {
            wrong.push(format!(
                "{}: catalogue {}, model {counted}",
                variant.name, variant.params
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn names_are_unique_and_every_entry_is_consistent() {
    use backbone::catalogue::variable_shapes;
    let all = catalogue();
    let mut names: Vec<String> = Vec::new();
    for v in &all {
        for name in std::iter::once(&v.name).chain(v.aliases) {
            let n = name.to_ascii_lowercase().replace('-', "_");
            assert!(!names.contains(&n), "`{name}` is listed twice");
            names.push(n);
        }
        assert_eq!(
            v.preprocessing.input_size.0, v.reference.0,
            "{}: channels",
            v.name
        );
        assert_eq!(v.preprocessing.mean.len(), v.reference.0, "{}: mean", v.name);
        assert_eq!(v.preprocessing.std.len(), v.reference.0, "{}: std", v.name);
        assert!(
            v.preprocessing.crop_pct > 0.0 && v.preprocessing.crop_pct <= 1.0,
            "{}",
            v.name
        );
        assert!(!v.paper.is_empty() && !v.description.is_empty(), "{}", v.name);
        let last = v.layouts.last().expect("at least the native layout");
        assert!(
            (last.detect)(&Default::default()),
            "{}: the last layout must accept anything",
            v.name
        );
        for p in v.pretrained {
            let hub = p.hub_id;
            assert_eq!(hub, format!("timm/{}.{}", v.name, p.tag), "{}: hub id", v.name);
            assert!(p.cfg.crop_pct > 0.0 && p.cfg.crop_pct <= 1.0, "{hub}");
            assert_eq!(p.cfg.input_size.0, v.reference.0, "{hub}");
            // The tagged name finds it.
            let (found, checkpoint) = convnets::find_checkpoint(&format!("{}.{}", v.name, p.tag)).unwrap();
            assert_eq!((found.name, checkpoint.map(|c| c.hub_id)), (v.name, Some(hub)));
        }
        // The stem exists with the reference's input channels; auxiliary heads exist only when
        // asked for.
        let with_aux = variable_shapes(v, &v.reference_options()).unwrap();
        let stem = with_aux
            .get(v.stem)
            .unwrap_or_else(|| panic!("{}: no stem `{}`", v.name, v.stem));
        assert_eq!(stem.len(), 4, "{}", v.name);
        assert_eq!(stem[1], v.reference.0, "{}", v.name);
        let mut no_aux_options = v.reference_options();
        no_aux_options.aux_logits = false;
        let without = variable_shapes(v, &no_aux_options).unwrap();
        for prefix in v.aux_prefixes {
            assert!(
                with_aux.keys().any(|k| k.starts_with(prefix)),
                "{}: {prefix}",
                v.name
            );
            assert!(
                !without.keys().any(|k| k.starts_with(prefix)),
                "{}: {prefix}",
                v.name
            );
        }
        if v.aux_prefixes.is_empty() {
            assert_eq!(with_aux, without, "{}", v.name);
        }
    }
}

#[test]
fn list_and_select_by_pattern_family_and_alias() {
    assert_eq!(list_models("lenet*"), ["lenet5", "lenet5_tanh", "lenet5_max"]);
    assert_eq!(list_models("efficientnet_b?").len(), 8);
    assert!(list_models("").len() >= 42);
    assert!(list_models("nothing*").is_empty());
    assert_eq!(find_model("LeNet").unwrap().name, "lenet5");
    assert_eq!(find_model("inception-v1").unwrap().name, "googlenet");
    let err = find_model("lenet7").unwrap_err().to_string();
    assert!(
        err.contains("unknown model `lenet7`") && err.contains("lenet5_tanh"),
        "{err}"
    );
    let picked: Vec<&str> = select_models(&["densenet", "resnet18", "densenet121"])
        .unwrap()
        .iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(
        picked,
        [
            "densenet121",
            "densenet161",
            "densenet169",
            "densenet201",
            "resnet18"
        ]
    );
}

/// The MACs at the default input size, for every variant under 8 GMACs (the heavier ones take
/// the same path: `cargo run --release -p convnets --example catalogue` prints them all).
#[test]
fn macs_match_the_models() {
    for variant in catalogue().into_iter().filter(|v| v.macs < 8_000_000_000) {
        let model = convnets::create_model(variant.name, &Default::default()).unwrap();
        let (c, h, w) = variant.preprocessing.input_size;
        let summary = backbone::summarize(&*model, &[1, c, h, w], &candle_core::Device::Cpu).unwrap();
        assert_eq!(summary.total_macs(), variant.macs, "{}", variant.name);
    }
}
