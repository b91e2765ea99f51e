"""Token shards and a deterministic window loader (GPT-2 §2.1 "Training Dataset", §2.3 context of 1024).

``prepare`` turns documents into flat arrays of token ids on disk: every document is preceded by the
end-of-text token ``<|endoftext|>`` (GPT-2's document delimiter, so it sits between documents and also starts
the stream), documents are split into train/val *by document* with a seeded permutation, and each split is
written as shards of raw ``uint16`` (or ``uint32`` for vocabularies over 65,536 ids) readable with
``np.memmap``. A ``meta.json`` written last (atomically) describes the tokenizer, dtype, counts and shards;
a folder without it is an unfinished ``prepare`` and is refused.

Folders are owned, writes are transactional. ``prepare`` writes a new dataset into a fresh subfolder
``tokens-<n>/`` (shards, and ``tokenizer.json`` for a trained BPE) beside the old one; replacing ``meta.json``
(one atomic rename) is the moment the new dataset takes over, and only then are the old dataset's files deleted.
``meta.json`` lists every file its ``prepare`` wrote (``"files"``, the manifest): nothing else in the folder is
ever deleted or overwritten. An error or Ctrl-C midway removes the unfinished subfolder and leaves the old
dataset as it was (a ``kill -9`` leaves the subfolder, marked as ours, for the next ``prepare`` to remove).
A non-empty folder that holds no dataset is refused unless ``overwrite=True`` (``--overwrite``), which writes
the dataset beside the folder's files without touching them.

Ids are checked once, when shards are opened: every shard's ids must be below ``n_vocab`` (a vectorised max
over the memory-mapped shard, in chunks). Training relies on this to turn the model's per-step id check off on
GPUs.

``TokenLoader`` cuts a split into non-overlapping windows of ``block_size + 1`` tokens (x = w[:-1], y = w[1:]),
shuffles them with a seeded permutation per epoch, deals them to ranks round-robin (disjoint windows per
rank, equal counts) and serves batches. Its cursor is ``state_dict()``/``load_state_dict()`` so a resumed run
continues with exactly the batch it would have seen.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from gpt2lib._io import atomic_write_bytes, read_json_object
from gpt2lib.bpe import BytePairTokenizer
from gpt2lib.lock import LOCK_FILE, locks_output
from gpt2lib.tokenizer import check_split_pattern, get_gpt2_tokenizer

__all__ = ["prepare", "TokenShards", "TokenLoader", "split_documents", "dtype_for_vocab", "load_tokenizer",
           "read_meta", "check_shard_ids", "META_FILE"]

META_FILE = "meta.json"
TOKENIZER_FILE = "tokenizer.json"
FORMAT = "gpt2lib-tokens-v1"
MARKER_FILE = ".gpt2lib-prepare"  # in every tokens-<n>/ subfolder: written by prepare
_GEN_RE = re.compile(r"tokens-([1-9][0-9]*)")
_OWN_FILE_RE = re.compile(r"(?:train|val)_\d{6}\.bin|tokenizer\.json|\.gpt2lib-prepare|\..+\.tmp")
# what a manifest ("files") may list: meta.json, and prepare's own names directly inside a tokens-<n>/ subfolder
_MANIFEST_RE = re.compile(r"meta\.json|tokens-[1-9][0-9]*/"
                          r"(?:(?:train|val)_\d{6}\.bin|tokenizer\.json|\.gpt2lib-prepare)")
_LEGACY_SHARD_RE = re.compile(r"(?:train|val)_\d{6}\.bin")  # shards at the top, before there was a manifest


def dtype_for_vocab(n_vocab: int) -> np.dtype:
    """The smallest unsigned dtype holding ids ``0 .. n_vocab - 1`` (uint16 up to 65,536 ids)."""
    return np.dtype(np.uint16) if n_vocab <= 1 << 16 else np.dtype(np.uint32)


def split_documents(text: str, separator: str = "\n\n") -> list[str]:
    """Split one long text (e.g. Tiny Shakespeare) into documents at ``separator``; empty pieces are dropped."""
    return [d for d in text.split(separator) if d.strip()]


# --- parallel tokenization -----------------------------------------------------------------------------
_WORKER_TOKENIZER = None


def _init_worker(tokenizer) -> None:
    global _WORKER_TOKENIZER
    torch.set_num_threads(1)
    _WORKER_TOKENIZER = tokenizer


def _encode_with(tokenizer, texts: list[str], dtype: str) -> list[np.ndarray]:
    return [np.asarray(ids, dtype=dtype) for ids in tokenizer.encode_batch(texts)]


def _encode_chunk(args: tuple[list[str], str]) -> list[np.ndarray]:
    return _encode_with(_WORKER_TOKENIZER, *args)


def _encoded(tokenizer, docs: list[str], dtype: np.dtype, num_workers: int, chunk: int, desc: str,
             progress: bool) -> Iterator[np.ndarray]:
    """Token arrays of ``docs`` in order; ``num_workers > 1`` tokenizes chunks in a process pool."""
    if chunk <= 0:  # by size: ~4 chunks per worker, at most 1M characters each
        target = min(1 << 20, max(1, sum(len(d) for d in docs) // (4 * num_workers)))
        chunks, cur, size = [], [], 0
        for d in docs:
            cur.append(d)
            size += len(d)
            if size >= target:
                chunks.append((cur, dtype.str))
                cur, size = [], 0
        if cur:
            chunks.append((cur, dtype.str))
    else:
        chunks = [(docs[i : i + chunk], dtype.str) for i in range(0, len(docs), chunk)]
    bar = tqdm(total=sum(len(d) for d in docs), unit="char", unit_scale=True, desc=desc, disable=not progress)
    with bar:
        if num_workers <= 1:  # in this process: its torch thread count is left alone
            results: Iterable = (_encode_with(tokenizer, texts, dt) for texts, dt in chunks)
            pool = None
        else:
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            pool = ProcessPoolExecutor(num_workers, mp.get_context(method), _init_worker, (tokenizer,))
            results = pool.map(_encode_chunk, chunks)
        try:
            for (texts, _), arrays in zip(chunks, results):
                bar.update(sum(len(t) for t in texts))
                yield from arrays
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)


class _ShardWriter:
    """Appends token arrays to ``{split}_{k:06d}.bin`` files of at most ``shard_size`` tokens."""

    def __init__(self, out_dir: Path, split: str, shard_size: int, dtype: np.dtype):
        self.out_dir, self.split, self.shard_size, self.dtype = out_dir, split, shard_size, dtype
        self.buf: list[np.ndarray] = []
        self.n_buf = 0
        self.shards: list[dict[str, Any]] = []

    def add(self, ids: np.ndarray) -> None:
        while len(ids):
            take = min(len(ids), self.shard_size - self.n_buf)
            self.buf.append(ids[:take])
            self.n_buf += take
            ids = ids[take:]
            if self.n_buf == self.shard_size:
                self.flush()

    def flush(self) -> None:
        if not self.n_buf:
            return
        name = f"{self.split}_{len(self.shards):06d}.bin"
        atomic_write_bytes(self.out_dir / name, np.concatenate(self.buf).astype(self.dtype).tobytes())
        self.shards.append({"file": name, "tokens": self.n_buf})
        self.buf, self.n_buf = [], 0


_PROBE = "The quick brown fox jumps over the lazy dog. Zwölf Boxkämpfer jagen Viktor quer über den Sylter Deich!"


def _tokenizer_meta(tokenizer) -> dict[str, Any]:
    """What identifies a tokenizer: its name, vocabulary size, eot id and its encoding of a probe sentence
    (two BPEs with the same size but different merges differ on the probe)."""
    return {"tokenizer": getattr(tokenizer, "name", type(tokenizer).__name__), "n_vocab": int(tokenizer.n_vocab),
            "eot": int(tokenizer.eot), "probe": [int(t) for t in tokenizer.encode(_PROBE)]}


@locks_output("prepare", "out_dir")  # one writer per folder (gpt2lib.lock)
def prepare(
    documents: Sequence[str | os.PathLike] | Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    tokenizer,
    *,
    val_fraction: float = 0.1,
    shard_size: int = 100_000_000,
    num_workers: int = 1,
    seed: int = 0,
    dtype: str | None = None,
    chunk_docs: int = 0,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Tokenize ``documents`` (strings, or paths of UTF-8 text files, one document each) into token shards.

    ``chunk_docs`` documents go to a worker at a time (0: chunks of about a quarter of each worker's share,
    at most 1M characters). Returns the metadata also written to ``out_dir/meta.json``. ``val_fraction`` of the documents (at least
    one when > 0) form the val split, chosen by a permutation seeded with ``seed``; each split keeps the
    corpus order. Every document is preceded by ``tokenizer.eot``. Errors (before any work): an empty corpus,
    a bad fraction, too few documents to split, a dtype too small for the vocabulary, a tokenizer that does
    not round-trip a probe sentence, a non-empty ``out_dir`` holding no dataset (unless ``overwrite``).

    A dataset already in ``out_dir`` is replaced atomically at the end (see the module docstring); files
    ``prepare`` did not write are never touched.
    """
    docs = [Path(d).read_text(encoding="utf-8") if isinstance(d, os.PathLike) else d for d in documents]
    if any(not isinstance(d, str) for d in docs):
        raise TypeError("documents must be strings or paths to text files")
    docs = [d for d in docs if d]
    if not docs:
        raise ValueError("empty corpus: no non-empty documents to tokenize")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = 0 if val_fraction == 0 else max(1, round(val_fraction * len(docs)))
    if n_val >= len(docs):
        raise ValueError(
            f"cannot split {len(docs)} document(s) into train and val with val_fraction={val_fraction}; "
            "split the text into more documents (see split_documents) or use val_fraction=0"
        )
    if shard_size < 1 or num_workers < 1:
        raise ValueError("shard_size and num_workers must be >= 1")
    _check_tokenizer(tokenizer)
    tok_meta = _tokenizer_meta(tokenizer)
    np_dtype = np.dtype(dtype) if dtype else dtype_for_vocab(tok_meta["n_vocab"])
    if np_dtype.byteorder not in "=|":  # numpy writes the native order as "="
        raise ValueError(f"dtype {dtype!r} is not in this machine's byte order; meta.json records only the name "
                         f"{np_dtype.name!r}, so the shards would be read back byte-swapped. Use {np_dtype.name!r}")
    if np_dtype.kind != "u" or tok_meta["n_vocab"] - 1 > np.iinfo(np_dtype).max:
        raise ValueError(f"dtype {np_dtype} cannot hold the ids of a {tok_meta['n_vocab']}-token vocabulary")

    out = Path(out_dir)
    old_meta = _claim_folder(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out, old_meta)
    gen = _new_subfolder(out)
    written: list[str] = []
    try:
        val_ids = set(np.random.default_rng(seed).permutation(len(docs))[:n_val].tolist())
        meta: dict[str, Any] = {"format": FORMAT, **tok_meta, "dtype": np_dtype.name,
                                "val_fraction": val_fraction, "seed": seed, "splits": {}}
        eot = np.array([tok_meta["eot"]], dtype=np_dtype)
        for split in ("train", "val"):
            split_docs = [d for i, d in enumerate(docs) if (i in val_ids) == (split == "val")]
            if not split_docs:
                continue
            writer = _ShardWriter(gen, split, shard_size, np_dtype)
            for ids in _encoded(tokenizer, split_docs, np_dtype, num_workers, chunk_docs, f"tokenize {split}",
                                progress):
                writer.add(eot)
                writer.add(ids)
            writer.flush()
            for shard in writer.shards:
                shard["file"] = f"{gen.name}/{shard['file']}"
            written += [s["file"] for s in writer.shards]
            meta["splits"][split] = {
                "documents": len(split_docs),
                "tokens": sum(s["tokens"] for s in writer.shards),
                "bytes": sum(len(d.encode("utf-8")) for d in split_docs),
                "shards": writer.shards,
            }
        if callable(getattr(tokenizer, "save", None)):  # a trained BPE travels with its shards
            tokenizer.save(gen / TOKENIZER_FILE)
            meta["tokenizer_file"] = f"{gen.name}/{TOKENIZER_FILE}"
            written.append(meta["tokenizer_file"])
        meta["files"] = [META_FILE, f"{gen.name}/{MARKER_FILE}", *written]
        atomic_write_bytes(out / META_FILE, json.dumps(meta, indent=1).encode())  # the new dataset takes over
    except BaseException:  # an error or Ctrl-C: the old dataset (if any) was never touched
        _remove_subfolder(gen)
        raise
    if old_meta is not None:
        _remove_dataset_files(out, old_meta, keep=set(meta["files"]))
    return meta


