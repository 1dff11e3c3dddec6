#!/usr/bin/env bash
# Runs every command line quoted in README.md and docs/*.md, so the documentation cannot go stale
# unnoticed. A command line is a line of a fenced code block (untagged, or sh/bash/shell/console)
# that starts, at column 0, with `ei`, `ei-<tool>`, `scripts/...`, `build*/...`, `mpirun` or `adb`
# (optionally after `$ ` and VAR=value assignments); lines ending in `\` continue it. A line
# `name=value` alone defines a variable for the commands after it in the same block.
#
# The commands of one file run in order (later ones may use what earlier ones wrote) from a fresh
# folder laid out like the repository root: configs/, scripts/ and tests/ link to the sources,
# build/ to the folder of the ei binary, ../shared/fixtures to the fixtures, and `ei` is on PATH, so
# paths are used as written. Long runs are shortened by the rewrites below; files the docs assume
# (datasets a config names, a user's own JSONL) are made by the setups; commands that cannot run
# here are skipped by the allow-list, each with its reason. A skip, rewrite or setup that matches no
# command is an error too, so the lists cannot go stale either. Extend them with the three
# functions below when you document a new command (ei compile, ei-eval, ...).
#
# Failures name the file and line: docs/config.md:50: exit 1: ei train --config ...
set -uo pipefail
: "${EI_BIN:?EI_BIN must point to the ei binary}" "${EI_FIXTURES:?}" "${EI_SOURCE_DIR:?}"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
SRC=$(cd "$EI_SOURCE_DIR" && pwd)
EI_ABS=$(cd "$(dirname "$EI_BIN")" && pwd)/$(basename "$EI_BIN")

SKIPS=() REWRITES=() SETUPS=()
# FILE is a path from the repository root (README.md, docs/x.md) or '*' for every file; REGEX an
# extended regular expression matched against the command as documented (one line, its comment
# removed; before any rewrite).
# skip FILE REGEX REASON: matching commands are not run.
skip() { SKIPS+=("$1"$'\t'"$2"$'\t'"$3"); }
# rewrite FILE REGEX REPLACEMENT: sed -E 's/REGEX/REPLACEMENT/' on matching commands (\1 .. groups).
rewrite() { REWRITES+=("$1"$'\t'"$2"$'\t'"$3"); }
# setup FILE REGEX COMMANDS: runs COMMANDS (shell, in the same folder) once, before the first
# matching command of each file.
setup() { SETUPS+=("$1"$'\t'"$2"$'\t'"$3"); }
in_scope() { [ "$1" = '*' ] || [ "$1" = "$2" ]; }

# ---------------------------------------------------------------- allow-list
skip README.md 'scripts/install-deps\.sh' \
  "installs system packages with apt (as root or through sudo); the demo.sh after it rebuilds build/ and "\
"runs an 8-minute job (its steps are tested by cli_scripts.sh)"
skip README.md '^scripts/run-tests\.sh' "builds two trees and runs this whole test suite, this test included"

skip docs/ei-eval.md '^adb ' "runs on an Android phone over adb"
skip docs/benchmarks.md '^scripts/build\.sh release' "builds the release tree the benchmarks after it use (minutes to an hour each, run by hand)"

# ---------------------------------------------------------------- shortening
# Training: 2 steps, small documents, one validation sample.
rewrite '*' '^(ei train .*)$' '\1 --set train.threads=1 --set train.steps=2 --set train.warmup_steps=0 '\
'--set train.eval_every=0 --set train.eval_samples=1 --set data.max_tokens=1024 --set train.checkpoint_every=0 --quiet'
# Benchmarks: a short document, one repetition.
rewrite '*' '^(build/bench_ei .*)--tokens [0-9]+ --repeat [0-9]+' '\1--tokens 256 --repeat 1'

# On-device evaluation: the first item of an evaluation set, short answers, small passkey cells.
rewrite docs/ei-eval.md '^((build/)?ei-eval --graph [^ ]+)' '\1 --max-tasks 1 --max-new 8'
rewrite docs/ei-eval.md '^((build/)?ei-eval .*--passkey.*) --lengths [^ ]+ --depths [^ ]+' '\1 --lengths 256 --depths 0,100'

# ---------------------------------------------------------------- files the docs assume
tok=../shared/fixtures/models/stories260K/tok512.bin
setup '*' 'configs/train/stories_lm\.yaml' \
  "ei prepare --quiet --tokenizer $tok --max-tokens 1024 --piece-docs --val-fraction 0.2 --max-docs 1 -o runs/data/stories_lm/ds.h5 ../shared/fixtures/text/tinystories.txt > /dev/null"
