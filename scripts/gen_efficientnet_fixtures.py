"""Reference outputs of EfficientNet-B0 from timm and torchvision, for
efficientnet/tests/reference.rs.

Run by hand (not in CI):

    pip install torch torchvision timm safetensors numpy
    python scripts/gen_efficientnet_fixtures.py

timm's `efficientnet_b0` (the layout of `timm/efficientnet_b0.ra_in1k`) gets the closed-form
weights of `gen_densenet_fixtures.fill` (ranked by its sorted key names, as the Rust test does);
torchvision's `efficientnet_b0` gets the same tensors through a key mapping written here
independently of the Rust one, and the script checks that both models agree. Dropout and
stochastic depth are off (`drop_rate=0, drop_path_rate=0` / `dropout=0,
stochastic_depth_prob=0`). Stored (~100 KB):

* `eval.logits`, `train.logits` (timm) and `tv.eval.logits`, `tv.train.logits` (torchvision):
  logits of a batch of 2 images 3x64x64 in eval mode and in train mode (batch statistics);
* `eval.grad.<key>`, `train.grad.<key>`: gradients of the mean cross-entropy (targets 3 and
  997) w.r.t. the stem convolution, two depthwise convolutions (3x3 and 5x5, stride 2) and the
  head's batch norm;
* `train.bn2.running_mean` / `train.bn2.running_var`: the head batch norm's running
  statistics after the train-mode pass.

It also writes `efficientnet_b0.timm.keys.txt` and `efficientnet_b0.torchvision.keys.txt`: the
state-dict keys (without `num_batches_tracked`) and shapes of both libraries, sorted.
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
OUT_DIR = os.path.join(HERE, "..", "efficientnet", "tests", "fixtures")
GRADS = [
    "conv_stem.weight",
    "blocks.1.0.conv_dw.weight",
    "blocks.2.0.conv_dw.weight",
    "bn2.weight",
]


def torchvision_to_timm_key(key, tv):
    """The timm name of torchvision key `key`, from the structure of the torchvision model."""
    parts = key.split(".")
    if parts[0] == "classifier":  # classifier.1.weight
        return "classifier." + parts[2]
    assert parts[0] == "features"
    stage = int(parts[1])
    last = len(tv.features) - 1
    if stage == 0:
        return {"0": "conv_stem", "1": "bn1"}[parts[2]] + "." + parts[3]
    if stage == last:
        return {"0": "conv_head", "1": "bn2"}[parts[2]] + "." + parts[3]
    # features.S.B.block.I.J.param
    block, layer, sub, param = int(parts[2]), int(parts[4]), parts[5], parts[6]
    expanded = len(tv.features[stage][block].block) == 4
    if expanded:
        names = [{"0": "conv_pw", "1": "bn1"}, {"0": "conv_dw", "1": "bn2"},
                 {"fc1": "se.conv_reduce", "fc2": "se.conv_expand"}, {"0": "conv_pwl", "1": "bn3"}]
    else:
        names = [{"0": "conv_dw", "1": "bn1"}, {"fc1": "se.conv_reduce", "fc2": "se.conv_expand"},
                 {"0": "conv_pw", "1": "bn2"}]
    return f"blocks.{stage - 1}.{block}.{names[layer][sub]}.{param}"


def keys_file(path, state):
    with open(path, "w") as f:
        for key in sorted(k for k in state if not k.endswith("num_batches_tracked")):
            f.write(f"{key} {','.join(str(d) for d in state[key].shape)}\n")


def run(model, x, targets, params, out, prefix, grads):
    model.eval()
    logits = model(x)
    F.cross_entropy(logits, targets).backward()
    out[f"{prefix}eval.logits"] = logits.detach().contiguous()
    for name in grads:
        out[f"{prefix}eval.grad.{name}"] = params[name].grad.contiguous().clone()
    model.zero_grad()
    model.train()
    logits = model(x)
    F.cross_entropy(logits, targets).backward()
    out[f"{prefix}train.logits"] = logits.detach().contiguous()
    for name in grads:
        out[f"{prefix}train.grad.{name}"] = params[name].grad.contiguous().clone()


def main():
    torch.manual_seed(0)
    model = timm.create_model("efficientnet_b0", drop_rate=0.0, drop_path_rate=0.0)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    with torch.no_grad():
        for j, key in enumerate(sorted(state)):
            state[key].copy_(fill(key, tuple(state[key].shape), j))

    tv = torchvision.models.efficientnet_b0(dropout=0.0, stochastic_depth_prob=0.0)
    tv_state = tv.state_dict()
    timm_state = model.state_dict()
    with torch.no_grad():
        for key, value in tv_state.items():
            if key.endswith("num_batches_tracked"):
                continue
            source = timm_state[torchvision_to_timm_key(key, tv)]
            assert source.shape == value.shape, (key, source.shape, value.shape)
            value.copy_(source)

    x = pattern((2, 3, 64, 64), 1000)
    targets = torch.tensor([3, 997])
    out = {}
    run(model, x, targets, dict(model.named_parameters()), out, "", GRADS)
    out["train.bn2.running_mean"] = model.bn2.running_mean.detach().clone()
    out["train.bn2.running_var"] = model.bn2.running_var.detach().clone()
    run(tv, x, targets, {}, out, "tv.", [])
    for mode in ["eval", "train"]:
        diff = (out[f"{mode}.logits"] - out[f"tv.{mode}.logits"]).abs().max().item()
        print(f"timm vs torchvision, {mode} logits: max |diff| {diff:.3g}")
        assert diff < 1e-5, "the two layouts must give the same outputs"

    for k, v in out.items():
        print(f"{k}: {tuple(v.shape)} max |.| {v.abs().max().item():.4g}")
    os.makedirs(OUT_DIR, exist_ok=True)
    path = os.path.join(OUT_DIR, "efficientnet_b0.safetensors")
    from safetensors.torch import save_file

    save_file(out, path)
    os.chmod(path, 0o644)
    keys_file(os.path.join(OUT_DIR, "efficientnet_b0.timm.keys.txt"), model.state_dict())
    keys_file(os.path.join(OUT_DIR, "efficientnet_b0.torchvision.keys.txt"), tv.state_dict())
    print(f"wrote {path} and the key lists")


if __name__ == "__main__":
    main()
