"""WebText at laptop scale: the data pipeline of GPT-2 §2.1 as small composable stages.

"we scraped all outbound links from Reddit ... which received at least 3 karma ... WebText, contains the
text subset of these 45 million links. To extract the text from HTML responses we use a combination of
the Dragnet and Newspaper content extractors ... after de-duplication and some heuristic based cleaning
contains slightly over 8 million documents for a total of 40 GB of text. We removed all Wikipedia
documents from WebText" (Radford et al. 2019, §2.1).

A :class:`Stage` is a name and a function of one item that returns the (possibly new) item,
``Drop(reason)``, or ``Keep(item, note)`` (kept, with something worth counting, e.g. "decoded as
cp1252"). :func:`run_pipeline` chains stages lazily over any iterator and fills one
:class:`StageReport` per stage: items seen, kept, dropped by reason, notes. Pure stages (the default)
may run in a local ``ProcessPoolExecutor`` on chunks of items; output order is always input order.
De-duplication stages are :class:`gpt2lib.pipeline.GroupStage` s (keys, group-by, keep the first of
each group); the stage types live in :mod:`gpt2lib.pipeline` and are re-exported here.

The link stages, in the paper's order::

    parse_link -> min_karma(3) -> normalize -> DedupLinks -> exclude_wikipedia -> drop_non_html

then (after fetching, which this offline book does not do) ``html_to_text`` and the document stages
``drop_empty -> clean_boilerplate -> length_filter -> alpha_filter -> english_filter`` and exact /
near-duplicate removal (:func:`dedup_stages`, :mod:`gpt2lib.dedup`), and finally token shards
(:func:`write_shards`); :func:`build_sample_shards` runs the document half on the WebText sample.

Bad input. A malformed NDJSON line (not JSON, not an object, missing ``u``/``k``, non-integer karma,
not UTF-8) is *dropped with a reason and counted*, not raised: a crawl of 45M links always has a few
broken lines and one must not stop the run, but the report makes them visible. An empty document is
dropped as "empty". Non-UTF-8 HTML is decoded by :func:`gpt2lib.extract.decode_html` (declared
charset, then fallback) and the fallback is counted as a note.

Non-HTML links (:func:`drop_non_html`) are recognised by the file extension of the URL path only
(``.jpg``, ``.pdf``, ``.mp4``, ``.zip``, ...; see ``NON_HTML_EXTENSIONS``); no request is made. A URL
without an extension, or with ``.html``/``.php``/..., is kept. Pages that serve a video or image
without such an extension (YouTube, imgur pages) pass this stage; the text filters catch most of them.

Scaling out (the real 45M links): :func:`gpt2lib.engine.run_engine` runs the same stage list on
partitions, on a Dask distributed cluster (or a local process pool), with the same output and reports.
Pure stages are mapped per partition; each group stage becomes map (emit keys) -> shuffle by key ->
reduce (candidate pairs per key) -> verify -> connected components -> filter per partition.
"""
from __future__ import annotations

import gzip
import json
import os
import re
import zlib
from collections import Counter
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from gpt2lib._io import atomic_write_bytes
from gpt2lib.data import prepare
from gpt2lib.datasets import download
from gpt2lib.dedup import ExactDedup, NearDedup
from gpt2lib.engine import SerialEngine, prepare_on_engine, run_engine, split_evenly
from gpt2lib.extract import decode_html, extract_text
from gpt2lib.lock import LOCK_FILE, output_lock
from gpt2lib.pipeline import (Drop, GroupStage, Keep, PipelineRun, Stage, StageReport, apply_stages,  # noqa: F401
                              run_pipeline)
from gpt2lib.tokenizer import get_gpt2_tokenizer

# ------------------------------------------------------------------------------ Reddit links


@dataclass(frozen=True)
class Link:
    """An outbound Reddit link: ``url``, ``subreddit`` and the submission's ``karma`` (score)."""

    url: str
    subreddit: str
    karma: int


