#!/usr/bin/env python3
"""PyTorch reference values of ConvNeXt's layers in ``backbone`` (``backbone/tests/convnext_layers.rs``).

Usage, from anywhere (paths are relative to this file):

    pip install torch timm safetensors numpy
    python scripts/gen_convnext_layer_fixtures.py

Writes ``backbone/tests/fixtures/convnext_layers.safetensors`` (float32; a few KB). Every
gradient is that of ``sum(out * w)`` with the fixed weights ``w[i] = ((37 * i + 11) % 17) / 8
- 1`` over the row-major flattened output (``gen_layer_fixtures.weights_like``).

* ``ln2d.*``: timm's ``LayerNorm2d(5, eps=1e-6)`` on ``ln2d.x`` ``[2, 5, 3, 4]`` with
  ``ln2d.weight`` / ``ln2d.bias``: ``ln2d.out``, ``ln2d.grad`` (input), ``ln2d.grad_weight``,
  ``ln2d.grad_bias``. An offset of 3 on the input makes the mean matter.
* ``ln.*``: ``nn.LayerNorm(7, eps=1e-6)`` on ``ln.x`` ``[2, 3, 4, 7]`` (channels last), the
  same outputs.
* ``gelu.*``: ``nn.GELU()`` (exact erf form) on ``gelu.x`` ``[101]`` (-6 to 6 and random),
  ``gelu.out``, ``gelu.grad``.
* ``ls.*``: timm's ``LayerScale``-style ``x * gamma`` on channels-last ``ls.x`` ``[2, 3, 4, 5]``
  with ``ls.gamma`` ``[5]``: ``ls.out``, ``ls.grad``, ``ls.grad_gamma``; and torchvision's
  ``layer_scale * x`` with the parameter ``[5, 1, 1]`` on ``ls.x_nchw`` ``[2, 5, 3, 4]``:
  ``ls.out_nchw``, ``ls.grad_nchw``, ``ls.grad_gamma_nchw``.
* ``dp.*``: timm's ``drop_path(x, 0.4, training=True)`` on ``dp.x`` ``[8, 3, 2, 2]`` after
  ``torch.manual_seed(0)``: ``dp.out``, ``dp.grad`` and ``dp.keep`` (1 for the samples
  torch's Bernoulli draw kept), and the same at ``drop_prob = 0`` and in eval mode (identity,
  checked here).
"""

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from safetensors.numpy import save_file
from timm.layers import LayerNorm2d, drop_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_layer_fixtures import OUT_DIR, ROOT, randn, to_np, weights_like  # noqa: E402


def backward(out):
    (out * weights_like(out)).sum().backward()


def main():
    t = {}

    x = (randn(1, (2, 5, 3, 4)) + 3.0).requires_grad_(True)
    ln2d = LayerNorm2d(5, eps=1e-6)
    with torch.no_grad():
        ln2d.weight.copy_(randn(2, (5,), 0.5) + 1.0)
        ln2d.bias.copy_(randn(3, (5,), 0.5))
    out = ln2d(x)
    backward(out)
    t.update({"ln2d.x": x.detach(), "ln2d.weight": ln2d.weight.detach(), "ln2d.bias": ln2d.bias.detach(),
              "ln2d.out": out.detach(), "ln2d.grad": x.grad, "ln2d.grad_weight": ln2d.weight.grad,
              "ln2d.grad_bias": ln2d.bias.grad})

    x = (randn(4, (2, 3, 4, 7)) - 2.0).requires_grad_(True)
    ln = nn.LayerNorm(7, eps=1e-6)
    with torch.no_grad():
        ln.weight.copy_(randn(5, (7,), 0.5) + 1.0)
        ln.bias.copy_(randn(6, (7,), 0.5))
    out = ln(x)
    backward(out)
    t.update({"ln.x": x.detach(), "ln.weight": ln.weight.detach(), "ln.bias": ln.bias.detach(),
              "ln.out": out.detach(), "ln.grad": x.grad, "ln.grad_weight": ln.weight.grad,
              "ln.grad_bias": ln.bias.grad})

    x = torch.cat([torch.linspace(-6, 6, 61), randn(7, (40,), 2.0)]).requires_grad_(True)
    out = nn.GELU()(x)
    backward(out)
    t.update({"gelu.x": x.detach(), "gelu.out": out.detach(), "gelu.grad": x.grad})

    gamma = (randn(8, (5,), 0.5)).requires_grad_(True)
    x = randn(9, (2, 3, 4, 5)).requires_grad_(True)
    out = x.mul(gamma)
    backward(out)
    t.update({"ls.x": x.detach(), "ls.gamma": gamma.detach(), "ls.out": out.detach(), "ls.grad": x.grad,
              "ls.grad_gamma": gamma.grad})
    layer_scale = gamma.detach().reshape(5, 1, 1).clone().requires_grad_(True)
    x = randn(10, (2, 5, 3, 4)).requires_grad_(True)
    out = layer_scale * x
    backward(out)
    t.update({"ls.x_nchw": x.detach(), "ls.out_nchw": out.detach(), "ls.grad_nchw": x.grad,
              "ls.grad_gamma_nchw": layer_scale.grad.reshape(5)})

    x = randn(11, (8, 3, 2, 2)).requires_grad_(True)
    torch.manual_seed(0)
    out = drop_path(x, 0.4, True)
    backward(out)
    keep = (out.detach().flatten(1).abs().sum(1) != 0).float()
    assert 0 < keep.sum() < 8, "the seed should keep some samples and drop others"
    assert torch.equal(drop_path(x, 0.4, False), x) and torch.equal(drop_path(x, 0.0, True), x)
    t.update({"dp.x": x.detach(), "dp.out": out.detach(), "dp.grad": x.grad, "dp.keep": keep})

    tensors = {k: to_np(v.contiguous()) for k, v in sorted(t.items())}
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / "convnext_layers.safetensors"
    save_file(tensors, str(path), metadata={"generator": f"scripts/gen_convnext_layer_fixtures.py, torch {torch.__version__}"})
    print(f"{path.relative_to(ROOT)}: {len(tensors)} tensors, {path.stat().st_size} bytes; kept {keep.tolist()}")


if __name__ == "__main__":
    main()
