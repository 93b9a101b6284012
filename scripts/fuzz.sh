#!/usr/bin/env bash
# Runs every fuzz target of the untrusted-input readers for SECONDS each
# (default 60), one after another, and prints each target's execution
# count. One target at a time, with one fuzzing worker (-parallel 1), so
# that a long run leaves the machine's other cores to the people on it.
#
#   scripts/fuzz.sh [SECONDS]
#
# New interesting inputs are minimized for at most MINIMIZE (default 5s):
# go's default of 60s can spend a whole short run minimizing the first one
# (a torch.save zip of a few KB), with no fuzzing and no count to show.
#
# A crash is saved by go test under the package's testdata/fuzz/<Target>/
# and fails the run: commit that file with the fix, and it is a regression
# test that every `go test` of the package replays from then on.
set -u
cd "$(dirname "$0")/.."

secs=${1:-60}
case $secs in
'' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS]" >&2; exit 2 ;;
esac
minimize=${MINIMIZE:-5s}
go=$(command -v go || echo /usr/local/go/bin/go)

# package target
targets=(
	"./torchmods/torchfile FuzzUnpickle"
	"./torchmods/torchfile FuzzParsePickle"
	"./torchmods/torchfile FuzzParse"
	"./torchmods/safetensors FuzzParse"
	"./torchmods/safetensors FuzzParseIndex"
	"./data FuzzDecodeImage"
	"./data FuzzParseIDX"
	"./causal FuzzParseCSV"
	"./internal/config FuzzLoad"
	"./ir FuzzReadRun"
	"./ir FuzzAnalyze"
	"./ir FuzzParseIndex"
)

log=$(mktemp)
trap 'rm -f "$log"' EXIT
failed=0
printf '%-24s %-16s %12s  %s\n' package target execs result
for t in "${targets[@]}"; do
	read -r pkg target <<<"$t"
	"$go" test -run='^$' -fuzz="^${target}\$" -fuzztime="${secs}s" -fuzzminimizetime="$minimize" -parallel 1 "$pkg" >"$log" 2>&1
	rc=$?
	# go test prints "fuzz: elapsed: 60s, execs: 123456 (2057/sec), ..."; the last is the total.
	execs=$(grep -o 'execs: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
	if [ "$rc" -eq 0 ]; then
		result=ok
	else
		result="FAIL (exit $rc)"
		failed=1
	fi
	printf '%-24s %-16s %12s  %s\n' "$pkg" "$target" "${execs:-?}" "$result"
	if [ "$rc" -ne 0 ]; then
		sed 's/^/    /' "$log" | tail -n 40
	fi
done
exit $failed