def _check_tokenizer(tokenizer) -> None:
    """A tokenizer must round-trip a probe sentence (catches e.g. an empty split pattern, which encodes
    every text to no ids at all)."""
    name = getattr(tokenizer, "name", type(tokenizer).__name__)
    pattern = getattr(tokenizer, "pattern", None)
    if isinstance(pattern, str) or pattern is not None:
        check_split_pattern(pattern, f"tokenizer {name!r}")
    back = tokenizer.decode(tokenizer.encode(_PROBE))
    if back != _PROBE:
        raise ValueError(f"tokenizer {name!r} does not round-trip the text {_PROBE!r} (decoding its ids gives "
                         f"{back!r}); it would write wrong shards")


def _claim_folder(out: Path, overwrite: bool) -> dict[str, Any] | None:
    """Check that ``prepare`` may write into ``out``; the dataset already there (its meta), or None."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is not a folder")
    if (out / META_FILE).exists():
        try:
            meta = read_meta(out)
        except ValueError as e:
            raise ValueError(f"{e}. prepare does not overwrite a {META_FILE} it cannot read as its own; "
                             f"choose another folder or remove the file yourself") from None
        _check_manifest(out, meta)
        return meta
    foreign = sorted(p.name for p in out.iterdir() if not _is_own_subfolder(p) and p.name != LOCK_FILE)
    if foreign and not overwrite:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise FileExistsError(
            f"{out} is not empty and holds no prepared dataset (no {META_FILE}): {shown}. Choose an empty or "
            f"new folder, or pass overwrite=True (--overwrite) to write the dataset beside these files, which are "
            f"left untouched")
    return None


def _is_own_subfolder(path: Path) -> bool:
    """A ``tokens-<n>/`` folder holding prepare's marker; a real folder, not a symlink to one elsewhere."""
    return (not path.is_symlink() and path.is_dir() and _GEN_RE.fullmatch(path.name) is not None
            and (path / MARKER_FILE).is_file() and not (path / MARKER_FILE).is_symlink())


