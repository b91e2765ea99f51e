"""Tokenizer speed (GPT-2 §2.2): gpt2lib's fast path vs raw tiktoken, the educational BPE, training.

One thread; every number is the median of interleaved repeats in this run. Prints a markdown table.

    GPT2LIB_DATA_MIRROR=../shared/data TIKTOKEN_CACHE_DIR=../shared/tiktoken_cache \\
        python benchmarks/bench_tokenizer.py [--quick]

Targets: fast path within 5% of tiktoken; educational encode >= 2.5 MB/s cold, >= 8 MB/s warm;
decode >= 50 MB/s; incremental training >= 10x faster than naive; a 1 MB pre-token in seconds
(issue 9); training a 5,000-token vocabulary on tiny-shakespeare at or below Hugging Face
``tokenizers`` with 2 workers (issue 12); streaming encode's peak memory well below the text.

"Before" for one long pre-token is the rescan loop the educational BPE used for every pre-token
(still used for short ones): it is quadratic, so it is timed at 10k and 20k bytes and extrapolated
as n**2 to 1 MB (running it would take hours).
"""
from __future__ import annotations

import argparse
import json
import os
import base64
import random
import statistics
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import tiktoken  # noqa: E402

import gpt2lib.bpe as bpe  # noqa: E402
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

    rows += long_pieces(edu, ref, quick=args.quick)
    rows += training_vs_hf(shakespeare, repeats=1 if args.quick else 3)
    rows += streaming_memory(edu, shakespeare)

    print(f"\nTokenizer benchmark: {mb:.2f} MB of text (WebText sample + tiny-shakespeare), "
          f"1 thread, median of {repeats} interleaved repeats, tiktoken {tiktoken.__version__}\n")
    print("| measurement | result | vs target / reference |")
    print("| --- | --- | --- |")
    for r in rows:
        print("| " + " | ".join(r) + " |")


def _once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def long_pieces(edu: BytePairTokenizer, ref, quick: bool) -> list[tuple[str, str, str]]:
    """Issue 9: one 1 MB pre-token, before (rescan, extrapolated) and after (heap)."""
    rows = []
    blob = base64.b64encode(random.Random(0).randbytes(750_000)).decode()
    small = (5_000, 10_000) if quick else (10_000, 20_000)
    for name, text in [("'a' * 1_000_000", "a" * 1_000_000), ("1 MB base64 blob as one pre-token", blob)]:
        data = text.encode()
        old = [_once(lambda n=n: _rescan(edu, data[:n])) for n in small]
        before = old[-1] * (len(data) / small[-1]) ** 2
        after = _once(lambda: edu._bpe_heap(data))
        assert edu._bpe_heap(data) == ref._encode_single_piece(data)
        tik = _once(lambda: ref._encode_single_piece(data))
        rows.append((f"BPE of {name}", f"{after:.1f} s (was {old[0]:.1f} s at {small[0] // 1000}k, {old[1]:.1f} s at "
                     f"{small[1] // 1000}k bytes: ~{before / 3600:.0f} h at 1 MB)", f"tiktoken {tik:.2f} s"))
    edu.clear_cache()
    t = _once(lambda: edu.encode(blob))
    rows.append(("encode a 1 MB base64 blob (GPT-2 splits it into short pre-tokens)", f"{t:.1f} s",
                 f"tiktoken {_once(lambda: ref.encode_ordinary(blob)):.2f} s"))
    return rows


def _rescan(edu: BytePairTokenizer, data: bytes) -> list[int]:
    """The quadratic loop of ``_bpe`` forced on a long pre-token (the code before issue 9)."""
    saved, bpe._LONG_PIECE = bpe._LONG_PIECE, 1 << 62
    try:
        return edu._bpe(data)
    finally:
        bpe._LONG_PIECE = saved


def training_vs_hf(shakespeare: str, repeats: int) -> list[tuple[str, str, str]]:
    """Issue 12: learn 5,000 tokens from tiny-shakespeare, against Hugging Face ``tokenizers``
    (Rust, byte-level BPE, its own thread pool: all cores) on the same text and vocabulary size."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    def hf():
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(vocab_size=5000, special_tokens=["<|endoftext|>"], show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator([shakespeare], trainer)

    t = interleaved({"hf": hf, "w1": lambda: BytePairTokenizer().train(shakespeare, 5000),
                     "w2": lambda: BytePairTokenizer().train(shakespeare, 5000, workers=2)}, repeats)
    rows = [("learn 5,000 tokens from tiny-shakespeare: gpt2lib (1 / 2 workers) vs HF tokenizers",
             f"{t['w1']:.2f} / {t['w2']:.2f} s vs {t['hf']:.2f} s",
             f"{t['w2'] / t['hf']:.2f}x HF's time with 2 workers (target <= 1)")]
    dna = "".join(random.Random(0).choices("ACGT", k=1_000_000))
    t = interleaved({"incremental": lambda: BytePairTokenizer().train(dna, 256 + 100 + 1),
                     "naive": lambda: BytePairTokenizer().train_naive(dna, 256 + 100 + 1)}, 1)
    rows.append(("100 merges on one 1 MB pre-token (random ACGT)", f"{t['incremental']:.1f} s incremental, "
                 f"{t['naive']:.1f} s naive recount", "merges cost their occurrences, not the word's length"))
    return rows


def streaming_memory(edu: BytePairTokenizer, shakespeare: str) -> list[tuple[str, str, str]]:
    """Issue 12: peak traced memory while encoding a ~5.6 MB stream of lines, vs encode of the whole
    (both from a cold cache, which then holds tiny-shakespeare's ~25k distinct pre-tokens)."""
    lines = shakespeare.splitlines(keepends=True)
    edu.clear_cache()
    tracemalloc.start()
    n = sum(1 for _ in edu.encode_iterable(line for _ in range(5) for line in lines))
    stream_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    edu.clear_cache()
    tracemalloc.start()
    assert len(edu.encode(shakespeare * 5)) == n
    whole_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return [(f"encode_iterable of a {5 * len(shakespeare) / 1e6:.1f} MB stream of lines, peak traced memory",
             f"{stream_peak / 1e6:.1f} MB", f"encode() of the joined text: {whole_peak / 1e6:.0f} MB (the text included)")]


if __name__ == "__main__":
    main()
