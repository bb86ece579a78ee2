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
import copy
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




# ---------------------------------------------------------------------------------------------
# EfficientNetV2 (efficientnet/tests/v2.rs).
#
# Full size, the closed-form weights of `fill` (ranked by the sorted timm key names without
# `num_batches_tracked`), dropout and drop path off, a batch of 2 images 3x64x64 (even sizes:
# TensorFlow's "SAME" padding of tf_efficientnetv2_s pads the stride-2 convolutions (0, 1)).
# The EVAL outputs are computed on a FLOAT64 copy of the model whose batch norms are first
# CALIBRATED: one train-mode pass on the input with momentum 1, so that the running statistics
# are that batch's (mean, unbiased variance); stored as float32. With `fill`'s running
# statistics the eval pass is chaotic (activations growing to 1e5 through the residual
# stages; float32 PyTorch differs from float64 PyTorch by 40-75% in the logits, and float64
# itself is not reproducible across implementations); calibrated, float32 still differs from
# float64 by 1e-3 to 1e-2, float64 is exact to far below the tolerance. The Rust test does the
# same in float64. The train pass (batch statistics) is well-conditioned (float32 vs float64:
# 4e-5) and compared in float32, from `fill`'s weights.
#
# * timm's `efficientnetv2_rw_s` (prefix `rw.`) and `tf_efficientnetv2_s` (prefix `tf.`);
# * torchvision's `efficientnet_v2_s` (prefix `tv.`), given the tensors of timm's
#   `efficientnetv2_s(bn_eps=1e-3)` (the same network with timm's names) through a key mapping
#   written here, independently of the Rust one; the script checks that both agree, and that
#   `tf_efficientnetv2_s` with the same tensors does NOT (the padding differs);
# * per model: `eval.logits`, `train.logits`, `eval.features` (forward_features), train-mode
#   gradients of the mean cross-entropy (targets 3 and 997) w.r.t. V2_GRADS and the head batch
#   norm's running statistics after the train pass.
#
# Also `<name>.timm.keys.txt` / `efficientnet_v2_s.torchvision.keys.txt` (keys and shapes),
# `<name>.feature_info.txt` (timm's feature_info) and `efficientnetv2.params.txt` (name, timm's
# count, torchvision's count or -).
V2_GRADS = [
    "conv_stem.weight",
    "blocks.0.0.bn1.weight",
    "blocks.1.0.bn2.weight",
    "blocks.3.0.conv_dw.weight",
    "blocks.5.14.se.conv_reduce.bias",
    "bn2.weight",
    "classifier.bias",
]
V2_MODELS = [("rw", "efficientnetv2_rw_s", {}), ("tf", "tf_efficientnetv2_s", {}),
             ("tv", "efficientnetv2_s", {"bn_eps": 1e-3})]


def tv_v2_to_timm_key(key, tv):
    """The timm name of torchvision efficientnet_v2_s key `key`."""
    p = key.split(".")
    if p[0] == "classifier":
        return "classifier." + p[2]
    stage = int(p[1])
    if stage == 0:
        return {"0": "conv_stem", "1": "bn1"}[p[2]] + "." + p[3]
    if stage == len(tv.features) - 1:
        return {"0": "conv_head", "1": "bn2"}[p[2]] + "." + p[3]
    block, layer, sub, param = int(p[2]), int(p[4]), p[5], p[6]
    n = len(tv.features[stage][block].block)
    if n == 1:  # FusedMBConv without expansion = timm's ConvBnAct
        names = [{"0": "conv", "1": "bn1"}]
    elif n == 2:  # FusedMBConv = timm's EdgeResidual
        names = [{"0": "conv_exp", "1": "bn1"}, {"0": "conv_pwl", "1": "bn2"}]
    else:
        names = [{"0": "conv_pw", "1": "bn1"}, {"0": "conv_dw", "1": "bn2"},
                 {"fc1": "se.conv_reduce", "fc2": "se.conv_expand"}, {"0": "conv_pwl", "1": "bn3"}]
    return f"blocks.{stage - 1}.{block}.{names[layer][sub]}.{param}"


def filled(name, **kwargs):
    model = timm.create_model(name, drop_rate=0.0, drop_path_rate=0.0, **kwargs)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    with torch.no_grad():
        for j, key in enumerate(sorted(state)):
            state[key].copy_(fill(key, tuple(state[key].shape), j))
    return model


