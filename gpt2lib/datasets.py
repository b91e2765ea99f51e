"""Named data files the book uses, fetched by URL and checked by sha256 (GPT-2 §2.1, §3).

Every file has a name (``"tiny-shakespeare"``, ``"webtext-sample"``, ``"lambada-test"``, ...), a path in the
mirror layout, the URL it is downloaded from, its canonical public source, its size, its sha256 and its license
(the table lives in ``gpt2lib/datasets.tsv``, transcribed from the data mirror's MANIFEST.tsv).

Where a file comes from, in order:

1. ``GPT2LIB_DATA_MIRROR``: a local folder laid out like the mirror. The file is **used in place** (never copied,
   never modified); its sha256 is checked once per process and a mismatch raises :class:`ChecksumError`.
2. The cache, ``cache_dir`` or ``$GPT2LIB_CACHE`` or ``~/.cache/gpt2lib``, under ``data/<path>``.
3. The URL: streamed with a progress bar into a temporary file next to the target, hashed on the way, then
   fsync'ed and renamed into place. An interrupted download or a checksum mismatch deletes the temporary file,
   so the cache never holds a partial or wrong file. A transient failure (HTTP 429 or 5xx, a timeout, a
   dropped connection) is retried :data:`RETRIES` times with exponential backoff (1, 2, 4, 8 s, or the
   server's ``Retry-After`` up to a minute), each retry announced on stderr with the file's name and, for a
   group, its place in it ("file 37 of 181"); a missing file (404) or no network at all fails at once.

The 181 HTML pages of the extraction benchmark are one entry each (``"html-page/<id16>"``) and a group,
``"html-pages"``, whose download returns their folder; likewise the 250 CNN/Daily Mail test articles of the
FRANK benchmark (``"cnn-dailymail-article/<id16>"``, group ``"cnn-dailymail-articles"``, §3.6). The One Billion
Word test set is ``"one-billion-word-test"`` (Table 3's 1BW column).

Table 3's other columns need files too large for the mirror: :data:`OFF_MIRROR` registers them with their
canonical URLs (``in_mirror=False``): WikiText-103, enwik8, text8 and the Children's Book Test, plus CoQA's
development set (``"coqa-dev"``, §3.5). They are
fetched into the cache (or used from a mirror folder that happens to hold them). Where the publisher gives
no sha256, the entry's ``sha256`` is empty and only the pinned size is checked (said in ``checksum_note``).
:func:`read_member` reads one file out of such an archive.
"""
from __future__ import annotations

import contextlib
import difflib
import gzip
import hashlib
import http.client
import os
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from tqdm.auto import tqdm

from gpt2lib._io import atomic_path
from gpt2lib._manifest import TABLE
from gpt2lib.errors import GPT2LibError

__all__ = ["Dataset", "ChecksumError", "DownloadError", "DATASETS", "OFF_MIRROR", "GROUPS", "list_datasets", "info",
           "download", "read_text", "read_member", "cache_root"]


class ChecksumError(GPT2LibError, RuntimeError):
    """A file's sha256 (or size) is not the one in the registry; the file was not used."""


class DownloadError(GPT2LibError, ConnectionError):
    """A file could not be fetched (no network, a timeout, an HTTP error); nothing was left in the cache."""


@dataclass(frozen=True)
class Dataset:
    """One registered file."""

    name: str
    path: str  # relative path in the mirror / cache layout
    size: int  # bytes
    sha256: str
    url: str  # where `download` fetches it from
    source: str  # canonical public source (may be an archive or a web page)
    prefix: bool  # True: the file is the first `size` bytes of `url`
    license: str
    in_mirror: bool = True  # False: too large for the data mirror, fetched from `url` into the cache
    checksum_note: str = ""  # where the size / sha256 come from when the publisher gives no sha256


def _parse(table: str) -> dict[str, Dataset]:
    out = {}
    for line in table.strip("\n").splitlines():
        name, path, size, sha, url, source, prefix, lic = line.split("\t")
        out[name] = Dataset(name, path, int(size), sha, url, source, prefix == "prefix", lic)
    return out


