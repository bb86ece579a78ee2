//! Metrics, the run history files, the plots and the ImageNet class names.

use std::path::Path;

use candle_core::{Device, Tensor};
use trainer::imagenet::{imagenet_class_names, imagenet_classes, IMAGENET_NUM_CLASSES};
use trainer::metrics::{
    softmax, top_k, write_metrics_csv, write_metrics_json, ConfusionMatrix, EpochMetrics, EvalMetrics,
    MetricsAccumulator, RunMetrics, METRICS_CSV_HEADER,
};
use trainer::plot::{plot_confusion, plot_curves, CONFUSION_SIZE, CURVES_SIZE};
use trainer::Error;

fn logits(rows: &[&[f32]]) -> Tensor {
    let c = rows[0].len();
    let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_vec(flat, (rows.len(), c), &Device::Cpu).unwrap()
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A hand-made batch of 3 classes: predictions 0, 1, 1, 2, 0, 0 for targets 0, 1, 0, 2, 2, 0.
fn three_class_batch() -> (Tensor, Vec<u32>) {
    let x = logits(&[
        &[3.0, 1.0, 0.0],
        &[0.0, 2.0, 1.0],
        &[0.5, 0.9, 0.1],
        &[0.0, 0.0, 5.0],
        &[1.0, 1.0, 1.0], // a tie: the lowest index wins
        &[2.0, -1.0, 1.5],
    ]);
    (x, vec![0, 1, 0, 2, 2, 0])
}

#[test]
fn confusion_counts_a_hand_made_batch() {
    let (x, t) = three_class_batch();
    let mut cm = ConfusionMatrix::new(3);
    cm.add_batch(&x, &Tensor::new(t.as_slice(), &Device::Cpu).unwrap())
        .unwrap();
    // Same batch with i64 targets counts the same again.
    let t64: Vec<i64> = t.iter().map(|&v| v as i64).collect();
    cm.add_batch(&x, &Tensor::new(t64.as_slice(), &Device::Cpu).unwrap())
        .unwrap();
    assert_eq!(cm.num_classes(), 3);
    assert_eq!(cm.counts(), &[4, 2, 0, 0, 2, 0, 2, 0, 2]);
    assert_eq!(cm.row(0), &[4, 2, 0]);
    assert!(cm.row(3).is_empty());
    assert_eq!(cm.get(2, 0), 2);
    assert_eq!(cm.get(5, 0), 0);
    assert_eq!(cm.total(), 12);
    assert_eq!(cm.correct(), 8);
    assert!((cm.accuracy() - 8.0 / 12.0).abs() < 1e-12);
    assert_eq!(cm.per_class_recall(), vec![Some(4.0 / 6.0), Some(1.0), Some(0.5)]);
    assert_eq!(
        cm.per_class_precision(),
        vec![Some(4.0 / 6.0), Some(0.5), Some(1.0)]
    );
    assert_eq!(cm.most_confused(10), vec![(0, 1, 2), (2, 0, 2)]);
    assert_eq!(cm.most_confused(1), vec![(0, 1, 2)]);

    let mut single = ConfusionMatrix::new(4);
    single.add(3, 1).unwrap();
    assert_eq!(single.get(3, 1), 1);
    assert_eq!(single.per_class_recall(), vec![None, None, None, Some(0.0)]);
    assert_eq!(ConfusionMatrix::new(2).accuracy(), 0.0);
}

#[test]
fn out_of_range_labels_and_bad_shapes_are_errors() {
    let mut cm = ConfusionMatrix::new(3);
    assert!(matches!(cm.add(3, 0), Err(Error::Config(_))));
    assert!(matches!(cm.add(0, 3), Err(Error::Config(_))));
    let (x, _) = three_class_batch();
    let dev = Device::Cpu;
    let bad_targets = [
        Tensor::new(&[0u32, 1, 3, 0, 0, 0], &dev).unwrap(), // out of range
        Tensor::new(&[0i64, -1, 0, 0, 0, 0], &dev).unwrap(), // negative
        Tensor::new(&[0u32, 1, 2], &dev).unwrap(),          // wrong length
        Tensor::new(&[0f32, 1., 2., 0., 0., 0.], &dev).unwrap(), // not integers
    ];
    for t in &bad_targets {
        let err = cm.add_batch(&x, t).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
        let mut acc = MetricsAccumulator::new(3);
        assert!(matches!(acc.update(&x, t, 1.0), Err(Error::Config(_))));
        assert_eq!(acc.count(), 0);
    }
    let err = cm
        .add_batch(&x, &Tensor::new(&[0u32, 1, 3, 0, 0, 0], &dev).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("target 3 at index 2"), "{err}");
    assert_eq!(cm.total(), 0, "nothing is counted from a bad batch");
    // Logits of another number of classes.
    let mut four = ConfusionMatrix::new(4);
    let t = Tensor::new(&[0u32; 6], &dev).unwrap();
    assert!(matches!(four.add_batch(&x, &t), Err(Error::Config(_))));
    assert!(matches!(
        MetricsAccumulator::new(4).update(&x, &t, 0.0),
        Err(Error::Config(_))
    ));
}

#[test]
fn render_prints_an_aligned_table() {
    let (x, t) = three_class_batch();
    let mut cm = ConfusionMatrix::new(4);
    let x4 = Tensor::cat(&[&x, &Tensor::full(-9f32, (6, 1), &Device::Cpu).unwrap()], 1).unwrap();
    cm.add_batch(&x4, &Tensor::new(t.as_slice(), &Device::Cpu).unwrap())
        .unwrap();
    let class_names = names(&["cat", "dog", "a very long class name indeed", "unused"]);
    let text = cm.render(&class_names);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].contains("4 classes") && lines[0].contains("6 images") && lines[0].contains("66.67%"));
    let table = &lines[2..];
    assert_eq!(table.len(), 5, "{text}");
    let width = table[0].chars().count();
    assert!(table.iter().all(|l| l.chars().count() == width), "{text}");
    assert!(table[0].starts_with("true") && table[0].ends_with("recall"));
    assert!(
        table[1].starts_with("0 cat") && table[1].ends_with("66.7%"),
        "{text}"
    );
    assert!(table[3].starts_with("2 a very long class…"), "{text}");
    assert!(
        table[4].trim_end().ends_with('-'),
        "a class without images has no recall: {text}"
    );
    // Without names, rows are labelled by index.
    let plain = cm.to_string();
    assert!(plain.lines().nth(3).unwrap().starts_with("0 "), "{plain}");
}

