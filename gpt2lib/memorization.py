"""Generalization vs memorization: 8-gram Bloom filters (GPT-2 §4).

The paper asks how much of each test set already appears in WebText:

    "To study this we created Bloom filters containing 8-grams of WebText training set tokens.
    To improve recall, strings were normalized to contain only lower-cased alphanumeric words
    with a single space as a delimiter. The Bloom filters were constructed such that the false
    positive rate is upper bounded by 1/10^8. We further verified the low false positive rate by
    generating 1M strings, of which zero were found by the filter."  (Radford et al. 2019, §4)

This module builds that instrument from scratch:

* ``normalize_words`` / ``ngrams``: the paper's normalization (words = runs of ``[a-z0-9]`` after
  lower-casing; an 8-gram is eight such words joined by single spaces).
* ``BloomFilter``: a bit array with ``k`` hash functions made by double hashing one blake2b digest
  (Kirsch & Mitzenmacher 2006: ``h_i = h1 + i * h2 mod m``). Sized by the textbook formulas
  ``m = -n ln p / (ln 2)^2`` and ``k = (m / n) ln 2``. No false negatives, ever; false positives at
  about rate ``p`` (the tests measure it against an exact Python ``set``).
* ``overlap``: percent of a test set's 8-grams found in the training filter (Table 6), and
  ``copy_report``: how much of a model *sample* is found in the training data, plus the longest
  run of consecutive hits (the longest copied span).
"""
from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from gpt2lib._io import atomic_path

__all__ = [
    "normalize_words", "ngrams", "BloomFilter", "build_ngram_filter", "Overlap", "overlap",
    "CopyReport", "copy_report", "overlap_table", "documents_from_tokens", "PAPER_TABLE6",
]

_WORD = re.compile(r"[a-z0-9]+")

# Table 6 of Radford et al. (2019): "Percentage of test set 8 grams overlapping with training
# sets." (own-training-set column, WebText-train column). Transcribed from the paper.
PAPER_TABLE6: dict[str, tuple[float, float]] = {
    "PTB": (2.67, 0.88),
    "WikiText-2": (0.66, 1.63),
    "enwik8": (7.50, 6.31),
    "text8": (2.34, 3.94),
    "WikiText-103": (9.09, 2.42),
    "1BW": (13.19, 3.75),
}


def normalize_words(text: str) -> list[str]:
    """Lower-cased alphanumeric words (GPT-2 §4): ``"Don't STOP-me, 42x!"`` -> ``['don', 't', 'stop', 'me', '42x']``."""
    return _WORD.findall(text.lower())


def ngrams(words: Sequence[str], n: int = 8) -> Iterator[str]:
    """Every run of ``n`` consecutive words, joined by single spaces (fewer than ``n`` words: none)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    for i in range(len(words) - n + 1):
        yield " ".join(words[i : i + n])


_MASK64 = (1 << 64) - 1


def _two_hashes(items: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Two 64-bit hashes per item, from one 128-bit blake2b digest (stable across runs and machines)."""
    raw = b"".join(hashlib.blake2b(s.encode("utf-8"), digest_size=16).digest() for s in items)
    both = np.frombuffer(raw, dtype="<u8").reshape(-1, 2).astype(np.uint64)
    return both[:, 0], both[:, 1] | np.uint64(1)  # h2 odd: the k probes never collapse onto one bit


