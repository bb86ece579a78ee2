#!/usr/bin/env python3
"""Generate PyTorch reference values for backbone's pooling and LRN tests.

Usage, from anywhere (paths are relative to this file):

    pip install torch safetensors numpy
    python scripts/gen_layer_fixtures.py

It writes, under ``backbone/tests/fixtures/`` (a few KB each, safetensors, float32):

* ``max_pool2d.safetensors``           ``torch.nn.functional.max_pool2d``
* ``avg_pool2d.safetensors``           ``torch.nn.functional.avg_pool2d``
* ``adaptive_avg_pool2d.safetensors``  ``torch.nn.functional.adaptive_avg_pool2d``
* ``lrn.safetensors``                  ``torch.nn.functional.local_response_norm``
* ``hard_activations.safetensors``     ``torch.nn.functional.hardswish`` and ``hardsigmoid``

Layout of each file (read by ``backbone/tests/pool.rs`` and ``backbone/tests/lrn.rs``):

* ``input.<name>``: the shared inputs (fixed seeds, odd and non-square sizes; ``ties`` is
  rounded and passed through ReLU so max-pool windows hold equal values, many all-zero);
* per case (``<case>`` is ``c00``, ``c01``, ...) ``<case>.params`` (int64):
    - max/avg pooling: ``[kh, kw, sh, sw, ph, pw, ceil_mode, count_include_pad, input_index]``
    - adaptive pooling: ``[oh, ow, input_index]``
    - LRN: ``[size, input_index]``, plus ``<case>.coef`` (float64): ``[alpha, beta, k]``
    - hard activations: no parameters; ``input.x`` holds -3 and 3 exactly, values an ulp
      either side of them, 0 and random values over [-8, 8]; the cases are ``hardswish`` and
      ``hardsigmoid``
  where ``input_index`` indexes the sorted list of input names (``input.<name>``);
* ``<case>.out``: the op's output;
* ``<case>.grad``: the gradient w.r.t. the input of ``sum(out * w)``, with the fixed weights
  ``w[i] = ((37 * i + 11) % 17) / 8 - 1`` over the row-major flattened output (exact in
  float32; the Rust tests rebuild them with the same formula).

The values are deterministic for a given PyTorch version on the CPU; regenerate after
changing the cases and commit the fixtures.
"""

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import save_file

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "backbone" / "tests" / "fixtures"


def weights_like(t: torch.Tensor) -> torch.Tensor:
    """The fixed gradient weights: w[i] = ((37 i + 11) % 17) / 8 - 1, row-major."""
    i = torch.arange(t.numel(), dtype=torch.int64)
    w = ((37 * i + 11) % 17).to(torch.float64) / 8.0 - 1.0
    return w.to(t.dtype).reshape(t.shape)


def randn(seed: int, shape, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float32) * scale


def out_and_grad(fn, x: torch.Tensor):
    x = x.clone().requires_grad_(True)
    out = fn(x)
    (out * weights_like(out)).sum().backward()
    return out.detach(), x.grad.detach()


def to_np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy())


def save(name: str, inputs: dict, cases: dict):
    tensors = {f"input.{k}": to_np(v) for k, v in inputs.items()}
    tensors.update({k: to_np(v) if isinstance(v, torch.Tensor) else v for k, v in cases.items()})
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{name}.safetensors"
    save_file(tensors, str(path), metadata={"generator": f"scripts/gen_layer_fixtures.py (torch {torch.__version__})"})
    print(f"{path.relative_to(ROOT)}: {len(tensors)} tensors, {path.stat().st_size} bytes")


def pool_inputs():
    # Sorted names: their index in this order is the `input_index` of the cases.
    inputs = {
        "a": randn(1, (1, 2, 7, 9)),  # odd, non-square, 2 channels
        "b": randn(2, (1, 1, 13, 11)),  # odd, non-square
        "ties": torch.relu(torch.round(randn(3, (2, 1, 7, 9), 2.0)) / 2.0),  # ties, zeros, 2 items
    }
    return dict(sorted(inputs.items()))


