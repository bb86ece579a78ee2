"""Classify images with an ONNX file written by `cargo xtask export`, in ONNX Runtime alone.

    pip install onnxruntime pillow numpy
    python scripts/onnx_predict.py lenet5.onnx docs/samples/digit.png

The preprocessing comes from the file's metadata (`input_size`, `mean`, `std`, `crop_pct`,
`interpolation`, `class_names`, written by the exporter): resize the shorter side to
`size / crop_pct`, centre crop to `size`, scale to [0, 1], normalise. Prints the top-5 classes
of each image, as `cargo xtask predict` does.
"""
import json
import math
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image


def preprocess(path, meta):
    channels, height, width = json.loads(meta["input_size"])
    crop_pct = float(meta.get("crop_pct", "1.0"))
    mean = np.array(json.loads(meta["mean"]), dtype=np.float32)
    std = np.array(json.loads(meta["std"]), dtype=np.float32)
    resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}[
        meta.get("interpolation", "bilinear")
    ]
    image = Image.open(path).convert("L" if channels == 1 else "RGB")
    scale = math.floor(min(height, width) / crop_pct)
    w, h = image.size
    if w <= h:
        size = (scale, max(1, round(h * scale / w)))
    else:
        size = (max(1, round(w * scale / h)), scale)
    image = image.resize(size, resample)
    left, top = (image.size[0] - width) // 2, (image.size[1] - height) // 2
    image = image.crop((left, top, left + width, top + height))
    x = np.asarray(image, dtype=np.float32) / 255.0
    x = x.reshape(height, width, channels).transpose(2, 0, 1)
    x = (x - mean[:, None, None]) / std[:, None, None]
    return x[None].astype(np.float32)


def main():
    model, images = sys.argv[1], sys.argv[2:]
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    names = json.loads(meta["class_names"])
    name = session.get_inputs()[0].name
    print(f"{meta['model']}: input {session.get_inputs()[0].shape}, opset-17 file, ONNX Runtime {ort.__version__}")
    for path in images:
        logits = session.run(None, {name: preprocess(path, meta)})[0][0]
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        print(f"{path}:")
        for i in np.argsort(-probs)[:5]:
            print(f"  {100 * probs[i]:6.2f}%  {names[i]}")


if __name__ == "__main__":
    sys.exit(main())
