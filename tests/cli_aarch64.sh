#!/usr/bin/env bash
# ei-eval for aarch64, tested under emulation:
#  - cross-builds the device side only (cmake/aarch64-linux-gnu.cmake, -DEI_DEVICE_ONLY=ON: core,
#    model, text, runtime with the NEON kernels, ei-eval) in a scratch folder of this build tree;
#  - the binary is an AArch64 ELF and static (no dynamic section, no program interpreter);
#  - on one stories260K .eig compiled by the host `ei` and one evaluation set (summaries, QA,
#    language modelling) plus a device-generated passkey grid, the aarch64 ei-eval under qemu and
#    the x86-64 ei-eval give the same greedy tokens and the same quality numbers (ROUGE-L, exact,
#    contains, perplexity, NLL, bit for bit), and the aarch64 run reports the neon kernels.
# Skips (exit 0, "skipped: ...") only when the cross compiler or qemu is absent;
# scripts/install-deps.sh installs both (gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user).
set -euo pipefail
EI=${EI_BIN:?EI_BIN not set}
EVAL=${EI_EVAL_BIN:?EI_EVAL_BIN not set}
FIX=${EI_FIXTURES:?EI_FIXTURES not set}
SRC=${EI_SOURCE_DIR:?EI_SOURCE_DIR not set}
CMAKE=${EI_CMAKE:-cmake}
fail() { echo "FAIL: $*" >&2; exit 1; }

command -v aarch64-linux-gnu-gcc > /dev/null ||
  { echo "skipped: aarch64-linux-gnu-gcc not found (scripts/install-deps.sh installs gcc-aarch64-linux-gnu)"; exit 0; }
[ -f /usr/aarch64-linux-gnu/lib/libc.a ] ||
  { echo "skipped: no aarch64 libc.a (scripts/install-deps.sh installs libc6-dev-arm64-cross)"; exit 0; }
QEMU=$(command -v qemu-aarch64-static || command -v qemu-aarch64 || true)
[ -n "$QEMU" ] || { echo "skipped: qemu-aarch64 not found (scripts/install-deps.sh installs qemu-user)"; exit 0; }

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# Kept in the host build tree so a rerun only rebuilds what changed (a clean CI builds it once).
XB=${EI_AARCH64_BUILD:-$(dirname "$EVAL")/aarch64-device}
log() { echo "== $*"; }

log "cross build in $XB"
"$CMAKE" -S "$SRC" -B "$XB" -DCMAKE_TOOLCHAIN_FILE="$SRC/cmake/aarch64-linux-gnu.cmake" -DEI_DEVICE_ONLY=ON \
    -DCMAKE_BUILD_TYPE=Release -DEI_FIXTURES="$FIX" > "$TMP/configure.log" 2>&1 ||
  { cat "$TMP/configure.log"; fail "configuring the aarch64 build"; }
"$CMAKE" --build "$XB" --target ei-eval -j "$(nproc 2>/dev/null || echo 2)" > "$TMP/build.log" 2>&1 ||
  { tail -50 "$TMP/build.log"; fail "building ei-eval for aarch64"; }
# (glibc's note that a static dlopen needs the same glibc at run time is expected: NNAPI is only
# ever found on Android, where ei-eval is linked dynamically)
grep -i 'warning:' "$TMP/build.log" | grep -v "statically linked applications requires at runtime" &&
  fail "the aarch64 build has warnings"
ARM=$XB/ei-eval
[ -x "$ARM" ] || fail "no $ARM after the build"

log "static AArch64 binary"
readelf -h "$ARM" | grep -Eq 'Machine: +AArch64' || fail "$ARM is not an AArch64 ELF"
readelf -d "$ARM" 2>&1 | grep -q 'There is no dynamic section' || fail "$ARM is not static: $(readelf -d "$ARM" | head)"
if readelf -l "$ARM" | grep -q 'program interpreter'; then fail "$ARM requests a program interpreter"; fi
"$QEMU" "$ARM" --help > "$TMP/help.txt" || fail "the aarch64 ei-eval does not run under $QEMU"
grep -q -- '--graph' "$TMP/help.txt" || fail "aarch64 --help"

log "inputs from the host ei"
"$EI" compile --model "$FIX/models/stories260K/stories260K.bin" --scenario "$SRC/configs/scenarios/stories.yaml" \
    --untrained-gates -o "$TMP/m.eig" > /dev/null 2>&1 || fail "ei compile"
TOK=$FIX/models/stories260K/tok512.bin
"$EI" prepare --tokenizer "$TOK" --max-docs 2 --max-tokens 160 --task summary \
    --context 'meeting_transcripts[].{speaker}: {content}' --instruction 'general_query_list[].query' \
    --answer 'general_query_list[].answer' --eval-set "$TMP/sum.eis" "$FIX/longdoc/qmsum_val.jsonl" > /dev/null 2>&1
"$EI" prepare --tokenizer "$TOK" --max-docs 1 --max-tokens 120 --task qa \
    --context 'meeting_transcripts[].{speaker}: {content}' --instruction 'specific_query_list[].query' \
    --answer 'specific_query_list[].answer' --eval-set "$TMP/qa.eis" "$FIX/longdoc/qmsum_val.jsonl" > /dev/null 2>&1
