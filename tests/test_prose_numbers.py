"""Every number the chapters' prose states is accounted for, so an edit of a number cannot drift from its source.

The rule, for each chapter (book/*.ipynb): every number in a markdown cell must be one of

* **quoted**: inside a blockquote (``> ...``) or a double-quoted phrase, i.e. the paper's (or another source's)
  own words, which the ledger and the chapters cite;
* **computed**: equal to a number in one of the chapter's code cells (its settings and ``assert`` statements) or in
  the committed outputs of its code cells, after rounding that number to the decimals the prose shows
  (so "about 21 times" matches a printed ``21.2x``, and ``0.13`` matches ``0.126``);
* **cited**: a number of the paper-claim ledger (tests/paper_claims.toml: its claims and the paper's tables);
* **given**: listed for that chapter in the ledger's ``[[prose]]`` entries, each with the reason it is neither
  printed nor the paper's (a setting of the book, a hand calculation in a solution, a number of another source).

Not counted as claims: numbers inside inline code, math and code fences (they are code and formulas, not
statements), section/table/figure/exercise/block/layer numbers, list markers, integers below 10, and years.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from test_claims import LEDGER_DATA  # noqa: E402

CHAPTERS = sorted((ROOT / "book").glob("*.ipynb"))
PROSE = LEDGER_DATA.get("prose", [])

_CLAIM_NUMBER = re.compile(r"(?<![\w.,/\-−])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?=(?:%|x|×)?(?![\w\-]))")
_ANY_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?")
_STRUCTURAL = re.compile(r"(§|Tables? |Figures? |Section |Part |[Ee]xercises? |steps? |[Bb]locks? |[Ll]ayers? |rung |"
                         r"[Cc]hapter )\d+(\.\d+)*")


def prose_text(markdown: str) -> str:
    """The statements of a markdown cell: without quotes, code, math, link targets and structural numbers."""
    s = "\n".join(line for line in markdown.splitlines() if not line.lstrip().startswith(">"))
    s = re.sub(r"```(?!\{)[^\n]*\n.*?```", " ", s, flags=re.S)  # code fences; {admonition} bodies stay
    s = re.sub(r"^```.*$|^:[\w-]+:.*$", " ", s, flags=re.M)  # fences and directive options (:class:, :width: ...)
    s = re.sub(r"`[^`]*`", " ", s)  # inline code, {cite}`...`, {doc}`...`
    s = re.sub(r"\$\$.*?\$\$|\$[^$]*\$", " ", s, flags=re.S)  # math
    s = re.sub(r"\]\([^)]*\)", "]", s)  # link targets
    s = re.sub(r"\"[^\"\n]*\"|“[^”]*”", " ", s)  # quoted words
    s = _STRUCTURAL.sub(" ", s)
    return re.sub(r"^\s*\d+\.\s", " ", s, flags=re.M)  # list markers


def claimed_numbers(markdown: str) -> list[str]:
    """The numbers a markdown cell states, as written ("2,048", "0.13"), by the module docstring's rule."""
    out = []
    for m in _CLAIM_NUMBER.finditer(prose_text(markdown)):
        token, value = m.group(0), float(m.group(0).replace(",", ""))
        if "." not in token and (value < 10 or 1990 <= value <= 2029):
            continue
        out.append(token)
    return out


def number_pool(texts) -> set[float]:
    pool = set()
    for text in texts:
        for m in _ANY_NUMBER.finditer(text):
            try:
                pool.add(abs(float(m.group(0).replace(",", ""))))
            except ValueError:
                pass
    return pool


def accounted(token: str, pool: set[float]) -> bool:
    """``token`` equals a number of ``pool`` rounded to the decimals ``token`` shows."""
    decimals = len(token.split(".")[1]) if "." in token else 0
    value = float(token.replace(",", ""))
    return any(abs(round(x, decimals) - value) < 1e-9 for x in pool)


def _strings(obj) -> list[str]:
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _strings(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return [str(obj)]


LEDGER_POOL = number_pool(_strings({k: v for k, v in LEDGER_DATA.items() if k != "prose"}))


def chapter_pool(nb) -> set[float]:
    texts = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        texts.append(cell.source)
        for out in cell.get("outputs", []):
            if "text" in out:
                texts.append("".join(out["text"]))
            for mime, value in out.get("data", {}).items():
                if mime.startswith("text/"):
                    texts.append("".join(value) if isinstance(value, list) else str(value))
    return number_pool(texts)


def given(chapter: Path) -> set[str]:
    name = f"book/{chapter.name}"
    return {n for entry in PROSE if entry["chapter"] == name for n in entry["numbers"]}


def unaccounted(chapter: Path) -> list[tuple[str, str]]:
    nb = nbformat.read(chapter, as_version=4)
    pool, allowed = chapter_pool(nb), given(chapter)
    missing = []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for token in claimed_numbers(cell.source):
            if token in allowed or accounted(token, pool) or accounted(token, LEDGER_POOL):
                continue
            missing.append((cell.get("id"), token))
    return missing


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_every_number_of_the_prose_is_printed_asserted_cited_or_given(chapter):
    missing = unaccounted(chapter)
    assert not missing, (
        f"{chapter.name}: numbers in the prose that no output, code cell or ledger entry of the chapter states "
        f"(cell id, number): {missing}. Print or assert them in the chapter, cite them in tests/paper_claims.toml, "
        "or list them in a [[prose]] entry with the reason."
    )


def test_prose_entries_name_chapters_numbers_they_state_and_a_reason():
    """Each [[prose]] entry names a chapter, a reason, and only numbers its prose states (no stale entries)."""
    for entry in PROSE:
        chapter = ROOT / entry["chapter"]
        assert chapter.is_file(), entry["chapter"]
        assert entry.get("why", "").strip(), f"[[prose]] for {entry['chapter']} needs a 'why'"
        nb = nbformat.read(chapter, as_version=4)
        stated = {t for c in nb.cells if c.cell_type == "markdown" for t in claimed_numbers(c.source)}
        stale = set(entry["numbers"]) - stated
        assert not stale, f"{entry['chapter']}: [[prose]] lists numbers its prose does not state: {sorted(stale)}"


def test_the_rule_skips_quotes_code_math_and_structure_and_rounds_to_the_shown_decimals():
    md = ('> "the paper says 42.5" (§3.2)\n'
          'The paper says "exactly 77.7" here. Table 3 and §2.3, exercise 4, block 12; `lr=3e-4`; $0.02/\\sqrt{48}$.\n'
          "1. A list item in 2019 with 7 cats.\n"
          "We measured about 21 times the gradient, 0.13 nats and 1,408 documents (12.5%).")
    assert claimed_numbers(md) == ["21", "0.13", "1,408", "12.5"]
    assert accounted("21", {21.2}) and accounted("0.13", {0.126}) and accounted("1,408", {1408.0})
    assert not accounted("20", {21.2}) and not accounted("0.13", {0.136}) and not accounted("12.5", {12.0})


def test_the_check_covers_many_numbers():
    """The rule is not vacuous: it sees a few hundred numbers across the chapters."""
    total = sum(len(claimed_numbers(c.source)) for p in CHAPTERS
                for c in nbformat.read(p, as_version=4).cells if c.cell_type == "markdown")
    assert total > 200, total
