"""Educational byte-level BPE, the tokenizer of GPT-2 §2.2, in plain Python.

GPT-2 §2.2 ("Input Representation") runs Byte Pair Encoding (Sennrich et al., 2016) on UTF-8
*bytes* rather than Unicode code points, so that a base vocabulary of only 256 symbols can
represent any string, and it keeps BPE from merging across character categories by first
splitting text into pre-tokens with a regular expression (letters, digits, punctuation and
whitespace are kept apart; "dog." never becomes one token).

This module is the readable version. :mod:`gpt2lib.tokenizer` wraps tiktoken, the fast one.
Loaded with GPT-2's own files, :class:`BytePairTokenizer` gives the same ids as tiktoken on
every input.

How encoding works (the rule tiktoken uses, so results match it exactly):

1. split the text with :data:`GPT2_SPLIT_PATTERN` into pre-tokens;
2. turn each pre-token into its UTF-8 bytes, one token per byte;
3. if the whole pre-token is itself a token, use it; otherwise repeatedly merge the adjacent
   pair whose concatenation is the token with the lowest id (leftmost on ties), until no adjacent
   pair forms a token. Ids are ranks: a token learned earlier has a smaller id.

Training (:meth:`BytePairTokenizer.train`) counts adjacent pairs over the *unique* pre-tokens
(each weighted by how often it occurs) and repeatedly merges the most frequent pair. Ties go to
the pair with the smallest ``(left_id, right_id)``, so training is deterministic. After each merge
only the pre-tokens that contain the merged pair are updated (an index from pair to pre-tokens
finds them); :meth:`BytePairTokenizer.train_naive` recounts everything after every merge and
exists to check and time the incremental version.
"""
from __future__ import annotations

import base64
import heapq
import json
import os
import warnings
from collections import Counter
from itertools import chain, islice, repeat
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import regex

from gpt2lib._io import atomic_write_text

