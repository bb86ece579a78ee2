//! GoogLeNet and Inception-v3 against torchvision (fixtures from
//! `scripts/gen_googlenet_fixtures.py`): outputs in eval and train mode, auxiliary logits,
//! gradients, running statistics, variable names and shapes, parameter counts, and the
//! pooled sizes that depend on `ceil_mode`.

mod common;

use backbone::init::{trainable_vars, SeededVarMap};
use backbone::{summarize, Backbone};
use candle_core::{DType, Device, Tensor};
use common::{assert_close, assert_logits_close, fill_with_pattern, fixture, pattern, sample};
use googlenet::{GoogLeNet, GoogLeNetConfig, InceptionAux, InceptionV3, InceptionV3Config};
use std::collections::BTreeMap;
use std::io::Read;

const CLASSES: usize = 10;
/// Relative tolerance (of the largest reference value) of outputs and gradients.
const REL: f32 = 1e-4;

fn googlenet_with_pattern(config: GoogLeNetConfig, dtype: DType) -> (GoogLeNet, SeededVarMap) {
    let vars = SeededVarMap::new(0);
    let model = GoogLeNet::new(&config, vars.var_builder(dtype, &Device::Cpu)).unwrap();
    fill_with_pattern(&vars);
    (model, vars)
}

fn inception_with_pattern(config: InceptionV3Config) -> (InceptionV3, SeededVarMap) {
    let vars = SeededVarMap::new(0);
    let model = InceptionV3::new(&config, vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    fill_with_pattern(&vars);
    (model, vars)
}

fn reference_googlenet() -> GoogLeNetConfig {
    GoogLeNetConfig::googlenet()
        .with_classes(CLASSES)
        .with_dropout(0.0, 0.0)
}

#[test]
fn googlenet_eval_matches_torchvision() {
    let fixture = fixture();
    let (model, _vars) = googlenet_with_pattern(reference_googlenet(), DType::F32);
    let x = pattern(&[2, 3, 112, 112], 1000, 1.0, 0.0);
    let out = model.forward_aux(&x, false).unwrap();
    assert!(out.aux_logits.is_empty(), "no auxiliary logits in eval mode");
    assert_logits_close("googlenet.eval", &out.logits, &fixture["googlenet.eval"], REL);
    // forward_t is the same computation.
    let logits = model.forward_t(&x, false).unwrap();
    assert_close("googlenet forward_t", &logits, &out.logits, 0.0);
    // In inference mode every BasicConv2d is folded into one pass: the same bits.
    let folded = backbone::inference_mode(|| model.forward_t(&x, false)).unwrap();
    assert_close("googlenet inference mode", &folded, &out.logits, 0.0);
}

/// Train mode (batch statistics, auxiliary heads) in float64, as the fixture: see
/// `scripts/gen_googlenet_fixtures.py` on why float32 gradients are compared only near the
/// output. `rel` bounds the outputs and running statistics, `grad_rel` the gradients.
fn check_train_mode(dtype: DType, rel: f32, grad_keys: &[&str], grad_rel: f32) {
    let fixture = fixture();
    let (model, vars) = googlenet_with_pattern(reference_googlenet(), dtype);
    let x = pattern(&[2, 3, 112, 112], 1000, 1.0, 0.0)
        .to_dtype(dtype)
        .unwrap();
    let targets = Tensor::new(&[3u32, 7], &Device::Cpu).unwrap();
    let out = model.forward_aux(&x, true).unwrap();
    assert_eq!(out.aux_logits.len(), 2);
    let name = |what: &str| format!("{dtype:?} {what}");
    let logits = &fixture["googlenet.train.logits"];
    assert_logits_close(&name("train.logits"), &out.logits, logits, rel);
    // Our order is [aux1, aux2] (torchvision's tuple is (logits, aux2, aux1)).
    let (aux1, aux2) = (&fixture["googlenet.train.aux1"], &fixture["googlenet.train.aux2"]);
    assert_logits_close(&name("train.aux1"), &out.aux_logits[0], aux1, rel);
    assert_logits_close(&name("train.aux2"), &out.aux_logits[1], aux2, rel);

    let ce = |logits: &Tensor| candle_nn::loss::cross_entropy(logits, &targets).unwrap();
    let aux = (ce(&out.aux_logits[0]) + ce(&out.aux_logits[1])).unwrap();
    let loss = (ce(&out.logits) + (aux * 0.3).unwrap()).unwrap();
    let reference = &fixture["googlenet.train.loss"];
    assert_close(&name("train.loss"), &loss.reshape(1).unwrap(), reference, rel);
    let grads = loss.backward().unwrap();
    let trainable: BTreeMap<String, _> = trainable_vars(vars.varmap()).into_iter().collect();
    for key in grad_keys {
        let grad = grads.get(trainable[*key].as_tensor()).expect("gradient");
        let reference = &fixture[&format!("googlenet.grad.{key}")];
        assert_close(&name(&format!("grad.{key}")), &sample(grad), reference, grad_rel);
    }
    let data = vars.varmap().data().lock().unwrap();
    for bn in ["inception4a.branch2.1.bn", "aux2.conv.bn"] {
        for stat in ["running_mean", "running_var"] {
            let key = format!("{bn}.{stat}");
            let reference = &fixture[&format!("googlenet.running.{key}")];
            assert_close(&name(&key), data[&key].as_tensor(), reference, rel);
        }
    }
}

#[test]
fn googlenet_train_mode_aux_logits_gradients_and_running_stats_match_torchvision_f64() {
    check_train_mode(DType::F64, 1e-6, &["conv1.conv.weight", "aux1.fc2.weight"], 1e-6);
}

#[test]
fn googlenet_train_mode_aux_logits_and_running_stats_match_torchvision_f32() {
    check_train_mode(DType::F32, REL, &["aux1.fc2.weight"], REL);
}

#[test]
fn googlenet_paper_5x5_with_transform_input_matches_torchvision() {
    let fixture = fixture();
    let config = GoogLeNetConfig::googlenet_paper()
        .with_classes(CLASSES)
        .with_dropout(0.0, 0.0)
        .with_transform_input(true);
    let (model, vars) = googlenet_with_pattern(config, DType::F32);
    assert_eq!(model.name(), "googlenet_paper");
    let data = vars.varmap().data().lock().unwrap();
    assert_eq!(data["inception3a.branch3.1.conv.weight"].dims(), [32, 16, 5, 5]);
    drop(data);
    let x = pattern(&[2, 3, 97, 83], 1001, 1.0, 0.0);
    let logits = model.forward_t(&x, false).unwrap();
    assert_logits_close(
        "googlenet_paper.eval",
        &logits,
        &fixture["googlenet_paper.eval"],
        REL,
    );
}

#[test]
fn inception_v3_eval_matches_torchvision() {
    let fixture = fixture();
    let config = InceptionV3Config::inception_v3()
        .with_classes(CLASSES)
        .with_dropout(0.0);
    let (model, _vars) = inception_with_pattern(config);
    let x = pattern(&[2, 3, 107, 107], 1002, 1.0, 0.0);
    let out = model.forward_aux(&x, false).unwrap();
    assert!(out.aux_logits.is_empty());
    assert_logits_close(
        "inception_v3.eval",
        &out.logits,
        &fixture["inception_v3.eval"],
        REL,
    );

    let (model, _vars) = inception_with_pattern(config.with_transform_input(true));
    let x = pattern(&[2, 3, 91, 117], 1003, 1.0, 0.0);
    let logits = model.forward_t(&x, false).unwrap();
    assert_logits_close(
        "inception_v3.eval_transform",
        &logits,
        &fixture["inception_v3.eval_transform"],
        REL,
    );
}

#[test]
fn inception_aux_head_matches_torchvision() {
    let fixture = fixture();
    let vars = SeededVarMap::new(0);
    let vb = vars.var_builder(DType::F32, &Device::Cpu);
    let head = InceptionAux::new(768, CLASSES, vb.pp("AuxLogits")).unwrap();
    fill_with_pattern(&vars);
    let x = pattern(&[2, 768, 17, 17], 1004, 1.0, 0.0);
    use backbone::layers::Layer;
    for (mode, train) in [("eval", false), ("train", true)] {
        let out = head.forward_t(&x, train).unwrap();
        assert_logits_close(
            &format!("inception_aux.{mode}"),
            &out,
            &fixture[&format!("inception_aux.{mode}")],
            REL,
        );
    }
}

/// torchvision's variable names and shapes, from `state_dicts.txt.gz`.
fn torchvision_state_dict(model: &str) -> BTreeMap<String, Vec<usize>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/state_dicts.txt.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split(' ');
            let (name, key, dims) = (parts.next()?, parts.next()?, parts.next()?);
            let dims = dims
                .split(',')
                .filter(|d| !d.is_empty())
                .map(|d| d.parse().unwrap());
            (name == model).then(|| (key.to_string(), dims.collect()))
        })
        .collect()
}

