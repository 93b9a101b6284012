#!/usr/bin/env bash
# Runs each benchmark workload through gotch (bench/gobench) and through PyTorch (bench/torch_bench.py)
# on the same libtorch, in turn, RUNS times each, and prints a table of medians, the Go/PyTorch ratio
# and the peak RSS of each. The last line is "worst ratio: X (workload)".
#
#   scripts/bench_vs_pytorch.sh [--device cpu|cuda] [--runs N] [--workloads "smallop mlp encoder"]
#                               [--precision fp32|bf16]
#
# --precision bf16 runs the forward pass under autocast to bfloat16 on both sides (libtorch's
# autocast through ts.Autocast, torch.autocast in PyTorch; weights, gradients and AdamW state stay
# float32), for mlp, encoder, mae_vitb, bert_mlm and llama_lm. Workloads that count their work
# (mae_vitb, bert_mlm) get TFLOP/s columns, and MFU against $BENCH_PEAK_TFLOPS when it is set (the
# GPU's dense bf16 peak, e.g. 989 for an H100 or H200 SXM). It is meant for CUDA: libtorch 1.13's
# CPU autocast leaves layer_norm out of its fp32 list, so a bfloat16 activation reaching a float32
# LayerNorm fails there ("expected scalar type BFloat16 but found Float") in PyTorch and Go alike
# (mae_vitb, bert_mlm); mlp runs.
#
# Workloads (the default is the first three): smallop mlp encoder mae_vitb bert_mlm metapt_first
# metapt_second llama_lm pmlm dense_biencoder monobert clip bert_dense_infer bert_pruned_infer
# vqa_step vampnet_step. A workload whose two sides must see the same inputs (pmlm: the packed pseudo-masked
# batch, drawn by pmlm's own masking; dense_biencoder and monobert: the padded queries, passages and
# pairs batched by the ir package; clip: the images and the token ids with their end-of-text
# positions; bert_dense_infer and bert_pruned_infer, BERT-base inference before and after CAP's
# structured pruning: the padded token ids and their attention mask; vqa_step, a MUMC VQA
# fine-tuning step: the images and the question and answer ids with their masks; vampnet_step, a VampNet
# coarse-transformer training step: the codes, the training mask and the codec codebook tables) has gobench write
# them to a file with -inputs, which torch_bench.py reads with --inputs; gobench runs first in every
# run.
#
# vqa_step's PyTorch side runs the official MUMC code (pengfeiliHEU/MUMC's models/), imported from a
# checkout at commit 27b544d0 named by $MUMC_DIR, which it needs:
#   git clone https://github.com/pengfeiliHEU/MUMC /tmp/mumc
#   git -C /tmp/mumc checkout 27b544d025901945006113012adfc7d755cd196e
#   MUMC_DIR=/tmp/mumc scripts/bench_vs_pytorch.sh --workloads vqa_step
#
# vampnet_step's PyTorch side runs the official VampNet transformer (hugofloresgarcia/vampnet, branch
# ismir-2023, vampnet/modules/transformer.py, mask.py and scheduler.py) with loralib and einops,
# imported from three checkouts named by $VAMPNET_DIR, $LORALIB_DIR and $EINOPS_DIR, which it needs:
#   mkdir -p /tmp/vn/vampnet /tmp/vn/lora /tmp/vn/einops
#   git clone -b ismir-2023 https://github.com/hugofloresgarcia/vampnet /tmp/vn/src
#   git -C /tmp/vn/src archive dce1655ecd9f6044ce9e13e95e1423a50837a615 | tar -x -C /tmp/vn/vampnet
#   git clone https://github.com/microsoft/LoRA /tmp/vn/lorasrc
#   git -C /tmp/vn/lorasrc archive c4593f060e6a368d7bb5af5273b8e42810cdef90 loralib | tar -x -C /tmp/vn/lora
#   git clone https://github.com/arogozhnikov/einops /tmp/vn/einopssrc
#   git -C /tmp/vn/einopssrc archive v0.6.1 einops | tar -x -C /tmp/vn/einops
#   VAMPNET_DIR=/tmp/vn/vampnet LORALIB_DIR=/tmp/vn/lora EINOPS_DIR=/tmp/vn/einops \
#     scripts/bench_vs_pytorch.sh --workloads vampnet_step
#
# Python: $PYTHON, else /usr/bin/python3 (Debian's python3-torch; install it with
# REPRO_DEV=1 scripts/install_libtorch.sh), else python3. Raw results go to $BENCH_OUT if set.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
device=cpu runs=3 workloads="smallop mlp encoder" precision=fp32
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --workloads) workloads=$2; shift 2 ;;
    --precision) precision=$2; shift 2 ;;
    *) echo "usage: $0 [--device cpu|cuda] [--runs N] [--workloads LIST] [--precision fp32|bf16]" >&2; exit 2 ;;
  esac