def calibrate(model, x):
    """Running statistics := those of the batch `x` (a train pass with momentum 1)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(x)
    for m in norms:
        m.momentum = 0.1
    return model


def v2_outputs(model, x, targets, prefix, out, grads=True):
    m64 = calibrate(copy.deepcopy(model).double(), x.double()).eval()
    with torch.no_grad():
        out[f"{prefix}eval.logits"] = m64(x.double()).float().contiguous()
        if hasattr(m64, "forward_features"):
            out[f"{prefix}eval.features"] = m64.forward_features(x.double()).float().contiguous()
    model.train()
    model.zero_grad()
    logits = model(x)
    out[f"{prefix}train.logits"] = logits.detach().contiguous()
    if grads:
        F.cross_entropy(logits, targets).backward()
        params = dict(model.named_parameters())
        for name in V2_GRADS:
            out[f"{prefix}train.grad.{name}"] = params[name].grad.contiguous().clone()
        out[f"{prefix}train.bn2.running_mean"] = model.bn2.running_mean.detach().clone()
        out[f"{prefix}train.bn2.running_var"] = model.bn2.running_var.detach().clone()


def main_v2():
    torch.manual_seed(0)
    x = pattern((2, 3, 64, 64), 1000)
    targets = torch.tensor([3, 997])
    out = {}
    models = {}
    for prefix, name, kwargs in V2_MODELS:
        models[prefix] = filled(name, **kwargs)
        v2_outputs(models[prefix], x, targets, prefix + ".", out)
    tv = torchvision.models.efficientnet_v2_s(dropout=0.0, stochastic_depth_prob=0.0)
    source = filled("efficientnetv2_s", bn_eps=1e-3).state_dict()
    with torch.no_grad():
        for key, value in tv.state_dict().items():
            if key.endswith("num_batches_tracked"):
                continue
            t = source[tv_v2_to_timm_key(key, tv)]
            assert t.shape == value.shape, (key, t.shape, value.shape)
            value.copy_(t)
    tvo = {}
    v2_outputs(tv, x, targets, "", tvo, grads=False)
    for mode in ["eval", "train"]:
        ref = out[f"tv.{mode}.logits"]
        diff = (tvo[f"{mode}.logits"] - ref).abs().max().item() / ref.abs().max().item()
        print(f"timm efficientnetv2_s(bn_eps=1e-3) vs torchvision efficientnet_v2_s, {mode}: {diff:.3g}")
        assert diff < 1e-4, "torchvision's network is timm's efficientnetv2_s with eps 1e-3"
        out[f"tv.{mode}.logits"] = tvo[f"{mode}.logits"]
    tf = filled("tf_efficientnetv2_s")
    tf.eval()
    tf.load_state_dict(source)
    with torch.no_grad():
        diff = (tf(x) - out["tv.eval.logits"]).abs().max().item() / out["tv.eval.logits"].abs().max().item()
    print(f"tf_efficientnetv2_s vs torchvision with the same tensors: {diff:.3g} (padding differs)")
    assert diff > 1e-3
    for k, v in sorted(out.items()):
        print(f"{k}: {tuple(v.shape)} max |.| {v.abs().max().item():.4g}")
    from safetensors.torch import save_file

    path = os.path.join(OUT_DIR, "efficientnetv2.safetensors")
    save_file(out, path)
    os.chmod(path, 0o644)
    counts = []
    for prefix, name, kwargs in V2_MODELS:
        rust = {"rw": "efficientnetv2_rw_s", "tf": "tf_efficientnetv2_s", "tv": "efficientnet_v2_s"}[prefix]
        model = models[prefix]
        keys_file(os.path.join(OUT_DIR, f"{rust}.timm.keys.txt"), model.state_dict())
        with open(os.path.join(OUT_DIR, f"{rust}.feature_info.txt"), "w") as f:
            for info in model.feature_info:
                f.write(f"{info['module']} {info['num_chs']} {info['reduction']}\n")
        t = sum(p.numel() for p in timm.create_model(name, **kwargs).parameters())
        v = sum(p.numel() for p in tv.parameters()) if prefix == "tv" else "-"
        counts.append(f"{rust} {t} {v}\n")
    keys_file(os.path.join(OUT_DIR, "efficientnet_v2_s.torchvision.keys.txt"), tv.state_dict())
    with open(os.path.join(OUT_DIR, "efficientnetv2.params.txt"), "w") as f:
        f.writelines(counts)
    print("".join(counts), f"wrote {path}, the key lists, the feature info and the parameter counts")


if __name__ == "__main__":
    if sys.argv[1:] != ["v2"]:
        main()
    main_v2()
