"""Educational byte-level BPE, the tokenizer of GPT-2 §2.2, in plain Python.

GPT-2 §2.2 ("Input Representation") runs Byte Pair Encoding (Sennrich et al., 2016) on UTF-8
*bytes* rather than Unicode code points, so that a base vocabulary of only 256 symbols can
represent any string, and it keeps BPE from merging across character categories by first
splitting text into pre-tokens with a regular expression (letters, digits, punctuation and
whitespace are kept apart; "dog." never becomes one token).

The version to read first is :mod:`gpt2lib.bpe_basic` (the merge loop and the rank-ordered encoder in a few
lines each); this module is the complete pure-Python one, with the fast paths tested equal to it, and
:mod:`gpt2lib.tokenizer` wraps tiktoken, the fastest.
Loaded with GPT-2's own files, :class:`BytePairTokenizer` gives the same ids as tiktoken on
every input.

How encoding works (the rule tiktoken uses, so results match it exactly):

1. split the text with :data:`GPT2_SPLIT_PATTERN` into pre-tokens;
2. turn each pre-token into its UTF-8 bytes, one token per byte;
3. if the whole pre-token is itself a token, use it; otherwise repeatedly merge the adjacent
   pair whose concatenation is the token with the lowest id (leftmost on ties), until no adjacent
   pair forms a token. Ids are ranks: a token learned earlier has a smaller id.

Long pre-tokens (DNA, minified code, ``'a' * 1_000_000``) are merged with a heap of (rank,
position) over a linked list of parts, in O(n log n) (:meth:`BytePairTokenizer._bpe_heap`); short
ones with a plain rescan, which is faster for them. Both give tiktoken's ids (tested).

Training (:meth:`BytePairTokenizer.train`) counts the pre-tokens once, then repeatedly merges the
most frequent adjacent pair (pairs counted inside pre-tokens, each weighted by how often it
occurs). Special tokens (``<|endoftext|>`` by default) are cut out of the text before counting,
so no merge crosses or enters them. Ties between equal counts follow ``tie_break``:
``"smallest-ids"`` (the default, unchanged since the start: smallest ``(left_id, right_id)``) or
``"lexicographic"`` (the lexicographically greatest pair of byte strings, as in Stanford
CS336's assignment 1). After each merge only the occurrences of the merged pair are visited
(:func:`learn_merges`); :meth:`BytePairTokenizer.train_naive` recounts everything after every
merge and exists to check and time the incremental version.

Training as a map-reduce, for an engine (Ray, Dask, a process pool) or for corpora that do not
fit in memory; the result does not depend on how the documents are partitioned:

* map: ``count_pretokens(texts, pattern=GPT2_SPLIT_PATTERN, special_tokens=("<|endoftext|>",))``
  gives a ``Counter[bytes]`` of pre-tokens (UTF-8) for an iterable of documents;
* reduce: ``merge_counts(iterable_of_counters)`` adds them up (``Counter`` addition works too);
* train: ``train_from_counts(counts, vocab_size, special_tokens=..., tie_break=...,
  pattern=..., name=...)`` returns a trained :class:`BytePairTokenizer` equal to ``train`` on the
  documents joined with ``<|endoftext|>``; ``learn_merges(counts, n_merges, tie_break)`` gives only the merge list.

``train(..., workers=n)`` runs the map step in ``n`` local processes.

Streaming: :meth:`BytePairTokenizer.encode_iterable` encodes an iterable of strings (a file's
lines) lazily, with the ids of the joined text; :func:`stream_pieces` does the re-cutting it needs
and works for any encoder with GPT-2's split pattern (tiktoken's too).
"""
from __future__ import annotations

import base64
import heapq
import json
import multiprocessing
import os
import warnings
from collections import Counter, defaultdict
from itertools import chain, islice, repeat
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np
import regex

from gpt2lib._io import atomic_write_text, read_json_object
from gpt2lib.bpe_basic import GPT2_SPLIT_PATTERN, merge as _merge, pair_counts as _pair_counts