# (input, kernel, stride, padding, ceil_mode, count_include_pad)
POOL_CASES = [
    ("a", (2, 2), (2, 2), (0, 0), False, True),
    ("a", (3, 3), (3, 3), (1, 1), True, True),  # width 9: last window overhangs the padding
    ("a", (2, 2), (2, 2), (0, 0), True, False),
    ("a", (3, 3), (1, 1), (1, 1), False, True),
    ("a", (3, 2), (2, 1), (1, 0), True, False),
    ("b", (3, 3), (2, 2), (1, 1), False, True),
    ("b", (3, 3), (2, 2), (1, 1), True, False),
    ("b", (2, 3), (1, 2), (1, 1), True, True),
    ("b", (2, 2), (3, 3), (1, 0), True, False),
    ("ties", (2, 2), (2, 2), (0, 0), False, True),
    ("ties", (3, 3), (2, 2), (1, 1), True, True),
    ("ties", (3, 3), (1, 1), (0, 0), False, True),
]


def gen_pool(name: str, fn):
    inputs = pool_inputs()
    names = list(inputs)
    cases = {}
    for i, (inp, k, s, p, ceil, cip) in enumerate(POOL_CASES):
        out, grad = out_and_grad(lambda x: fn(x, k, s, p, ceil, cip), inputs[inp])
        key = f"c{i:02}"
        params = [*k, *s, *p, int(ceil), int(cip), names.index(inp)]
        cases[f"{key}.params"] = np.array(params, dtype=np.int64)
        cases[f"{key}.out"] = out
        cases[f"{key}.grad"] = grad
    save(name, inputs, cases)


def gen_adaptive():
    inputs = {"c": randn(4, (1, 1, 10, 13)), "d": randn(5, (2, 2, 5, 7))}
    inputs = dict(sorted(inputs.items()))
    names = list(inputs)
    cases = {}
    for i, (inp, size) in enumerate([("c", (1, 1)), ("c", (3, 5)), ("c", (7, 7)), ("c", (4, 13)), ("c", (12, 15)), ("d", (3, 4))]):
        out, grad = out_and_grad(lambda x: F.adaptive_avg_pool2d(x, size), inputs[inp])
        key = f"c{i:02}"
        cases[f"{key}.params"] = np.array([*size, names.index(inp)], dtype=np.int64)
        cases[f"{key}.out"] = out
        cases[f"{key}.grad"] = grad
    save("adaptive_avg_pool2d", inputs, cases)


def gen_lrn():
    inputs = {"e": randn(6, (2, 7, 3, 2), 2.0), "f": randn(7, (1, 6, 5), 2.0)}
    inputs = dict(sorted(inputs.items()))
    names = list(inputs)
    cases = {}
    # (input, size, alpha, beta, k)
    specs = [
        ("e", 5, 1e-4, 0.75, 2.0),  # AlexNet
        ("e", 4, 1e-4, 0.75, 2.0),  # even size: asymmetric window
        ("e", 4, 0.5, 0.75, 1.0),  # large alpha so the window matters well above tolerance
        ("e", 1, 1.0, 0.5, 1.0),
        ("f", 3, 0.3, 0.75, 1.0),  # 3-d input
    ]
    for i, (inp, size, alpha, beta, k) in enumerate(specs):
        out, grad = out_and_grad(lambda x: F.local_response_norm(x, size, alpha, beta, k), inputs[inp])
        key = f"c{i:02}"
        cases[f"{key}.params"] = np.array([size, names.index(inp)], dtype=np.int64)
        cases[f"{key}.coef"] = np.array([alpha, beta, k], dtype=np.float64)
        cases[f"{key}.out"] = out
        cases[f"{key}.grad"] = grad
    save("lrn", inputs, cases)


def gen_hard_activations():
    edges = torch.tensor([-3.0, 3.0, 0.0, -6.0, 6.0], dtype=torch.float32)
    ulps = torch.cat([torch.nextafter(edges[:2], torch.full((2,), -10.0)),
                      torch.nextafter(edges[:2], torch.full((2,), 10.0))])
    x = torch.cat([edges, ulps, randn(8, (51,), 4.0)]).reshape(2, 3, 2, 5)
    cases = {}
    for name, fn in [("hardswish", F.hardswish), ("hardsigmoid", F.hardsigmoid)]:
        out, grad = out_and_grad(fn, x)
        cases[f"{name}.out"] = out
        cases[f"{name}.grad"] = grad
    save("hard_activations", {"x": x}, cases)


def main():
    torch.set_num_threads(1)
    gen_pool(
        "max_pool2d",
        lambda x, k, s, p, ceil, cip: F.max_pool2d(x, k, s, p, ceil_mode=ceil),
    )
    gen_pool(
        "avg_pool2d",
        lambda x, k, s, p, ceil, cip: F.avg_pool2d(x, k, s, p, ceil_mode=ceil, count_include_pad=cip),
    )
    gen_adaptive()
    gen_lrn()
    gen_hard_activations()


if __name__ == "__main__":
    main()
