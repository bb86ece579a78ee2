"""The peers' side of `cargo xtask bench --compare torch,ort`: one row, printed as one JSON line.

    pip install torch torchvision            # --runtime torch (the default)
    pip install onnxruntime onnx onnxscript  # --runtime ort
    python scripts/bench_torch.py --model resnet18 --mode train --batch-size 64 --img-size 32 \
        --warmup 2 --iters 10 --threads 2
    python scripts/bench_torch.py --runtime ort --model resnet18 --mode infer --batch-size 1 \
        --img-size 224 --threads 2

`--runtime ort` exports the same torchvision model (eval mode, the row's batch and image size)
to ONNX in a temporary folder and times ONNX Runtime's CPU session (all graph optimisations,
`intra_op_num_threads` = --threads, sequential execution) on the same input; inference only.
With `--onnx FILE` it times that file instead (our export: `cargo xtask bench --compare ort
--ort-model ours` passes it), in the same session on the same input.

Measures exactly what the Rust side measures: eval-mode forward passes (`infer`, under
`torch.inference_mode()`), or training steps (`train`): forward, cross-entropy (+ 0.3 x each
auxiliary head's), backward, Adam step, with the forward / backward / optimizer split. The
model is torchvision's (LeNet-5 is defined here, as in lenet/src/lib.rs), else timm's of the
same name when timm is installed (inception_v4, inception_resnet_v2, mobilenetv2_100); variants
neither has (alexnet_2012, zfnet, nin) print {"unsupported": ...}.
"""
import argparse
import json
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class LeNet5(nn.Module):
    def __init__(self, act=F.relu, pool=F.avg_pool2d, classes=10, channels=1):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, classes)
        self.act, self.pool = act, pool

    def forward(self, x):
        x = self.pool(self.act(self.conv1(x)), 2)
        x = self.pool(self.act(self.conv2(x)), 2)
        x = self.act(self.fc1(x.flatten(1)))
        return self.fc3(self.act(self.fc2(x)))


def build(name):
    """(model, input channels, classes) or None."""
    if name == "lenet5":
        return LeNet5(), 1, 10
    if name == "lenet5_tanh":
        return LeNet5(act=torch.tanh), 1, 10
    if name == "lenet5_max":
        return LeNet5(pool=F.max_pool2d), 1, 10
    import torchvision.models as tvm

    if name == "googlenet":
        return tvm.googlenet(weights=None, aux_logits=True, init_weights=True), 3, 1000
    if name == "inception_v3":
        return tvm.inception_v3(weights=None, aux_logits=True, init_weights=True), 3, 1000
    ctor = getattr(tvm, name, None)
    if ctor is None or not callable(ctor):
        return timm_model(name)
    return ctor(weights=None), 3, 1000


def timm_model(name):
    """timm's model of that name (the catalogue's timm-only variants: inception_v4,
    inception_resnet_v2, mobilenetv2_100, ...), or None without timm or such a model."""
    try:
        import timm
    except ImportError:
        return None
    if name not in timm.list_models():
        return None
    return timm.create_model(name, pretrained=False), 3, 1000


def peak_rss_mb():
    """This process's peak resident memory. Linux's VmHWM belongs to the process image, while
    ru_maxrss keeps the parent's peak across fork + exec (the bench forks this script from a
    process that may have held more)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def ort_step(model, x, a, steps):
    """A step of ONNX Runtime on `model` exported to ONNX at `x`'s shape."""
    import os
    import tempfile

    import onnxruntime as ort

    if a.onnx:  # a file exported elsewhere (`cargo xtask bench --compare ort --ort-model ours`)
        path = a.onnx
    else:
        model.eval()
        folder = tempfile.mkdtemp(prefix="bench-ort-")
        path = os.path.join(folder, "model.onnx")
        with torch.no_grad():
            try:
                torch.onnx.export(model, (x,), path, input_names=["x"], opset_version=17, dynamo=False)
            except Exception:  # a torch without the TorchScript exporter
                torch.onnx.export(model, (x,), path, input_names=["x"], dynamo=True)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if a.threads > 0:
        options.intra_op_num_threads = a.threads
        options.inter_op_num_threads = 1
    providers = ["CUDAExecutionProvider"] if a.device.startswith("cuda") else ["CPUExecutionProvider"]
    session = ort.InferenceSession(path, options, providers=providers)
    name = session.get_inputs()[0].name
    feed = {name: x.cpu().numpy()}

    def step():
        t0 = time.perf_counter()
        session.run(None, feed)
        steps.append((time.perf_counter() - t0) * 1e3)

    return step


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--mode", choices=["infer", "train"], required=True)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--img-size", type=int, required=True)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--min-time", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--channels", type=int, default=3, help="input channels of an --onnx file")
    p.add_argument("--runtime", choices=["torch", "ort"], default="torch")
    p.add_argument("--onnx", default=None, help="time this ONNX file in ONNX Runtime instead of torchvision's export")
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    built = build(a.model)
    if built is None and a.onnx and a.runtime == "ort":
        built = (None, a.channels, 1)
    if built is None:
        print(json.dumps({"unsupported": a.model}))
        return
    model, channels, classes = built
    device = torch.device("cuda" if a.device.startswith("cuda") else a.device)
    if model is not None:
        model = model.to(device)
    x = torch.randn(a.batch_size, channels, a.img_size, a.img_size, device=device)
    y = torch.arange(a.batch_size, device=device) % classes
    steps, fwd, bwd, opt = [], [], [], []

    if a.runtime == "ort":
        if a.mode != "infer":
            print(json.dumps({"unsupported": f"{a.model} {a.mode} in ONNX Runtime (inference only)"}))
            return
        step = ort_step(model, x, a, steps)
    elif a.mode == "infer":
        model.eval()

        def step():
            t0 = time.perf_counter()
            with torch.inference_mode():
                model(x)
            sync(device)
            steps.append((time.perf_counter() - t0) * 1e3)
    else:
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step():
            t0 = time.perf_counter()
            out = model(x)
            if isinstance(out, tuple):  # GoogLeNet / Inception-v3 with auxiliary heads
                logits, aux = out[0], [o for o in out[1:] if o is not None]
            else:
                logits, aux = out, []
            loss = F.cross_entropy(logits, y) + sum(0.3 * F.cross_entropy(o, y) for o in aux)
            sync(device)
            t1 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            sync(device)
            t2 = time.perf_counter()
            optimizer.step()
            sync(device)
            t3 = time.perf_counter()
            fwd.append((t1 - t0) * 1e3)
            bwd.append((t2 - t1) * 1e3)
            opt.append((t3 - t2) * 1e3)
            steps.append((t3 - t0) * 1e3)

    for _ in range(a.warmup):
        step()
    steps.clear(), fwd.clear(), bwd.clear(), opt.clear()
    start = time.perf_counter()
    while len(steps) < max(a.iters, 1) or time.perf_counter() - start < a.min_time:
        step()
    med = statistics.median(steps)
    peak = peak_rss_mb() if device.type == "cpu" else None
    print(
        json.dumps(
            {
                "samples_per_sec": a.batch_size * 1e3 / med,
                "step_time": med,
                "fwd_time": statistics.median(fwd) if fwd else None,
                "bwd_time": statistics.median(bwd) if bwd else None,
                "opt_time": statistics.median(opt) if opt else None,
                "peak_mem_mb": peak,
            }
        )
    )


if __name__ == "__main__":
    sys.exit(main())
