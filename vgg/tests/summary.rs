//! The per-layer summary of VGG-16 at 224x224 against the seed's table (the CS231n notes:
//! per-layer memory and weights, 138M parameters).
//!
//! The one VGG-16 forward pass at 224x224 of the test suite (15.5 GMACs, a few seconds).

use backbone::{summarize, Backbone};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use vgg::{Vgg, VggConfig};

/// The seed's rows: layer, output `[C, H, W]` and weights (parameters without biases).
const SEED: [(&str, [usize; 3], usize); 21] = [
    ("CONV3-64", [64, 224, 224], 1_728),
    ("CONV3-64", [64, 224, 224], 36_864),
    ("POOL2", [64, 112, 112], 0),
    ("CONV3-128", [128, 112, 112], 73_728),
    ("CONV3-128", [128, 112, 112], 147_456),
    ("POOL2", [128, 56, 56], 0),
    ("CONV3-256", [256, 56, 56], 294_912),
    ("CONV3-256", [256, 56, 56], 589_824),
    ("CONV3-256", [256, 56, 56], 589_824),
    ("POOL2", [256, 28, 28], 0),
    ("CONV3-512", [512, 28, 28], 1_179_648),
    ("CONV3-512", [512, 28, 28], 2_359_296),
    ("CONV3-512", [512, 28, 28], 2_359_296),
    ("POOL2", [512, 14, 14], 0),
    ("CONV3-512", [512, 14, 14], 2_359_296),
    ("CONV3-512", [512, 14, 14], 2_359_296),
    ("CONV3-512", [512, 14, 14], 2_359_296),
    ("POOL2", [512, 7, 7], 0),
    ("FC", [1, 1, 4096], 102_760_448),
    ("FC", [1, 1, 4096], 16_777_216),
    ("FC", [1, 1, 1000], 4_096_000),
];

#[test]
fn vgg16_summary_reproduces_the_seed_table() {
    let model = Vgg::new(&VggConfig::vgg16(), VarBuilder::zeros(DType::F32, &Device::Cpu)).unwrap();
    let summary = summarize(&model, &[1, 3, 224, 224], &Device::Cpu).unwrap();
    assert_eq!(summary.model, "vgg16");

    // torchvision's adaptive pool is the identity at 224x224 (7x7 in, 7x7 out): the seed has
    // no row for it.
    let (avgpool, rows): (Vec<_>, Vec<_>) = summary.layers.iter().partition(|l| l.name == "avgpool");
    assert_eq!(avgpool.len(), 1);
    assert_eq!(avgpool[0].output, [1, 512, 7, 7]);
    assert_eq!(rows.len(), SEED.len());
    for (row, (layer, output, weights)) in rows.iter().zip(SEED) {
        let kind = match layer {
            "POOL2" => "MaxPool2d",
            "FC" => "Linear",
            _ => "Conv2d",
        };
        assert_eq!(row.kind, kind, "{}", row.name);
        assert_eq!(row.weights, weights, "{} ({layer})", row.name);
        let elems: usize = output.iter().product();
        assert_eq!(row.memory(), elems, "{} ({layer}) memory", row.name);
        if kind == "Linear" {
            assert_eq!(row.output, [1, output[2]]);
        } else {
            assert_eq!(row.output, [1, output[0], output[1], output[2]]);
        }
    }
    let names: Vec<&str> = rows.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(&names[..3], ["features.0", "features.2", "features.4"]);
    assert_eq!(&names[18..], ["classifier.0", "classifier.3", "classifier.6"]);

    assert_eq!(summary.total_params(), 138_357_544);
    assert_eq!(summary.total_weights(), 138_344_128);
    assert_eq!(summary.total_macs(), 15_470_264_320);

    // Activations: the seed's per-layer figures add up to 15.2M elements with the input
    // (61 MB in f32), not the "24M ~= 93MB" its total line states (an arithmetic slip of the
    // original notes). The summary lists the outputs of convolutions, pools (the adaptive pool
    // included) and linear layers: 15,112,168 elements; the ReLUs run in place in torchvision.
    let seed_sum: usize = SEED.iter().map(|(_, o, _)| o.iter().product::<usize>()).sum();
    assert_eq!(seed_sum, 15_087_080);
    assert_eq!(summary.total_memory(), seed_sum + 512 * 7 * 7);

    let table = summary.to_string();
    for needle in [
        "features.28",
        "Total params:        138,357,544",
        "102,760,448",
        "15,112,168",
    ] {
        assert!(
            table.contains(needle),
            "summary table should contain {needle}:\n{table}"
        );
    }
    // The pre-logits entering `classifier.6`.
    assert_eq!(model.num_features(), 4096);
}
