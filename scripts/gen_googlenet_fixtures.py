"""Reference outputs of GoogLeNet (Inception v1) and Inception-v3 computed by torchvision, for
googlenet/tests/reference.rs.

Run by hand (not in CI):

    pip install torch torchvision safetensors numpy
    python scripts/gen_googlenet_fixtures.py

As for the other architectures, the weights and the inputs are not stored: both sides compute
them from the same closed-form rule (`pattern` and `fill_with_pattern` below, mirrored in the
Rust test), so the fixture holds only outputs and a few gradients (tens of KB).

Every model has 10 classes and 3 input channels. Variable j of the sorted state dict (without
the `num_batches_tracked` counters) is filled with:

* convolution and linear weights: `pattern(shape, j, sqrt(6 / fan_in))` (He-uniform);
* batch-norm `weight`: `1 + pattern(shape, j, 0.3)`, `bias`: `pattern(shape, j, 0.1)`;
* batch-norm `running_mean`: `pattern(shape, j, 0.2)`, `running_var`: `1 + pattern(shape, j, 0.5)`;
* linear biases: `pattern(shape, j, 0.1)`.

The fixture `googlenet/tests/fixtures/googlenet.safetensors` stores:

* `googlenet.eval`: torchvision's `GoogLeNet` (aux heads on, dropout 0) in eval mode on
  `pattern((2, 3, 112, 112), 1000, 1.0)`: 112x112 is a size where `ceil_mode` changes every
  max pool's output (maxpool4 gives 4x4; it would give 3x3 in floor mode);
* `googlenet.train.{logits,aux1,aux2}`: the same model, freshly filled, in train mode (batch
  statistics, dropout 0 in the main and the auxiliary heads), computed in float64 (the
  weights and the input are the float32 patterns, converted) and stored as float32.
  float64, because the gradients of a float32 pass are ill-conditioned: where two values of a
  max-pool window are within float32 rounding of each other (here one window of
  `maxpool4`, relative gap 2e-5), an implementation's rounding decides which of them gets the
  window's gradient, and the flip changes the gradients of every earlier layer by a few
  percent. The Rust test compares the gradients in float64 (and that of `aux1.fc2.weight`,
  which no max pool precedes, in float32 too) and the outputs in both precisions;
* `googlenet.train.loss`: `CE(logits) + 0.3 * (CE(aux1) + CE(aux2))`, targets [3, 7];
* `googlenet.grad.<key>`: its gradients w.r.t. `conv1.conv.weight` and `aux1.fc2.weight`
  (at most 1024 values spread over each tensor, see `sample`);
* `googlenet.running.<bn>.{running_mean,running_var}`: running statistics of two batch norms
  after the train-mode pass (one of the trunk, one of `aux2`);
* `googlenet_paper.eval`: the paper's 5x5 convolutions in branch3 (padding 2) instead of
  torchvision's 3x3, with `transform_input=True`, eval mode, on the non-square
  `pattern((2, 3, 97, 83), 1001, 1.0)`;
* `inception_v3.eval`: torchvision's `Inception3` (aux head on, dropout 0) in eval mode on
  `pattern((2, 3, 107, 107), 1002, 1.0)` (Mixed_7c gives 2x2);
* `inception_v3.eval_transform`: the same with `transform_input=True` on a non-square
  `pattern((2, 3, 91, 117), 1003, 1.0)`;
* `inception_aux.{eval,train}`: Inception-v3's auxiliary head alone (`AuxLogits`, filled as in
  the whole model with the keys prefixed `AuxLogits.`) on `pattern((2, 768, 17, 17), 1004, 1.0)`
  in eval and in train mode: in the whole model the head needs a 299x299 input in training,
  which is too slow for the test suite.

It also writes `googlenet/tests/fixtures/state_dicts.txt.gz`, one line `model key d0,d1,...` per
variable of torchvision's `googlenet` and `inception_v3` (auxiliary heads on, 1000 classes,
without `num_batches_tracked`): the Rust test compares its variable names and shapes to it.
timm's `inception_v3.tv_in1k` has exactly torchvision's names without `AuxLogits.*` (checked
with timm 1.0.31: `set(timm.create_model("inception_v3.tv_in1k").state_dict()) ==
set(torchvision inception_v3(aux_logits=False).state_dict())`).
"""
import gzip
import math
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file
from torchvision.models.googlenet import BasicConv2d, GoogLeNet
from torchvision.models.inception import Inception3, InceptionAux

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "googlenet", "tests", "fixtures")
OUT = os.path.join(FIXTURES, "googlenet.safetensors")
KEYS = os.path.join(FIXTURES, "state_dicts.txt.gz")
CLASSES = 10
SAMPLES = 1024
MASK = (1 << 64) - 1


def pattern(shape, seed, scale, offset=0.0):
    """Deterministic pseudo-random values, uniform in [offset - scale, offset + scale): element
    i of the flattened tensor is `offset + scale * (2 * u - 1)`, computed in float64 and rounded
    to float32 once, where `u` is the top 24 bits of a SplitMix64-style mix of the state
    `seed * 2**32 + i`, divided by 2**24 (the rule of scripts/gen_alexnet_nin_fixtures.py)."""
    n = math.prod(shape)
    with np.errstate(over="ignore"):
        z = (np.arange(n, dtype=np.uint64) + np.uint64(seed << 32)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(40)).astype(np.float64) / float(1 << 24)
    values = (offset + scale * (2.0 * u - 1.0)).astype(np.float32)
    return torch.from_numpy(values).reshape(shape)