def _is_plain_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _check_manifest(out: Path, meta: dict[str, Any]) -> None:
    """Before any work: every file the old dataset's manifest (``files``) lists must be one ``prepare`` can
    prove it wrote, since replacing the dataset deletes them: ``meta.json``, or one of prepare's own names
    (``train_000000.bin``, ``tokenizer.json``, its marker) directly inside a marked ``tokens-<n>/`` folder,
    none of them a symlink. A hand-edited or copied meta.json naming anything else (``my/notes.txt``,
    ``data/train_000000.bin``, ``tokens-1/../x``) is refused with a one-line ValueError naming the entry, and
    nothing is touched. (Folders from before the manifest list only shards: see :func:`_remove_dataset_files`.)"""
    meta_path = out / META_FILE
    for rel in meta.get("files", []):
        why = None
        if not _MANIFEST_RE.fullmatch(rel):
            why = ("is not a file prepare writes (meta.json, or train_NNNNNN.bin, val_NNNNNN.bin, tokenizer.json "
                   "directly in a tokens-<n>/ folder)")
        elif "/" in rel:
            folder = out / rel.split("/")[0]
            if folder.is_symlink() or (folder.exists() and not _is_own_subfolder(folder)):
                why = f"lies in {folder.name}/, which is not a folder prepare made (a symlink, or no {MARKER_FILE})"
            elif (out / rel).is_symlink() or ((out / rel).exists() and not (out / rel).is_file()):
                why = "is a symlink or not a plain file"
        if why:
            raise ValueError(f"{meta_path}: files entry {rel!r} {why}; prepare deletes only what it wrote, so it "
                             f"refuses to replace this dataset. Remove the entry from {META_FILE} (the file stays), "
                             f"or choose another folder")


