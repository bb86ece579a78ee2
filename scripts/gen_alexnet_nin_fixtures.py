"""Reference outputs of AlexNet, ZFNet and Network in Network computed by PyTorch, for
alexnet/tests/reference.rs, zfnet/tests/reference.rs and nin/tests/reference.rs.

Run by hand (not in CI):

    pip install torch torchvision safetensors numpy
    python scripts/gen_alexnet_nin_fixtures.py

As for LeNet (scripts/gen_lenet_fixtures.py), the weights and the inputs are not stored: both
sides compute them from the same formula (`pattern` below, mirrored in the Rust tests), so the
fixtures hold only outputs and a few gradients (tens of KB).

Models, all with 10 classes, 3 input channels and dropout 0 (so train mode is deterministic):

* `alexnet`: torchvision's own `torchvision.models.AlexNet`;
* `alexnet_2012`: the 2012 paper's layout (96/256/384/384/256 channels, LRN after the ReLUs of
  conv1 and conv2), written below with torchvision's structure and key names;
* `zfnet`: Zeiler & Fergus 2013 (conv1 7x7/2, conv2 5x5/2, ceil-mode pooling, LRN after pool1
  and pool2);
* `nin`, `nin_cifar`: Network in Network, the Caffe model zoo's ImageNet model and the CIFAR-10
  model, laid out as `features.N` + `classifier.0` (the last 1x1 convolution).

For each variant `V` a file `<crate>/tests/fixtures/<crate>.safetensors` stores:

* `V.eval`: the logits in eval mode of `pattern((2, 3, H, W), 1000, scale)` ([2, 10]; scale
  100 for the models with LRN, 1 for the others, see VARIANTS);
* `V.train`: the logits in train mode (dropout 0; there is no batch norm);
* `V.min_size`: the smallest n for which PyTorch runs the model on a [1, 3, n, n] input;
* `V.grad.<key>`: gradients of the mean cross-entropy (targets [3, 7]) of the train-mode
  logits w.r.t. a few variables, reduced to at most 1024 values spread over the tensor
  (`sample` below) to keep the files small.
"""
import math
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(__file__), "..")
CLASSES = 10


MASK = (1 << 64) - 1


def pattern(shape, seed, scale):
    """Deterministic pseudo-random values, uniform in [-scale, scale): element i of the
    flattened tensor is `scale * (2 * u - 1)` where `u` is the top 24 bits of SplitMix64's
    output for the state `seed * 2**32 + i`, divided by 2**24 (exact in float32; the product
    with `scale` is rounded from float64 to float32 once, on both sides).

    LeNet's `sin(0.37 * i + index)` is too regular for these deeper networks: its sums over
    windows cancel, and after a few layers the activations no longer depend on the input.
    """
    n = math.prod(shape)
    with np.errstate(over="ignore"):
        z = (np.arange(n, dtype=np.uint64) + np.uint64(seed << 32)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(40)).astype(np.float64) / float(1 << 24)
    values = (scale * (2.0 * u - 1.0)).astype(np.float32)
    return torch.from_numpy(values).reshape(shape)


def fill_with_pattern(model):
    """Variable j of the sorted state dict: weights `pattern(shape, j, sqrt(6 / fan_in))`
    (He-uniform, so the signal neither dies nor explodes through the ReLUs), biases
    `pattern(shape, j, 0.1)`."""
    with torch.no_grad():
        for j, (key, p) in enumerate(sorted(model.state_dict().items())):
            scale = math.sqrt(6.0 / p[0].numel()) if p.dim() > 1 else 0.1
            p.copy_(pattern(tuple(p.shape), j, scale))


def lrn():
    return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)


