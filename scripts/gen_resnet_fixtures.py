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
* `grad.<param>`: gradients of the mean cross-entropy (targets 3, 7) of the train pass.

`resnet18.safetensors` also holds `cifar.eval.logits` / `cifar.train.logits`: ResNet-18 with
the CIFAR stem (conv1 3x3 stride 1 padding 1, no max pool) on a 2x3x32x32 batch.
"""
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file
from torchvision import models

OUT_DIR = os.path.join(os.path.dirname(__file__), "..", "resnet", "tests", "fixtures")
CLASSES = 10
TARGETS = torch.tensor([3, 7])


def pattern(shape, index, scale, offset=0.0):
    """offset + scale * sin(0.37 * i + index) over the flattened tensor, in float64 then float32."""
    n = math.prod(shape)
    i = torch.arange(n, dtype=torch.float64)
    return (offset + scale * torch.sin(0.37 * i + index)).reshape(shape).to(torch.float32)


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
    """torchvision's `_forward_impl` up to layer4."""
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    return model.layer4(model.layer3(model.layer2(model.layer1(x))))


def cifar(model):
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def reference(make, x, bns, grads, prefix=""):
    out = {}
    model = make()
    fill(model)
    model.eval()
    with torch.no_grad():
        out[f"{prefix}eval.features"] = features(model, x).mean((2, 3))
        out[f"{prefix}eval.logits"] = model(x)
    model = make()
    fill(model)
    model.train()
    logits = model(x)
    out[f"{prefix}train.logits"] = logits.detach()
    state = model.state_dict()
    for bn in bns:
        for stat in ["running_mean", "running_var"]:
            out[f"{prefix}train.{bn}.{stat}"] = state[f"{bn}.{stat}"].clone()
    F.cross_entropy(logits, TARGETS).backward()
    params = dict(model.named_parameters())
    for name in grads:
        out[f"{prefix}grad.{name}"] = params[name].grad
    return out


def main():
    torch.set_grad_enabled(True)
    x = pattern((2, 3, 65, 71), 0.5, 1.0)
    x_cifar = pattern((2, 3, 32, 32), 1.5, 1.0)
    specs = {
        "resnet18": (
            lambda: models.resnet18(num_classes=CLASSES),
            ["bn1", "layer4.1.bn2", "layer2.0.downsample.1"],
            ["conv1.weight", "fc.weight", "fc.bias", "bn1.weight", "layer2.0.downsample.0.weight",
             "layer3.1.conv2.weight"],
        ),
        "resnet50": (
            lambda: models.resnet50(num_classes=CLASSES),
            ["bn1", "layer4.2.bn3", "layer1.0.downsample.1"],
            ["conv1.weight", "fc.weight", "layer3.0.conv2.weight"],
        ),
        "resnext50_32x4d": (
            lambda: models.resnext50_32x4d(num_classes=CLASSES),
            ["layer1.0.bn2", "layer4.2.bn3"],
            ["conv1.weight", "fc.weight", "layer1.0.conv2.weight", "layer4.0.conv2.weight"],
        ),
    }
    os.makedirs(OUT_DIR, exist_ok=True)
    for name, (make, bns, grads) in specs.items():
        out = reference(make, x, bns, grads)
        if name == "resnet18":
            out.update(
                reference(lambda: cifar(models.resnet18(num_classes=CLASSES)), x_cifar, ["bn1"],
                          ["conv1.weight"], prefix="cifar.")
            )
        out = {k: v.detach().contiguous() for k, v in out.items()}
        path = os.path.join(OUT_DIR, f"{name}.safetensors")
        save_file(out, path)
        scale = {k: float(v.abs().max()) for k, v in out.items()}
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")
        for k, v in sorted(scale.items()):
            print(f"  {k:45s} max |.| {v:.4g}")


if __name__ == "__main__":
    main()