def _new_subfolder(out: Path) -> Path:
    """``tokens-<n>/`` with ``n`` one above every ``tokens-<n>`` already in ``out`` (a fresh folder gets
    ``tokens-1``, so the same inputs give the same metadata)."""
    taken = [int(m.group(1)) for p in out.iterdir() if (m := _GEN_RE.fullmatch(p.name))]
    gen = out / f"tokens-{max(taken, default=0) + 1}"
    gen.mkdir()
    (gen / MARKER_FILE).write_text("written by gpt2lib.data.prepare; removed with its dataset\n")
    return gen


def _remove_subfolder(gen: Path) -> None:
    """Remove the files ``prepare`` writes from one of its ``tokens-<n>/`` subfolders, then the folder
    if nothing else is in it."""
    if not gen.is_dir() or gen.is_symlink():
        return
    for f in gen.iterdir():
        if _is_plain_file(f) and _OWN_FILE_RE.fullmatch(f.name):
            f.unlink(missing_ok=True)
    try:
        gen.rmdir()
    except OSError:  # someone put their own files there: leave them
        pass


def _remove_leftovers(out: Path, meta: dict[str, Any] | None) -> None:
    """Subfolders of interrupted (killed) runs of ``prepare``: marked as ours and not used by ``meta``."""
    used = {PurePosixPath(f).parts[0] for f in (meta or {}).get("files", []) if len(PurePosixPath(f).parts) > 1}
    for shard in (s for split in (meta or {}).get("splits", {}).values() for s in split["shards"]):
        used.add(PurePosixPath(shard["file"]).parts[0])
    for p in out.iterdir():
        if p.name not in used and _is_own_subfolder(p):
            _remove_subfolder(p)


