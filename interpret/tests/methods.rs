//! Occlusion on a synthetic model where one patch alone matters, and the errors a user can
//! cause (unknown layer, a model without a plain chain, a class past the head, a bad patch).

use backbone::{Backbone, FeatureInfo, InputSpec};
use candle_core::{DType, Device, Tensor};
use interpret::{
    deconvnet, grad_cam, guided_backprop, occlusion, stage_activations, CamMethod, Error, OcclusionConfig,
};

/// 1 x 16 x 16 input; logit 0 = 10 x the sum of rows 8..12, columns 4..8; logit 1 = 0.
struct OnePatch;

impl Backbone for OnePatch {
    fn name(&self) -> &str {
        "one_patch"
    }
    fn input_spec(&self) -> InputSpec {
        InputSpec {
            channels: 1,
            min_size: (16, 16),
            fixed_size: Some((16, 16)),
            default_size: (16, 16),
        }
    }
    fn forward_features(&self, xs: &Tensor, _train: bool) -> backbone::Result<Tensor> {
        Ok(xs.clone())
    }
    fn forward_pre_logits(&self, features: &Tensor, _train: bool) -> backbone::Result<Tensor> {
        let region = features.narrow(2, 8, 4)?.narrow(3, 4, 4)?;
        let score = (region.sum((1, 2, 3))? * 10.0)?.unsqueeze(1)?;
        Ok(Tensor::cat(&[&score, &score.zeros_like()?], 1)?)
    }
    fn forward_classifier(&self, pre_logits: &Tensor, _train: bool) -> backbone::Result<Tensor> {
        Ok(pre_logits.clone())
    }
    fn feature_info(&self) -> Vec<FeatureInfo> {
        vec![FeatureInfo::new("input", 1, 1)]
    }
    fn forward_stages(&self, xs: &Tensor, _train: bool) -> backbone::Result<Vec<Tensor>> {
        Ok(vec![xs.clone()])
    }
    fn num_features(&self) -> usize {
        2
    }
    fn num_classes(&self) -> usize {
        2
    }
    fn head_prefix(&self) -> &str {
        "head"
    }
}

fn ones() -> Tensor {
    Tensor::ones((1, 1, 16, 16), DType::F32, &Device::Cpu).unwrap()
}

#[test]
fn occlusion_finds_the_only_patch_that_matters() {
    let mut calls = Vec::new();
    let config = OcclusionConfig {
        patch: 4,
        stride: 2,
        fill: 0.0,
        batch: 10,
    };
    let map = occlusion(&OnePatch, &ones(), None, config, &mut |done, total| {
        calls.push((done, total))
    })
    .unwrap();
    assert_eq!(map.prediction.class, 0);
    assert_eq!((map.rows, map.cols), (7, 7));
    assert_eq!(map.most_sensitive(), (8, 4));
    // Batched: 49 positions in 5 passes, the progress reported after each.
    assert_eq!(calls.len(), 5);
    assert_eq!(calls.last(), Some(&(49, 49)));
    // Away from the patch nothing changes.
    assert!((map.probabilities[0] - map.prediction.probability).abs() < 1e-6);
    // Over it both logits are 0: probability 1/2.
    assert!((map.probabilities[4 * 7 + 2] - 0.5).abs() < 1e-6);
}

#[test]
fn guided_backprop_of_the_synthetic_model_is_the_patch() {
    let (grad, prediction) = guided_backprop(&OnePatch, &ones(), None).unwrap();
    assert_eq!(prediction.class, 0);
    let grad = grad.squeeze(0).unwrap().to_vec2::<f32>().unwrap();
    for (y, row) in grad.iter().enumerate() {
        for (x, &g) in row.iter().enumerate() {
            let inside = (8..12).contains(&y) && (4..8).contains(&x);
            assert_eq!(g, if inside { 10.0 } else { 0.0 }, "({y}, {x})");
        }
    }
}

#[test]
fn bad_inputs_get_clear_errors() {
    // A model without a plain chain.
    let err = deconvnet(&OnePatch, &ones(), "input", 3).unwrap_err();
    assert!(matches!(err, Error::NotPlain { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("one_patch: the deconvnet needs a plain chain"),
        "{err}"
    );
    // An unknown stage.
    let err = stage_activations(&OnePatch, &ones(), &["layer9".to_string()]).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("no layer `layer9`") && text.contains("expected one of: input"),
        "{text}"
    );
    // A class past the head.
    let err = grad_cam(&OnePatch, &ones(), Some(7), CamMethod::GradCam).unwrap_err();
    assert!(
        err.to_string()
            .contains("class 7 is out of range: the head has 2 classes"),
        "{err}"
    );
    // A patch larger than the image, and a batch of two images.
    let config = OcclusionConfig {
        patch: 17,
        ..OcclusionConfig::default()
    };
    let err = occlusion(&OnePatch, &ones(), None, config, &mut |_, _| {}).unwrap_err();
    assert!(
        err.to_string()
            .contains("occlusion patch: expected a side from 1 to 16"),
        "{err}"
    );
    let two = Tensor::ones((2, 1, 16, 16), DType::F32, &Device::Cpu).unwrap();
    let err = grad_cam(&OnePatch, &two, None, CamMethod::GradCam).unwrap_err();
    assert!(
        err.to_string()
            .contains("expected one image [1, C, H, W], found [2, 1, 16, 16]"),
        "{err}"
    );
}
