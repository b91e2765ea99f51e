"""HTML -> main text, and how to score it (GPT-2 §2.1).

"To extract the text from HTML responses we use a combination of the Dragnet and Newspaper content
extractors" (Radford et al. 2019, §2.1). Neither library installs cleanly today, so the book compares
their *stored* outputs on the 181-page article-extraction benchmark (scrapinghub) with two extractors
that run here:

- :func:`extract_text` — a small text-density extractor on the stdlib ``html.parser``, written to be
  read in one sitting (the teaching version);
- :func:`extract_trafilatura` — trafilatura, a well-kept extraction library (optional dependency).

Decoding: :func:`decode_html` turns raw bytes into ``str`` and never raises. It tries, in order, a
byte-order mark, the charset the caller passes (an HTTP ``Content-Type`` header), a ``<meta>``
charset in the first 4 KiB, strict UTF-8, and finally Windows-1252 with replacement characters. It
reports which rule won so a pipeline can count the non-UTF-8 pages.

Scoring (:func:`bag_prf`): precision/recall/F1 of the *multiset* ("bag") of tokens of the prediction
against the gold text: ``tp = sum_t min(count_pred(t), count_gold(t))``, ``P = tp / |pred|``,
``R = tp / |gold|``. The book's main metric uses whitespace tokens (``str.split``), n = 1. The
benchmark's own ``evaluate.py`` uses a stricter variant: 4-gram shingles of ``\\w+`` tokens, per-page
counts normalised to sum to one, and F1 taken from the *mean* precision and *mean* recall
(:func:`benchmark_scores`); we implement both so our numbers can be checked against its README.
"""
from __future__ import annotations

import codecs
import gzip
import json
import re
import statistics
from collections import Counter
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Callable, Iterable, Mapping

from gpt2lib.datasets import download

# --------------------------------------------------------------------------------------- decoding

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


@dataclass(frozen=True)
class DecodedHTML:
    """Text of a page and how it was decoded: ``how`` is one of bom/declared/meta/utf-8/fallback."""

    text: str
    encoding: str
    how: str


def _try_decode(data: bytes, name: str | None) -> tuple[str, str] | None:
    """(text, codec name) if ``name`` is a known codec that decodes ``data`` strictly, else None."""
    if not name:
        return None
    try:
        codec = codecs.lookup(name.strip().lower())
    except LookupError:  # an unknown charset name in the page is not our error
        return None
    try:
        return data.decode(codec.name), codec.name
    except (UnicodeError, LookupError, ValueError, TypeError):  # LookupError: "base64" is no text codec
        return None


def decode_html(data: bytes, declared: str | None = None) -> DecodedHTML:
    """Decode raw HTML bytes; never raises for any ``bytes`` input (see the module docstring)."""
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"decode_html expects bytes, got {type(data).__name__}")
    for bom, name in _BOMS:
        if data.startswith(bom) and (got := _try_decode(data, name)):
            return DecodedHTML(got[0].lstrip("\ufeff"), name, "bom")
    if got := _try_decode(data, declared):
        return DecodedHTML(*got, "declared")
    m = _META_CHARSET.search(data[:4096])
    if m and (got := _try_decode(data, m.group(1).decode("ascii", "replace"))):
        return DecodedHTML(*got, "meta")
    if got := _try_decode(data, "utf-8"):
        return DecodedHTML(*got, "utf-8")
    return DecodedHTML(data.decode("cp1252", errors="replace"), "cp1252", "fallback")


# ------------------------------------------------------------------- the teaching extractor

_SKIP = {"script", "style", "noscript", "template", "svg", "iframe", "head", "nav", "footer",
         "aside", "form", "button", "select", "textarea", "figcaption"}
_BLOCK = {"p", "div", "section", "article", "main", "li", "ul", "ol", "dl", "dt", "dd", "td", "tr",
          "table", "blockquote", "pre", "h1", "h2", "h3", "h4", "h5", "h6", "header", "br", "hr",
          "figure", "address", "body", "html", "center"}
_VOID = {"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "embed", "source",
         "track", "wbr", "param"}


@dataclass
class Block:
    """A run of text between block-level tags: ``path`` is the stack of open tags above it."""

    text: str
    words: int
    link_words: int
    tag: str
    path: tuple[str, ...]

    @property
    def link_density(self) -> float:
        return self.link_words / max(1, self.words)


