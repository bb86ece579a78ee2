"""Run the ONNX files written by the full-size export check in ONNX Runtime, against our logits.

    CONVNETS_ONNX_DIR=/tmp/onnx-full cargo test -p convnets-onnx --release --test full_size \
        -- --ignored --nocapture
    pip install onnxruntime numpy
    python scripts/onnx_ort_check.py /tmp/onnx-full [--delete]

For each `<variant>.onnx` in the folder: passes it through ONNX's own checker with shape
inference (`onnx.checker.check_model(..., full_check=True)`, where the `onnx` package is
installed), runs it on every `<variant>.b<N>.input.npy` beside it
(CPU, one thread, every graph optimisation on) and prints max |ORT - ours| / max |ours| against
`<variant>.b<N>.logits.npy` (our eval-mode logits on the same input). Exits 1 when a difference
is above 1e-5. `--delete` removes each variant's files once checked (the full-size files of the
whole catalogue take some 10 GB).
"""
import glob
import os
import re
import sys

import numpy as np
import onnxruntime as ort

try:
    import onnx
except ImportError:  # the checker is optional
    onnx = None

TOLERANCE = 1e-5


def check(path):
    if onnx is not None:
        onnx.checker.check_model(path, full_check=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    stem = path[: -len(".onnx")]
    inputs = glob.glob(glob.escape(stem) + ".b*.input.npy")
    results = []
    for x_path in sorted(inputs, key=lambda p: int(re.search(r"\.b(\d+)\.input\.npy$", p).group(1))):
        n = int(re.search(r"\.b(\d+)\.input\.npy$", x_path).group(1))
        x = np.load(x_path)
        ours = np.load(f"{stem}.b{n}.logits.npy")
        theirs = session.run(None, {"input": x})[0]
        if theirs.shape != ours.shape:
            results.append((n, float("inf")))
            continue
        results.append((n, float(np.abs(theirs - ours).max() / np.abs(ours).max())))
    return results, [path] + inputs + glob.glob(glob.escape(stem) + ".b*.logits.npy")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    delete = "--delete" in sys.argv[1:]
    if len(args) != 1:
        sys.exit(__doc__)
    failed = []
    for path in sorted(glob.glob(os.path.join(args[0], "*.onnx"))):
        name = os.path.basename(path)[: -len(".onnx")]
        results, files = check(path)
        figures = ", ".join(f"batch {n}: {r:.2e}" for n, r in results)
        bad = not results or any(r > TOLERANCE for _, r in results)
        print(f"{name}: {figures or 'no inputs'}{' FAILS' if bad else ''}", flush=True)
        if bad:
            failed.append(name)
        if delete:
            for f in files:
                os.remove(f)
    if failed:
        sys.exit(f"above {TOLERANCE:.0e} in ONNX Runtime: {', '.join(failed)}")


if __name__ == "__main__":
    main()
