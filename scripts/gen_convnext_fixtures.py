"""Reference outputs of ConvNeXt-T from timm and torchvision, for convnext/tests/reference.rs.

Run by hand (not in CI):

    pip install torch torchvision timm safetensors numpy
    python scripts/gen_convnext_fixtures.py

timm's `convnext_tiny` (the layout of `timm/convnext_tiny.fb_in1k`), full size, gets the
closed-form weights of `gen_densenet_fixtures.fill` (ranked by its sorted key names, as the Rust
test does: conv / linear weights uniform with He's variance, LayerNorm scales in [0.8, 1.2],
biases, shifts and layer scales `gamma` in [-0.1, 0.1]), so no weights are stored; torchvision's
`convnext_tiny` gets the same tensors through a key mapping written here independently of the
Rust one (`layer_scale` reshaped to `[C, 1, 1]`), and the script checks that both models agree.
Stochastic depth and dropout are off (`drop_path_rate=0, drop_rate=0` /
`stochastic_depth_prob=0`), so train mode is deterministic. Stored (~20 KB):

* `eval.logits`, `train.logits` (timm) and `tv.eval.logits`, `tv.train.logits` (torchvision):
  logits of a batch of 2 images 3x64x64 in eval mode and in train mode;
* `eval.features`: timm's `forward_features` (`[2, 768, 2, 2]`);
* `train.grad.<key>`: gradients of the mean cross-entropy (targets 3 and 997) in train mode
  w.r.t. the stem convolution, a downsampling LayerNorm, a depthwise convolution, a layer scale
  and the head's LayerNorm.

It also writes the state-dict keys and shapes of both libraries, sorted
(`convnext_tiny.timm.keys.txt`, `convnext_tiny.torchvision.keys.txt`), timm's `feature_info`
of `convnext_tiny` (`convnext_tiny.feature_info.txt`: module, channels, reduction per line) and
the parameter counts of every variant in both libraries (`convnext.params.txt`: name, timm's
count, torchvision's count).
"""
import os
import sys

import timm
import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.dirname(__file__))
from gen_densenet_fixtures import fill, pattern  # noqa: E402  (the shared closed-form rule)

HERE = os.path.dirname(__file__)
OUT_DIR = os.path.join(HERE, "..", "convnext", "tests", "fixtures")
VARIANTS = ["convnext_tiny", "convnext_small", "convnext_base"]
GRADS = [
    "stem.0.weight",
    "stages.1.downsample.0.weight",
    "stages.2.blocks.4.conv_dw.weight",
    "stages.3.blocks.2.gamma",
    "head.norm.weight",
]
BLOCK = {"0": "conv_dw", "2": "norm", "3": "mlp.fc1", "5": "mlp.fc2"}


def torchvision_to_timm_key(key):
    """The timm name of torchvision key `key`."""
    p = key.split(".")
    if p[0] == "classifier":
        return {"0": "head.norm", "2": "head.fc"}[p[1]] + "." + p[2]
    f = int(p[1])
    if f == 0:
        return f"stem.{p[2]}.{p[3]}"
    if f % 2 == 0:
        return f"stages.{f // 2}.downsample.{p[2]}.{p[3]}"
    if p[3] == "layer_scale":
        return f"stages.{f // 2}.blocks.{p[2]}.gamma"
    return f"stages.{f // 2}.blocks.{p[2]}.{BLOCK[p[4]]}.{p[5]}"


def keys_file(path, state):
    with open(path, "w") as f:
        for key in sorted(k for k in state if not k.endswith("num_batches_tracked")):
            f.write(f"{key} {','.join(str(d) for d in state[key].shape)}\n")


def main():
    torch.manual_seed(0)
    model = timm.create_model("convnext_tiny", drop_rate=0.0, drop_path_rate=0.0)
    state = model.state_dict()
    with torch.no_grad():
        for j, key in enumerate(sorted(state)):
            state[key].copy_(fill(key, tuple(state[key].shape), j))

    tv = torchvision.models.convnext_tiny(stochastic_depth_prob=0.0)
    with torch.no_grad():
        for key, value in tv.state_dict().items():
            source = state[torchvision_to_timm_key(key)]
            value.copy_(source.reshape(value.shape))

    x = pattern((2, 3, 64, 64), 1000)
    targets = torch.tensor([3, 997])
    out = {}
    params = dict(model.named_parameters())
    for mode in ["eval", "train"]:
        for prefix, m in [("", model), ("tv.", tv)]:
            m.train(mode == "train")
            m.zero_grad()
            logits = m(x)
            out[f"{prefix}{mode}.logits"] = logits.detach().contiguous()
            if prefix == "" and mode == "train":
                F.cross_entropy(logits, targets).backward()
                for name in GRADS:
                    out[f"train.grad.{name}"] = params[name].grad.contiguous().clone()
    model.eval()
    with torch.no_grad():
        out["eval.features"] = model.forward_features(x).contiguous()
    for mode in ["eval", "train"]:
        diff = (out[f"{mode}.logits"] - out[f"tv.{mode}.logits"]).abs().max().item()
        print(f"timm vs torchvision, {mode} logits: max |diff| {diff:.3g}")
        assert diff < 1e-4 * out[f"{mode}.logits"].abs().max().item(), "the two layouts must agree"

    for k, v in out.items():
        print(f"{k}: {tuple(v.shape)} max |.| {v.abs().max().item():.4g}")
    os.makedirs(OUT_DIR, exist_ok=True)
    path = os.path.join(OUT_DIR, "convnext_tiny.safetensors")
    from safetensors.torch import save_file

    save_file(out, path)
    os.chmod(path, 0o644)
    keys_file(os.path.join(OUT_DIR, "convnext_tiny.timm.keys.txt"), model.state_dict())
    keys_file(os.path.join(OUT_DIR, "convnext_tiny.torchvision.keys.txt"), tv.state_dict())
    with open(os.path.join(OUT_DIR, "convnext_tiny.feature_info.txt"), "w") as f:
        for info in model.feature_info:
            f.write(f"{info['module']} {info['num_chs']} {info['reduction']}\n")
    with open(os.path.join(OUT_DIR, "convnext.params.txt"), "w") as f:
        for name in VARIANTS:
            t = sum(p.numel() for p in timm.create_model(name).parameters())
            v = sum(p.numel() for p in getattr(torchvision.models, name)().parameters())
            print(f"{name}: timm {t}, torchvision {v}")
            f.write(f"{name} {t} {v}\n")
    print(f"wrote {path}, the key lists, the feature info and the parameter counts")


if __name__ == "__main__":
    main()
