"""Reference outputs of MobileNetV2 from timm and torchvision, for mobilenet/tests/reference.rs.

Run by hand (not in CI):

    pip install torch torchvision timm safetensors numpy
    python scripts/gen_mobilenet_fixtures.py

timm's `mobilenetv2_100` (the layout of `timm/mobilenetv2_100.ra_in1k`), full size, gets the
closed-form weights of `gen_densenet_fixtures.fill` (ranked by its sorted key names without
`num_batches_tracked`, as the Rust test does), so no weights are stored; torchvision's
`mobilenet_v2` gets the same tensors through a key mapping written here independently of the
Rust one, and the script checks that both models agree. Dropout is off, so train mode (batch
statistics) is deterministic. Stored:

* `eval.logits`, `train.logits` (timm) and `tv.eval.logits`, `tv.train.logits` (torchvision):
  logits of a batch of 2 images 3x64x64 in eval mode and in train mode;
* `eval.features`: timm's `forward_features` (`[2, 1280, 2, 2]`);
* `train.grad.<key>`: gradients of the mean cross-entropy (targets 3 and 997) in train mode
  w.r.t. a few parameters;
* `train.bn2.running_mean`, `train.bn2.running_var`: the head's batch norm after the train step.

It also writes the state-dict keys and shapes of both libraries, sorted
(`mobilenetv2_100.timm.keys.txt`, `mobilenetv2_100.torchvision.keys.txt`), timm's
`feature_info` (`mobilenetv2_100.feature_info.txt`: module, channels, reduction per line) and
the parameter counts (`mobilenet.params.txt`: name, timm's count, torchvision's count).
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
OUT_DIR = os.path.join(HERE, "..", "mobilenet", "tests", "fixtures")
GRADS = [
    "conv_stem.weight",
    "blocks.0.0.conv_dw.weight",
    "blocks.3.2.conv_pwl.weight",
    "blocks.6.0.bn2.weight",
    "bn2.weight",
    "classifier.bias",
]
# timm's stages (t, c, n, s) of MobileNetV2: blocks per stage.
DEPTHS = [1, 2, 3, 4, 3, 3, 1]


def torchvision_to_timm_key(key):
    """The timm name of torchvision key `key`."""
    p = key.split(".")
    if p[0] == "classifier":
        return f"classifier.{p[2]}"
    f = int(p[1])
    if f == 0:
        return {"0": "conv_stem", "1": "bn1"}[p[2]] + "." + p[3]
    if f == 18:
        return {"0": "conv_head", "1": "bn2"}[p[2]] + "." + p[3]
    # features.F.conv.I[.J].param, F = 1 + the block's rank over all stages.
    rank = f - 1
    s = 0
    while rank >= DEPTHS[s]:
        rank -= DEPTHS[s]
        s += 1
    rest = p[3:]
    if f == 1:
        names = {("0", "0"): "conv_dw", ("0", "1"): "bn1", ("1",): "conv_pw", ("2",): "bn2"}
    else:
        names = {("0", "0"): "conv_pw", ("0", "1"): "bn1", ("1", "0"): "conv_dw", ("1", "1"): "bn2",
                 ("2",): "conv_pwl", ("3",): "bn3"}
    return f"blocks.{s}.{rank}.{names[tuple(rest[:-1])]}.{rest[-1]}"


def keys_file(path, state):
    with open(path, "w") as f:
        for key in sorted(k for k in state if not k.endswith("num_batches_tracked")):
            f.write(f"{key} {','.join(str(d) for d in state[key].shape)}\n")


def main():
    torch.manual_seed(0)
    model = timm.create_model("mobilenetv2_100", drop_rate=0.0)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    with torch.no_grad():
        for j, key in enumerate(sorted(state)):
            state[key].copy_(fill(key, tuple(state[key].shape), j))

    tv = torchvision.models.mobilenet_v2(dropout=0.0)
    with torch.no_grad():
        for key, value in tv.state_dict().items():
            if key.endswith("num_batches_tracked"):
                continue
            source = state[torchvision_to_timm_key(key)]
            assert source.shape == value.shape, (key, source.shape, value.shape)
            value.copy_(source)

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
                out["train.bn2.running_mean"] = model.bn2.running_mean.detach().clone()
                out["train.bn2.running_var"] = model.bn2.running_var.detach().clone()
    # The train passes moved the running statistics: restore them for the features.
    with torch.no_grad():
        for j, key in enumerate(sorted(state)):
            state[key].copy_(fill(key, tuple(state[key].shape), j))
    model.eval()
    with torch.no_grad():
        out["eval.features"] = model.forward_features(x).contiguous()
        again = model(x)
    assert torch.equal(again, out["eval.logits"]), "restored weights give the eval logits"
    for mode in ["eval", "train"]:
        diff = (out[f"{mode}.logits"] - out[f"tv.{mode}.logits"]).abs().max().item()
        print(f"timm vs torchvision, {mode} logits: max |diff| {diff:.3g}")
        assert diff < 1e-4 * out[f"{mode}.logits"].abs().max().item(), "the two layouts must agree"

    for k, v in out.items():
        print(f"{k}: {tuple(v.shape)} max |.| {v.abs().max().item():.4g}")
    os.makedirs(OUT_DIR, exist_ok=True)
    path = os.path.join(OUT_DIR, "mobilenetv2_100.safetensors")
    from safetensors.torch import save_file

    save_file(out, path)
    os.chmod(path, 0o644)
    keys_file(os.path.join(OUT_DIR, "mobilenetv2_100.timm.keys.txt"), model.state_dict())
    keys_file(os.path.join(OUT_DIR, "mobilenetv2_100.torchvision.keys.txt"), tv.state_dict())
    with open(os.path.join(OUT_DIR, "mobilenetv2_100.feature_info.txt"), "w") as f:
        for info in model.feature_info:
            f.write(f"{info['module']} {info['num_chs']} {info['reduction']}\n")
    with open(os.path.join(OUT_DIR, "mobilenet.params.txt"), "w") as f:
        t = sum(p.numel() for p in timm.create_model("mobilenetv2_100").parameters())
        v = sum(p.numel() for p in torchvision.models.mobilenet_v2().parameters())
        print(f"mobilenetv2_100: timm {t}, torchvision {v}")
        f.write(f"mobilenetv2_100 {t} {v}\n")
    print(f"wrote {path}, the key lists, the feature info and the parameter counts")


if __name__ == "__main__":
    main()
