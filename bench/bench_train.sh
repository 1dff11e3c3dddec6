#!/usr/bin/env bash
# Training speed of S-SFT, `ei train` vs the PyTorch baseline: see bench/bench_train.py (knobs as
# environment variables: REPS, DOC_LEN, STEPS, THREADS, MPI, MPI_REPS, MPI_DOC_LEN, MEM_LIMIT_GB,
# TORCH_VARIANT, PROFILE, SCRATCH, BUILD) and docs/benchmarks.md.
#   bench/bench_train.sh                              # full run
#   REPS=5 DOC_LEN=2048 MPI_REPS=3 bench/bench_train.sh   # the 2K-token part only
set -euo pipefail
exec "${PYTHON:-/usr/bin/python3}" "$(dirname "$0")/bench_train.py" "$@"
