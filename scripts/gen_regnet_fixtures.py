"""Reference outputs of RegNetX/Y-1.6GF from timm and torchvision, for regnet/tests/reference.rs.

Run by hand (not in CI):

    pip install torch torchvision timm safetensors numpy
    python scripts/gen_regnet_fixtures.py

timm's `regnetx_016` and `regnety_016` (the layout of `timm/regnetx_016.tv2_in1k`), full size,
get the closed-form weights of `gen_densenet_fixtures.fill` (ranked by their sorted key names
without `num_batches_tracked`, as the Rust test does), every `conv3.bn.weight` then times 0.1
(see BRANCH_SCALE), so no weights are stored; torchvision's
`regnet_x_1_6gf` / `regnet_y_1_6gf` get the same tensors through a key mapping written here
independently of the Rust one, and the script checks that both libraries agree (they are the
same network). Everything is computed in float64 from the float32 weights and input (the exact
answer to the float32 question) and stored as float32. For `<name>` in regnetx_016,
regnety_016, `<name>.safetensors` holds:

* `eval.logits`, `train.logits` (timm) and `tv.eval.logits`, `tv.train.logits` (torchvision):
  logits of a batch of 2 images 3x64x64 in eval mode and in train mode (batch statistics);
* `eval.features`: timm's `forward_features` (`[2, C, 2, 2]`);
* `eval.grad.<key>` / `train.grad.<key>`: gradients of the mean cross-entropy (targets 3 and
  997) of the eval / train pass w.r.t. a few parameters (their first 16 rows), and `f32err.<mode>.grad.<key>`: how far
  PyTorch's own float32 gradient is from the float64 one, relative to its largest magnitude
  (a scalar: the conditioning the Rust test's tolerance accounts for);
* `train.<bn>.running_mean` / `running_var` after the train pass.

It also writes, per variant, the state-dict keys and shapes of both libraries, sorted
(`<name>.timm.keys.txt`, `<name>.torchvision.keys.txt`), timm's `feature_info`
(`<name>.feature_info.txt`), and for both variants `regnet.params.txt` (name, timm's count,
torchvision's count) and `regnet.stages.txt` (name, then per stage `width,depth,group_width` as
timm's modules have them; the script checks torchvision's are the same).
"""
import os
import sys

import timm
import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from gen_densenet_fixtures import fill, pattern  # noqa: E402  (the shared closed-form rule)

HERE = os.path.dirname(__file__)
OUT_DIR = os.path.join(HERE, "..", "regnet", "tests", "fixtures")
TARGETS = torch.tensor([3, 997])
VARIANTS = {"regnetx_016": "regnet_x_1_6gf", "regnety_016": "regnet_y_1_6gf"}
EVAL_GRADS = ["stem.conv.weight", "s2.b1.conv2.conv.weight", "s3.b2.conv1.bn.weight",
              "s4.b1.downsample.conv.weight", "s4.b2.conv3.conv.weight", "head.fc.weight",
              "head.fc.bias"]
TRAIN_GRADS = ["s1.b1.conv2.conv.weight", "s3.b1.conv3.bn.bias", "s4.b2.conv3.bn.weight",
               "head.fc.weight", "head.fc.bias"]
SE_GRADS = ["s2.b2.se.fc1.weight", "s4.b2.se.fc2.bias"]
# Every block's last batch-norm scale is multiplied by 0.1 (in float32) after the fill: the
# residual branches damped as timm's zero_init_last intends. With the plain fill the 27 blocks
# of RegNetY add up to eval logits of 626 and PyTorch's own float32 result is 7.6e-5 (train
# logits) and 3e-2 (train gradients) off its float64 one; damped, 1e-6.
BRANCH_SCALE_KEY = "conv3.bn.weight"
BRANCH_SCALE = 0.1
BNS = ["stem.bn", "s1.b1.downsample.bn", "s4.b2.conv3.bn"]


def torchvision_to_timm_key(key):
    """The timm name of torchvision key `key` (written independently of regnet/src/layout.rs)."""
    p = key.split(".")
    if p[0] == "stem":
        return {"0": "stem.conv", "1": "stem.bn"}[p[1]] + "." + p[2]
    if p[0] == "fc":
        return "head.fc." + p[1]
    assert p[0] == "trunk_output", key
    s = int(p[1][len("block"):])
    stage, block = p[2][len("block"):].split("-")
    assert int(stage) == s, key
    prefix = f"s{s}.b{int(block) + 1}"
    rest = p[3:]
    if rest[0] == "proj":
        return f"{prefix}.downsample.{ {'0': 'conv', '1': 'bn'}[rest[1]] }.{rest[2]}"
    assert rest[0] == "f", key
    if rest[1] == "se":
        return f"{prefix}.se.{rest[2]}.{rest[3]}"
    conv = {"a": "conv1", "b": "conv2", "c": "conv3"}[rest[1]]
    return f"{prefix}.{conv}.{ {'0': 'conv', '1': 'bn'}[rest[2]] }.{rest[3]}"


def keys_file(path, state):
    with open(path, "w") as f:
        for key in sorted(k for k in state if not k.endswith("num_batches_tracked")):
            f.write(f"{key} {','.join(str(d) for d in state[key].shape)}\n")