ENDOFTEXT = "<|endoftext|>"
FORMAT = "gpt2lib-bpe"
FORMAT_VERSION = 1
_NO_RANK = 1 << 62  # larger than any token id: "this pair does not merge"
_CACHE_LIMIT = 1 << 18  # pre-tokens kept in the encode cache before it is cleared
_LONG_PIECE = 32  # pre-tokens longer than this (bytes) are merged with the heap, not the rescan


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
        lengths = sorted(set(map(len, self.vocab)))  # a prefix can only be a token of one of these
        for i, t in enumerate(self.vocab):
            for k in lengths:
                if k >= len(t):
                    break
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
        """Merge the bytes of one pre-token: lowest-id pair first, leftmost on ties.

        The simple loop below rescans the whole pre-token after every merge, which is quadratic
        in its length; it is the fastest way for the short pre-tokens of ordinary text. Pre-tokens
        longer than :data:`_LONG_PIECE` bytes (DNA, minified code, ``'a' * 1_000_000``) go to
        :meth:`_bpe_heap`, which applies the same rule in O(n log n)."""
        if len(piece) > _LONG_PIECE:
            return self._bpe_heap(piece, max_rank)
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

    def _bpe_heap(self, piece: bytes, max_rank: int = _NO_RANK) -> list[int]:
        """The rule of :meth:`_bpe` in O(n log n): a heap of (rank, position) over a linked list.

        Part ``i`` (it starts at byte ``i``) holds token ``ids[i]`` and links to its neighbours
        ``prv[i]`` and ``nxt[i]``. The heap holds one key ``rank << 32 | i`` per adjacent pair, so
        popping the smallest key gives the lowest rank and, among equal ranks, the leftmost pair.
        A merge changes only the two pairs around it: their keys are pushed, and keys left over
        from before ("lazy invalidation") are recognised when popped, because the pair now at
        their position no longer has their rank, and skipped."""
        get = self._pair_rank.get
        n = len(piece)
        ids = [self._byte_id[b] for b in piece] + [-1]  # ids[n] = -1: the end, never a token
        nxt = list(range(1, n + 1))
        prv = list(range(-1, n - 1))
        heap = [r << 32 | i for i, r in enumerate(map(get, zip(ids, islice(ids, 1, n)))) if r is not None]
        heapq.heapify(heap)
        pop, push, low = heapq.heappop, heapq.heappush, (1 << 32) - 1
        while heap:
            key = pop(heap)
            r, i = key >> 32, key & low
            if r >= max_rank:
                break
            j = nxt[i]
            if ids[i] < 0 or get((ids[i], ids[j])) != r:
                continue  # stale: this part was merged away, or its neighbour changed
            ids[i], ids[j] = r, -1  # part i becomes the merged token, part j disappears
            k = nxt[i] = nxt[j]
            if k < n:
                prv[k] = i
                rk = get((r, ids[k]))
                if rk is not None:
                    push(heap, rk << 32 | i)
            h = prv[i]
            if h >= 0:
                rh = get((ids[h], r))
                if rh is not None:
                    push(heap, rh << 32 | h)
        return [t for t in ids if t >= 0]

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

    def encode_iterable(self, chunks: Iterable[str], allowed_special: str | Iterable[str] = ()) -> Iterator[int]:
        """Encode a stream of text (a file's lines, a generator of documents) lazily, id by id.

        The ids are those of ``encode("".join(chunks))``, however the text is chunked: chunks are
        re-cut with :func:`stream_pieces` where GPT-2's pre-tokenizer cannot look across
        (``["a\\n", "\\n", "\\n", "b"]`` gives ``[64, 628, 198, 65]``, as the joined text does),
        so memory stays bounded by the encode cache plus the text since the last such place."""
        if allowed_special and allowed_special != "all":
            self.encode("", allowed_special)  # check the argument now, not at the first id
        special = (self.special_tokens if allowed_special == "all" else allowed_special) if allowed_special else ()
        pieces = stream_pieces(chunks, list(special), self.pattern)
        return chain.from_iterable(self.encode(piece, allowed_special) for piece in pieces)

    # ------------------------------------------------------------------ decoding
    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Concatenate the bytes of each id (special tokens give their UTF-8 text).

        Decoding is only a table lookup: ``b"".join(self._decoder[i] for i in ids)``. For long inputs
        the same lookup runs as one vectorized gather from a buffer of all tokens' bytes (numpy),
        about 1.5x faster than the join; both give the same bytes (tested)."""
        ids = ids if isinstance(ids, (list, tuple)) else list(ids)
        if bool in set(map(type, ids)):  # True/False are ints to Python, not token ids
            self._raise_bad_id(ids)
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
            if not hasattr(i, "__index__") or isinstance(i, (bool, np.bool_)):
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
    def train(self, text: str, vocab_size: int, verbose: bool = False, *,
              special_tokens: Iterable[str] = (ENDOFTEXT,), tie_break: str = "smallest-ids",
              workers: int = 1) -> "BytePairTokenizer":
        """Learn merges from ``text`` (GPT-2 §2.2); returns ``self``.

        The new vocabulary is the 256 bytes (id = byte value), one token per merge, then
        ``special_tokens`` in the order given (default: ``<|endoftext|>`` as the last id), so
        ``vocab_size - 256 - len(special_tokens)`` merges are learned. Special tokens are cut out
        of the text before counting: no merge crosses or enters them. ``tie_break`` chooses
        between pairs of equal count (see :func:`learn_merges`). ``workers > 1`` counts
        pre-tokens in that many processes (the map step); the merges are the same for any number.
        """
        if not isinstance(text, str):
            raise TypeError(f"train expects str, got {type(text).__name__}")
        specials = _check_special_tokens(special_tokens)
        n_merges = _n_merges(vocab_size, specials)
        counts = _count_in_workers(text, self.pattern, specials, workers)
        merges = learn_merges(counts, n_merges, tie_break)
        return self._finish_training(merges, n_merges, specials, verbose)

    def train_naive(self, text: str, vocab_size: int, verbose: bool = False, *,
                    special_tokens: Iterable[str] = (ENDOFTEXT,),
                    tie_break: str = "smallest-ids") -> "BytePairTokenizer":
        """Same result as :meth:`train`, recounting every pair after every merge (slow, simple)."""
        if not isinstance(text, str):
            raise TypeError(f"train expects str, got {type(text).__name__}")
        specials = _check_special_tokens(special_tokens)
        n_merges = _n_merges(vocab_size, specials)
        _check_tie_break(tie_break)
        counts = count_pretokens([text], self.pattern, specials)
        words, weights = [list(w) for w in counts], list(counts.values())
        vocab = [bytes([b]) for b in range(256)]
        merges: list[tuple[int, int]] = []
        while len(merges) < n_merges:
            pair_counts = _pair_counts(dict(zip(map(tuple, words), weights)))
            if not pair_counts:
                break
            if tie_break == "smallest-ids":  # most frequent, then the smallest (left id, right id)
                pair = min(pair_counts, key=lambda p: (-pair_counts[p], p))
            else:  # most frequent, then the lexicographically greatest (left bytes, right bytes)
                pair = max(pair_counts, key=lambda p: (pair_counts[p], vocab[p[0]], vocab[p[1]]))
            new_id = 256 + len(merges)
            merges.append(pair)
            vocab.append(vocab[pair[0]] + vocab[pair[1]])
            words = [_merge(w, pair, new_id) for w in words]
        return self._finish_training(merges, n_merges, specials, verbose)

    def _finish_training(self, merges: list[tuple[int, int]], n_merges: int, specials: list[str],
                         verbose: bool) -> "BytePairTokenizer":
        vocab = [bytes([b]) for b in range(256)]
        for a, b in merges:
            vocab.append(vocab[a] + vocab[b])
            if verbose:
                print(f"merge {len(vocab) - 256}/{n_merges}: {vocab[a]!r} + {vocab[b]!r} -> {len(vocab) - 1}")
        if len(merges) < n_merges:
            warnings.warn(
                f"the text has no pairs left after {len(merges)} merges; vocabulary is "
                f"{len(vocab) + len(specials)}, not the requested {n_merges + 256 + len(specials)}",
                stacklevel=3,
            )
        self.vocab = vocab
        self.special_tokens = {s: len(vocab) + k for k, s in enumerate(specials)}
        self._check()
        self._build_tables()
        return self

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
        doc = read_json_object(path, not_json=f"is not a {FORMAT} JSON file")
        if doc.get("format") != FORMAT:
            raise ValueError(f"{path} is not a {FORMAT} file (missing or wrong 'format' field)")
        if doc.get("version") != FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported {FORMAT} version {doc.get('version')!r}")
        try:
            vocab = [base64.b64decode(t, validate=True) for t in doc["vocab"]]
            special = {str(k): int(v) for k, v in doc["special_tokens"].items()}
            tok = cls(vocab, special, pattern=str(doc["pattern"]), name=str(doc["name"]))
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise ValueError(f"{path} is a damaged {FORMAT} file: {e!r}") from e
        from gpt2lib.tokenizer import check_split_pattern  # lazy: gpt2lib.tokenizer imports this module

        check_split_pattern(doc["pattern"], str(path))  # the same patterns the command line accepts
        return tok

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

        encoder = read_json_object(encoder_json, not_json="is not a GPT-2 encoder.json (token -> id)")
        try:
            lines = Path(vocab_bpe).read_text(encoding="utf-8").split("\n")
        except UnicodeDecodeError as e:
            raise ValueError(f"unreadable GPT-2 tokenizer file {vocab_bpe}: {e}") from e
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


# ---------------------------------------------------------------------------------------------
# Training as plain functions: count (map), merge counts (reduce), learn merges from the counts.

TIE_BREAKS = ("smallest-ids", "lexicographic")


def _check_special_tokens(special_tokens: Iterable[str]) -> list[str]:
    if isinstance(special_tokens, str):
        raise TypeError(f"special_tokens must be a list of strings, not one string ({special_tokens!r})")
    specials = list(special_tokens)
    for s in specials:
        if not isinstance(s, str) or not s:
            raise ValueError(f"special_tokens must be non-empty strings, got {s!r}")
    if len(set(specials)) != len(specials):
        raise ValueError(f"special_tokens has duplicates: {specials}")
    return specials


def _check_tie_break(tie_break: str) -> None:
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"tie_break must be one of {TIE_BREAKS}, got {tie_break!r}")


def _n_merges(vocab_size: int, specials: list[str]) -> int:
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
        raise TypeError(f"vocab_size must be int, got {type(vocab_size).__name__}")
    least = 256 + len(specials)
    if vocab_size < least:
        raise ValueError(f"vocab_size must be >= {least} (256 bytes + special tokens {specials}), got {vocab_size}")
    return vocab_size - least


def _special_splitter(specials: Iterable[str]):
    specials = sorted(specials, key=len, reverse=True)  # the longest first, as in encode
    return regex.compile("|".join(map(regex.escape, specials))).split if specials else None


def count_pretokens(texts: Iterable[str], pattern: str = GPT2_SPLIT_PATTERN,
                    special_tokens: Iterable[str] = (ENDOFTEXT,)) -> Counter[bytes]:
    """The map step of training: how often each pre-token (as UTF-8 bytes) occurs in ``texts``.

    Each text is first cut at the ``special_tokens`` strings, which are dropped (so no merge can
    cross or enter them), then split with ``pattern``. Counts of several calls add up with
    :func:`merge_counts`; any partition of the documents gives the same total."""
    if isinstance(texts, str):
        raise TypeError("count_pretokens expects an iterable of str (documents); wrap one text in a list")
    try:
        findall = regex.compile(pattern).findall
    except regex.error as e:
        raise ValueError(f"invalid split pattern {pattern!r}: {e}") from e
    split = _special_splitter(_check_special_tokens(special_tokens))
    counts: Counter[str] = Counter()
    for k, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"count_pretokens: text {k} is {type(text).__name__}, not str")
        for part in split(text) if split else (text,):
            counts.update(findall(part))
    out: Counter[bytes] = Counter()
    for piece, c in counts.items():  # lone surrogates become b"?": distinct str, same bytes
        out[piece.encode("utf-8", "replace")] += c
    return out


def merge_counts(counts: Iterable[Mapping[bytes, int]]) -> Counter[bytes]:
    """The reduce step: add up pre-token counts from :func:`count_pretokens` calls."""
    total: Counter[bytes] = Counter()
    for c in counts:
        total.update(c)
    return total


def _descending(token: bytes) -> tuple[int, ...]:
    """A key that sorts byte strings in *reverse* lexicographic order (a prefix sorts after)."""
    return tuple(255 - x for x in token) + (256,)


def _linked_words(counts: Mapping[bytes, int]) -> tuple[list[int], list[int], list[int], list[int]]:
    """The pre-tokens as one linked list of parts: token id of each part (-1 between pre-tokens and, later, for
    merged-away parts), the count of the pre-token each part belongs to, and each part's next / previous."""
    sym: list[int] = []
    weight: list[int] = []
    for word, c in counts.items():
        if not isinstance(word, bytes) or not isinstance(c, int) or c < 0:
            raise ValueError(f"counts must map bytes to non-negative int, got {word!r}: {c!r}")
        if len(word) > 1 and c:
            sym.extend(word)
            sym.append(-1)
            weight.extend(repeat(c, len(word) + 1))
    nxt = list(range(1, len(sym) + 1))
    prv = list(range(-1, len(sym) - 1))  # prv[0] = -1, and sym[-1] is the final separator -1
    return sym, weight, nxt, prv


