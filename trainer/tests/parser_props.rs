//! Property tests of the dataset and config parsers: valid inputs built here, then truncated and
//! with bytes flipped, must give `Ok` or `Err`, never a panic, and never an allocation sized by a
//! corrupt header (the test would abort).

use std::io::Write;
use std::path::Path;

use proptest::prelude::*;
use serde_json::{json, Value};
use trainer::data::{parse_cifar10_batch, parse_idx_images, parse_idx_labels, Image};
use trainer::hub::PretrainedConfig;

/// Few cases (the suite runs on 2 cores; `PROPTEST_CASES` asks for more), no regression files.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(96),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Byte flips (`index` modulo the length, xor mask) and an optional truncation (a fraction of
/// the length).
#[derive(Debug, Clone)]
struct Damage {
    flips: Vec<(usize, u8)>,
    keep: Option<f64>,
}

fn damage() -> impl Strategy<Value = Damage> {
    (
        prop::collection::vec((any::<usize>(), 1u8..=255), 0..6),
        prop::option::of(0.0f64..1.0),
    )
        .prop_map(|(flips, keep)| Damage { flips, keep })
}

fn apply(bytes: &[u8], damage: &Damage) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if !out.is_empty() {
        let len = out.len();
        for &(i, mask) in &damage.flips {
            out[i % len] ^= mask;
        }
    }
    if let Some(keep) = damage.keep {
        out.truncate((out.len() as f64 * keep) as usize);
    }
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn idx_images(count: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    for word in [2051, count, rows, cols] {
        bytes.extend_from_slice(&word.to_be_bytes());
    }
    bytes.extend((0..count * rows * cols).map(|i| (i * 7 % 256) as u8));
    bytes
}

fn idx_labels(count: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    for word in [2049, count] {
        bytes.extend_from_slice(&word.to_be_bytes());
    }
    bytes.extend((0..count).map(|i| (i % 10) as u8));
    bytes
}

fn check_images(bytes: &[u8]) {
    if let Ok(images) = parse_idx_images(bytes, Path::new("images-idx3-ubyte")) {
        assert_eq!(images.pixels.len(), images.count * images.rows * images.cols);
    }
}

