#!/usr/bin/env bash
# Runs the test suite against Debian 13 (trixie)'s libtorch 2.6 on this machine's CPU, in a trixie
# chroot, so that what Debian 12's libtorch 1.13.1 stubs runs somewhere without a GPU: the fused
# scaled_dot_product_attention path (torchmods' fused-versus-matmul parity tests skip on 1.13.1) and
# a libtorch 2.x build of gotch and of dist's c10d shim (Gloo).
#
#   sudo scripts/test_debian13.sh [DIR] [-- COMMAND...]
#
# DIR (default /var/tmp/repro-trixie) receives a minimal trixie (debootstrap, about 2 GB with
# libtorch-dev and python3-torch 2.6; made once, kept). The working tree (tracked and untracked files
# that git does not ignore) is copied to DIR/root/repro on every run, then the chroot runs
# scripts/install_libtorch.sh (apt mode, REPRO_DEV=1) and COMMAND, by default
# "go vet ./... && go test ./...". Measured on a 2-core AMD EPYC: the chroot 2 min, the install
# 2 min, the tests about 15 min. Needs root (chroot, mounts), debootstrap (installed with apt if
# missing) and Debian's mirror; Go is copied from this machine's GOROOT.
#
#   sudo scripts/test_debian13.sh /var/tmp/repro-trixie -- go test -run Fused -v ./torchmods
set -euo pipefail
say() { echo "test_debian13: $*"; }
die() { echo "test_debian13: error: $*" >&2; exit 1; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=/var/tmp/repro-trixie
if [ $# -gt 0 ] && [ "$1" != -- ]; then dir=$1; shift; fi
[ "${1:-}" = -- ] && shift
cmd="go vet ./... && go test ./..."
if [ $# -gt 0 ]; then cmd=$(printf '%q ' "$@"); fi # quoted, so "-run 'A|B'" stays one argument

[ "$(id -u)" = 0 ] || die "needs root for debootstrap, chroot and mounts"
goroot=$(go env GOROOT 2>/dev/null) || die "Go is not on PATH; the chroot gets a copy of this machine's Go"

if [ ! -x "$dir/usr/bin/apt-get" ]; then
  command -v debootstrap >/dev/null || apt-get install -y -q debootstrap >/dev/null || die "could not install debootstrap"
  say "making a trixie chroot in $dir (about 2 min)"
  debootstrap --variant=minbase --include=ca-certificates,git,libtorch-dev,python3-torch trixie "$dir" \
    http://deb.debian.org/debian >"$dir.debootstrap.log" 2>&1 || die "debootstrap failed; see $dir.debootstrap.log"
fi

mounted=()
cleanup() { for m in "${mounted[@]}"; do umount "$m" 2>/dev/null || true; done; }
trap cleanup EXIT
for m in proc dev; do
  if ! mountpoint -q "$dir/$m"; then
    if [ $m = proc ]; then mount -t proc proc "$dir/proc"; else mount --bind /dev "$dir/dev"; fi
    mounted+=("$dir/$m")
  fi
done
cp /etc/resolv.conf "$dir/etc/resolv.conf"
# This machine's CA bundle, so that Go reaches the module proxy from the chroot wherever it does
# from here (behind a TLS-inspecting proxy, trixie's own bundle lacks that proxy's CA).
ca=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
[ -r "$ca" ] && cp "$ca" "$dir/root/host-ca.crt"
rm -rf "$dir/usr/local/go" && mkdir -p "$dir/usr/local" && cp -a "$goroot" "$dir/usr/local/go"

# The tree without what git ignores, so not this machine's prepared gotch: the chroot prepares
# its own copy for 2.6 in third_party/gotch, which stays there between runs.
mkdir -p "$dir/root/repro"
find "$dir/root/repro" -mindepth 1 -maxdepth 1 ! -name third_party -exec rm -rf {} +
(cd "$root" && git ls-files -co --exclude-standard | tar -cf - -T -) | (cd "$dir/root/repro" && tar -xf -)

say "running in the chroot: REPRO_DEV=1 scripts/install_libtorch.sh && $cmd"
cafile=
[ -r "$dir/root/host-ca.crt" ] && cafile=SSL_CERT_FILE=/root/host-ca.crt
chroot "$dir" /usr/bin/env -i HOME=/root PATH=/usr/local/go/bin:/usr/sbin:/usr/bin:/sbin:/bin GOFLAGS=-buildvcs=false \
  GOPROXY="$(go env GOPROXY)" $cafile bash -c "cd /root/repro && REPRO_DEV=1 scripts/install_libtorch.sh && $cmd"
