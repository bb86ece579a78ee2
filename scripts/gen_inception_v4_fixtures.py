"""Reference outputs of timm's Inception-v4 and Inception-ResNet-v2, for
googlenet/tests/inception_v4.rs.

Run by hand (not in CI):

    pip install torch timm safetensors numpy
    python scripts/gen_inception_v4_fixtures.py

timm's `inception_v4` and `inception_resnet_v2` (the layouts of `timm/inception_v4.tf_in1k`
and `timm/inception_resnet_v2.tf_in1k`), full size with 1000 classes, get the closed-form
weights of `gen_densenet_fixtures.fill` (ranked by their sorted key names without
`num_batches_tracked`, as the Rust test does), so no weights are stored. Dropout is off
(timm's default `drop_rate=0`), so train mode (batch statistics) is deterministic. For each
model `<m>`, stored in `googlenet/tests/fixtures/<m>.safetensors`:

* `eval.logits`: logits of `pattern((2, 3, 107, 107), 1000)` in eval mode (107x107: the last
  map is 2x2, so the last batch norms see 8 values a channel in train mode);
* `eval.features`: `forward_features` in eval mode (`[2, 1536, 2, 2]`);
* `train.logits`: the logits in train mode, computed in float64 (the float32 weights and input
  converted) and stored as float32. Through 100 and more batch norms over a batch of two, the
  train-mode pass is ill-conditioned in float32: PyTorch's own float32 logits are
  `train.f32_deviation` (relative, stored) away from its float64 ones (3e-3 for
  Inception-v4, 2e-5 for Inception-ResNet-v2), so the Rust test compares its float64 pass to
  these at 1e-4 and bounds its float32 pass by that deviation;
* `train.grad.<key>`: gradients of the mean cross-entropy (targets 3 and 997) in train mode
  w.r.t. a few parameters, in float64 as the logits (float32 PyTorch is up to 13% away from
  them on the early layers), at most 1024 values spread over each tensor (`sample`);
* `train.running.<bn>.{running_mean,running_var}`: one batch norm's running statistics after
  the train-mode pass.

It also writes the state-dict keys and shapes (`<m>.timm.keys.txt`, sorted, without
`num_batches_tracked`), timm's `feature_info` (`<m>.feature_info.txt`: module, channels,
reduction per line) and the parameter counts (`inception_v4.params.txt`: name and timm's
count per line).
"""
import os
import sys

import timm
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from gen_densenet_fixtures import fill, pattern  # noqa: E402  (the shared closed-form rule)

HERE = os.path.dirname(__file__)
OUT_DIR = os.path.join(HERE, "..", "googlenet", "tests", "fixtures")
MODELS = {
    "inception_v4": {
        "grads": ["features.0.conv.weight", "features.10.branch1.1.conv.weight",
                  "features.21.branch2_3b.bn.weight", "last_linear.weight", "last_linear.bias"],
        "running": "features.21.branch3.1.bn",
    },
    "inception_resnet_v2": {
        "grads": ["conv2d_1a.conv.weight", "repeat_1.10.conv2d.weight", "repeat_2.8.conv2d.bias",
                  "conv2d_7b.bn.weight", "classif.weight", "classif.bias"],
        "running": "conv2d_7b.bn",
    },
}
SIZE = 107


def keys_file(path, state):
    with open(path, "w") as f:
        for key in sorted(k for k in state if not k.endswith("num_batches_tracked")):
            f.write(f"{key} {','.join(str(d) for d in state[key].shape)}\n")


def filled(name):
    model = timm.create_model(name, drop_rate=0.0)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    with torch.no_grad():
        for j, key in enumerate(sorted(state)):
            state[key].copy_(fill(key, tuple(state[key].shape), j))
    return model


def train_grads(model, x, targets, grads):
    model.train()
    model.zero_grad()
    logits = model(x)
    F.cross_entropy(logits, targets).backward()
    params = dict(model.named_parameters())
    return logits, {k: params[k].grad.clone() for k in grads}


def sample(t):
    """At most 1024 values spread over the flattened tensor: every `stride`-th value, with
    `stride = numel // 1024 + 1` for larger tensors (gen_googlenet_fixtures.py's rule)."""
    n = t.numel()
    stride = 1 if n <= 1024 else n // 1024 + 1
    return t.flatten()[::stride].contiguous()


def main():
    torch.manual_seed(0)
    x = pattern((2, 3, SIZE, SIZE), 1000)
    targets = torch.tensor([3, 997])
    params_lines = []
    for name, spec in MODELS.items():
        out = {}
        model = filled(name).eval()
        with torch.no_grad():
            out["eval.logits"] = model(x).contiguous()
            out["eval.features"] = model.forward_features(x).contiguous()
        # Train mode in float32 (the logits) and float64 (the gradients, the statistics).
        logits32, grads32 = train_grads(model, x, targets, spec["grads"])
        model64 = filled(name).double()
        logits64, grads64 = train_grads(model64, x.double(), targets, spec["grads"])
        out["train.logits"] = logits64.detach().float().contiguous()
        diff = (logits64.detach() - logits32.detach().double()).abs().max() / logits64.abs().max()
        print(f"{name}: train logits, float32 vs float64: {diff.item():.3g} relative")
        out["train.f32_deviation"] = diff.float().reshape(1)
        for key in spec["grads"]:
            g64 = grads64[key]
            rel = (grads32[key].double() - g64).abs().max() / g64.abs().max()
            print(f"{name}: grad {key}, float32 vs float64: {rel.item():.3g} relative")
            out[f"train.grad.{key}"] = sample(g64.float())
        state = model64.state_dict()
        for stat in ["running_mean", "running_var"]:
            key = f"{spec['running']}.{stat}"
            out[f"train.running.{key}"] = state[key].float().contiguous()

        for k, v in out.items():
            print(f"{name} {k}: {tuple(v.shape)} max |.| {v.abs().max().item():.4g}")
        os.makedirs(OUT_DIR, exist_ok=True)
        path = os.path.join(OUT_DIR, f"{name}.safetensors")
        from safetensors.torch import save_file

        save_file(out, path)
        os.chmod(path, 0o644)
        keys_file(os.path.join(OUT_DIR, f"{name}.timm.keys.txt"), model.state_dict())
        with open(os.path.join(OUT_DIR, f"{name}.feature_info.txt"), "w") as f:
            for info in model.feature_info:
                f.write(f"{info['module']} {info['num_chs']} {info['reduction']}\n")
        count = sum(p.numel() for p in timm.create_model(name).parameters())
        print(f"{name}: timm {count} parameters; wrote {path}")
        params_lines.append(f"{name} {count}\n")
    with open(os.path.join(OUT_DIR, "inception_v4.params.txt"), "w") as f:
        f.writelines(params_lines)


if __name__ == "__main__":
    main()
