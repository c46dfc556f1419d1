#!/usr/bin/env bash
# Regenerates the protobuf-c code of the proto targets: Sources/CONNXProto from
# schemas/onnx.proto, Sources/CTFProto from schemas/tensorflow_checkpoint.proto.
# The generated files are committed; the test suite fails when they are stale.
# Usage: schemas/generate.sh [OUTPUT_DIR]
#   without OUTPUT_DIR each target's files go to its folder; with it, every generated file
#   goes to OUTPUT_DIR (X.pb-c.c and include/X.pb-c.h), which is how the tests compare them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$root/schemas"
for pair in onnx:CONNXProto tensorflow_checkpoint:CTFProto; do
    schema=${pair%%:*}
    out=${1:-$root/Sources/${pair##*:}}
    protoc-c --c_out="$work" "$schema.proto"
    mkdir -p "$out/include"
    mv "$work/$schema.pb-c.c" "$out/$schema.pb-c.c"
    mv "$work/$schema.pb-c.h" "$out/include/$schema.pb-c.h"
done
