#!/usr/bin/env bash
# The main demo: Masked Autoencoders (He et al., 2022) on Fashion-MNIST, on the CPU, in minutes.
# Pre-trains a small MAE for 3 epochs (about 4 minutes on 2 cores), probes its frozen features with
# a linear classifier, and draws masked images with their reconstructions. The full experiment,
# with fine-tuning and the baselines, is experiments/mae_fmnist.toml (results in mae/RESULTS.md).
#
#   scripts/mae_demo.sh [OUT]        (default runs/mae-demo)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-runs/mae-demo}
mkdir -p "$out"
go build -o "$out/repro" ./cmd/repro
repro=$out/repro

if [ ! -f "$out/pretrain/results.json" ]; then
  "$repro" train -out "$out/pretrain" -set trainer.epochs=3 configs/mae/fmnist_pretrain.toml
fi
if [ ! -f "$out/linprobe/results.json" ]; then
  "$repro" train -out "$out/linprobe" -set "pretrained=\"$out/pretrain\"" -set trainer.epochs=30 -set optim.warmup_epochs=3 \
    configs/mae/fmnist_linprobe.toml
fi
"$repro" mae reconstruct -checkpoint "$out/pretrain" -out "$out/reconstruction.png" -n 8 fashion-mnist
"$repro" plot "$out/pretrain" > /dev/null
echo
echo "pre-training: $(tr -d '\n' < "$out/pretrain/results.json")"
echo "linear probe: $(tr -d '\n' < "$out/linprobe/results.json")"
echo "reconstructions: $out/reconstruction.png (original | visible 25% | reconstruction | reconstruction + visible)"
echo "loss curves: $out/pretrain/plots/"
