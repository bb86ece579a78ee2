//! The recipe tools against their references (`fixtures/augment.safetensors`, written by
//! `scripts/gen_augment_fixtures.py`): each augmentation operation against torchvision's
//! `transforms.v2.functional` on uint8 images, timm's `Mixup` / CutMix replayed on numpy's
//! recorded draws, timm's `SoftTargetCrossEntropy` (loss and gradient), timm's AutoAugment
//! tables; and the policies' draws, random erasing and flips structurally.

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use trainer::data::policy::{AaOp, POLICY_ORIGINAL, POLICY_V0, RAND_INCREASING_TRANSFORMS, RAND_TRANSFORMS};
use trainer::data::{
    AutoAugment, Bytes, EraseMode, Image, Mixup, MixupDraws, MixupMode, Op, Policy, RandomErasing, Transform,
};
use trainer::loss::soft_target_cross_entropy;

fn path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/augment.safetensors")
}

fn fixtures() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path(), &Device::Cpu).unwrap()
}

fn metadata(key: &str) -> String {
    let bytes = std::fs::read(path()).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    meta.metadata().as_ref().unwrap()[key].clone()
}

fn bytes_of(t: &Tensor) -> Bytes {
    let (c, h, w) = t.dims3().unwrap();
    Bytes::new(c, h, w, t.flatten_all().unwrap().to_vec1::<u8>().unwrap()).unwrap()
}

