#!/usr/bin/env bash
# Starts N local ranks of `repro train` on this machine, with the environment torchrun gives its
# workers (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), as
# `torchrun --standalone --nproc-per-node N` does:
#
#   scripts/launch_local.sh N CONFIG [repro train flags...]
#   scripts/launch_local.sh 2 configs/basics/mlp.toml -set trainer.max_steps=200
#
# data.batch is per rank: the global batch is data.batch x trainer.accumulate x N (see dist/doc.go).
# Rank 0 writes the run directory (default runs/<config>-<time>, or -out DIR / -resume DIR); its
# output goes to stdout as is, the other ranks' to stderr prefixed with [rank R]. Ctrl-C reaches
# every rank: they agree on a step, rank 0 writes a checkpoint, and all stop. The script exits with
# the first failing rank's status.
#
# Environment: REPRO (the repro binary; default ./repro, built with `go build ./cmd/repro` if
# missing), MASTER_PORT (default a free port), REPRO_DIST_TIMEOUT (how long a rank waits for the
# others, e.g. 5m; default 30m), GLOO_SOCKET_IFNAME. torchrun sets the same variables
# (torchrun --standalone --nproc-per-node N --no-python ./repro train CONFIG), untried here:
# Debian 12's torchrun 1.13 fails under Python 3.11 before starting workers.
set -euo pipefail

die() { echo "launch_local: error: $*" >&2; exit 2; }

[ $# -ge 2 ] || die "usage: scripts/launch_local.sh N CONFIG [repro train flags...]"
n=$1
shift
case "$n" in '' | *[!0-9]*) die "N must be a positive number of ranks, got '$n'" ;; esac
[ "$n" -ge 1 ] || die "N must be at least 1"

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
repro=${REPRO:-$root/repro}
if [ ! -x "$repro" ]; then
  echo "launch_local: building $repro" >&2
  (cd "$root" && go build -o "$repro" ./cmd/repro) || die "go build ./cmd/repro failed"
fi

# Every rank gets the same arguments. Without -out or -resume, the run directory is named here
# (after the CONFIG, the argument ending in .toml), so that every rank names the same one.
args=("$@")
has_out=0
config=${args[$((${#args[@]} - 1))]}
for a in "${args[@]}"; do
  case "$a" in
    -out | -out=* | --out | --out=* | -resume | -resume=* | --resume | --resume=*) has_out=1 ;;
    *.toml) config=$a ;;
  esac
done
if [ "$has_out" = 0 ]; then
  base=$(basename "$config")
  args=(-out "runs/${base%.*}-$(date +%Y%m%d-%H%M%S)" "${args[@]}")
fi

port=${MASTER_PORT:-}
if [ -z "$port" ]; then
  # A free port: bind port 0 and read what the kernel gave.
  port=$(go run "$root/dist/internal/freeport" 2>/dev/null || echo $((20000 + RANDOM % 20000)))
fi

# Each rank runs in its own session (setsid), so that a Ctrl-C reaches the ranks once, forwarded
# here as SIGTERM, rather than twice (the terminal's SIGINT and the forwarded one), which would
# make them exit without a checkpoint. A second Ctrl-C is forwarded too: the ranks exit at once.
detach=()
if command -v setsid >/dev/null 2>&1; then detach=(setsid); fi
pids=()
forward() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
}
trap forward INT TERM

for ((r = 0; r < n; r++)); do
  if [ "$r" = 0 ]; then
    RANK=$r LOCAL_RANK=$r WORLD_SIZE=$n LOCAL_WORLD_SIZE=$n MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
      "${detach[@]}" "$repro" train "${args[@]}" &
  else
    RANK=$r LOCAL_RANK=$r WORLD_SIZE=$n LOCAL_WORLD_SIZE=$n MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
      "${detach[@]}" "$repro" train "${args[@]}" > >(sed -u "s/^/[rank $r] /" >&2) 2>&1 &
  fi
  pids+=($!)
done

status=0
for p in "${pids[@]}"; do
  if ! wait "$p"; then
    s=$?
    # A trapped signal interrupts wait; wait again for the rank itself.
    while kill -0 "$p" 2>/dev/null; do wait "$p" || s=$?; done
    [ "$status" = 0 ] && status=$s
  fi
done
exit "$status"
