#!/usr/bin/env python3
"""Generate PyTorch reference values for backbone's dense layers (``backbone/tests/layers.rs``).

Usage, from anywhere (paths are relative to this file):

    pip install torch safetensors numpy
    python scripts/gen_layer_fixtures_dense.py

It reuses the helpers of ``gen_layer_fixtures.py`` (the fixed gradient weights, seeded
inputs, the output folder) and writes, under ``backbone/tests/fixtures/`` (float32 safetensors):

* ``conv2d.safetensors``      ``torch.nn.Conv2d``
* ``linear.safetensors``      ``torch.nn.Linear``
* ``batch_norm.safetensors``  ``torch.nn.BatchNorm2d`` / ``BatchNorm1d``, train and eval
* ``conv_block.safetensors``  ``Conv2d -> BatchNorm2d(eps=1e-3) -> ReLU``, train and eval

Every gradient is that of ``sum(out * w)`` with the fixed weights
``w[i] = ((37 * i + 11) % 17) / 8 - 1`` over the row-major flattened output.

Layout
------

``conv2d``: ``input.<name>`` (sorted names; ``input_index`` indexes them), and per case
``<case>`` (``c00``, ``c01``, ...):

* ``<case>.params`` (int64): ``[in, out, kh, kw, stride, ph, pw, dilation, groups, bias,
  input_index]``;
* ``<case>.weight``, ``<case>.bias`` (when ``bias``): the layer's state dict, so a
  ``VarBuilder`` over the file with prefix ``<case>`` builds the layer;
* ``<case>.out``, ``<case>.grad`` (w.r.t. the input), ``<case>.grad_weight``,
  ``<case>.grad_bias`` (when ``bias``).

``linear``: ``input.x`` ``[5, 7]``, cases ``l00`` (bias), ``l01`` (no bias) with
``.params`` ``[in, out, bias]``, ``.weight``, ``.bias``, ``.out``, ``.grad``, ``.grad_weight``,
``.grad_bias``.

``batch_norm``: the 4-d layer ``bn.{weight,bias,running_mean,running_var}`` (non-trivial
initial running statistics), inputs ``input.x1``, ``input.x2`` ``[3, 4, 5, 7]``:

* ``train.out1``, ``train.grad1``, ``train.grad_weight1``, ``train.grad_bias1``,
  ``train.running_mean1``, ``train.running_var1``: the first training pass, on ``x1``;
* ``train.out2``, ``train.running_mean2``, ``train.running_var2``: a second pass, on ``x2``;
* ``eval.out``, ``eval.grad``: eval mode on ``x1`` with the initial running statistics;
* ``eps3.train_out``, ``eps3.running_mean``, ``eps3.running_var``, ``eps3.eval_out``: the
  same layer with ``eps = 1e-3``, one training pass on ``x1`` / eval on ``x1``;
* ``bn1d.{weight,bias,running_mean,running_var}``, ``input.v`` ``[6, 4]``, ``bn1d.train_out``,
  ``bn1d.train_grad``, ``bn1d.running_mean1``, ``bn1d.running_var1``, ``bn1d.eval_out``
  (``BatchNorm1d``; eval with the initial statistics).

``conv_block``: ``input.x`` ``[2, 3, 7, 9]``, ``block.conv.weight`` ``[4, 3, 3, 3]`` (stride 2,
padding 1, no bias), ``block.bn.{weight,bias,running_mean,running_var}`` (eps 1e-3),
``train.out``, ``train.grad``, ``train.running_mean``, ``train.running_var``, ``eval.out``,
``eval.grad`` (eval with the initial statistics).

The values are deterministic for a given PyTorch version on the CPU; regenerate after
changing the cases and commit the fixtures.
"""

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from safetensors.numpy import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_layer_fixtures import OUT_DIR, ROOT, randn, to_np, weights_like  # noqa: E402


def save(name: str, tensors: dict):
    tensors = {k: to_np(v) if isinstance(v, torch.Tensor) else v for k, v in tensors.items()}
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{name}.safetensors"
    # One metadata entry: safetensors writes the header's metadata map in no fixed order, so
    # two entries would make reruns differ byte-wise.
    metadata = {"generator": f"scripts/gen_layer_fixtures_dense.py, torch {torch.__version__}"}
    save_file(tensors, str(path), metadata=metadata)
    print(f"{path.relative_to(ROOT)}: {len(tensors)} tensors, {path.stat().st_size} bytes")


def backward(out: torch.Tensor):
    (out * weights_like(out)).sum().backward()