fn f64s(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

fn op_of(kind: &str, args: &[f64]) -> Op {
    let a = args[0];
    match kind {
        "identity" => Op::Identity,
        "shear_x" => Op::ShearX(a),
        "shear_y" => Op::ShearY(a),
        "translate_x" => Op::TranslateX(a),
        "translate_y" => Op::TranslateY(a),
        "rotate" => Op::Rotate(a),
        "brightness" => Op::Brightness(a),
        "color" => Op::Color(a),
        "contrast" => Op::Contrast(a),
        "sharpness" => Op::Sharpness(a),
        "posterize" => Op::Posterize(a as u8),
        "solarize" => Op::Solarize(a),
        "solarize_add" => Op::SolarizeAdd {
            add: a as u8,
            threshold: args[1] as u8,
        },
        "autocontrast" => Op::AutoContrast,
        "equalize" => Op::Equalize,
        "invert" => Op::Invert,
        other => panic!("unknown op {other}"),
    }
}

/// Operations whose output must equal torchvision's byte for byte: no floating-point rounding
/// on the way (bit operations, lookups, integer shifts, integer histograms).
const EXACT: [&str; 9] = [
    "identity",
    "translate_x",
    "translate_y",
    "posterize",
    "solarize",
    "solarize_add",
    "invert",
    "equalize",
    "autocontrast",
];

#[test]
fn each_operation_equals_torchvision_on_uint8_images() {
    let fx = fixtures();
    let fill = [120u8, 64, 200];
    let mut report = Vec::new();
    for entry in metadata("ops").split(',') {
        let (name, kind) = entry.split_once(':').unwrap();
        let op = op_of(kind, &f64s(&fx[&format!("ops.{name}.arg")]));
        for colour in ["rgb", "grey"] {
            let Some(expected) = fx.get(&format!("ops.{name}.{colour}")) else {
                continue;
            };
            let input = bytes_of(&fx[&format!("ops.{colour}")]);
            let got = op
                .apply(&input, if colour == "rgb" { &fill } else { &fill[..1] })
                .unwrap();
            let expected = bytes_of(expected);
            assert_eq!(
                (got.channels, got.height, got.width),
                (expected.channels, expected.height, expected.width)
            );
            let diffs: Vec<i32> = got
                .data
                .iter()
                .zip(&expected.data)
                .map(|(&a, &b)| (i32::from(a) - i32::from(b)).abs())
                .collect();
            let max = diffs.iter().copied().max().unwrap();
            let off = diffs.iter().filter(|&&d| d != 0).count();
            report.push(format!(
                "{name}.{colour}: max {max}, {off}/{} differ",
                diffs.len()
            ));
            if EXACT.contains(&kind) {
                assert_eq!(
                    off,
                    0,
                    "{name} ({colour}) must be exact: {}",
                    report.last().unwrap()
                );
            } else if matches!(kind, "shear_x" | "shear_y" | "rotate") {
                // Nearest sampling: a coordinate within f32 rounding of a pixel border may pick
                // the neighbour; at most 1% of the pixels.
                assert!(
                    off * 100 <= diffs.len(),
                    "{name} ({colour}): {}",
                    report.last().unwrap()
                );
            } else {
                // f32 blends truncated to bytes: +-1 where torch's kernel fuses a multiply-add.
                assert!(
                    max <= 1 && off * 50 <= diffs.len(),
                    "{name} ({colour}): {}",
                    report.last().unwrap()
                );
            }
        }
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn the_autoaugment_tables_are_timms() {
    let fx = fixtures();
    let names = metadata("aa.names");
    let names: Vec<&str> = names.split(',').collect();
    for (key, table) in [("aa.v0", &POLICY_V0), ("aa.original", &POLICY_ORIGINAL)] {
        let rows = fx[key].to_vec2::<f64>().unwrap();
        let ours: Vec<(AaOp, f64, u8)> = table.iter().flatten().copied().collect();
        assert_eq!(rows.len(), ours.len(), "{key}");
        for (i, (row, (op, prob, magnitude))) in rows.iter().zip(ours).enumerate() {
            assert_eq!(names[row[0] as usize], op.name(), "{key} row {i}");
            assert_eq!(row[1], prob, "{key} row {i}");
            assert_eq!(row[2], f64::from(magnitude), "{key} row {i}");
        }
    }
}

/// numpy's draws, replayed in order; each must be of the kind (and arguments) asked for.
struct Recorded(VecDeque<[f64; 4]>);

impl Recorded {
    fn next(&mut self, kind: f64, a: f64, b: f64) -> trainer::Result<f64> {
        let row = self.0.pop_front().expect("timm drew fewer numbers");
        assert_eq!(row[0], kind, "draw kind");
        assert_eq!((row[2], row[3]), (a, b), "draw arguments");
        Ok(row[1])
    }
}

impl MixupDraws for Recorded {
    fn uniform(&mut self) -> trainer::Result<f64> {
        self.next(0.0, 0.0, 0.0)
    }
    fn beta(&mut self, alpha: f64) -> trainer::Result<f64> {
        self.next(1.0, alpha, 0.0)
    }
    fn randint(&mut self, low: i64, high: i64) -> trainer::Result<i64> {
        Ok(self.next(2.0, low as f64, high as f64)? as i64)
    }
}

#[test]
fn mixup_and_cutmix_equal_timm_on_the_same_draws() {
    let fx = fixtures();
    let count = fx["mixup.count"].to_vec1::<i64>().unwrap()[0] as usize;
    let mut worst: (f32, f32) = (0.0, 0.0);
    for case in 0..count {
        let p = |k: &str| fx[&format!("mixup.{case}.{k}")].clone();
        let cfg = f64s(&p("config"));
        let mixup = Mixup {
            mixup_alpha: cfg[0],
            cutmix_alpha: cfg[1],
            cutmix_minmax: (cfg[2] >= 0.0).then_some((cfg[2], cfg[3])),
            prob: cfg[4],
            switch_prob: cfg[5],
            mode: [MixupMode::Batch, MixupMode::Pair, MixupMode::Elem][cfg[6] as usize],
            label_smoothing: cfg[7],
            num_classes: cfg[8] as usize,
            correct_lam: cfg[9] != 0.0,
        };
        let x = p("x");
        let dims = x.dims4().unwrap();
        let mut images = f32s(&x);
        let labels: Vec<u32> = p("target")
            .to_vec1::<i64>()
            .unwrap()
            .iter()
            .map(|&l| l as u32)
            .collect();
        let rows = p("draws").to_vec2::<f64>().unwrap();
        let mut draws = Recorded(
            rows.into_iter()
                .filter(|r| r[0] >= 0.0)
                .map(|r| [r[0], r[1], r[2], r[3]])
                .collect(),
        );
        let soft = mixup.apply(&mut images, dims, &labels, &mut draws).unwrap();
        assert!(
            draws.0.is_empty(),
            "case {case}: timm drew {} more numbers",
            draws.0.len()
        );
        let max_diff =
            |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        let (di, dt) = (
            max_diff(&images, &f32s(&p("mixed"))),
            max_diff(&soft, &f32s(&p("soft"))),
        );
        assert!(
            di <= 1e-6 && dt <= 1e-6,
            "case {case} {mixup:?}: images {di:e}, targets {dt:e}"
        );
        worst = (worst.0.max(di), worst.1.max(dt));
    }
    eprintln!(
        "{count} mixup cases: images max |diff| {:e}, targets {:e}",
        worst.0, worst.1
    );
}

#[test]
fn soft_target_cross_entropy_and_its_gradient_equal_timm() {
    let fx = fixtures();
    let logits = Var::from_tensor(&fx["soft_ce.logits"]).unwrap();
    let loss = soft_target_cross_entropy(logits.as_tensor(), &fx["soft_ce.target"]).unwrap();
    let expected = f32s(&fx["soft_ce.loss"])[0];
    let got = loss.to_scalar::<f32>().unwrap();
    assert!(
        (got - expected).abs() <= 1e-6 * expected.abs(),
        "{got} vs {expected}"
    );
    let grads = loss.backward().unwrap();
    let grad = f32s(grads.get(logits.as_tensor()).unwrap());
    let reference = f32s(&fx["soft_ce.grad"]);
    let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = grad
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff <= 1e-6 * scale, "gradient {diff:e} (scale {scale})");
    // Shapes that differ are refused.
    assert!(
        soft_target_cross_entropy(logits.as_tensor(), &fx["soft_ce.logits"].narrow(1, 0, 3).unwrap())
            .is_err()
    );
}

fn image(c: usize, h: usize, w: usize) -> Image {
    let data = (0..c * h * w)
        .map(|i| ((i * 37 + 11) % 256) as f32 / 255.0)
        .collect();
    Image::new(c, h, w, data).unwrap()
}

#[test]
fn rand_augment_parses_timms_grammar() {
    let aa = AutoAugment::parse("rand-m9-mstd0.5", &[0.485, 0.456, 0.406]).unwrap();
    assert_eq!(aa.fill, vec![124, 116, 104]);
    let Policy::Rand(ra) = &aa.policy else {
        panic!("{aa:?}")
    };
    assert_eq!(
        (ra.magnitude, ra.num_layers, ra.prob, ra.magnitude_std),
        (9.0, 2, 0.5, 0.5)
    );
    assert!(!ra.increasing && ra.magnitude_max.is_none());
    let aa = AutoAugment::parse("rand-m7-n3-p1.0-mstd101-mmax8-inc1", &[0.5]).unwrap();
    let Policy::Rand(ra) = &aa.policy else {
        panic!("{aa:?}")
    };
    assert_eq!((ra.magnitude, ra.num_layers, ra.prob), (7.0, 3, 1.0));
    assert!(ra.magnitude_std.is_infinite() && ra.increasing && ra.magnitude_max == Some(8.0));
    assert!(matches!(
        AutoAugment::parse("trivial", &[0.5]).unwrap().policy,
        Policy::TrivialWide
    ));
    assert!(matches!(
        AutoAugment::parse("v0", &[0.5]).unwrap().policy,
        Policy::Table("v0", _)
    ));
    assert!(matches!(
        AutoAugment::parse("original", &[0.5]).unwrap().policy,
        Policy::Table("original", _)
    ));
    for bad in ["rand-x3", "augmix", "rand-m-1", ""] {
        assert!(AutoAugment::parse(bad, &[0.5]).is_err(), "{bad}");
    }
}

/// The range of an operation's argument at magnitudes up to `max_level` (timm's maps).
fn in_timm_range(op: &Op, max_level: f64, size: (usize, usize)) -> bool {
    let f = max_level / 10.0;
    match *op {
        Op::Rotate(a) => a.abs() <= 30.0 * f + 1e-9,
        Op::ShearX(s) | Op::ShearY(s) => s.abs() <= 0.3 * f + 1e-9,
        Op::TranslateX(p) => p.abs() <= 0.45 * f * size.1 as f64 + 1e-9,
        Op::TranslateY(p) => p.abs() <= 0.45 * f * size.0 as f64 + 1e-9,
        Op::Brightness(x) | Op::Color(x) | Op::Contrast(x) | Op::Sharpness(x) => {
            (0.1 - 1e-9..=1.9 + 1e-9).contains(&x)
        }
        Op::Posterize(b) => b <= 8,
        Op::Solarize(t) => (0.0..=256.0).contains(&t),
        Op::SolarizeAdd { add, threshold } => f64::from(add) <= 110.0 * f && threshold == 128,
        Op::AutoContrast | Op::Equalize | Op::Invert | Op::Identity => true,
    }
}

#[test]
fn policies_draw_their_operations_in_range_and_reproducibly() {
    let size = (20, 30);
    let ra = AutoAugment::parse("rand-m9-mstd0.5", &[0.5, 0.5, 0.5]).unwrap();
    let fixed = AutoAugment::parse("rand-m9-p1.0", &[0.5, 0.5, 0.5]).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (mut drawn, mut kinds) = (0, std::collections::BTreeSet::new());
    for _ in 0..400 {
        let ops = ra.draw(size, &mut rng);
        assert!(ops.len() <= 2);
        drawn += ops.len();
        for op in &ops {
            kinds.insert(format!("{op:?}").split(['(', ' ']).next().unwrap().to_string());
            assert!(in_timm_range(op, 10.0, size), "{op:?}");
        }
        // p1.0, no noise: two operations at exactly magnitude 9.
        let ops = fixed.draw(size, &mut rng);
        assert_eq!(ops.len(), 2);
        for op in &ops {
            assert!(in_timm_range(op, 9.0, size), "{op:?}");
            if let Op::Rotate(a) = op {
                assert!((a.abs() - 27.0).abs() < 1e-9);
            }
        }
    }
    // Probability 0.5 per operation: about 400 of 800 applied; every operation of the set seen.
    assert!((300..=500).contains(&drawn), "{drawn}");
    assert_eq!(kinds.len(), 15, "{kinds:?}");
    assert_eq!(RAND_TRANSFORMS.len(), RAND_INCREASING_TRANSFORMS.len());
    // TrivialAugmentWide: one operation, torchvision's ranges.
    let trivial = AutoAugment::parse("trivial", &[0.5]).unwrap();
    for _ in 0..300 {
        let ops = trivial.draw(size, &mut rng);
        assert_eq!(ops.len(), 1);
        let ok = match ops[0] {
            Op::ShearX(s) | Op::ShearY(s) => s.abs() <= 0.99,
            Op::TranslateX(p) | Op::TranslateY(p) => p.abs() <= 32.0,
            Op::Rotate(a) => a.abs() <= 135.0,
            Op::Brightness(x) | Op::Color(x) | Op::Contrast(x) | Op::Sharpness(x) => {
                (0.01 - 1e-9..=1.99 + 1e-9).contains(&x)
            }
            Op::Posterize(b) => (2..=8).contains(&b),
            Op::Solarize(t) => (0.0..=255.0).contains(&t),
            Op::Identity | Op::AutoContrast | Op::Equalize => true,
            _ => false,
        };
        assert!(ok, "{:?}", ops[0]);
    }
    // AutoAugment v0: the operations of one sub-policy of the table.
    let v0 = AutoAugment::parse("v0", &[0.5]).unwrap();
    for _ in 0..100 {
        assert!(v0.draw(size, &mut rng).len() <= 2);
    }
    // Seeded: the same generator state gives the same image; another seed another one.
    let img = image(3, 20, 30);
    let a = ra.apply(img.clone(), &mut ChaCha8Rng::seed_from_u64(9)).unwrap();
    let b = ra.apply(img.clone(), &mut ChaCha8Rng::seed_from_u64(9)).unwrap();
    assert_eq!(a, b);
    let differs = (10..30).any(|s| ra.apply(img.clone(), &mut ChaCha8Rng::seed_from_u64(s)).unwrap() != a);
    assert!(differs);
}

#[test]
fn random_erasing_erases_boxes_of_timms_sizes() {
    let img = image(3, 40, 50);
    let never = RandomErasing::new(0.0, EraseMode::Const, 1);
    let mut out = img.clone();
    never.erase(&mut out, &mut ChaCha8Rng::seed_from_u64(0));
    assert_eq!(out, img);
    let always = RandomErasing::new(1.0, EraseMode::Const, 1);
    for seed in 0..50 {
        let mut out = img.clone();
        always.erase(&mut out, &mut ChaCha8Rng::seed_from_u64(seed));
        // One box of zeros covering 2% to 1/3 of the image (rounded sides), on every channel.
        let changed = out.data.iter().zip(&img.data).filter(|(a, b)| a != b).count() / 3;
        let zeros = out.data.iter().filter(|&&v| v == 0.0).count();
        assert!(zeros >= changed, "seed {seed}");
        assert!(changed as f64 <= 2000.0 / 3.0 * 1.3, "seed {seed}: {changed}");
    }
    let pixel = RandomErasing::new(1.0, EraseMode::Pixel, 3);
    let (mut a, mut b) = (img.clone(), img.clone());
    pixel.erase(&mut a, &mut ChaCha8Rng::seed_from_u64(4));
    pixel.erase(&mut b, &mut ChaCha8Rng::seed_from_u64(4));
    assert_eq!(a, b);
    assert_ne!(a, img);
    assert!("bogus".parse::<EraseMode>().is_err());
}

#[test]
fn vertical_flip_mirrors_rows() {
    let img = image(2, 3, 4);
    let flipped = Transform::RandomVerticalFlip(1.0)
        .apply(img.clone(), &mut ChaCha8Rng::seed_from_u64(0))
        .unwrap();
    for c in 0..2 {
        for y in 0..3 {
            for x in 0..4 {
                assert_eq!(flipped.get(c, y, x), img.get(c, 2 - y, x));
            }
        }
    }
}
