#!/usr/bin/env bash
# Compiles test/aot/program.mlir ahead of time and builds and runs a consumer
# that links the host object and the numerics core, with no LLVM.
#   run.sh LQ_COMPILE CXX NUMERICS_LIB INCLUDE_DIR WORK_DIR
set -euo pipefail
lq_compile=$1 cxx=$2 numerics=$3 include=$4 work=$5
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work" && mkdir -p "$work"
"$lq_compile" "$here/program.mlir" -o "$work/kernels"
test -f "$work/kernels/manifest.json"
"$cxx" -std=c++17 -O1 -I"$work/kernels" -I"$include" "$here/consumer.cpp" \
  "$work/kernels/lq_gemm0.host.o" "$numerics" -o "$work/consumer"
if ldd "$work/consumer" | grep -qi llvm; then
  echo "the consumer links LLVM" >&2
  exit 1
fi
"$work/consumer"