def _remove_dataset_files(out: Path, meta: dict[str, Any], keep: set[str]) -> None:
    """Delete a replaced dataset's files: its manifest (``files``, checked by :func:`_check_manifest` before
    any work: prepare's own names inside its marked ``tokens-<n>/`` folders), then those folders if empty.
    A folder written before there was a manifest lists only its shards: those named ``train_NNNNNN.bin`` or
    ``val_NNNNNN.bin`` directly in the folder (where the old prepare wrote them) are deleted; any other shard
    (``my_corpus.bin``, ``sub/train_000000.bin``: a dataset built by hand) is the user's, and stays. Symlinks
    are never followed or deleted."""
    files = meta.get("files")
    if files is None:
        shards = [s["file"] for split in meta["splits"].values() for s in split["shards"]]
        for rel in shards:
            if rel not in keep and _LEGACY_SHARD_RE.fullmatch(rel) and _is_plain_file(out / rel):
                (out / rel).unlink()
        return
    _check_manifest(out, meta)  # (again: the folder is locked, but the check is cheap)
    own = {sub for sub in {f.split("/")[0] for f in files if "/" in f} if _is_own_subfolder(out / sub)}
    for rel in files:  # (the marker goes too, so decide which folders are ours first)
        ours = _MANIFEST_RE.fullmatch(rel) and rel.split("/")[0] in own
        if ours and rel not in keep and _is_plain_file(out / rel):
            (out / rel).unlink()
    for sub in sorted(own):
        _remove_subfolder(out / sub)


