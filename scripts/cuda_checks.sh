#!/usr/bin/env bash
# The checks that need a GPU, in one go and in order of importance, for a machine with a PyTorch
# 2.x CUDA install (its libtorch) and gotch prepared for it. On a machine without Go or network,
# pack the toolchain first (../shared/gpu/pack.sh) and run it there as
#   bash .gpu/run.sh scripts/cuda_checks.sh
# It writes under $OUT (default runs/cuda-checks), at most 8 files:
#   env.txt      the GPU, driver, CUDA and PyTorch versions, `repro info`, and each phase's start
#   tests.txt    the tests that skip without a GPU: fused attention against the matmul path on
#                CUDA (and on the CPU, where libtorch 2.x has the fused op), NCCL collectives,
#                data-parallel training over NCCL
#   fp32.txt     bench_vs_pytorch.sh --device cuda: small op, MLP, encoder, ViT-B MAE (batch 64),
#                BERT-base MLM (32 x 128), with TFLOP/s and MFU against $BENCH_PEAK_TFLOPS
#   bf16.txt     the same training steps under autocast to bfloat16, and TinyLlama's shape
#   papers.txt   the paper workloads at their CUDA shapes, fp32
#   *.jsonl      the raw rows behind each table
# Each phase has its own time limit, so that one that hangs leaves the others' results.
# BENCH_PEAK_TFLOPS defaults to 989, the dense bf16 peak of an H100 or H200 SXM by NVIDIA's
# datasheet; set it for another GPU. vqa_step and vampnet_step are left out: their PyTorch side
# imports the official MUMC and VampNet checkouts, which such a machine cannot download.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${OUT:-runs/cuda-checks}
mkdir -p "$out"
export BENCH_PEAK_TFLOPS=${BENCH_PEAK_TFLOPS:-989}
env_txt=$out/env.txt
phase() { echo "== $(date -u +%T) $*" | tee -a "$env_txt" >&2; }

phase environment
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())' 2>&1
  nproc
} >> "$env_txt"
if [ "${CHECKS_INFO:-1}" != 0 ]; then # CHECKS_INFO=0 skips building the CLI (a minute saved for the benches)
  phase build
  go build -o /tmp/repro-cuda ./cmd/repro >> "$env_txt" 2>&1 && /tmp/repro-cuda info >> "$env_txt" 2>&1
fi

# CHECKS_END (seconds since the epoch) bounds the whole run: each phase gets the smaller of its own
# limit and what is left, and is skipped when under 20 s is left.
end=${CHECKS_END:-$(( $(date +%s) + 3600 ))}
limit() { local left=$(( end - $(date +%s) - 5 )); echo $(( left < $1 ? left : $1 )); }

phase tests
for t in "./dist NCCL|Backends" "./train NCCL" "./torchmods FusedAttention|AttentionPath|Llama"; do
  set -- $t
  l=$(limit 120)
  [ "$l" -ge 20 ] || { echo "skipped $1: out of time" >> "$out/tests.txt"; continue; }
  timeout "$l" go test -count=1 -v -run "$2" "$1" >> "$out/tests.txt" 2>&1
  echo "tests $1 exit $?" >> "$env_txt"
done

bench() { # name limit args...
  local name=$1 l
  l=$(limit "$2")
  shift 2
  [ "$l" -ge 20 ] || { phase "bench $name skipped: out of time"; return; }
  phase "bench $name (limit $l s)"
  BENCH_OUT=$out/$name.jsonl timeout "$l" scripts/bench_vs_pytorch.sh --device cuda "$@" > "$out/$name.txt" 2>&1
  echo "bench $name exit $?" >> "$env_txt"
}
bench fp32 120 --runs 1 --workloads "mae_vitb bert_mlm encoder smallop mlp"
bench bf16 100 --runs 1 --precision bf16 --workloads "mae_vitb bert_mlm encoder mlp llama_lm"
bench papers 150 --runs 1 --workloads "llama_lm pmlm dense_biencoder monobert clip bert_dense_infer bert_pruned_infer metapt_first metapt_second"
phase done