def read_lines(path: str | Path) -> Iterator[bytes]:
    """Raw lines of a (gzip) NDJSON file, as bytes, so that decoding errors become pipeline drops."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            for line in f:
                if line.strip():
                    yield line
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ValueError(f"{path}: a truncated or damaged gzip file ({e})") from None


def parse_link(line: bytes | str) -> Link | Drop:
    """One NDJSON line ``{"u": url, "r": subreddit, "k": karma}`` -> :class:`Link`, or a Drop."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError:
            return Drop("malformed: not utf-8")
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        return Drop("malformed: not json")
    if not isinstance(obj, dict):
        return Drop("malformed: not an object")
    url, karma = obj.get("u"), obj.get("k")
    if not isinstance(url, str) or not url.strip():
        return Drop("malformed: no url")
    if isinstance(karma, bool) or not isinstance(karma, int):
        return Drop("malformed: karma not an integer")
    return Link(url.strip(), str(obj.get("r", "")), karma)


def min_karma(link: Link, k: int = 3) -> Link | Drop:
    """WebText's quality signal: keep links whose submission received at least ``k`` karma."""
    return link if link.karma >= k else Drop(f"karma < {k}")


TRACKING_PARAMS = {"fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "_ga", "igshid", "yclid"}
_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNRESERVED = re.compile(r"%([0-9A-Fa-f]{2})")


def _normalize_escapes(s: str) -> str:
    """Percent-escapes of unreserved characters are decoded, others upper-cased (RFC 3986 §6.2.2)."""
    def fix(m: re.Match) -> str:
        ch = chr(int(m.group(1), 16))
        return ch if ch.isascii() and (ch.isalnum() or ch in "-._~") else "%" + m.group(1).upper()
    return _UNRESERVED.sub(fix, s)


def normalize_url(url: str) -> str | None:
    """Canonical form of an http(s) URL, or None if it is not one. Rules (all documented heuristics):

    scheme and host lower-case; a leading ``www.`` and a trailing ``.`` of the host removed; default
    ports (:80, :443) removed; the fragment removed; tracking query parameters (``utm_*`` and
    ``TRACKING_PARAMS``) removed, the others kept in order; percent-escapes normalised; an empty path
    becomes ``/`` and a trailing ``/`` of a non-root path is removed (``/a/`` and ``/a`` are one page on
    almost every site, though HTTP does not promise it).
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if host.startswith("www."):
        host = host[4:]
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = _normalize_escapes(parts.path) or "/"
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if not k.lower().startswith("utm_") and k.lower() not in TRACKING_PARAMS]
    return urlunsplit((scheme, netloc, path, urlencode(query, quote_via=quote, safe="/:@!$'()*,;"), ""))


def normalize(link: Link) -> Link | Drop:
    """Stage: replace the URL by :func:`normalize_url`; drop what is not an http(s) URL."""
    url = normalize_url(link.url)
    return replace(link, url=url) if url else Drop("not an http(s) url")


@dataclass(frozen=True)
class DedupLinks(GroupStage):
    """Group stage: keep the first link of each normalised URL (http and https count as one: the key
    is the URL without its scheme)."""

    name: str = "dedup urls"
    reason: str = "duplicate url"

    def keys(self, link: Link) -> list[bytes]:
        return [link.url.split("://", 1)[-1].encode("utf-8", "surrogatepass")]


def host_of(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").rstrip(".")
    except ValueError:
        return ""


def exclude_wikipedia(link: Link) -> Link | Drop:
    """"We removed all Wikipedia documents from WebText" (§2.1): any host ``*.wikipedia.org``,
    including mobile (``en.m.wikipedia.org``) and ``wikipedia.org`` itself."""
    host = host_of(link.url)
    return Drop("wikipedia") if host == "wikipedia.org" or host.endswith(".wikipedia.org") else link


NON_HTML_EXTENSIONS = {
    "image": {"jpg", "jpeg", "png", "gif", "bmp", "svg", "webp", "tif", "tiff", "ico", "heic"},
    "document": {"pdf", "doc", "docx", "ppt", "pptx", "xls", "xlsx", "odt", "ps", "eps", "rtf", "csv"},
    "video": {"mp4", "avi", "mov", "wmv", "flv", "mkv", "webm", "mpg", "mpeg", "m4v", "swf", "gifv"},
    "audio": {"mp3", "wav", "ogg", "flac", "m4a", "aac", "wma", "mid", "midi"},
    "archive": {"zip", "tar", "gz", "tgz", "bz2", "xz", "7z", "rar"},
    "binary": {"exe", "dmg", "msi", "apk", "deb", "rpm", "iso", "bin", "jar", "torrent"},
}
_KIND_OF_EXT = {ext: kind for kind, exts in NON_HTML_EXTENSIONS.items() for ext in exts}


def drop_non_html(link: Link) -> Link | Drop:
    """Drop links whose path ends in a non-HTML file extension (see the module docstring)."""
    path = unquote(urlsplit(link.url).path)
    last = path.rsplit("/", 1)[-1]
    ext = last.rsplit(".", 1)[-1].lower() if "." in last else ""
    kind = _KIND_OF_EXT.get(ext)
    return Drop(f"non-html: {kind}") if kind else link


def link_stages(karma: int = 3) -> list[Stage | GroupStage]:
    """The link half of §2.1, in order."""
    return [
        Stage("parse", parse_link),
        Stage(f"karma >= {karma}", partial(min_karma, k=karma)),
        Stage("normalize url", normalize),
        DedupLinks(),
        Stage("no wikipedia", exclude_wikipedia),
        Stage("html only", drop_non_html),
    ]


def reddit_link_lines(months: Sequence[str] = ("2005-12", "2006-12")) -> Iterator[bytes]:
    """Raw lines of the book's Reddit link files (``reddit-links-<month>`` via gpt2lib.datasets)."""
    for month in months:
        yield from read_lines(download(f"reddit-links-{month}", progress=False))


# ------------------------------------------------------------------------------ documents


@dataclass(frozen=True)
class Document:
    """A web document: an ``id`` (URL or sample id), its ``text`` and, where known, its ``url``."""

    id: str
    text: str
    url: str = ""


@dataclass(frozen=True)
class Page:
    """A fetched page: raw HTML bytes and the charset its HTTP header declared (if any)."""

    url: str
    html: bytes
    declared_charset: str | None = None


def html_to_text(page: Page, extractor: Callable[[str], str] | None = None) -> Document | Keep | Drop:
    """Stage: decode (counting non-UTF-8 pages as notes) and extract the main text.

    ``extractor`` defaults to :func:`gpt2lib.extract.extract_text`; pass e.g.
    :func:`gpt2lib.extract.extract_trafilatura` (a top-level function, so the stage stays picklable).
    """
    decoded = decode_html(page.html, page.declared_charset)
    text = (extractor or extract_text)(decoded.text)
    if not text.strip():
        return Drop("no main text")
    doc = Document(page.url, text, page.url)
    return doc if decoded.how == "utf-8" else Keep(doc, f"decoded: {decoded.how} ({decoded.encoding})")


def drop_empty(doc: Document) -> Document | Drop:
    return doc if doc.text.strip() else Drop("empty")


BOILERPLATE = re.compile(
    r"all rights reserved|©|\(c\) ?\d{4}|(about|uses?|accept) cookies|cookie (policy|settings)|privacy policy|terms of (use|service)|newsletter|"
    r"subscribe|sign (up|in)|log ?in\b|share (this|on)|click here|follow us|advertisement|read more|"
    r"enable javascript|loading\.\.\.|skip to (main )?content|related (posts|articles|stories)",
    re.IGNORECASE,
)


def clean_boilerplate(doc: Document, max_words: int = 15) -> Document | Keep | Drop:
    """Remove short lines (at most ``max_words`` words) that match ``BOILERPLATE`` (cookie banners,
    share buttons, copyright lines). Long lines are prose that merely mentions such words: kept."""
    lines = doc.text.split("\n")
    kept = [ln for ln in lines if not (len(ln.split()) <= max_words and BOILERPLATE.search(ln))]
    if len(kept) == len(lines):
        return doc
    text = "\n".join(kept).strip()
    if not text:
        return Drop("only boilerplate")
    return Keep(replace(doc, text=text), "boilerplate lines removed")


def length_filter(doc: Document, min_words: int = 20, max_words: int = 100_000) -> Document | Drop:
    n = len(doc.text.split())
    if n < min_words:
        return Drop(f"< {min_words} words")
    return Drop(f"> {max_words} words") if n > max_words else doc


def alpha_fraction(text: str) -> float:
    """Fraction of the non-space characters that are letters (any script)."""
    chars = [c for c in text if not c.isspace()]
    return sum(c.isalpha() for c in chars) / len(chars) if chars else 0.0


def alpha_filter(doc: Document, min_fraction: float = 0.7) -> Document | Drop:
    """Drop tables of numbers, code and symbol soup: fewer than ``min_fraction`` letters."""
    return doc if alpha_fraction(doc.text) >= min_fraction else Drop(f"alpha < {min_fraction}")


STOP_WORDS = frozenset(
    "the of and to a in is that it for on with as was be by this are at from or an have not but his her "
    "they he she i you we their has had were been which will would there all one so if can what its".split()
)


def stop_word_ratio(text: str) -> float:
    """Fraction of whitespace tokens (lower-cased, edge punctuation stripped) in ``STOP_WORDS``."""
    words = [w.strip(".,;:!?\"'()[]").lower() for w in text.split()]
    return sum(w in STOP_WORDS for w in words) / len(words) if words else 0.0


def english_filter(doc: Document, min_ratio: float = 0.1) -> Document | Drop:
    """A language-ish filter: English prose has ~30% stop words (the WebText sample's median is 0.31);
    other languages, lists of names and keyword spam have few. Not a language identifier."""
    return doc if stop_word_ratio(doc.text) >= min_ratio else Drop("not english-like")


def clean_stages(min_words: int = 20, min_alpha: float = 0.7, min_stop: float = 0.1) -> list[Stage]:
    """The heuristic cleaning of §2.1 (our reading of "some heuristic based cleaning")."""
    return [
        Stage("not empty", drop_empty),
        Stage("boilerplate lines", clean_boilerplate),
        Stage("length", partial(length_filter, min_words=min_words)),
        Stage("alphabetic", partial(alpha_filter, min_fraction=min_alpha)),
        Stage("english-like", partial(english_filter, min_ratio=min_stop)),
    ]


def dedup_stages(threshold: float = 0.5) -> list[GroupStage]:
    """Exact, then near-duplicate removal (:mod:`gpt2lib.dedup`), as group stages."""
    return [ExactDedup(), NearDedup(threshold=threshold)]


def read_webtext_sample(limit: int | None = None) -> Iterator[Document]:
    """The first 1408 WebText training documents (OpenAI's gpt-2-output-dataset), as Documents.

    Unfiltered web text: when showing one, choose it deliberately (see the data README)."""
    with open(download("webtext-sample", progress=False), encoding="utf-8") as f:
        for i, line in enumerate(f):
            if limit is not None and i >= limit:
                break
            obj = json.loads(line)
            yield Document(f"webtext-{obj['id']}", obj["text"])


def write_shards(docs: Iterable[Document], out_dir: str | Path, tokenizer=None, **kwargs) -> dict:
    """Token shards of the cleaned documents via :func:`gpt2lib.data.prepare` (GPT-2 BPE by default)."""
    if tokenizer is None:
        tokenizer = get_gpt2_tokenizer()
    kwargs.setdefault("progress", False)
    return prepare([d.text for d in docs], out_dir, tokenizer, **kwargs)


def build_sample_shards(out_dir: str | Path, tokenizer=None, *, workers: int = 0, **kwargs) -> tuple[dict, list[StageReport]]:
    """The document half of §2.1 on the WebText sample: clean, de-duplicate, write token shards.

    Returns (shard metadata from :func:`gpt2lib.data.prepare`, one report per stage)."""
    run = run_pipeline(clean_stages() + dedup_stages(), read_webtext_sample(), workers=workers)
    meta = write_shards(run, out_dir, tokenizer, **kwargs)
    return meta, run.reports


# ------------------------------------------------------------------------------ domain statistics

# Two-level public suffixes common in WebText; a heuristic stand-in for the Public Suffix List.
_SECOND_LEVEL = {"co", "com", "org", "net", "ac", "gov", "edu", "ne", "or", "go", "gob", "nic", "ltd", "plc"}


def domain_label(url_or_host: str) -> str:
    """The registered name without its public suffix, as in OpenAI's ``domains.txt``:
    ``news.bbc.co.uk`` -> ``bbc``, ``foo.blogspot.com`` -> ``blogspot``, ``www.nytimes.com`` -> ``nytimes``.
    """
    host = host_of(url_or_host) if "/" in url_or_host else url_or_host.lower().rstrip(".")
    labels = [x for x in host.split(".") if x]
    if len(labels) >= 3 and labels[-2] in _SECOND_LEVEL and len(labels[-1]) == 2:
        return labels[-3]
    return labels[-2] if len(labels) >= 2 else (labels[0] if labels else "")


def domain_counts(urls: Iterable[str]) -> Counter:
    """How many URLs fall in each :func:`domain_label`."""
    return Counter(domain_label(u) for u in urls)


def read_top_domains(path: str | Path | None = None) -> list[tuple[str, int]]:
    """GPT-2's published top-1000 WebText domains as [(domain, count)], most frequent first.

    One published line (rank 217, count 20068) has a count but no domain; it is kept as ``""``."""
    if path is None:
        path = download("webtext-top1000-domains", progress=False)
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) not in (1, 2) or not parts[0].isdigit():
            raise ValueError(f"{path}:{n}: expected 'count domain', got {line!r}")
        out.append((parts[1] if len(parts) == 2 else "", int(parts[0])))
    return out


