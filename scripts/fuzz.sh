#!/usr/bin/env bash
# Runs the fuzz targets (tests/fuzz/, docs/reliability.md "Fuzzing") with libFuzzer, one after the
# other, each for a bounded time, and records the executions each reached.
#
#   scripts/fuzz.sh                    every target, FUZZ_SECONDS each
#   scripts/fuzz.sh eis yaml_train     only these
#
# Environment:
#   FUZZ_SECONDS  seconds per target (default 60)
#   FUZZ_BUILD    clang build folder (default build-fuzz; configured with -DEI_FUZZ=ON on first use)
#   FUZZ_OUT      where new inputs, crash artifacts and stats.tsv go (default $FUZZ_BUILD/fuzz-out)
#   FUZZ_MERGE=1  afterwards, merge inputs that add coverage into tests/fuzz/corpus/<target>
#   FUZZ_ARGS     extra libFuzzer flags (e.g. "-jobs=2 -workers=2"; one process by default)
# Exit status 1 when a target crashed, hung, leaked or broke an invariant: the input is in
# $FUZZ_OUT/artifacts (replay it with build/tests/fuzz/fuzz_<target> FILE) and the log beside it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${FUZZ_SECONDS:-60}
build=${FUZZ_BUILD:-$root/build-fuzz}
out=${FUZZ_OUT:-$build/fuzz-out}
cd "$root"

command -v clang >/dev/null || {
    echo "fuzz.sh: clang not found (Debian: apt-get install clang libclang-rt-14-dev; scripts/install-deps.sh)" >&2
    exit 2
}
if [ ! -f "$build/CMakeCache.txt" ]; then
    # -O1 -g: what libFuzzer recommends, and a quicker build than the -O3 release flags; the build
    # type "Fuzz" keeps the top-level CMakeLists.txt from adding -O3.
    CC=clang cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Fuzz -DCMAKE_C_FLAGS="-O1 -g" -DEI_FUZZ=ON \
        -DEI_WERROR=OFF >"$build.configure.log" 2>&1 || { cat "$build.configure.log" >&2; exit 2; }
fi
cmake --build "$build" --target ei_fuzz_targets -j "$(nproc 2>/dev/null || echo 2)" >"$build/fuzz-build.log" 2>&1 ||
    { tail -40 "$build/fuzz-build.log" >&2; exit 2; }
bin=$build/tests/fuzz
if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets <"$bin/targets.txt"; fi

mkdir -p "$out/artifacts" "$out/logs"
stats=$out/stats.tsv
[ -f "$stats" ] || printf 'target\tseconds\texecutions\texec_per_s\tcorpus_units\tcoverage\tresult\n' >"$stats"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=0
for t in "${targets[@]}"; do
    exe=$bin/fuzz_$t
    [ -x "$exe" ] || { echo "fuzz.sh: no target $t" >&2; failed=1; continue; }
    work=$out/corpus/$t
    mkdir -p "$work"
    dict=()
    [ -f "$root/tests/fuzz/dict/$t.dict" ] && dict=(-dict="$root/tests/fuzz/dict/$t.dict")
    log=$out/logs/$t.log
    # New inputs go to the first folder (the work copy); the committed corpus and the regression
    # inputs are read as seeds. -timeout: an input slower than 10 s is a hang; -rss_limit_mb and
    # -malloc_limit_mb: a file that makes a reader allocate gigabytes is a finding, not a slow run.
    seeds=()
    for d in "$root/tests/fuzz/corpus/$t" "$root/tests/fuzz/regressions/$t"; do [ -d "$d" ] && seeds+=("$d"); done
    rc=0
    # shellcheck disable=SC2086
    "$exe" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2560 -malloc_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$out/artifacts/$t-" "${dict[@]}" ${FUZZ_ARGS:-} "$work" "${seeds[@]}" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)
    units=$(find "$work" -type f | wc -l)
    result=ok
    if [ "$rc" -ne 0 ]; then
        result="FAIL(rc=$rc)"
        failed=1
        grep -m1 -E 'ERROR: |runtime error|invariant broken|timeout|out-of-memory' "$log" >&2 || true
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$seconds" "${execs:-0}" "${rate:-0}" "$units" "${cov:-?}" "$result" \
        >>"$stats"
    printf 'fuzz %-16s %6ss %10s execs %7s/s  corpus %5s  cov %6s  %s\n' "$t" "$seconds" "${execs:-0}" "${rate:-0}" \
        "$units" "${cov:-?}" "$result"
    if [ "${FUZZ_MERGE:-0}" = 1 ] && [ "$rc" -eq 0 ]; then
        mkdir -p "$root/tests/fuzz/corpus/$t"
        "$exe" -merge=1 -max_len=65536 "$root/tests/fuzz/corpus/$t" "$work" >>"$log" 2>&1 || true
    fi
done
echo "fuzz.sh: stats in $stats"
exit $failed