def load_tokenizer(data_dir: str | os.PathLike):
    """The tokenizer a ``prepare`` folder was made with: its saved ``tokenizer.json`` (a trained
    :class:`gpt2lib.bpe.BytePairTokenizer`), else the GPT-2 tokenizer if the metadata names it."""
    data_dir = Path(data_dir)
    meta = read_meta(data_dir)
    path = data_dir / meta["tokenizer_file"] if "tokenizer_file" in meta else data_dir / TOKENIZER_FILE
    if path.is_file():  # (folders written before the manifest keep it at the top)
        tok = BytePairTokenizer.load(path)
        check_split_pattern(tok.pattern, str(path))
        return tok
    if "tokenizer_file" in meta:
        raise FileNotFoundError(f"{path} (named in {data_dir / META_FILE}) is missing")
    if meta["tokenizer"] == "gpt2":
        return get_gpt2_tokenizer()
    raise FileNotFoundError(f"{data_dir} has no {TOKENIZER_FILE} and its tokenizer {meta['tokenizer']!r} is not gpt2")


def _check_relative(path: Any, where: str) -> str:
    """A file named in meta.json must be a relative path inside the data folder."""
    if not isinstance(path, str) or not path:
        raise ValueError(f"{where}: {path!r} is not a file name")
    posix, win = PurePosixPath(path), PureWindowsPath(path)
    if posix.is_absolute() or win.is_absolute() or win.drive or ".." in posix.parts or ".." in win.parts:
        raise ValueError(f"{where}: {path!r} points outside the data folder (absolute or '..'); "
                         f"shard files must be relative paths inside it")
    return path


def read_meta(data_dir: str | os.PathLike) -> dict[str, Any]:
    """``data_dir/meta.json``, checked: a JSON object of this format, with valid counts, a dtype that holds
    the vocabulary, and shard files inside the folder. Errors name the file (and the field)."""
    meta_path = Path(data_dir) / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found: {data_dir} is not a finished gpt2lib.data.prepare folder")
    meta = read_json_object(meta_path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path}: unknown format {meta.get('format')!r}, expected {FORMAT!r}")

    def need(d: Any, key: str, kind: type, where: str) -> Any:
        if not isinstance(d, dict) or key not in d:
            raise ValueError(f"{meta_path}: {where} lacks the field {key!r}")
        if not isinstance(d[key], kind) or (kind is int and isinstance(d[key], bool)):
            raise ValueError(f"{meta_path}: {where}{key} is {d[key]!r}, expected {kind.__name__}")
        return d[key]

    n_vocab, eot = need(meta, "n_vocab", int, ""), need(meta, "eot", int, "")
    if n_vocab < 1 or not 0 <= eot < n_vocab:
        raise ValueError(f"{meta_path}: n_vocab={n_vocab}, eot={eot} (need n_vocab >= 1, 0 <= eot < n_vocab)")
    try:
        dtype = np.dtype(need(meta, "dtype", str, ""))
    except TypeError:
        raise ValueError(f"{meta_path}: dtype {meta['dtype']!r} is not a numpy dtype") from None
    if dtype.kind != "u" or np.iinfo(dtype).max < n_vocab - 1:
        raise ValueError(f"{meta_path}: dtype {dtype} cannot hold a {n_vocab}-token vocabulary")
    for split, info in need(meta, "splits", dict, "").items():
        for key in ("documents", "tokens", "bytes"):
            need(info, key, int, f"splits.{split}.")
        for i, shard in enumerate(need(info, "shards", list, f"splits.{split}.")):
            _check_relative(need(shard, "file", str, f"splits.{split}.shards[{i}]."), str(meta_path))
            if need(shard, "tokens", int, f"splits.{split}.shards[{i}].") < 0:
                raise ValueError(f"{meta_path}: splits.{split}.shards[{i}] has a negative token count")
    for rel in need(meta, "files", list, "") if "files" in meta else []:
        _check_relative(rel, f"{meta_path} (files)")
    if "tokenizer_file" in meta:
        _check_relative(need(meta, "tokenizer_file", str, ""), f"{meta_path} (tokenizer_file)")
    return meta


