#!/usr/bin/env bash
# The test command: release build + ctest, then the sanitizer build + ctest. Fails if any test fails.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if ! scripts/install-deps.sh --check >/dev/null; then
  scripts/install-deps.sh
fi
jobs=$(nproc 2>/dev/null || echo 2)
# Tests pick their own thread counts; keep BLAS from oversubscribing the cores under ctest -j.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}

echo "== release build"
scripts/build.sh release
echo "== release tests"
(cd build && ctest --output-on-failure -j "$jobs")

echo "== sanitizer build (ASan + UBSan)"
scripts/build.sh sanitize
echo "== sanitizer tests"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
(cd build-asan && ctest --output-on-failure -j "$jobs")
echo "== all tests passed"
