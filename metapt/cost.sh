#!/usr/bin/env bash
# The cost of a meta step (metapt/RESULTS.md, "Cost"): seconds per step and peak RSS of
# k = 0, 1, 2, 4 in first and second order, each in its own process (peak RSS is per process),
# on a small corpus written like the tests' (3,000 noun and 3,000 verb synsets with examples, by
# metapt/testdata/gen_corpus.py: no large corpus in memory hides the model's) with the WordNet
# runs' 8,000-token vocabulary.
#
#   metapt/cost.sh [SIZE] [STEPS] [THREADS]
#
# SIZE is "small" (the experiment's BERT: 2 layers, width 128, batch 32 pairs), "medium"
# (4 layers, width 256, batch 64) or "large" (BERT-base: 12 layers, width 768, batch 32); the
# pairs of this corpus average about 30 tokens. It prints a markdown table.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
size=${1:-small}
steps=${2:-10}
threads=${3:-1}
out=runs/metapt-cost/$size
mkdir -p "$out"
bin=runs/metapt-cost/repro
go build -o "$bin" ./cmd/repro
vocab=runs/metapt-wordnet/vocab.txt
[ -f "$vocab" ] || { echo "no $vocab: run repro exp run experiments/metapt_wordnet.toml (or any WordNet metapt config) first" >&2; exit 1; }
case $size in
  small) model=(-set model.hidden_size=128 -set model.num_hidden_layers=2 -set model.num_attention_heads=4 -set model.intermediate_size=512 -set data.batch=32) ;;
  medium) model=(-set model.hidden_size=256 -set model.num_hidden_layers=4 -set model.num_attention_heads=4 -set model.intermediate_size=1024 -set data.batch=64) ;;
  large) model=(-set model.hidden_size=768 -set model.num_hidden_layers=12 -set model.num_attention_heads=12 -set model.intermediate_size=3072 -set data.batch=32) ;;
  *) echo "size: small, medium or large" >&2; exit 2 ;;
esac
corpus=runs/metapt-cost/corpus.txt
[ -f "$corpus" ] || python3 metapt/testdata/gen_corpus.py 3000 "$corpus"
echo "| k | order | CPU seconds per step | wall seconds per step | peak RSS, MiB | gradient computations per step |"
echo "|---|---|---|---|---|---|"
for order in first second; do
  for k in 0 1 2 4; do
    [ "$k" = 0 ] && [ "$order" = second ] && continue # k = 0 has no inner steps: the same step
    run=$out/k$k-$order
    rm -rf "$run"
    OMP_NUM_THREADS=$threads "$bin" train -out "$run" "${model[@]}" \
      -set data.corpus=\"$corpus\" -set data.vocab=\"$vocab\" -set data.heldout=0.05 -set data.eval_pairs=32 \
      -set meta.k=$k -set meta.order=\"$order\" -set trainer.max_steps=$steps -set optim.warmup=0 \
      -set trainer.log_every=$steps -set trainer.checkpoint_every=0 configs/metapt/wordnet_k1_first.toml > "$run.log" 2>&1
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); k=int(sys.argv[2]); print("| %d | %s | %.3f | %.3f | %.0f | %d |" % (k, sys.argv[3], r["cpu_seconds_per_step"], r["seconds_per_step"], r["peak_rss_bytes"]/2**20, k+1))' \
      "$run/results.json" "$k" "$order"
  done
done