# docs/ei-eval.md names the user's files without a folder: the fixtures and trained gates stand in.
setup docs/ei-eval.md '^ei compile --model stories260K\.bin .*--gates gates\.safetensors' \
  "for f in models/stories260K/stories260K.bin models/stories260K/tok512.bin longdoc/qmsum_val.jsonl; do "\
"ln -sf ../shared/fixtures/\$f .; done; ln -sf ../shared/fixtures/text/sherlock_holmes.txt book.txt; "\
"ei prepare --quiet --tokenizer tok512.bin --doc-mode paragraphs --max-docs 8 -o runs/g/ds.h5 "\
"../shared/fixtures/text/tinystories.txt > /dev/null; "\
"ei train --quiet --config configs/train/stories_lm.yaml --set data.train=runs/g/ds.h5 --set data.val= "\
"--set train.steps=1 --set train.warmup_steps=0 --set train.threads=1 --set train.out_dir=runs/g; "\
"cp runs/g/gates.safetensors ."
# docs/deploy.md compiles the gates of scripts/train_stories_lm.sh: one training step stands in.
setup docs/deploy.md '^ei compile .*--gates runs/stories_lm/gates\.safetensors' \
  "ei prepare --quiet --tokenizer $tok --doc-mode paragraphs --max-docs 8 -o runs/g/ds.h5 "\
"../shared/fixtures/text/tinystories.txt > /dev/null; "\
"ei train --quiet --config configs/train/stories_lm.yaml --set data.train=runs/g/ds.h5 --set data.val= "\
"--set train.steps=1 --set train.warmup_steps=0 --set train.threads=1 --set train.out_dir=runs/stories_lm"
rewrite docs/deploy.md '^(ei eval --graph .*)--max-tokens [0-9]+' '\1--max-tokens 1024'
skip docs/reliability.md '^(FUZZ_[A-Z]+=[^ ]+ )*scripts/fuzz\.sh' \
  "configures a clang libFuzzer tree and fuzzes for minutes (cli_fuzz.sh replays the corpus and runs each target briefly)"
setup docs/ei-eval.md '^ei-eval --graph s\.eig --eval-set qm\.eis' "ln -sf m.eig s.eig; ln -sf qmsum.eis qm.eis"
setup docs/datasets.md 'quality_flat\.jsonl' \
  "printf '%s\n' '{\"article\": \"Tom had a red ball.\", \"question1\": \"What colour was the ball?\", "\
"\"question1option1\": \"blue\", \"question1option2\": \"red\", \"question1option3\": \"green\", "\
"\"question1option4\": \"black\", \"question1_gold_label\": 2}' > quality_flat.jsonl"

# ---------------------------------------------------------------- extraction
# Records: FILE <TAB> LINE <TAB> BLOCK <TAB> var|cmd <TAB> TEXT
extract() {
  awk -v F="$1" '
    function flush() {
      if (cmd == "") return
      if (cmd ~ /^[A-Za-z_][A-Za-z0-9_]*=[^ ]*$/) kind = "var"
      else if (cmd ~ /^(\$ )?([A-Z_][A-Z0-9_]*=[^ ]* )*(ei|ei-[a-z0-9-]+|scripts\/[^ ]+|build[^ \/]*\/[^ ]+|mpirun|adb)( |$)/) kind = "cmd"
      else kind = ""
      if (kind != "") { sub(/^\$ /, "", cmd); printf "%s\t%d\t%d\t%s\t%s\n", F, at, block, kind, cmd }
      cmd = ""
    }
    /^[ \t]*```/ {
      if (!inb) { info = $0; sub(/^[ \t]*```[ \t]*/, "", info); inb = 1; block++
                  shell = (info == "" || info ~ /^(sh|bash|shell|console)$/) }
      else { flush(); inb = 0 }
      next
    }
    !inb || !shell { next }
    {
      line = $0
      if (cmd == "") { if (line !~ /^[^ \t]/) next; at = NR }
      cont = line ~ /\\$/
      if (cont) sub(/\\$/, "", line)
      if (cmd != "") sub(/^[ \t]+/, " ", line)
      cmd = cmd line
      if (!cont) flush()
    }
    END { flush() }' "$1"
}

# ---------------------------------------------------------------- running
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/shared"
ln -s "$(cd "$EI_FIXTURES" && pwd)" "$tmp/shared/fixtures"
for b in "$EI_ABS" "$(dirname "$EI_ABS")"/ei-*; do [ -x "$b" ] && ln -sf "$b" "$tmp/bin/$(basename "$b")"; done
export PATH="$tmp/bin:$PATH" EI="$EI_ABS" EI_FIXTURES="$tmp/shared/fixtures"

