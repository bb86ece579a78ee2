"""Catalogue fixtures: state-dict key lists, timm hub configs and eval top-5 of real timm and
torchvision models, for the Rust model catalogue tests. Writes JSON only (no tensors) into
`testkit/fixtures/catalogue/`.

Run by hand (not in CI):

    pip install torch torchvision timm safetensors numpy pillow
    python scripts/gen_catalogue_fixtures.py

Every model is built by the library itself (`timm.create_model(name, pretrained=False)`,
`torchvision.models.<name>(weights=None)`); nothing is renamed by hand. The timm `config` is the
config.json written by timm's own `timm.models._hub.save_config_for_hf` (what `save_for_hf` /
`push_to_hf_hub` upload next to the weights), parsed back and embedded.

Files:

* `timm-<name>.json`: "model", "library", "timm_version", "torch_version", "hub_id"
  (`timm/<name>.<default tag>`), "keys" ([key, shape, dtype] in state-dict order, buffers and
  `num_batches_tracked` included, dtype as torch prints it without `torch.`), "config" and
  "expected".
* `torchvision-<name>.json`: "model", "library", "torchvision_version", "torch_version",
  "constructor", "keys" as above (for googlenet / inception_v3: the default `aux_logits=True`
  model, and "keys_no_aux" for `aux_logits=False`), and "expected" (plus "expected_no_aux" for
  googlenet / inception_v3: the weight indices differ because the aux keys take places in the
  sorted list).

WEIGHTS RULE (also written into every JSON as "weights_rule"):

    pattern(shape, index, scale, offset): float32 tensor of prod(shape) elements; with
    GOLDEN = 0x9E3779B97F4A7C15 and all integer arithmetic wrapping mod 2^64,
    base = index * GOLDEN + GOLDEN; for element i (row-major): z = i + base;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
    z ^= z >> 31; u = (z >> 11) / 2^53 * 2 - 1 (float64); value = f32(offset + scale * u),
    computed in float64 and rounded to float32 once
    (= Rust testkit::densenet_efficientnet::pattern).

    Names = sorted(state_dict keys that do not end in `num_batches_tracked`) (Python `sorted`,
    i.e. by code point: upper case before lower case); index = position in that list.
    `num_batches_tracked` buffers are left as the model has them (0) and take no index.
    For the tensor of name `k` and shape `s`:
      k ends in `running_var`                                  -> pattern(s, index, 0.1, 1.0)
      k ends in `running_mean`                                 -> pattern(s, index, 0.1, 0.0)
      k ends in `.weight`, rank 1, owner a BatchNorm/LayerNorm -> pattern(s, index, 0.1, 1.0)
      rank >= 2                                                -> pattern(s, index, c / sqrt(prod(s[1:])), 0.0)
      any other rank-1 tensor (biases, batch-norm biases)      -> pattern(s, index, c * 0.1, 0.0)
    where c = 1 for every tensor except the weight and bias of the final classifier Linear
    (named in "classifier"), where c = "classifier_scale_factor" (a power of two; 1 unless the
    logits with c = 1 were degenerate, see below).

IMAGE: x = pattern([1, 3, S, S], 999, 1.0, 0.0), S = "image_size" = the model's default input
size (timm: pretrained_cfg input_size; torchvision: 224, 299 for inception_v3), fed as is (no
resize, no normalisation).

EXPECTED: the model in eval mode, logits = model(x) in float32 (CPU, 1 thread);
probabilities = softmax in float64 of those float32 logits. "top5": [[class, probability]] best
first; "logits_head": the first 10 logits; "ties": true when two of the top-6 probabilities are
within 1e-4 of each other. The classifier scale factor is chosen as the first of
1, 2, 1/2, 4, 1/4, ... (up to 2^12) with which the top-5 probabilities all lie in [1e-3, 0.9]
and no two of the top-6 are within 1e-4 (non-degenerate); a power of two so that f32 rounding
commutes with it. (With c = 1 every model's logits were nearly flat, std ~0.06-0.11, so all
probabilities ~0.001: every file has c in 8..64.) Also recorded: "classifier" (the scaled
Linear), "non_degenerate", "image_head" (first 5 input values, to check the pattern),
"logits_stats", "logits_c1_std" (logit std with c = 1) and "features_over_bias_std"
(std of W.x over std of the classifier bias: how much of the logits comes from the image).

PREDICT (the reference for the command line's `predict`, which reads an image FILE and
preprocesses it): every file also carries "predict" (and, for torchvision googlenet /
inception_v3, "predict_no_aux" for the `aux_logits=False` model), all fields added after the
ones above, which are unchanged:

* preprocessing = the model's eval transform, built by timm's `timm.data.create_transform(**cfg)`
  (`transforms_imagenet_eval`: Resize(floor(S / crop_pct), shortest edge, interpolation),
  CenterCrop(S), ToTensor, Normalize(mean, std)). timm files: `cfg =
  timm.data.resolve_data_config({}, model=model)`; torchvision files: the Rust catalogue's
  defaults for the variant (TV_PREPROCESSING below; ImageNet mean/std unless noted, crop_mode
  center). Recorded as "preprocessing": input_size, mean, std, crop_pct, interpolation,
  crop_mode, plus "resize_to" = floor(S / crop_pct) (timm: `math.floor(img_size / crop_pct)`)
  and "crop_top_left" (torchvision CenterCrop: int(round((side - S) / 2)), round half to even).
* image = `predict-<side>.png` (same directory), side = resize_to, so the resize is the
  identity (torchvision's `resize` returns the image unchanged when it already has the output
  size, and PIL's `Image.resize` to the same size is a copy, for bilinear and bicubic alike;
  checked here: the transformed tensor equals the hand-made crop / 255, (x - mean) / std to
  < 1e-6) and only the center crop and the normalisation act. 8-bit RGB, no alpha; pixels
  (PREDICT_IMAGE_RULE), x = column, y = row, both from 0, P1 = (97, 61, 43),
  P2 = (71, 113, 53), P3 = (37, 29, 41), ph = (0.7, 2.3, 4.1), channel c = 0, 1, 2:
      v = 0.5 + 0.20 sin(2 pi x / P1[c] + ph[c]) + 0.15 cos(2 pi y / P2[c] + 2 ph[c])
            + 0.10 sin(2 pi (x + y) / P3[c]) + 0.05 sin(2 pi (x - 2 y) / (11 + 2 c))
      u8 = floor(255 * clip(v, 0, 1))     (float64; the PNG file is the reference)
  Low-frequency sinusoids: the files compress to < 200 KB, and the logits depend on the image.
* the model: the same one as "expected" (same pattern weights, same classifier scale factor),
  eval mode, CPU, 1 thread, on `transform(PIL.Image.open(png).convert("RGB")).unsqueeze(0)`;
  probabilities = softmax in float64 of the float32 logits. "top5": [[class, probability]]
  best first; "logits_head": first 10 logits; "ties" as in "expected"; "input_head": the
  first 5 values of the transformed input; "image_sha256": of the PNG file's bytes;
  "sensitivity": max |logit difference| and max |probability difference| when the same model
  sees the crop one row lower ("crop_one_row_lower"), the crop not normalised (x / 255,
  "not_normalised") or with the channels reversed ("channels_reversed"): how well the fixture
  can catch a preprocessing mistake. With the pattern weights efficientnet_b0, inception_v3,
  googlenet and vgg16 are (nearly) image-independent (differences ~1e-7..1e-4 in the logits),
  so their "predict" checks the file reading and the shapes, not the pixel arithmetic.
  The phases ph were picked (among a handful tried) so that no "predict" has ties.
"""
import json
import math
import os
import sys
import tempfile

