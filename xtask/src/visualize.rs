//! `cargo xtask visualize`: figures of what a model sees (the `interpret` crate) for image
//! files: `filters.png`, `activations-<stage>-<image>.png`, `deconv-<layer>-<image>.png`,
//! `guided-<image>.png`, `occlusion-<image>.png`, `gradcam-<image>.png`.
//!
//! The run writes only the files it names; it refuses to replace existing ones unless
//! `--overwrite` is given (other files in `--out` are left alone).

use crate::args;
use crate::finetune::{label, load_for_inference, WeightsSource};
use anyhow::{bail, Context, Result};
use candle_core::{IndexOp, Tensor};
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};
use interpret::render::{colorize, overlay, signed_to_rgb, to_rgb, ColorBar, ColorMap, Figure, Panel};
use interpret::{CamMethod, OcclusionConfig};
use rand::SeedableRng;
use std::path::{Path, PathBuf};
use trainer::data::Image;

/// A figure kind.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Method {
    /// The first convolution's kernels (`filters.png`).
    Filters,
    /// The strongest channels of feature stages (`activations-<stage>-<image>.png`).
    Activations,
    /// Zeiler & Fergus's deconvnet (`deconv-<layer>-<image>.png`; LeNet, AlexNet, ZFNet, VGG).
    Deconv,
    /// Guided backpropagation (`guided-<image>.png`).
    Guided,
    /// Occlusion sensitivity (`occlusion-<image>.png`).
    Occlusion,
    /// Grad-CAM and Grad-CAM++ at the last stage (`gradcam-<image>.png`).
    Gradcam,
}

#[derive(clap::Args)]
pub struct VisualizeArgs {
    #[command(flatten)]
    source: WeightsSource,
    /// Where the PNGs go (created if missing).
    #[arg(long, default_value = "viz")]
    out: PathBuf,
    /// Image files (JPEG or PNG).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Which figures (default: all; the deconvnet only where the model is a plain stack).
    #[arg(long, value_delimiter = ',')]
    methods: Vec<Method>,
    /// Feature stages for the activations (default: every stage of `feature_info`).
    #[arg(long, value_delimiter = ',')]
    stages: Vec<String>,
    /// Layers the deconvnet projects from (default: every pooling of the chain).
    #[arg(long, value_delimiter = ',')]
    layers: Vec<String>,
    /// Channels per activation / deconvnet figure.
    #[arg(long, default_value_t = 8, value_parser = args::usize_in(1, 256))]
    top_k: usize,
    /// The class to explain (default: the predicted one).
    #[arg(long)]
    class: Option<usize>,
    /// Occlusion square side in input pixels (default: an eighth of the input, at least 2).
    #[arg(long, value_parser = args::usize_in(1, 4096))]
    patch: Option<usize>,
    /// Occlusion step in input pixels (default: half the square).
    #[arg(long, value_parser = args::usize_in(1, 4096))]
    stride: Option<usize>,
    /// Occluded copies per forward pass.
    #[arg(long, default_value_t = 32, value_parser = args::usize_in(1, 4096))]
    batch_size: usize,
    /// Replace files of the same names in --out.
    #[arg(long)]
    overwrite: bool,
}

/// The part of an image's figure names that says which image: the file stem, letters and
/// digits of any script kept (`猫.png` gives `猫`), anything else (spaces, punctuation, path
/// separators) as `_`.
fn image_tag(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tag: String = stem
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if tag.is_empty() {
        "image".to_string()
    } else {
        tag
    }
}

/// One tag per image, distinct: images whose tags would be equal (`a/same.png` and
/// `b/same.png`, or one file given twice) get their position on the command line appended
/// (`same-1`, `same-2`), so no figure overwrites another of the same run.
fn image_tags(images: &[PathBuf]) -> Vec<String> {
    let tags: Vec<String> = images.iter().map(|p| image_tag(p)).collect();
    tags.iter()
        .enumerate()
        .map(|(i, tag)| {
            if tags.iter().filter(|t| *t == tag).count() > 1 {
                format!("{tag}-{}", i + 1)
            } else {
                tag.clone()
            }
        })
        .collect()
}

