"""Benchmark: gpt2lib's Bloom filter vs an exact Python set of 8-grams (GPT-2 §4).

Builds both from the WebText sample's normalized 8-grams, then queries WikiText-2 test 8-grams.
Reports median times over interleaved repeats (1 thread), memory, and the measured false-positive
rate (filter says yes, exact set says no) next to the target p. Prints a markdown table.

    GPT2LIB_DATA_MIRROR=../shared/data python benchmarks/bench_bloom.py [--repeats 3] [--p 1e-8]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

from gpt2lib import datasets  # noqa: E402
from gpt2lib.memorization import BloomFilter, ngrams, normalize_words  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--p", type=float, default=1e-8)
    args = ap.parse_args()
    with open(datasets.download("webtext-sample", progress=False), encoding="utf-8") as f:
        train = [g for line in f for g in ngrams(normalize_words(json.loads(line)["text"]))]
    test_text = datasets.read_text("wikitext-2-test")
    test = [g for line in test_text.splitlines() for g in ngrams(normalize_words(line))]

    times = {"set build": [], "bloom build": [], "set query": [], "bloom query": []}
    for _ in range(args.repeats):  # interleaved: each repeat runs every variant once
        t = time.perf_counter(); exact = set(train); times["set build"].append(time.perf_counter() - t)
        t = time.perf_counter()
        bf = BloomFilter.for_capacity(len(train), args.p); bf.update(train)
        times["bloom build"].append(time.perf_counter() - t)
        t = time.perf_counter(); hits_exact = [g in exact for g in test]; times["set query"].append(time.perf_counter() - t)
        t = time.perf_counter(); hits_bf = bf.contains_many(test); times["bloom query"].append(time.perf_counter() - t)
    fp = sum(1 for e, b in zip(hits_exact, hits_bf) if b and not e)
    fn = sum(1 for e, b in zip(hits_exact, hits_bf) if e and not b)
    set_bytes = sys.getsizeof(exact) + sum(sys.getsizeof(g) for g in exact)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"train 8-grams: {len(train):,} ({len(exact):,} distinct); test 8-grams: {len(test):,}; "
          f"m={bf.m:,} bits, k={bf.k}, target p={args.p:g}; median of {args.repeats} interleaved repeats, 1 thread\n")
    print("| structure | build (s) | query (s) | query / set | memory (MB) | false positives | false negatives |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(f"| Python set (exact) | {med['set build']:.3f} | {med['set query']:.3f} | 1.00 | {set_bytes / 1e6:.1f} | 0 | 0 |")
    print(f"| BloomFilter | {med['bloom build']:.3f} | {med['bloom query']:.3f} | "
          f"{med['bloom query'] / med['set query']:.2f} | {bf.bits.nbytes / 1e6:.1f} | {fp} of {len(test):,} | {fn} |")
    print(f"\noverlap WikiText-2 test vs WebText sample: exact {100 * sum(hits_exact) / len(test):.3f}%, "
          f"Bloom {100 * hits_bf.mean():.3f}%")


if __name__ == "__main__":
    main()
