"""GPT-2's tokenizer, fast path (GPT-2 §2.2): a thin wrapper around tiktoken's "gpt2" encoding.

GPT-2 §2.2 encodes text as byte-level BPE with a 50,257-id vocabulary: 256 single bytes, 50,000
merges and ``<|endoftext|>`` (id 50256), the separator between documents. :mod:`gpt2lib.bpe` is
the same algorithm written out in Python; this module is the one to use for real work.

Special-token policy
    ``encode(text)`` treats the characters "<|endoftext|>" in ``text`` as ordinary text (it becomes
    several ordinary tokens). It never raises on them, so web text that happens to contain the
    string is safe, and it matches tiktoken's ``encode_ordinary``. To get id 50256, ask for it:
    ``encode(text, allowed_special="all")`` or ``allowed_special={"<|endoftext|>"}``. (tiktoken's
    own ``encode`` instead raises ValueError when special-token text appears.) When you build a
    training stream, append ``tok.eot`` yourself rather than writing the string into the text.

Input rules
    ``encode("")`` is ``[]``; a non-str raises TypeError. ``decode`` raises ValueError for an id
    outside ``0 .. n_vocab-1`` and TypeError for a non-integer id. Decoding a sequence cut inside a
    multi-byte character gives U+FFFD with ``errors="replace"`` (the default); ``errors="strict"``
    raises UnicodeDecodeError. ``decode_bytes`` returns the raw bytes and never loses information.

Where the vocabulary comes from (offline use)
    1. If ``GPT2LIB_DATA_MIRROR`` names a folder with ``gpt2/r50k_base.tiktoken`` (or
       ``gpt2/encoder.json`` and ``gpt2/vocab.bpe``), the encoding is built from those files after
       their sha256 is checked against the published values below.
    2. Otherwise ``tiktoken.get_encoding("gpt2")``: tiktoken's cache (``TIKTOKEN_CACHE_DIR``) or a
       download from openaipublic.blob.core.windows.net.
    If neither works, :class:`TokenizerUnavailableError` says how to supply the files.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import os
import warnings
from pathlib import Path
from typing import AbstractSet, Iterable, Iterator, Literal

import regex
import tiktoken

from gpt2lib.bpe import BytePairTokenizer, stream_pieces
from gpt2lib.errors import GPT2LibError

ENDOFTEXT = "<|endoftext|>"
# sha256 of GPT-2's released tokenizer files (the same values tiktoken checks).
GPT2_FILE_SHA256 = {
    "r50k_base.tiktoken": "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}
# GPT-2's split pattern in the form tiktoken uses for "gpt2" (possessive quantifiers, same splits
# as gpt2lib.bpe.GPT2_SPLIT_PATTERN; the tests check both against tiktoken).
_TIKTOKEN_GPT2_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)

AllowedSpecial = Literal["all"] | Iterable[str]

# Text a split pattern must cut into parts that join back to it: letters, digits, punctuation, contractions,
# runs of spaces, tabs and newlines, non-ASCII letters and an emoji.
SPLIT_PROBE = "Hello world! It's 2019, isn't it?\n\n  Zwölf Boxkämpfer\tjagen 42 Viktoren 🙂  \n"


def check_split_pattern(pattern: object, source: str = "split pattern") -> None:
    """Check a BPE pre-tokenization ``pattern`` (GPT-2 §2.2): a non-empty string that compiles with ``regex``
    and splits :data:`SPLIT_PROBE` into non-empty parts that re-join to the text. An empty pattern would make
    ``encode`` return ``[]`` for every text. ``ValueError`` names ``source`` (e.g. the tokenizer file)."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"{source}: the split pattern is {pattern!r}; it must be a non-empty regular expression "
                         f"(GPT-2's is gpt2lib.bpe.GPT2_SPLIT_PATTERN)")
    try:
        compiled = regex.compile(pattern)
    except regex.error as e:
        raise ValueError(f"{source}: the split pattern {pattern!r} does not compile: {e}") from None
    parts = [m.group(0) for m in compiled.finditer(SPLIT_PROBE)]
    if any(not part for part in parts):
        raise ValueError(f"{source}: the split pattern {pattern!r} matches the empty string")
    if "".join(parts) != SPLIT_PROBE:
        raise ValueError(f"{source}: the split pattern {pattern!r} drops text: splitting {SPLIT_PROBE!r} and "
                         f"re-joining the parts gives {''.join(parts)!r}")



