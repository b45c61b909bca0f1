#!/usr/bin/env bash
# Run the native kernels' tests under AddressSanitizer (not part of CI: slow).
#
#   bash tests/asan.sh [pytest args]
#
# Builds jaxnet/csrc with -fsanitize=address into a temporary folder, points
# jaxnet at it (JAXNET_NATIVE_LIBRARY), preloads GCC's ASan runtime (and
# libstdc++, so that ASan can intercept C++ exceptions thrown inside jaxlib)
# into the Python process, and runs tests/test_native.py in one process
# (about 10 minutes on 2 cores). Reports go to $ASAN_LOG.<pid> (default
# /tmp/jaxnet-asan.<pid>), since pytest captures stderr; no such file means
# no error. Leak detection is off: CPython and XLA keep allocations alive
# until exit, and only jaxnet's own code is instrumented.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=$(mktemp -d)
INC=$("$PY" -c "import jax; print(jax.ffi.include_dir())")
FLAGS="-std=c++17 -O1 -g -fno-omit-frame-pointer -fsanitize=address -fPIC -fno-math-errno -isystem $INC"
FLAGS="$FLAGS --param=max-completely-peeled-insns=800 --param=max-completely-peel-times=32"
for src in jaxnet/csrc/*.cc; do
  g++ $FLAGS -c "$src" -o "$OUT/$(basename "$src" .cc).o" &
done
wait
g++ -shared -fsanitize=address -o "$OUT/_jaxnet_cpu_asan.so" "$OUT"/*.o
export JAXNET_NATIVE_LIBRARY="$OUT/_jaxnet_cpu_asan.so"
export LD_PRELOAD="$(g++ -print-file-name=libasan.so) $(g++ -print-file-name=libstdc++.so)"
export JAX_PLATFORMS=cpu
export ASAN_OPTIONS="detect_leaks=0:alloc_dealloc_mismatch=0:new_delete_type_mismatch=0:detect_odr_violation=0:log_path=${ASAN_LOG:-/tmp/jaxnet-asan}"
"$PY" -m pytest tests/test_native.py -n 0 -p no:randomly -q "$@"
