#!/usr/bin/env bash
# Packs .gpu/ for a CUDA machine without Go or network, small enough for a 64 MiB transfer.
# ../shared/gpu/pack.sh's own pack (a Go toolchain and a file module proxy, 59 MB) plus the tree
# and third_party/gotch came to 87 MB on 2026-12-01. This script runs it, then:
#   - replaces the proxy with a pre-extracted module cache (.gpu/modcache.tar.xz, 13 MB): the
#     modules the CLI, the benches and the tests import (without their tests and testdata), with
#     the .mod files of the whole graph; go finds them extracted and never reads a zip;
#   - drops `cover` and the trace viewer's HTML from the toolchain (`vet` stays: go test needs it);
#   - writes .gpu/run.sh to unpack both (GOPROXY=off) and prepare gotch for that libtorch.
# Then, from the project's root, on the device:  bash .gpu/run.sh scripts/cuda_checks.sh
# with carry [".gpu", "third_party/gotch"]. About 2 minutes here.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
shared=${SHARED:-$root/../shared}
cp go.sum "${TMPDIR:-/tmp}/gpu_pack.go.sum"
"$shared/gpu/pack.sh" >/dev/null
cp "${TMPDIR:-/tmp}/gpu_pack.go.sum" go.sum # its `go list -mod=mod` adds lines the build does not need
rm -rf .gpu/proxy

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mc=$(go env GOMODCACHE)
esc() { echo "$1" | sed -e 's/\([A-Z]\)/!\L\1/g'; }
go list -deps -test -f '{{with .Module}}{{if not .Main}}{{.Path}}@{{.Version}}{{end}}{{end}}' \
  ./cmd/repro ./bench/gobench ./torchmods ./dist ./train | sort -u | grep -v '^github.com/sugarme/gotch@' |
  while read -r m; do
    e=$(esc "${m%@*}")
    echo "$e@${m#*@}"
    echo "cache/download/$e/@v/${m#*@}.ziphash"
  done > "$tmp/files"
(cd "$mc" && find cache/download \( -name '*.mod' -o -name '*.info' \) ! -path '*sugarme/gotch*') >> "$tmp/files"
tar -C "$mc" -cJf .gpu/modcache.tar.xz --exclude='*_test.go' --exclude=testdata -T "$tmp/files"

mkdir "$tmp/go"
tar -xJf .gpu/go.tar.xz -C "$tmp/go"
rm -rf "$tmp/go/pkg/tool/linux_amd64/cover" "$tmp/go/src/internal/trace/traceviewer/static"
tar -C "$tmp/go" -cf - . | xz -T0 -6 > .gpu/go.tar.xz

cat > .gpu/run.sh <<'RUN'
#!/usr/bin/env bash
# Runs on the CUDA machine: unpacks Go and the module cache, prepares gotch for that machine's
# libtorch, then runs "$@".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
mkdir -p /tmp/go /tmp/gomod && tar -xJf "$here/go.tar.xz" -C /tmp/go && tar -xJf "$here/modcache.tar.xz" -C /tmp/gomod
export GOROOT=/tmp/go PATH=/tmp/go/bin:$PATH GOTOOLCHAIN=local CGO_ENABLED=1 \
  GOPROXY=off GOSUMDB=off GONOSUMDB='*' GOFLAGS=-mod=mod GOMODCACHE=/tmp/gomod GOCACHE=/tmp/gocache
export LIBTORCH=${LIBTORCH:-$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))')}
echo "go: $(go version); LIBTORCH=$LIBTORCH; $(nvidia-smi -L 2>/dev/null | head -1)"
scripts/install_libtorch.sh
"$@"
RUN
chmod +x .gpu/run.sh
tree=$(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1)
echo "gpu_pack: .gpu $(du -sh .gpu | cut -f1), third_party/gotch $(du -sh third_party/gotch | cut -f1), tracked files $((tree / 1048576)) MiB; the limit is 64 MiB in all"