class _BlockParser(HTMLParser):
    """Splits a page into text blocks, skipping scripts, navigation and forms."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.stack: list[str] = []  # open elements, each "tag#n" so siblings stay distinct
        self.skip = 0
        self.in_link = 0
        self.parts: list[str] = []
        self.link_words = 0
        self.n = 0

    def parse_html_declaration(self, i: int) -> int:
        # html.parser raises AssertionError on some malformed "<![" sections ("<![foo[", "<![ x");
        # a browser would show them as text, so do we: skip the "<!" and go on.
        try:
            return super().parse_html_declaration(i)
        except AssertionError:
            return i + 2

    def _flush(self) -> None:
        text = " ".join("".join(self.parts).split())
        if text:
            tag = self.stack[-1].split("#")[0] if self.stack else ""
            self.blocks.append(Block(text, len(text.split()), self.link_words, tag, tuple(self.stack)))
        self.parts, self.link_words = [], 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in _SKIP:
            if tag not in _VOID:
                self.skip += 1
            return
        if tag in _BLOCK:
            self._flush()
        if tag in _VOID:
            return
        if tag == "a":
            self.in_link += 1
        self.n += 1
        self.stack.append(f"{tag}#{self.n}")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
            return
        if tag in _BLOCK:
            self._flush()
        # close up to the matching open tag (HTML in the wild is not well nested)
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i].split("#")[0] == tag:
                del self.stack[i:]
                break
        if tag == "a":
            self.in_link = max(0, self.in_link - 1)

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        self.parts.append(data)
        if self.in_link:
            self.link_words += len(data.split())

    def close(self) -> None:
        super().close()
        self._flush()


def html_blocks(html: str) -> list[Block]:
    """The text blocks of a page in document order (only the tags in ``_SKIP`` are left out)."""
    parser = _BlockParser()
    parser.feed(html)
    parser.close()
    return parser.blocks


def extract_text(html: str | bytes, *, min_words: int = 12, max_link_density: float = 0.3) -> str:
    """Main text of a page by text density: a readable stand-in for Dragnet/Newspaper.

    1. Split the page into blocks (:func:`html_blocks`). A *good* block has at least ``min_words``
       words and at most ``max_link_density`` of them inside links: article paragraphs are long and
       unlinked, menus and related-story lists are short or mostly links.
    2. The article is the element whose subtree holds the most good words; only blocks inside it
       are kept (this drops long comments or teasers elsewhere on the page).
    3. Inside it, keep good blocks plus short non-link blocks (headings, one-line paragraphs) that
       sit between two good blocks.
    """
    if isinstance(html, (bytes, bytearray)):
        html = decode_html(html).text
    blocks = html_blocks(html)
    good = [b.words >= min_words and b.link_density <= max_link_density for b in blocks]
    if not any(good):
        return ""
    # words of good text under each open element; the best container is the deepest element
    # that still holds at least 60% of the best element's words.
    under: Counter[str] = Counter()
    depth: dict[str, int] = {}
    for b, g in zip(blocks, good):
        if g:
            for d, node in enumerate(b.path):
                under[node] += b.words
                depth[node] = d
    top = max(under.values())
    root = max((n for n, w in under.items() if w >= 0.6 * top), key=lambda n: depth[n])
    inside = [root in b.path for b in blocks]
    idx = [i for i, (g, ok) in enumerate(zip(good, inside)) if g and ok]
    first, last = idx[0], idx[-1]
    keep = []
    for i in range(first, last + 1):
        b = blocks[i]
        if not inside[i]:
            continue
        if good[i] or (b.link_density <= max_link_density and b.words >= 1):
            keep.append(b.text)
    return "\n".join(keep)


def extract_trafilatura(html: str | bytes) -> str:
    """Main text by trafilatura (``pip install gpt2lib[experiments]``); '' when it finds none."""
    try:
        import trafilatura  # optional dependency, imported on use
    except ImportError as e:  # lxml >= 5.2 moved lxml.html.clean out; trafilatura's jusText needs it
        raise ImportError(f"trafilatura is not usable ({e}); install it with "
                          "`pip install trafilatura lxml_html_clean` (or gpt2lib[experiments])") from e

    if isinstance(html, (bytes, bytearray)):
        html = decode_html(html).text
    return trafilatura.extract(html, include_comments=False, include_tables=True) or ""


# ------------------------------------------------------------------------------------- scoring

@dataclass(frozen=True)
class PRF:
    precision: float
    recall: float
    f1: float


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def bag_prf(pred: str, gold: str) -> PRF:
    """Token-level P/R/F1 of the bag of whitespace tokens (see the module docstring).

    Two empty texts agree perfectly (1, 1, 1); an empty prediction of a non-empty gold has P = 1 by
    convention (it claims nothing wrong) and R = 0, hence F1 = 0.
    """
    p_tok, g_tok = Counter(pred.split()), Counter(gold.split())
    n_pred, n_gold = sum(p_tok.values()), sum(g_tok.values())
    tp = sum((p_tok & g_tok).values())
    precision = tp / n_pred if n_pred else 1.0
    recall = tp / n_gold if n_gold else 1.0
    return PRF(precision, recall, _f1(precision, recall))


_WORD = re.compile(r"\w+")


def shingle_counts(pred: str, gold: str, n: int = 4) -> tuple[float, float, float]:
    """(tp, fp, fn) over ``n``-gram shingles of ``\\w+`` tokens, normalised to sum to 1.

    A text shorter than ``n`` tokens is one (short) shingle; the benchmark's ``evaluate.py`` does
    the same, which is what lets :func:`benchmark_scores` reproduce its published table.
    """
    def shingles(text: str) -> Counter:
        tok = _WORD.findall(text)
        return Counter(tuple(tok[i:i + n]) for i in range(max(1, len(tok) - n + 1)) if tok[i:i + n])

    p, g = shingles(pred), shingles(gold)
    tp = sum((p & g).values())
    fp = sum((p - g).values())
    fn = sum((g - p).values())
    s = tp + fp + fn
    return (tp / s, fp / s, fn / s) if s else (0.0, 0.0, 0.0)


def benchmark_scores(preds: Mapping[str, str], gold: Mapping[str, str], n: int = 4) -> PRF:
    """Precision and recall averaged over pages, F1 of those means: the benchmark's protocol.

    Pages where P (or R) is undefined (tp + fp = 0, resp. tp + fn = 0) are left out of that mean;
    two empty texts count as perfect.
    """
    if preds.keys() != gold.keys():
        raise ValueError(f"prediction ids differ from gold ids ({len(preds)} vs {len(gold)} pages)")
    ps, rs = [], []
    for key in gold:
        tp, fp, fn = shingle_counts(preds[key], gold[key], n)
        if fp == fn == 0:
            ps.append(1.0), rs.append(1.0)
            continue
        if tp + fp > 0:
            ps.append(tp / (tp + fp))
        if tp + fn > 0:
            rs.append(tp / (tp + fn))
    # a page with an empty prediction has no precision (nothing predicted); all empty: precision 0
    p, r = (statistics.mean(ps) if ps else 0.0), (statistics.mean(rs) if rs else 0.0)
    return PRF(p, r, _f1(p, r))


def mean_bag_scores(preds: Mapping[str, str], gold: Mapping[str, str]) -> PRF:
    """Mean over pages of :func:`bag_prf` precision, recall and F1 (the book's table)."""
    if preds.keys() != gold.keys():
        raise ValueError(f"prediction ids differ from gold ids ({len(preds)} vs {len(gold)} pages)")
    scores = [bag_prf(preds[k], gold[k]) for k in gold]
    return PRF(*(statistics.mean(getattr(s, f) for s in scores) for f in ("precision", "recall", "f1")))


def run_extractor(extractor: Callable[[str], str], pages: Mapping[str, bytes]) -> dict[str, str]:
    """Apply ``extractor`` to every decoded page: {id: text}."""
    return {key: extractor(decode_html(data).text) for key, data in pages.items()}


def all_text(html: str) -> str:
    """Every text block outside scripts, styles, nav, footers and forms, with no density filter:
    the high-recall / low-precision baseline ("html-text" in the benchmark's README)."""
    return "\n".join(b.text for b in html_blocks(html))


STORED_EXTRACTORS = ("dragnet", "newspaper")  # the two extractors the paper combined (§2.1)


def load_benchmark(ids: Iterable[str] | None = None) -> tuple[dict[str, bytes], dict[str, str], dict[str, dict[str, str]]]:
    """The 181-page article-extraction benchmark via :func:`gpt2lib.datasets.download`.

    Returns (raw pages {id: bytes}, gold text {id: text}, stored outputs {"dragnet"/"newspaper": {id: text}}),
    restricted to ``ids`` (all pages, sorted, by default).
    """
    def load(name: str) -> dict:
        return json.loads(download(name, progress=False).read_text(encoding="utf-8"))

    truth = load("html-extraction-ground-truth")
    keys = sorted(truth) if ids is None else list(ids)
    unknown = [k for k in keys if k not in truth]
    if unknown:
        raise KeyError(f"not benchmark page ids: {unknown[:3]}")
    gold = {k: truth[k].get("articleBody", "") for k in keys}
    pages = {k: gzip.decompress(download(f"html-page/{k[:16]}", progress=False).read_bytes()) for k in keys}
    stored = {}
    for name in STORED_EXTRACTORS:
        out = load(f"html-extraction-{name}")
        stored[name] = {k: out[k].get("articleBody", "") for k in keys}
    return pages, gold, stored