used_skip=() used_rewrite=() used_setup=()
n_run=0 n_skip=0 n_fail=0
files=("$SRC/README.md" "$SRC"/docs/*.md)
for f in "${files[@]}"; do
  rel=${f#"$SRC"/}
  repo=$tmp/repo-$(echo "$rel" | tr '/.' '__')
  mkdir -p "$repo"
  for d in configs scripts tests; do ln -s "$SRC/$d" "$repo/$d"; done
  ln -s "$(dirname "$EI_ABS")" "$repo/build"
  declare -A vars_of=() done_setup=()
  while IFS=$'\t' read -r file line block kind text; do
    if [ "$kind" = var ]; then
      vars_of[$block]="${vars_of[$block]:-}${text}; "
      continue
    fi
    cmd=$(printf '%s' "$text" | sed -E "s/[[:space:]]+#[^'\"]*\$//")  # a trailing comment would swallow appended options
    skipped=
    for i in "${!SKIPS[@]}"; do
      IFS=$'\t' read -r sf sre why <<< "${SKIPS[$i]}"
      if in_scope "$sf" "$rel" && [[ $cmd =~ $sre ]]; then skipped=$why; used_skip[$i]=1; fi
    done
    if [ -n "$skipped" ]; then
      echo "skip $rel:$line: $cmd  ($skipped)"
      n_skip=$((n_skip + 1))
      continue
    fi
    orig=$cmd
    for i in "${!REWRITES[@]}"; do
      IFS=$'\t' read -r rf from to <<< "${REWRITES[$i]}"
      in_scope "$rf" "$rel" || continue
      new=$(printf '%s' "$cmd" | sed -E "s"$'\001'"$from"$'\001'"$to"$'\001')
      [ "$new" != "$cmd" ] && used_rewrite[$i]=1
      cmd=$new
    done
    pre=
    for i in "${!SETUPS[@]}"; do
      IFS=$'\t' read -r uf sre scmd <<< "${SETUPS[$i]}"
      if in_scope "$uf" "$rel" && [[ $orig =~ $sre ]] && [ -z "${done_setup[$i]:-}" ]; then pre="$pre$scmd; "; done_setup[$i]=1; used_setup[$i]=1; fi
    done
    n_run=$((n_run + 1))
    if [ -n "$pre" ] && ! (cd "$repo" && timeout 300 bash -c "set -eo pipefail; $pre") > "$tmp/out" 2>&1; then
      echo "FAIL $rel:$line: setup failed: $pre" >&2
      tail -n 5 "$tmp/out" | sed 's/^/    /' >&2
      n_fail=$((n_fail + 1))
      continue
    fi
    t0=$(date +%s)
    (cd "$repo" && timeout 300 bash -c "set -eo pipefail; ${vars_of[$block]:-}$cmd") > "$tmp/out" 2>&1
    rc=$?
    if [ $rc -ne 0 ]; then
      echo "FAIL $rel:$line: exit $rc: $cmd" >&2
      tail -n 8 "$tmp/out" | sed 's/^/    /' >&2
      n_fail=$((n_fail + 1))
    else
      echo "ok   $rel:$line ($(( $(date +%s) - t0 )) s): $cmd"
    fi
  done < <(extract "$f")
  unset vars_of done_setup
done

# An entry that matched nothing is stale, unless its file is not there (a document still being
# written elsewhere, or removed with its entries still to go: then it is only reported).
stale() { # kind, entry, used
  local file=${2%%$'\t'*} what=${2#*$'\t'}
  what=${what%%$'\t'*}
  [ -n "$3" ] && return
  if [ "$file" != '*' ] && [ ! -f "$SRC/$file" ]; then
    echo "note: $1 for $file matches nothing: the file does not exist ($what)"
  else
    echo "FAIL $1 matches no command (update or remove it): $file: $what" >&2
    n_fail=$((n_fail + 1))
  fi
}
for i in "${!SKIPS[@]}"; do stale "allow-list entry" "${SKIPS[$i]}" "${used_skip[$i]:-}"; done
for i in "${!REWRITES[@]}"; do stale "rewrite" "${REWRITES[$i]}" "${used_rewrite[$i]:-}"; done
for i in "${!SETUPS[@]}"; do stale "setup" "${SETUPS[$i]}" "${used_setup[$i]:-}"; done
[ $n_run -gt 0 ] || { echo "FAIL no command found in README.md and docs/*.md" >&2; n_fail=$((n_fail + 1)); }
echo "cli_doc_commands: $n_run run, $n_skip skipped (allow-list), $n_fail failed"
[ $n_fail -eq 0 ]