#[test]
fn render_many_classes_prints_the_most_confused_pairs() {
    let mut cm = ConfusionMatrix::new(30);
    for i in 0..30 {
        cm.add(i, i).unwrap();
    }
    for _ in 0..7 {
        cm.add(12, 29).unwrap();
    }
    cm.add(3, 4).unwrap();
    let class_names: Vec<String> = (0..30).map(|i| format!("class{i}")).collect();
    let text = cm.render(&class_names);
    assert!(text.contains("too many classes"), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(lines[3].contains("7") && lines[3].contains("12 class12") && lines[3].contains("-> 29 class29"));
    assert!(lines[4].contains("3 class3") && lines[4].contains("-> 4 class4"));
}

#[test]
fn accumulator_top1_top5_and_loss() {
    let dev = Device::Cpu;
    // Seven classes: the target's rank is 1, 2, 5, 6 and 7 (ties: lower index first).
    let x = logits(&[
        &[9.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0], // target 0: rank 1
        &[1.0, 9.0, 8.0, 0.0, 0.0, 0.0, 0.0], // target 2: rank 2
        &[5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0], // target 4: rank 5 (ties)
        &[5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0], // target 5: rank 6 (ties)
        &[7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0], // target 6: rank 7
    ]);
    let t = Tensor::new(&[0u32, 2, 4, 5, 6], &dev).unwrap();
    let mut acc = MetricsAccumulator::new(7);
    acc.update(&x, &t, 10.0).unwrap();
    acc.update(&x.narrow(0, 0, 2).unwrap(), &t.narrow(0, 0, 2).unwrap(), 2.0)
        .unwrap();
    assert_eq!(acc.count(), 7);
    let m = acc.finish();
    assert_eq!(m.count, 7);
    assert!((m.loss - 12.0 / 7.0).abs() < 1e-12);
    assert!((m.top1 - 2.0 / 7.0).abs() < 1e-12);
    assert!((m.top5 - 5.0 / 7.0).abs() < 1e-12);
    assert_eq!(m.confusion.total(), 7);
    assert!((m.confusion.accuracy() - m.top1).abs() < 1e-12);

    // Fewer than five classes: top-k is over all of them.
    let (x, t) = three_class_batch();
    let mut acc = MetricsAccumulator::new(3);
    acc.update(&x, &Tensor::new(t.as_slice(), &dev).unwrap(), 3.0)
        .unwrap();
    let m = acc.finish();
    assert_eq!(m.top5, 1.0);
    assert!((m.top1 - 4.0 / 6.0).abs() < 1e-12);
    assert!((m.loss - 0.5).abs() < 1e-12);

    let empty = MetricsAccumulator::new(3).finish();
    assert_eq!(
        (empty.count, empty.loss, empty.top1, empty.top5),
        (0, 0.0, 0.0, 0.0)
    );
}

#[test]
fn top_k_and_softmax() {
    let row = [0.1f32, 3.0, -2.0, 3.0, f32::NAN, 2.5];
    assert_eq!(top_k(&row, 3), vec![(1, 3.0), (3, 3.0), (5, 2.5)]);
    let all = top_k(&row, 10);
    assert_eq!(all.len(), 6);
    assert_eq!(all[4], (2, -2.0));
    assert_eq!(all[5].0, 4, "NaN ranks last");
    assert!(top_k(&row, 0).is_empty());
    assert!(top_k(&[], 5).is_empty());
    let big: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 1000) as f32).collect();
    let best = top_k(&big, 5);
    assert_eq!(
        best.iter().map(|p| p.1).collect::<Vec<_>>(),
        vec![999.0, 998.0, 997.0, 996.0, 995.0]
    );

    let p = softmax(&[1.0, 2.0, 3.0]);
    let e: Vec<f64> = [1.0f64, 2.0, 3.0].iter().map(|x| x.exp()).collect();
    let s: f64 = e.iter().sum();
    for (a, b) in p.iter().zip(&e) {
        assert!((f64::from(*a) - b / s).abs() < 1e-6);
    }
    let p = softmax(&[1000.0, 1000.0, -1000.0]);
    assert_eq!(p, vec![0.5, 0.5, 0.0]);
    assert_eq!(softmax(&[f32::NEG_INFINITY; 4]), vec![0.25; 4]);
    assert_eq!(softmax(&[f32::INFINITY, 0.0]), vec![1.0, 0.0]);
    assert!(softmax(&[1.0, f32::NAN]).iter().all(|v| v.is_nan()));
    assert!(softmax(&[]).is_empty());
    let probs = softmax(&big);
    assert!((probs.iter().map(|&v| f64::from(v)).sum::<f64>() - 1.0).abs() < 1e-5);
    assert_eq!(top_k(&probs, 1)[0].0, best[0].0);
}

