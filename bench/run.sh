#!/usr/bin/env bash
# doconv's performance numbers, side by side with the tools users would run instead.
#
#   bench/run.sh [--rounds N] [--scale] [--no-compare] [--no-kernel]
#
# 1. builds doconv-fold (release) and makes the large DO-Conv models with
#    fixtures/make_large_models.py (ResNet-50-DO, TorchScript export, 103 MB; MobileNetV3-DO,
#    dynamo export with external data), unless bench/out/models already has them;
# 2. runs doconv-fold, onnxruntime's offline optimizer, onnxsim, polygraphy's constant
#    folding and cp on both, interleaved, N rounds (default 5): median wall time and peak RSS;
# 3. the fold kernel and verification against memcpy and numpy.einsum on the same shapes;
# 4. with --scale: synthetic models at four sizes up to 2.3 GiB of weights (needs about 5 GB
#    of free disk while it runs; it removes its files).
#
# It installs what it needs, outside the repository: a virtualenv with onnx, onnxruntime,
# numpy, onnxsim, polygraphy and onnx-graphsurgeon (DOCONV_BENCH_VENV, default
# ~/.cache/doconv-bench/venv), and for making the models the torch virtualenv of
# fixtures/make_fixtures.py plus torchvision (DOCONV_TORCH_PYTHON, default
# /opt/torchenv/bin/python; created with pip from PyPI when missing: a large download).
# Results go to bench/out (ignored by git): results.md and the JSON behind it.
# Benchmarks never run in CI or in the test suite.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
out="${DOCONV_BENCH_OUT:-$root/bench/out}"
scratch="${DOCONV_BENCH_SCRATCH:-$root/.build}"
venv="${DOCONV_BENCH_VENV:-$HOME/.cache/doconv-bench/venv}"
torch_python="${DOCONV_TORCH_PYTHON:-/opt/torchenv/bin/python}"
rounds=5 scale=0 compare=1 kernel=1
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --scale) scale=1; shift ;;
    --no-compare) compare=0; shift ;;
    --no-kernel) kernel=0; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$out/models" "$out/work"
log() { printf '\n== %s\n' "$*" >&2; }

log "building doconv (release)"
"$root/scripts/install-deps" >/dev/null
doconv="$("$root/bench/build.sh" "$scratch")/doconv-fold"

log "bench virtualenv ($venv)"
if ! "$venv/bin/python" -c "import onnx, onnxruntime, numpy, onnxsim, polygraphy, onnx_graphsurgeon" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check onnx onnxruntime numpy onnxsim polygraphy onnx-graphsurgeon
fi
bench_python="$venv/bin/python"

models=("$out/models/resnet50_do.ts.onnx" "$out/models/mobilenetv3_do.dynamo.onnx")
if [ "$compare" = 1 ]; then
  missing=()
  for m in "${models[@]}"; do [ -f "$m" ] || missing+=("$(basename "$m")"); done
  if [ ${#missing[@]} -gt 0 ]; then
    log "making ${missing[*]} with fixtures/make_large_models.py"
    if ! "$torch_python" -c "import torch, torchvision, onnx, onnxscript, onnxruntime" 2>/dev/null; then
      python3 -m venv "$(dirname "$(dirname "$torch_python")")"
      "$torch_python" -m pip install --quiet --disable-pip-version-check torch torchvision onnx onnxscript onnxruntime numpy
    fi
    "$torch_python" "$root/fixtures/make_large_models.py" --out "$out/models" --only "${missing[@]}"
  fi
fi

{
  echo "# doconv benchmark"
  echo
  "$root/bench/cpu-header.sh"
  echo "$("$bench_python" -c 'import onnx, onnxruntime, onnxsim, polygraphy, numpy; print(f"onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}, onnxsim {onnxsim.__version__}, polygraphy {polygraphy.__version__}, numpy {numpy.__version__}")')"
} > "$out/results.md"

if [ "$compare" = 1 ]; then
  log "tools side by side ($rounds rounds)"
  (cd "$root/bench" && "$bench_python" compare.py --doconv "$doconv" --venv "$venv" --rounds "$rounds" \
    --work "$out/work" --json "$out/compare.json" "${models[@]}") | tee -a "$out/results.md"
fi

if [ "$kernel" = 1 ]; then
  log "fold kernel (kernel-bench: a package target when DOCONV_BENCH is set, release build)"
  DOCONV_BENCH=1 swift build -c release --product kernel-bench --scratch-path "$scratch-bench" 2>&1 | tail -1
  echo | tee -a "$out/results.md"
  "$scratch-bench/release/kernel-bench" --json "$out/kernel.json" | tee -a "$out/results.md"
  "$bench_python" "$root/bench/einsum_bench.py" "$out/kernel.json" --json "$out/einsum.json" | tee -a "$out/results.md"
fi

if [ "$scale" = 1 ]; then
  log "scale (synthetic models, 4 sizes)"
  echo | tee -a "$out/results.md"
  (cd "$root/bench" && "$bench_python" scale.py --doconv "$doconv" --work "$out/work" --json "$out/scale.json") \
    | tee -a "$out/results.md"
fi
rm -rf "$out/work"
log "results in $out/results.md"