fn our_state_dict(vars: &SeededVarMap) -> BTreeMap<String, Vec<usize>> {
    let data = vars.varmap().data().lock().unwrap();
    data.iter().map(|(k, v)| (k.clone(), v.dims().to_vec())).collect()
}

fn trainable_count(vars: &SeededVarMap) -> usize {
    trainable_vars(vars.varmap())
        .iter()
        .map(|(_, v)| v.elem_count())
        .sum()
}

#[test]
fn googlenet_names_shapes_and_parameter_counts_match_torchvision() {
    let build = |config: GoogLeNetConfig| {
        let vars = SeededVarMap::new(1);
        let model = GoogLeNet::new(&config, vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
        (model, vars)
    };
    let (model, vars) = build(GoogLeNetConfig::googlenet());
    let ours = our_state_dict(&vars);
    assert_eq!(ours, torchvision_state_dict("googlenet"));
    for key in [
        "conv1.conv.weight",
        "conv1.bn.running_var",
        "inception3a.branch1.conv.weight",
        "inception3a.branch2.0.bn.weight",
        "inception3a.branch3.1.conv.weight",
        "inception3a.branch4.1.conv.weight",
        "inception5b.branch4.1.bn.bias",
        "aux1.conv.conv.weight",
        "aux1.conv.bn.running_mean",
        "aux2.fc1.weight",
        "aux2.fc2.bias",
        "fc.weight",
    ] {
        assert!(ours.contains_key(key), "{key}");
    }
    assert!(
        !ours.contains_key("conv1.conv.bias"),
        "BasicConv2d has no conv bias"
    );
    assert_eq!(ours["inception3a.branch3.1.conv.weight"], [32, 16, 3, 3]);
    assert_eq!(ours["aux1.fc1.weight"], [1024, 2048]);
    assert_eq!(trainable_count(&vars), 13_004_888);
    assert_eq!(
        (model.num_features(), model.num_classes(), model.head_prefix()),
        (1024, 1000, "fc")
    );
    assert_eq!(model.aux_head_prefixes(), ["aux1.fc2", "aux2.fc2"]);

    let (model, vars) = build(GoogLeNetConfig::googlenet().with_aux_logits(false));
    assert_eq!(trainable_count(&vars), 6_624_904);
    assert!(our_state_dict(&vars).keys().all(|k| !k.starts_with("aux")));
    assert!(model.aux_head_prefixes().is_empty());

    let (_, vars) = build(GoogLeNetConfig::googlenet_paper());
    assert_eq!(trainable_count(&vars), 13_385_816);
    let (_, vars) = build(GoogLeNetConfig::googlenet_paper().with_aux_logits(false));
    assert_eq!(trainable_count(&vars), 7_005_832);
}

#[test]
fn inception_v3_names_shapes_and_parameter_counts_match_torchvision() {
    let build = |config: InceptionV3Config| {
        let vars = SeededVarMap::new(1);
        let model = InceptionV3::new(&config, vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
        (model, vars)
    };
    let (model, vars) = build(InceptionV3Config::inception_v3());
    let ours = our_state_dict(&vars);
    let reference = torchvision_state_dict("inception_v3");
    assert_eq!(ours, reference);
    for key in [
        "Conv2d_1a_3x3.conv.weight",
        "Conv2d_2a_3x3.bn.running_var",
        "Mixed_5b.branch1x1.conv.weight",
        "Mixed_5b.branch5x5_1.bn.weight",
        "Mixed_6e.branch7x7dbl_5.conv.weight",
        "Mixed_7c.branch3x3dbl_3b.conv.weight",
        "AuxLogits.conv0.conv.weight",
        "AuxLogits.conv1.conv.weight",
        "AuxLogits.fc.weight",
        "fc.bias",
    ] {
        assert!(ours.contains_key(key), "{key}");
    }
    assert_eq!(ours["Mixed_6b.branch7x7_2.conv.weight"], [128, 128, 1, 7]);
    assert_eq!(ours["Mixed_6b.branch7x7_3.conv.weight"], [192, 128, 7, 1]);
    assert_eq!(trainable_count(&vars), 27_161_264);
    assert_eq!(
        (model.num_features(), model.num_classes(), model.head_prefix()),
        (2048, 1000, "fc")
    );
    assert_eq!(model.aux_head_prefixes(), ["AuxLogits.fc"]);

    // Without the auxiliary head: timm's `inception_v3.tv_in1k` layout.
    let (model, vars) = build(InceptionV3Config::inception_v3().with_aux_logits(false));
    assert_eq!(trainable_count(&vars), 23_834_568);
    let timm: BTreeMap<_, _> = reference
        .into_iter()
        .filter(|(k, _)| !k.starts_with("AuxLogits."))
        .collect();
    assert_eq!(our_state_dict(&vars), timm);
    assert!(model.aux_head_prefixes().is_empty());
}

#[test]
fn ceil_mode_pooled_sizes_and_macs() {
    let vars = SeededVarMap::new(2);
    let config = GoogLeNetConfig::googlenet().with_aux_logits(false);
    let model = GoogLeNet::new(&config, vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    // 112x112: ceil mode gives 28, 14, 7, 4 (floor mode: 27, 13, 6, 3).
    let summary = summarize(&model, &[1, 3, 112, 112], &Device::Cpu).unwrap();
    let output = |name: &str| {
        summary
            .layers
            .iter()
            .find(|l| l.name == name)
            .unwrap_or_else(|| panic!("{name} not in the summary"))
            .output
            .clone()
    };
    assert_eq!(output("maxpool1"), [1, 64, 28, 28]);
    assert_eq!(output("maxpool2"), [1, 192, 14, 14]);
    assert_eq!(output("maxpool3"), [1, 480, 7, 7]);
    assert_eq!(output("maxpool4"), [1, 832, 4, 4]);
    assert_eq!(output("inception4a.branch4.0"), [1, 480, 7, 7]);
    assert_eq!(output("fc"), [1, 1000]);
    assert_eq!(summary.total_params(), 6_624_904);

    let summary = summarize(&model, &[1, 3, 224, 224], &Device::Cpu).unwrap();
    assert_eq!(output_of(&summary, "maxpool4"), [1, 832, 7, 7]);
    // torchvision publishes 1.498 GFLOPS (multiply-accumulates); a forward hook on every
    // nn.Conv2d and nn.Linear of torchvision's model counts exactly this.
    assert_eq!(summary.total_macs(), 1_498_376_192);
}

fn output_of(summary: &backbone::Summary, name: &str) -> Vec<usize> {
    summary
        .layers
        .iter()
        .find(|l| l.name == name)
        .unwrap()
        .output
        .clone()
}

#[test]
fn inception_v3_macs_at_299() {
    let vars = SeededVarMap::new(2);
    let config = InceptionV3Config::inception_v3().with_aux_logits(false);
    let model = InceptionV3::new(&config, vars.var_builder(DType::F32, &Device::Cpu)).unwrap();
    let summary = summarize(&model, &[1, 3, 299, 299], &Device::Cpu).unwrap();
    assert_eq!(output_of(&summary, "maxpool2"), [1, 192, 35, 35]);
    assert_eq!(output_of(&summary, "Mixed_6e.avg_pool"), [1, 768, 17, 17]);
    assert_eq!(output_of(&summary, "Mixed_7c.avg_pool"), [1, 2048, 8, 8]);
    assert_eq!(summary.total_params(), 23_834_568);
    // torchvision publishes 5.713 GFLOPS (multiply-accumulates); a forward hook on
    // torchvision's model counts exactly this.
    assert_eq!(summary.total_macs(), 5_713_216_096);
}