fn epochs() -> Vec<EpochMetrics> {
    (1..=4)
        .map(|e| {
            let f = e as f64;
            EpochMetrics {
                epoch: e,
                train_loss: 2.0 / f,
                train_top1: 0.2 * f,
                val_loss: if e == 2 { f64::NAN } else { 2.2 / f },
                val_top1: 0.18 * f,
                val_top5: (0.3 * f).min(1.0),
                lr: 1e-3 / f,
                seconds: 1.5,
                images_per_sec: 1234.5,
                train_aux_loss: if e == 3 { f64::NAN } else { 0.5 / f },
                val_ema_loss: 2.1 / f,
                val_ema_top1: if e == 2 { f64::NAN } else { 0.19 * f },
            }
        })
        .collect()
}

fn assert_no_temporary_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "temporary file left behind: {name}");
    }
}

#[test]
fn metrics_json_parses_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/metrics.json");
    let (x, t) = three_class_batch();
    let mut acc = MetricsAccumulator::new(3);
    acc.update(&x, &Tensor::new(t.as_slice(), &Device::Cpu).unwrap(), 3.0)
        .unwrap();
    let run = RunMetrics {
        epochs: epochs(),
        final_eval: Some(acc.finish()),
        class_names: names(&["a", "b", "c"]),
        extra: serde_json::json!({"model": "resnet18", "lr": 0.001}),
    };
    write_metrics_json(&path, &run).unwrap();
    // Overwriting works too (atomic rename over the old file).
    write_metrics_json(&path, &run).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["epochs"].as_array().unwrap().len(), 4);
    assert!(value["epochs"][1]["val_loss"].is_null(), "NaN is written as null");
    assert_eq!(value["epochs"][2]["epoch"], 3);
    assert_eq!(value["final_eval"]["count"], 6);
    assert_eq!(
        value["final_eval"]["confusion"]["counts"],
        serde_json::json!([[2, 1, 0], [0, 1, 0], [1, 0, 1]])
    );
    assert_eq!(value["extra"]["model"], "resnet18");
    assert_eq!(value["class_names"][2], "c");

    let back: RunMetrics = serde_json::from_str(&text).unwrap();
    assert!(back.epochs[1].val_loss.is_nan());
    assert_eq!(back.epochs[0], run.epochs[0]);
    assert_eq!(back.final_eval, run.final_eval);
    assert_eq!(back.class_names, run.class_names);
    assert_eq!(back.extra, run.extra);
    assert_no_temporary_files(path.parent().unwrap());

    // An inconsistent matrix does not parse back.
    let bad = r#"{"loss":0,"top1":0,"top5":0,"count":0,"confusion":{"num_classes":2,"counts":[[1,2]]}}"#;
    assert!(serde_json::from_str::<EvalMetrics>(bad).is_err());
}

