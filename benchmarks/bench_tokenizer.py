"""Tokenizer speed (GPT-2 §2.2): gpt2lib's fast path vs raw tiktoken, the educational BPE, training.

One thread; every number is the median of interleaved repeats in this run. Prints a markdown table.

    GPT2LIB_DATA_MIRROR=../shared/data TIKTOKEN_CACHE_DIR=../shared/tiktoken_cache \\
        python benchmarks/bench_tokenizer.py [--quick]

Targets: fast path within 5% of tiktoken; educational encode >= 2.5 MB/s cold, >= 8 MB/s warm;
decode >= 50 MB/s; incremental training >= 10x faster than naive.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import tiktoken  # noqa: E402

from gpt2lib.bpe import BytePairTokenizer  # noqa: E402
from gpt2lib.tokenizer import get_gpt2_tokenizer  # noqa: E402


def _mirror() -> Path:
    path = os.environ.get("GPT2LIB_DATA_MIRROR")
    if not path:
        raise SystemExit("set GPT2LIB_DATA_MIRROR to the data mirror (a folder laid out like shared/data)")
    return Path(path)


def interleaved(fns: dict[str, callable], repeats: int, setup: dict[str, callable] | None = None) -> dict[str, float]:
    """Median seconds per function, running them in turn ``repeats`` times."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            if setup and k in setup:
                setup[k]()
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller texts and fewer repeats")
    args = ap.parse_args()
    mirror = _mirror()
    lines = (mirror / "webtext/webtext.train.first1408.jsonl").read_text(encoding="utf-8").split("\n")
    web = "\n\n".join(json.loads(ln)["text"] for ln in lines if ln)
    shakespeare = (mirror / "tinyshakespeare/input.txt").read_text(encoding="utf-8")
    text = web + "\n\n" + shakespeare
    repeats = 5
    if args.quick:
        text, repeats = text[:1_000_000], 3
    mb = len(text.encode("utf-8")) / 1e6

    ref = tiktoken.get_encoding("gpt2")
    fast = get_gpt2_tokenizer()
    edu = BytePairTokenizer.from_tiktoken(ref)
    ids = ref.encode_ordinary(text)
    assert fast.encode(text) == ids and edu.encode(text) == ids, "tokenizers disagree"
    rows: list[tuple[str, str, str]] = []

    t = interleaved({"tiktoken": lambda: ref.encode_ordinary(text), "gpt2lib": lambda: fast.encode(text)}, repeats)
    rows.append(("fast encode vs tiktoken.encode_ordinary", f"{mb / t['gpt2lib']:.1f} vs {mb / t['tiktoken']:.1f} MB/s",
                 f"{t['gpt2lib'] / t['tiktoken']:.3f}x time (target <= 1.05)"))
    t = interleaved({"tiktoken": lambda: ref.encode(text, allowed_special="all"),
                     "gpt2lib": lambda: fast.encode(text, allowed_special="all")}, repeats)
    rows.append(("fast encode(allowed_special='all') vs tiktoken", f"{mb / t['gpt2lib']:.1f} vs {mb / t['tiktoken']:.1f} MB/s",
                 f"{t['gpt2lib'] / t['tiktoken']:.3f}x time (target <= 1.05)"))
    t = interleaved({"tiktoken": lambda: ref.decode(ids), "gpt2lib": lambda: fast.decode(ids)}, repeats)
    rows.append(("fast decode vs tiktoken.decode", f"{mb / t['gpt2lib']:.1f} vs {mb / t['tiktoken']:.1f} MB/s",
                 f"{t['gpt2lib'] / t['tiktoken']:.3f}x time (target <= 1.05)"))

    t = interleaved({"cold": lambda: edu.encode(text), "warm": lambda: edu.encode(text),
                     "decode": lambda: edu.decode(ids), "tiktoken": lambda: ref.encode_ordinary(text)},
                    repeats, setup={"cold": edu.clear_cache})
    rows.append(("educational encode, cold cache", f"{mb / t['cold']:.2f} MB/s", f"target >= 2.5; {t['cold'] / t['tiktoken']:.1f}x tiktoken's time"))
    rows.append(("educational encode, warm cache", f"{mb / t['warm']:.2f} MB/s", f"target >= 8; {t['warm'] / t['tiktoken']:.1f}x tiktoken's time"))
    rows.append(("educational decode", f"{mb / t['decode']:.1f} MB/s", "target >= 50"))

    train_text = shakespeare[: 100_000 if args.quick else 300_000]
    n_merges = 200 if args.quick else 500
    t = interleaved({"incremental": lambda: BytePairTokenizer().train(train_text, 257 + n_merges),
                     "naive": lambda: BytePairTokenizer().train_naive(train_text, 257 + n_merges)}, 1 if args.quick else 3)
    rows.append((f"training {n_merges} merges on {len(train_text) / 1e3:.0f} kB of Shakespeare",
                 f"{t['incremental']:.2f} s incremental, {t['naive']:.2f} s naive",
                 f"{t['naive'] / t['incremental']:.1f}x speed-up (target >= 10)"))
    vocab = 2_000 if args.quick else 10_000
    t0 = time.perf_counter()
    BytePairTokenizer().train(shakespeare, vocab)
    rows.append((f"learn a {vocab:,}-token vocabulary from tiny-shakespeare (1.1 MB)", f"{time.perf_counter() - t0:.1f} s", "wall time, once"))

    print(f"\nTokenizer benchmark: {mb:.2f} MB of text (WebText sample + tiny-shakespeare), "
          f"1 thread, median of {repeats} interleaved repeats, tiktoken {tiktoken.__version__}\n")
    print("| measurement | result | vs target / reference |")
    print("| --- | --- | --- |")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
