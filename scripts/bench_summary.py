"""BENCHMARKS.md's table from several runs of the reference suite (the `--out` CSVs of
`cargo xtask bench --suite reference --compare torch,ort`): per row the median over the runs
of each figure, and the range over the runs of each ratio (ours / peer, measured in the same
run, so machine noise hits both alike).

    python scripts/bench_summary.py runs/bench-1.csv runs/bench-2.csv runs/bench-3.csv
"""
import csv
import statistics
import sys


def number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def fmt(value, digits=1):
    return "-" if value is None else f"{value:,.{digits}f}"


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio_cell(ours, peer):
    ratios = [o / p for o, p in zip(ours, peer) if o is not None and p]
    if not ratios:
        return "-"
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


def main(paths):
    runs = []
    for path in paths:
        with open(path, newline="") as f:
            runs.append(list(csv.DictReader(f)))
    keys = [(r["model"], r["mode"], r["batch_size"], r["img_size"]) for r in runs[0]]
    print(
        "| model | mode | batch | img | ours samples/s | torch samples/s | ours/torch (range) "
        "| ORT samples/s | ours/ORT (range) | ours peak MB | torch peak MB | ORT peak MB |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | --- | ---: | ---: | ---: |")
    for key in keys:
        rows = [
            next(r for r in run if (r["model"], r["mode"], r["batch_size"], r["img_size"]) == key)
            for run in runs
        ]
        col = lambda name: [number(r.get(name)) for r in rows]
        ours, torch, ort = col("samples_per_sec"), col("torch_samples_per_sec"), col("ort_samples_per_sec")
        print(
            f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {fmt(median(ours))} | {fmt(median(torch))} "
            f"| {ratio_cell(ours, torch)} | {fmt(median(ort))} | {ratio_cell(ours, ort)} "
            f"| {fmt(median(col('peak_mem_mb')), 0)} | {fmt(median(col('torch_peak_mem_mb')), 0)} "
            f"| {fmt(median(col('ort_peak_mem_mb')), 0)} |"
        )


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
