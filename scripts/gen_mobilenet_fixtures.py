"""Reference outputs of MobileNetV2 and V3 from timm and torchvision, for
mobilenet/tests/reference.rs (V2) and mobilenet/tests/v3.rs (V3).

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

MobileNetV3 (`v3()`), for `mobilenetv3_large_100` and `mobilenetv3_small_100` (torchvision's
`mobilenet_v3_large` / `mobilenet_v3_small`): the same closed-form weights in timm's model and,
mapped by the order of the two state dicts (the same module order in both libraries, checked
by shape; torchvision's `classifier.0` linear weight is timm's `conv_head` 1x1 convolution,
reshaped), in torchvision's. The libraries' batch norms differ (timm: PyTorch's defaults,
torchvision: eps 1e-3, momentum 0.01), so each library's outputs are stored:
`<name>.safetensors` holds `timm.{eval,train}.logits`, `tv.{eval,train}.logits`,
`timm.eval.features`, `timm.train.grad.<key>` and `tv.train.grad.<key>` (timm's key names) and
`{timm,tv}.train.running_{mean,var}` of the last stage's batch norm (`blocks.S.0.bn1`) after
the train step; plus `<name>.timm.keys.txt`, `<name>.torchvision.keys.txt`,
`<name>.feature_info.txt` and one line per variant in `mobilenet.params.txt`.
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
    v3()


V3_GRADS = {
    "mobilenetv3_large_100": [
        "conv_stem.weight",
        "blocks.2.0.se.conv_reduce.weight",
        "blocks.4.1.conv_dw.weight",
        "blocks.6.0.bn1.weight",
        "conv_head.bias",
        "classifier.bias",
    ],
    "mobilenetv3_small_100": [
        "conv_stem.weight",
        "blocks.0.0.se.conv_expand.bias",
        "blocks.3.1.conv_dw.weight",
        "blocks.5.0.bn1.weight",
        "conv_head.bias",
        "classifier.bias",
    ],
}


def v3():
    lines = []
    for name, tv_name in [("mobilenetv3_large_100", "mobilenet_v3_large"),
                          ("mobilenetv3_small_100", "mobilenet_v3_small")]:
        torch.manual_seed(0)
        model = timm.create_model(name, drop_rate=0.0)
        tv = getattr(torchvision.models, tv_name)(dropout=0.0)
        assert model.bn1.eps == 1e-5 and model.bn1.momentum == 0.1
        assert tv.features[0][1].eps == 1e-3 and tv.features[0][1].momentum == 0.01
        keys = sorted(k for k in model.state_dict() if not k.endswith("num_batches_tracked"))

        def reset():
            state = model.state_dict()
            with torch.no_grad():
                for j, key in enumerate(keys):
                    state[key].copy_(fill(key, tuple(state[key].shape), j))
                # torchvision's tensors, in module order, are timm's in module order.
                timm_items = [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]
                tv_items = [(k, v) for k, v in tv.state_dict().items() if not k.endswith("num_batches_tracked")]
                assert len(timm_items) == len(tv_items), (len(timm_items), len(tv_items))
                for (tk, tval), (vk, vval) in zip(timm_items, tv_items):
                    assert tval.numel() == vval.numel() and tk.split(".")[-1] == vk.split(".")[-1], (tk, vk)
                    if tval.shape != vval.shape:
                        assert tk == "conv_head.weight" and vk == "classifier.0.weight", (tk, vk)
                    vval.copy_(tval.reshape(vval.shape))
            return {vk: tk for (tk, _), (vk, _) in zip(timm_items, tv_items)}

        tv_to_timm = reset()
        timm_to_tv = {t: v for v, t in tv_to_timm.items()}
        last_bn = [k for k in keys if k.endswith("bn1.running_mean") and k.startswith("blocks.")][-1][:-len(".running_mean")]
        x = pattern((2, 3, 64, 64), 1000)
        targets = torch.tensor([3, 997])
        out = {}
        for prefix, m in [("timm", model), ("tv", tv)]:
            params = dict(m.named_parameters())
            buffers = dict(m.named_buffers())
            for mode in ["eval", "train"]:
                m.train(mode == "train")
                m.zero_grad()
                logits = m(x)
                out[f"{prefix}.{mode}.logits"] = logits.detach().contiguous()
                if mode == "train":
                    F.cross_entropy(logits, targets).backward()
                    for key in V3_GRADS[name]:
                        own = key if prefix == "timm" else timm_to_tv[key]
                        g = params[own].grad
                        out[f"{prefix}.train.grad.{key}"] = g.reshape(model.state_dict()[key].shape).contiguous().clone()
                    for stat in ["running_mean", "running_var"]:
                        own = f"{last_bn}.{stat}" if prefix == "timm" else timm_to_tv[f"{last_bn}.{stat}"]
                        out[f"{prefix}.train.{stat}"] = buffers[own].detach().clone()
        reset()
        model.eval()
        with torch.no_grad():
            out["timm.eval.features"] = model.forward_features(x).contiguous()
            assert torch.equal(model(x), out["timm.eval.logits"]), "restored weights give the eval logits"
        for mode in ["eval", "train"]:
            a, b = out[f"timm.{mode}.logits"], out[f"tv.{mode}.logits"]
            print(f"{name}: timm vs torchvision (batch norms differ), {mode}: max |diff| / max |timm| "
                  f"{((a - b).abs().max() / a.abs().max()).item():.3g}")
        # How far float32 PyTorch is from float64 PyTorch on the train-mode gradients: the
        # scale of the Rust test's tolerances.
        m64 = timm.create_model(name, drop_rate=0.0).double()
        reset()
        m64.load_state_dict(model.state_dict())
        m64.train()
        F.cross_entropy(m64(x.double()), targets).backward()
        p64 = dict(m64.named_parameters())
        for key in V3_GRADS[name]:
            g32 = out[f"timm.train.grad.{key}"].double()
            err = ((g32 - p64[key].grad).abs().max() / p64[key].grad.abs().max()).item()
            print(f"{name}: float32 vs float64 PyTorch, train grad {key}: {err:.2g}")
        for k, v in out.items():
            print(f"{name} {k}: {tuple(v.shape)} max |.| {v.abs().max().item():.4g}")
        from safetensors.torch import save_file

        path = os.path.join(OUT_DIR, f"{name}.safetensors")
        save_file(out, path)
        os.chmod(path, 0o644)
        keys_file(os.path.join(OUT_DIR, f"{name}.timm.keys.txt"), model.state_dict())
        keys_file(os.path.join(OUT_DIR, f"{name}.torchvision.keys.txt"), tv.state_dict())
        with open(os.path.join(OUT_DIR, f"{name}.feature_info.txt"), "w") as f:
            for info in model.feature_info:
                f.write(f"{info['module']} {info['num_chs']} {info['reduction']}\n")
        t = sum(p.numel() for p in timm.create_model(name).parameters())
        v = sum(p.numel() for p in getattr(torchvision.models, tv_name)().parameters())
        print(f"{name}: timm {t}, torchvision {v}")
        lines.append(f"{name} {t} {v}\n")
    with open(os.path.join(OUT_DIR, "mobilenet.params.txt"), "a") as f:
        f.writelines(lines)


if __name__ == "__main__":
    main()
