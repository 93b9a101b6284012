#!/usr/bin/env bash
# Installs libtorch (or adopts one you have) and prepares gotch for it.
#
#   scripts/install_libtorch.sh                  Debian/Ubuntu: libtorch-dev, OpenBLAS and the demo
#                                                data through apt, then prepare third_party/gotch
#   LIBTORCH=<dir> scripts/install_libtorch.sh   use <dir> (an unpacked libtorch zip or a PyTorch
#                                                install's torch/ folder); installs no system packages
#   REPRO_DEV=1 scripts/install_libtorch.sh      also python3-torch, which the parity-fixture
#                                                generators and scripts/bench_vs_pytorch.sh need
#   REPRO_MUSIC=1 scripts/install_libtorch.sh    also vorbis-tools and six Debian music packages
#                                                (350 MB), which vampnet's experiment trains on
#
# gotch is copied from the Go module cache into third_party/gotch (git-ignored, replaced in go.mod)
# with its pristine files kept in third_party/gotch/.pristine, so the copy can be re-prepared for
# another libtorch on a machine with no module cache. Wrappers that do not compile against the
# chosen libtorch are found by compiling and stubbed; third_party/gotch/REPRO_MANIFEST.json says
# which. Running it again for the same libtorch changes nothing and takes seconds.
set -euo pipefail

say() { echo "install_libtorch: $*"; }
die() { echo "install_libtorch: error: $*" >&2; exit 1; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

command -v go >/dev/null 2>&1 || die "Go is not on PATH; install Go 1.26 or newer (https://go.dev/doc/install)"

if [ -z "${LIBTORCH:-}" ]; then
  # shellcheck disable=SC1091
  [ -r /etc/os-release ] && . /etc/os-release
  case " ${ID:-} ${ID_LIKE:-} " in
    *" debian "*|*" ubuntu "*) ;;
    *) die "this is not Debian or Ubuntu (ID=${ID:-unknown}), so libtorch cannot come from apt; set LIBTORCH=<dir> to an unpacked libtorch zip or a PyTorch install's torch/ folder" ;;
  esac
  # libopenblas0-pthread: without it Debian's libtorch falls back to reference BLAS, measured 26x
  # slower on a 1024->4096 MLP train step (5.7 s against 0.22 s).
  # libgloo-dev: gloo's headers, which ProcessGroupGloo.hpp includes and libtorch-dev lacks; package
  # dist compiles its c10d shim against them (distributed training on the CPU).
  pkgs=(g++ libtorch-dev libgloo-dev libopenblas0-pthread dataset-fashion-mnist wordnet-base)
  if [ "${REPRO_DEV:-}" = 1 ]; then pkgs+=(python3-torch); fi
  # experiments/vampnet_music.toml's music (audio.MusicPackages), decoded with vorbis-tools' oggdec
  if [ "${REPRO_MUSIC:-}" = 1 ]; then
    pkgs+=(vorbis-tools singularity-music nexuiz-music hyperrogue-music planetblupi-music-ogg
      fretsonfire-songs-muldjord fretsonfire-songs-sectoid)
  fi
  missing=()
  for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$p")
    fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    if [ "$(id -u)" != 0 ]; then
      command -v sudo >/dev/null 2>&1 || die "installing ${missing[*]} needs root; run as root or install sudo"
      sudo=sudo
    fi
    say "installing ${missing[*]} with apt (about 1 GB the first time)"
    $sudo apt-get update -q || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" \
      || die "apt-get install ${missing[*]} failed"
  else
    say "system packages already installed: ${pkgs[*]}"
  fi
  blas=$(readlink -f "/usr/lib/$(gcc -print-multiarch)/libblas.so.3" 2>/dev/null || true)
  case "$blas" in
    *openblas*) ;;
    *) say "warning: libblas.so.3 resolves to ${blas:-nothing}, not OpenBLAS; training will be far slower. Fix: update-alternatives --config libblas.so.3-$(gcc -print-multiarch)" ;;
  esac
else
  [ -d "$LIBTORCH" ] || die "LIBTORCH=$LIBTORCH is not a directory"
  say "using LIBTORCH=$LIBTORCH; no system packages are installed in this mode"
fi

# The module copy is needed only once: later preparations start from the kept pristine files.
src=()
if [ ! -f third_party/gotch/.pristine/go.mod ]; then
  dir=$( (cd / && GOFLAGS= go mod download -json github.com/sugarme/gotch@v0.9.1) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p') \
    || die "could not download gotch v0.9.1 through the Go module proxy"
  [ -n "$dir" ] && [ -d "$dir" ] || die "could not find gotch v0.9.1 in the Go module cache"
  src=(-source "$dir")
fi

args=()
if [ -n "${LIBTORCH:-}" ]; then args=(-libtorch "$LIBTORCH"); fi
go run ./internal/cmd/gotchprep "${args[@]}" "${src[@]}" || die "preparing third_party/gotch failed (see above)"
# dist/zz_libtorch_generated.go: cgo flags for package dist's c10d shim and which backends (Gloo,
# NCCL) the prepared libtorch has; about 10 s when the libtorch or the shim changed, else instant.
go run ./dist/internal/prepare || die "preparing package dist (c10d) failed (see above)"
say "done. The first 'go build' compiles gotch's C++ wrappers: about 2 min on 2 cores, once per Go build cache."
