"""Reference outputs of torchvision's DenseNet-121, for densenet/tests/reference.rs.

Run by hand (not in CI):

    pip install torch torchvision safetensors numpy
    python scripts/gen_densenet_fixtures.py

The weights and the input are not stored: both sides compute them from the same closed-form
rule (`fill` below, mirrored in the Rust test), so the fixture holds only outputs (~60 KB):

* `eval.logits`: eval-mode logits of a batch of 2 images 3x64x64, and
  `eval.grad.features.conv0.weight`, the gradient of their mean cross-entropy (targets 3 and
  997) w.r.t. the first convolution;
* `train.logits`: train-mode logits (batch statistics; dropout is 0 in torchvision's
  DenseNet by default); `train.norm5.running_mean` / `train.norm5.running_var`:
  `features.norm5`'s running statistics after that one train-mode pass (momentum 0.1);
  `train.grad.*`: gradients of the train-mode loss w.r.t. `features.norm5` and the last
  convolution.

It also writes `densenet121.keys.txt`: every state-dict key (without `num_batches_tracked`)
with its shape (`name 64,3,7,7`), one per line, sorted, so the Rust test can check its names against
torchvision's.
"""
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file

HERE = os.path.dirname(__file__)
OUT_DIR = os.path.join(HERE, "..", "densenet", "tests", "fixtures")
GOLDEN = 0x9E3779B97F4A7C15


def pattern(shape, index, scale=1.0, offset=0.0):
    """offset + scale * u, u uniform in [-1, 1) from a splitmix64 hash of (element, index).

    Exact integer arithmetic (uint64, wrapping) then float64 operations that are correctly
    rounded on both sides, so Rust computes bit-identical values. (A smooth rule such as
    sin(0.37 * i + index) makes every weight matrix rank 2 and the network degenerate: batch
    statistics of nearly constant channels make train-mode outputs ill-conditioned.)
    """
    n = math.prod(shape)
    z = np.arange(n, dtype=np.uint64) + np.uint64((index * GOLDEN + GOLDEN) % (1 << 64))
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(11)).astype(np.float64) / float(1 << 53) * 2.0 - 1.0
    return torch.from_numpy(offset + scale * u).reshape(shape).to(torch.float32)


def fill(name, shape, index):
    """The closed-form value of parameter or buffer `name` (index = its rank among the sorted
    names): conv / linear weights uniform with He's variance (bound sqrt(6 / fan_in)),
    batch-norm scales in [0.8, 1.2], shifts, biases and means in [-0.1, 0.1], variances in
    [0.6, 1.4]."""
    if name.endswith("running_mean"):
        return pattern(shape, index, 0.1)
    if name.endswith("running_var"):
        return pattern(shape, index, 0.4, 1.0)
    if len(shape) > 1:
        fan_in = math.prod(shape[1:])
        return pattern(shape, index, math.sqrt(6.0 / fan_in))
    if name.endswith("weight"):  # batch-norm scale
        return pattern(shape, index, 0.2, 1.0)
    return pattern(shape, index, 0.1)  # biases


def fill_model(model):
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    with torch.no_grad():
        for j, key in enumerate(sorted(state)):
            state[key].copy_(fill(key, tuple(state[key].shape), j))
    return sorted(state)


def main():
    torch.manual_seed(0)
    model = torchvision.models.densenet121()
    keys = fill_model(model)
    x = pattern((2, 3, 64, 64), 1000)  # index 1000: no parameter has it
    targets = torch.tensor([3, 997])
    out = {}

    # Eval mode: logits, and the gradient of the mean cross-entropy w.r.t. the first conv.
    model.eval()
    logits = model(x)
    F.cross_entropy(logits, targets).backward()
    out["eval.logits"] = logits.detach().contiguous()
    out["eval.grad.features.conv0.weight"] = model.features.conv0.weight.grad.clone()
    model.zero_grad()

    # Train mode (batch statistics): logits, norm5's updated running statistics, gradients
    # w.r.t. the last conv and norm5. (The train-mode gradient of the first conv is not
    # compared: through 120 batch norms over a batch of two it is ill-conditioned, float32
    # PyTorch differs from float64 PyTorch by 1% there, against 4e-5 for the last conv.)
    model.train()
    logits = model(x)
    F.cross_entropy(logits, targets).backward()
    f = model.features
    out["train.logits"] = logits.detach().contiguous()
    out["train.norm5.running_mean"] = f.norm5.running_mean.detach().clone()
    out["train.norm5.running_var"] = f.norm5.running_var.detach().clone()
    out["train.grad.features.norm5.weight"] = f.norm5.weight.grad.clone()
    out["train.grad.features.norm5.bias"] = f.norm5.bias.grad.clone()
    out["train.grad.features.denseblock4.denselayer16.conv2.weight"] = (
        f.denseblock4.denselayer16.conv2.weight.grad.contiguous()
    )

    for k, v in out.items():
        print(f"{k}: {tuple(v.shape)} max |.| {v.abs().max().item():.4g}")
    os.makedirs(OUT_DIR, exist_ok=True)
    path = os.path.join(OUT_DIR, "densenet121.safetensors")
    save_file(out, path)
    os.chmod(path, 0o644)
    state = model.state_dict()
    with open(os.path.join(OUT_DIR, "densenet121.keys.txt"), "w") as f:
        for key in keys:
            f.write(f"{key} {','.join(str(d) for d in state[key].shape)}\n")
    print(f"wrote {path} and densenet121.keys.txt ({len(keys)} tensors)")


if __name__ == "__main__":
    main()