# Table 3 files that are not in the mirror (each too large to copy). sha256 only where published.
OFF_MIRROR: dict[str, Dataset] = {d.name: d for d in [
    Dataset("cbt", "cbt/CBTest.tgz", 120_547_669,
            "932df0cadc1337b2a12b4c696b1041c1d1c6d4b6bd319874c6288f02e4a61e92",
            "http://www.thespermwhale.com/jaseweston/babi/CBTest.tgz", "https://research.facebook.com/downloads/babi/",
            False, "GNU FDL (Hill et al. 2016; Project Gutenberg books)", in_mirror=False,
            checksum_note="size and sha256 as documented for CBTest.tgz"),
    Dataset("wikitext-103", "wikitext-103/wikitext-103-v1.zip", 190_229_076,
            "242ba0f20b329cfdf1ccc61e9e9e5b59becf189db7f7a81cd2a0e2fc31539590",
            "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-103-v1.zip",
            "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-103-v1.zip",
            False, "CC BY-SA 3.0 (Wikipedia text; Merity et al. 2016)", in_mirror=False,
            checksum_note="no checksum published by the authors; size and sha256 as published in the Hugging Face "
            "datasets registry (huggingface/datasets, datasets/wikitext/dataset_infos.json)"),
    Dataset("enwik8", "enwik8/enwik8.zip", 36_445_475, "",
            "http://mattmahoney.net/dc/enwik8.zip", "http://mattmahoney.net/dc/textdata.html",
            False, "Wikipedia text (CC BY-SA); Hutter Prize / Large Text Compression Benchmark", in_mirror=False,
            checksum_note="no sha256 published; size pinned (the size that Hugging Face's enwik8 card and the usual "
            "download scripts check)"),
    Dataset("text8", "text8/text8.zip", 31_344_016, "",
            "http://mattmahoney.net/dc/text8.zip", "http://mattmahoney.net/dc/textdata.html",
            False, "Wikipedia text (CC BY-SA), Mahoney's text8 preprocessing", in_mirror=False,
            checksum_note="no sha256 published; size pinned (the size TensorFlow's word2vec tutorial checks)"),
    # §3.5 (not a Table 3 column): CoQA's development set, 500 stories.
    Dataset("coqa-dev", "coqa/coqa-dev-v1.0.json", 9_090_845,
            "dfa367a9733ce53222918d0231d9b3bedc2b8ee831a2845f62dfc70701f2540a",
            "https://nlp.stanford.edu/data/coqa/coqa-dev-v1.0.json", "https://stanfordnlp.github.io/coqa/",
            False, "per domain (CoQA site): CC BY-SA 4.0 literature and Wikipedia, MSR-LA MCTest stories, RACE's "
            "license for exam passages, Apache 2.0 CNN news", in_mirror=False,
            checksum_note="no checksum published by the authors; size and sha256 as published in the Hugging Face "
            "datasets registry (huggingface/datasets, datasets/coqa/dataset_infos.json)"),
]}
DATASETS: dict[str, Dataset] = {**_parse(TABLE), **OFF_MIRROR}
# A group downloads all its members and returns their common folder.
GROUPS: dict[str, list[str]] = {
    "html-pages": sorted(n for n in DATASETS if n.startswith("html-page/")),
    "cnn-dailymail-articles": sorted(n for n in DATASETS if n.startswith("cnn-dailymail-article/")),
}
_VERIFIED: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, checked this process


def list_datasets(include_pages: bool = False) -> list[str]:
    """Registered names (single members of a group, such as the 181 HTML pages or the 250 CNN/Daily Mail
    articles, only with ``include_pages=True``) and group names."""
    members = {m for group in GROUPS.values() for m in group}
    names = [n for n in DATASETS if include_pages or n not in members]
    return sorted(names + list(GROUPS))


