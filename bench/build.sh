#!/usr/bin/env bash
# Builds doconv for the benches as users get it from scripts/install and the wheel: release,
# the Swift runtime, libhdf5 and libprotobuf-c linked in (no dynamic loading of some 40
# libraries at each start), with the tools' names linked to it. Prints the folder of the
# binaries.
#
# Usage: bench/build.sh SCRATCH_PATH
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
scratch="$1"
case "$scratch" in /*) ;; *) scratch="$PWD/$scratch" ;; esac
PKG_CONFIG_PATH="$("$root/scripts/static-c-libs" "$scratch/static-libs")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export PKG_CONFIG_PATH
log="$(swift build -c release --static-swift-stdlib --product doconv --package-path "$root" --scratch-path "$scratch" 2>&1)" || {
  printf '%s\n' "$log" >&2
  exit 1
}
printf '%s\n' "$log" | tail -n 1 >&2
"$root/scripts/link-tools" "$scratch/release" >/dev/null
echo "$scratch/release"