head -c 1500 "$FIX/text/tinystories.txt" > "$TMP/lm.txt"
"$EI" prepare --tokenizer "$TOK" --doc-mode paragraphs --max-docs 2 --eval-set "$TMP/lm.eis" "$TMP/lm.txt" > /dev/null 2>&1

# every run: summaries (prefill over several segments, decode across a compression), QA (the line
# stop), LM (scoring), passkey (the device tokenizer encoding the filler); 2 threads
run() { # BINARY... -- NAME SET
  local name=$1 set=$2; shift 2
  "$@" --graph "${GRAPH:-$TMP/m.eig}" --eval-set "$set" --threads 2 --max-new 40 --max-tasks 3 --quiet \
      --print-tokens --json "$TMP/$name.json" > "$TMP/$name.txt" 2> "$TMP/$name.err" ||
    fail "$name: exit $? $(cat "$TMP/$name.err")"
}
for s in sum qa lm; do
  log "$s: x86-64 and aarch64 (qemu)"
  run "x86-$s" "$TMP/$s.eis" "$EVAL"
  run "arm-$s" "$TMP/$s.eis" "$QEMU" "$ARM"
done
log "passkey grid: x86-64 and aarch64 (qemu)"
pk=(--graph "$TMP/m.eig" --passkey --lengths 128,300 --depths 0,50,100 --filler "$FIX/text/sherlock_holmes.txt"
    --max-new 10 --threads 2 --quiet --print-tokens)
"$EVAL" "${pk[@]}" --json "$TMP/x86-pk.json" > "$TMP/x86-pk.txt" || fail "x86-64 passkey grid"
"$QEMU" "$ARM" "${pk[@]}" --json "$TMP/arm-pk.json" > "$TMP/arm-pk.txt" || fail "aarch64 passkey grid"

# quantised weights: the integer dot products (Q8 blocks x I8, Q8 x I4) of the NEON table
for q in w8 w4g32; do
  "$EI" compile --model "$FIX/models/stories260K/stories260K.bin" --scenario "$SRC/configs/scenarios/stories.yaml" \
      --untrained-gates --set precision.weights=$q -o "$TMP/m-$q.eig" > /dev/null 2>&1 || fail "ei compile $q"
  log "$q weights, summaries and LM: x86-64 and aarch64 (qemu)"
  for s in sum lm; do
    GRAPH=$TMP/m-$q.eig run "x86-$q$s" "$TMP/$s.eis" "$EVAL"
    GRAPH=$TMP/m-$q.eig run "arm-$q$s" "$TMP/$s.eis" "$QEMU" "$ARM"
  done
done

for s in sum qa lm pk w8sum w8lm w4g32sum w4g32lm; do
  diff <(grep -P '\t' "$TMP/x86-$s.txt") <(grep -P '\t' "$TMP/arm-$s.txt") > "$TMP/diff.txt" ||
    { head -20 "$TMP/diff.txt"; fail "$s: greedy tokens differ between x86-64 and aarch64"; }
done
/usr/bin/python3 - "$TMP" <<'PY' || fail "x86-64 and aarch64 reports differ"
import json, sys
tmp = sys.argv[1]
QUALITY = ("exact", "contains", "correct", "rouge_l", "ppl", "nll", "scored_tokens", "generated", "stop", "text",
           "prompt_tokens", "tag", "skipped")
TASKQ = ("items", "skipped", "exact", "contains", "accuracy", "rouge_l", "ppl", "nll", "scored_tokens",
         "prompt_tokens", "generated_tokens")
n = 0
for s in ("sum", "qa", "lm", "pk", "w8sum", "w8lm", "w4g32sum", "w4g32lm"):
    x, a = (json.load(open(f"{tmp}/{arch}-{s}.json")) for arch in ("x86", "arm"))
    assert x["arch"] == "x86_64" and a["arch"] == "aarch64", (x["arch"], a["arch"])
    assert a["kernels"] == "neon", a["kernels"]
    assert x["model_file_bytes"] == a["model_file_bytes"]
    assert len(x["items"]) == len(a["items"]) > 0, s
    for i, j in zip(x["items"], a["items"]):
        for k in QUALITY:
            assert i.get(k) == j.get(k), (s, i["tag"], k, i.get(k), j.get(k))
        n += 1
    assert x["tasks"].keys() == a["tasks"].keys(), s
    for t in x["tasks"]:
        for k in TASKQ:
            assert x["tasks"][t].get(k) == a["tasks"][t].get(k), (s, t, k, x["tasks"][t].get(k), a["tasks"][t].get(k))
    assert x.get("passkey_grid") == a.get("passkey_grid"), s
print(f"   {n} items: identical tokens and quality numbers on x86-64 and aarch64")
PY
grep -h -E '^(summary|qa|lm|passkey) ' "$TMP"/arm-*.txt | sed 's/^/   aarch64 (qemu): /'
echo "cli_aarch64: ok"
