#!/usr/bin/env bash
# `ei tokenize`: encoding/decoding through the CLI for each tokenizer format, stdin, errors.
# Expected ids come from llama.cpp's Llama 2 vectors and the transformers.js Qwen3 vectors.
set -u
EI=${EI_BIN:?EI_BIN not set}
FIX=${EI_FIXTURES:?EI_FIXTURES not set}
fails=0
check() { # name expected actual
    if [ "$2" != "$3" ]; then echo "FAIL $1: expected [$2] got [$3]"; fails=$((fails + 1)); else echo "ok $1"; fi
}

L2M=$FIX/tokenizers/llama2/tokenizer.model
L2B=$FIX/tokenizers/llama2/tokenizer.bin
check model "15043 3186" "$("$EI" tokenize --tokenizer "$L2M" "Hello world")"
check bin "15043 3186" "$("$EI" tokenize --tokenizer "$L2B" --vocab 32000 "Hello world")"
check bos "1 29871 15043 3186" "$("$EI" tokenize --tokenizer "$L2M" --bos " Hello world")"
check stdin "268 15043 13 1678 15043" "$(printf '    Hello\n    Hello' | "$EI" tokenize --tokenizer "$L2M" -)"
check decode "Hello world" "$("$EI" tokenize --tokenizer "$L2M" --decode 1 15043 3186)"
check decode-stdin " Hello" "$(echo "[29871, 15043]" | "$EI" tokenize --tokenizer "$L2B" --decode -)"
check qwen-special "151644 872 198 13048 0 151645" \
    "$("$EI" tokenize --tokenizer "$FIX/tokenizers/qwen3" "$(printf '<|im_start|>user\nHi!<|im_end|>')")"
lit=$("$EI" tokenize --tokenizer "$FIX/tokenizers/qwen3/tokenizer.json" --no-parse-special "<|im_start|>")
case " $lit " in *" 151644 "*) check literal "no 151644" "$lit" ;; *) check literal x x ;; esac
check qwen-roundtrip "数学 I'm" "$("$EI" tokenize --tokenizer "$FIX/tokenizers/qwen3" --decode \
    "$("$EI" tokenize --tokenizer "$FIX/tokenizers/qwen3" "数学 I'm")")"
check folder-bin "$("$EI" tokenize --tokenizer "$FIX/models/stories260K/tok512.bin" "Once upon a time")" \
    "$("$EI" tokenize --tokenizer "$FIX/models/stories260K" "Once upon a time")"

"$EI" tokenize --help >/dev/null; check help-rc 0 $?
"$EI" tokenize "x" >/dev/null 2>&1; check usage-rc 2 $?
err=$("$EI" tokenize --tokenizer "$FIX/no/such/tokenizer.model" "x" 2>&1 >/dev/null); rc=$?
check missing-rc 1 $rc
case "$err" in *"no/such/tokenizer.model"*) check missing-msg x x ;; *) check missing-msg "names the file" "$err" ;; esac
"$EI" tokenize --tokenizer "$L2M" --decode 1 99999 >/dev/null 2>&1; check bad-id-rc 1 $?
"$EI" tokenize --tokenizer "$L2M" --decode 1 abc >/dev/null 2>&1; check bad-id-text-rc 1 $?

[ $fails -eq 0 ] || { echo "$fails failure(s)"; exit 1; }
echo "all ok"
