#!/usr/bin/env bash
# Reproduces mlm/RESULTS.md: pre-trains the small BERT on WordNet under six masking conditions
# (fixed 15%, cosine MRD, linear MRD, PTW, PTW + cosine MRD, and the official only_wwm baseline:
# whole-word masking with every tag weight 1) with three seeds each, measures the held-out MLM loss
# at a fixed 15%, fine-tunes every model on the lexname task, and summarises.
# Runs JOBS jobs at a time (default 2) with one thread each (small models use two cores better
# that way). Finished stages (with a results.json) are skipped, so it can be re-run after an
# interruption. CONDITIONS and SEEDS pick a subset (mlm/rerun_faithfulness.sh uses them).
#
#   mlm/experiment.sh [OUT]        (default runs/mlm-wordnet)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-runs/mlm-wordnet}
conditions=${CONDITIONS:-fixed cosine linear ptw ptw_cosine only_wwm}
seeds=${SEEDS:-0 1 2}
jobs=${JOBS:-2}
mkdir -p "$out"
bin=$out/repro
go build -o "$bin" ./cmd/repro
vocab="data.vocab=\"$out/vocab.txt\""
# Train the vocabulary and the tokenised corpus cache once, before the parallel runs.
if [ ! -f "$out/warmup/results.json" ]; then
  "$bin" train -out "$out/warmup" -overwrite -set "$vocab" -set trainer.max_steps=1 -set trainer.eval_every=0 configs/mlm/wordnet_fixed.toml > /dev/null
fi

job() { # condition seed
  local c=$1 s=$2 run="$out/$1-seed$2"
  if [ ! -f "$run/results.json" ]; then
    OMP_NUM_THREADS=1 "$bin" train -out "$run" -overwrite -set "$vocab" -set trainer.seed="$s" "configs/mlm/wordnet_$c.toml" > "$run.log" 2>&1
  fi
  if [ ! -f "$run-lexname/results.json" ]; then
    OMP_NUM_THREADS=1 "$bin" train -out "$run-lexname" -overwrite -set "$vocab" -set trainer.seed="$s" -set "pretrained=\"$run\"" \
      configs/mlm/wordnet_lexname.toml > "$run-lexname.log" 2>&1
  fi
  echo "done: $c seed $s"
}
export -f job
export out bin vocab
for s in $seeds; do for c in $conditions; do echo "$c $s"; done; done | xargs -P "$jobs" -L 1 bash -c 'job $0 $1'
python3 mlm/summarize.py "$out"