def info(name: str) -> Dataset:
    """The registry entry for ``name``; unknown names raise ``KeyError`` listing close matches."""
    if name in DATASETS:
        return DATASETS[name]
    close = difflib.get_close_matches(name, list(DATASETS) + list(GROUPS), n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise KeyError(f"unknown dataset {name!r}.{hint} See gpt2lib.datasets.list_datasets().")


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The user cache folder: ``cache_dir``, else ``$GPT2LIB_CACHE``, else ``~/.cache/gpt2lib``."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("GPT2LIB_CACHE") or Path.home() / ".cache" / "gpt2lib")


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _matches(path: Path, entry: Dataset) -> bool:
    st = path.stat()
    if st.st_size != entry.size:
        return False
    key = (str(path), st.st_size, st.st_mtime_ns)
    if not entry.sha256:  # none published: the pinned size is all we can check
        return True
    if key not in _VERIFIED:
        _VERIFIED[key] = _sha256_file(path)
    return _VERIFIED[key] == entry.sha256


RETRIES = 4  # retries after the first attempt, for transient failures only
_TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}
_sleep = time.sleep  # tests replace it


def _transient(error: BaseException) -> bool:
    """A failure worth retrying: throttling or a server error, a timeout, a connection dropped mid-way."""
    if isinstance(error, HTTPError):
        return error.code in _TRANSIENT_HTTP
    if isinstance(error, URLError):
        error = error.reason if isinstance(error.reason, BaseException) else error
        if isinstance(error, URLError):
            return False
    if isinstance(error, ConnectionRefusedError):  # nothing listens there: retrying will not help
        return False
    return isinstance(error, (TimeoutError, ConnectionResetError, ConnectionAbortedError, http.client.IncompleteRead,
                              http.client.RemoteDisconnected))


def _backoff(error: BaseException, attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, ...): 1, 2, 4, 8 s, or ``Retry-After`` (at most 60 s)."""
    wait = float(2 ** (attempt - 1))
    retry_after = error.headers.get("Retry-After") if isinstance(error, HTTPError) and error.headers else None
    if retry_after and retry_after.strip().isdigit():
        wait = max(wait, min(float(retry_after), 60.0))
    return wait


def _fetch(entry: Dataset, dest: Path, progress: bool, where: str = "") -> None:
    """Fetch ``entry`` into ``dest`` (:func:`_fetch_once`), retrying transient failures with backoff.
    ``where`` (e.g. "file 3 of 181 of html-pages") is said in the progress bar and in every message."""
    label = f"{entry.name} ({where})" if where else entry.name
    for attempt in range(1, RETRIES + 2):
        try:
            return _fetch_once(entry, dest, progress, label, attempt)
        except DownloadError as error:
            cause = error.__cause__
            if attempt > RETRIES or cause is None or not _transient(cause):
                raise
            wait = _backoff(cause, attempt)
            print(f"gpt2lib: {label}: attempt {attempt} of {RETRIES + 1} failed ({type(cause).__name__}: {cause}); "
                  f"retrying in {wait:.0f} s", file=sys.stderr, flush=True)
            _sleep(wait)


def _fetch_once(entry: Dataset, dest: Path, progress: bool, label: str, attempt: int) -> None:
    """Stream ``entry.url`` into ``dest`` atomically, checking size and sha256 before the rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    h, n = hashlib.sha256(), 0
    req = Request(entry.url, headers={"User-Agent": "gpt2lib"})
    with atomic_path(dest) as tmp, _network_errors(entry, dest, label, attempt):  # tmp removed on any error
        with urlopen(req, timeout=60) as resp, open(tmp, "wb") as f, tqdm(
            total=entry.size, unit="B", unit_scale=True, desc=label, disable=not progress
        ) as bar:
            while True:
                want = 1 << 20
                if entry.prefix:
                    want = min(want, entry.size - n)
                    if want == 0:
                        break
                chunk = resp.read(want)
                if not chunk:
                    if getattr(resp, "length", None):  # the server closed before its Content-Length: retry
                        raise http.client.IncompleteRead(b"", resp.length)
                    break
                f.write(chunk)
                h.update(chunk)
                n += len(chunk)
                bar.update(len(chunk))
        if n != entry.size or (entry.sha256 and h.hexdigest() != entry.sha256):
            raise ChecksumError(
                f"{entry.name}: downloaded {n} bytes with sha256 {h.hexdigest()}, expected {entry.size} bytes "
                f"with sha256 {entry.sha256} (from {entry.url}); the file was discarded"
            )


