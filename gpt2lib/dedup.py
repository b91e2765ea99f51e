"""De-duplication of web documents (GPT-2 §2.1: "after de-duplication and some heuristic based cleaning").

Two levels:

- exact: a document whose *normalised* text (Unicode NFKC, case-folded, whitespace collapsed) hashes
  (BLAKE2b) to a value seen before is a duplicate (:class:`ExactDedup`);
- near: documents whose sets of word ``n``-gram shingles have Jaccard similarity above a threshold.
  MinHash signatures estimate Jaccard similarity and locality-sensitive hashing (LSH, banding) finds
  candidate pairs without comparing all pairs (Broder 1997; Leskovec et al., *Mining of Massive
  Datasets*, ch. 3). Both come from ``datasketch``; candidates are then verified with the MinHash
  estimate so LSH's false candidates do not count (:class:`NearDedup`, :func:`near_duplicate_pairs`).

Both stages are :class:`gpt2lib.pipeline.GroupStage` s: the keys they emit (a text hash; LSH band
values) are grouped by a dict in a serial run and by a shuffle on :mod:`gpt2lib.engine`, and each group
of duplicates keeps its first document.

How well it works is measured, not assumed: :func:`plant_near_duplicates` takes documents, makes
perturbed copies (each word deleted or replaced with probability ``rate``) and records exactly which
pairs it planted; :func:`score_pairs` compares the detected pairs against that ground truth.

With 3-word shingles a copy perturbed at rate ``r`` keeps about ``(1 - r)^3`` of its shingles, i.e. a
Jaccard similarity of about ``q / (2 - q)`` with ``q = (1 - r)^3``: 0.86 at r = 2%, 0.75 at 5%, 0.58 at
10%. The default threshold 0.5 therefore targets copies with up to ~10% of the words changed.
"""
from __future__ import annotations

import hashlib
import random
import re
import unicodedata
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable, Sequence

import numpy as np
from datasketch import MinHash, MinHashLSH

from gpt2lib.pipeline import GroupStage

_WORDS = re.compile(r"\w+")


