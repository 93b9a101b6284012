#!/usr/bin/env bash
# Reproduces metapt/RESULTS.md: pre-trains the small BERT on WordNet (MLM + NSP) under four
# conditions with equal gradient computations (1,200 batches of 32 pairs each):
#   k0         meta.k = 0: multi-task pre-training (1,200 steps)
#   k1_first   k = 1, first order (600 meta steps)
#   k2_first   k = 2, first order (400 meta steps)
#   k1_second  k = 1, second order (600 meta steps)
# with seeds 0, 1, 2, then fine-tunes every model on the lexname task (mlm.finetune) for 50, 200
# and 1,000 steps (warm-up 10%), and summarises (metapt/summarize.py). Runs JOBS (default 2)
# jobs at a time with one thread each, niced. Finished stages (a results.json) are skipped, so it
# can be stopped and re-run, and run for some seeds or conditions only (do not run two instances
# on the same condition and seed: an unfinished stage is started again from scratch):
#
#   metapt/experiment.sh [OUT] [SEEDS] [CONDITIONS]
#   metapt/experiment.sh runs/metapt-wordnet "0 1 2" "k0 k1_first k2_first k1_second scratch"
#
# "scratch" fine-tunes a randomly initialised BERT (no pre-training) at the same budgets.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-runs/metapt-wordnet}
seeds=${2:-0 1 2}
conds=${3:-k0 k1_first k2_first k1_second}
mkdir -p "$out"
bin=$out/repro
go build -o "$bin" ./cmd/repro
vocab="data.vocab=\"$out/vocab.txt\""
# Train the vocabulary and the tokenised corpus cache once, before the parallel runs.
if [ ! -f "$out/vocab.txt" ]; then
  rm -rf "$out/warmup"
  "$bin" train -out "$out/warmup" -set "$vocab" -set trainer.max_steps=1 -set data.eval_pairs=32 configs/metapt/wordnet_k0.toml > /dev/null
fi

job() { # condition seed
  local c=$1 s=$2 run="$out/$1-seed$2"
  if [ "$c" != scratch ] && [ ! -f "$run/results.json" ]; then
    rm -rf "$run"
    OMP_NUM_THREADS=1 "$bin" train -out "$run" -set "$vocab" -set trainer.seed="$s" "configs/metapt/wordnet_$c.toml" > "$run.log" 2>&1
  fi
  local pre="pretrained=\"$run\""
  [ "$c" = scratch ] && pre='pretrained=""'
  for n in 50 200 1000; do
    local ft="$run-lexname$n"
    if [ ! -f "$ft/results.json" ]; then
      rm -rf "$ft"
      OMP_NUM_THREADS=1 "$bin" train -out "$ft" -set "$vocab" -set trainer.seed="$s" -set "$pre" \
        -set trainer.max_steps=$n -set optim.warmup=$((n / 10)) configs/metapt/wordnet_lexname.toml > "$ft.log" 2>&1
    fi
  done
  echo "done: $c seed $s"
}
export -f job
export out bin vocab
for s in $seeds; do for c in $conds; do echo "$c $s"; done; done | nice -n 10 xargs -P "${JOBS:-2}" -L 1 bash -c 'job $0 $1'
python3 metapt/summarize.py "$out"