class BloomFilter:
    """A Bloom filter over strings: ``add``, ``in``, ``update``, ``contains_many``, ``save``/``load`` (GPT-2 §4).

    Probe ``i`` of item ``x`` is bit ``((h1(x) + i * h2(x)) mod 2**64) mod m`` (double hashing).
    """

    def __init__(self, m: int, k: int):
        if m < 1 or k < 1:
            raise ValueError(f"a Bloom filter needs m >= 1 bits and k >= 1 hashes, got m={m}, k={k}")
        self.m, self.k = int(m), int(k)
        self.bits = np.zeros((self.m + 7) // 8, dtype=np.uint8)
        self.n_added = 0  # number of items added (duplicates counted), used for the FP estimate

    @classmethod
    def for_capacity(cls, n: int, p: float = 1e-8) -> "BloomFilter":
        """The smallest filter holding ``n`` items at false-positive rate ``p``.

        ``m = ceil(-n ln p / (ln 2)^2)`` bits and ``k = round((m / n) ln 2)`` hashes (the optimum;
        the paper bounds its rate by ``p = 1e-8``).
        """
        if not 0.0 < p < 1.0:
            raise ValueError(f"false-positive rate p must be in (0, 1), got {p}")
        n = max(int(n), 1)
        m = math.ceil(-n * math.log(p) / math.log(2) ** 2)
        k = max(1, round(m / n * math.log(2)))
        return cls(m, k)

    def _positions(self, items: Sequence[str]) -> np.ndarray:
        h1, h2 = _two_hashes(items)
        i = np.arange(self.k, dtype=np.uint64)
        with np.errstate(over="ignore"):  # wrap-around mod 2**64 is intended
            return (h1[:, None] + i[None, :] * h2[:, None]) % np.uint64(self.m)

    def update(self, items: Iterable[str], batch_size: int = 65536) -> None:
        """Add every item (in vectorized batches)."""
        batch: list[str] = []
        for item in items:
            batch.append(item)
            if len(batch) == batch_size:
                self._add_batch(batch)
                batch = []
        if batch:
            self._add_batch(batch)

    def _add_batch(self, items: Sequence[str]) -> None:
        pos = self._positions(items).ravel()
        np.bitwise_or.at(self.bits, (pos >> np.uint64(3)).astype(np.intp),
                         (np.uint8(1) << (pos & np.uint64(7)).astype(np.uint8)))
        self.n_added += len(items)

    def add(self, item: str) -> None:
        self._add_batch([item])

    def contains_many(self, items: Sequence[str]) -> np.ndarray:
        """A boolean array: is each item (probably) in the filter?"""
        if len(items) == 0:
            return np.zeros(0, dtype=bool)
        pos = self._positions(items)
        byte = self.bits[(pos >> np.uint64(3)).astype(np.intp)]
        return np.all((byte >> (pos & np.uint64(7)).astype(np.uint8)) & 1, axis=1)

    def __contains__(self, item: str) -> bool:
        return bool(self.contains_many([item])[0])

    def expected_false_positive_rate(self) -> float:
        """``(1 - exp(-k n / m))^k`` for the ``n`` items added so far."""
        return (1.0 - math.exp(-self.k * self.n_added / self.m)) ** self.k

    def save(self, path: str | os.PathLike) -> None:
        """Write a ``.npz`` (no pickles) atomically: a crash never leaves a half-written filter."""
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, bits=self.bits, meta=np.array([self.m, self.k, self.n_added], dtype=np.int64))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BloomFilter":
        with np.load(path, allow_pickle=False) as data:
            m, k, n_added = (int(x) for x in data["meta"])
            bits = data["bits"]
        if bits.dtype != np.uint8 or bits.shape != ((m + 7) // 8,):
            raise ValueError(f"{path}: bit array of shape {bits.shape} does not match m={m}")
        bf = cls(m, k)
        bf.bits[:] = bits
        bf.n_added = n_added
        return bf


def build_ngram_filter(texts: Iterable[str], n: int = 8, p: float = 1e-8) -> BloomFilter:
    """A Bloom filter of every normalized ``n``-gram in ``texts`` (the training corpus), at rate ``p``.

    The texts are read once to count n-grams (to size the filter) and kept as word lists.
    """
    docs = [normalize_words(t) for t in texts]
    capacity = sum(max(0, len(w) - n + 1) for w in docs)
    bf = BloomFilter.for_capacity(capacity, p)
    bf.update(g for words in docs for g in ngrams(words, n))
    return bf


def documents_from_tokens(tokens: Iterable[int], tokenizer, eot: int | None = None) -> Iterator[str]:
    """Split a stream of token ids (e.g. a reader's own shard) at ``<|endoftext|>`` and decode each document."""
    eot = tokenizer.eot if eot is None else eot
    doc: list[int] = []
    for t in tokens:
        t = int(t)
        if t == eot:
            if doc:
                yield tokenizer.decode(doc)
            doc = []
        else:
            doc.append(t)
    if doc:
        yield tokenizer.decode(doc)


@dataclass
class Overlap:
    """How many of a test set's n-grams (occurrences, not distinct) are in the training filter."""

    name: str
    n_ngrams: int
    n_found: int

    @property
    def percent(self) -> float:
        return 100.0 * self.n_found / self.n_ngrams if self.n_ngrams else float("nan")


def overlap(texts: Iterable[str] | str, train_filter: BloomFilter, n: int = 8, name: str = "") -> Overlap:
    """Percent of test-set ``n``-grams present in ``train_filter`` (GPT-2 Table 6).

    Every 8-gram occurrence counts once (a phrase repeated in the test set counts each time).
    Each text (document / example) is normalized separately, so n-grams never span two examples.
    """
    if isinstance(texts, str):
        texts = [texts]
    total = found = 0
    for text in texts:
        grams = list(ngrams(normalize_words(text), n))
        total += len(grams)
        found += int(train_filter.contains_many(grams).sum())
    return Overlap(name, total, found)


@dataclass
class CopyReport:
    """How much of a generated sample is found in the training data (GPT-2 §4, samples)."""

    n_ngrams: int
    n_found: int
    longest_copied_words: int  # length (in normalized words) of the longest run of found n-grams

    @property
    def fraction(self) -> float:
        return self.n_found / self.n_ngrams if self.n_ngrams else 0.0


def copy_report(sample: str, train_filter: BloomFilter, n: int = 8) -> CopyReport:
    """Fraction of a sample's ``n``-grams in the training filter and its longest copied span.

    ``k`` consecutive found n-grams cover ``k + n - 1`` words; the longest such run is reported
    (0 when nothing is found). Each window was seen in training, but a Bloom filter cannot say
    the windows came from the *same* training document, so this is an upper bound on the
    longest verbatim copy (up to false positives, at rate ``p`` per n-gram).
    """
    hits = train_filter.contains_many(list(ngrams(normalize_words(sample), n))).tolist()
    longest = run = 0
    for h in hits:
        run = run + 1 if h else 0
        longest = max(longest, run)
    return CopyReport(len(hits), sum(hits), longest + n - 1 if longest else 0)


def overlap_table(results: Sequence[Overlap]) -> str:
    """A markdown table of measured overlaps beside the paper's Table 6 WebText-train column."""
    rows = ["| test set | 8-grams | in training filter | overlap % | paper: WebText train % |",
            "| --- | ---: | ---: | ---: | ---: |"]
    for r in results:
        paper = PAPER_TABLE6.get(r.name)
        rows.append(f"| {r.name} | {r.n_ngrams} | {r.n_found} | {r.percent:.2f} | "
                    f"{f'{paper[1]:.2f}' if paper else '-'} |")
    rows.append("")
    rows.append("Paper column: Table 6 of Radford et al. (2019), overlap with the full WebText "
                "training set (8M documents); ours is measured against the filter given.")
    return "\n".join(rows)
