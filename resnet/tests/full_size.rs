//! ResNet-18 and ResNet-50 at full size against torchvision (`scripts/gen_full_size_resnet.py`
//! writes the weights, inputs and float64 logits; 170 MB, not in git): the eval pass and the
//! frozen-weights pass (the blocked layout, with Winograd F(4x4) on the 56x56 and 28x28 maps
//! and at batch 16 on the 14x14 and 7x7 ones) within 1e-5 of the logits' scale.

use backbone::weights::Weights;
use backbone::Backbone;
use candle_core::{DType, Device, Tensor};
use resnet::{ResNet, ResNetConfig};

fn relative(ours: &Tensor, theirs: &Tensor) -> f32 {
    let scalar = |t: Tensor| t.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    scalar((ours - theirs).unwrap()) / scalar(theirs.clone())
}

#[test]
#[ignore = "needs CONVNETS_FULL_SIZE_DIR from scripts/gen_full_size_resnet.py (170 MB)"]
fn full_size_resnets_match_torchvision_on_every_path() {
    let dir = std::env::var("CONVNETS_FULL_SIZE_DIR").expect("CONVNETS_FULL_SIZE_DIR");
    for (name, config) in [
        ("resnet18", ResNetConfig::resnet18()),
        ("resnet50", ResNetConfig::resnet50()),
    ] {
        let weights = Weights::from_file(format!("{dir}/{name}.safetensors"), &Device::Cpu).unwrap();
        let model = weights
            .build(DType::F32, &Device::Cpu, false, |vb| ResNet::new(&config, vb))
            .unwrap();
        for batch in [1, 16] {
            let io =
                candle_core::safetensors::load(format!("{dir}/{name}_b{batch}_io.safetensors"), &Device::Cpu)
                    .unwrap();
            let (x, y) = (&io["x"], &io["y"]);
            let eval = model.forward_t(x, false).unwrap();
            let frozen = backbone::with_frozen_weights(|| model.forward_t(x, false)).unwrap();
            let (e, f) = (relative(&eval, y), relative(&frozen, y));
            eprintln!("{name} batch {batch}: eval {e:.2e}, frozen {f:.2e}");
            assert!(
                e <= 1e-5 && f <= 1e-5,
                "{name} batch {batch}: eval {e:e}, frozen {f:e}"
            );
        }
    }
}