@dataclass(frozen=True)
class DomainComparison:
    """How a link sample's domains relate to the published top-1000 list."""

    n_links: int
    n_domains: int
    covered_links: float  # fraction of the sample's links whose domain is in the top-1000
    shared_top: list[tuple[str, int, int]]  # (domain, sample count, published rank), by sample count


def compare_domains(sample: Counter, published: Sequence[tuple[str, int]], top: int = 20) -> DomainComparison:
    """Coverage of ``sample`` (domain -> links) by ``published``; the list's blank entry matches nothing."""
    rank = {d: i + 1 for i, (d, _) in enumerate(published) if d}
    n = sum(sample.values())
    covered = sum(c for d, c in sample.items() if d in rank)
    shared = [(d, c, rank[d]) for d, c in sample.most_common() if d in rank][:top]
    return DomainComparison(n, len(sample), covered / n if n else 0.0, shared)


# ------------------------------------------------------------------------------ the whole pipeline, from files

LINK_SUFFIXES = (".ndjson", ".jsonl", ".ndjson.gz", ".jsonl.gz")
HTML_SUFFIXES = (".html", ".htm")
REPORT_FILE = "webtext-report.json"


def _walk(root: Path) -> Iterator[Path]:
    """Every file under ``root``, following links to folders (``rglob`` skips them) but never a loop."""
    seen: set[tuple[int, int]] = set()
    for folder, dirs, names in os.walk(root, followlinks=True):
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs.sort()
        for name in names:
            p = Path(folder) / name
            if p.is_file():
                yield p