def classifier(num_classes):
    """torchvision's AlexNet classifier (dropout 0)."""
    return nn.Sequential(
        nn.Dropout(0.0),
        nn.Linear(256 * 6 * 6, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(0.0),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Linear(4096, num_classes),
    )


class AlexNetLike(nn.Module):
    """torchvision's AlexNet structure around other `features`."""

    def __init__(self, features, num_classes):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = classifier(num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def alexnet_2012(num_classes):
    features = nn.Sequential(
        nn.Conv2d(3, 96, 11, stride=4, padding=2),  # 0
        nn.ReLU(inplace=True),  # 1
        lrn(),  # 2
        nn.MaxPool2d(3, 2),  # 3
        nn.Conv2d(96, 256, 5, padding=2),  # 4
        nn.ReLU(inplace=True),  # 5
        lrn(),  # 6
        nn.MaxPool2d(3, 2),  # 7
        nn.Conv2d(256, 384, 3, padding=1),  # 8
        nn.ReLU(inplace=True),  # 9
        nn.Conv2d(384, 384, 3, padding=1),  # 10
        nn.ReLU(inplace=True),  # 11
        nn.Conv2d(384, 256, 3, padding=1),  # 12
        nn.ReLU(inplace=True),  # 13
        nn.MaxPool2d(3, 2),  # 14
    )
    return AlexNetLike(features, num_classes)


def zfnet(num_classes):
    features = nn.Sequential(
        nn.Conv2d(3, 96, 7, stride=2, padding=1),  # 0
        nn.ReLU(inplace=True),  # 1
        nn.MaxPool2d(3, 2, ceil_mode=True),  # 2
        lrn(),  # 3
        nn.Conv2d(96, 256, 5, stride=2),  # 4
        nn.ReLU(inplace=True),  # 5
        nn.MaxPool2d(3, 2, ceil_mode=True),  # 6
        lrn(),  # 7
        nn.Conv2d(256, 384, 3, padding=1),  # 8
        nn.ReLU(inplace=True),  # 9
        nn.Conv2d(384, 384, 3, padding=1),  # 10
        nn.ReLU(inplace=True),  # 11
        nn.Conv2d(384, 256, 3, padding=1),  # 12
        nn.ReLU(inplace=True),  # 13
        nn.MaxPool2d(3, 2, ceil_mode=True),  # 14
    )
    return AlexNetLike(features, num_classes)


class Nin(nn.Module):
    def __init__(self, features, features_out, num_classes):
        super().__init__()
        self.features = features
        self.classifier = nn.Sequential(
            nn.Conv2d(features_out, num_classes, 1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def conv_relu(cin, cout, k, stride=1, padding=0):
    return [nn.Conv2d(cin, cout, k, stride=stride, padding=padding), nn.ReLU(inplace=True)]


def nin(num_classes):
    layers = (
        conv_relu(3, 96, 11, stride=4)  # 0-1
        + conv_relu(96, 96, 1)  # 2-3
        + conv_relu(96, 96, 1)  # 4-5
        + [nn.MaxPool2d(3, 2, ceil_mode=True)]  # 6
        + conv_relu(96, 256, 5, padding=2)  # 7-8
        + conv_relu(256, 256, 1)  # 9-10
        + conv_relu(256, 256, 1)  # 11-12
        + [nn.MaxPool2d(3, 2, ceil_mode=True)]  # 13
        + conv_relu(256, 384, 3, padding=1)  # 14-15
        + conv_relu(384, 384, 1)  # 16-17
        + conv_relu(384, 384, 1)  # 18-19
        + [nn.MaxPool2d(3, 2, ceil_mode=True), nn.Dropout(0.0)]  # 20, 21
        + conv_relu(384, 1024, 3, padding=1)  # 22-23
        + conv_relu(1024, 1024, 1)  # 24-25
    )
    return Nin(nn.Sequential(*layers), 1024, num_classes)


def nin_cifar(num_classes):
    layers = (
        conv_relu(3, 192, 5, padding=2)  # 0-1
        + conv_relu(192, 160, 1)  # 2-3
        + conv_relu(160, 96, 1)  # 4-5
        + [nn.MaxPool2d(3, 2, ceil_mode=True), nn.Dropout(0.0)]  # 6, 7
        + conv_relu(96, 192, 5, padding=2)  # 8-9
        + conv_relu(192, 192, 1)  # 10-11
        + conv_relu(192, 192, 1)  # 12-13
        + [nn.AvgPool2d(3, 2, ceil_mode=True), nn.Dropout(0.0)]  # 14, 15
        + conv_relu(192, 192, 3, padding=1)  # 16-17
        + conv_relu(192, 192, 1)  # 18-19
    )
    return Nin(nn.Sequential(*layers), 192, num_classes)


SAMPLES = 1024


def sample(t):
    """At most 1024 values spread over the flattened tensor: every `stride`-th value, with
    `stride = numel // 1024 + 1` for larger tensors (not a multiple of a row length, so the
    samples visit many input channels), 1 for tensors of at most 1024 values."""
    n = t.numel()
    stride = 1 if n <= SAMPLES else n // SAMPLES + 1
    return t.flatten()[::stride].contiguous()


# variant -> (crate, builder, input (H, W), input scale, keys of the stored gradients). The
# models with local response normalisation get inputs in the range of Caffe's (mean-subtracted
# 0-255 pixels, scale 100): with inputs of order 1, LRN(k=2, alpha=1e-4) is almost a constant
# factor 2^-0.75, and moving it across a max pooling would go unnoticed.
VARIANTS = {
    "alexnet": (
        "alexnet",
        lambda: torchvision.models.AlexNet(num_classes=CLASSES, dropout=0.0),
        (96, 99),
        1.0,
        ["features.0.weight", "features.10.bias", "classifier.1.weight", "classifier.6.weight",
         "classifier.6.bias"],
    ),
    "alexnet_2012": (
        "alexnet",
        lambda: alexnet_2012(CLASSES),
        (96, 99),
        100.0,
        ["features.0.weight", "features.4.bias", "classifier.1.weight", "classifier.6.weight",
         "classifier.6.bias"],
    ),
    "zfnet": (
        "zfnet",
        lambda: zfnet(CLASSES),
        (70, 67),
        100.0,
        ["features.0.weight", "features.4.bias", "features.12.weight", "classifier.1.weight",
         "classifier.6.weight", "classifier.6.bias"],
    ),
    "nin": (
        "nin",
        lambda: nin(CLASSES),
        (75, 71),
        1.0,
        ["features.0.weight", "features.9.bias", "features.24.weight", "classifier.0.weight",
         "classifier.0.bias"],
    ),
    "nin_cifar": (
        "nin",
        lambda: nin_cifar(CLASSES),
        (32, 29),
        1.0,
        ["features.0.weight", "features.10.bias", "features.18.weight", "classifier.0.weight",
         "classifier.0.bias"],
    ),
}


def min_size(model):
    """The smallest n such that PyTorch runs the model on a [1, 3, n, n] input."""
    for n in range(1, 512):
        try:
            with torch.no_grad():
                model(torch.zeros(1, 3, n, n))
            return n
        except RuntimeError:
            pass
    raise AssertionError("no size up to 511 works")


def main():
    torch.manual_seed(0)
    outputs = {}
    for name, (crate, build, (h, w), scale, grads) in VARIANTS.items():
        model = build()
        fill_with_pattern(model)
        x = pattern((2, 3, h, w), 1000, scale)
        targets = torch.tensor([3, 7])
        model.eval()
        with torch.no_grad():
            eval_logits = model(x)
        model.train()
        logits = model(x)
        loss = F.cross_entropy(logits, targets)
        loss.backward()
        out = outputs.setdefault(crate, {})
        out[f"{name}.eval"] = eval_logits.contiguous()
        out[f"{name}.train"] = logits.detach().contiguous()
        model.eval()
        smallest = min_size(model)
        out[f"{name}.min_size"] = torch.tensor([smallest], dtype=torch.int64)
        params = dict(model.named_parameters())
        for key in grads:
            g = sample(params[key].grad)
            assert g.abs().max() > 0, f"{name}: zero gradient for {key}"
            out[f"{name}.grad.{key}"] = g
        count = sum(p.numel() for p in model.parameters())
        print(f"{name}: logits {eval_logits.flatten()[:5].tolist()} (std {eval_logits.std():.4g}), "
              f"loss {loss.item():.6f}, min size {smallest}, params {count:,}")
    for crate, tensors in outputs.items():
        path = os.path.join(ROOT, crate, "tests", "fixtures", f"{crate}.safetensors")
        save_file(tensors, path)
        print(f"wrote {os.path.normpath(path)} ({os.path.getsize(path):,} bytes)")


if __name__ == "__main__":
    main()