def _pair_index(sym: list[int], weight: list[int]
                ) -> tuple[dict[tuple[int, int], int], dict[tuple[int, int], list[int]]]:
    """Each adjacent pair's count (weighted) and the positions where it occurs."""
    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, pair in enumerate(zip(sym, islice(sym, 1, None))):
        if pair[0] >= 0 and pair[1] >= 0:
            pair_counts[pair] += weight[i]
            where[pair].append(i)
    return pair_counts, where


def learn_merges(counts: Mapping[bytes, int], n_merges: int,
                 tie_break: str = "smallest-ids") -> list[tuple[int, int]]:
    """Learn up to ``n_merges`` merges from pre-token counts; merge ``k`` makes token ``256 + k``.

    Every step merges the adjacent pair with the highest count (summed over pre-tokens, each
    weighted by its count). Ties: ``"smallest-ids"`` takes the smallest ``(left id, right id)``
    (gpt2lib's rule since the start); ``"lexicographic"`` takes the lexicographically greatest
    pair of byte strings ``(bytes of left, bytes of right)``, the rule of Stanford CS336's
    assignment 1. The result depends only on the counts, not on their order.

    Cost: every pre-token is a linked list of parts, and ``where[pair]`` lists the positions
    where the pair (may) occur. A merge visits only those positions and updates the two pairs
    around each (so a merge costs its occurrences, not the length of the words they are in);
    positions left stale by earlier merges are checked and skipped. A heap of (-count, rule)
    finds the next pair: a count that fell since its entry was pushed is pushed again when the
    entry is popped (the entry's count is an upper bound, so the pop order stays right)."""
    _check_tie_break(tie_break)
    sym, weight, nxt, prv = _linked_words(counts)
    pair_counts, where = _pair_index(sym, weight)
    vocab = [bytes([b]) for b in range(256)]
    if tie_break == "smallest-ids":
        def key(p, c):
            return (-c, p)
    else:
        desc = [_descending(t) for t in vocab]

        def key(p, c):
            return (-c, desc[p[0]], desc[p[1]], p)
    heap = [key(p, c) for p, c in pair_counts.items()]
    heapq.heapify(heap)
    merges: list[tuple[int, int]] = []
    pop, push = heapq.heappop, heapq.heappush
    while len(merges) < n_merges and heap:
        entry = pop(heap)
        pair, c = entry[-1], -entry[0]
        now = pair_counts.get(pair, 0)
        if now != c:  # the count fell since this entry was pushed: push it again with today's
            if 0 < now < c:
                push(heap, key(pair, now))
            continue
        a, b = pair
        new = len(vocab)
        merges.append(pair)
        vocab.append(vocab[a] + vocab[b])
        if tie_break != "smallest-ids":
            desc.append(_descending(vocab[-1]))
        created = set()
        for i in sorted(where.pop(pair)):  # left to right inside each pre-token
            j = nxt[i]
            if sym[i] != a or sym[j] != b:
                continue  # this occurrence is gone (merged by an earlier merge or just now)
            w, h, k = weight[i], prv[i], nxt[j]
            x, y = sym[h], sym[k]
            if x >= 0:  # left neighbour: (x, a) becomes (x, new)
                p = (x, a)
                if pair_counts[p] == w:  # its last occurrence: forget the pair and its positions
                    del pair_counts[p]
                    where.pop(p, None)
                else:
                    pair_counts[p] -= w
                p = (x, new)
                pair_counts[p] += w
                where[p].append(h)
                created.add(p)
            if y >= 0:  # right neighbour: (b, y) becomes (new, y)
                p = (b, y)
                if pair_counts[p] == w:
                    del pair_counts[p]
                    where.pop(p, None)
                else:
                    pair_counts[p] -= w
                p = (new, y)
                pair_counts[p] += w
                where[p].append(i)
                created.add(p)
            sym[i], sym[j] = new, -1
            nxt[i], prv[k] = k, i
        pair_counts.pop(pair, None)
        # Only pairs with the new token gain counts, and only now: they get their heap entry
        # here. Other counts only fall; their entries are refreshed when popped (above).
        for p in created:
            c = pair_counts.get(p, 0)
            if c > 0:
                push(heap, key(p, c))
    return merges