def normalize_text(text: str) -> str:
    """NFKC, case-folded, runs of whitespace collapsed to one space, stripped."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def text_hash(text: str) -> str:
    """Hex BLAKE2b-128 digest of :func:`normalize_text`."""
    return hashlib.blake2b(normalize_text(text).encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


@dataclass(frozen=True)
class ExactDedup(GroupStage):
    """Group stage: keep the first document of each :func:`text_hash` (the key it emits).

    Works on anything with a ``.text`` attribute or on plain strings."""

    name: str = "exact dedup"
    reason: str = "exact duplicate"

    def keys(self, doc) -> list[bytes]:
        return [bytes.fromhex(text_hash(doc if isinstance(doc, str) else doc.text))]


def shingles(text: str, n: int = 3) -> set[bytes]:
    """Word ``n``-grams of the case-folded ``\\w+`` tokens (a text shorter than ``n`` is one shingle)."""
    words = _WORDS.findall(normalize_text(text))
    return {" ".join(words[i:i + n]).encode("utf-8", "surrogatepass") for i in range(max(1, len(words) - n + 1))}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def minhash(text: str, num_perm: int = 128, n: int = 3, seed: int = 1) -> MinHash:
    m = MinHash(num_perm=num_perm, seed=seed)
    m.update_batch(list(shingles(text, n)))
    return m


@dataclass(frozen=True)
class NearDedup(GroupStage):
    """Group stage: near duplicates by MinHash LSH, resolved as connected components.

    Map: each document's MinHash (``num_perm`` permutations of its ``n``-word shingles) is cut into
    ``b`` bands of ``r`` rows (datasketch's optimal banding for ``threshold``); each band is a key
    ``(band number, band values)``. Group-by: documents sharing a band key are candidates. Verify: a pair
    counts when its MinHash Jaccard estimate is at least ``threshold``. Resolve: each connected component
    keeps its lowest document index. A chain A~B~C keeps only A even if A and C differ more.
    """

    threshold: float = 0.5
    num_perm: int = 128
    n: int = 3
    seed: int = 1
    name: str = "near dedup"
    reason: str = "near duplicate"
    verify = True

    def __post_init__(self):
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")

    @cached_property
    def bands(self) -> list[tuple[int, int]]:
        """[(start, end)] of each band of the signature, as datasketch's MinHashLSH cuts it."""
        return MinHashLSH(threshold=self.threshold, num_perm=self.num_perm).hashranges

    def sketch(self, doc) -> np.ndarray:
        return minhash(doc if isinstance(doc, str) else doc.text, self.num_perm, self.n, self.seed).hashvalues

    def keys(self, doc) -> list[bytes]:
        sig = self.sketch(doc)
        return [k.to_bytes(2, "little") + sig[a:b].tobytes() for k, (a, b) in enumerate(self.bands)]

    def similar(self, a: np.ndarray, b: np.ndarray) -> bool:
        return np.count_nonzero(a == b) / len(a) >= self.threshold


def near_duplicate_pairs(texts: Sequence[str], threshold: float = 0.5, num_perm: int = 128, n: int = 3,
                         seed: int = 1) -> set[tuple[int, int]]:
    """All pairs ``(i, j)``, ``i < j``, whose estimated Jaccard similarity is at least ``threshold``
    among the LSH candidates (every document is indexed, so this is pairs, not clusters)."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    sigs = [minhash(t, num_perm, n, seed) for t in texts]
    pairs = set()
    for j, m in enumerate(sigs):
        for i in lsh.query(m):
            if m.jaccard(sigs[i]) >= threshold:
                pairs.add((i, j))
        lsh.insert(j, m)
    return pairs


def perturb(text: str, rate: float, rng: random.Random, vocabulary: Sequence[str]) -> str:
    """Each word is, with probability ``rate``, deleted or replaced by a random ``vocabulary`` word
    (half and half); the rest is unchanged. Words are whitespace tokens; lines are joined by spaces."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    out = []
    for w in text.split():
        u = rng.random()
        if u < rate / 2:
            continue
        out.append(rng.choice(vocabulary) if u < rate else w)
    return " ".join(out)


@dataclass(frozen=True)
class Planted:
    """``texts`` = the originals followed by the copies; ``pairs`` = exactly the planted (i, j), i < j."""

    texts: list[str]
    pairs: set[tuple[int, int]]
    rates: dict[tuple[int, int], float]


def plant_near_duplicates(docs: Sequence[str], n_copies: int, rates: Sequence[float], seed: int = 0,
                          min_words: int = 50) -> Planted:
    """Append a perturbed copy of ``n_copies`` randomly chosen documents (of at least ``min_words``
    words), cycling through ``rates``. Deterministic for a given ``seed``."""
    rng = random.Random(seed)
    eligible = [i for i, d in enumerate(docs) if len(d.split()) >= min_words]
    if n_copies > len(eligible):
        raise ValueError(f"asked for {n_copies} copies but only {len(eligible)} documents have {min_words}+ words")
    vocabulary = sorted({w for d in docs for w in d.split()})
    texts, pairs, by_rate = list(docs), set(), {}
    for k, i in enumerate(sorted(rng.sample(eligible, n_copies))):
        rate = rates[k % len(rates)]
        texts.append(perturb(docs[i], rate, rng, vocabulary))
        pair = (i, len(texts) - 1)
        pairs.add(pair)
        by_rate[pair] = rate
    return Planted(texts, pairs, by_rate)


@dataclass(frozen=True)
class PairScores:
    precision: float
    recall: float
    tp: int
    fp: int
    fn: int


def score_pairs(found: Iterable[tuple[int, int]], truth: Iterable[tuple[int, int]]) -> PairScores:
    """Precision and recall of detected pairs against the planted ones (pairs are unordered)."""
    f = {tuple(sorted(p)) for p in found}
    t = {tuple(sorted(p)) for p in truth}
    tp = len(f & t)
    return PairScores(tp / len(f) if f else 1.0, tp / len(t) if t else 1.0, tp, len(f - t), len(t - f))
