//! What every model of the catalogue must do, checked once over the catalogue (timm's
//! `tests/test_models.py`, parametrised over `list_models`) instead of once per architecture
//! crate: inputs of the wrong rank, channel count, size or dtype are refused with an error naming
//! the model, the expected and the actual; configurations without classes or channels are
//! refused; weights files that do not exist, are cut short, lack a tensor, hold one of another
//! shape or one too many are refused with an error naming the file, the tensor, the expected and
//! the actual. Each architecture crate keeps what is its own (outputs against the reference
//! implementation, parameter counts, its layouts' spellings); the feature pyramid's contract is
//! `features.rs`'s, the layouts and the one loader's `load.rs`'s.

use backbone::catalogue::{variable_shapes, ModelOptions, Variant};
use backbone::{Backbone, Error};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use convnets::{catalogue, create_model, CreateOptions, Model};
use std::path::Path;
use testkit::alexnet_nin::save;
use testkit::densenet_efficientnet::{assert_close, state};

/// Classes of the models built here (a small head).
const CLASSES: usize = 5;

/// [`CLASSES`] classes and one input channel more than the reference: what the input checks
/// build, so that they also check that the stem and the head follow the options.
fn options(variant: &Variant) -> ModelOptions {
    ModelOptions {
        num_classes: CLASSES,
        in_channels: variant.reference.0 + 1,
        ..variant.reference_options()
    }
}

/// `variant` with all-zero weights: nothing to draw, for the input checks.
fn zeros(variant: &Variant) -> Box<dyn Backbone> {
    variant
        .create(&options(variant), VarBuilder::zeros(DType::F32, &Device::Cpu))
        .unwrap_or_else(|e| panic!("{}: {e}", variant.name))
}

fn input(dims: &[usize], dtype: DType) -> Tensor {
    Tensor::zeros(dims, dtype, &Device::Cpu).unwrap()
}

/// The smallest input the model accepts, `[1, C, H, W]` (its fixed size, or its minimum).
fn smallest(model: &dyn Backbone) -> [usize; 4] {
    let spec = model.input_spec();
    let (h, w) = spec.fixed_size.unwrap_or(spec.min_size);
    [1, spec.channels, h, w]
}