# GPT-2's pre-tokenizer (openai/gpt-2 src/encoder.py), with the contractions 's 't 're 've 'm 'll 'd
# written as one group. Contractions are matched case-sensitively, so "DON'T" splits as "DON", "'",
# "T": a quirk of GPT-2 we keep, because the released vocabulary was learned with it.
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
ENDOFTEXT = "<|endoftext|>"
FORMAT = "gpt2lib-bpe"
FORMAT_VERSION = 1
_NO_RANK = 1 << 62  # larger than any token id: "this pair does not merge"
_CACHE_LIMIT = 1 << 18  # pre-tokens kept in the encode cache before it is cleared


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character (openai/gpt-2 ``bytes_to_unicode``).

    Bytes that are already visible, non-space Latin-1 characters map to themselves; the other 68
    (controls, space, soft hyphen, ...) map to ``chr(256 + n)`` in byte order. GPT-2's
    ``encoder.json`` and ``vocab.bpe`` spell tokens in this alphabet, so "Ġ" (U+0120) is a space.
    GPT-2 numbers its 256 single-byte tokens in the order of this dict, not in byte order.
    """
    printable = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def _split_special(text: str, special: Mapping[str, int]) -> list[str | int]:
    """Cut ``text`` at the given special-token strings: plain chunks and special ids, in order."""
    pattern = "(" + "|".join(regex.escape(s) for s in sorted(special, key=len, reverse=True)) + ")"
    parts: list[str | int] = []
    for i, chunk in enumerate(regex.split(pattern, text)):
        if i % 2:
            parts.append(special[chunk])
        elif chunk:
            parts.append(chunk)
    return parts


class BytePairTokenizer:
    """Byte-level BPE (GPT-2 §2.2): a vocabulary of byte strings whose ids are merge ranks.

    ``vocab[i]`` is the byte string of token ``i``; the first tokens are the 256 single bytes (in
    any order), every later token is the concatenation of two earlier ones. ``special_tokens``
    maps strings such as ``"<|endoftext|>"`` to ids after the vocabulary. With no arguments you
    get the untrained byte tokenizer: 256 byte tokens plus ``<|endoftext|>`` = 256.

    Special-token policy (same as :class:`gpt2lib.tokenizer.GPT2Tokenizer`): ``encode(text)``
    treats "<|endoftext|>" in the text as ordinary characters; ``encode(text,
    allowed_special="all")`` (or a set of strings) turns it into its special id.
    """

    def __init__(
        self,
        vocab: Iterable[bytes] | None = None,
        special_tokens: Mapping[str, int] | None = None,
        pattern: str = GPT2_SPLIT_PATTERN,
        name: str = "bpe",
    ) -> None:
        self.vocab: list[bytes] = [bytes([b]) for b in range(256)] if vocab is None else list(vocab)
        if special_tokens is None:
            special_tokens = {ENDOFTEXT: len(self.vocab)}
        self.special_tokens: dict[str, int] = dict(special_tokens)
        self.pattern = pattern
        self.name = name
        self._check()
        self._build_tables()

    # ------------------------------------------------------------------ construction helpers
    def _check(self) -> None:
        vocab = self.vocab
        if any(not isinstance(t, bytes) or not t for t in vocab):
            raise ValueError("every vocabulary entry must be a non-empty bytes object")
        singles = {t for t in vocab if len(t) == 1}
        if len(singles) != 256:
            missing = sorted(set(range(256)) - {t[0] for t in singles})
            raise ValueError(f"byte-level BPE needs all 256 single bytes; missing {missing[:10]}")
        ids = sorted(self.special_tokens.values())
        if ids != list(range(len(vocab), len(vocab) + len(ids))):
            raise ValueError(
                f"special token ids {ids} must follow the {len(vocab)} vocabulary ids without gaps"
            )
        try:
            self._pat = regex.compile(self.pattern)
        except regex.error as e:
            raise ValueError(f"invalid split pattern {self.pattern!r}: {e}") from e

    def _build_tables(self) -> None:
        """Precompute the lookup tables ``encode`` and ``decode`` use."""
        self._token_id: dict[bytes, int] = {}
        for i, t in enumerate(self.vocab):
            self._token_id.setdefault(t, i)  # duplicates (rare in training): the earliest id wins
        self._byte_id = [self._token_id[bytes([b])] for b in range(256)]
        # pair (left id, right id) -> id of their concatenation, for every way to write each token
        # as two tokens. This is tiktoken's rule: any adjacent pair that spells a token can merge.
        pair_rank: dict[tuple[int, int], int] = {}
        token_id = self._token_id
        for i, t in enumerate(self.vocab):
            for k in range(1, len(t)):
                a = token_id.get(t[:k])
                if a is not None:
                    b = token_id.get(t[k:])
                    if b is not None and pair_rank.get((a, b), _NO_RANK) > i:
                        pair_rank[(a, b)] = i
        self._pair_rank = pair_rank
        self._decoder = self.vocab + [s.encode("utf-8") for s in self._specials_by_id()]  # id -> bytes
        # For long decodes: every token's bytes in one buffer, with each id's start and length.
        self._dec_len = np.fromiter(map(len, self._decoder), dtype=np.int64, count=len(self._decoder))
        self._dec_start = np.cumsum(self._dec_len) - self._dec_len
        self._dec_flat = np.frombuffer(b"".join(self._decoder), dtype=np.uint8)
        self._cache: dict[str, list[int]] = {}

    def _specials_by_id(self) -> list[str]:
        return sorted(self.special_tokens, key=self.special_tokens.__getitem__)

    # ------------------------------------------------------------------ properties
    @property
    def n_vocab(self) -> int:
        """Number of ids: the byte-pair vocabulary plus special tokens."""
        return len(self.vocab) + len(self.special_tokens)

    @property
    def eot(self) -> int:
        """Id of "<|endoftext|>", GPT-2's document separator."""
        if ENDOFTEXT not in self.special_tokens:
            raise AttributeError(f"tokenizer {self.name!r} has no {ENDOFTEXT} token")
        return self.special_tokens[ENDOFTEXT]

    @property
    def merges(self) -> list[tuple[int, int]]:
        """The merge list: ``merges[k]`` made token ``len(vocab) - len(merges) + k``.

        Recovered from the vocabulary: each token is split where BPE, using only the tokens
        before it, leaves exactly two pieces.
        """
        out = []
        for i, t in enumerate(self.vocab):
            if len(t) > 1:
                parts = self._bpe(t, max_rank=i)
                if len(parts) == 1:  # a duplicate of an earlier token (possible after training)
                    ids = self._token_id
                    parts = next(([ids[t[:k]], ids[t[k:]]] for k in range(1, len(t))
                                  if ids.get(t[:k], i) < i and ids.get(t[k:], i) < i), parts)
                if len(parts) != 2:
                    raise ValueError(f"token {i} ({t!r}) is not a merge of two earlier tokens")
                out.append((parts[0], parts[1]))
        return out

    def __repr__(self) -> str:
        return f"BytePairTokenizer(name={self.name!r}, n_vocab={self.n_vocab})"

    # ------------------------------------------------------------------ encoding
    def _bpe(self, piece: bytes, max_rank: int = _NO_RANK) -> list[int]:
        """Merge the bytes of one pre-token: lowest-id pair first, leftmost on ties."""
        ids = [self._byte_id[b] for b in piece]
        get = self._pair_rank.get
        while len(ids) > 1:
            ranks = list(map(get, zip(ids, islice(ids, 1, None)), repeat(_NO_RANK)))
            r = min(ranks)
            if r >= max_rank:
                break
            i = ranks.index(r)
            ids[i : i + 2] = (r,)
        return ids

    def _encode_piece(self, piece: str) -> list[int]:
        data = piece.encode("utf-8")
        whole = self._token_id.get(data)
        ids = [whole] if whole is not None else self._bpe(data)
        self._cache[piece] = ids
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ``text`` with no special tokens: "<|endoftext|>" is just 13 characters."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects str, got {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: replace them with U+FFFD, as tiktoken does
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        pieces = self._pat.findall(text)
        cache = self._cache
        if len(cache) > _CACHE_LIMIT:  # bound memory; one text may still add all its pre-tokens
            cache.clear()
        for piece in set(pieces).difference(cache):
            self._encode_piece(piece)
        return list(chain.from_iterable(map(cache.__getitem__, pieces)))

    def clear_cache(self) -> None:
        """Forget the per-pre-token cache (for timing the cold path)."""
        self._cache.clear()

    def encode(self, text: str, allowed_special: str | Iterable[str] = ()) -> list[int]:
        """Encode ``text`` to ids; "" gives []. See the class docstring for special tokens."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects str, got {type(text).__name__}")
        if not allowed_special:
            return self.encode_ordinary(text)
        if allowed_special == "all":
            allowed = dict(self.special_tokens)
        else:
            if isinstance(allowed_special, str):
                raise TypeError('allowed_special must be "all" or a set of special-token strings')
            unknown = set(allowed_special) - set(self.special_tokens)
            if unknown:
                raise ValueError(f"unknown special tokens {sorted(unknown)}; known: {list(self.special_tokens)}")
            allowed = {s: self.special_tokens[s] for s in allowed_special}
        if not allowed:  # "all" of no special tokens: an empty split pattern would match everywhere
            return self.encode_ordinary(text)
        out: list[int] = []
        for part in _split_special(text, allowed):
            if isinstance(part, int):
                out.append(part)
            else:
                out.extend(self.encode_ordinary(part))
        return out

    def encode_batch(self, texts: list[str], allowed_special: str | Iterable[str] = ()) -> list[list[int]]:
        """Encode each text of a list (one thread: the point of this class is to be read)."""
        if isinstance(texts, str):
            raise TypeError("encode_batch expects a list of str, got a single str")
        return [self.encode(t, allowed_special) for t in texts]

    # ------------------------------------------------------------------ decoding
    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Concatenate the bytes of each id (special tokens give their UTF-8 text).

        Decoding is only a table lookup: ``b"".join(self._decoder[i] for i in ids)``. For long inputs
        the same lookup runs as one vectorized gather from a buffer of all tokens' bytes (numpy),
        about 1.5x faster than the join; both give the same bytes (tested)."""
        ids = ids if isinstance(ids, (list, tuple)) else list(ids)
        if len(ids) < 256:
            try:
                data = b"".join(map(self._decoder.__getitem__, ids))
                if ids and min(ids) < 0:  # a list index would wrap around; an id must not
                    raise IndexError
                return data
            except (IndexError, TypeError):
                self._raise_bad_id(ids)
                raise
        arr = np.asarray(ids)
        if arr.dtype.kind == "b":
            arr = arr.astype(np.int64)
        if arr.ndim != 1 or arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() >= len(self._decoder):
            self._raise_bad_id(ids)
        lengths = self._dec_len[arr]
        ends = np.cumsum(lengths)
        # byte k of the output is byte (k - where its token starts in the output) of that token
        gather = np.repeat(self._dec_start[arr] - (ends - lengths), lengths) + np.arange(ends[-1])
        return self._dec_flat[gather].tobytes()

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Ids to text. Bytes that are not valid UTF-8 (a token sequence cut inside a character)
        become U+FFFD with ``errors="replace"`` (default); ``errors="strict"`` raises
        UnicodeDecodeError."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    def _raise_bad_id(self, ids: Iterable[int]) -> None:
        for i in ids:
            if not hasattr(i, "__index__"):
                raise TypeError(f"token ids must be int, got {type(i).__name__} ({i!r})")
            if not 0 <= int(i) < self.n_vocab:
                raise ValueError(f"token id {int(i)} is out of range for a vocabulary of {self.n_vocab}")
        raise AssertionError("unreachable: ids were rejected but none is invalid")

    # ------------------------------------------------------------------ watching BPE work
    def token_str(self, i: int) -> str:
        """A token as readable text (invalid UTF-8 fragments shown as U+FFFD)."""
        return self.decode([i])

    def merge_steps(self, word: str) -> list[list[str]]:
        """How BPE builds one pre-token: the partition (as token strings) before and after each
        merge. ``merge_steps(" lower")`` starts from single bytes and ends at the final tokens."""
        data = word.encode("utf-8")
        ids = [self._byte_id[b] for b in data]
        steps = [[self.token_str(i) for i in ids]]
        get = self._pair_rank.get
        while len(ids) > 1:
            ranks = [get(p, _NO_RANK) for p in zip(ids, ids[1:])]
            r = min(ranks)
            if r == _NO_RANK:
                break
            i = ranks.index(r)
            ids[i : i + 2] = [r]
            steps.append([self.token_str(t) for t in ids])
        whole = self._token_id.get(data)
        if whole is not None and ids != [whole]:  # encode uses a whole-word token directly
            steps.append([self.token_str(whole)])
        return steps

    def explain(self, text: str) -> dict[str, list[list[str]]]:
        """``merge_steps`` for every distinct pre-token of ``text``, in order of appearance."""
        return {p: self.merge_steps(p) for p in dict.fromkeys(self._pat.findall(text))}

    def visualise(self, text: str, sep: str = "|") -> str:
        """``text`` with ``sep`` between tokens, e.g. ``"Hello| world|!"``."""
        return sep.join(self.decode([i]) for i in self.encode(text))

    # ------------------------------------------------------------------ training
    def _pretokenize(self, text: str) -> tuple[list[list[int]], list[int]]:
        if not isinstance(text, str):
            raise TypeError(f"train expects str, got {type(text).__name__}")
        counts = Counter(self._pat.findall(text))
        words = [list(w.encode("utf-8", "replace")) for w in counts]
        return words, list(counts.values())

    def _start_training(self, text: str, vocab_size: int) -> tuple[list[list[int]], list[int], int]:
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
            raise TypeError(f"vocab_size must be int, got {type(vocab_size).__name__}")
        if vocab_size < 257:
            raise ValueError(f"vocab_size must be >= 257 (256 bytes + {ENDOFTEXT}), got {vocab_size}")
        words, counts = self._pretokenize(text)
        return words, counts, vocab_size - 257

    def _finish_training(self, merges: list[tuple[int, int]], n_merges: int, verbose: bool) -> "BytePairTokenizer":
        vocab = [bytes([b]) for b in range(256)]
        for a, b in merges:
            vocab.append(vocab[a] + vocab[b])
            if verbose:
                print(f"merge {len(vocab) - 257}/{n_merges}: {vocab[a]!r} + {vocab[b]!r} -> {len(vocab) - 1}")
        if len(merges) < n_merges:
            warnings.warn(
                f"the text has no pairs left after {len(merges)} merges; vocabulary is "
                f"{len(vocab) + 1}, not the requested {n_merges + 257}",
                stacklevel=3,
            )
        self.vocab = vocab
        self.special_tokens = {ENDOFTEXT: len(vocab)}
        self._check()
        self._build_tables()
        return self

    def train(self, text: str, vocab_size: int, verbose: bool = False) -> "BytePairTokenizer":
        """Learn ``vocab_size - 257`` merges from ``text`` (GPT-2 §2.2); returns ``self``.

        The new vocabulary is the 256 bytes (id = byte value), one token per merge, and
        ``<|endoftext|>`` as the last id. Pair counts are kept up to date incrementally.
        """
        words, counts, n_merges = self._start_training(text, vocab_size)
        pair_counts: Counter[tuple[int, int]] = Counter()
        where: dict[tuple[int, int], set[int]] = {}  # pair -> indices of the words containing it
        for w, (word, c) in enumerate(zip(words, counts)):
            for pair in zip(word, word[1:]):
                pair_counts[pair] += c
                where.setdefault(pair, set()).add(w)
        # max-heap of (-count, pair); entries go stale when a count changes and are skipped
        heap = [(-c, p) for p, c in pair_counts.items()]
        heapq.heapify(heap)
        merges: list[tuple[int, int]] = []
        while len(merges) < n_merges and heap:
            neg, pair = heapq.heappop(heap)
            if pair_counts.get(pair, 0) != -neg or neg == 0:
                continue
            new_id = 256 + len(merges)
            merges.append(pair)
            changed: set[tuple[int, int]] = set()
            for w in where.pop(pair):
                old, c = words[w], counts[w]
                new = _merge(old, pair, new_id)
                old_pairs, new_pairs = Counter(zip(old, old[1:])), Counter(zip(new, new[1:]))
                for p, k in old_pairs.items():
                    pair_counts[p] -= k * c
                    changed.add(p)
                    if p not in new_pairs and p != pair:
                        where[p].discard(w)
                for p, k in new_pairs.items():
                    pair_counts[p] += k * c
                    changed.add(p)
                    where.setdefault(p, set()).add(w)
                words[w] = new
            del pair_counts[pair]
            changed.discard(pair)
            for p in changed:
                c = pair_counts[p]
                if c > 0:
                    heapq.heappush(heap, (-c, p))
                else:
                    del pair_counts[p]
        return self._finish_training(merges, n_merges, verbose)

    def train_naive(self, text: str, vocab_size: int, verbose: bool = False) -> "BytePairTokenizer":
        """Same result as :meth:`train`, recounting every pair after every merge (slow, simple)."""
        words, counts, n_merges = self._start_training(text, vocab_size)
        merges: list[tuple[int, int]] = []
        while len(merges) < n_merges:
            pair_counts: Counter[tuple[int, int]] = Counter()
            for word, c in zip(words, counts):
                for pair in zip(word, word[1:]):
                    pair_counts[pair] += c
            if not pair_counts:
                break
            pair = min(pair_counts, key=lambda p: (-pair_counts[p], p))  # most frequent, then smallest
            new_id = 256 + len(merges)
            merges.append(pair)
            words = [_merge(w, pair, new_id) for w in words]
        return self._finish_training(merges, n_merges, verbose)

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> None:
        """Write a JSON file (tokens as base64 bytes; never pickle). Atomic: a crash mid-write
        leaves any earlier file at ``path`` intact."""
        path = Path(path)
        doc = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "name": self.name,
            "pattern": self.pattern,
            "special_tokens": self.special_tokens,
            "vocab": [base64.b64encode(t).decode("ascii") for t in self.vocab],
        }
        atomic_write_text(path, json.dumps(doc, ensure_ascii=False, indent=0))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BytePairTokenizer":
        """Read a file written by :meth:`save`; a damaged file raises ValueError saying why."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path} is not a {FORMAT} JSON file: {e}") from e
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"{path} is not a {FORMAT} file (missing or wrong 'format' field)")
        if doc.get("version") != FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported {FORMAT} version {doc.get('version')!r}")
        try:
            vocab = [base64.b64decode(t, validate=True) for t in doc["vocab"]]
            special = {str(k): int(v) for k, v in doc["special_tokens"].items()}
            return cls(vocab, special, pattern=str(doc["pattern"]), name=str(doc["name"]))
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise ValueError(f"{path} is a damaged {FORMAT} file: {e!r}") from e

    @classmethod
    def from_tiktoken(cls, encoding_or_ranks, special_tokens: Mapping[str, int] | None = None,
                      pattern: str | None = None, name: str | None = None) -> "BytePairTokenizer":
        """From a ``tiktoken.Encoding`` or a ``{token bytes: rank}`` dict (ranks 0..n-1)."""
        if isinstance(encoding_or_ranks, Mapping):
            ranks = encoding_or_ranks
            special = dict(special_tokens) if special_tokens is not None else {ENDOFTEXT: len(ranks)}
        else:
            enc = encoding_or_ranks
            ranks = enc._mergeable_ranks  # tiktoken exposes no public accessor for the full table
            special = dict(enc._special_tokens) if special_tokens is None else dict(special_tokens)
            pattern = pattern or enc._pat_str
            name = name or enc.name
        vocab = sorted(ranks, key=ranks.__getitem__)
        if [ranks[t] for t in vocab] != list(range(len(vocab))):
            raise ValueError("ranks must be the numbers 0..n-1, each used once")
        return cls(vocab, special, pattern=pattern or GPT2_SPLIT_PATTERN, name=name or "bpe")

    @classmethod
    def from_gpt2_files(cls, encoder_json: str | os.PathLike, vocab_bpe: str | os.PathLike) -> "BytePairTokenizer":
        """From GPT-2's released ``encoder.json`` (token -> id) and ``vocab.bpe`` (merges).

        Both spell bytes with :func:`bytes_to_unicode`. We check that merge ``k`` of
        ``vocab.bpe`` builds token ``256 + k`` of ``encoder.json``, as in GPT-2's release.
        """
        byte_of = {ch: b for b, ch in bytes_to_unicode().items()}

        def to_bytes(s: str) -> bytes:
            try:
                return bytes(byte_of[ch] for ch in s)
            except KeyError as e:
                raise ValueError(f"{s!r} uses a character outside GPT-2's byte alphabet") from e

        try:
            encoder = json.loads(Path(encoder_json).read_text(encoding="utf-8"))
            lines = Path(vocab_bpe).read_text(encoding="utf-8").split("\n")
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"unreadable GPT-2 tokenizer files: {e}") from e
        if not isinstance(encoder, dict):
            raise ValueError(f"{encoder_json} must hold a JSON object mapping token -> id")
        special = {s: i for s, i in encoder.items() if s == ENDOFTEXT}
        vocab_by_id = {i: to_bytes(s) for s, i in encoder.items() if s not in special}
        if sorted(vocab_by_id) != list(range(len(vocab_by_id))):
            raise ValueError(f"{encoder_json}: token ids are not 0..n-1")
        vocab = [vocab_by_id[i] for i in range(len(vocab_by_id))]
        merges = [ln.split(" ") for ln in lines[1:] if ln]  # line 0 is "#version: 0.2"
        for k, m in enumerate(merges):
            if len(m) != 2 or 256 + k >= len(vocab) or to_bytes(m[0]) + to_bytes(m[1]) != vocab[256 + k]:
                raise ValueError(f"{vocab_bpe}: merge {k} {m} does not build token {256 + k} of {encoder_json}")
        return cls(vocab, special, name="gpt2")


def _merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace each non-overlapping occurrence of ``pair``, left to right, by ``new_id``."""
    a, b = pair
    out, i, n = [], 0, len(ids)
    while i < n:
        if i < n - 1 and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out