def rule(key, shape):
    """(scale, offset) of variable `key` (see the module documentation)."""
    if key.endswith("running_var"):
        return 0.5, 1.0
    if key.endswith("running_mean"):
        return 0.2, 0.0
    if ".bn." in key:
        return (0.3, 1.0) if key.endswith("weight") else (0.1, 0.0)
    if len(shape) > 1:
        return math.sqrt(6.0 / math.prod(shape[1:])), 0.0
    return 0.1, 0.0


def fill_with_pattern(state):
    """Fills a {name: tensor} state dict in place, variable j of the sorted names (without
    `num_batches_tracked`) from `pattern(shape, j, *rule(name))`."""
    keys = sorted(k for k in state if not k.endswith("num_batches_tracked"))
    with torch.no_grad():
        for j, key in enumerate(keys):
            t = state[key]
            scale, offset = rule(key, tuple(t.shape))
            t.copy_(pattern(tuple(t.shape), j, scale, offset))


def sample(t):
    """At most 1024 values spread over the flattened tensor: every `stride`-th value, with
    `stride = numel // 1024 + 1` for larger tensors, 1 for tensors of at most 1024 values."""
    n = t.numel()
    stride = 1 if n <= SAMPLES else n // SAMPLES + 1
    return t.flatten()[::stride].contiguous()


def googlenet(paper=False, transform_input=False):
    model = GoogLeNet(num_classes=CLASSES, aux_logits=True, transform_input=transform_input,
                      init_weights=False, dropout=0.0, dropout_aux=0.0)
    if paper:
        for name, module in model.named_children():
            if name.startswith("inception"):
                old = module.branch3[1].conv
                module.branch3[1] = BasicConv2d(old.in_channels, old.out_channels, kernel_size=5, padding=2)
    fill_with_pattern(model.state_dict())
    return model


def inception_v3(transform_input=False):
    model = Inception3(num_classes=CLASSES, aux_logits=True, transform_input=transform_input,
                       init_weights=False, dropout=0.0)
    fill_with_pattern(model.state_dict())
    return model


def main():
    out = {}
    targets = torch.tensor([3, 7])

    # GoogLeNet, eval mode.
    x = pattern((2, 3, 112, 112), 1000, 1.0)
    model = googlenet().eval()
    with torch.no_grad():
        out["googlenet.eval"] = model(x).contiguous()

    # GoogLeNet, train mode: logits, aux logits, gradients, running statistics, in float64
    # (see the module documentation).
    model = googlenet().double().train()
    logits, aux2, aux1 = model(x.double())
    loss = F.cross_entropy(logits, targets) + 0.3 * (F.cross_entropy(aux1, targets) + F.cross_entropy(aux2, targets))
    loss.backward()
    out["googlenet.train.logits"] = logits.detach().float().contiguous()
    out["googlenet.train.aux1"] = aux1.detach().float().contiguous()
    out["googlenet.train.aux2"] = aux2.detach().float().contiguous()
    out["googlenet.train.loss"] = loss.detach().float().reshape(1)
    params = dict(model.named_parameters())
    for key in ["conv1.conv.weight", "aux1.fc2.weight"]:
        out[f"googlenet.grad.{key}"] = sample(params[key].grad).float()
    state = model.state_dict()
    for bn in ["inception4a.branch2.1.bn", "aux2.conv.bn"]:
        for stat in ["running_mean", "running_var"]:
            out[f"googlenet.running.{bn}.{stat}"] = state[f"{bn}.{stat}"].float().contiguous()

    # The paper's 5x5 branch3, with transform_input, non-square input, eval mode.
    model = googlenet(paper=True, transform_input=True).eval()
    with torch.no_grad():
        out["googlenet_paper.eval"] = model(pattern((2, 3, 97, 83), 1001, 1.0)).contiguous()

    # Inception-v3, eval mode.
    model = inception_v3().eval()
    with torch.no_grad():
        out["inception_v3.eval"] = model(pattern((2, 3, 107, 107), 1002, 1.0)).contiguous()
    model = inception_v3(transform_input=True).eval()
    with torch.no_grad():
        out["inception_v3.eval_transform"] = model(pattern((2, 3, 91, 117), 1003, 1.0)).contiguous()

    # Inception-v3's auxiliary head alone, eval and train mode.
    xa = pattern((2, 768, 17, 17), 1004, 1.0)
    for mode in ["eval", "train"]:
        aux = InceptionAux(768, CLASSES)
        prefixed = {f"AuxLogits.{k}": v for k, v in aux.state_dict().items()}
        fill_with_pattern(prefixed)
        aux.train(mode == "train")
        with torch.no_grad():
            out[f"inception_aux.{mode}"] = aux(xa).contiguous()

    for key, value in sorted(out.items()):
        print(f"{key:50} {tuple(value.shape)} max|.| {value.abs().max().item():.4g}")
    save_file(out, OUT)
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")

    lines = []
    models = {
        "googlenet": GoogLeNet(aux_logits=True, init_weights=False),
        "inception_v3": Inception3(aux_logits=True, init_weights=False),
    }
    for name, model in models.items():
        for key, value in model.state_dict().items():
            if not key.endswith("num_batches_tracked"):
                lines.append(f"{name} {key} {','.join(str(d) for d in value.shape)}\n")
    # mtime=0: the same bytes on every run.
    with gzip.GzipFile(KEYS, "wb", mtime=0) as f:
        f.write("".join(lines).encode())
    print(f"wrote {KEYS} ({os.path.getsize(KEYS)} bytes, {len(lines)} variables)")


if __name__ == "__main__":
    main()