def train_from_counts(counts: Mapping[bytes, int], vocab_size: int,
                      special_tokens: Iterable[str] = (ENDOFTEXT,), tie_break: str = "smallest-ids",
                      pattern: str = GPT2_SPLIT_PATTERN, name: str = "bpe",
                      verbose: bool = False) -> "BytePairTokenizer":
    """A trained :class:`BytePairTokenizer` from pre-token counts (:func:`count_pretokens`).

    ``BytePairTokenizer(pattern=p).train(text, v)`` equals
    ``train_from_counts(count_pretokens([text], p), v, pattern=p)``; ``pattern`` must be the
    one the counts were made with, since the tokenizer will split new text with it."""
    specials = _check_special_tokens(special_tokens)
    n_merges = _n_merges(vocab_size, specials)
    merges = learn_merges(counts, n_merges, tie_break)
    return BytePairTokenizer(pattern=pattern, name=name)._finish_training(merges, n_merges, specials, verbose)


def _count_chunk(args: tuple[list[str], str]) -> Counter[bytes]:
    texts, pattern = args
    return count_pretokens(texts, pattern, ())


def _count_in_workers(text: str, pattern: str, specials: list[str], workers: int) -> Counter[bytes]:
    """:func:`count_pretokens` of one text in ``workers`` processes (same counts as one)."""
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    if workers == 1:
        return count_pretokens([text], pattern, specials)
    split = _special_splitter(specials)
    parts = split(text) if split else [text]
    size = len(text) // workers + 1
    if pattern in _CUT_SAFE_PATTERNS:  # long parts are cut where no pre-token can span the cut
        parts = [p for part in parts for p in _cut_every(part, size)]
    batches: list[list[str]] = [[]]
    filled = 0
    for part in parts:  # consecutive parts, about ``size`` characters per batch
        if filled >= size:
            batches.append([])
            filled = 0
        batches[-1].append(part)
        filled += len(part)
    if len(batches) == 1:
        return count_pretokens(batches[0], pattern, ())
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ctx.Pool(min(workers, len(batches)) - 1) as pool:  # this process counts one batch itself
        others = pool.map_async(_count_chunk, [(b, pattern) for b in batches[1:]])
        first = _count_chunk((batches[0], pattern))
        return merge_counts([first, *others.get()])


