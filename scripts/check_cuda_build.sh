#!/usr/bin/env bash
# Checks that the project's `cuda` (or `cudnn`) feature compiles on a machine with no GPU and no
# system CUDA toolkit, using only NVIDIA's wheels from PyPI (CUDA 13.4: the CUDA 12 nvcc wheels,
# nvidia-cuda-nvcc-cu12 <= 12.9.86, ship only ptxas, not nvcc/cicc, on Linux).
#
#   scripts/check_cuda_build.sh                     # venv + env + `cargo check -p xtask --features cuda`
#   FEATURE=cudnn check_cuda_build.sh
#   BUILD=1 check_cuda_build.sh    # also `cargo build --release` and run `xtask bench ... --device cuda`
#   SKIP_IF_OFFLINE=1 check_cuda_build.sh   # CI: a failed wheel download skips (loudly) instead of failing
#
# ROOT (default $TMPDIR/cuda-check) holds the venv and the cargo target dir; the repo is never written to.
# Exits non-zero on any failure.
set -euo pipefail

ROOT=${ROOT:-${TMPDIR:-/tmp}/cuda-check}
REPO=${REPO:-$(git rev-parse --show-toplevel)}
FEATURE=${FEATURE:-cuda}
BUILD=${BUILD:-0}
CUDA_TOOLKIT_PIN='cuda-toolkit[nvcc,cccl,cudart,cublas,curand]==13.4.3'
CUDNN_PIN='nvidia-cudnn-cu13==9.21.1.3'   # cudarc 0.19 `cudnn` = its cudnn-09021 bindings

mkdir -p "$ROOT"
echo "== venv: $ROOT/venv"
python3 -m venv "$ROOT/venv"
pkgs=("$CUDA_TOOLKIT_PIN")
[[ $FEATURE == cudnn ]] && pkgs+=("$CUDNN_PIN")
# A download that fails (no network to PyPI) says so and skips the check when SKIP_IF_OFFLINE=1
# (CI): the check is about our code compiling, not about the network.
if ! "$ROOT/venv/bin/pip" install -q --disable-pip-version-check "${pkgs[@]}"; then
  if [[ ${SKIP_IF_OFFLINE:-0} == 1 ]]; then
    echo "SKIPPED: the CUDA wheels could not be installed from PyPI; the cuda feature was NOT compile-checked" >&2
    exit 0
  fi
  exit 1
fi

SP=$("$ROOT/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
export CUDA_HOME=$SP/nvidia/cu13          # bin/nvcc, nvvm/bin/cicc, include/ (+ include/cccl), lib/
export CUDA_PATH=$CUDA_HOME CUDA_ROOT=$CUDA_HOME
export PATH=$CUDA_HOME/bin:$PATH          # cudarc runs `nvcc --version` (-> cuda-13040); cudaforge finds nvcc
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}   # no nvidia-smi: candle-kernels' cudaforge needs it
export CARGO_TARGET_DIR=$ROOT/target
if [[ $FEATURE == cudnn ]]; then export CUDNN_LIB=$SP/nvidia/cudnn; fi

nvcc --version | tail -2
test -f "$CUDA_HOME/include/cuda_runtime.h"
test -d "$CUDA_HOME/include/cccl/cub"

# Link-time only (cargo build): the wheels ship versioned sonames only, and there is no libcuda
# (it comes with the driver). Unversioned links + a stub libcuda.so in lib/stubs, which cudarc's
# build script adds to the link search path (as it does for a real toolkit's lib64/stubs).
( cd "$CUDA_HOME/lib"
  for l in cudart:13 cublas:13 cublasLt:13 curand:10 nvrtc:13; do
    ln -sf "lib${l%%:*}.so.${l##*:}" "lib${l%%:*}.so"
  done )
if [[ $FEATURE == cudnn ]]; then ln -sf libcudnn.so.9 "$CUDNN_LIB/lib/libcudnn.so"; fi
mkdir -p "$CUDA_HOME/lib/stubs"
CUDARC_SRC=$(cd "$REPO" && cargo metadata --format-version 1 --features "xtask/$FEATURE" 2>/dev/null |
  python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="cudarc").rsplit("/",1)[0])')
{ echo '/* Link-time stand-in for libcuda.so.1: every call fails with CUDA_ERROR_STUB_LIBRARY (34). */'
  echo 'static const char *msg = "CUDA driver stub library (no NVIDIA driver installed)";'
  echo 'int cuGetErrorString(int e, const char **s) { (void)e; *s = msg; return 0; }'
  echo 'int cuGetErrorName(int e, const char **s) { *s = e == 34 ? "CUDA_ERROR_STUB_LIBRARY" : "CUDA_ERROR_UNKNOWN"; return 0; }'
  grep -oE 'load::<_F>\("cu[A-Za-z0-9_]+"\)' "$CUDARC_SRC/src/driver/sys/mod.rs" | sed -E 's/.*\("(.*)"\)/\1/' |
    sort -u | grep -vxE 'cuGetErrorString|cuGetErrorName' | sed 's/.*/int &(void) { return 34; }/'
} > "$ROOT/cuda_stub.c"
gcc -shared -fPIC -O2 -Wl,-soname,libcuda.so.1 -o "$CUDA_HOME/lib/stubs/libcuda.so" "$ROOT/cuda_stub.c"
ln -sf libcuda.so "$CUDA_HOME/lib/stubs/libcuda.so.1"

cd "$REPO"
echo "== cargo check -p xtask --features $FEATURE"
time cargo check -p xtask --features "$FEATURE"

if [[ $BUILD == 1 ]]; then
  echo "== cargo build --release -p xtask --features $FEATURE"
  time cargo build --release -p xtask --features "$FEATURE"
  X=$CARGO_TARGET_DIR/release/xtask
  LIBS=$CUDA_HOME/lib${CUDNN_LIB:+:$CUDNN_LIB/lib}
  echo "== run without a driver (expect: libcuda.so.1 not found)"
  set +e
  LD_LIBRARY_PATH=$LIBS "$X" bench resnet18 --device cuda --iters 1; rc=$?
  echo "rc=$rc"
  echo "== run with the stub libcuda (expect: a DriverError, not a panic)"
  LD_LIBRARY_PATH=$LIBS:$CUDA_HOME/lib/stubs "$X" bench resnet18 --device cuda --iters 1; rc2=$?
  echo "rc=$rc2"
  set -e
  [[ $rc == 127 && $rc2 == 1 ]] || { echo "unexpected exit codes $rc / $rc2" >&2; exit 1; }
fi
echo "OK: xtask --features $FEATURE compiles"
