#!/usr/bin/env bash
# PyTorch checkpoints: doconv-fold against cp and against the same fold in Python with
# torch (bench/checkpoint_bench.py says what is measured).
#
#   bench/checkpoint.sh [--rounds N]
#
# Needs a virtualenv with torch, torchvision, safetensors and huggingface_hub (DOCONV_TORCH_PYTHON, default
# /opt/torchenv/bin/python; pip-installed from PyPI when missing: a large download). Never
# runs in CI or in the test suite.
set -euo pipefail
[ -x /usr/bin/time ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }
root="$(cd "$(dirname "$0")/.." && pwd)"
torch_python="${DOCONV_TORCH_PYTHON:-/opt/torchenv/bin/python}"
if ! "$torch_python" -c "import torch, torchvision, safetensors, huggingface_hub" 2>/dev/null; then
  python3 -m venv "$(dirname "$(dirname "$torch_python")")"
  "$torch_python" -m pip install --quiet torch torchvision safetensors huggingface_hub numpy
fi
bin="$("$root/bench/build.sh" "$root/.build-bench")"
"$torch_python" "$root/bench/checkpoint_bench.py" --doconv "$bin/doconv-fold" "$@"