# ---------------------------------------------------------------------------------------------
# Cutting text where pre-tokenization cannot depend on what follows (streaming, parallel counts).

# tiktoken's spelling of GPT-2's pattern (possessive quantifiers, same pre-tokens)
_TIKTOKEN_GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
# Patterns for which a cut between a non-space character and a space never changes pre-tokens:
# in GPT-2's pattern no pre-token holds a non-space followed by a space (letters, digits and
# punctuation runs stop at a space; space runs start at one), no alternative looks behind, and
# the only look-ahead, \s+(?!\S), belongs to a space run, which cannot end just before the cut.
# So the text before the cut splits as it does in the whole text, and the text after it too.
_CUT_SAFE_PATTERNS = {GPT2_SPLIT_PATTERN, _TIKTOKEN_GPT2_PATTERN}
_LAST_CUT = regex.compile(r"(?r)\S(?=\s)")  # reverse search: the last non-space before a space
_NEXT_CUT = regex.compile(r"\S(?=\s)")


def _cut_every(text: str, size: int) -> list[str]:
    """``text`` in pieces of about ``size`` characters, cut only between a non-space and a space."""
    out, start = [], 0
    while len(text) - start > size:
        m = _NEXT_CUT.search(text, start + size)
        if m is None:
            break
        out.append(text[start : m.end()])
        start = m.end()
    out.append(text[start:])
    return out


