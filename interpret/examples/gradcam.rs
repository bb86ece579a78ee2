//! Grad-CAM of a model on an image, saved as a heat map over the image:
//!
//! ```sh
//! cargo run --release -p convnets-interpret --example gradcam -- docs/samples/cat.jpg [model] [weights]
//! ```
//!
//! `model` is a catalogue name (default `resnet18`, fresh seeded weights unless `weights`, a
//! file, a directory or a Hugging Face id, is given); the figure goes to `gradcam.png`.

use candle_core::{Device, Tensor};
use convnets::{create_model, CreateOptions};
use interpret::render::{overlay, to_rgb, ColorMap};
use interpret::{grad_cam, CamMethod};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: gradcam <image> [model] [weights]")?;
    let name = args.next().unwrap_or("resnet18".into());
    let weights = args.next();
    let model = create_model(
        &name,
        &CreateOptions {
            weights,
            ..Default::default()
        },
    )?;
    // The image at the model's evaluation size, normalised as its weights expect.
    let config = model.data_config(true);
    let (_, h, w) = config.input_size;
    let rgb = image::open(&path)?.to_rgb8();
    let rgb = image::imageops::resize(&rgb, w as u32, h as u32, image::imageops::FilterType::Triangle);
    let pixels: Vec<f32> = (0..3)
        .flat_map(|c| {
            rgb.pixels()
                .map(move |p| p.0[c] as f32 / 255.0)
                .collect::<Vec<_>>()
        })
        .collect();
    let x = Tensor::from_vec(pixels, (1, 3, h, w), &Device::Cpu)?;
    let mean = Tensor::from_slice(&config.mean, (1, 3, 1, 1), &Device::Cpu)?;
    let std = Tensor::from_slice(&config.std, (1, 3, 1, 1), &Device::Cpu)?;
    let x = x.broadcast_sub(&mean)?.broadcast_div(&std)?;
    let cam = grad_cam(&*model, &x, None, CamMethod::GradCam)?;
    let base = to_rgb(&x.squeeze(0)?)?;
    overlay(&base, &cam.upsampled, ColorMap::Jet, 0.5)?.save("gradcam.png")?;
    println!(
        "class {} (p = {:.3}): gradcam.png",
        cam.prediction.class, cam.prediction.probability
    );
    Ok(())
}
