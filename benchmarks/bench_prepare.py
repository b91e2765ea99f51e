"""Throughput of gpt2lib.data.prepare (MB of UTF-8 text per second) with 1 and 2 tokenizer workers.

Corpora: the WebText sample (1408 documents) and Tiny Shakespeare (split at blank lines). Tokenizers: GPT-2
(tiktoken) and a 2048-token BytePairTokenizer trained on the corpus (pure Python). Median of interleaved
repeats; torch and BLAS held to 1 thread.

    python benchmarks/bench_prepare.py [--repeats 3]
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

from gpt2lib.bpe import BytePairTokenizer  # noqa: E402
from gpt2lib.data import prepare, split_documents  # noqa: E402
from gpt2lib.datasets import read_text  # noqa: E402
from gpt2lib.tokenizer import get_gpt2_tokenizer  # noqa: E402


def corpora() -> dict[str, list[str]]:
    webtext = [json.loads(line)["text"] for line in read_text("webtext-sample").splitlines() if line.strip()]
    return {"webtext-sample": webtext, "tiny-shakespeare": split_documents(read_text("tiny-shakespeare"))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bpe-vocab", type=int, default=2048)
    args = ap.parse_args()
    rows = []
    for name, docs in corpora().items():
        mb = sum(len(d.encode()) for d in docs) / 1e6
        toks = {"gpt2 (tiktoken)": get_gpt2_tokenizer(),
                f"BPE {args.bpe_vocab} (Python)": BytePairTokenizer().train("\n\n".join(docs), args.bpe_vocab)}
        for tname, tok in toks.items():
            times: dict[int, list[float]] = {1: [], 2: []}
            for _ in range(args.repeats):
                for workers in (1, 2):  # interleaved
                    with tempfile.TemporaryDirectory() as tmp:
                        if hasattr(tok, "clear_cache"):
                            tok.clear_cache()
                        t0 = time.perf_counter()
                        prepare(docs, tmp, tok, val_fraction=0.05, num_workers=workers, progress=False)
                        times[workers].append(time.perf_counter() - t0)
            t1, t2 = statistics.median(times[1]), statistics.median(times[2])
            rows.append((name, tname, mb, mb / t1, mb / t2, t1 / t2))
    print(f"\nprepare() throughput, median of {args.repeats} interleaved repeats, {os.cpu_count()} CPUs\n")
    print("| corpus | tokenizer | MB | MB/s, 1 worker | MB/s, 2 workers | speed-up |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for name, tname, mb, s1, s2, sp in rows:
        print(f"| {name} | {tname} | {mb:.2f} | {s1:.2f} | {s2:.2f} | {sp:.2f}x |")


if __name__ == "__main__":
    main()