#[test]
fn metrics_csv_parses_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.csv");
    let epochs = epochs();
    write_metrics_csv(&path, &epochs).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], METRICS_CSV_HEADER);
    assert_eq!(lines.len(), 5);
    for (line, e) in lines[1..].iter().zip(&epochs) {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 12, "{line}");
        let num = |i: usize| -> f64 {
            if fields[i].is_empty() {
                f64::NAN
            } else {
                fields[i].parse().unwrap()
            }
        };
        assert_eq!(fields[0].parse::<usize>().unwrap(), e.epoch);
        let expected = [
            e.train_loss,
            e.train_top1,
            e.val_loss,
            e.val_top1,
            e.val_top5,
            e.lr,
            e.seconds,
            e.images_per_sec,
            e.train_aux_loss,
            e.val_ema_loss,
            e.val_ema_top1,
        ];
        for (i, want) in expected.iter().enumerate() {
            let got = num(i + 1);
            assert!(
                got == *want || (got.is_nan() && want.is_nan()),
                "{line}: field {}",
                i + 1
            );
        }
    }
    assert_eq!(lines[2].split(',').nth(3), Some(""), "NaN is an empty field");
    assert_no_temporary_files(dir.path());
}

#[test]
fn write_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let path = blocker.join("metrics.csv");
    let err = write_metrics_csv(&path, &epochs()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(err.to_string().contains("not-a-dir"), "{err}");
    let err = write_metrics_json(&blocker.join("m.json"), &RunMetrics::default()).unwrap_err();
    assert!(err.to_string().contains("not-a-dir"), "{err}");
    let err = plot_curves(&blocker.join("curves.png"), &epochs(), "run").unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}

/// Checks the PNG signature and the IHDR size, decodes the image and checks it is not blank;
/// copies it to `$TRAINER_KEEP_PLOTS` when set (to look at it).
fn check_png(path: &Path, size: (u32, u32)) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&bytes[12..16], b"IHDR");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((width, height), size);
    let image = image::load_from_memory(&bytes).unwrap().to_rgb8();
    assert_eq!(image.dimensions(), size);
    let mut colours: Vec<[u8; 3]> = image.pixels().map(|p| p.0).collect();
    colours.sort_unstable();
    colours.dedup();
    assert!(colours.len() > 20, "only {} colours: blank plot?", colours.len());
    let non_white = image.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    assert!(non_white > 2000, "only {non_white} non-white pixels");
    if let Some(dir) = std::env::var_os("TRAINER_KEEP_PLOTS") {
        let _ = std::fs::copy(path, Path::new(&dir).join(path.file_name().unwrap()));
    }
}

