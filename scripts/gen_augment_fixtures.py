"""Reference values for trainer/tests/augment.rs: torchvision's augmentation operations on small
uint8 images at fixed parameters (timm's `solarize_add` on PIL), timm's `Mixup` / CutMix on
recorded random draws, and timm's `SoftTargetCrossEntropy` (loss and gradient).

Run:  OMP_NUM_THREADS=1 python scripts/gen_augment_fixtures.py
writes trainer/tests/fixtures/augment.safetensors.

The draws of numpy's global generator that `timm.data.Mixup` makes (`np.random.rand`,
`np.random.beta`, `np.random.randint`) are recorded in call order, one row per value:
(kind: 0 rand, 1 beta, 2 randint; value; low; high) (low, high: randint's arguments, else the
beta's alpha and 0), so the test replays them into our `Mixup` and compares images and targets.
"""

import math
import os

import numpy as np
import PIL.Image
import torch
import torchvision
from safetensors.torch import save_file
from timm.data import Mixup
from timm.data.auto_augment import auto_augment_policy, solarize_add
from timm.loss import SoftTargetCrossEntropy
from torchvision.transforms.v2 import functional as F

torch.set_num_threads(1)
out = {}

# --- operations --------------------------------------------------------------------------
g = torch.Generator().manual_seed(0)
RGB = torch.randint(20, 230, (3, 24, 20), dtype=torch.uint8, generator=g)
GREY = torch.randint(20, 230, (1, 24, 20), dtype=torch.uint8, generator=g)
out["ops.rgb"] = RGB
out["ops.grey"] = GREY
FILL = [120, 64, 200]

CASES = {
    # name: (op, argument, function of the image)
    "shear_x_pos": ("shear_x", 0.3, lambda x, f: F.affine(x, 0.0, [0, 0], 1.0, [math.degrees(math.atan(0.3)), 0.0], fill=f, center=[0, 0])),
    "shear_x_neg": ("shear_x", -0.2, lambda x, f: F.affine(x, 0.0, [0, 0], 1.0, [math.degrees(math.atan(-0.2)), 0.0], fill=f, center=[0, 0])),
    "shear_y": ("shear_y", 0.25, lambda x, f: F.affine(x, 0.0, [0, 0], 1.0, [0.0, math.degrees(math.atan(0.25))], fill=f, center=[0, 0])),
    "translate_x": ("translate_x", 3.0, lambda x, f: F.affine(x, 0.0, [3, 0], 1.0, [0.0, 0.0], fill=f)),
    "translate_x_neg": ("translate_x", -2.7, lambda x, f: F.affine(x, 0.0, [int(-2.7), 0], 1.0, [0.0, 0.0], fill=f)),
    "translate_y": ("translate_y", 4.0, lambda x, f: F.affine(x, 0.0, [0, 4], 1.0, [0.0, 0.0], fill=f)),
    "rotate": ("rotate", 30.0, lambda x, f: F.rotate(x, 30.0, fill=f)),
    "rotate_neg": ("rotate", -17.5, lambda x, f: F.rotate(x, -17.5, fill=f)),
    "rotate_big": ("rotate", 123.0, lambda x, f: F.rotate(x, 123.0, fill=f)),
    "brightness_up": ("brightness", 1.5, lambda x, f: F.adjust_brightness(x, 1.5)),
    "brightness_down": ("brightness", 0.3, lambda x, f: F.adjust_brightness(x, 0.3)),
    "color_down": ("color", 0.2, lambda x, f: F.adjust_saturation(x, 0.2)),
    "color_up": ("color", 1.7, lambda x, f: F.adjust_saturation(x, 1.7)),
    "contrast_down": ("contrast", 0.5, lambda x, f: F.adjust_contrast(x, 0.5)),
    "contrast_up": ("contrast", 1.6, lambda x, f: F.adjust_contrast(x, 1.6)),
    "sharpness_down": ("sharpness", 0.1, lambda x, f: F.adjust_sharpness(x, 0.1)),
    "sharpness_up": ("sharpness", 1.9, lambda x, f: F.adjust_sharpness(x, 1.9)),
    "posterize_4": ("posterize", 4, lambda x, f: F.posterize(x, 4)),
    "posterize_0": ("posterize", 0, lambda x, f: F.posterize(x, 0)),
    "posterize_2": ("posterize", 2, lambda x, f: F.posterize(x, 2)),
    "solarize_128": ("solarize", 128.0, lambda x, f: F.solarize(x, 128.0)),
    "solarize_200": ("solarize", 200.5, lambda x, f: F.solarize(x, 200.5)),
    "autocontrast": ("autocontrast", 0.0, lambda x, f: F.autocontrast(x)),
    "equalize": ("equalize", 0.0, lambda x, f: F.equalize(x)),
    "invert": ("invert", 0.0, lambda x, f: F.invert(x)),
    "identity": ("identity", 0.0, lambda x, f: x.clone()),
}
GREY_CASES = ["brightness_up", "contrast_down", "contrast_up", "sharpness_up", "autocontrast", "equalize",
              "rotate", "shear_x_pos", "color_down", "solarize_128"]

names = []
for name, (op, arg, fn) in CASES.items():
    out[f"ops.{name}.rgb"] = fn(RGB, FILL).clone().contiguous()
    out[f"ops.{name}.arg"] = torch.tensor([arg], dtype=torch.float64)
    names.append(f"{name}:{op}")
    if name in GREY_CASES:
        out[f"ops.{name}.grey"] = fn(GREY, [FILL[0]]).clone().contiguous()


