#!/usr/bin/env bash
# Fuzzing as a test (docs/reliability.md, "Fuzzing"):
#  1. every committed corpus and regression input (tests/fuzz/corpus, tests/fuzz/regressions) goes
#     through the replay build of its target (tests/fuzz/fuzz_<target> of this build: release, or
#     ASan+UBSan), so a fixed crash stays fixed in both builds;
#  2. inputs too big to commit are generated here (a 40 000-key YAML mapping, whose duplicate-key
#     check was quadratic) and must replay within a few seconds;
#  3. in the release build only, when clang with libFuzzer is installed, scripts/fuzz.sh runs every
#     target for EI_FUZZ_SECONDS (default 3) seconds in its own build folder; new findings fail the
#     test. EI_FUZZ_SECONDS=0 skips this part.
set -u
EI=${EI_BIN:?EI_BIN not set}
SRC=${EI_SOURCE_DIR:?EI_SOURCE_DIR not set}
bin=$(dirname "$EI")/tests/fuzz
fails=0
t0=$(date +%s)

[ -f "$bin/targets.txt" ] || { echo "FAIL: no fuzz targets in $bin (tests/fuzz not built)"; exit 1; }
mapfile -t targets <"$bin/targets.txt"
for t in "${targets[@]}"; do
    if out=$(EI_FUZZ_TIMEOUT=60 "$bin/fuzz_$t" "$SRC/tests/fuzz/corpus/$t" "$SRC/tests/fuzz/regressions/$t" 2>&1); then
        echo "ok replay $t: ${out##*: }"
    else
        echo "FAIL replay $t"
        echo "$out" | tail -30
        fails=$((fails + 1))
    fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# big TARGET NAME PYTHON: an input whose cost was quadratic, too big to commit (a few MB), made by
# the python code; the replay must take under 10 s of CPU (user + sys, so a loaded machine does not
# fail it; the quadratic versions took 25 s and more in the release build).
big() {
    local t=$1 name=$2
    python3 -c "$3" >"$tmp/$name"
    local cpu rc
    cpu=$( { TIMEFORMAT='%U %S'; time EI_FUZZ_TIMEOUT=120 "$bin/fuzz_$t" "$tmp/$name" >/dev/null 2>&1; } 2>&1 ) && rc=0 || rc=$?
    cpu=$(echo "$cpu" | tail -1 | awk '{printf "%.1f", $1 + $2}')
    if [ "$rc" = 0 ] && awk "BEGIN { exit !($cpu < 10) }"; then
        echo "ok $t $name: $cpu s CPU"
    else
        echo "FAIL $t $name: rc $rc, $cpu s CPU (limit 10)"
        fails=$((fails + 1))
    fi
}
big yaml_train keys40k.yaml "import sys; sys.stdout.write(''.join('k%d: %d\\n' % (i, i) for i in range(40000)))"
big safetensors tensors60k.safetensors "import struct, sys
h = ('{' + ','.join('\"t%d\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}' % i for i in range(60000)) + '}').encode()
sys.stdout.buffer.write(struct.pack('<Q', len(h)) + h)"
echo "replay: $(($(date +%s) - t0)) s"

seconds=${EI_FUZZ_SECONDS:-3}
if [ "${EI_SANITIZE:-0}" = 1 ] || [ "$seconds" = 0 ]; then
    echo "skip libFuzzer runs (sanitizer build, or EI_FUZZ_SECONDS=0)"
elif ! command -v clang >/dev/null ||
    ! echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return 0; }' |
        clang -fsanitize=fuzzer -x c - -o "$tmp/probe" >/dev/null 2>&1; then
    echo "skip libFuzzer runs: clang with libFuzzer not installed (scripts/install-deps.sh installs it)"
else
    s=$(date +%s)
    if FUZZ_SECONDS=$seconds FUZZ_BUILD=$(dirname "$EI")/fuzz-clang FUZZ_OUT=$tmp/fuzz-out "$SRC/scripts/fuzz.sh"; then
        echo "ok libFuzzer: ${#targets[@]} targets x $seconds s ($(($(date +%s) - s)) s with the build)"
    else
        echo "FAIL libFuzzer found something (logs and inputs were in $tmp/fuzz-out):"
        tail -n 20 "$tmp"/fuzz-out/logs/*.log 2>/dev/null | grep -E '==>|ERROR|runtime error|invariant|SUMMARY' | head -40
        mkdir -p "$(dirname "$EI")/fuzz-findings" && cp -r "$tmp/fuzz-out/artifacts" "$(dirname "$EI")/fuzz-findings/" 2>/dev/null
        fails=$((fails + 1))
    fi
fi
[ $fails -eq 0 ] && echo "all fuzz checks passed" || echo "$fails fuzz checks failed"
exit $((fails > 0))
