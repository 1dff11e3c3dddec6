#!/usr/bin/env bash
# Configures and builds edgeinfinite.  scripts/build.sh [release|sanitize] [extra cmake args]
#   release  -> build/        (-O3 -march=x86-64-v3)
#   sanitize -> build-asan/   (AddressSanitizer + UndefinedBehaviorSanitizer)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
kind=${1:-release}
shift || true
jobs=$(nproc 2>/dev/null || echo 2)
case "$kind" in
  release)  dir="$root/build";      args=(-DCMAKE_BUILD_TYPE=Release) ;;
  sanitize) dir="$root/build-asan"; args=(-DCMAKE_BUILD_TYPE=Debug -DEI_SANITIZE=ON) ;;
  *) echo "build.sh: unknown kind '$kind' (release|sanitize)" >&2; exit 2 ;;
esac
cmake -S "$root" -B "$dir" "${args[@]}" "$@" >/dev/null
cmake --build "$dir" -j "$jobs"