class TokenizerUnavailableError(GPT2LibError, RuntimeError):
    """GPT-2's vocabulary files are neither cached, mirrored nor downloadable."""


class GPT2Tokenizer:
    """GPT-2's tokenizer (GPT-2 §2.2) on top of a ``tiktoken.Encoding``. Use :func:`get_gpt2_tokenizer`."""

    name = "gpt2"

    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self.encoding = encoding
        self.n_vocab: int = encoding.n_vocab
        self.eot: int = encoding.eot_token
        self._special = frozenset(encoding.special_tokens_set)
        self._encode_ordinary = encoding.encode_ordinary

    def __repr__(self) -> str:
        return f"GPT2Tokenizer(name={self.name!r}, n_vocab={self.n_vocab}, eot={self.eot})"

    def __reduce__(self):  # pickles (e.g. to worker processes) as "the GPT-2 tokenizer"
        return (get_gpt2_tokenizer, ())

    def _allowed(self, allowed_special: AllowedSpecial) -> AbstractSet[str]:
        if allowed_special == "all":
            return self._special
        if isinstance(allowed_special, str):
            raise TypeError('allowed_special must be "all" or a set of special-token strings')
        allowed = frozenset(allowed_special)  # tiktoken's Rust core takes only a (frozen)set
        unknown = allowed - self._special
        if unknown:
            raise ValueError(f"unknown special tokens {sorted(unknown)}; GPT-2 has only {ENDOFTEXT!r}")
        return allowed

    def encode(self, text: str, allowed_special: AllowedSpecial = frozenset()) -> list[int]:
        """Text to ids. Special-token text is ordinary text unless listed in ``allowed_special``."""
        if not isinstance(text, str):
            raise TypeError(f"encode expects str, got {type(text).__name__}")
        if not allowed_special:
            return self._encode_ordinary(text)
        return self.encoding.encode(text, allowed_special=self._allowed(allowed_special), disallowed_special=())

    def encode_batch(
        self, texts: list[str], allowed_special: AllowedSpecial = frozenset(), num_threads: int = 8
    ) -> list[list[int]]:
        """``[encode(t) for t in texts]``, on ``num_threads`` threads (tiktoken releases the GIL)."""
        if isinstance(texts, str):
            raise TypeError("encode_batch expects a list of str, got a single str (use encode)")
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"encode_batch expects str items, item {i} is {type(t).__name__}")
        if num_threads <= 1:
            return [self.encode(t, allowed_special) for t in texts]
        if not allowed_special:
            return self.encoding.encode_ordinary_batch(texts, num_threads=num_threads)
        return self.encoding.encode_batch(
            texts, num_threads=num_threads, allowed_special=self._allowed(allowed_special), disallowed_special=()
        )

    def encode_iterable(self, chunks: Iterable[str], allowed_special: AllowedSpecial = frozenset()) -> Iterator[int]:
        """Ids of the concatenation of ``chunks`` (e.g. the lines of a large file), streamed with bounded memory.

        Encoding chunk by chunk would be wrong where GPT-2's whitespace rule crosses a chunk end
        (``["a\\n", "\\n", "\\n", "b"]`` is ``[64, 628, 198, 65]``); the text is re-cut only where that is
        safe, by :func:`gpt2lib.bpe.stream_pieces`."""
        specials = self._allowed(allowed_special) if allowed_special else frozenset()
        for piece in stream_pieces(chunks, specials, pattern=self.encoding._pat_str):
            yield from self.encode(piece, allowed_special)

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Ids to the exact bytes they stand for."""
        ids = ids if isinstance(ids, list) else list(ids)
        if bool in set(map(type, ids)):  # True/False are ints to Python, not token ids
            self._check_ids(ids)
        try:
            return self.encoding.decode_bytes(ids)
        except (KeyError, OverflowError, TypeError, ValueError):
            self._check_ids(ids)
            raise

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Ids to text; ``errors`` is how invalid UTF-8 is handled ("replace" or "strict", ...)."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    def _check_ids(self, ids: list) -> None:
        for i in ids:
            if not hasattr(i, "__index__") or isinstance(i, bool):
                raise TypeError(f"token ids must be int, got {type(i).__name__} ({i!r})")
            if not 0 <= int(i) < self.n_vocab:
                raise ValueError(f"token id {int(i)} is out of range for GPT-2's vocabulary of {self.n_vocab}")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ranks_from_mirror(folder: Path, problems: list[str]) -> dict[bytes, int] | None:
    """GPT-2's ``{token bytes: rank}`` from a data mirror, or None (reasons added to ``problems``)."""
    gpt2 = folder / "gpt2"

    def verified(name: str) -> Path | None:
        path = gpt2 / name
        if not path.is_file():
            return None
        if _sha256(path) != GPT2_FILE_SHA256[name]:
            problems.append(f"{path} has the wrong sha256 (expected {GPT2_FILE_SHA256[name]})")
            return None
        return path

    path = verified("r50k_base.tiktoken")
    if path is not None:
        ranks = {}
        for line in path.read_bytes().splitlines():
            if line:
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
        return ranks
    encoder, vocab = verified("encoder.json"), verified("vocab.bpe")
    if encoder is not None and vocab is not None:
        return {t: i for i, t in enumerate(BytePairTokenizer.from_gpt2_files(encoder, vocab).vocab)}
    return None