/// What `forward_t`, `forward_features` and `forward_stages` say of `x`.
fn entry_points(model: &dyn Backbone, x: &Tensor) -> [(&'static str, backbone::Result<()>); 3] {
    [
        ("forward_t", model.forward_t(x, false).map(|_| ())),
        ("forward_features", model.forward_features(x, false).map(|_| ())),
        ("forward_stages", model.forward_stages(x, false).map(|_| ())),
    ]
}

/// Built with other class and channel counts than its reference, every model has its stem and
/// its head sized by them and runs on the smallest input it accepts. Inputs of another rank,
/// another channel count, one row or column short of the minimum (or off the fixed size) are
/// refused by `forward_t`, `forward_features` and `forward_stages` alike with
/// [`Error::InputShape`] naming the model, the shape it accepts in words and the shape it got.
#[test]
fn wrong_input_shapes_name_the_model_the_expected_and_the_actual_shape() {
    for variant in catalogue() {
        let model = zeros(variant);
        let name = variant.name;
        assert_eq!(model.name(), name);
        let options = options(variant);
        let shapes = variable_shapes(variant, &options).unwrap();
        assert_eq!(shapes[variant.stem][1], options.in_channels, "{name}: stem");
        let head = format!("{}.weight", model.head_prefix());
        assert_eq!(shapes[&head][0], CLASSES, "{name}: {head}");
        assert_eq!(model.num_classes(), CLASSES, "{name}");
        let spec = model.input_spec();
        assert_eq!(spec.channels, options.in_channels, "{name}");
        let [_, c, h, w] = smallest(model.as_ref());
        let logits = model.forward_t(&input(&[1, c, h, w], DType::F32), false);
        assert_eq!(
            logits.unwrap_or_else(|e| panic!("{name}: {e}")).dims(),
            [1, CLASSES],
            "{name}: the smallest accepted input"
        );
        let mut wrong = vec![
            vec![c, h, w],
            vec![1, 1, c, h, w],
            vec![1, c + 1, h, w],
            vec![1, c - 1, h, w],
            vec![1, c, h - 1, w],
            vec![1, c, h, w - 1],
        ];
        if spec.fixed_size.is_some() {
            wrong.push(vec![1, c, h + 1, w]);
        }
        for dims in wrong {
            let x = input(&dims, DType::F32);
            for (what, result) in entry_points(model.as_ref(), &x) {
                match result {
                    Err(Error::InputShape {
                        layer,
                        expected,
                        actual,
                    }) => {
                        assert_eq!(layer, name, "{name} {what} {dims:?}");
                        assert_eq!(expected, spec.describe(), "{name} {what} {dims:?}");
                        assert_eq!(actual, dims, "{name} {what}");
                    }
                    other => panic!("{name} {what} {dims:?}: expected an input shape error, got {other:?}"),
                }
            }
        }
    }
}

/// An input of another dtype than the weights' is refused before any computation, with
/// [`Error::InputType`] naming the model, the weights' dtype and device and the input's.
#[test]
fn inputs_of_another_dtype_name_the_weights_dtype_and_device() {
    for variant in catalogue() {
        let model = zeros(variant);
        let name = variant.name;
        let dims = smallest(model.as_ref());
        for dtype in [DType::F64, DType::F16] {
            let x = input(&dims, dtype);
            for (what, result) in entry_points(model.as_ref(), &x) {
                match result {
                    Err(Error::InputType {
                        model,
                        expected,
                        actual,
                    }) => {
                        assert_eq!(model, name, "{what}");
                        assert_eq!(expected, "F32 on Cpu", "{name} {what}");
                        assert_eq!(actual, format!("{dtype:?} on Cpu"), "{name} {what}");
                    }
                    other => panic!("{name} {what} {dtype:?}: expected an input type error, got {other:?}"),
                }
            }
        }
    }
}

/// No classes or no input channels: [`Error::Config`].
#[test]
fn configurations_without_classes_or_channels_are_refused() {
    for variant in catalogue() {
        let name = variant.name;
        for (what, options) in [
            (
                "num_classes",
                ModelOptions {
                    num_classes: 0,
                    ..variant.reference_options()
                },
            ),
            (
                "in_channels",
                ModelOptions {
                    in_channels: 0,
                    ..variant.reference_options()
                },
            ),
        ] {
            match variable_shapes(variant, &options) {
                Err(Error::Config(msg)) => assert!(!msg.is_empty(), "{name} {what}"),
                other => panic!("{name}: {what} 0: expected a configuration error, got {other:?}"),
            }
        }
    }
}

/// The smallest variant of each family: files are written and read whole, so these cases take
/// the cheapest model that exercises each family's builder (VGG-11, not VGG-19; its 133M
/// parameters are still the bulk of this file's time).
fn smallest_of_each_family() -> Vec<&'static Variant> {
    let mut picked: Vec<&'static Variant> = Vec::new();
    for variant in catalogue() {
        match picked.iter_mut().find(|p| p.family == variant.family) {
            Some(p) if variant.params < p.params => *p = variant,
            Some(_) => {}
            None => picked.push(variant),
        }
    }
    picked
}

fn load(name: &str, path: &Path) -> convnets::Result<Model> {
    create_model(
        name,
        &CreateOptions {
            weights: Some(path.display().to_string()),
            ..Default::default()
        },
    )
}

/// The error of loading `path` as `name`: an [`Error::Weights`] naming the file; its tensor,
/// its problem and its whole message.
fn weights_error(name: &str, path: &Path) -> (String, String, String) {
    let err = load(name, path).err();
    let msg = err.as_ref().map(ToString::to_string).unwrap_or_default();
    match err {
        Some(Error::Weights {
            file,
            tensor,
            problem,
        }) => {
            assert_eq!(file.as_deref(), Some(path), "{name}: the file");
            (tensor, problem, msg)
        }
        other => panic!(
            "{name} {}: expected a weights error, got {other:?}",
            path.display()
        ),
    }
}

