"""Reference outputs of torchvision's VGG, for vgg/tests/reference.rs.

Run by hand (not in CI; a few minutes, most of it hashing the 132-138M weights of each model):

    pip install torch torchvision safetensors numpy
    python scripts/gen_vgg_fixtures.py

Writes two files under vgg/tests/fixtures/:

* `torchvision_keys.txt`: the state-dict keys and shapes of the eight torchvision models
  (`vgg11` ... `vgg19_bn`, 1000 classes), one `variant key d0,d1,...` line per tensor, without
  the `num_batches_tracked` buffers (which the Rust models do not hold).
* `vgg.safetensors`: for `vgg11`, `vgg11_bn` and `vgg16` with 10 classes, on a batch of two
  64x64 images (the trunk's 2x2 output is pooled up to 7x7 by the adaptive pool):
  - `{variant}.input_index`: the input is `hashed((2, 3, 64, 64), input_index, 1.0)` (see
    `pick_input`);
  - `{variant}.eval.logits`: eval-mode logits;
  - `{variant}.train.logits`: train-mode logits (batch statistics, dropout p = 0), computed
    after the eval pass;
  - `{variant}.running_mean.{layer}` / `running_var.{layer}` (batch-norm variants): running
    statistics after that train-mode pass, for the first and the last batch norm;
  - `{variant}.grad.features.0.weight` (full), `.grad.classifier.6.weight` (its first 128
    columns, a slice to keep the file small) and `.grad.classifier.6.bias`: gradients of the
    mean cross-entropy of the train-mode logits (targets 3 and 7).

The weights and the input are not stored: both sides compute them from the same closed-form
rule (`hashed` below, mirrored in the Rust test). It is LeNet's `pattern` idea with a hash
(splitmix64 of the element index and the tensor's position in the sorted state dict) in place
of `sin(0.37 i + index)`: a sinusoid in the flattened index is nearly orthogonal to the
activations of a deep network, which then collapse onto the biases and make every variant
give the same logits; the hash behaves like uniform noise, and with He scaling
(`sqrt(6 / fan_in)`) activations stay O(1) through all sixteen layers. Integer and f64
arithmetic only, so both sides compute bit-identical f32 weights.
"""
import copy
import math
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "vgg", "tests", "fixtures")
M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
VARIANTS = ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]
REFERENCE = ["vgg11", "vgg11_bn", "vgg16"]
CLASSES = 10
GRAD_COLUMNS = 128


def hashed(shape, index, scale, offset=0.0):
    """offset + scale * (2u - 1), u in [0, 1) the splitmix64 hash of (index, element), as f32.

    z = (i + index * GOLDEN) * GOLDEN, then splitmix64's finaliser; u = (z >> 11) / 2^53.
    Every operation wraps modulo 2^64 (numpy's uint64), the rest is exact f64 arithmetic.
    """
    n = math.prod(shape)
    with np.errstate(over="ignore"):
        z = np.arange(n, dtype=np.uint64) + np.uint64((index * GOLDEN) & M64)
        z = z * np.uint64(GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return torch.from_numpy(offset + scale * (2.0 * u - 1.0)).reshape(shape).to(torch.float32)


def fill(model):
    """The weights of the Rust test's `fill`: tensor `j` of the sorted state dict (without
    `num_batches_tracked`) gets

    * conv / linear weights: scale sqrt(6 / fan_in) (He-uniform: std sqrt(2 / fan_in));
    * batch-norm scale: 1 +- 0.25; running_var: 1 +- 0.5; running_mean and biases: +- 0.1.
    """
    state = model.state_dict()
    keys = sorted(k for k in state if not k.endswith("num_batches_tracked"))
    with torch.no_grad():
        for j, key in enumerate(keys):
            p = state[key]
            shape = tuple(p.shape)
            if p.dim() > 1:
                v = hashed(shape, j, math.sqrt(6.0 / math.prod(shape[1:])))
            elif key.endswith("running_var"):
                v = hashed(shape, j, 0.5, 1.0)
            elif key.endswith("weight"):
                v = hashed(shape, j, 0.25, 1.0)
            else:
                v = hashed(shape, j, 0.1)
            p.copy_(v)


def write_keys():
    lines = []
    for name in VARIANTS:
        model = getattr(torchvision.models, name)(weights=None)
        for key, t in model.state_dict().items():
            if key.endswith("num_batches_tracked"):
                continue
            lines.append(f"{name} {key} {','.join(str(d) for d in t.shape)}")
    path = os.path.join(FIXTURES, "torchvision_keys.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {path} ({len(lines)} lines)")


def batch_norms(model):
    return [f"features.{i}" for i, m in enumerate(model.features) if isinstance(m, nn.BatchNorm2d)]


def head_margin(model, x):
    """The smallest |pre-activation| of the classifier's two ReLUs, relative to the largest."""
    with torch.no_grad():
        h = torch.flatten(model.avgpool(model.features(x)), 1)
        z1 = model.classifier[0](h)
        z2 = model.classifier[3](z1.relu())
    return min((z.abs().min() / z.abs().max()).item() for z in (z1, z2))


def pick_input(model):
    """The first input index from 10,000 on whose train-mode pre-activations in the classifier
    are all at least 1e-4 (relative) away from zero: a ReLU whose input is within float
    rounding of zero can switch one way here and the other way in candle, which moves that
    unit's gradient (and, through it, every earlier gradient) by percents. Searches on a copy:
    train-mode passes update the running statistics."""
    model = copy.deepcopy(model).train()
    for index in range(10_000, 10_500):
        x = hashed((2, 3, 64, 64), index, 1.0)
        if head_margin(model, x) >= 1e-4:
            return index, x
    raise RuntimeError("no input with a safe margin")


def write_reference():
    targets = torch.tensor([3, 7])
    out = {}
    for name in REFERENCE:
        model = getattr(torchvision.models, name)(weights=None, num_classes=CLASSES)
        fill(model)
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
        index, x = pick_input(model)
        out[f"{name}.input_index"] = torch.tensor([index], dtype=torch.int64)
        model.eval()
        with torch.no_grad():
            out[f"{name}.eval.logits"] = model(x).contiguous()
        model.train()
        logits = model(x)
        out[f"{name}.train.logits"] = logits.detach().contiguous()
        bns = batch_norms(model)
        for layer in bns[:1] + bns[-1:]:
            bn = model.features[int(layer.split(".")[1])]
            out[f"{name}.running_mean.{layer}"] = bn.running_mean.clone()
            out[f"{name}.running_var.{layer}"] = bn.running_var.clone()
        F.cross_entropy(logits, targets).backward()
        out[f"{name}.grad.features.0.weight"] = model.features[0].weight.grad.contiguous()
        fc = model.classifier[6]
        out[f"{name}.grad.classifier.6.weight"] = fc.weight.grad[:, :GRAD_COLUMNS].contiguous()
        out[f"{name}.grad.classifier.6.bias"] = fc.bias.grad.contiguous()
        print(name, "input", index, out[f"{name}.train.logits"][0, :4].tolist())
        del model
    path = os.path.join(FIXTURES, "vgg.safetensors")
    save_file(out, path)
    print(f"wrote {path}")


def main():
    os.makedirs(FIXTURES, exist_ok=True)
    torch.manual_seed(0)
    write_keys()
    write_reference()


if __name__ == "__main__":
    main()