#[test]
fn curves_png() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("curves.png");
    plot_curves(&path, &epochs(), "resnet18 on imagenette").unwrap();
    check_png(&path, CURVES_SIZE);
    // A single epoch, and a run whose validation was never measured.
    let mut one = epochs()[..1].to_vec();
    one[0].val_loss = f64::NAN;
    one[0].val_top5 = f64::NAN;
    let single = dir.path().join("single.png");
    plot_curves(&single, &one, "one epoch").unwrap();
    check_png(&single, CURVES_SIZE);
    // The moving average's curves are drawn (in their own colour) only when it was evaluated.
    let ema_pixels = |path: &Path| {
        let image = image::open(path).unwrap().to_rgb8();
        image.pixels().filter(|p| p.0 == [214, 39, 40]).count()
    };
    assert!(ema_pixels(&path) > 100, "no EMA curve");
    let mut no_ema = epochs();
    for e in &mut no_ema {
        e.val_ema_loss = f64::NAN;
        e.val_ema_top1 = f64::NAN;
    }
    let plain = dir.path().join("plain.png");
    plot_curves(&plain, &no_ema, "no EMA").unwrap();
    check_png(&plain, CURVES_SIZE);
    assert_eq!(ema_pixels(&plain), 0, "an EMA curve without EMA figures");
    assert_no_temporary_files(dir.path());
    let err = plot_curves(&dir.path().join("empty.png"), &[], "nothing").unwrap_err();
    assert!(
        matches!(err, Error::Plot { .. }) && err.to_string().contains("empty.png"),
        "{err}"
    );
}

#[test]
fn confusion_png() {
    let dir = tempfile::tempdir().unwrap();
    let (x, t) = three_class_batch();
    let mut cm = ConfusionMatrix::new(3);
    cm.add_batch(&x, &Tensor::new(t.as_slice(), &Device::Cpu).unwrap())
        .unwrap();
    let path = dir.path().join("confusion.png");
    plot_confusion(&path, &cm, &names(&["cat", "dog", "a rather long class name"])).unwrap();
    check_png(&path, CONFUSION_SIZE);

    // Many classes, names missing for some.
    let mut big = ConfusionMatrix::new(100);
    for i in 0..100 {
        for j in 0..100 {
            for _ in 0..((i * 31 + j * 17) % 5 + if i == j { 300 } else { 0 }) {
                big.add(i, j).unwrap();
            }
        }
    }
    let big_path = dir.path().join("confusion-100.png");
    let imagenet: Vec<String> = imagenet_class_names().into_iter().take(60).collect();
    plot_confusion(&big_path, &big, &imagenet).unwrap();
    check_png(&big_path, CONFUSION_SIZE);
    assert_no_temporary_files(dir.path());

    let err = plot_confusion(&dir.path().join("none.png"), &ConfusionMatrix::new(0), &[]).unwrap_err();
    assert!(
        matches!(err, Error::Plot { .. }) && err.to_string().contains("none.png"),
        "{err}"
    );
}

#[test]
fn imagenet_class_names_are_bundled() {
    let classes = imagenet_classes();
    assert_eq!(classes.len(), IMAGENET_NUM_CLASSES);
    assert_eq!(classes[0], "tench");
    assert_eq!(classes[1], "goldfish");
    assert_eq!(classes[207], "golden retriever");
    assert_eq!(classes[999], "toilet tissue");
    assert!(classes.iter().all(|c| !c.is_empty() && c.trim() == *c));
    let mut unique = classes.to_vec();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 1000);
    assert_eq!(imagenet_class_names()[207], "golden retriever");
}

/// The per-epoch records are read back on resume to rebuild metrics.csv / metrics.json: every
/// float must come back with the same bits (serde_json's default float parser is off by one
/// unit in the last place for some values; the workspace turns on its exact one).
#[test]
fn epoch_records_read_back_bit_for_bit() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut differ = Vec::new();
    for epoch in 1..=20_000 {
        let mut v = || -> f64 { rng.random::<f64>() * 10f64.powi(rng.random_range(-6..4)) };
        let row = EpochMetrics {
            epoch,
            train_loss: v(),
            train_top1: v(),
            val_loss: v(),
            val_top1: v(),
            val_top5: v(),
            lr: v(),
            seconds: v(),
            images_per_sec: v(),
            train_aux_loss: v(),
            val_ema_loss: v(),
            val_ema_top1: v(),
        };
        let back: EpochMetrics = serde_json::from_str(&serde_json::to_string(&row).unwrap()).unwrap();
        if back != row {
            differ.push((row, back));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of 20000 differ, e.g. {:?}",
        differ.len(),
        differ.first()
    );
}
