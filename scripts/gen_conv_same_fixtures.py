#!/usr/bin/env python3
"""PyTorch reference values of TensorFlow "SAME" padding (``Conv2dConfig::same_padding`` in
``backbone``; ``backbone/tests/conv_same.rs``).

Usage, from anywhere (paths are relative to this file):

    pip install torch timm safetensors numpy
    python scripts/gen_conv_same_fixtures.py

Writes ``backbone/tests/fixtures/conv_same.safetensors`` (float32; a few KB). Each case
``<name>`` is timm's ``create_conv2d(..., padding='same')`` (a ``Conv2dSame`` where the padding
depends on the input size, a plain ``nn.Conv2d`` with symmetric padding where it does not, as
timm's ``tf_`` models build them) with the parameters ``<name>.params`` ``[in, out, kernel,
stride, dilation, groups, bias, dynamic]`` (``dynamic``: 1 where timm built a ``Conv2dSame``),
its weights ``<name>.weight`` / ``<name>.bias``, its input ``<name>.x``, its output
``<name>.out`` and the gradients of ``sum(out * w)`` (``gen_layer_fixtures.weights_like``)
w.r.t. the input, the weight and the bias: ``<name>.grad``, ``<name>.grad_weight``,
``<name>.grad_bias``.
"""

import sys
from pathlib import Path

import torch
from safetensors.numpy import save_file
from timm.layers import create_conv2d
from timm.layers.conv2d_same import Conv2dSame

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_layer_fixtures import OUT_DIR, ROOT, randn, to_np, weights_like  # noqa: E402

# name: (in, out, kernel, stride, dilation, depthwise, bias, input shape)
CASES = {
    "s2_even": (3, 4, 3, 2, 1, False, False, (2, 3, 8, 8)),
    "s2_odd": (3, 4, 3, 2, 1, False, True, (2, 3, 7, 9)),
    "s2_mixed": (2, 3, 3, 2, 1, False, True, (1, 2, 8, 7)),
    "dw_s2_even": (4, 4, 3, 2, 1, True, False, (2, 4, 10, 6)),
    "dw_k5_s2": (4, 4, 5, 2, 1, True, False, (1, 4, 9, 8)),
    "s1_k3": (3, 2, 3, 1, 1, False, True, (1, 3, 5, 6)),
    "s1_k4": (2, 3, 4, 1, 1, False, True, (1, 2, 6, 5)),
    "dilated": (2, 2, 3, 2, 2, False, True, (1, 2, 9, 8)),
    "s1_k1": (3, 5, 1, 1, 1, False, False, (1, 3, 4, 4)),
    "one_pixel": (3, 2, 3, 2, 1, False, True, (1, 3, 1, 2)),
}


def main():
    t = {}
    for i, (name, (cin, cout, k, s, d, dw, bias, shape)) in enumerate(CASES.items()):
        groups = cin if dw else 1
        conv = create_conv2d(cin, cout, k, stride=s, dilation=d, groups=groups, bias=bias, padding="same")
        with torch.no_grad():
            conv.weight.copy_(randn(100 + i, tuple(conv.weight.shape), 0.5))
            if bias:
                conv.bias.copy_(randn(200 + i, (cout,), 0.5))
        x = randn(300 + i, shape).requires_grad_(True)
        out = conv(x)
        (out * weights_like(out)).sum().backward()
        dynamic = isinstance(conv, Conv2dSame)
        t[f"{name}.params"] = torch.tensor([cin, cout, k, s, d, groups, int(bias), int(dynamic)])
        t[f"{name}.x"] = x.detach()
        t[f"{name}.weight"] = conv.weight.detach()
        t[f"{name}.out"] = out.detach()
        t[f"{name}.grad"] = x.grad
        t[f"{name}.grad_weight"] = conv.weight.grad
        if bias:
            t[f"{name}.bias"] = conv.bias.detach()
            t[f"{name}.grad_bias"] = conv.bias.grad
        print(f"{name}: {type(conv).__name__} {tuple(shape)} -> {tuple(out.shape)}")
    tensors = {k: to_np(v.contiguous()) for k, v in sorted(t.items())}
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / "conv_same.safetensors"
    save_file(tensors, str(path), metadata={"generator": f"scripts/gen_conv_same_fixtures.py, torch {torch.__version__}"})
    print(f"{path.relative_to(ROOT)}: {len(tensors)} tensors, {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