pub fn run(args: VisualizeArgs) -> Result<()> {
    let all = [
        Method::Filters,
        Method::Activations,
        Method::Deconv,
        Method::Guided,
        Method::Occlusion,
        Method::Gradcam,
    ];
    let explicit = !args.methods.is_empty();
    let methods: Vec<Method> = if explicit {
        args.methods.clone()
    } else {
        all.to_vec()
    };
    // With the auxiliary heads when the file has them (torchvision's GoogLeNet): eval-mode
    // passes never run them, but the file's tensors all find their place.
    let cx = load_for_inference(&args.source, true, args.batch_size)?;
    let (transform, device) = (&cx.transform, &cx.device);
    let model = cx.model.net.as_ref();
    let wants = |m| methods.contains(&m);
    // Check the names before any work: stages, deconvnet layers.
    let info = model.feature_info();
    let stages: Vec<String> = if args.stages.is_empty() {
        info.iter().map(|f| f.module.clone()).collect()
    } else {
        args.stages.clone()
    };
    for s in &stages {
        if wants(Method::Activations) && !info.iter().any(|f| &f.module == s) {
            bail!(interpret::Error::UnknownLayer {
                model: model.name().to_string(),
                method: "activations (--stages)",
                layer: s.clone(),
                available: info
                    .iter()
                    .map(|f| f.module.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    let mut layers = Vec::new();
    if wants(Method::Deconv) {
        match interpret::deconv_layers(model) {
            Ok(available) => {
                layers = if args.layers.is_empty() {
                    let pools = model.plain_features().unwrap_or_default();
                    pools
                        .iter()
                        .filter(|l| l.kind().ends_with("Pool2d"))
                        .map(|l| l.name())
                        .collect()
                } else {
                    args.layers.clone()
                };
                if let Some(bad) = layers.iter().find(|l| !available.contains(l)) {
                    bail!(interpret::Error::UnknownLayer {
                        model: model.name().to_string(),
                        method: "the deconvnet (--layers)",
                        layer: bad.clone(),
                        available: available.join(", "),
                    });
                }
            }
            Err(e) if explicit || !args.layers.is_empty() => return Err(e.into()),
            Err(_) => eprintln!(
                "note: {} is not a plain stack: no deconvnet figures",
                model.name()
            ),
        }
    }
    if let Some(c) = args.class {
        if c >= cx.classes {
            bail!(interpret::Error::ClassOutOfRange {
                model: model.name().to_string(),
                class: c,
                classes: cx.classes,
            });
        }
    }
    // The files this run writes; existing ones are refused unless --overwrite.
    let mut planned = Vec::new();
    if wants(Method::Filters) {
        planned.push("filters.png".to_string());
    }
    let tags = image_tags(&args.images);
    for ((path, tag), plain) in args
        .images
        .iter()
        .zip(&tags)
        .zip(args.images.iter().map(|p| image_tag(p)))
    {
        if *tag != plain {
            eprintln!(
                "note: {} gets the figure names `*-{tag}.png` (another image has the same name)",
                path.display()
            );
        }
        if wants(Method::Activations) {
            planned.extend(stages.iter().map(|s| format!("activations-{s}-{tag}.png")));
        }
        planned.extend(layers.iter().map(|l| format!("deconv-{l}-{tag}.png")));
        for (m, name) in [
            (Method::Guided, "guided"),
            (Method::Occlusion, "occlusion"),
            (Method::Gradcam, "gradcam"),
        ] {
            if wants(m) {
                planned.push(format!("{name}-{tag}.png"));
            }
        }
    }
    if args.out.exists() && !args.out.is_dir() {
        bail!(
            "--out {} is not a folder: the figures need one",
            args.out.display()
        );
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    if !args.overwrite {
        if let Some(existing) = planned.iter().find(|f| args.out.join(f).exists()) {
            bail!(
                "{} already exists: pass --overwrite to replace the files this run writes, or choose another --out",
                args.out.join(existing).display()
            );
        }
    }
    // Decode every image first: an unreadable one fails before any figure.
    let mut inputs = Vec::new();
    for (path, tag) in args.images.iter().zip(&tags) {
        let image = Image::open(path)
            .and_then(|i| i.to_channels(cx.config.input_size.0))
            .with_context(|| format!("reading the image {}", path.display()))?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let image = transform.apply(image, &mut rng)?;
        let xs = Tensor::from_vec(image.data, (1, image.channels, image.height, image.width), device)?;
        inputs.push((path.clone(), tag.clone(), xs));
    }
    let name = model.name().to_string();
    let mut written = Vec::new();
    let mut save = |figure: Figure, file: String| -> Result<()> {
        let path = args.out.join(&file);
        figure.save(&path)?;
        written.push(path);
        Ok(())
    };
    if wants(Method::Filters) {
        match &cx.stem()? {
            Some(w) => save(filters_figure(&name, w)?, "filters.png".into())?,
            None => eprintln!("note: {name} has no input convolution in its weights: no filters.png"),
        }
    }
    for (path, tag, xs) in &inputs {
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let pred = interpret::predict(model, xs, args.class)?;
        let class_text = |class: usize, p: f32| {
            format!(
                "class {class} \"{}\", p = {p:.3}",
                label(&cx.config, cx.classes, class)
            )
        };
        let base = to_rgb(&xs.i(0)?)?;
        if wants(Method::Activations) {
            for (info, maps) in interpret::stage_activations(model, xs, &stages)? {
                let top = interpret::top_channels(&maps, args.top_k)?;
                let hi = top.first().map_or(1.0, |c| c.max).max(1e-12);
                let panels = top
                    .iter()
                    .map(|c| {
                        Ok(Panel {
                            image: colorize(&c.map, ColorMap::Viridis, 0.0, hi)?,
                            caption: format!("channel {} (max {:.2})", c.channel, c.max),
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let figure = Figure {
                    title: format!(
                        "{name} - activations of {} (top {} of {} channels)",
                        info.module,
                        top.len(),
                        info.channels
                    ),
                    subtitle: format!("{file}: {}", class_text(pred.class, pred.probability)),
                    panels,
                    columns: 4,
                    cell: 128,
                    colorbar: Some(ColorBar {
                        map: ColorMap::Viridis,
                        min: 0.0,
                        max: hi,
                        label: "activation".into(),
                    }),
                };
                save(figure, format!("activations-{}-{tag}.png", info.module))?;
            }
        }
        for layer in &layers {
            let projections = interpret::deconvnet(model, xs, layer, args.top_k)?;
            let mut panels = vec![Panel {
                image: base.clone(),
                caption: "input".into(),
            }];
            for p in &projections {
                panels.push(Panel {
                    image: signed_to_rgb(&p.pixels)?,
                    caption: format!(
                        "channel {} ({:.2} at {},{})",
                        p.channel, p.activation, p.position.0, p.position.1
                    ),
                });
            }
            let figure = Figure {
                title: format!("{name} - deconvnet from {layer} (Zeiler & Fergus 2013)"),
                subtitle: format!(
                    "{file}: {}; the strongest channels' maxima projected to pixels (grey = 0)",
                    class_text(pred.class, pred.probability)
                ),
                panels,
                columns: 5,
                cell: 128,
                colorbar: None,
            };
            save(figure, format!("deconv-{layer}-{tag}.png"))?;
        }
        if wants(Method::Guided) {
            let (grad, p) = interpret::guided_backprop(model, xs, args.class)?;
            let figure = Figure {
                title: format!("{name} - guided backpropagation"),
                subtitle: format!("{file}: {} (grey = 0)", class_text(p.class, p.probability)),
                panels: vec![
                    Panel {
                        image: base.clone(),
                        caption: "input".into(),
                    },
                    Panel {
                        image: signed_to_rgb(&grad)?,
                        caption: "gradient of the class score".into(),
                    },
                ],
                columns: 2,
                cell: 224,
                colorbar: None,
            };
            save(figure, format!("guided-{tag}.png"))?;
        }
        if wants(Method::Occlusion) {
            let (_, _, h, w) = xs.dims4()?;
            let patch = args.patch.unwrap_or((h.min(w) / 8).max(2));
            let stride = args.stride.unwrap_or((patch / 2).max(1));
            let config = OcclusionConfig {
                patch,
                stride,
                fill: 0.0,
                batch: args.batch_size,
            };
            let bar = ProgressBar::new(0).with_message(format!("occlusion {file}"));
            bar.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} positions ({elapsed})")
                    .map_err(|e| anyhow::anyhow!("{e}"))?
                    .progress_chars("=> "),
            );
            let map = interpret::occlusion(model, xs, args.class, config, &mut |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })?;
            bar.finish_and_clear();
            let heat = map.to_tensor()?;
            let (r, c) = map.most_sensitive();
            let figure = Figure {
                title: format!("{name} - occlusion sensitivity (Zeiler & Fergus 2013, fig. 7)"),
                subtitle: format!(
                    "{file}: {}; grey {patch}x{patch} square every {stride} px; lowest with it at ({r}, {c})",
                    class_text(map.prediction.class, map.prediction.probability)
                ),
                panels: vec![
                    Panel {
                        image: base.clone(),
                        caption: "input".into(),
                    },
                    Panel {
                        image: colorize(&heat, ColorMap::Jet, 0.0, 1.0)?,
                        caption: "p(class) with the square there".into(),
                    },
                ],
                columns: 2,
                cell: 224,
                colorbar: Some(ColorBar {
                    map: ColorMap::Jet,
                    min: 0.0,
                    max: 1.0,
                    label: "probability".into(),
                }),
            };
            save(figure, format!("occlusion-{tag}.png"))?;
        }
        if wants(Method::Gradcam) {
            let stage = info
                .last()
                .map_or("the last stage".to_string(), |f| f.module.clone());
            let mut panels = vec![Panel {
                image: base.clone(),
                caption: "input".into(),
            }];
            let mut prediction = pred;
            for method in [CamMethod::GradCam, CamMethod::GradCamPlusPlus] {
                let cam = interpret::grad_cam(model, xs, args.class, method)?;
                if method == CamMethod::GradCam && cam.map.elem_count() == 1 {
                    eprintln!(
                        "note: {name}'s last stage ({stage}) is a 1x1 map at this input size, so its \
                         Grad-CAM is one value spread over the image; a larger --img-size gives a map"
                    );
                }
                prediction = cam.prediction;
                panels.push(Panel {
                    image: overlay(&base, &cam.upsampled, ColorMap::Jet, 0.5)?,
                    caption: method.label().to_string(),
                });
            }
            let figure = Figure {
                title: format!("{name} - Grad-CAM and Grad-CAM++ at {stage} (last stage)"),
                subtitle: format!("{file}: {}", class_text(prediction.class, prediction.probability)),
                panels,
                columns: 3,
                cell: 224,
                colorbar: Some(ColorBar {
                    map: ColorMap::Jet,
                    min: 0.0,
                    max: 1.0,
                    label: "relevance".into(),
                }),
            };
            save(figure, format!("gradcam-{tag}.png"))?;
        }
    }
    for path in &written {
        println!("{}", path.display());
    }
    Ok(())
}

fn filters_figure(name: &str, weight: &Tensor) -> Result<Figure> {
    let images = interpret::filter_images(weight)?;
    let (o, i, kh, kw) = weight.dims4()?;
    let panels = (0..o)
        .map(|k| {
            Ok(Panel {
                // Each kernel spans [0, 1], so to_rgb's own scaling keeps it.
                image: to_rgb(&images.i(k)?)?,
                caption: format!("{k}"),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Figure {
        title: format!("{name} - first-layer filters ({o} @ {i}x{kh}x{kw})"),
        subtitle: "each kernel scaled by its own minimum (black) and maximum (white)".to_string(),
        panels,
        columns: o.clamp(1, 12),
        cell: 48,
        colorbar: Some(ColorBar {
            map: ColorMap::Gray,
            min: 0.0,
            max: 1.0,
            label: "scaled weight".into(),
        }),
    })
}