import hashlib

import numpy as np
import torch
from PIL import Image

torch.set_num_threads(1)

import timm  # noqa: E402
import torchvision  # noqa: E402
from timm.models._hub import save_config_for_hf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "..", "testkit", "fixtures", "catalogue")
GOLDEN = 0x9E3779B97F4A7C15
M64 = 1 << 64
MASK = M64 - 1

TIMM_MODELS = [
    "resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2", "vgg16", "vgg11_bn",
    "densenet121", "efficientnet_b0", "inception_v3", "convnext_tiny", "mobilenetv2_100",
    "inception_v4", "inception_resnet_v2",
    "mobilenetv3_large_100", "mobilenetv3_small_100",
    "seresnet50", "regnetx_016", "regnety_016",
    "efficientnetv2_rw_s", "tf_efficientnetv2_s",
]
TV_MODELS = [
    "alexnet", "vgg11", "vgg11_bn", "vgg16", "googlenet", "inception_v3", "resnet18", "resnet50",
    "resnext50_32x4d", "wide_resnet50_2", "densenet121", "efficientnet_b0", "convnext_tiny",
    "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "regnet_x_1_6gf", "regnet_y_1_6gf",
    "efficientnet_v2_s",
]
AUX_MODELS = {"googlenet", "inception_v3"}
# Published checkpoints whose weights define a test size (timm's tv2, a1/a1h and ra2 tags):
# `python scripts/gen_catalogue_fixtures.py tagged` writes `tagged-<name>.json` for each, with
# the "predict" record at timm's inference default (`resolve_data_config(use_test_size=True)`)
# and, where listed True, "predict_train_size" (`use_test_size=False`, timm's --use-train-size).
TAGGED = {
    "resnet18.a1_in1k": True,
    "resnet50.a1h_in1k": False,
    "resnet50.tv2_in1k": False,
    "efficientnet_b3.ra2_in1k": False,
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _tv_pre(size, crop_pct, interpolation, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    return {"input_size": (3, size, size), "mean": mean, "std": std, "crop_pct": crop_pct,
            "interpolation": interpolation, "crop_mode": "center"}


# The Rust catalogue's default eval preprocessing for the torchvision variants.
TV_PREPROCESSING = {
    "alexnet": _tv_pre(224, 0.875, "bilinear"),
    "vgg11": _tv_pre(224, 0.875, "bilinear"),
    "vgg11_bn": _tv_pre(224, 0.875, "bilinear"),
    "vgg16": _tv_pre(224, 0.875, "bilinear"),
    # torchvision's published GoogLeNet weights run with transform_input=True, which turns an
    # ImageNet-normalised input into mean=std=0.5 normalisation: the catalogue declares that.
    "googlenet": _tv_pre(224, 0.875, "bilinear", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "inception_v3": _tv_pre(299, 0.875, "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "resnet18": _tv_pre(224, 0.95, "bicubic"),
    "resnet50": _tv_pre(224, 0.95, "bicubic"),
    "resnext50_32x4d": _tv_pre(224, 0.95, "bicubic"),
    "wide_resnet50_2": _tv_pre(224, 0.875, "bicubic"),
    "densenet121": _tv_pre(224, 0.875, "bicubic"),
    "efficientnet_b0": _tv_pre(224, 0.875, "bicubic"),
    "convnext_tiny": _tv_pre(224, 0.95, "bicubic"),
    "mobilenet_v2": _tv_pre(224, 0.875, "bicubic"),
    # Variants of their own (torchvision's batch norm): torchvision's IMAGENET1K_V1 transforms.
    "mobilenet_v3_large": _tv_pre(224, 0.875, "bilinear"),
    "mobilenet_v3_small": _tv_pre(224, 0.875, "bilinear"),
    # The same networks as timm's regnetx_016 / regnety_016: their catalogue default (tv2_in1k's).
    "regnet_x_1_6gf": _tv_pre(224, 0.965, "bicubic"),
    "regnet_y_1_6gf": _tv_pre(224, 0.965, "bicubic"),
    # torchvision's IMAGENET1K_V1 transform: resize 384, crop 384, bilinear.
    "efficientnet_v2_s": _tv_pre(384, 1.0, "bilinear"),
}

WEIGHTS_RULE = (
    "pattern(shape,index,scale,offset): GOLDEN=0x9E3779B97F4A7C15, integer arithmetic mod 2^64; "
    "base=index*GOLDEN+GOLDEN; element i (row-major): z=i+base; z=(z^(z>>30))*0xBF58476D1CE4E5B9; "
    "z=(z^(z>>27))*0x94D049BB133111EB; z^=z>>31; u=(z>>11)/2^53*2-1 (f64); value=f32(offset+scale*u) "
    "computed in f64, rounded to f32 once (= Rust testkit::densenet_efficientnet::pattern). "
    "names = sorted(state_dict keys not ending in num_batches_tracked) (Python sorted, code point order); "
    "index = position in that list; num_batches_tracked buffers keep the model's value (0) and take no index. "
    "key ends in running_var -> pattern(s,index,0.1,1.0); ends in running_mean -> pattern(s,index,0.1,0.0); "
    "rank-1 '.weight' of a BatchNorm (or LayerNorm: ConvNeXt) module -> pattern(s,index,0.1,1.0); rank>=2 -> "
    "pattern(s,index,c/sqrt(prod(s[1:])),0.0); any other rank-1 tensor (biases) -> pattern(s,index,c*0.1,0.0); "
    "c = classifier_scale_factor for the weight and bias of the final classifier Linear (\"classifier\"), 1 elsewhere."
)
IMAGE_RULE = "pattern([1,3,S,S], 999, 1.0, 0.0), S = image_size, fed directly (no resize, no normalisation)"
EXPECTED_RULE = (
    "eval mode, float32 logits on CPU; probabilities = softmax in float64 of the float32 logits; "
    "top5 = [[class, probability]] best first; logits_head = first 10 logits; ties = two of the top-6 "
    "probabilities within 1e-4; classifier_scale_factor = first of 1,2,1/2,4,1/4,... (|log2| <= 12) "
    "giving top-5 probabilities in [1e-3, 0.9] and no ties"
)

PREDICT_IMAGE_RULE = (
    "8-bit RGB PNG, side x side, side = floor(S / crop_pct) (the transform's resize size, so the resize "
    "is the identity); x = column, y = row from 0; P1=(97,61,43), P2=(71,113,53), P3=(37,29,41), "
    "ph=(0.7,2.3,4.1); channel c: v = 0.5 + 0.20 sin(2 pi x/P1[c] + ph[c]) + 0.15 cos(2 pi y/P2[c] + 2 ph[c]) "
    "+ 0.10 sin(2 pi (x+y)/P3[c]) + 0.05 sin(2 pi (x-2y)/(11+2c)); u8 = floor(255 * clip(v, 0, 1)) (float64)"
)
PREDICT_RULE = (
    "same model and weights as expected (same classifier_scale_factor), eval mode, CPU, float32, on "
    "timm.data.create_transform(**preprocessing)(PIL.Image.open(image).convert('RGB')).unsqueeze(0); "
    "probabilities = softmax in float64; top5 = [[class, probability]] best first; logits_head = first 10 "
    "logits; ties = two of the top-6 probabilities within 1e-4; input_head = first 5 transformed input values; "
    "sensitivity = max |logit| and |probability| differences for the crop one row lower, the crop not "
    "normalised (x/255) and the channels reversed"
)

# ----------------------------------------------------------------------------- pattern

def pattern_np(shape, index, scale, offset):
    """Vectorised pattern (numpy uint64 arithmetic wraps mod 2^64), as a float32 ndarray."""
    n = math.prod(shape)
    base = np.uint64((index * GOLDEN + GOLDEN) % M64)
    out = np.empty(n, dtype=np.float32)
    chunk = 1 << 22
    c1, c2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
    s30, s27, s31, s11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
    with np.errstate(over="ignore"):
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            z = np.arange(start, stop, dtype=np.uint64) + base
            z = (z ^ (z >> s30)) * c1
            z = (z ^ (z >> s27)) * c2
            z ^= z >> s31
            u = (z >> s11).astype(np.float64) / float(1 << 53) * 2.0 - 1.0
            out[start:stop] = (offset + scale * u).astype(np.float32)
    return out.reshape(shape)


def pattern_scalar(shape, index, scale, offset):
    """The same with Python integers, one element at a time (the check of `pattern_np`)."""
    n = math.prod(shape)
    base = (index * GOLDEN + GOLDEN) % M64
    vals = []
    for i in range(n):
        z = (i + base) & MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        z ^= z >> 31
        u = (z >> 11) / float(1 << 53) * 2.0 - 1.0
        vals.append(offset + scale * u)
    return np.array(vals, dtype=np.float64).astype(np.float32).reshape(shape)


def pattern(shape, index, scale, offset):
    return torch.from_numpy(pattern_np(tuple(shape), index, scale, offset))


def check_pattern():
    for shape, index, scale, offset in [
        ((7,), 0, 1.0, 0.0), ((3, 5), 41, 0.1, 1.0), ((2, 3, 4), 999, 1.0, 0.0),
        ((1000,), 123456789, 0.03125, -0.5), ((5, 5), 2 ** 63 + 17, 1.0 / math.sqrt(25), 0.0),
    ]:
        a, b = pattern_np(shape, index, scale, offset), pattern_scalar(shape, index, scale, offset)
        assert a.dtype == np.float32 and np.array_equal(a.view(np.uint32), b.view(np.uint32)), (shape, index)
    # chunk boundary
    a = pattern_np(((1 << 22) + 5,), 7, 1.0, 0.0)[(1 << 22) - 3:]
    tail = []
    base = (7 * GOLDEN + GOLDEN) % M64
    for i in range((1 << 22) - 3, (1 << 22) + 5):
        z = (i + base) & MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        z ^= z >> 31
        tail.append(0.0 + 1.0 * ((z >> 11) / float(1 << 53) * 2.0 - 1.0))
    assert np.array_equal(a, np.array(tail).astype(np.float32)), "chunked pattern"


# ----------------------------------------------------------------------------- weights

def module_of(model, key):
    mod_name = key.rsplit(".", 1)[0] if "." in key else ""
    return model.get_submodule(mod_name)


def fill_model(model, classifier_name, factor, only_classifier=False):
    """Applies the weights rule in place (to the classifier alone with `only_classifier`)."""
    state = model.state_dict()
    names = sorted(k for k in state if not k.endswith("num_batches_tracked"))
    cls_keys = {classifier_name + ".weight", classifier_name + ".bias"}
    with torch.no_grad():
        for index, key in enumerate(names):
            if only_classifier and key not in cls_keys:
                continue
            t = state[key]
            assert t.dtype == torch.float32, (key, t.dtype)
            shape = tuple(t.shape)
            c = factor if key in cls_keys else 1.0
            if key.endswith("running_var"):
                v = pattern(shape, index, 0.1, 1.0)
            elif key.endswith("running_mean"):
                v = pattern(shape, index, 0.1, 0.0)
            elif (len(shape) == 1 and key.endswith(".weight")
                  and isinstance(module_of(model, key),
                                 (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm))):
                v = pattern(shape, index, 0.1, 1.0)
            elif len(shape) >= 2:
                v = pattern(shape, index, c / math.sqrt(math.prod(shape[1:])), 0.0)
            elif len(shape) == 1:
                v = pattern(shape, index, c * 0.1, 0.0)
            else:
                raise ValueError(f"rank-0 tensor {key}")
            t.copy_(v)
    return names


def last_linear(model):
    name = None
    for n, m in model.named_modules():
        if isinstance(m, torch.nn.Linear):
            name = n
    return name


# ----------------------------------------------------------------------------- expected

def summarise(logits32):
    """top5, ties and the acceptability of float32 logits (1 x classes)."""
    l64 = logits32.double()[0]
    p = torch.softmax(l64, dim=0)
    vals, idx = torch.sort(p, descending=True, stable=True)
    top6 = vals[:6].tolist()
    ties = any(abs(top6[i] - top6[j]) < 1e-4 for i in range(6) for j in range(i + 1, 6))
    top5 = [[int(i), float(v)] for i, v in zip(idx[:5].tolist(), vals[:5].tolist())]
    ok = all(1e-3 <= v <= 0.9 for _, v in top5) and not ties
    return top5, ties, ok


def factors():
    yield 1.0
    for k in range(1, 13):
        yield float(2 ** k)
        yield float(2.0 ** -k)


def expected_for(model, image_size):
    """Fills the model (choosing the classifier factor) and returns the "expected" record."""
    model.eval()
    cls = last_linear(model)
    x = pattern([1, 3, image_size, image_size], 999, 1.0, 0.0)
    fill_model(model, cls, 1.0)
    feats = {}
    handle = model.get_submodule(cls).register_forward_pre_hook(
        lambda m, inp: feats.__setitem__("x", inp[0].detach().clone()))
    with torch.no_grad():
        logits1 = model(x)
    handle.remove()
    chosen = None
    lin = model.get_submodule(cls)
    for f in factors():
        if f == 1.0:
            lg = logits1
        else:
            fill_model(model, cls, f, only_classifier=True)
            with torch.no_grad():
                lg = lin(feats["x"])
        if summarise(lg)[2]:
            chosen = f
            break
    if chosen is None:
        chosen = 1.0
    fill_model(model, cls, chosen, only_classifier=True)
    with torch.no_grad():
        logits = model(x)
    assert logits.dtype == torch.float32 and logits.shape == (1, 1000), logits.shape
    top5, ties, ok = summarise(logits)
    l = logits[0]
    wx = (feats["x"].double() @ lin.weight.detach().double().T)[0]
    b = lin.bias.detach().double()
    return {
        "image_size": image_size,
        "image_head": [float(v) for v in x.flatten()[:5].tolist()],
        "classifier": cls,
        "classifier_scale_factor": chosen,
        "non_degenerate": ok,
        "top5": top5,
        "ties": ties,
        "logits_head": [float(v) for v in l[:10].tolist()],
        "logits_stats": {"mean": float(l.double().mean()), "std": float(l.double().std()),
                         "min": float(l.min()), "max": float(l.max()),
                         "argmax": int(l.argmax())},
        "logits_c1_std": float(logits1[0].double().std()),
        "features_over_bias_std": float(wx.std() / b.std()),
    }


# ----------------------------------------------------------------------------- predict

def predict_pixels(side):
    """The PNG's pixels (PREDICT_IMAGE_RULE), uint8 [side, side, 3]."""
    y, x = np.meshgrid(np.arange(side, dtype=np.float64), np.arange(side, dtype=np.float64),
                       indexing="ij")
    p1, p2, p3, ph = (97.0, 61.0, 43.0), (71.0, 113.0, 53.0), (37.0, 29.0, 41.0), (0.7, 2.3, 4.1)
    chans = []
    for c in range(3):
        v = (0.5 + 0.20 * np.sin(2 * math.pi * x / p1[c] + ph[c])
             + 0.15 * np.cos(2 * math.pi * y / p2[c] + 2 * ph[c])
             + 0.10 * np.sin(2 * math.pi * (x + y) / p3[c])
             + 0.05 * np.sin(2 * math.pi * (x - 2 * y) / (11.0 + 2 * c)))
        chans.append(v)
    v = np.clip(np.stack(chans, axis=-1), 0.0, 1.0)
    return np.floor(255.0 * v).astype(np.uint8)


_WRITTEN_PNGS = {}


def predict_png(side):
    """Writes `predict-<side>.png` once per run; returns (file name, sha256 of its bytes)."""
    name = f"predict-{side}.png"
    if side not in _WRITTEN_PNGS:
        path = os.path.join(OUT_DIR, name)
        Image.fromarray(predict_pixels(side), "RGB").save(path, format="PNG")
        with Image.open(path) as im:
            assert im.mode == "RGB" and im.size == (side, side), (im.mode, im.size)
            assert np.array_equal(np.asarray(im), predict_pixels(side)), "PNG round trip"
        with open(path, "rb") as f:
            _WRITTEN_PNGS[side] = hashlib.sha256(f.read()).hexdigest()
    return name, _WRITTEN_PNGS[side]


def predict_for(model, cfg):
    """The "predict" record: `model` (already filled as for "expected") on the PNG through the
    eval transform built by timm from `cfg` (resolve_data_config-style keys)."""
    cfg = {k: cfg[k] for k in ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")}
    size = int(cfg["input_size"][-1])
    assert tuple(cfg["input_size"]) == (3, size, size), cfg
    crop_pct = float(cfg["crop_pct"])
    side = math.floor(size / crop_pct)  # timm transforms_imagenet_eval's scale_size
    transform = timm.data.create_transform(**cfg)
    resizes = [t for t in transform.transforms if type(t).__name__ == "Resize"]
    assert len(resizes) == 1 and resizes[0].size == side, transform  # shortest edge -> side
    name, sha = predict_png(side)
    with Image.open(os.path.join(OUT_DIR, name)) as im:
        img = im.convert("RGB")
    # the resize really is the identity: PIL's own resize to the same size is a copy, and the
    # whole transform equals the hand-made crop + normalisation
    pil_interp = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}[cfg["interpolation"]]
    assert np.array_equal(np.asarray(img.resize((side, side), pil_interp)), np.asarray(img))
    x = transform(img).unsqueeze(0)
    assert x.dtype == torch.float32 and tuple(x.shape) == (1, 3, size, size), (x.dtype, x.shape)
    top = int(round((side - size) / 2.0))  # torchvision CenterCrop
    arr = np.asarray(img).astype(np.float64)[top:top + size, top:top + size] / 255.0
    ref = (arr - np.array(cfg["mean"])) / np.array(cfg["std"])
    diff = float(np.abs(x[0].double().numpy() - ref.transpose(2, 0, 1)).max())
    assert diff < 1e-6, diff
    model.eval()
    with torch.no_grad():
        logits = model(x)
    assert logits.dtype == torch.float32 and logits.shape == (1, 1000), logits.shape
    top5, ties, _ = summarise(logits)
    # how much the logits depend on the preprocessing (what a wrong crop / normalisation / channel
    # order would change): max |logit difference| and max |probability difference| against the
    # crop one row lower, the un-normalised crop (x / 255) and the channels reversed (BGR)
    arr32 = np.asarray(img).astype(np.float32) / np.float32(255.0)
    mean32, std32 = np.array(cfg["mean"], np.float32), np.array(cfg["std"], np.float32)

    def variant(a, t, m, sd):
        c = (a[t:t + size, top:top + size] - m) / sd
        return torch.from_numpy(np.ascontiguousarray(c.transpose(2, 0, 1))).unsqueeze(0).float()

    p0 = torch.softmax(logits.double()[0], dim=0)
    sens = {}
    for key, xv in (("crop_one_row_lower", variant(arr32, top + 1, mean32, std32)),
                    ("not_normalised", variant(arr32, top, np.float32(0.0), np.float32(1.0))),
                    ("channels_reversed", variant(arr32[..., ::-1], top, mean32, std32))):
        with torch.no_grad():
            lv = model(xv)
        pv = torch.softmax(lv.double()[0], dim=0)
        sens[key] = {"max_abs_logit_diff": float((lv[0].double() - logits[0].double()).abs().max()),
                     "max_abs_prob_diff": float((pv - p0).abs().max())}
    return {
        "image": name,
        "image_side": side,
        "image_sha256": sha,
        "image_rule": PREDICT_IMAGE_RULE,
        "preprocessing": {
            "input_size": [int(v) for v in cfg["input_size"]],
            "mean": [float(v) for v in cfg["mean"]],
            "std": [float(v) for v in cfg["std"]],
            "crop_pct": crop_pct,
            "interpolation": cfg["interpolation"],
            "crop_mode": cfg["crop_mode"],
            "resize_to": side,
            "crop_top_left": [top, top],
            "transform": "timm.data.create_transform(**preprocessing) (transforms_imagenet_eval)",
            "max_abs_diff_vs_manual_crop_normalise": diff,
        },
        "predict_rule": PREDICT_RULE,
        "input_head": [float(v) for v in x.flatten()[:5].tolist()],
        "top5": top5,
        "ties": ties,
        "logits_head": [float(v) for v in logits[0, :10].tolist()],
        "sensitivity": sens,
    }


# ----------------------------------------------------------------------------- output

def keys_of(model):
    return [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in model.state_dict().items()]


def dump(path, obj):
    """One top-level field a line, lists of lists one item a line, compact otherwise."""
    lines = ["{"]
    items = list(obj.items())
    for n, (k, v) in enumerate(items):
        end = "," if n + 1 < len(items) else ""
        if isinstance(v, list) and v and isinstance(v[0], list):
            inner = ",\n".join("  " + json.dumps(e, separators=(",", ":")) for e in v)
            lines.append(f"{json.dumps(k)}: [\n{inner}\n]{end}")
        elif k == "config":
            body = json.dumps(v, indent=1).replace("\n", "\n ")
            lines.append(f"{json.dumps(k)}: {body}{end}")
        else:
            lines.append(f"{json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}{end}")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    json.loads(text)
    with open(path, "w") as f:
        f.write(text)


def versions():
    return {"torch_version": torch.__version__, "torchvision_version": torchvision.__version__,
            "timm_version": timm.__version__, "numpy_version": np.__version__,
            "python_version": sys.version.split()[0]}


def timm_fixture(name):
    model = timm.create_model(name, pretrained=False)
    cfg = model.pretrained_cfg
    tag = cfg.get("tag")
    hub_id = cfg.get("hf_hub_id") or f"timm/{name}.{tag}"
    assert hub_id == f"timm/{name}.{tag}", (hub_id, tag)
    keys = keys_of(model)
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "config.json")
        save_config_for_hf(model, p)
        with open(p) as f:
            config = json.load(f)
    size = int(cfg["input_size"][-1])
    assert cfg["input_size"][-2] == size
    v = versions()
    rec = {
        "model": name, "library": "timm", "timm_version": v["timm_version"],
        "torch_version": v["torch_version"], "numpy_version": v["numpy_version"],
        "constructor": f"timm.create_model({name!r}, pretrained=False)",
        "hub_id": hub_id, "pretrained_tag": f"{name}.{tag}",
        "config_writer": "timm.models._hub.save_config_for_hf(model, 'config.json')",
        "weights_rule": WEIGHTS_RULE, "image_rule": IMAGE_RULE, "expected_rule": EXPECTED_RULE,
        "keys": keys, "config": config,
    }
    rec["expected"] = expected_for(model, size)
    rec["predict"] = predict_for(model, timm.data.resolve_data_config({}, model=model))
    dump(os.path.join(OUT_DIR, f"timm-{name}.json"), rec)
    return rec


def tv_fixture(name):
    ctor = getattr(torchvision.models, name)
    size = 299 if name == "inception_v3" else 224
    v = versions()
    extra = {"init_weights": True} if name in AUX_MODELS else {}
    model = ctor(weights=None, **extra)
    rec = {
        "model": name, "library": "torchvision", "torchvision_version": v["torchvision_version"],
        "torch_version": v["torch_version"], "numpy_version": v["numpy_version"],
        "constructor": f"torchvision.models.{name}(weights=None{', init_weights=True' if extra else ''})",
        "weights_rule": WEIGHTS_RULE, "image_rule": IMAGE_RULE, "expected_rule": EXPECTED_RULE,
        "keys": keys_of(model),
    }
    if name in AUX_MODELS:
        assert model.aux_logits
        no_aux = ctor(weights=None, aux_logits=False, **extra)
        rec["constructor_no_aux"] = (
            f"torchvision.models.{name}(weights=None, aux_logits=False, init_weights=True)")
        rec["keys_no_aux"] = keys_of(no_aux)
    rec["expected"] = expected_for(model, size)
    if name in AUX_MODELS:
        rec["expected_no_aux"] = expected_for(no_aux, size)
    rec["predict"] = predict_for(model, TV_PREPROCESSING[name])
    if name in AUX_MODELS:
        rec["predict_no_aux"] = predict_for(no_aux, TV_PREPROCESSING[name])
    dump(os.path.join(OUT_DIR, f"torchvision-{name}.json"), rec)
    return rec


def tagged_fixture(name, train_size):
    """`tagged-<name>.json`: timm's model for the tagged name (its own pretrained_cfg), its
    config.json, "expected" (pattern image at the training size), "data_config" (timm's
    resolve_data_config with use_test_size True and False) and "predict" at the test size."""
    model = timm.create_model(name, pretrained=False)
    cfg = model.pretrained_cfg
    hub_id = cfg["hf_hub_id"]
    assert hub_id == f"timm/{name}", hub_id
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "config.json")
        save_config_for_hf(model, p)
        with open(p) as f:
            config = json.load(f)
    size = int(cfg["input_size"][-1])
    v = versions()
    test_cfg = timm.data.resolve_data_config({}, model=model, use_test_size=True)
    train_cfg = timm.data.resolve_data_config({}, model=model, use_test_size=False)
    rec = {
        "model": name.split(".")[0], "tagged_name": name, "library": "timm",
        "timm_version": v["timm_version"], "torch_version": v["torch_version"],
        "numpy_version": v["numpy_version"],
        "constructor": f"timm.create_model({name!r}, pretrained=False)",
        "hub_id": hub_id,
        "config_writer": "timm.models._hub.save_config_for_hf(model, 'config.json')",
        "weights_rule": WEIGHTS_RULE, "image_rule": IMAGE_RULE, "expected_rule": EXPECTED_RULE,
        "keys": keys_of(model), "config": config,
        "data_config": {
            "use_test_size": {k: (list(v) if isinstance(v, tuple) else v) for k, v in test_cfg.items()},
            "use_train_size": {k: (list(v) if isinstance(v, tuple) else v) for k, v in train_cfg.items()},
            "source": "timm.data.resolve_data_config({}, model=model, use_test_size=...)",
        },
    }
    rec["expected"] = expected_for(model, size)
    rec["predict"] = predict_for(model, test_cfg)
    if train_size:
        rec["predict_train_size"] = predict_for(model, train_cfg)
    dump(os.path.join(OUT_DIR, f"tagged-{name}.json"), rec)
    return rec


def main():
    torch.manual_seed(0)
    check_pattern()
    os.makedirs(OUT_DIR, exist_ok=True)
    only = set(sys.argv[1:])
    if only == {"tagged"}:
        for name, train_size in TAGGED.items():
            r = tagged_fixture(name, train_size)
            pr = r["predict"]
            print(f"tagged-{name}: {pr['image']} {pr['preprocessing']['input_size']} "
                  f"crop {pr['preprocessing']['crop_pct']} ties={pr['ties']} top5={pr['top5']}",
                  flush=True)
        return
    for name in TIMM_MODELS:
        if only and f"timm-{name}" not in only:
            continue
        r = timm_fixture(name)
        e = r["expected"]
        print(f"timm-{name}: {r['hub_id']} keys={len(r['keys'])} c={e['classifier_scale_factor']} "
              f"ok={e['non_degenerate']} ties={e['ties']} top5={e['top5']}", flush=True)
        pr = r["predict"]
        print(f"timm-{name} predict: {pr['image']} ties={pr['ties']} top5={pr['top5']}", flush=True)
    for name in TV_MODELS:
        if only and f"torchvision-{name}" not in only:
            continue
        r = tv_fixture(name)
        for k in ("expected", "expected_no_aux"):
            if k in r:
                e = r[k]
                print(f"torchvision-{name} {k}: keys={len(r['keys'])} c={e['classifier_scale_factor']} "
                      f"ok={e['non_degenerate']} ties={e['ties']} top5={e['top5']}", flush=True)
        for k in ("predict", "predict_no_aux"):
            if k in r:
                pr = r[k]
                print(f"torchvision-{name} {k}: {pr['image']} ties={pr['ties']} top5={pr['top5']}",
                      flush=True)


if __name__ == "__main__":
    main()
