#!/usr/bin/env bash
# Reproduces mae/RESULTS.md on Fashion-MNIST, on the CPU: pre-train the small MAE, probe its frozen
# features and a randomly initialised encoder's, fine-tune it and train the same ViT from scratch
# with the same budget, draw reconstructions, and time the encoder with and without masking.
# About an hour on 2 cores. Stages with a results.json are skipped, so it can be re-run after an
# interruption (an interrupted stage restarts; `repro train -resume` continues one by hand).
#
#   mae/experiment.sh [OUT]        (default runs/mae-fmnist)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-runs/mae-fmnist}
mkdir -p "$out"
bin=$out/repro
go build -o "$bin" ./cmd/repro
go build -o "$out/gobench" ./bench/gobench

stage() {
  local name=$1
  shift
  if [ -f "$out/$name/results.json" ]; then
    echo "== $name: done already ($out/$name/results.json)"
  else
    echo "== $name"
    "$bin" train -out "$out/$name" "$@"
  fi
}
stage pretrain configs/mae/fmnist_pretrain.toml
stage linprobe -set "pretrained=\"$out/pretrain\"" configs/mae/fmnist_linprobe.toml
stage linprobe_random -set 'pretrained=""' configs/mae/fmnist_linprobe.toml
stage finetune -set "pretrained=\"$out/pretrain\"" configs/mae/fmnist_finetune.toml
stage scratch configs/mae/fmnist_scratch.toml
stage softmax configs/basics/softmax.toml # raw-pixel logistic regression, for reference

"$bin" mae reconstruct -checkpoint "$out/pretrain" -out "$out/reconstruction.png" -n 8 fashion-mnist
"$bin" plot "$out/pretrain" > /dev/null
echo "== encoder step, batch 256 (forward + backward), 75% masked vs every patch"
for m in 0.75 0; do "$out/gobench" -workload mae_fm_encoder -mask "$m" -reps 5; done | tee "$out/encoder_timing.jsonl"
echo "== results"
for s in pretrain linprobe linprobe_random finetune scratch softmax; do
  printf '%-16s %s\n' "$s" "$(tr -d '\n ' < "$out/$s/results.json")"
done