def check_shard_ids(array: np.ndarray, n_vocab: int, path: str | os.PathLike, chunk: int = 1 << 24) -> None:
    """Raise ``ValueError`` naming ``path``, the first bad offset and ``n_vocab`` if any id in ``array`` is
    ``>= n_vocab``. Vectorised: a numpy max per chunk of ``chunk`` tokens of the (memory-mapped) array."""
    if np.iinfo(array.dtype).max < n_vocab:  # e.g. uint16 and 65,536 ids: every value is a valid id
        return
    for start in range(0, len(array), chunk):
        part = array[start : start + chunk]
        if len(part) and part.max() >= n_vocab:
            at = int(np.argmax(part >= n_vocab))
            raise ValueError(
                f"shard {path}: token id {int(part[at])} at offset {start + at} (token index) is outside the "
                f"vocabulary of {n_vocab} ids; the shard is damaged or was written for another tokenizer")


# --- reading -------------------------------------------------------------------------------------------
@dataclass
class TokenShards:
    """The shards of one split, memory-mapped. ``tokenizer`` (optional) is checked against the metadata.

    :meth:`open` checks every id against ``meta["n_vocab"]`` (``ids_checked``); :class:`TokenLoader` checks
    shards built by hand that were not."""

    data_dir: Path
    split: str
    meta: dict[str, Any]
    arrays: list[np.memmap]
    ids_checked: bool = False

    @classmethod
    def open(cls, data_dir: str | os.PathLike, split: str = "train", tokenizer=None) -> "TokenShards":
        data_dir = Path(data_dir)
        meta = read_meta(data_dir)
        if tokenizer is not None:
            want = _tokenizer_meta(tokenizer)
            bad = [f"{k}: shards have {meta.get(k)!r}, tokenizer has {want[k]!r}" for k in ("n_vocab", "eot", "probe")
                   if meta.get(k) != want[k]]
            if bad:
                raise ValueError(f"{data_dir} was prepared with another tokenizer ({meta.get('tokenizer')}): "
                                 + "; ".join(bad))
        dtype = np.dtype(meta["dtype"])
        if split not in meta["splits"]:
            raise ValueError(f"{data_dir} has no {split!r} split (it has {sorted(meta['splits'])})")
        arrays = []
        for shard in meta["splits"][split]["shards"]:
            path = data_dir / shard["file"]
            expected = shard["tokens"] * dtype.itemsize
            if not path.is_file() or path.stat().st_size != expected:
                raise ValueError(f"shard {path} is missing or not {expected} bytes ({shard['tokens']} x {dtype})")
            arrays.append(np.memmap(path, dtype=dtype, mode="r") if expected else np.zeros(0, dtype))
        shards = cls(data_dir, split, meta, arrays)
        shards.check_ids()
        return shards

    def check_ids(self) -> None:
        """Check, once, that every id is below ``meta["n_vocab"]`` (see :func:`check_shard_ids`)."""
        if self.ids_checked:
            return
        if "n_vocab" not in self.meta:
            raise ValueError(f"the {self.split} shards' metadata has no n_vocab to check their ids against")
        files = [s["file"] for s in self.meta.get("splits", {}).get(self.split, {}).get("shards", [])]
        for i, array in enumerate(self.arrays):
            where = self.data_dir / files[i] if i < len(files) else f"{self.split} shard {i}"
            check_shard_ids(array, int(self.meta["n_vocab"]), where)
        self.ids_checked = True

    @property
    def num_tokens(self) -> int:
        return sum(len(a) for a in self.arrays)

    @property
    def num_bytes(self) -> int:
        """UTF-8 bytes of the split's text (for bits per byte)."""
        return int(self.meta["splits"][self.split]["bytes"])

    def tokens(self) -> np.ndarray:
        """All tokens of the split in one (copied) array."""
        return np.concatenate([np.asarray(a) for a in self.arrays]) if self.arrays else np.zeros(0, np.uint16)


