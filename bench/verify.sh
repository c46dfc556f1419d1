#!/usr/bin/env bash
# verify-equivalence side by side with the check users would otherwise write (onnxruntime
# running both models on 3 random inputs), on the paper's three tasks at full size:
# ResNet-50-DO (classification, folded with --fuse-bn), DeepLabv3-ResNet-50-DO at 256x512
# (segmentation) and Faster R-CNN MobileNetV3-FPN-DO (detection).
#
#   bench/verify.sh [--rounds N]
#
# Builds verify-equivalence and doconv-fold (release), makes the models with
# fixtures/make_large_models.py (the torch virtualenv, DOCONV_TORCH_PYTHON, as bench/run.sh)
# unless bench/out/models has them, folds them, and prints median wall time and peak RSS of
# each over N rounds (default 3), once per GEMM build the CPU runs (AVX-512 and AVX2 where it
# has both, forced with DOCONV_GEMM). Never run in CI or by the tests.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
out="${DOCONV_BENCH_OUT:-$root/bench/out}"
scratch="${DOCONV_BENCH_SCRATCH:-$root/.build}"
venv="${DOCONV_BENCH_VENV:-$HOME/.cache/doconv-bench/venv}"
torch_python="${DOCONV_TORCH_PYTHON:-/opt/torchenv/bin/python}"
rounds=3
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "bench/verify.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$out/models" "$out/work"

"$root/scripts/install-deps" >/dev/null
bin="$("$root/bench/build.sh" "$scratch")"

if ! "$venv/bin/python" -c "import onnxruntime, numpy" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check onnx onnxruntime numpy
fi

models=(resnet50_do.ts.onnx deeplabv3_do.ts.onnx fasterrcnn_do.ts.onnx)
missing=()
for m in "${models[@]}"; do [ -f "$out/models/$m" ] || missing+=("$m"); done
if [ ${#missing[@]} -gt 0 ]; then
  "$torch_python" "$root/fixtures/make_large_models.py" --out "$out/models" --only "${missing[@]}"
fi

pairs=()
for m in "${models[@]}"; do
  folded="$out/work/${m%.onnx}.folded.onnx"
  options=()
  [ "$m" = resnet50_do.ts.onnx ] && options=(--fuse-bn)
  "$bin/doconv-fold" "$out/models/$m" "$folded" "${options[@]}" --quiet
  pairs+=("$out/models/$m:$folded")
done

# Every GEMM build this CPU runs (DOCONV_GEMM forces one), each against onnxruntime. The
# AVX2 row on an AVX-512 CPU runs both tools under bench/hide_avx512.c (CPUID faulting), so
# that onnxruntime keeps to AVX2 kernels as well, as on an AVX2 machine; without CPUID
# faulting the row says onnxruntime used AVX-512.
builds=(avx2)
grep -qw avx512vl /proc/cpuinfo && builds=(avx512 avx2)
grep -qw fma /proc/cpuinfo || builds=(portable)
: >"$out/verify.md"
for build in "${builds[@]}"; do
  preload=""
  note=""
  if [ "$build" = avx2 ] && grep -qw avx512f /proc/cpuinfo; then
    if grep -qw cpuid_fault /proc/cpuinfo && "${CC:-cc}" -O2 -shared -fPIC -o "$out/hide_avx512.so" "$root/bench/hide_avx512.c"; then
      preload="$out/hide_avx512.so"
      note="AVX-512 hidden from both tools (bench/hide_avx512.c): onnxruntime runs its AVX2 kernels too"
    else
      note="onnxruntime still uses AVX-512 here (no CPUID faulting to hide it): an upper bound for an AVX2 machine"
    fi
  fi
  DOCONV_GEMM="$build" "$root/bench/cpu-header.sh" | tee -a "$out/verify.md"
  [ -n "$note" ] && echo "$note" | tee -a "$out/verify.md"
  DOCONV_GEMM="$build" LD_PRELOAD="$preload" "$venv/bin/python" "$root/bench/verify_bench.py" --verify "$bin/verify-equivalence" \
    --rounds "$rounds" "${pairs[@]}" | tee -a "$out/verify.md"
done
