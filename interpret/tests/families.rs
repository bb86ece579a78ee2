//! Grad-CAM, Grad-CAM++, guided backpropagation and occlusion run on every family the issue
//! names (fresh seeded weights from the catalogue, small inputs): the maps have the image's
//! size, are finite, normalised and not empty, and the class is the one asked for. The values
//! themselves are compared with PyTorch's in `reference.rs` (LeNet-5, ResNet-18).

use candle_core::{DType, Device, Tensor};
use convnets::{create_model, CreateOptions};
use interpret::{grad_cam, guided_backprop, occlusion, CamMethod, OcclusionConfig};

fn check_map(name: &str, what: &str, map: &Tensor, (h, w): (usize, usize)) {
    assert_eq!(map.dims(), [h, w], "{name} {what}");
    let values = map.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(
        values.iter().all(|v| v.is_finite()),
        "{name} {what}: non-finite values"
    );
    let (min, max) = values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    assert!(
        min >= 0.0 && max <= 1.0 + 1e-5,
        "{name} {what}: [{min}, {max}] is not normalised"
    );
}

#[test]
fn every_named_family_explains_its_prediction() {
    // (variant, input side): small sides the architecture accepts.
    let cases = [
        ("lenet5", 32),
        ("vgg11", 32),
        ("resnet18", 64),
        ("densenet121", 64),
        ("efficientnet_b0", 64),
        ("googlenet", 64),
        ("inception_v3", 96),
    ];
    for (name, side) in cases {
        let options = CreateOptions {
            num_classes: Some(10),
            seed: 7,
            ..CreateOptions::default()
        };
        let model = create_model(name, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
        let net = model.net.as_ref();
        let channels = net.input_spec().channels;
        let image = Tensor::randn(0f32, 1.0, (1, channels, side, side), &Device::Cpu)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        for method in [CamMethod::GradCam, CamMethod::GradCamPlusPlus] {
            let cam = grad_cam(net, &image, Some(3), method).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(cam.prediction.class, 3, "{name}");
            check_map(name, "grad-cam", &cam.upsampled, (side, side));
        }
        let (grad, prediction) = guided_backprop(net, &image, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(grad.dims(), [channels, side, side], "{name}");
        let values = grad.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(values.iter().all(|v| v.is_finite()), "{name}: guided gradient");
        assert!(
            values.iter().any(|&v| v != 0.0),
            "{name}: the guided gradient is all zero"
        );
        let config = OcclusionConfig {
            patch: side / 4,
            stride: side / 4,
            fill: 0.0,
            batch: 8,
        };
        let map = occlusion(net, &image, Some(prediction.class), config, &mut |_, _| {})
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((map.rows, map.cols), (4, 4), "{name}");
        assert_eq!(map.probabilities.len(), 16, "{name}");
        assert!(
            map.probabilities
                .iter()
                .all(|p| p.is_finite() && (0.0..=1.0).contains(p)),
            "{name}: occlusion probabilities {:?}",
            map.probabilities
        );
    }
}