# (input, in, out, kernel (h, w), stride, padding (h, w), dilation, groups, bias)
CONV_CASES = [
    ("a", 3, 4, (3, 3), 1, (0, 0), 1, 1, True),
    ("a", 3, 2, (3, 3), 2, (1, 1), 1, 1, True),
    ("a", 3, 2, (5, 5), 3, (2, 2), 1, 1, False),  # remainders 0 (H) and 2 (W)
    ("a", 3, 2, (1, 7), 1, (0, 3), 1, 1, True),  # Inception's 1x7
    ("a", 3, 3, (7, 1), 2, (3, 0), 1, 1, True),  # and 7x1, strided
    ("a", 3, 3, (3, 3), 1, (2, 2), 2, 3, True),  # depthwise, dilated
    ("a", 3, 2, (3, 5), 2, (1, 2), 1, 1, False),  # rectangular kernel and padding
    ("b", 4, 2, (3, 3), 2, (1, 1), 1, 2, True),  # groups 2
    ("b", 4, 4, (3, 3), 3, (1, 1), 2, 4, False),  # depthwise, dilated, stride 3
    ("b", 4, 6, (5, 5), 2, (0, 0), 1, 2, True),  # groups 2, 3 outputs per group
    ("b", 4, 8, (3, 3), 2, (1, 1), 1, 4, True),  # depthwise with multiplier 2
    ("b", 4, 3, (3, 3), 3, (1, 1), 1, 1, True),  # remainders 0 (H) and 1 (W)
    ("b", 4, 2, (3, 3), 2, (2, 2), 2, 1, True),  # dilation 2, stride 2
    ("a", 3, 2, (4, 4), 2, (0, 0), 1, 1, True),  # even kernel, remainders 1 and 1
]


def gen_conv2d():
    inputs = {"a": randn(11, (2, 3, 7, 9)), "b": randn(12, (1, 4, 13, 11))}
    inputs = dict(sorted(inputs.items()))
    names = list(inputs)
    tensors = {f"input.{k}": v for k, v in inputs.items()}
    for i, (inp, cin, cout, k, s, p, d, g, bias) in enumerate(CONV_CASES):
        key = f"c{i:02}"
        conv = nn.Conv2d(cin, cout, k, stride=s, padding=p, dilation=d, groups=g, bias=bias)
        with torch.no_grad():
            conv.weight.copy_(randn(100 + i, conv.weight.shape, 0.5))
            if bias:
                conv.bias.copy_(randn(200 + i, conv.bias.shape, 0.5))
        x = inputs[inp].clone().requires_grad_(True)
        out = conv(x)
        backward(out)
        params = [cin, cout, *k, s, *p, d, g, int(bias), names.index(inp)]
        tensors[f"{key}.params"] = np.array(params, dtype=np.int64)
        tensors[f"{key}.weight"] = conv.weight
        tensors[f"{key}.out"] = out
        tensors[f"{key}.grad"] = x.grad
        tensors[f"{key}.grad_weight"] = conv.weight.grad
        if bias:
            tensors[f"{key}.bias"] = conv.bias
            tensors[f"{key}.grad_bias"] = conv.bias.grad
    save("conv2d", tensors)


def gen_linear():
    x0 = randn(21, (5, 7))
    tensors = {"input.x": x0}
    for i, (cin, cout, bias) in enumerate([(7, 3, True), (7, 4, False)]):
        key = f"l{i:02}"
        lin = nn.Linear(cin, cout, bias=bias)
        with torch.no_grad():
            lin.weight.copy_(randn(300 + i, lin.weight.shape, 0.5))
            if bias:
                lin.bias.copy_(randn(400 + i, lin.bias.shape, 0.5))
        x = x0.clone().requires_grad_(True)
        out = lin(x)
        backward(out)
        tensors[f"{key}.params"] = np.array([cin, cout, int(bias)], dtype=np.int64)
        tensors[f"{key}.weight"] = lin.weight
        tensors[f"{key}.out"] = out
        tensors[f"{key}.grad"] = x.grad
        tensors[f"{key}.grad_weight"] = lin.weight.grad
        if bias:
            tensors[f"{key}.bias"] = lin.bias
            tensors[f"{key}.grad_bias"] = lin.bias.grad
    save("linear", tensors)


def set_bn(bn, seed: int):
    """Non-trivial affine parameters and running statistics."""
    c = bn.num_features
    with torch.no_grad():
        bn.weight.copy_(1.0 + randn(seed, (c,), 0.3))
        bn.bias.copy_(randn(seed + 1, (c,), 0.5))
        bn.running_mean.copy_(randn(seed + 2, (c,), 0.5))
        bn.running_var.copy_(0.5 + randn(seed + 3, (c,)).abs())


def state(prefix: str, bn) -> dict:
    return {
        f"{prefix}.weight": bn.weight.detach().clone(),
        f"{prefix}.bias": bn.bias.detach().clone(),
        f"{prefix}.running_mean": bn.running_mean.clone(),
        f"{prefix}.running_var": bn.running_var.clone(),
    }


