#!/usr/bin/env bash
# The whole GPU check of issue 8 in one prepared run (~8 minutes on one H100/H200):
#   (a) GPT-2 124M training tokens/s + MFU in fp32, bf16, bf16 + torch.compile
#   (b) fp16 + GradScaler at a 16 GB T4's micro-batch
#   (c) estimate_memory vs torch.cuda.max_memory_allocated, training and evaluation
#   (d) every chapter's SCALE="gpu" branch on CUDA with the stand-in "gpt2" checkpoint
#   (e) gpt2lib vs transformers evaluation and generation throughput
# It writes OUT/summary.json and OUT/summary.md (the table for README.md), rewritten after each part.
#
#   benchmarks/gpu_check.sh [OUT]            # on a GPU machine, default OUT=_build/gpu_check
#   benchmarks/gpu_check.sh --dry-run [OUT]  # on a CPU: every part with tiny sizes, in seconds (tested in CI)
#   extra options after OUT go to benchmarks/gpu_check.py (--parts train,fp16 --chapters-size full)
set -euo pipefail
cd "$(dirname "$0")/.."

dry=()
if [[ "${1:-}" == "--dry-run" ]]; then dry=(--dry-run); shift; fi
out="${1:-_build/gpu_check}"
[[ $# -gt 0 ]] && shift

shared="$(cd .. && pwd)/shared"
[[ -d "$shared/data" ]] && export GPT2LIB_DATA_MIRROR="${GPT2LIB_DATA_MIRROR:-$shared/data}"
[[ -d "$shared/tiktoken_cache" ]] && export TIKTOKEN_CACHE_DIR="${TIKTOKEN_CACHE_DIR:-$shared/tiktoken_cache}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [[ ${#dry[@]} -eq 1 ]]; then export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"; fi
if [[ ${#dry[@]} -eq 0 ]] && ! python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "error: no CUDA GPU visible to torch; use benchmarks/gpu_check.sh --dry-run on a CPU" >&2
  exit 2
fi
exec python3 benchmarks/gpu_check.py "${dry[@]}" --out "$out" "$@"