class TokenLoader:
    """Batches of ``(x, y)`` windows: x = tokens[i : i+T], y = tokens[i+1 : i+T+1] (GPT-2 §2.3, T = 1024).

    Windows start at multiples of ``block_size`` inside each shard. Epoch ``e`` visits them in the order of
    ``default_rng(seed + e).permutation`` (``shuffle=False``: corpus order); rank ``r`` of ``world_size`` takes
    every ``world_size``-th window of that order, the same number on every rank, so ranks never share a
    window and ``world_size`` ranks with batch ``B`` see, together, what one rank with batch ``world_size * B``
    sees. The cursor (epoch, position) is ``state_dict()``.
    """

    def __init__(self, shards: TokenShards, block_size: int, batch_size: int, *, seed: int = 0,
                 rank: int = 0, world_size: int = 1, shuffle: bool = True, model_block_size: int | None = None,
                 device: str | torch.device = "cpu"):
        if block_size < 1 or batch_size < 1:
            raise ValueError("block_size and batch_size must be >= 1")
        if model_block_size is not None and block_size > model_block_size:
            raise ValueError(f"block_size {block_size} is larger than the model's context ({model_block_size})")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        shards.check_ids()  # a no-op for shards from TokenShards.open, which checked them
        self.shards, self.block_size, self.batch_size = shards, block_size, batch_size
        self.seed, self.rank, self.world_size, self.shuffle = seed, rank, world_size, shuffle
        self.device = torch.device(device)
        # (shard, offset) of every window, as arrays: a 10B-token split has ~10M windows
        counts = np.array([max(0, (len(a) - 1) // block_size) for a in shards.arrays], dtype=np.int64)
        first = np.repeat(np.cumsum(counts) - counts, counts)  # index of each window's shard's first window
        starts = np.stack([np.repeat(np.arange(len(counts)), counts),
                           (np.arange(counts.sum()) - first) * block_size], axis=1).astype(np.int64)
        if not len(starts):
            raise ValueError(f"the {shards.split} split has {shards.num_tokens} tokens: fewer than one window of "
                             f"block_size + 1 = {block_size + 1} tokens")
        if len(starts) < world_size:
            raise ValueError(f"more ranks than data: {world_size} ranks but only {len(starts)} windows of "
                             f"{block_size + 1} tokens in the {shards.split} split")
        self.starts = starts
        self.windows_per_rank = len(starts) // world_size
        self.epoch, self.pos = 0, 0
        self._order = self._epoch_order(0)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        n = len(self.starts)
        order = np.random.default_rng(self.seed + epoch).permutation(n) if self.shuffle else np.arange(n)
        return order[self.rank :: self.world_size][: self.windows_per_rank]

    def __len__(self) -> int:
        """Full batches per epoch on this rank."""
        return self.windows_per_rank // self.batch_size

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next ``(x, y)`` pair of int64 tensors ``[batch_size, block_size]``; wraps into the next epoch."""
        rows = []
        for _ in range(self.batch_size):
            if self.pos == self.windows_per_rank:
                self.epoch, self.pos = self.epoch + 1, 0
                self._order = self._epoch_order(self.epoch)
            s, i = self.starts[self._order[self.pos]]
            rows.append(np.asarray(self.shards.arrays[s][i : i + self.block_size + 1], dtype=np.int64))
            self.pos += 1
        w = torch.from_numpy(np.stack(rows))
        x, y = w[:, :-1].contiguous(), w[:, 1:].contiguous()
        if self.device.type == "cuda":  # pinned, so the copies to the GPU are asynchronous
            x, y = x.pin_memory(), y.pin_memory()
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass over the remaining full batches of the current epoch."""
        while self.windows_per_rank - self.pos >= self.batch_size:
            yield self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "pos": self.pos, "seed": self.seed, "rank": self.rank,
                "world_size": self.world_size, "block_size": self.block_size, "num_windows": len(self.starts),
                "shuffle": self.shuffle}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("seed", "world_size", "block_size", "num_windows", "shuffle"):
            mine = len(self.starts) if key == "num_windows" else getattr(self, key)
            if state[key] != mine:
                raise ValueError(f"loader state has {key}={state[key]!r} but this loader has {mine!r}")
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._order = self._epoch_order(self.epoch)
