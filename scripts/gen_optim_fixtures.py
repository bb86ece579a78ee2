"""Reference trajectories of PyTorch's Adam, AdamW and SGD, schedules, gradient clipping and
label smoothing for the trainer tests.

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

It also writes trainer/tests/fixtures/optim_extras.safetensors (read by
trainer/tests/optim_extras.rs), all float64 unless stated:

    groups/init, groups/coef       [23]: a (3x4), b (5), c (2x3) flattened and concatenated;
                                   the same loss as above
    {case}/hparams                 SGD: [lr, momentum, dampening, nesterov (0/1), weight_decay,
                                   lr_scale of the no-decay group]; AdamW: [lr, beta1, beta2,
                                   eps, weight_decay, lr_scale of the no-decay group]
    {case}/f64/traj                [STEPS + 1, 23]: the parameters before and after each step
    {case}/f32/final               [23] float32: the parameters after STEPS steps in float32
        Two parameter groups, as trainer::optim::param_groups splits them: {a, c} (rank 2, with
        weight decay) and {b} (rank 1: weight_decay=0, lr = lr * lr_scale).
    schedule/meta                  [base lr, total steps, steps per epoch]
    schedule/{name}                [total steps]: the lr used at each step (read before step k):
        cosine         CosineAnnealingLR(T_max=total), stepped per step
        step           StepLR(step_size=2, gamma=0.5), stepped per epoch
        warmup_cosine  SequentialLR([LinearLR(1/5, 1, total_iters=4), CosineAnnealingLR(T_max=total-5)],
                       milestones=[5]), per step: lr = base * (k+1)/5 for k < 5, then cosine
        warmup_step    SequentialLR([LinearLR(1/3, 1, total_iters=2), StepLR(step_size=2 * 4, gamma=0.1)],
                       milestones=[3]), per step
        warmup_constant LinearLR(1/4, 1, total_iters=3), per step
    clip/{f64,f32}/before          [23] gradients of a, b, c (flattened, concatenated)
    clip/{f64,f32}/max_norm        [2] the two max_norm values (one clips, one does not)
    clip/{f64,f32}/after{0,1}      [23] gradients after clip_grad_norm_(max_norm[i], foreach=False)
    clip/{f64,f32}/norm            [2] the returned total norms
    ce/logits [4, 5], ce/targets [4] i64, ce/smoothing [2]
    ce/loss [2], ce/grad{0,1} [4, 5] F.cross_entropy(logits, targets, label_smoothing=s) and its
                                   gradient with respect to the logits
    ce/topk [5] i64                how many rows have the target among the top k, k = 1 .. 5
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
FIXTURES = Path(__file__).resolve().parent.parent / "trainer" / "tests" / "fixtures"
OUT = FIXTURES / "optim_trajectories.safetensors"
EXTRAS = FIXTURES / "optim_extras.safetensors"
GROUP_CASES = [
    # name, optimizer, kwargs (weight decay applies to {a, c} only), lr_scale of {b}
    ("sgd_plain", "sgd", dict(lr=0.05), 1.0),
    ("sgd_momentum", "sgd", dict(lr=0.05, momentum=0.9), 1.0),
    ("sgd_momentum_wd", "sgd", dict(lr=0.03, momentum=0.9, weight_decay=0.1), 1.0),
    ("sgd_nesterov_wd", "sgd", dict(lr=0.03, momentum=0.9, nesterov=True, weight_decay=0.1), 0.5),
    ("sgd_dampening", "sgd", dict(lr=0.04, momentum=0.8, dampening=0.3, weight_decay=0.05), 0.25),
    ("adamw_groups", "adamw", dict(lr=5e-2, betas=(0.85, 0.995), eps=1e-7, weight_decay=0.2), 0.5),
]


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
    extras()


def flat(tensors):
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def unflat(vec, dtype):
    out, i = {}, 0
    for n, s in SHAPES.items():
        k = int(np.prod(s))
        out[n] = vec[i : i + k].reshape(s).to(dtype).clone().requires_grad_(True)
        i += k
    return out


def group_cases(out, rng):
    init = torch.from_numpy(rng.uniform(-1.5, 1.5, size=23))
    coef = torch.from_numpy(rng.uniform(-1.0, 1.0, size=23))
    out["groups/init"], out["groups/coef"] = init, coef
    for case, kind, kwargs, scale in GROUP_CASES:
        if kind == "sgd":
            cls = torch.optim.SGD
            hp = {**cls([torch.zeros(1, requires_grad=True)]).defaults, **kwargs}
            row = [hp["lr"], hp["momentum"], hp["dampening"], float(hp["nesterov"]), hp["weight_decay"], scale]
        else:
            cls = torch.optim.AdamW
            hp = {**cls([torch.zeros(1, requires_grad=True)]).defaults, **kwargs}
            row = [hp["lr"], hp["betas"][0], hp["betas"][1], hp["eps"], hp["weight_decay"], scale]
        out[f"{case}/hparams"] = torch.tensor(row, dtype=torch.float64)
        for tag, dtype in (("f64", torch.float64), ("f32", torch.float32)):
            params = unflat(init, dtype)
            cs = {n: t.detach().to(dtype) for n, t in unflat(coef, dtype).items()}
            groups = [
                {"params": [params["a"], params["c"]]},
                {"params": [params["b"]], "weight_decay": 0.0, "lr": kwargs["lr"] * scale},
            ]
            opt = cls(groups, foreach=False, **kwargs)
            traj = [flat(params.values())]
            for k in range(STEPS):
                opt.zero_grad(set_to_none=True)
                loss_at(k, params, cs).backward()
                opt.step()
                traj.append(flat(params.values()))
            if tag == "f64":
                out[f"{case}/f64/traj"] = torch.stack(traj)
            else:
                out[f"{case}/f32/final"] = traj[-1]


def lrs(scheduler_factory, steps, per_epoch_every=1):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1)
    sched = scheduler_factory(opt)
    out = []
    for k in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        if (k + 1) % per_epoch_every == 0:
            sched.step()
    return torch.tensor(out, dtype=torch.float64)


def schedules(out):
    S = torch.optim.lr_scheduler
    total, spe = 24, 4
    out["schedule/meta"] = torch.tensor([0.1, total, spe], dtype=torch.float64)
    out["schedule/cosine"] = lrs(lambda o: S.CosineAnnealingLR(o, T_max=total), total)
    out["schedule/step"] = lrs(lambda o: S.StepLR(o, step_size=2, gamma=0.5), total, spe)
    out["schedule/warmup_cosine"] = lrs(
        lambda o: S.SequentialLR(
            o,
            [S.LinearLR(o, 1 / 5, 1.0, total_iters=4), S.CosineAnnealingLR(o, T_max=total - 5)],
            milestones=[5],
        ),
        total,
    )
    out["schedule/warmup_step"] = lrs(
        lambda o: S.SequentialLR(
            o,
            [S.LinearLR(o, 1 / 3, 1.0, total_iters=2), S.StepLR(o, step_size=2 * spe, gamma=0.1)],
            milestones=[3],
        ),
        total,
    )
    out["schedule/warmup_constant"] = lrs(lambda o: S.LinearLR(o, 1 / 4, 1.0, total_iters=3), total)


def clipping(out, rng):
    before = torch.from_numpy(rng.normal(0.0, 1.0, size=23))
    max_norms = [1.5, 100.0]
    for tag, dtype in (("f64", torch.float64), ("f32", torch.float32)):
        out[f"clip/{tag}/before"] = before.to(dtype)
        out[f"clip/{tag}/max_norm"] = torch.tensor(max_norms, dtype=torch.float64)
        norms = []
        for i, max_norm in enumerate(max_norms):
            params = unflat(before, dtype)
            for n, p in params.items():
                p.grad = p.detach().clone()
            norms.append(float(torch.nn.utils.clip_grad_norm_(list(params.values()), max_norm, foreach=False)))
            out[f"clip/{tag}/after{i}"] = flat([p.grad for p in params.values()])
        out[f"clip/{tag}/norm"] = torch.tensor(norms, dtype=torch.float64)


def label_smoothing(out, rng):
    logits = torch.from_numpy(rng.normal(0.0, 2.0, size=(4, 5)))
    logits[2, 1] = 900.0  # far outside exp's range: needs the max-shifted log-softmax
    targets = torch.tensor([3, 0, 1, 4], dtype=torch.int64)
    smoothing = [0.1, 0.3]
    out["ce/logits"], out["ce/targets"] = logits, targets
    out["ce/smoothing"] = torch.tensor(smoothing, dtype=torch.float64)
    losses = []
    for i, s in enumerate(smoothing):
        x = logits.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(x, targets, label_smoothing=s)
        loss.backward()
        losses.append(float(loss.detach()))
        out[f"ce/grad{i}"] = x.grad.clone()
    out["ce/loss"] = torch.tensor(losses, dtype=torch.float64)
    topk = [int((torch.topk(logits, k, dim=1).indices == targets[:, None]).any(1).sum()) for k in range(1, 6)]
    out["ce/topk"] = torch.tensor(topk, dtype=torch.int64)


def extras():
    rng = np.random.default_rng(20250101)
    out = {}
    group_cases(out, rng)
    schedules(out)
    clipping(out, rng)
    label_smoothing(out, rng)
    save_file({k: v.contiguous() for k, v in out.items()}, str(EXTRAS))
    print(f"wrote {len(out)} tensors to {EXTRAS} (torch {torch.__version__})")


if __name__ == "__main__":
    main()
