#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU, its driver and a CUDA toolkit (nvcc), in
# under ten minutes on 16 cores (most of it the release build). Prints one table:
#   - the build with `cuda` + `cudnn` (+ `nccl` when MPI's headers are there: libopenmpi-dev);
#   - every family's smallest variant: eval forward on CUDA against the CPU (max relative
#     error <= 1e-4), one training step on each (convnets/examples/gpu_check.rs);
#   - `xtask bench resnet18,resnet50 --device cuda` at batch 1, 16 and 64, inference and training;
#   - data-parallel training with NCCL on one rank (`mpirun -np 1 ... --distributed --device cuda`).
#
#   scripts/gpu_check.sh                 # everything
#   OUT=/tmp/gpu scripts/gpu_check.sh    # keep the logs and bench rows there (default: a temp dir)
#   OFFLINE=1 scripts/gpu_check.sh       # cargo --offline (crates fetched beforehand: cargo fetch)
#
# Exits non-zero when a step fails; every step's log is in $OUT.
set -uo pipefail
cd "$(git rev-parse --show-toplevel 2>/dev/null || dirname "$0"/..)"
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
CARGO_FLAGS=(--release)
[[ ${OFFLINE:-0} == 1 ]] && CARGO_FLAGS+=(--offline)
if [[ -z ${CUDA_COMPUTE_CAP:-} ]] && command -v nvidia-smi >/dev/null; then
  CUDA_COMPUTE_CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)
  export CUDA_COMPUTE_CAP
fi
ROWS=()
FAILED=0
row() { ROWS+=("$1|$2|$3"); }  # check | result | detail
step() {  # name, log file, command...
  local name=$1 log=$2; shift 2
  local t0=$SECONDS
  if "$@" >"$log" 2>&1; then
    row "$name" ok "$((SECONDS - t0)) s"
    return 0
  fi
  row "$name" FAILED "$((SECONDS - t0)) s, see $log"
  FAILED=1
  return 1
}

GPU=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
row "GPU" "${GPU:-none found}" "compute capability ${CUDA_COMPUTE_CAP:-?}, nvcc $(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*' || echo missing)"

FEATURES=cuda,cudnn
if pkg-config --exists ompi 2>/dev/null || command -v mpicc >/dev/null; then
  FEATURES=$FEATURES,nccl
  NCCL=1
else
  NCCL=0
fi
step "build xtask ($FEATURES)" "$OUT/build-xtask.log" \
  cargo build "${CARGO_FLAGS[@]}" -p xtask --features "$FEATURES"
step "build gpu_check (cudnn)" "$OUT/build-check.log" \
  cargo build "${CARGO_FLAGS[@]}" -p convnets --features cudnn --example gpu_check
TARGET=${CARGO_TARGET_DIR:-target}/release

# Every family: forward on CUDA against the CPU, one training step.
if step "forward + train step per family" "$OUT/families.tsv" "$TARGET/examples/gpu_check" --device cuda; then :; fi
while IFS=$'\t' read -r family variant input fwd lcpu ldev steperr result; do
  [[ $family == family || -z $family ]] && continue
  row "  $family ($variant, $input)" "$result" "forward rel err $fwd; train loss cpu $lcpu cuda $ldev; weights after step rel err $steperr"
done <"$OUT/families.tsv"

# ResNet on CUDA at batch 1, 16, 64.
if step "bench resnet18,resnet50 cuda 1/16/64" "$OUT/bench.log" \
  "$TARGET/xtask" bench resnet18,resnet50 --device cuda --mode both --batch-size 1,16,64 \
  --warmup 3 --iters 10 --out "$OUT/bench.csv"; then
  python3 - "$OUT/bench.csv" <<'PY' >"$OUT/bench.rows" || true
import csv, sys
for r in csv.DictReader(open(sys.argv[1])):
    keys = {k.lower(): v for k, v in r.items()}
    rate = float(keys.get("samples_per_sec") or "nan")
    step = keys.get("step_time") or ""
    print(f"  {keys['model']} {keys['mode']} batch {keys['batch_size']}|{rate:.1f} samples/s|step_time {step}")
PY
  while IFS='|' read -r a b c; do row "$a" "$b" "$c"; done <"$OUT/bench.rows"
fi

# NCCL, one rank: the data-parallel loop with the NCCL engine end to end.
if [[ $NCCL == 1 ]]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  if step "NCCL training, 1 rank (lenet, 1 epoch)" "$OUT/nccl.log" \
    mpirun -np 1 "$TARGET/xtask" train lenet --distributed --device cuda --epochs 1 --limit 4096 \
    --quiet --overwrite --out "$OUT/nccl-run"; then
    row "  final" "$(grep -o 'final test accuracy.*' "$OUT/nccl.log" | head -1)" ""
  fi
else
  row "NCCL training, 1 rank" SKIPPED "no MPI headers (apt-get install libopenmpi-dev openmpi-bin): the nccl feature passes its id over MPI"
fi

printf '\n%-48s | %-28s | %s\n' check result detail
printf '%s\n' "$(printf -- '-%.0s' {1..120})"
for r in "${ROWS[@]}"; do
  IFS='|' read -r a b c <<<"$r"
  printf '%-48s | %-28s | %s\n' "$a" "$b" "$c"
done
echo "logs: $OUT"
exit $FAILED