def load_gpt2_encoding() -> tiktoken.Encoding:
    """Build GPT-2's ``tiktoken.Encoding`` from the mirror, tiktoken's cache or the network (no caching here)."""
    problems: list[str] = []
    mirror = os.environ.get("GPT2LIB_DATA_MIRROR")
    if mirror:
        ranks = _ranks_from_mirror(Path(mirror), problems)
        if ranks is not None:
            return tiktoken.Encoding(
                name="gpt2",
                pat_str=_TIKTOKEN_GPT2_PATTERN,
                mergeable_ranks=ranks,
                special_tokens={ENDOFTEXT: len(ranks)},
                explicit_n_vocab=50257,
            )
        if problems:
            warnings.warn("; ".join(problems) + " - ignoring the mirror's GPT-2 files", stacklevel=2)
    try:
        return tiktoken.get_encoding("gpt2")
    except Exception as e:  # network errors, hash mismatches, unwritable cache, ...
        cache = os.environ.get("TIKTOKEN_CACHE_DIR", "<unset: a temp folder>")
        raise TokenizerUnavailableError(
            "GPT-2's tokenizer files (vocab.bpe + encoder.json) are not cached and could not be "
            f"downloaded: {type(e).__name__}: {e}. "
            + ("".join(p + ". " for p in problems))
            + "Supply them in one of these ways: (1) run once with network access, tiktoken then "
            f"caches them in TIKTOKEN_CACHE_DIR (now {cache}); (2) set TIKTOKEN_CACHE_DIR to a "
            "folder that already holds tiktoken's cache entries for 'gpt2'; (3) set "
            "GPT2LIB_DATA_MIRROR to a folder containing gpt2/r50k_base.tiktoken (or "
            "gpt2/encoder.json and gpt2/vocab.bpe)."
        ) from e


@functools.cache
def get_gpt2_tokenizer() -> GPT2Tokenizer:
    """GPT-2's tokenizer, loaded once per process (``get_gpt2_tokenizer.cache_clear()`` forgets it)."""
    return GPT2Tokenizer(load_gpt2_encoding())
