#!/usr/bin/env bash
# Installs edgeinfinite's build and run dependencies from Debian 12 packages. Idempotent.
#   scripts/install-deps.sh           install what is missing (needs root or sudo)
#   scripts/install-deps.sh --check   only report what is missing (exit 1 if anything is)
#   scripts/install-deps.sh --dev     also the tools that regenerate committed test references
#                                     (python3-torch, python3-numpy, nodejs, npm)
set -euo pipefail

PKGS=(build-essential cmake pkg-config libopenblas-dev libhdf5-dev hdf5-tools libcmocka-dev valgrind
      libyaml-dev libcjson-dev libpcre2-dev openmpi-bin libopenmpi-dev gnuplot-nox python3
      gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu qemu-user
      clang libclang-rt-14-dev libomp-dev)
# clang + libclang-rt-14-dev (libFuzzer, the sanitizer runtimes) + libomp-dev (OpenMP for clang):
# the fuzz targets (scripts/fuzz.sh, tests/cli_fuzz.sh; docs/reliability.md "Fuzzing").
DEV_PKGS=(python3-numpy python3-torch python3-h5py nodejs npm)

check=0
for a in "$@"; do
  case "$a" in
    --check) check=1 ;;
    --dev) PKGS+=("${DEV_PKGS[@]}") ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "install-deps.sh: unknown option $a" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${PKGS[@]}"; do
  # a Node.js already on PATH (nvm's, NodeSource's) does for the generators in tests/tokenizer/,
  # and Debian's npm cannot be installed beside a nodejs that is not Debian's: apt refuses the
  # whole install ("held broken packages"), torch included
  case "$p" in
    nodejs) command -v node >/dev/null && continue ;;
    npm) command -v npm >/dev/null && continue ;;
  esac
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages present"
  exit 0
fi
if [ "$check" = 1 ]; then
  echo "install-deps: missing: ${missing[*]}"
  exit 1
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root or install sudo" >&2; exit 1; }
  SUDO=sudo
fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
