"""Bloom filters of 8-grams (GPT-2 §4): no false negatives, measured false-positive rate, overlap reports.

The reference for every membership answer is an exact Python ``set`` of the same strings.
"""
from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from gpt2lib.memorization import (
    BloomFilter, PAPER_TABLE6, build_ngram_filter, copy_report, documents_from_tokens, ngrams,
    normalize_words, overlap, overlap_table,
)


def test_normalization_is_lowercased_alphanumeric_words() -> None:
    """The paper: 'lower-cased alphanumeric words with a single space as a delimiter'."""
    assert normalize_words("Don't STOP-me,  42x!\n\tOK") == ["don", "t", "stop", "me", "42x", "ok"]
    assert list(ngrams(normalize_words("a b c d"), 2)) == ["a b", "b c", "c d"]
    assert list(ngrams(["a", "b"], 8)) == []


def test_ngrams_rejects_nonpositive_n() -> None:
    with pytest.raises(ValueError, match="n must be >= 1"):
        list(ngrams(["a"], 0))


def test_sizing_follows_the_textbook_formulas() -> None:
    """m = -n ln p / (ln 2)^2 bits and k = (m/n) ln 2 hashes."""
    bf = BloomFilter.for_capacity(1000, 0.01)
    assert bf.m == math.ceil(-1000 * math.log(0.01) / math.log(2) ** 2) == 9586
    assert bf.k == round(9586 / 1000 * math.log(2)) == 7
    with pytest.raises(ValueError, match="false-positive rate"):
        BloomFilter.for_capacity(10, 1.5)
    with pytest.raises(ValueError, match="m >= 1"):
        BloomFilter(0, 3)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=20), min_size=1, max_size=200))
def test_every_inserted_item_is_found(items: list[str]) -> None:
    """A Bloom filter never has false negatives, for any strings (unicode, empty, duplicates)."""
    bf = BloomFilter.for_capacity(len(items), 1e-3)
    bf.update(items)
    assert all(item in bf for item in items)
    assert bf.contains_many(items).all()


def test_measured_false_positive_rate_is_near_the_target() -> None:
    """Against an exact set: zero false negatives, and the FP rate of 200k fresh strings within 2x of p."""
    rng = random.Random(0)
    members = {f"m{rng.getrandbits(64):x}" for _ in range(20_000)}
    p = 0.01
    bf = BloomFilter.for_capacity(len(members), p)
    bf.update(sorted(members))
    assert bf.contains_many(sorted(members)).all()
    probes = [f"q{rng.getrandbits(64):x}" for _ in range(200_000)]
    probes = [q for q in probes if q not in members]
    fp = bf.contains_many(probes).mean()
    assert p / 2 < fp < 2 * p, fp
    assert bf.expected_false_positive_rate() == pytest.approx(p, rel=0.1)


def test_paper_rate_filter_finds_no_random_strings() -> None:
    """The paper's check at p = 1e-8: of 100k random strings none is found (it generated 1M)."""
    rng = random.Random(1)
    bf = BloomFilter.for_capacity(5000, 1e-8)
    bf.update(f"x{i}" for i in range(5000))
    assert not bf.contains_many([f"y{rng.getrandbits(64)}" for _ in range(100_000)]).any()


def test_save_and_load_round_trip(tmp_path) -> None:
    bf = BloomFilter.for_capacity(100, 1e-4)
    bf.update(["alpha beta", "gamma"])
    bf.save(tmp_path / "f.npz")
    loaded = BloomFilter.load(tmp_path / "f.npz")
    assert (loaded.m, loaded.k, loaded.n_added) == (bf.m, bf.k, 2)
    assert np.array_equal(loaded.bits, bf.bits) and "gamma" in loaded


def test_load_rejects_mismatched_file(tmp_path) -> None:
    np.savez(tmp_path / "bad.npz", bits=np.zeros(3, np.uint8), meta=np.array([100, 3, 0]))
    with pytest.raises(ValueError, match="does not match"):
        BloomFilter.load(tmp_path / "bad.npz")


def _exact_ngrams(texts, n=8):
    return {g for t in texts for g in ngrams(normalize_words(t), n)}


def test_overlap_matches_exact_set_on_webtext_sample(data_mirror) -> None:
    """Overlap of real test sets with the WebText sample, recomputed with an exact set of 8-grams."""
    lines = (data_mirror / "webtext" / "webtext.train.first1408.jsonl").read_text(encoding="utf-8").splitlines()
    docs = [json.loads(line)["text"] for line in lines[:300]]
    bf = build_ngram_filter(docs, p=1e-6)
    exact = _exact_ngrams(docs)
    # Self-overlap: every training 8-gram is found.
    assert overlap(docs, bf).percent == 100.0
    lambada = [json.loads(l)["text"] for l in
               (data_mirror / "lambada" / "lambada_test.jsonl").read_text(encoding="utf-8").splitlines()[:500]]
    half_copied = docs[0][:2000]
    for name, texts in [("LAMBADA", lambada), ("mixed", [half_copied] + lambada[:20])]:
        result = overlap(texts, bf, name=name)
        grams = [g for t in texts for g in ngrams(normalize_words(t), 8)]
        assert result.n_ngrams == len(grams)
        assert result.n_found == sum(g in exact for g in grams)  # p = 1e-6: no FP expected here
    assert overlap([half_copied] + lambada[:20], bf).n_found > 0


def test_copy_report_finds_longest_copied_span() -> None:
    train = "the quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat today"
    bf = build_ngram_filter([train])
    sample = "Once upon a time THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG WHILE the end came soon enough"
    report = copy_report(sample, bf)
    # "the quick brown fox jumps over the lazy dog while the" (11 words) is in the training text:
    # 4 consecutive 8-grams; "while the end" is not.
    assert report.longest_copied_words == 11
    assert report.n_found == 4 and report.n_ngrams == len(normalize_words(sample)) - 7
    assert copy_report("nothing here is from the training text at all really", bf).longest_copied_words == 0
    assert copy_report("too short", bf).fraction == 0.0


def test_documents_from_tokens_splits_at_eot() -> None:
    class Tok:  # identity "tokenizer": ids are character codes
        eot = 0

        def decode(self, ids):
            return "".join(map(chr, ids))

    ids = [0, 104, 105, 0, 0, 121, 111]
    assert list(documents_from_tokens(ids, Tok())) == ["hi", "yo"]


def test_overlap_table_shows_paper_column() -> None:
    table = overlap_table([overlap(["a b c d e f g h"], build_ngram_filter(["a b c d e f g h"]), name="PTB")])
    assert "| PTB | 1 | 1 | 100.00 | 0.88 |" in table
    assert PAPER_TABLE6["WikiText-2"] == (0.66, 1.63)