fn check_labels(bytes: &[u8]) {
    if let Ok(labels) = parse_idx_labels(bytes, Path::new("labels-idx1-ubyte")) {
        assert!(labels.len() <= bytes.len().max(1 << 20));
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn idx_images_plain_and_gzip_never_panic(damage in damage()) {
        let valid = idx_images(3, 4, 5);
        check_images(&apply(&valid, &damage));
        // Damage the compressed stream, and the content inside a valid stream.
        check_images(&apply(&gzip(&valid), &damage));
        check_images(&gzip(&apply(&valid, &damage)));
    }

    #[test]
    fn idx_labels_plain_and_gzip_never_panic(damage in damage()) {
        let valid = idx_labels(6);
        check_labels(&apply(&valid, &damage));
        check_labels(&apply(&gzip(&valid), &damage));
        check_labels(&gzip(&apply(&valid, &damage)));
    }

    #[test]
    fn idx_headers_claiming_huge_sizes_are_refused_before_allocating(
        count in any::<u32>(), rows in any::<u32>(), cols in any::<u32>(), extra in 0usize..64,
    ) {
        let mut bytes = idx_images(1, 2, 2);
        bytes[4..8].copy_from_slice(&count.to_be_bytes());
        bytes[8..12].copy_from_slice(&rows.to_be_bytes());
        bytes[12..16].copy_from_slice(&cols.to_be_bytes());
        bytes.extend(std::iter::repeat_n(0u8, extra));
        let consistent = u128::from(count) * u128::from(rows) * u128::from(cols) == (bytes.len() - 16) as u128
            && rows > 0 && cols > 0;
        prop_assert_eq!(parse_idx_images(&bytes, Path::new("x")).is_ok(), consistent);
        prop_assert_eq!(parse_idx_images(&gzip(&bytes), Path::new("x.gz")).is_ok(), consistent);

        let mut labels = idx_labels(2);
        labels[4..8].copy_from_slice(&count.to_be_bytes());
        let consistent = u64::from(count) == (labels.len() - 8) as u64;
        prop_assert_eq!(parse_idx_labels(&labels, Path::new("y")).is_ok(), consistent);
        prop_assert_eq!(parse_idx_labels(&gzip(&labels), Path::new("y.gz")).is_ok(), consistent);
    }

    #[test]
    fn cifar_batches_never_panic(damage in damage(), classes in 1usize..12) {
        let mut valid = Vec::new();
        for record in 0..2u8 {
            valid.push(record);
            valid.extend((0..3072u32).map(|i| (i % 251) as u8));
        }
        let bytes = apply(&valid, &damage);
        if let Ok((pixels, labels)) = parse_cifar10_batch(&bytes, Path::new("data_batch_1.bin"), classes) {
            prop_assert_eq!(pixels.len(), labels.len() * 3072);
            prop_assert!(labels.iter().all(|&l| usize::from(l) < classes));
        }
    }

    #[test]
    fn image_decoding_never_panics(damage in damage(), jpeg in any::<bool>()) {
        let valid = if jpeg { encoded(image::ImageFormat::Jpeg) } else { encoded(image::ImageFormat::Png) };
        let bytes = apply(valid, &damage);
        if let Ok(image) = Image::decode(&bytes, "class/img.png") {
            prop_assert_eq!(image.channels, 3);
            image.validate().unwrap();
        }
    }

    #[test]
    fn config_json_never_panics(damage in damage()) {
        let text = valid_config().to_string();
        let bytes = apply(text.as_bytes(), &damage);
        let _ = PretrainedConfig::from_json_str(&String::from_utf8_lossy(&bytes), "config.json");
    }

    #[test]
    fn config_fields_of_any_value_never_panic(
        field in 0usize..FIELDS.len(), value in json_value(), nested in any::<bool>(),
    ) {
        let mut config = valid_config();
        let (top, cfg) = FIELDS[field];
        if nested && !cfg.is_empty() {
            config["pretrained_cfg"][cfg] = value;
        } else {
            config[top] = value;
        }
        if let Ok(parsed) = PretrainedConfig::from_json_str(&config.to_string(), "config.json") {
            parsed.validate().unwrap();
        }
    }
}

/// `(top-level key, key in pretrained_cfg)` to overwrite.
const FIELDS: [(&str, &str); 8] = [
    ("architecture", "input_size"),
    ("num_classes", "num_classes"),
    ("label_names", "mean"),
    ("pretrained_cfg", "std"),
    ("default_cfg", "crop_pct"),
    ("num_features", "interpolation"),
    ("pretrained_cfg", ""),
    ("label_descriptions", "input_size"),
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-z]{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::vec(("[a-z_]{1,6}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn valid_config() -> Value {
    json!({
        "architecture": "resnet18",
        "num_classes": 3,
        "num_features": 512,
        "label_names": ["a", "b", "c"],
        "pretrained_cfg": {
            "input_size": [3, 224, 224],
            "interpolation": "bicubic",
            "crop_pct": 0.95,
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "num_classes": 3
        }
    })
}

/// A small RGB image encoded as `format`, made once.
fn encoded(format: image::ImageFormat) -> &'static [u8] {
    use std::sync::OnceLock;
    static PNG: OnceLock<Vec<u8>> = OnceLock::new();
    static JPEG: OnceLock<Vec<u8>> = OnceLock::new();
    let cell = if format == image::ImageFormat::Png {
        &PNG
    } else {
        &JPEG
    };
    cell.get_or_init(|| {
        let img = image::RgbImage::from_fn(9, 7, |x, y| image::Rgb([(x * 28) as u8, (y * 36) as u8, 128]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    })
}

#[test]
fn the_valid_inputs_parse() {
    assert_eq!(
        parse_idx_images(&idx_images(3, 4, 5), Path::new("x"))
            .unwrap()
            .count,
        3
    );
    assert_eq!(
        parse_idx_images(&gzip(&idx_images(3, 4, 5)), Path::new("x"))
            .unwrap()
            .count,
        3
    );
    assert_eq!(
        parse_idx_labels(&gzip(&idx_labels(6)), Path::new("y"))
            .unwrap()
            .len(),
        6
    );
    for format in [image::ImageFormat::Png, image::ImageFormat::Jpeg] {
        assert_eq!(Image::decode(encoded(format), "a").unwrap().dims(), (3, 7, 9));
    }
    PretrainedConfig::from_json_str(&valid_config().to_string(), "config.json").unwrap();
}

#[test]
fn a_gzip_bomb_is_not_decompressed_past_the_header_size() {
    // 64 MiB of zeros after a header that says 2 labels: refused as trailing data without
    // decompressing it all.
    let mut content = idx_labels(2);
    content.resize(64 << 20, 0);
    let bomb = gzip(&content);
    let err = parse_idx_labels(&bomb, Path::new("bomb.gz"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("trailing data") && err.contains("decompressed size is more"),
        "{err}"
    );
}
