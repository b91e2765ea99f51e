"""GPT-2 124M training throughput and MFU on one GPU: fp32 (TF32) vs bf16 vs bf16 + torch.compile.

Runs the real trainer (:func:`gpt2lib.train.train`) on synthetic token shards (uniform random ids: the
speed of a step does not depend on the data), context 1024, the paper's 512 x 1024 tokens per step by
gradient accumulation. Reports the median tokens/s and MFU over the steps after ``--warmup`` steps, and
compares :func:`gpt2lib.hardware.estimate_memory` with ``torch.cuda.max_memory_allocated``.

    python benchmarks/bench_gpu_train.py                       # on a GPU
    python benchmarks/bench_gpu_train.py --dry-run             # tiny model on CPU, checks the script runs
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpt2lib.hardware import estimate_memory  # noqa: E402
from gpt2lib.model import GPT2, GPT2Config  # noqa: E402
from gpt2lib.train import TrainConfig, train  # noqa: E402


def synthetic_shards(folder: Path, n_tokens: int, n_vocab: int) -> None:
    """A gpt2lib.data folder of uniform random tokens (the layout gpt2lib.data.prepare writes)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    splits = {}
    for split, n in (("train", n_tokens), ("val", max(n_tokens // 50, 4096))):
        rng.integers(0, n_vocab, n, dtype=np.uint16).tofile(folder / f"{split}_000000.bin")
        splits[split] = {"documents": 1, "tokens": n, "bytes": 4 * n,
                         "shards": [{"file": f"{split}_000000.bin", "tokens": n}]}
    meta = {"format": "gpt2lib-tokens-v1", "tokenizer": "synthetic", "n_vocab": n_vocab, "eot": n_vocab - 1,
            "probe": [], "dtype": "uint16", "val_fraction": 0.02, "seed": 0, "splits": splits}
    (folder / "meta.json").write_text(json.dumps(meta))


def run_mode(name: str, precision: str, compile_: bool, args, data: Path, out: Path) -> dict:
    model_cfg = GPT2Config.from_name(args.model, vocab_size=args.vocab_size, block_size=args.block_size)
    cfg = TrainConfig(data_dir=str(data), out_dir=str(out / name), model=args.model, block_size=args.block_size,
                      micro_batch_size=args.micro_batch_size, tokens_per_step=args.tokens_per_step,
                      max_steps=args.warmup + args.steps, warmup_steps=2, eval_interval=0, eval_batches=1,
                      sample_tokens=0, save_interval=10**9, log_interval=1, precision=precision,
                      compile=compile_, device=args.device, progress=False)
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(0)
    t0 = time.perf_counter()
    res = train(cfg, model=GPT2(model_cfg))
    wall = time.perf_counter() - t0
    records = [json.loads(x) for x in (out / name / "log.jsonl").read_text().splitlines()]
    timed = [r for r in records if r["step"] > args.warmup]
    est = estimate_memory(model_cfg, cfg, precision=res["precision"])
    peak = torch.cuda.max_memory_allocated() if args.device.startswith("cuda") else None
    mfus = [r["mfu"] for r in timed if r["mfu"] is not None]
    return {"mode": name, "precision": res["precision"], "tokens_per_s": statistics.median(r["tokens_per_s"] for r in timed),
            "mfu": statistics.median(mfus) if mfus else None, "final_loss": records[-1]["loss"],
            "est_mem_gib": est.total / 2**30, "peak_mem_gib": peak / 2**30 if peak else None, "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="tiny model on CPU, fp32 and bf16, no compile")
    ap.add_argument("--model", default="gpt2")
    ap.add_argument("--vocab-size", type=int, default=50304, help="50257 padded to a multiple of 128 (nanoGPT)")
    ap.add_argument("--block-size", type=int, default=1024)
    ap.add_argument("--micro-batch-size", type=int, default=16)
    ap.add_argument("--tokens-per-step", type=int, default=512 * 1024)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per mode")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per mode (compilation happens here)")
    ap.add_argument("--modes", default="fp32,bf16,bf16+compile")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if args.dry_run:
        args.model, args.vocab_size, args.block_size, args.micro_batch_size = "gpt2-tiny", 512, 64, 4
        args.tokens_per_step, args.steps, args.warmup, args.device = 512, 2, 1, "cpu"
        args.modes = "fp32,bf16"
    modes = {"fp32": ("fp32", False), "bf16": ("bf16", False), "bf16+compile": ("bf16", True),
             "fp16": ("fp16", False)}
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        synthetic_shards(data, max(4 * args.tokens_per_step * (args.steps + args.warmup), 1 << 16) + 1,
                         args.vocab_size)
        rows = [run_mode(m, *modes[m], args, data, Path(tmp) / "runs") for m in args.modes.split(",")]
    print(f"\n{args.model} (vocab {args.vocab_size}), context {args.block_size}, micro-batch {args.micro_batch_size}, "
          f"{args.tokens_per_step} tokens/step, {device_name}, torch {torch.__version__}\n")
    print("| mode | tokens/s | MFU | est. memory (GiB) | peak allocated (GiB) | loss after run | wall (s) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        peak = f"{r['peak_mem_gib']:.2f}" if r["peak_mem_gib"] is not None else "n/a"
        print(f"| {r['mode']} | {r['tokens_per_s']:,.0f} | {mfu} | {r['est_mem_gib']:.2f} | {peak} | "
              f"{r['final_loss']:.3f} | {r['wall_s']:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device_name, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