/// Through the one way in (`create_model` with a weights file): a complete file in the model's
/// own layout loads and computes what the saved model computes; a missing file, a file cut
/// inside its header or inside its data, a file without the head's weight, with a mis-shaped
/// input convolution or with a tensor the model does not have is refused by an error naming the
/// file, the tensor, the expected and the actual.
#[test]
fn bad_weights_files_name_the_file_the_tensor_the_expected_and_the_actual() {
    let dir = tempfile::tempdir().unwrap();
    for variant in smallest_of_each_family() {
        let name = variant.name;
        let model = create_model(name, &CreateOptions::default()).unwrap();
        let shapes = variable_shapes(variant, &variant.reference_options()).unwrap();
        let good = state(model.vars.as_ref().expect("fresh weights"));

        // The complete file.
        let path = save(dir.path(), &format!("{name}.safetensors"), &good);
        let loaded = load(name, &path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let x = Tensor::randn(0f32, 1f32, &smallest(&*loaded)[..], &Device::Cpu).unwrap();
        assert_close(
            &format!("{name} reloaded"),
            &loaded.forward_t(&x, false).unwrap(),
            &model.forward_t(&x, false).unwrap(),
            0.0,
        );

        // No such file.
        let nothing = dir.path().join(format!("{name}-nothing.safetensors"));
        match load(name, &nothing).err() {
            Some(Error::WeightsFile { file, .. }) => assert_eq!(file, nothing, "{name}"),
            other => panic!("{name}: expected a weights-file error, got {other:?}"),
        }

        // The head's weight missing: the error says which shape the model needs.
        let head = format!("{}.weight", model.head_prefix());
        let mut missing = good.clone();
        assert!(missing.remove(&head).is_some(), "{name}: {head}");
        let path = save(dir.path(), "missing.safetensors", &missing);
        let (tensor, problem, _) = weights_error(name, &path);
        assert_eq!(tensor, head, "{name}");
        let needed = format!("{:?}", shapes[&head]);
        assert!(
            problem.contains("missing") && problem.contains(&needed),
            "{name}: `{problem}` should say missing and {needed}"
        );
        drop(missing);

        // The input convolution with a kernel two taps larger.
        let stem = variant.stem;
        let expected = shapes[stem].clone();
        let mut actual = expected.clone();
        actual[2] += 2;
        actual[3] += 2;
        let mut misshaped = good.clone();
        misshaped.insert(
            stem.into(),
            Tensor::zeros(actual.as_slice(), DType::F32, &Device::Cpu).unwrap(),
        );
        let path = save(dir.path(), "misshaped.safetensors", &misshaped);
        let (tensor, problem, msg) = weights_error(name, &path);
        assert_eq!(tensor, stem, "{name}");
        for needle in [
            "misshaped.safetensors".to_string(),
            stem.to_string(),
            format!("{expected:?}"),
            format!("{actual:?}"),
        ] {
            assert!(
                msg.contains(&needle),
                "{name}: `{msg}` should mention {needle} ({problem})"
            );
        }
        drop(misshaped);

        // A tensor the model does not have (strict loading).
        let mut extra = good.clone();
        extra.insert(
            "contract.unexpected.weight".into(),
            Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap(),
        );
        let path = save(dir.path(), "extra.safetensors", &extra);
        let (tensor, problem, _) = weights_error(name, &path);
        assert_eq!(tensor, "contract.unexpected.weight", "{name}");
        assert!(problem.contains("unexpected"), "{name}: {problem}");
        drop(extra);

        // Cut in the middle of the data: the first tensor cut short is named.
        let path = dir.path().join(format!("{name}.safetensors"));
        let len = std::fs::metadata(&path).unwrap().len();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len / 2).unwrap();
        let (tensor, problem, _) = weights_error(name, &path);
        assert!(good.contains_key(&tensor), "{name}: {tensor}");
        assert!(
            problem.contains("run past the end") && problem.contains("truncated"),
            "{name}: {problem}"
        );
        // Cut inside the header: an error about the file.
        file.set_len(20).unwrap();
        match load(name, &path).err() {
            Some(Error::WeightsFile { file, .. }) => assert_eq!(file, path, "{name}"),
            other => panic!("{name}: expected a weights-file error, got {other:?}"),
        }
    }
}