def find_inputs(path: str | Path) -> tuple[list[Path], list[Path]]:
    """(link files, HTML files) under ``path`` (a folder, searched recursively, or one file), sorted."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input {path} does not exist")
    files = sorted(_walk(path)) if path.is_dir() else [path]
    links = [p for p in files if p.name.lower().endswith(LINK_SUFFIXES)]
    pages = [p for p in files if p.name.lower().endswith(HTML_SUFFIXES)]
    if not links and not pages:
        raise ValueError(f"{path} holds no link files ({', '.join(LINK_SUFFIXES)}) and no HTML pages "
                         f"({', '.join(HTML_SUFFIXES)})")
    return links, pages


def read_pages(paths: Sequence[str]) -> Iterator[Page]:
    """One :class:`Page` per HTML file (a fetched page; its URL is the file's path)."""
    for p in paths:
        yield Page(str(p), Path(p).read_bytes())


def _claim_out(out: Path) -> None:
    """The output folder must be new or empty: nothing of the user's is overwritten or mixed in."""
    if out.exists() and (not out.is_dir() or any(p.name != LOCK_FILE for p in out.iterdir())):
        if not out.is_dir():
            what = "it is a file"
        elif (out / REPORT_FILE).exists():
            what = "it holds a previous webtext run"
        else:
            names = sorted(p.name for p in out.iterdir() if p.name != LOCK_FILE)
            what = "it holds " + ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise ValueError(f"--out {out} is not empty ({what}); choose a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)


def build_webtext(inputs: str | Path, out_dir: str | Path, *, engine=None, partitions: int | None = None,
                  karma: int = 3, threshold: float = 0.5, tokenizer=None, val_fraction: float = 0.1,
                  log: Callable[[str], None] = print) -> dict:
    """§2.1 end to end from files: link files -> :func:`link_stages` -> ``links.ndjson``; HTML pages ->
    :func:`html_to_text` -> :func:`clean_stages` -> :func:`dedup_stages` -> token shards in
    ``shards/`` (:func:`gpt2lib.engine.prepare_on_engine`); every stage's report in ``webtext-report.json``.

    Runs on ``engine`` (default: this process; see :mod:`gpt2lib.engine`), one partition per link file
    and ``partitions`` groups of pages (default: 2 per worker). Fetching the links is not done (this is an
    offline book): the HTML files stand for the fetched pages. Output equals a serial run's exactly."""
    # every option is checked before any work, so a bad one cannot leave a half-written --out behind
    if partitions is not None and (isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1):
        raise ValueError(f"partitions (--partitions) must be an integer >= 1, got {partitions!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction (--val-fraction) must be in [0, 1), got {val_fraction!r}")
    try:
        page_dedup = dedup_stages(threshold)
    except ValueError as e:
        raise ValueError(f"--threshold: {e}") from None
    links, pages = find_inputs(inputs)
    out = Path(out_dir)
    with output_lock(out, "webtext") as lock:  # one writer per folder
        created = lock.created
        _claim_out(out)
        try:
            return _build_webtext(links, pages, out, engine, partitions, karma, page_dedup, tokenizer, val_fraction,
                                  log)
        except BaseException:  # an error or Ctrl-C: take back what this run wrote, so the same command can rerun
            _remove_own_output(out, created)
            raise


def _remove_own_output(out: Path, created: bool) -> None:
    """Undo an unfinished :func:`build_webtext`: its links file and the (empty, after prepare's own clean-up)
    shards folder; the out folder itself if this run created it. A folder with anything else in it stays."""
    (out / "links.ndjson").unlink(missing_ok=True)
    for folder in [out / "shards"] + ([out] if created else []):
        try:
            folder.rmdir()
        except OSError:  # missing, or not empty (prepare had finished; or not ours): leave it
            pass


def _build_webtext(links, pages, out: Path, engine, partitions, karma, page_dedup, tokenizer, val_fraction,
                   log) -> dict:
    engine = engine or SerialEngine()
    n_parts = partitions or max(1, 2 * engine.workers)
    result: dict = {"engine": engine.name, "workers": engine.workers, "links": {}, "documents": {}}

    def reports_json(run) -> list[dict]:
        return [{"stage": r.name, "seen": r.seen, "kept": r.kept, "dropped": dict(r.dropped),
                 "notes": dict(r.notes)} for r in run.reports]

    if links:
        log(f"links: {len(links)} file(s) on engine {engine.name} ({engine.workers} worker(s))")
        run = run_engine(link_stages(karma), sources=[str(p) for p in links], reader=read_lines, engine=engine,
                         progress=log)
        for r in run.reports:
            log(f"  {r}")
        body = "".join(json.dumps({"u": x.url, "r": x.subreddit, "k": x.karma}) + "\n" for x in run.items)
        atomic_write_bytes(out / "links.ndjson", body.encode("utf-8"))
        result["links"] = {"files": len(links), "kept": len(run.items), "stages": reports_json(run)}
    if pages:
        log(f"pages: {len(pages)} HTML file(s) in {min(n_parts, len(pages))} partition(s)")
        stages = [Stage("html -> text", html_to_text)] + clean_stages() + page_dedup
        sources = [p for p in split_evenly([str(p) for p in pages], min(n_parts, len(pages)))]
        run = run_engine(stages, sources=sources, reader=read_pages, engine=engine, progress=log)
        for r in run.reports:
            log(f"  {r}")
        result["documents"] = {"pages": len(pages), "kept": len(run.items), "stages": reports_json(run)}
        if run.items:
            if tokenizer is None:
                tokenizer = get_gpt2_tokenizer()
            meta = prepare_on_engine(engine, [d.text for d in run.items], out / "shards", tokenizer,
                                     val_fraction=val_fraction if len(run.items) > 1 else 0.0)
            result["shards"] = {s: {k: v[k] for k in ("documents", "tokens")} for s, v in meta["splits"].items()}
            log("shards: " + ", ".join(f"{s} {v['documents']} documents, {v['tokens']:,} tokens"
                                       for s, v in result["shards"].items()))
    atomic_write_bytes(out / REPORT_FILE, json.dumps(result, indent=1).encode("utf-8"))
    return result
