"""Cost of checking shard token ids when shards are opened (GPT-2 §2.1 data; issue 9 item 10).

``TokenShards.open`` checks that every id of every shard is below ``n_vocab`` (``gpt2lib.data.check_shard_ids``:
a numpy max per 16M-token chunk of the memory-mapped shard), so the trainer may skip the per-step id check on
GPUs. This measures that check on a 1 GB uint16 shard of random GPT-2 ids (written under the temp folder,
deleted at the end), against two references in the same run: reading the file once into a buffer
(``readinto``, the floor any check must pay) and one unchunked ``np.max`` over the whole memmap. The file is in
the page cache after it is written (a first open of a cold shard also pays the disk read). Median of
interleaved repeats.

    python benchmarks/bench_id_check.py [--gb 1] [--repeats 5]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from gpt2lib.data import FORMAT, TokenShards, check_shard_ids  # noqa: E402

N_VOCAB = 50257


def write_shard(folder: Path, n_tokens: int) -> Path:
    """A prepare-style folder with one train shard of ``n_tokens`` random ids (written in 64M-token pieces)."""
    path = folder / "train_000000.bin"
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        for start in range(0, n_tokens, 1 << 26):
            rng.integers(0, N_VOCAB, min(1 << 26, n_tokens - start), dtype=np.uint16).tofile(f)
    meta = {"format": FORMAT, "tokenizer": "gpt2", "n_vocab": N_VOCAB, "eot": N_VOCAB - 1, "dtype": "uint16",
            "splits": {"train": {"documents": 1, "tokens": n_tokens, "bytes": n_tokens,
                                 "shards": [{"file": path.name, "tokens": n_tokens}]}}}
    (folder / "meta.json").write_text(json.dumps(meta))
    return path


def read_once(path: Path) -> None:
    buf = bytearray(1 << 24)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=1.0, help="shard size in GB (1e9 bytes)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    n_tokens = int(args.gb * 1e9) // 2
    with tempfile.TemporaryDirectory(prefix="bench-id-check-") as tmp:
        folder = Path(tmp)
        path = write_shard(folder, n_tokens)
        size = path.stat().st_size
        shard = np.memmap(path, dtype=np.uint16, mode="r")
        cases = {
            "check_shard_ids (16M-token chunks)": lambda: check_shard_ids(shard, N_VOCAB, path),
            "TokenShards.open (meta + check)": lambda: TokenShards.open(folder, "train"),
            "reference: read the file once": lambda: read_once(path),
            "reference: one np.max over the memmap": lambda: int(shard.max()),
        }
        times: dict[str, list[float]] = {k: [] for k in cases}
        for fn in cases.values():  # warm-up: page cache, numpy dispatch
            fn()
        for _ in range(args.repeats):
            for name, fn in cases.items():  # interleaved
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        del shard
    print(f"\nid check on a {size / 1e9:.2f} GB uint16 shard ({n_tokens:,} tokens, page-cached), median of "
          f"{args.repeats} interleaved repeats, {os.cpu_count()} CPUs\n")
    ref = statistics.median(times["reference: read the file once"])
    print(f"| {'case':<40} | {'seconds':>8} | {'GB/s':>6} | {'x read-once':>11} |")
    print(f"|{'-' * 42}|{'-' * 10}|{'-' * 8}|{'-' * 13}|")
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"| {name:<40} | {t:8.3f} | {size / 1e9 / t:6.2f} | {t / ref:11.2f} |")


if __name__ == "__main__":
    main()
