"""Byte-level BPE in seven short functions: the version to read (GPT-2 §2.2 "Input Representation").

GPT-2 runs Byte Pair Encoding (Sennrich et al., 2016) on UTF-8 *bytes*, so 256 base tokens spell any string,
and first splits text into pre-tokens with a regular expression so that no merge crosses a letter / digit /
punctuation / space boundary. Training merges the most frequent adjacent pair, again and again; encoding
replays the merges, lowest rank (earliest learned) first. In the style of minbpe and tiktoken's
``_educational.py``.

These functions are slow on purpose (every merge rescans everything). :mod:`gpt2lib.bpe` holds the fast paths
beside them, tested equal: :func:`gpt2lib.bpe.learn_merges` updates only the pairs a merge touches, and
:class:`gpt2lib.bpe.BytePairTokenizer` encodes long pre-tokens with a heap; ``tiktoken`` gives the same ids.
"""
from __future__ import annotations

from collections import Counter

import regex

# GPT-2's pre-tokenizer (openai/gpt-2 src/encoder.py), with the contractions 's 't 're 've 'm 'll 'd
# written as one group. Contractions are matched case-sensitively, so "DON'T" splits as "DON", "'",
# "T": a quirk of GPT-2 we keep, because the released vocabulary was learned with it.
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

__all__ = ["GPT2_SPLIT_PATTERN", "pair_counts", "merge", "train", "vocabulary", "bpe", "encode", "decode"]


def pair_counts(words: dict[tuple[int, ...], int]) -> Counter[tuple[int, int]]:
    """How often each adjacent pair of tokens occurs, each word (pre-token) weighted by its count."""
    counts: Counter[tuple[int, int]] = Counter()
    for word, n in words.items():
        for pair in zip(word, word[1:]):
            counts[pair] += n
    return counts


def merge(ids: list[int] | tuple[int, ...], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace each occurrence of ``pair`` in ``ids``, left to right, by ``new_id``."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def train(text: str, n_merges: int, pattern: str = GPT2_SPLIT_PATTERN) -> list[tuple[int, int]]:
    """Learn ``n_merges`` merges from ``text``: merge ``k`` makes token ``256 + k`` from the most frequent
    adjacent pair (ties: the smallest pair of ids). Fewer if no pair is left."""
    words = Counter(tuple(piece.encode("utf-8")) for piece in regex.findall(pattern, text))
    merges = []
    for new_id in range(256, 256 + n_merges):
        counts = pair_counts(words)
        if not counts:
            break
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        words = {tuple(merge(word, best, new_id)): n for word, n in words.items()}
    return merges


def vocabulary(merges: list[tuple[int, int]]) -> dict[bytes, int]:
    """Each token's bytes -> its id (its rank): the 256 bytes, then one token per merge."""
    vocab = [bytes([b]) for b in range(256)]
    for a, b in merges:
        vocab.append(vocab[a] + vocab[b])
    ranks: dict[bytes, int] = {}
    for i, token in enumerate(vocab):
        ranks.setdefault(token, i)  # two merges can spell the same bytes: the earlier one wins
    return ranks


def bpe(piece: bytes, ranks: dict[bytes, int]) -> list[int]:
    """Token ids of one pre-token: merge the adjacent pair whose bytes form the token of the lowest rank
    (leftmost on ties), until none does. A pre-token that is itself a token is used whole (as tiktoken does)."""
    parts = [piece] if piece in ranks else [bytes([b]) for b in piece]
    while True:
        ranked = [(ranks[a + b], i) for i, (a, b) in enumerate(zip(parts, parts[1:])) if a + b in ranks]
        if not ranked:
            return [ranks[p] for p in parts]
        _, i = min(ranked)  # the lowest rank, leftmost on ties
        parts[i : i + 2] = [parts[i] + parts[i + 1]]


def encode(text: str, ranks: dict[bytes, int], pattern: str = GPT2_SPLIT_PATTERN) -> list[int]:
    """Token ids of ``text``: split it into pre-tokens, then :func:`bpe` each one's UTF-8 bytes."""
    return [i for piece in regex.findall(pattern, text) for i in bpe(piece.encode("utf-8"), ranks)]


def decode(ids: list[int], ranks: dict[bytes, int]) -> str:
    """The text of ``ids`` (bytes that are not valid UTF-8 on their own shown as U+FFFD)."""
    token_bytes = {i: t for t, i in ranks.items()}
    return b"".join(token_bytes[i] for i in ids).decode("utf-8", errors="replace")
