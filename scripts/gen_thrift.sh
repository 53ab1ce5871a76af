#!/usr/bin/env bash
# Regenerate thermos/gen/*/ from the IDL files next to them with Debian's thrift-compiler.
# Usage: scripts/gen_thrift.sh [OUTPUT_ROOT]   (default: the repository; tests pass a temp dir)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here}
command -v thrift >/dev/null || { echo "gen_thrift: thrift compiler not found; apt-get install thrift-compiler" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for idl in "$here"/thermos/gen/*.thrift; do
  thrift --gen py -out "$tmp" "$idl"
done
for pkg in "$tmp"/thermos/gen/*/; do
  name=$(basename "$pkg")
  mkdir -p "$out/thermos/gen/$name"
  rm -f "$pkg/remote" "$pkg"/*-remote
  cp "$pkg"/*.py "$out/thermos/gen/$name/"
done
