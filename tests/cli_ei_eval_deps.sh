#!/usr/bin/env bash
# ei-eval stays a device binary (DESIGN 6.4):
#  - the x86-64 ei-eval's dynamic dependencies (readelf -d NEEDED, and ldd) are only libc, libm,
#    libdl, libpthread and the loader (sanitizer builds may add libasan / libubsan / libgcc_s);
#  - none of the host libraries' symbols (OpenBLAS, HDF5, libyaml, cJSON, PCRE2, OpenMP) are in it;
#  - every device source (core/ model/ text/ runtime/ eval/) is compiled with
#    -D_POSIX_C_SOURCE=200809L and without _GNU_SOURCE (compile_commands.json of this build), and
#    calls no glibc-only function and includes no glibc-only header, so it builds for Android.
# (That the aarch64 ei-eval is static is checked by tests/cli_aarch64.sh, which builds it.)
set -euo pipefail
EVAL=${EI_EVAL_BIN:?EI_EVAL_BIN not set}
SRC=${EI_SOURCE_DIR:?EI_SOURCE_DIR not set}
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v readelf > /dev/null || fail "readelf not found (Debian package binutils)"

san=${EI_SANITIZE:-0}
if readelf -d "$EVAL" | grep -q 'NEEDED.*libasan'; then san=1; fi
allowed='^(libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|ld-linux[-a-z0-9_]*\.so\.[0-9]+)$'
[ "$san" = 1 ] && allowed='^(libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|ld-linux[-a-z0-9_]*\.so\.[0-9]+|libasan\.so\.[0-9]+|libubsan\.so\.[0-9]+|libgcc_s\.so\.1)$'

needed=$(readelf -d "$EVAL" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
[ -n "$needed" ] || fail "readelf -d lists no NEEDED entries for $EVAL (static host build?)"
for lib in $needed; do
  [[ $lib =~ $allowed ]] || fail "ei-eval needs $lib (only libc, libm, libdl, libpthread allowed): $(echo $needed)"
done
if [ "$san" != 1 ] && command -v ldd > /dev/null; then
  # ldd also shows what the NEEDED libraries pull in; without sanitizers that must be nothing more
  while read -r name _; do
    name=${name##*/}
    case "$name" in linux-vdso.so.*|linux-gate.so.*|"") continue ;; esac
    [[ $name =~ $allowed ]] || fail "ldd: ei-eval loads $name"
  done < <(ldd "$EVAL")
fi
interp=$(readelf -l "$EVAL" | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p')
[[ -z $interp || $interp =~ /ld-linux ]] || fail "unexpected program interpreter $interp"

if command -v nm > /dev/null; then
  bad=$(nm -u "$EVAL" 2>/dev/null; nm "$EVAL" 2>/dev/null) || true
  for pat in 'cblas_' 'openblas' 'H5[A-Z]' 'yaml_parser' 'cJSON_' 'pcre2_' 'GOMP_' 'omp_get'; do
    if grep -Eq "[ _]$pat" <<< "$bad"; then fail "ei-eval holds or needs host-library symbols matching '$pat'"; fi
  done
fi

# ---- compile flags of the device sources in this build
cc_json=$(dirname "$EVAL")/compile_commands.json
if [ -f "$cc_json" ]; then
  /usr/bin/python3 - "$cc_json" "$SRC" <<'PY' || fail "device sources built with the wrong feature macros"
import json, os, sys
cmds, src = json.load(open(sys.argv[1])), os.path.realpath(sys.argv[2])
device = ("core", "model", "text", "runtime", "eval")
seen = 0
for c in cmds:
    f = os.path.relpath(os.path.realpath(c["file"]), src)
    if f.split(os.sep)[0] not in device:
        continue
    cmd = c.get("command") or " ".join(c["arguments"])
    assert "-D_POSIX_C_SOURCE=200809L" in cmd, (f, "no -D_POSIX_C_SOURCE=200809L")
    assert "_GNU_SOURCE" not in cmd, (f, "compiled with _GNU_SOURCE")
    seen += 1
assert seen > 20, f"only {seen} device sources in {sys.argv[1]}"
PY
else
  echo "note: $cc_json not found; compile flags not checked"
fi

# ---- glibc-only functions and headers (undeclared without _GNU_SOURCE, or missing from bionic)
calls='\b(qsort_r|strchrnul|mempcpy|wmempcpy|rawmemchr|memrchr|program_invocation_name|program_invocation_short_name|get_nprocs|get_nprocs_conf|get_phys_pages|canonicalize_file_name|error_at_line|secure_getenv|pthread_setaffinity_np|pthread_getaffinity_np|fcloseall|tdestroy|mallinfo|malloc_trim|backtrace|strverscmp|euidaccess|fopencookie)\s*\('
headers='#\s*include\s*<(error\.h|argp\.h|execinfo\.h|obstack\.h|sys/sysinfo\.h|gnu/libc-version\.h|mcheck\.h|printf\.h|fstab\.h)>'
hits=$(cd "$SRC" && grep -rnE "$calls|$headers|program_invocation_name" --include='*.c' --include='*.h' --include='*.inc' \
         core model text runtime eval || true)
[ -z "$hits" ] || fail "glibc-only calls or headers in device sources:
$hits"
echo "cli_ei_eval_deps: ok"
