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

* `V.eval`: the logits in eval mode of `pattern((2, 3, H, W), 0.5, 1.0)` ([2, 10]);
* `V.train`: the logits in train mode (dropout 0; there is no batch norm);
* `V.grad.<key>`: gradients of the mean cross-entropy (targets [3, 7]) of the train-mode
  logits w.r.t. a few variables. Large weight gradients are cut to their first four output
  rows (`grad[:4]`, documented per key in the tests) to keep the files small.
"""
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(__file__), "..")
CLASSES = 10


def pattern(shape, index, scale):
    """scale * sin(0.37 * i + index) over the flattened tensor, in float64 then float32."""
    n = math.prod(shape)
    i = torch.arange(n, dtype=torch.float64)
    return (scale * torch.sin(0.37 * i + index)).reshape(shape).to(torch.float32)


def fill_with_pattern(model):
    """Variable j of the sorted state dict: pattern(shape, j, 1/sqrt(fan_in)) (fan_in 10 for
    1-d tensors)."""
    with torch.no_grad():
        for j, (key, p) in enumerate(sorted(model.state_dict().items())):
            fan_in = p[0].numel() if p.dim() > 1 else 10
            p.copy_(pattern(tuple(p.shape), j, 1.0 / math.sqrt(fan_in)))


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


def first_rows(t):
    return t[:4].contiguous()


# variant -> (crate, builder, input (H, W), {gradient key: full or first rows})
VARIANTS = {
    "alexnet": (
        "alexnet",
        lambda: torchvision.models.AlexNet(num_classes=CLASSES, dropout=0.0),
        (96, 99),
        {"features.0.weight": first_rows, "features.10.bias": None, "classifier.6.weight": first_rows,
         "classifier.1.bias": None},
    ),
    "alexnet_2012": (
        "alexnet",
        lambda: alexnet_2012(CLASSES),
        (96, 99),
        {"features.0.weight": first_rows, "features.4.bias": None, "classifier.6.weight": first_rows,
         "classifier.1.bias": None},
    ),
    "zfnet": (
        "zfnet",
        lambda: zfnet(CLASSES),
        (70, 67),
        {"features.0.weight": first_rows, "features.4.bias": None, "features.12.bias": None,
         "classifier.6.weight": first_rows, "classifier.1.bias": None},
    ),
    "nin": (
        "nin",
        lambda: nin(CLASSES),
        (75, 71),
        {"features.0.weight": first_rows, "features.9.bias": None, "features.24.weight": first_rows,
         "classifier.0.weight": first_rows, "classifier.0.bias": None},
    ),
    "nin_cifar": (
        "nin",
        lambda: nin_cifar(CLASSES),
        (32, 29),
        {"features.0.weight": first_rows, "features.10.bias": None, "features.18.weight": first_rows,
         "classifier.0.weight": None, "classifier.0.bias": None},
    ),
}


def main():
    torch.manual_seed(0)
    outputs = {}
    for name, (crate, build, (h, w), grads) in VARIANTS.items():
        model = build()
        fill_with_pattern(model)
        x = pattern((2, 3, h, w), 0.5, 1.0)
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
        params = dict(model.named_parameters())
        for key, cut in grads.items():
            g = params[key].grad
            g = cut(g) if cut else g.contiguous()
            assert g.abs().max() > 0, f"{name}: zero gradient for {key}"
            out[f"{name}.grad.{key}"] = g
        print(f"{name}: logits {eval_logits.flatten()[:5].tolist()} (std {eval_logits.std():.4g}), "
              f"loss {loss.item():.6f}, params {sum(p.numel() for p in model.parameters()):,}")
    for crate, tensors in outputs.items():
        path = os.path.join(ROOT, crate, "tests", "fixtures", f"{crate}.safetensors")
        save_file(tensors, path)
        print(f"wrote {os.path.normpath(path)} ({os.path.getsize(path):,} bytes)")


if __name__ == "__main__":
    main()
