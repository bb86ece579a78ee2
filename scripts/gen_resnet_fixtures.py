"""Reference outputs of torchvision's ResNet / ResNeXt, for resnet/tests/reference.rs.

Run by hand (not in CI):

    pip install torch torchvision safetensors numpy
    python scripts/gen_resnet_fixtures.py

The weights and the inputs are not stored: both sides compute them from the same closed-form
rule (`pattern` and `fill` below, mirrored in the Rust test), so the fixtures hold only
outputs (tens of KB per model). The models are torchvision's own modules with 10 classes (a
small `fc`, so the gradient of `fc.weight` stays small); the input is a batch of two 65x71
images (odd sizes exercise the padding and the floors of every stride-2 layer).

For each of ResNet-18, ResNet-50 and ResNeXt-50 32x4d, `<model>.safetensors` holds:

* `eval.features`: the layer-4 output of the eval-mode model, global-average-pooled `[2, C]`;
* `eval.logits`: the eval-mode logits `[2, 10]`;
* `train.logits`: the train-mode logits (batch statistics) of a fresh copy;
* `train.<bn>.running_mean` / `running_var`: running statistics after that train pass;
* `eval.grad.<param>`: gradients of the mean cross-entropy (targets 3, 7) of the eval pass;
* `train.grad.<param>` (ResNet-18 only): the same for the train pass.

Of a convolution with more than 20,000 weights, only the first 8 output filters' gradients
are stored. Everything is computed in float64 from the float32 weights and input (the exact
answer to float32 questions). Train-mode gradients of the deeper models are left out: at
initialisation a batch-norm network's train-mode gradients grow with depth (conv1's is 5,000
times its eval-mode gradient in ResNet-50 here) and are ill-conditioned: PyTorch's own float32
result differs from its float64 one by 1-3% on ResNet-50 / ResNeXt-50, against 3e-6 on
ResNet-18.

SE-ResNet-50 and SE-ResNeXt-50 32x4d are timm's (`timm.create_model("seresnet50",
num_classes=10)`: torchvision's names plus `layer*.*.se.fc1/fc2`), with the same entries
(`seresnet50.safetensors`, `seresnext50_32x4d.safetensors`; `eval.features` from timm's
`forward_features`).

`state_dicts.txt.gz` lists, for every variant with 1000 classes (torchvision's, timm's for
the SE variants), each state-dict entry but
`num_batches_tracked` as `variant name d0xd1x...` (sorted), and each variant's parameter count.

`resnet18.safetensors` also holds the same entries prefixed `cifar.` for ResNet-18 with the
CIFAR stem (conv1 3x3 stride 1 padding 1, no max pool) on a 2x3x32x32 batch (train-mode
gradients included).
"""
import gzip
import math
import os

import torch
import torch.nn as nn
import timm
import torch.nn.functional as F
from safetensors.torch import save_file
from torchvision import models

OUT_DIR = os.path.join(os.path.dirname(__file__), "..", "resnet", "tests", "fixtures")
CLASSES = 10
TARGETS = torch.tensor([3, 7])
GRAD_ROWS = 8


def pattern(shape, index, scale, offset=0.0):
    """offset + scale * sin(0.37 * i + index + 0.5 * (i * i mod 4099)) over the flattened tensor
    (i = 0, 1, ...), in float64 then float32.

    The quadratic residue scrambles the phase: a plain sin(0.37 * i + index), as in the LeNet
    fixtures, makes every weight matrix rank 2 and the input a plane wave, which conv layers
    map to plane waves; batch statistics then degenerate and the gradients explode.
    """
    n = math.prod(shape)
    i = torch.arange(n, dtype=torch.int64)
    phase = 0.37 * i.to(torch.float64) + index + 0.5 * ((i * i) % 4099).to(torch.float64)
    return (offset + scale * torch.sin(phase)).reshape(shape).to(torch.float32)


def fill(model):
    """Every parameter and buffer but `num_batches_tracked`, by sorted name (index j):

    * conv / linear weights: scale 1 / sqrt(fan_in);
    * batch-norm running_var: 1 + 0.5 sin, weight: 1 + 0.25 sin;
    * biases and running_mean: 0.1 sin.
    """
    state = model.state_dict()
    names = sorted(k for k in state if not k.endswith("num_batches_tracked"))
    with torch.no_grad():
        for j, name in enumerate(names):
            p = state[name]
            shape = tuple(p.shape)
            if p.dim() > 1:
                value = pattern(shape, j, 1.0 / math.sqrt(math.prod(shape[1:])))
            elif name.endswith("running_var"):
                value = pattern(shape, j, 0.5, 1.0)
            elif name.endswith("weight"):
                value = pattern(shape, j, 0.25, 1.0)
            else:
                value = pattern(shape, j, 0.1)
            p.copy_(value)


def features(model, x):
    """torchvision's `_forward_impl` up to layer4 (timm's `forward_features`)."""
    if hasattr(model, "forward_features"):
        return model.forward_features(x)
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    return model.layer4(model.layer3(model.layer2(model.layer1(x))))


