#!/usr/bin/env bash
# Regenerates the protobuf-c code of the CONNXProto target from schemas/onnx.proto.
# The generated files are committed; the test suite fails when they are stale.
# Usage: schemas/generate.sh [OUTPUT_DIR]   (default: Sources/CONNXProto)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/Sources/CONNXProto}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$root/schemas"
protoc-c --c_out="$work" onnx.proto
mkdir -p "$out/include"
mv "$work/onnx.pb-c.c" "$out/onnx.pb-c.c"
mv "$work/onnx.pb-c.h" "$out/include/onnx.pb-c.h"
