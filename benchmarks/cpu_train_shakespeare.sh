#!/usr/bin/env bash
# Smallest preset on CPU from the command line: a 2048-token BPE trained on Tiny Shakespeare, token shards,
# `cpu-tiny` training (4 layers x 128 wide, 128-token context, 2048 tokens/step) for at most ~3 minutes,
# then samples. Prints tokens/s, the val loss, and the unigram baseline (entropy of the val tokens under
# add-one-smoothed train unigram frequencies) that the model must beat.
#   bash benchmarks/cpu_train_shakespeare.sh [work_dir] [max_steps]
set -euo pipefail
WORK=${1:-_build/cpu-shakespeare}  # _build/ is git-ignored
STEPS=${2:-500}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p "$WORK"
start=$(date +%s)
python -m gpt2lib train-tokenizer --dataset tiny-shakespeare --vocab-size 2048 --name shakespeare-bpe \
  --out "$WORK/bpe.json"
python -m gpt2lib prepare --dataset tiny-shakespeare --tokenizer "$WORK/bpe.json" --out "$WORK/data" \
  --val-fraction 0.1
t0=$(date +%s)
python -m gpt2lib train --preset cpu-tiny --data-dir "$WORK/data" --out-dir "$WORK/run" \
  --max-steps "$STEPS" --eval-interval 100 --eval-batches 16 --sample-tokens 0 --no-progress
t1=$(date +%s)
python -m gpt2lib sample --model "$WORK/run" --prompt "ROMEO:" --max-new-tokens 120 --num-samples 2 --top-k 50
python - "$WORK" "$((t1 - t0))" "$(( $(date +%s) - start ))" <<'PY'
import json, math, statistics, sys
import numpy as np
from gpt2lib.data import TokenShards
work, train_s, total_s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
train, val = TokenShards.open(f"{work}/data", "train"), TokenShards.open(f"{work}/data", "val")
V = train.meta["n_vocab"]
p = (np.bincount(train.tokens(), minlength=V) + 1.0) / (train.num_tokens + V)
unigram = float(-np.log(p[val.tokens()]).mean())
log = [json.loads(x) for x in open(f"{work}/run/log.jsonl")]
evals = [r for r in log if r.get("val_loss") is not None]
tps = statistics.median(r["tokens_per_s"] for r in log if r.get("tokens_per_s"))
print("\n| metric | value |\n| --- | ---: |")
print(f"| vocab (BPE) | {V} |")
print(f"| train tokens / val tokens | {train.num_tokens:,} / {val.num_tokens:,} |")
print(f"| steps x tokens/step | {log[-1]['step']} x 2048 |")
print(f"| median tokens/s (train) | {tps:,.0f} |")
print(f"| unigram baseline (nats/token) | {unigram:.3f} |")
for r in evals:
    print(f"| val loss at step {r['step']} (nats/token) | {r['val_loss']:.3f} |")
print(f"| final val bits/byte | {evals[-1]['val_bpb']:.3f} |")
print(f"| training wall time (s) | {train_s} |")
print(f"| total wall time incl. tokenizer + prepare (s) | {total_s} |")
PY
