//! Grad-CAM, Grad-CAM++, guided backpropagation and the deconvnet against the references of
//! `scripts/gen_interpret_fixtures.py` (PyTorch, torchvision and `pytorch_grad_cam`), to 1e-4
//! relative to the reference's largest magnitude.

use backbone::init::SeededVarMap;
use backbone::Backbone;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use interpret::{deconvnet, grad_cam, guided_backprop, CamMethod};
use lenet::{LeNet, LeNetConfig};
use resnet::{ResNet, ResNetConfig};
use std::collections::HashMap;
use std::path::PathBuf;

const REL: f32 = 1e-4;

fn fixture(name: &str) -> HashMap<String, Tensor> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    candle_core::safetensors::load(&path, &Device::Cpu).unwrap()
}

/// Asserts `max |ours - reference| <= REL * max |reference|` and prints the ratio.
#[track_caller]
fn close(name: &str, ours: &Tensor, reference: &Tensor) {
    assert_eq!(ours.dims(), reference.dims(), "{name}: shape");
    let a = ours
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let b = reference.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(
        scale > 0.0,
        "{name}: the reference is all zeros (the test could not fail)"
    );
    let err = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    println!("{name}: max |diff| / max |ref| = {:.2e}", err / scale);
    assert!(err <= REL * scale, "{name}: |diff| {err:e} > {REL:e} x {scale}");
}

fn lenet(config: &LeNetConfig) -> (LeNet, Tensor) {
    let tensors = fixture("lenet.safetensors");
    let input = tensors["input"].clone();
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    (LeNet::new(config, vb).unwrap(), input)
}

fn check_cams(model: &dyn Backbone, input: &Tensor, expected: &HashMap<String, Tensor>, prefix: &str) {
    let logits = model.forward_t(input, false).unwrap();
    close(
        &format!("{prefix}logits"),
        &logits,
        &expected[&format!("{prefix}logits")],
    );
    for (method, key) in [
        (CamMethod::GradCam, "gradcam"),
        (CamMethod::GradCamPlusPlus, "gradcampp"),
    ] {
        let cam = grad_cam(model, input, None, method).unwrap();
        for (part, ours) in [
            ("weights", &cam.weights),
            ("map", &cam.map),
            ("upsampled", &cam.upsampled),
        ] {
            let name = format!("{prefix}{key}.{part}");
            close(&name, ours, &expected[&name]);
        }
    }
    let (guided, _) = guided_backprop(model, input, None).unwrap();
    close(
        &format!("{prefix}guided"),
        &guided,
        &expected[&format!("{prefix}guided")],
    );
}

#[test]
fn lenet_grad_cam_guided_backprop_and_deconvnet_equal_pytorch() {
    let expected = fixture("lenet-expected.safetensors");
    for (name, config) in [
        ("lenet5", LeNetConfig::lenet5()),
        ("lenet5_max", LeNetConfig::lenet5_max()),
    ] {
        let (model, input) = lenet(&config);
        assert_eq!(model.name(), name);
        check_cams(&model, &input, &expected, &format!("{name}."));
        for layer in ["conv1", "pool1", "conv2", "pool2"] {
            let projections = deconvnet(&model, &input, layer, 3).unwrap();
            let channels: Vec<f32> = projections.iter().map(|p| p.channel as f32).collect();
            let key = format!("{name}.deconv.{layer}");
            assert_eq!(
                channels,
                expected[&format!("{key}.channels")].to_vec1::<f32>().unwrap(),
                "{key}"
            );
            let ours = Tensor::stack(
                &projections.iter().map(|p| p.pixels.clone()).collect::<Vec<_>>(),
                0,
            )
            .unwrap();
            close(&key, &ours, &expected[&key]);
        }
    }
}

#[test]
fn resnet18_grad_cam_and_guided_backprop_equal_pytorch() {
    let expected = fixture("resnet18-expected.safetensors");
    let vars = SeededVarMap::new(0);
    let model = ResNet::new(
        &ResNetConfig::resnet18().with_classes(10),
        vars.var_builder(DType::F32, &Device::Cpu),
    )
    .unwrap();
    testkit::densenet_efficientnet::fill_vars(&vars);
    check_cams(&model, &expected["input"], &expected, "");
}