def cifar(model):
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def grads_of(model, logits, names, prefix, out):
    F.cross_entropy(logits, TARGETS).backward()
    params = dict(model.named_parameters())
    for name in names:
        grad = params[name].grad
        # Big convolution gradients: the first GRAD_ROWS output filters only (fixture size).
        out[f"{prefix}.grad.{name}"] = grad[:GRAD_ROWS] if grad.numel() > 20000 and grad.dim() == 4 else grad


def reference(make, x, bns, eval_grads, train_grads, prefix=""):
    """Computed in float64 (on the float32 weights and input), stored as float32."""
    out = {}
    x = x.double()
    model = make()
    fill(model)
    model.double().eval()
    out[f"{prefix}eval.features"] = features(model, x).mean((2, 3))
    logits = model(x)
    out[f"{prefix}eval.logits"] = logits
    grads_of(model, logits, eval_grads, f"{prefix}eval", out)
    model = make()
    fill(model)
    model.double().train()
    logits = model(x)
    out[f"{prefix}train.logits"] = logits
    state = model.state_dict()
    for bn in bns:
        for stat in ["running_mean", "running_var"]:
            out[f"{prefix}train.{bn}.{stat}"] = state[f"{bn}.{stat}"].clone()
    if train_grads:
        grads_of(model, logits, train_grads, f"{prefix}train", out)
    return {k: v.detach().to(torch.float32).contiguous() for k, v in out.items()}


VARIANTS = [
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
    "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
]


TIMM_VARIANTS = ["seresnet50", "seresnext50_32x4d"]


def write_state_dicts():
    lines = []
    for variant in VARIANTS + TIMM_VARIANTS:
        with torch.device("meta"):
            if variant in TIMM_VARIANTS:
                model = timm.create_model(variant)
            else:
                model = getattr(models, variant)()
        params = sum(p.numel() for p in model.parameters())
        lines.append(f"{variant} #params {params}")
        for name, t in sorted(model.state_dict().items()):
            if not name.endswith("num_batches_tracked"):
                lines.append(f"{variant} {name} {'x'.join(str(d) for d in t.shape)}")
    path = os.path.join(OUT_DIR, "state_dicts.txt.gz")
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        f.write(("\n".join(lines) + "\n").encode())
    print(f"wrote {path} ({os.path.getsize(path)} bytes, {len(lines)} lines)")


def main():
    torch.set_grad_enabled(True)
    os.makedirs(OUT_DIR, exist_ok=True)
    write_state_dicts()
    x = pattern((2, 3, 65, 71), 0.5, 1.0)
    x_cifar = pattern((2, 3, 32, 32), 1.5, 1.0)
    specs = {
        "resnet18": (
            lambda: models.resnet18(num_classes=CLASSES),
            ["bn1", "layer4.1.bn2", "layer2.0.downsample.1"],
            ["conv1.weight", "fc.weight", "layer3.1.conv2.weight"],
            ["conv1.weight", "fc.weight", "fc.bias", "bn1.weight", "layer2.0.downsample.0.weight",
             "layer3.1.conv2.weight"],
        ),
        "resnet50": (
            lambda: models.resnet50(num_classes=CLASSES),
            ["bn1", "layer4.2.bn3", "layer1.0.downsample.1"],
            ["conv1.weight", "fc.weight", "layer3.0.conv2.weight", "layer4.0.downsample.0.weight"],
            [],
        ),
        "resnext50_32x4d": (
            lambda: models.resnext50_32x4d(num_classes=CLASSES),
            ["layer1.0.bn2", "layer4.2.bn3"],
            ["conv1.weight", "fc.weight", "layer1.0.conv2.weight", "layer4.0.conv2.weight"],
            [],
        ),
        "seresnet50": (
            lambda: timm.create_model("seresnet50", num_classes=CLASSES),
            ["bn1", "layer4.2.bn3", "layer1.0.downsample.1"],
            ["conv1.weight", "fc.weight", "layer3.0.conv2.weight", "layer1.0.se.fc1.weight",
             "layer4.2.se.fc2.weight", "layer4.2.se.fc2.bias"],
            [],
        ),
        "seresnext50_32x4d": (
            lambda: timm.create_model("seresnext50_32x4d", num_classes=CLASSES),
            ["layer1.0.bn2", "layer4.2.bn3"],
            # Not conv1 / layer2: candle's float32 gradients through the grouped convolutions'
            # backward drift (conv1: 1.8e-4 relative, PyTorch float32's: 7.8e-7).
            ["fc.weight", "layer4.0.conv2.weight", "layer4.1.se.fc1.bias", "layer3.5.se.fc2.weight"],
            [],
        ),
    }
    for name, (make, bns, eval_grads, train_grads) in specs.items():
        out = reference(make, x, bns, eval_grads, train_grads)
        if name == "resnet18":
            out.update(
                reference(lambda: cifar(models.resnet18(num_classes=CLASSES)), x_cifar, ["bn1"],
                          ["conv1.weight"], ["conv1.weight", "fc.weight"], prefix="cifar.")
            )
        path = os.path.join(OUT_DIR, f"{name}.safetensors")
        save_file(out, path)
        scale = {k: float(v.abs().max()) for k, v in out.items()}
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")
        for k, v in sorted(scale.items()):
            print(f"  {k:45s} max |.| {v:.4g}")


if __name__ == "__main__":
    main()