def _straddles(before: str, after: str, specials: Iterable[str]) -> bool:
    """Could a special token occur across the cut between ``before`` and ``after``?"""
    return any(before.endswith(s[:k]) and s[k:].startswith(after[: len(s) - k])
               for s in specials for k in range(1, len(s)))


def stream_pieces(chunks: Iterable[str], special_tokens: Iterable[str] = (),
                  pattern: str = GPT2_SPLIT_PATTERN) -> Iterator[str]:
    """Re-cut a stream of text into pieces that can be encoded one at a time.

    Encoding each chunk of a stream separately is wrong: GPT-2's space rule looks ahead, so
    ``"a\\n"`` then ``"\\n\\nb"`` must give the ids of ``"a\\n\\n\\nb"``, not of the two parts.
    This generator yields pieces whose concatenation is the joined input and whose encodings,
    concatenated, are the encoding of the joined input: it cuts only between a non-space
    character and a space (see ``_CUT_SAFE_PATTERNS``), and never across a possible occurrence of
    one of ``special_tokens``. It holds at most the text since the last such place (for ordinary
    text, part of a line). For a split pattern other than GPT-2's no safe cut is known, and the
    whole stream is joined into one piece (correct, but not bounded in memory)."""
    specials = list(special_tokens)
    longest = max(map(len, specials), default=0)
    if pattern not in _CUT_SAFE_PATTERNS:
        text = "".join(_checked_chunks(chunks))
        if text:
            yield text
        return
    pending: list[str] = []  # text not emitted yet, with no usable cut inside
    last = ""  # the last character of pending (a cut may fall between it and the next chunk)
    tail = ""  # the last `longest` characters of pending, to check special tokens across a cut
    for chunk in _checked_chunks(chunks):
        if not chunk:
            continue
        text, end = last + chunk, len(last) + len(chunk)
        while True:
            m = _LAST_CUT.search(text, 0, end)
            if m is None:
                break
            c = m.end() - len(last)  # cut before chunk[c], a space
            if not specials or not _straddles((tail + chunk[:c])[-longest:], chunk[c : c + longest], specials):
                break
            end = m.start() + 1  # look for an earlier cut
        if m is None:
            pending.append(chunk)
        else:
            piece = "".join(pending) + chunk[:c]
            pending = [chunk[c:]]
            if piece:
                yield piece
        last = chunk[-1]
        if longest:
            tail = ("".join(pending[-longest:]))[-longest:] if m is None else pending[0][-longest:]
    piece = "".join(pending)
    if piece:
        yield piece


def _checked_chunks(chunks: Iterable[str]) -> Iterator[str]:
    if isinstance(chunks, (bytes, bytearray)):
        raise TypeError("encode_iterable expects an iterable of str, got bytes")
    for k, chunk in enumerate(chunks):
        if not isinstance(chunk, str):
            raise TypeError(f"encode_iterable: chunk {k} is {type(chunk).__name__}, not str")
        yield chunk