def channel_offsets(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Per-channel scale and shift so that the batch statistics are far from 0 and 1."""
    shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
    scale = 0.5 + randn(seed, (x.shape[1],)).abs()
    shift = randn(seed + 1, (x.shape[1],), 2.0)
    return x * scale.reshape(shape) + shift.reshape(shape)


def gen_batch_norm():
    x1 = channel_offsets(randn(31, (3, 4, 5, 7)), 33)
    x2 = channel_offsets(randn(32, (3, 4, 5, 7)), 35)
    tensors = {"input.x1": x1, "input.x2": x2}

    bn = nn.BatchNorm2d(4)  # eps 1e-5, momentum 0.1
    set_bn(bn, 40)
    initial = state("bn", bn)
    tensors.update(initial)

    bn.train()
    x = x1.clone().requires_grad_(True)
    out = bn(x)
    backward(out)
    tensors["train.out1"] = out
    tensors["train.grad1"] = x.grad
    tensors["train.grad_weight1"] = bn.weight.grad
    tensors["train.grad_bias1"] = bn.bias.grad
    tensors["train.running_mean1"] = bn.running_mean.clone()
    tensors["train.running_var1"] = bn.running_var.clone()
    with torch.no_grad():
        tensors["train.out2"] = bn(x2)
    tensors["train.running_mean2"] = bn.running_mean.clone()
    tensors["train.running_var2"] = bn.running_var.clone()

    bn.load_state_dict({k.removeprefix("bn."): v for k, v in initial.items()}, strict=False)
    bn.eval()
    bn.zero_grad()
    x = x1.clone().requires_grad_(True)
    out = bn(x)
    backward(out)
    tensors["eval.out"] = out
    tensors["eval.grad"] = x.grad

    bn3 = nn.BatchNorm2d(4, eps=1e-3)
    bn3.load_state_dict({k.removeprefix("bn."): v for k, v in initial.items()}, strict=False)
    with torch.no_grad():
        bn3.train()
        tensors["eps3.train_out"] = bn3(x1)
        tensors["eps3.running_mean"] = bn3.running_mean.clone()
        tensors["eps3.running_var"] = bn3.running_var.clone()
        bn3.load_state_dict({k.removeprefix("bn."): v for k, v in initial.items()}, strict=False)
        bn3.eval()
        tensors["eps3.eval_out"] = bn3(x1)

    v = channel_offsets(randn(37, (6, 4)), 38)
    tensors["input.v"] = v
    bn1 = nn.BatchNorm1d(4)
    set_bn(bn1, 50)
    initial1 = state("bn1d", bn1)
    tensors.update(initial1)
    bn1.train()
    x = v.clone().requires_grad_(True)
    out = bn1(x)
    backward(out)
    tensors["bn1d.train_out"] = out
    tensors["bn1d.train_grad"] = x.grad
    tensors["bn1d.running_mean1"] = bn1.running_mean.clone()
    tensors["bn1d.running_var1"] = bn1.running_var.clone()
    bn1.load_state_dict({k.removeprefix("bn1d."): v for k, v in initial1.items()}, strict=False)
    bn1.eval()
    with torch.no_grad():
        tensors["bn1d.eval_out"] = bn1(v)
    save("batch_norm", tensors)


def gen_conv_block():
    x0 = randn(61, (2, 3, 7, 9))
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False)
    bn = nn.BatchNorm2d(4, eps=1e-3)
    with torch.no_grad():
        conv.weight.copy_(randn(62, conv.weight.shape, 0.5))
    set_bn(bn, 63)
    block = nn.Sequential(conv, bn, nn.ReLU())
    tensors = {"input.x": x0, "block.conv.weight": conv.weight.detach().clone()}
    initial = state("block.bn", bn)
    tensors.update(initial)

    block.train()
    x = x0.clone().requires_grad_(True)
    out = block(x)
    backward(out)
    tensors["train.out"] = out
    tensors["train.grad"] = x.grad
    tensors["train.running_mean"] = bn.running_mean.clone()
    tensors["train.running_var"] = bn.running_var.clone()

    bn.load_state_dict({k.removeprefix("block.bn."): v for k, v in initial.items()}, strict=False)
    block.eval()
    x = x0.clone().requires_grad_(True)
    out = block(x)
    backward(out)
    tensors["eval.out"] = out
    tensors["eval.grad"] = x.grad
    save("conv_block", tensors)


def main():
    torch.set_num_threads(1)
    gen_conv2d()
    gen_linear()
    gen_batch_norm()
    gen_conv_block()


if __name__ == "__main__":
    main()