def pil_solarize_add(x, add, thresh):
    img = PIL.Image.fromarray(x.permute(1, 2, 0).numpy())
    return torch.from_numpy(np.array(solarize_add(img, add, thresh))).permute(2, 0, 1).contiguous()


out["ops.solarize_add.rgb"] = pil_solarize_add(RGB, 50, 128)
out["ops.solarize_add.arg"] = torch.tensor([50.0, 128.0], dtype=torch.float64)
names.append("solarize_add:solarize_add")

# The tables of timm's AutoAugment policies ("v0", "original"): (op index, probability,
# magnitude) of each sub-policy's two operations, the op names in `aa.names`.
op_names = []
for policy_name in ["v0", "original"]:
    rows = []
    for sub in auto_augment_policy(policy_name):
        for op in sub:
            if op.name not in op_names:
                op_names.append(op.name)
            rows.append([op_names.index(op.name), op.prob, op.magnitude])
    out[f"aa.{policy_name}"] = torch.tensor(rows, dtype=torch.float64)

# --- mixup ----------------------------------------------------------------------------------
record = []
_rand, _beta, _randint = np.random.rand, np.random.beta, np.random.randint


def rec_rand(*size):
    v = _rand(*size)
    for x in np.atleast_1d(v).ravel():
        record.append([0, float(x), 0, 0])
    return v


def rec_beta(a, b, size=None):
    v = _beta(a, b, size=size)
    for x in np.atleast_1d(v).ravel():
        record.append([1, float(x), a, 0])
    return v


def rec_randint(low, high=None, size=None):
    v = _randint(low, high, size=size)
    for x in np.atleast_1d(v).ravel():
        record.append([2, float(x), low, high])
    return v


np.random.rand, np.random.beta, np.random.randint = rec_rand, rec_beta, rec_randint

MODES = {"batch": 0, "pair": 1, "elem": 2}
# (mixup alpha, cutmix alpha, cutmix minmax, prob, switch prob, mode, smoothing, correct lam)
CONFIGS = [
    (0.8, 1.0, None, 1.0, 0.5, "batch", 0.1, True),
    (0.2, 0.0, None, 1.0, 0.5, "batch", 0.0, True),
    (0.0, 1.0, None, 1.0, 0.5, "batch", 0.1, True),
    (0.0, 1.0, None, 1.0, 0.5, "batch", 0.1, False),
    (0.0, 0.0, (0.3, 0.8), 0.7, 0.5, "batch", 0.1, True),
    (0.8, 1.0, None, 0.6, 0.5, "elem", 0.1, True),
    (0.8, 1.0, (0.2, 0.9), 1.0, 0.5, "elem", 0.0, True),
    (0.8, 1.0, None, 0.8, 0.3, "pair", 0.1, True),
    (1.0, 0.0, None, 1.0, 0.5, "pair", 0.2, True),
]
NUM_CLASSES = 5
case = 0
for cfg in CONFIGS:
    mix_a, cut_a, minmax, prob, switch, mode, smoothing, correct = cfg
    for seed in range(3):
        mixup = Mixup(mixup_alpha=mix_a, cutmix_alpha=cut_a, cutmix_minmax=minmax, prob=prob,
                      switch_prob=switch, mode=mode, correct_lam=correct, label_smoothing=smoothing,
                      num_classes=NUM_CLASSES)
        gx = torch.Generator().manual_seed(100 + case)
        x = torch.rand(6, 2, 6, 8, generator=gx)
        target = torch.randint(0, NUM_CLASSES, (6,), generator=gx)
        np.random.seed(seed + 10 * case)
        record.clear()
        x_in = x.clone()
        x_out, t_out = mixup(x, target)
        p = f"mixup.{case}"
        out[p + ".config"] = torch.tensor(
            [mix_a, cut_a, minmax[0] if minmax else -1.0, minmax[1] if minmax else -1.0, prob, switch,
             MODES[mode], smoothing, NUM_CLASSES, float(correct)], dtype=torch.float64)
        out[p + ".x"] = x_in
        out[p + ".target"] = target
        out[p + ".mixed"] = x_out.clone().contiguous()
        out[p + ".soft"] = t_out.contiguous()
        out[p + ".draws"] = torch.tensor(record if record else [[-1, 0, 0, 0]], dtype=torch.float64)
        case += 1
out["mixup.count"] = torch.tensor([case])
np.random.rand, np.random.beta, np.random.randint = _rand, _beta, _randint

# --- soft-target cross-entropy --------------------------------------------------------------
gl = torch.Generator().manual_seed(7)
logits = (torch.randn(6, 5, generator=gl) * 3).requires_grad_()
soft = torch.softmax(torch.randn(6, 5, generator=gl), dim=-1)
loss = SoftTargetCrossEntropy()(logits, soft)
loss.backward()
out["soft_ce.logits"] = logits.detach()
out["soft_ce.target"] = soft
out["soft_ce.loss"] = loss.detach().reshape(1)
out["soft_ce.grad"] = logits.grad

path = os.path.join(os.path.dirname(__file__), "..", "trainer", "tests", "fixtures", "augment.safetensors")
meta = {"generator": "scripts/gen_augment_fixtures.py", "torch": torch.__version__,
        "torchvision": torchvision.__version__, "ops": ",".join(names), "aa.names": ",".join(op_names)}
save_file(out, path, metadata=meta)
print(f"wrote {path}: {len(out)} tensors, {case} mixup cases; aa ops {op_names}")