@contextlib.contextmanager
def _network_errors(entry: Dataset, dest: Path, label: str = "", attempt: int = 1) -> Iterator[None]:
    """Turn a network failure (URLError, HTTPError, a socket timeout, a dropped connection) while fetching
    ``entry`` into a :class:`DownloadError` naming the dataset, the URL and ``GPT2LIB_DATA_MIRROR``."""
    try:
        yield
    except (URLError, TimeoutError, ConnectionError, http.client.HTTPException) as error:
        tries = f" after {attempt} attempts" if attempt > 1 else ""
        raise DownloadError(
            f"{label or entry.name}: could not download {entry.url}{tries} ({type(error).__name__}: {error}). "
            f"Offline? Set "
            f"GPT2LIB_DATA_MIRROR to a folder laid out like the data mirror (it must hold {entry.path}), or place "
            f"the file{f' (sha256 {entry.sha256})' if entry.sha256 else ''} at {dest}. Nothing was written to the cache."
        ) from error


def download(name: str, *, cache_dir: str | os.PathLike | None = None, progress: bool = True,
             _where: str = "") -> Path:
    """Path to the verified local copy of dataset ``name`` (a folder for a group), fetching it if needed.

    With ``$GPT2LIB_DATA_MIRROR`` set, the mirror's file is returned in place after its sha256 is checked;
    a file missing from the mirror raises ``FileNotFoundError`` (no silent network fallback).
    """
    if name in GROUPS:
        members = GROUPS[name]
        paths = [download(m, cache_dir=cache_dir, progress=progress, _where=f"file {i} of {len(members)} of {name}")
                 for i, m in enumerate(members, 1)]
        return Path(os.path.commonpath(paths))
    entry = info(name)
    mirror = os.environ.get("GPT2LIB_DATA_MIRROR")
    if mirror and not entry.in_mirror and not (Path(mirror) / entry.path).is_file():
        mirror = None  # an off-mirror file: the mirror is not expected to hold it, use the cache / URL
    if mirror:
        path = Path(mirror) / entry.path
        if not path.is_file():
            raise FileNotFoundError(f"{name}: {path} is missing from GPT2LIB_DATA_MIRROR={mirror}")
        if not _matches(path, entry):
            raise ChecksumError(
                f"{name}: {path} in GPT2LIB_DATA_MIRROR does not match sha256 {entry.sha256} "
                f"({entry.size} bytes); the mirror was left untouched"
            )
        return path
    dest = cache_root(cache_dir) / "data" / entry.path
    if dest.is_file():
        if _matches(dest, entry):
            return dest
        dest.unlink()  # a wrong cached file is never used: fetch it again
    _fetch(entry, dest, progress, _where)
    return dest


def read_text(name: str, encoding: str = "utf-8", **kwargs) -> str:
    """The exact text of dataset ``name`` (``.gz`` files are decompressed); keyword arguments go to :func:`download`."""
    if name in GROUPS:
        raise IsADirectoryError(f"{name} is a group of files; use download({name!r}) for its folder")
    kwargs.setdefault("progress", False)
    path = download(name, **kwargs)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding=encoding, newline="") as f:  # newline="": the bytes' line ends, unchanged
        return f.read()


def read_member(archive: str | os.PathLike, member: str) -> bytes:
    """The bytes of ``member`` inside a ``.zip`` or ``.tgz`` / ``.tar.gz`` archive (nothing is extracted to disk);
    a missing member raises ``KeyError`` naming the archive and the members it has."""
    archive = Path(archive)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            names = z.namelist()
            if member in names:
                return z.read(member)
    else:
        with tarfile.open(archive, "r:*") as t:
            names = t.getnames()
            if member in names:
                f = t.extractfile(member)
                if f is not None:
                    return f.read()
    raise KeyError(f"{archive}: no member {member!r} (it has {', '.join(names[:8])}{' ...' if len(names) > 8 else ''})")
