"""Reference trajectories of PyTorch's Adam and AdamW for trainer/tests/optim.rs.

Rerun (from the repository root):

    pip install torch safetensors numpy && python scripts/gen_optim_fixtures.py

It writes trainer/tests/fixtures/optim_trajectories.safetensors (a few KiB). For each case
(Adam and AdamW, with and without weight decay, PyTorch defaults and non-default betas/eps),
and for float64 and float32, it runs STEPS optimizer steps on three parameters with the
loss

    loss_k = sum(a**3 * ca) + sum(b**2 * cb) + (sum(c**3 * cc) if k >= C_FROM else 0)

(k = 0 .. STEPS-1), so `c` has no gradient (p.grad is None) in the first C_FROM steps: PyTorch
then skips it entirely, and its own step count, which drives the bias corrections, starts late.

Tensors stored (the Rust test reads everything it needs from the file):

    {case}/hparams                 f64 [lr, beta1, beta2, eps, weight_decay, decoupled (0/1)]
    {case}/coef/{a,b,c}            f64 coefficients ca, cb, cc (cast to f32 for the f32 runs)
    {case}/{f64,f32}/init/{a,b,c}  initial parameters
    {case}/{f64,f32}/step{k}/{a,b,c}  parameters after step k (1-based)
    meta/steps, meta/c_from        i64 scalars-as-[1]
"""

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

STEPS = 6
C_FROM = 2
SHAPES = {"a": (3, 4), "b": (5,), "c": (2, 3)}
CASES = [
    # name, optimizer, kwargs
    ("adam_default", "adam", dict(lr=1e-2)),
    ("adam_l2", "adam", dict(lr=2e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("adamw_default", "adamw", dict(lr=1e-2)),
    ("adamw_wd", "adamw", dict(lr=5e-2, betas=(0.85, 0.995), eps=1e-7, weight_decay=0.2)),
]
OUT = Path(__file__).resolve().parent.parent / "trainer" / "tests" / "fixtures" / "optim_trajectories.safetensors"


def loss_at(k, params, coefs):
    loss = (params["a"] ** 3 * coefs["a"]).sum() + (params["b"] ** 2 * coefs["b"]).sum()
    if k >= C_FROM:
        loss = loss + (params["c"] ** 3 * coefs["c"]).sum()
    return loss


def main():
    rng = np.random.default_rng(20240611)
    out = {
        "meta/steps": torch.tensor([STEPS], dtype=torch.int64),
        "meta/c_from": torch.tensor([C_FROM], dtype=torch.int64),
    }
    for case, kind, kwargs in CASES:
        init = {n: torch.from_numpy(rng.uniform(-1.5, 1.5, size=s)) for n, s in SHAPES.items()}
        coefs = {n: torch.from_numpy(rng.uniform(-1.0, 1.0, size=s)) for n, s in SHAPES.items()}
        cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
        defaults = cls([torch.zeros(1, requires_grad=True)]).defaults
        hp = {**defaults, **kwargs}
        out[f"{case}/hparams"] = torch.tensor(
            [hp["lr"], hp["betas"][0], hp["betas"][1], hp["eps"], hp["weight_decay"], float(kind == "adamw")],
            dtype=torch.float64,
        )
        for n in SHAPES:
            out[f"{case}/coef/{n}"] = coefs[n].clone()
        for tag, dtype in (("f64", torch.float64), ("f32", torch.float32)):
            params = {n: init[n].to(dtype).clone().requires_grad_(True) for n in SHAPES}
            cs = {n: coefs[n].to(dtype) for n in SHAPES}
            opt = cls(list(params.values()), foreach=False, **kwargs)
            for n in SHAPES:
                out[f"{case}/{tag}/init/{n}"] = params[n].detach().clone()
            for k in range(STEPS):
                opt.zero_grad(set_to_none=True)
                loss_at(k, params, cs).backward()
                if k < C_FROM:
                    assert params["c"].grad is None
                opt.step()
                for n in SHAPES:
                    out[f"{case}/{tag}/step{k + 1}/{n}"] = params[n].detach().clone()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in out.items()}, str(OUT))
    print(f"wrote {len(out)} tensors to {OUT} (torch {torch.__version__})")


if __name__ == "__main__":
    main()
