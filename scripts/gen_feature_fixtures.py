"""Feature-map fixtures: what timm's `features_only=True` models (and, for the torchvision-only
alexnet / googlenet, forward hooks) return on deterministic weights and a small image, for the
Rust feature-extraction tests. Writes small JSON files (statistics only, no tensors) into
`testkit/fixtures/catalogue/` next to the catalogue fixtures.

Run by hand (not in CI), after (or independently of) `scripts/gen_catalogue_fixtures.py`, whose
weights rule and pattern helpers this script imports (nothing is copied):

    pip install torch torchvision timm numpy pillow
    python scripts/gen_feature_fixtures.py            # ~1 min on one core; deterministic

Files: `features-<library>-<model>.json`:

* timm (resnet18, resnet50, resnext50_32x4d, wide_resnet50_2, densenet121, efficientnet_b0,
  vgg16, vgg11_bn, inception_v3): the FULL model `timm.create_model(name, pretrained=False)` is
  filled by the catalogue weights rule (`gen_catalogue_fixtures.fill_model`, classifier and
  classifier scale factor as recorded in `timm-<name>.json` "expected"; the factor only touches
  the classifier, which no feature map sees); then `timm.create_model(name, pretrained=False,
  features_only=True)` gets `load_state_dict(remapped full state_dict, strict=False)`. The remap
  is timm's own first-level Sequential flattening (`timm.models._features._module_list(model,
  flatten_sequential=True)`: `features.denseblock1.*` -> `features_denseblock1.*`, `features.0.*`
  -> `features_0.*`; only densenet121 and the VGGs need it). Checked: no missing key, the
  unexpected keys are exactly the full model's head, and every feature-model tensor (
  `num_batches_tracked` included) equals the full model's tensor bit for bit.
* torchvision (alexnet, googlenet): `torchvision.models.<name>(weights=None)` (googlenet:
  `aux_logits=False, init_weights=True`, the catalogue's `keys_no_aux` model and
  `expected_no_aux` scale factor), filled by the same rule; the "features_only" maps are forward
  hooks on named modules (alexnet: features.2, features.5, features.12 = the max-pool outputs;
  googlenet: conv1, conv3, inception3b, inception4e, inception5b).

IMAGE: x = pattern([1, 3, S, S], 997, 1.0, 0.0) (the catalogue's pattern, index 997), fed as is
(no resize, no normalisation); S = "image_size" = 64, and 107 for inception_v3 (75 is the
smallest size its stem accepts, and runs, but leaves 1x1 maps after Mixed_6e's stride-2
reduction; 107 is the smallest S >= 75 where every returned map, Mixed_7c included, is at least
2x2 -- see "image_size_note").

Fields:

* "model", "library", "constructor", "features_constructor" (timm), versions, "weights_rule" (the
  catalogue's WEIGHTS_RULE text), "weights_source" (the catalogue file, classifier name and
  "classifier_scale_factor" used), "image_rule", "image_size", "image_head" (first 5 input
  values), "stats_rule".
* "feature_info": [{"module", "num_chs", "reduction", "index"}] -- timm: from
  `m.feature_info.get_dicts()` (module names as timm reports them, dotted, un-flattened);
  torchvision: the hooked module, num_chs = the map's channel count, reduction = the product of
  the strides of the Conv2d / MaxPool2d / AvgPool2d layers up to that module (the nominal stride,
  as timm counts it; for googlenet it equals S / H exactly, for alexnet at S = 64 the maps are
  smaller than S / reduction because of alexnet's unpadded 11x11 stem and pools).
* "features": one entry per returned map, in order: STATS.
* "forward_features": timm: the full model's `forward_features(x)` (timm's last unpooled map);
  alexnet: `model.features(x)`; googlenet: the output of inception5b. STATS, plus
  "equals_feature" = the index of the feature map that is bit-identical to it, or null; timm
  files also say in "forward_features_note" what it is (densenet121: ends in norm5 WITH its ReLU
  = the last map; efficientnet_b0: conv_head + bn2 WITH SiLU, 1280 channels, no feature map;
  vgg: features only, the ConvMlp `pre_logits` is in forward_head; checked by recomputing
  pre_logits by hand).
* "pre_logits": timm: `full.forward_head(full.forward_features(x), pre_logits=True)`; alexnet:
  the input of classifier.6; googlenet: the input of fc. "shape", "sum", "head".
* "logits_head": first 5 logits of the full model (the classifier scale factor applies here).

STATS of a float32 tensor t with n elements (flattened row-major, NCHW):
"shape"; "sum" and "abs_sum" in float64 over the float32 values; "head" = first 8 values;
"samples_idx" = [round(k * (n - 1) / 31) for k in range(32)] (Python round, half to even) and
"samples" = the values there. Everything in eval mode, float32, CPU, 1 thread.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_catalogue_fixtures as cat  # noqa: E402  (sets torch threads to 1; main() is guarded)

import timm  # noqa: E402
import torchvision  # noqa: E402
from timm.models._features import _module_list  # noqa: E402

torch.set_num_threads(1)

OUT_DIR = cat.OUT_DIR
IMAGE_INDEX = 997
TIMM_MODELS = [
    ("resnet18", 64), ("resnet50", 64), ("resnext50_32x4d", 64), ("wide_resnet50_2", 64),
    ("densenet121", 64), ("efficientnet_b0", 64), ("vgg16", 64), ("vgg11_bn", 64),
    ("inception_v3", 107), ("convnext_tiny", 64), ("mobilenetv2_100", 64),
    ("inception_v4", 107), ("inception_resnet_v2", 107),
    ("mobilenetv3_large_100", 64), ("mobilenetv3_small_100", 64),
    ("seresnet50", 64), ("regnetx_016", 64), ("regnety_016", 64),
    ("efficientnetv2_rw_s", 64), ("tf_efficientnetv2_s", 64),
]
TV_MODELS = {
    "alexnet": {"size": 64, "kwargs": {}, "expected": "expected",
                "stages": ["features.2", "features.5", "features.12"],
                "forward_features": "features", "pre_logits_of": "classifier.6"},
    "googlenet": {"size": 64, "kwargs": {"aux_logits": False, "init_weights": True},
                  "expected": "expected_no_aux",
                  "stages": ["conv1", "conv3", "inception3b", "inception4e", "inception5b"],
                  "forward_features": "inception5b", "pre_logits_of": "fc"},
}
IMAGE_RULE = ("pattern([1,3,S,S], 997, 1.0, 0.0) (the catalogue's pattern function), S = image_size, "
              "fed directly (no resize, no normalisation)")
STATS_RULE = ("float32 tensor flattened row-major (NCHW); sum, abs_sum in float64 of the float32 values; "
              "head = first 8 values; samples_idx = [round(k*(n-1)/31) for k in range(32)] (Python round), "
              "samples = values at samples_idx; eval mode, CPU, 1 thread")
INCEPTION_NOTE = ("75 is the smallest size inception_v3 accepts (and it runs: Mixed_6e 3x3, Mixed_7c 1x1); "
                  "107 is the smallest S >= 75 for which every returned map is at least 2x2 "
                  "(Conv2d_2b 51, Conv2d_4a 23, Mixed_5d 11, Mixed_6e 5, Mixed_7c 2); 74 fails")


RESNET_NOTE = ("forward_features = layer4 output (after the last block's ReLU) = the last feature map; "
               "pre_logits = its global average (SelectAdaptivePool2d avg + flatten)")
REGNET_NOTE = ("forward_features = stem, s1..s4, final_conv (the identity for these variants) = the "
               "last feature map (s4); pre_logits = its global average (ClassifierHead avg + flatten)")
TIMM_NOTES = {
    "resnet18": RESNET_NOTE, "resnet50": RESNET_NOTE, "resnext50_32x4d": RESNET_NOTE,
    "wide_resnet50_2": RESNET_NOTE, "seresnet50": RESNET_NOTE,
    "regnetx_016": REGNET_NOTE, "regnety_016": REGNET_NOTE,
    "densenet121": ("forward_features = self.features(x), ending in features.norm5, a BatchNormAct2d WITH its "
                    "ReLU (all values >= 0) = the last feature map (features.norm5); pre_logits = its global "
                    "average"),
    "efficientnet_b0": ("forward_features = conv_stem, bn1, blocks, conv_head (1x1, 320 -> 1280), bn2 "
                        "(BatchNormAct2d WITH SiLU): 1280 channels, NOT one of the feature maps (the last "
                        "feature map is blocks.6, 320 channels; features_only drops conv_head/bn2); "
                        "pre_logits = global average of forward_features"),
    "vgg16": ("forward_features = self.features(x) only, ending in the last MaxPool2d (features.30) = the last "
              "feature map, 512 channels; the ConvMlp pre_logits (fc1 7x7 conv, ReLU, fc2 1x1 conv, ReLU) is NOT "
              "part of it: pre_logits = head.global_pool(pre_logits(forward_features)); ConvMlp first "
              "adaptive-average-pools a map smaller than 7x7 up to 7x7 (here 2x2 -> 7x7), then fc1 gives 1x1"),
    "vgg11_bn": ("forward_features = self.features(x) only, ending in the last MaxPool2d (features.28) = the last "
                 "feature map, 512 channels; the ConvMlp pre_logits (fc1 7x7 conv, ReLU, fc2 1x1 conv, ReLU) is "
                 "NOT part of it: pre_logits = head.global_pool(pre_logits(forward_features)); ConvMlp first "
                 "adaptive-average-pools a map smaller than 7x7 up to 7x7 (here 2x2 -> 7x7), then fc1 gives 1x1"),
    "inception_v3": ("forward_features = Mixed_7c output = the last feature map; pre_logits = its global average"),
    "convnext_tiny": ("forward_features = stem, stages (norm_pre is the identity) = the last feature map "
                      "(stages.3, 768 channels); pre_logits = head.norm (LayerNorm2d, eps 1e-6) of its global "
                      "average, flattened (NormMlpClassifierHead without a hidden layer)"),
    "efficientnetv2_rw_s": ("forward_features = conv_stem, bn1, blocks, conv_head (1x1, 272 -> 1792), bn2 "
                            "WITH SiLU, NOT one of the feature maps (the last is blocks.5, 272 channels); "
                            "pre_logits = global average of forward_features"),
    "tf_efficientnetv2_s": ("TensorFlow 'SAME' padding (Conv2dSame on the stride-2 convolutions); "
                            "forward_features = conv_stem, bn1, blocks, conv_head (1x1, 256 -> 1280), bn2 WITH "
                            "SiLU, NOT one of the feature maps (the last is blocks.5, 256 channels); "
                            "pre_logits = global average of forward_features"),
    "mobilenetv2_100": ("forward_features = conv_stem, bn1, blocks, conv_head (1x1, 320 -> 1280), bn2 "
                        "(BatchNormAct2d WITH ReLU6): 1280 channels, NOT one of the feature maps (the last "
                        "feature map is blocks.6, 320 channels; features_only drops conv_head/bn2); "
                        "pre_logits = global average of forward_features"),
    "inception_v4": ("forward_features = self.features(x) = the last feature map (features.21, 1536 "
                     "channels); pre_logits = its global average"),
    "inception_resnet_v2": ("forward_features = conv2d_1a .. block8 (no ReLU), conv2d_7b = the last feature "
                            "map (conv2d_7b, 1536 channels); pre_logits = its global average"),
    "mobilenetv3_large_100": ("forward_features = conv_stem, bn1, blocks (the last, blocks.6, a 1x1 "
                              "ConvBnAct 160 -> 960 with hard-swish) = the last feature map (blocks.6, 960 "
                              "channels); pre_logits = hard-swish(conv_head(global average)) (1x1 conv "
                              "with bias, 960 -> 1280, no norm), flattened"),
    "mobilenetv3_small_100": ("forward_features = conv_stem, bn1, blocks (the last, blocks.5, a 1x1 "
                              "ConvBnAct 96 -> 576 with hard-swish) = the last feature map (blocks.5, 576 "
                              "channels); the first map is the stem (bn1, reduction 2); pre_logits = "
                              "hard-swish(conv_head(global average)) (1x1 conv with bias, 576 -> 1024), "
                              "flattened"),
}


def check_pre_logits(name, full, ff, pl):
    """pre_logits is what the notes say, recomputed by hand (to float32 rounding)."""
    with torch.no_grad():
        if name.startswith("vgg"):
            y = torch.nn.functional.adaptive_avg_pool2d(ff, (max(7, ff.shape[-2]), max(7, ff.shape[-1])))
            y = torch.relu(full.pre_logits.fc1(y))
            y = torch.relu(full.pre_logits.fc2(y))
            ref = y.mean((2, 3))
        elif name.startswith("convnext"):
            ref = full.head.norm(ff.mean((2, 3), keepdim=True)).flatten(1)
        elif name.startswith("mobilenetv3"):
            ref = torch.nn.functional.hardswish(full.conv_head(ff.mean((2, 3), keepdim=True))).flatten(1)
        else:
            ref = ff.mean((2, 3))
    assert ref.shape == pl.shape and torch.allclose(ref, pl, rtol=1e-5, atol=1e-6), name
    if name == "densenet121":
        assert float(ff.min()) >= 0.0
    if name == "efficientnet_b0":
        assert float(ff.min()) < 0.0 and ff.shape[1] == 1280


def stats(t, head=8):
    t = t.detach()
    assert t.dtype == torch.float32, t.dtype
    flat = t.reshape(-1)
    n = flat.numel()
    idx = [round(k * (n - 1) / 31) for k in range(32)]
    d = flat.double()
    return {
        "shape": list(t.shape),
        "sum": float(d.sum()),
        "abs_sum": float(d.abs().sum()),
        "head": [float(v) for v in flat[:head].tolist()],
        "samples_idx": idx,
        "samples": [float(flat[i]) for i in idx],
    }


def equal_index(maps, t):
    for i, m in enumerate(maps):
        if m.shape == t.shape and torch.equal(m, t):
            return i
    return None


def catalogue(library, name):
    with open(os.path.join(OUT_DIR, f"{library}-{name}.json")) as f:
        return json.load(f)


def image(size):
    return cat.pattern([1, 3, size, size], IMAGE_INDEX, 1.0, 0.0)


def base_record(name, library, size, x, cat_file, exp):
    v = cat.versions()
    return {
        "model": name, "library": library,
        "timm_version": v["timm_version"], "torchvision_version": v["torchvision_version"],
        "torch_version": v["torch_version"], "numpy_version": v["numpy_version"],
        "weights_rule": cat.WEIGHTS_RULE,
        "weights_source": {"catalogue_file": cat_file, "classifier": exp["classifier"],
                           "classifier_scale_factor": exp["classifier_scale_factor"]},
        "image_rule": IMAGE_RULE, "image_size": size,
        "image_head": [float(v) for v in x.flatten()[:5].tolist()],
        "stats_rule": STATS_RULE,
    }


def remap_for_features(full, feat_keys):
    """full state-dict key -> features_only key, by timm's first-level Sequential flattening
    (applied where the features_only model has the flattened name, i.e. was built with
    flatten_sequential=True. A flattened name that the features_only model also has unflattened
    is left alone: inception_resnet_v2's `repeat.1` would flatten to `repeat_1`, the name of
    another of its modules, and its features_only model is not flattened.)"""
    prefixes = [(old + ".", new + ".") for new, old, _ in _module_list(full, flatten_sequential=True)
                if new != old and any(k.startswith(new + ".") for k in feat_keys)
                and not any(k.startswith(old + ".") for k in feat_keys)]
    out = {}
    for k in full.state_dict():
        nk = k
        for old, new in prefixes:
            if k.startswith(old):
                nk = new + k[len(old):]
                break
        out[k] = nk
    return out


def timm_fixture(name, size):
    crec = catalogue("timm", name)
    exp = crec["expected"]
    full = timm.create_model(name, pretrained=False)
    full.eval()
    cls = cat.last_linear(full)
    assert cls == exp["classifier"], (cls, exp["classifier"])
    names = cat.fill_model(full, cls, exp["classifier_scale_factor"])
    assert len(names) == sum(1 for k in full.state_dict() if not k.endswith("num_batches_tracked"))
    feat = timm.create_model(name, pretrained=False, features_only=True)
    feat.eval()
    fsd = feat.state_dict()
    remap = remap_for_features(full, fsd)
    src = {remap[k]: v for k, v in full.state_dict().items()}
    res = feat.load_state_dict(src, strict=False)
    assert not res.missing_keys, res.missing_keys[:10]
    # num_batches_tracked is never reported missing by BatchNorm: check every key is covered
    uncovered = [k for k in fsd if k not in src]
    assert not uncovered, uncovered[:10]
    unexpected = sorted(res.unexpected_keys)
    for k, t in feat.state_dict().items():
        assert torch.equal(t, src[k]), k
    x = image(size)
    with torch.no_grad():
        maps = feat(x)
        ff = full.forward_features(x)
        pl = full.forward_head(ff, pre_logits=True)
        logits = full(x)
    check_pre_logits(name, full, ff, pl)
    info = [{"module": d["module"], "num_chs": int(d["num_chs"]), "reduction": int(d["reduction"]),
             "index": int(d["index"])} for d in feat.feature_info.get_dicts()]
    assert len(info) == len(maps)
    for d, m in zip(info, maps):
        assert m.shape[1] == d["num_chs"], (d, m.shape)
        assert min(m.shape[-2:]) >= 1
    rec = base_record(name, "timm", size, x, f"timm-{name}.json", exp)
    rec["constructor"] = f"timm.create_model({name!r}, pretrained=False)"
    rec["features_constructor"] = f"timm.create_model({name!r}, pretrained=False, features_only=True)"
    rec["features_class"] = type(feat).__name__
    rec["state_dict_remap"] = sorted({(k.split(".")[0] + "." + k.split(".")[1], v.split(".")[0])
                                      for k, v in remap.items() if k != v and "." in k})
    rec["state_dict_remap"] = [list(p) for p in rec["state_dict_remap"]]
    rec["unused_full_keys"] = unexpected
    if name == "inception_v3":
        rec["image_size_note"] = INCEPTION_NOTE
    rec["forward_features_note"] = TIMM_NOTES[name]
    rec["feature_info"] = info
    rec["features"] = [stats(m) for m in maps]
    rec["forward_features"] = dict(stats(ff), equals_feature=equal_index(maps, ff))
    rec["pre_logits"] = {"shape": list(pl.shape), "sum": float(pl.double().sum()),
                         "head": [float(v) for v in pl.reshape(-1)[:8].tolist()]}
    rec["logits_head"] = [float(v) for v in logits.reshape(-1)[:5].tolist()]
    return rec


def nominal_reductions(model, x, modules):
    """Product of the strides of the Conv2d / pooling layers run before each named module's
    output (in execution order), via hooks."""
    stride = [1]
    seen = {}
    handles = []

    def on_layer(m, inp, out):
        s = m.stride
        s = s[0] if isinstance(s, (tuple, list)) else s
        stride[0] *= int(s)

    for n, m in model.named_modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.MaxPool2d, torch.nn.AvgPool2d)):
            handles.append(m.register_forward_hook(on_layer))
    for n in modules:
        handles.append(model.get_submodule(n).register_forward_hook(
            lambda m, i, o, n=n: seen.__setitem__(n, stride[0])))
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return seen


def tv_fixture(name):
    spec = TV_MODELS[name]
    size = spec["size"]
    crec = catalogue("torchvision", name)
    exp = crec[spec["expected"]]
    model = getattr(torchvision.models, name)(weights=None, **spec["kwargs"])
    model.eval()
    if name == "googlenet":
        assert not model.aux_logits and not model.transform_input
        assert [k for k, _, _ in cat.keys_of(model)] == [k for k, _, _ in crec["keys_no_aux"]]
    else:
        assert [k for k, _, _ in cat.keys_of(model)] == [k for k, _, _ in crec["keys"]]
    cls = cat.last_linear(model)
    assert cls == exp["classifier"], (cls, exp["classifier"])
    cat.fill_model(model, cls, exp["classifier_scale_factor"])
    x = image(size)
    red = nominal_reductions(model, x, spec["stages"])
    out = {}
    handles = [model.get_submodule(n).register_forward_hook(
        lambda m, i, o, n=n: out.__setitem__(n, o.detach().clone())) for n in spec["stages"]]
    handles.append(model.get_submodule(spec["pre_logits_of"]).register_forward_pre_hook(
        lambda m, i: out.__setitem__("__pre_logits", i[0].detach().clone())))
    if spec["forward_features"] not in spec["stages"]:
        handles.append(model.get_submodule(spec["forward_features"]).register_forward_hook(
            lambda m, i, o: out.__setitem__("__ff", o.detach().clone())))
    with torch.no_grad():
        logits = model(x)
    for h in handles:
        h.remove()
    maps = [out[n] for n in spec["stages"]]
    ff = out.get("__ff", out.get(spec["forward_features"]))
    if name == "alexnet":
        with torch.no_grad():
            ff2 = model.features(x)
        assert torch.equal(ff, ff2)
        ff = ff2
    pl = out["__pre_logits"]
    info = [{"module": n, "num_chs": int(m.shape[1]), "reduction": int(red[n]), "index": i}
            for i, (n, m) in enumerate(zip(spec["stages"], maps))]
    ctor_args = ", ".join(["weights=None"] + [f"{k}={v!r}" for k, v in spec["kwargs"].items()])
    rec = base_record(name, "torchvision", size, x, f"torchvision-{name}.json", exp)
    rec["constructor"] = f"torchvision.models.{name}({ctor_args})"
    rec["features_method"] = "forward hooks (module outputs) on the full model, in order: " + ", ".join(spec["stages"])
    rec["reduction_rule"] = ("product of the strides of the Conv2d/MaxPool2d/AvgPool2d layers executed up to the "
                             "module's output (nominal stride; map size is "
                             + ("exactly S/reduction" if name == "googlenet" else
                                "smaller than S/reduction at S=64: unpadded 11x11 stride-4 stem and 3x3/2 pools")
                             + ")")
    rec["feature_info"] = info
    rec["features"] = [stats(m) for m in maps]
    rec["forward_features"] = dict(stats(ff), equals_feature=equal_index(maps, ff),
                                   source=("model.features(x)" if name == "alexnet" else "output of inception5b"))
    rec["pre_logits"] = {"shape": list(pl.shape), "sum": float(pl.double().sum()),
                         "head": [float(v) for v in pl.reshape(-1)[:8].tolist()],
                         "source": f"input of {spec['pre_logits_of']}"}
    rec["logits_head"] = [float(v) for v in logits.reshape(-1)[:5].tolist()]
    return rec


def check_inception_sizes():
    """75 is the smallest accepted size; 107 the smallest with every map >= 2x2 (INCEPTION_NOTE)."""
    feat = timm.create_model("inception_v3", pretrained=False, features_only=True).eval()
    with torch.no_grad():
        try:
            feat(torch.zeros(1, 3, 74, 74))
            ok74 = True
        except RuntimeError:
            ok74 = False
        m75 = feat(torch.zeros(1, 3, 75, 75))
        m106 = feat(torch.zeros(1, 3, 106, 106))
        m107 = feat(torch.zeros(1, 3, 107, 107))
    assert not ok74
    assert min(m.shape[-1] for m in m75) == 1 and min(m.shape[-1] for m in m106) == 1
    assert [m.shape[-1] for m in m107] == [51, 23, 11, 5, 2], [m.shape for m in m107]


def main():
    cat.check_pattern()
    only = set(sys.argv[1:])
    check_inception_sizes()
    for name, size in TIMM_MODELS:
        if only and f"timm-{name}" not in only:
            continue
        rec = timm_fixture(name, size)
        cat.dump(os.path.join(OUT_DIR, f"features-timm-{name}.json"), rec)
        print(f"timm-{name} S={size}: " + ", ".join(
            f"{d['module']}:{d['num_chs']}/{d['reduction']}{f['shape'][2:]}"
            for d, f in zip(rec["feature_info"], rec["features"]))
              + f" | forward_features {rec['forward_features']['shape']} = feature "
              f"{rec['forward_features']['equals_feature']} | pre_logits {rec['pre_logits']['shape']}",
              flush=True)
    for name in TV_MODELS:
        if only and f"torchvision-{name}" not in only:
            continue
        rec = tv_fixture(name)
        cat.dump(os.path.join(OUT_DIR, f"features-torchvision-{name}.json"), rec)
        print(f"torchvision-{name} S={rec['image_size']}: " + ", ".join(
            f"{d['module']}:{d['num_chs']}/{d['reduction']}{f['shape'][2:]}"
            for d, f in zip(rec["feature_info"], rec["features"]))
              + f" | forward_features {rec['forward_features']['shape']} = feature "
              f"{rec['forward_features']['equals_feature']} | pre_logits {rec['pre_logits']['shape']}",
              flush=True)


if __name__ == "__main__":
    main()