done
py=${PYTHON:-}
if [ -z "$py" ]; then
  if /usr/bin/python3 -c 'import torch' 2>/dev/null; then py=/usr/bin/python3; else py=python3; fi
fi
"$py" -c 'import torch' 2>/dev/null || { echo "bench_vs_pytorch: $py has no torch; on Debian run REPRO_DEV=1 scripts/install_libtorch.sh" >&2; exit 1; }
case " $workloads " in
  *" vqa_step "*)
    [ -n "${MUMC_DIR:-}" ] && [ -f "$MUMC_DIR/models/model_vqa.py" ] || {
      echo "bench_vs_pytorch: vqa_step runs the official MUMC code: set MUMC_DIR to a checkout of github.com/pengfeiliHEU/MUMC at 27b544d025901945006113012adfc7d755cd196e (see the top of $0); MUMC_DIR is '${MUMC_DIR:-}'" >&2
      exit 1
    }
    export MUMC_DIR ;;
esac
case " $workloads " in
  *" vampnet_step "*)
    for v in "VAMPNET_DIR vampnet/modules/transformer.py" "LORALIB_DIR loralib/layers.py" "EINOPS_DIR einops/__init__.py"; do
      set -- $v
      d=${!1:-}
      [ -n "$d" ] && [ -f "$d/$2" ] || {
        echo "bench_vs_pytorch: vampnet_step runs the official VampNet transformer: set $1 to a folder holding $2 (see the top of $0 for the pinned checkouts); $1 is '$d'" >&2
        exit 1
      }
    done
    export VAMPNET_DIR LORALIB_DIR EINOPS_DIR ;;
esac

tmp=$(mktemp -d)
bin=$tmp/gobench
go build -o "$bin" ./bench/gobench
out=${BENCH_OUT:-$(mktemp)}
: > "$out"
for w in $workloads; do
  for r in $(seq "$runs"); do
    echo "bench: $w ($precision) run $r/$runs" >&2
    "$bin" -workload "$w" -device "$device" -precision "$precision" -inputs "$tmp/$w.inputs" >> "$out"
    "$py" bench/torch_bench.py --workload "$w" --device "$device" --precision "$precision" --inputs "$tmp/$w.inputs" >> "$out"
  done
done
"$py" - "$out" <<'PY'
import json, os, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for r in rows:
    r.setdefault("precision", "fp32")
order = []
for r in rows:
    k = (r["workload"], r["precision"])
    if k not in order:
        order.append(k)
def fmt(s):
    return f"{s*1e6:.2f} us" if s < 1e-3 else f"{s*1e3:.2f} ms"
peak = float(os.environ.get("BENCH_PEAK_TFLOPS") or 0)
counted = any(r.get("flops") for r in rows)
ww = max([10] + [len(w) for w, _ in order])  # dense_biencoder is 15 characters
head = f"{'workload':<{ww}} {'device':<6} {'prec':<4} {'Go median':>12} {'PyTorch median':>15} {'ratio':>7} {'Go peak RSS':>12} {'PyTorch peak RSS':>17}"
if counted:
    head += f" {'Go TFLOP/s':>11} {'PT TFLOP/s':>11}" + (f" {'Go MFU':>7} {'PT MFU':>7}" if peak else "")
print(head)
worst = (0, "")
for w, prec in order:
    go = [r for r in rows if r["workload"] == w and r["precision"] == prec and r["impl"] == "go"]
    pt = [r for r in rows if r["workload"] == w and r["precision"] == prec and r["impl"] == "pytorch"]
    gm = statistics.median(r["median_s"] for r in go)
    pm = statistics.median(r["median_s"] for r in pt)
    grss = max(r["peak_rss"] for r in go) / 2**20
    prss = max(r["peak_rss"] for r in pt) / 2**20
    ratio = gm / pm
    name = w if prec == "fp32" else f"{w} {prec}"
    worst = max(worst, (ratio, name))
    line = f"{w:<{ww}} {go[0]['device']:<6} {prec:<4} {fmt(gm):>12} {fmt(pm):>15} {ratio:>7.2f} {grss:>9.0f} MiB {prss:>14.0f} MiB"
    f = go[0].get("flops") or 0
    if counted and f:
        line += f" {f/gm/1e12:>11.1f} {f/pm/1e12:>11.1f}"
        if peak:
            line += f" {100*f/gm/1e12/peak:>6.1f}% {100*f/pm/1e12/peak:>6.1f}%"
    print(line)
print(f"worst ratio: {worst[0]:.2f} ({worst[1]})")
PY