def filled(name):
    """timm's and torchvision's models with the closed-form weights, in float32."""
    model = timm.create_model(name)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    with torch.no_grad():
        for j, key in enumerate(sorted(state)):
            state[key].copy_(fill(key, tuple(state[key].shape), j))
            if key.endswith(BRANCH_SCALE_KEY):
                state[key].mul_(BRANCH_SCALE)
    tv = getattr(torchvision.models, VARIANTS[name])()
    with torch.no_grad():
        mapped = set()
        for key, value in tv.state_dict().items():
            if key.endswith("num_batches_tracked"):
                continue
            source = state[torchvision_to_timm_key(key)]
            assert source.shape == value.shape, (key, source.shape, value.shape)
            value.copy_(source)
            mapped.add(torchvision_to_timm_key(key))
        assert mapped == set(state), "the mapping covers every timm tensor once"
    return model, tv


def stages(name):
    """(width, depth, group width) per stage, from timm's modules; torchvision's must agree."""
    model, tv = filled(name)
    out = []
    for s in range(1, 5):
        blocks = list(getattr(model, f"s{s}").children())
        conv2 = blocks[0].conv2.conv
        out.append((conv2.out_channels, len(blocks), conv2.out_channels // conv2.groups))
    tv_out = []
    for stage in tv.trunk_output:
        b = stage[0].f.b[0]
        tv_out.append((b.out_channels, len(stage), b.out_channels // b.groups))
    assert out == tv_out, (out, tv_out)
    return out


# Rows of each stored gradient (its first output filters / classes).
GRAD_ROWS = 16


def run(model, x, train, grads):
    """Logits and gradients of `model` (a copy is made by the caller) in float64."""
    model.train(train)
    model.zero_grad()
    logits = model(x)
    F.cross_entropy(logits, TARGETS).backward()
    params = dict(model.named_parameters())
    return logits, {k: params[k].grad.clone() for k in grads}


def reference(name):
    x = pattern((2, 3, 64, 64), 1000)
    grads = {"eval": EVAL_GRADS + (SE_GRADS if name == "regnety_016" else []), "train": TRAIN_GRADS}
    out = {}
    for mode in ["eval", "train"]:
        train = mode == "train"
        model, tv = filled(name)
        m32, _ = filled(name)
        model.double()
        tv.double()
        logits, g64 = run(model, x.double(), train, grads[mode])
        out[f"{mode}.logits"] = logits
        tv_logits, _ = run(tv, x.double(), train, [])
        out[f"tv.{mode}.logits"] = tv_logits
        diff = (logits - tv_logits).abs().max().item() / logits.abs().max().item()
        print(f"{name} timm vs torchvision, {mode} logits: relative {diff:.3g}")
        assert diff < 1e-10, "the two libraries must compute the same network"
        _, g32 = run(m32, x, train, grads[mode])
        for k in grads[mode]:
            # The first GRAD_ROWS output rows only (the resnet fixtures do the same): the
            # whole of head.fc and the last 1x1 convolutions would make the file 12 MB.
            out[f"{mode}.grad.{k}"] = g64[k][:GRAD_ROWS].contiguous()
            err = (g32[k].double() - g64[k]).abs().max() / g64[k].abs().max()
            out[f"f32err.{mode}.grad.{k}"] = err.reshape(1)
        if train:
            state = model.state_dict()
            for bn in BNS:
                for stat in ["running_mean", "running_var"]:
                    out[f"train.{bn}.{stat}"] = state[f"{bn}.{stat}"].clone()
        else:
            with torch.no_grad():
                out["eval.features"] = model.forward_features(x.double())
    return {k: v.detach().to(torch.float32).contiguous() for k, v in out.items()}


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    os.makedirs(OUT_DIR, exist_ok=True)
    params, stage_lines = [], []
    for name, tv_name in VARIANTS.items():
        out = reference(name)
        for k, v in sorted(out.items()):
            print(f"  {k}: {tuple(v.shape)} max |.| {v.abs().max().item():.4g}")
        path = os.path.join(OUT_DIR, f"{name}.safetensors")
        save_file(out, path)
        os.chmod(path, 0o644)
        model = timm.create_model(name)
        tv = getattr(torchvision.models, tv_name)()
        keys_file(os.path.join(OUT_DIR, f"{name}.timm.keys.txt"), model.state_dict())
        keys_file(os.path.join(OUT_DIR, f"{name}.torchvision.keys.txt"), tv.state_dict())
        with open(os.path.join(OUT_DIR, f"{name}.feature_info.txt"), "w") as f:
            for info in model.feature_info:
                f.write(f"{info['module']} {info['num_chs']} {info['reduction']}\n")
        t = sum(p.numel() for p in model.parameters())
        v = sum(p.numel() for p in tv.parameters())
        print(f"{name}: timm {t}, {tv_name} {v}; wrote {path}")
        params.append(f"{name} {t} {v}\n")
        stage_lines.append(name + " " + " ".join(f"{w},{d},{g}" for w, d, g in stages(name)) + "\n")
    with open(os.path.join(OUT_DIR, "regnet.params.txt"), "w") as f:
        f.writelines(params)
    with open(os.path.join(OUT_DIR, "regnet.stages.txt"), "w") as f:
        f.writelines(stage_lines)


if __name__ == "__main__":
    main()
