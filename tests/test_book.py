"""The book: its chapters are consistent with _config.yml/_toc.yml, and it builds and renders.

Fast checks (every run): the Colab set-up cell of every chapter carries the one repository URL of _config.yml,
the table of contents lists every chapter notebook, chapters are committed with outputs and without errors, and
every chapter ends with exercises whose solutions are hidden.

Slow browser check: ``jupyter-book build . -W -n --keep-going`` (warnings are errors), then headless Chromium (1280 px
wide, network blocked; driven over the DevTools protocol, tests/_chromium.py) opens every chapter page, which must
exist, show no Python traceback or stderr output, show as many figures as its notebook has image outputs, have no
code, output, table or formula block wider than the content column, and render its math with the local MathJax.
Whole-page screenshots of the model chapter, the claims ledger and the reproduce page go to ``_build/screenshots/``. Without Chromium the check fails under CI
(``CI=true``) and is skipped elsewhere.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "book" / "_tools"))
import sync_notebooks  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
import _chromium  # noqa: E402

CHAPTERS = sync_notebooks.chapter_notebooks(ROOT)
CHAPTER_IDS = [p.stem for p in CHAPTERS]


def _images(nb) -> int:
    return sum("image/png" in o.get("data", {}) or "image/svg+xml" in o.get("data", {})
               for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_toc_lists_every_chapter_notebook_and_nothing_missing():
    """Every notebook in book/ is in _toc.yml, and every _toc.yml entry exists as .ipynb or .md."""
    listed = set(sync_notebooks.toc_files(ROOT))
    on_disk = {f"book/{p.stem}" for p in (ROOT / "book").glob("*.ipynb")}
    assert on_disk <= listed, f"notebooks missing from _toc.yml: {sorted(on_disk - listed)}"
    for name in listed:
        assert (ROOT / f"{name}.ipynb").exists() or (ROOT / f"{name}.md").exists(), f"_toc.yml lists missing {name}"


def test_repository_url_is_configured_once_and_stamped_into_every_chapter():
    """The Colab set-up cell of each chapter is the template with _config.yml's repository.url, unchanged."""
    url = sync_notebooks.repository_url(ROOT)
    assert url.startswith("https://github.com/")
    for path in CHAPTERS:
        want = sync_notebooks.notebook_setup_source(path, url)
        cell = sync_notebooks.first_code_cell(nbformat.read(path, as_version=4))
        assert cell is not None and cell.source == want, (
            f"{path.name}: set-up cell out of date; run python book/_tools/sync_notebooks.py")
        assert "setup" in cell.metadata.get("tags", [])
    # nowhere else: the URL appears in chapters only through the set-up cell
    for path in CHAPTERS:
        text = "".join(c.source for c in nbformat.read(path, as_version=4).cells)
        assert text.count(url) == 1, f"{path.name} mentions the repository URL outside its set-up cell"


@pytest.mark.parametrize("path", CHAPTERS, ids=CHAPTER_IDS)
def test_chapter_is_committed_executed_without_errors(path):
    """Every code cell was executed in order, and no output is an error or stderr text."""
    nb = nbformat.read(path, as_version=4)
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert counts and all(counts), f"{path.name} has unexecuted cells"
    assert counts == sorted(counts), f"{path.name} was not executed top to bottom"
    for c in nb.cells:
        for o in c.get("outputs", []) if c.cell_type == "code" else []:
            assert o.output_type != "error", f"{path.name}: error output {o.get('ename')}"
            assert not (o.output_type == "stream" and o.name == "stderr"), f"{path.name}: stderr output {o.text[:200]!r}"


@pytest.mark.parametrize("path", [p for p in CHAPTERS if p.stem != "bibliography"], ids=lambda p: p.stem)
def test_chapter_ends_with_exercises_and_hidden_solutions(path):
    """The last markdown cells hold an 'Exercises' section with a dropdown admonition for the solutions."""
    nb = nbformat.read(path, as_version=4)
    md = [c.source for c in nb.cells if c.cell_type == "markdown"]
    tail = "\n".join(md[-2:])
    assert "## Exercises" in tail, f"{path.name} does not end with exercises"
    assert re.search(r":class: dropdown", tail), f"{path.name}: solutions are not behind a toggle"


MATHJAX = ROOT / "_build" / "mathjax" / "node_modules" / "mathjax" / "es5" / "tex-mml-chtml.js"
SCREENSHOTS = ("model", "paper_claims", "reproduce")  # whole-page screenshots at 1280 px, for the reader to look at


def _browser_or_skip() -> str:
    binary = _chromium.find_chromium()
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("Chromium is not installed (apt-get install -y chromium)")
        pytest.skip("Chromium is not installed; the browser check runs in CI")
    return binary


def _page(html: str) -> str:
    """A self-contained page for the checker's own tests, laid out like the book's (an article column)."""
    return ("<!DOCTYPE html><html><head><style>article{width:600px;font-family:monospace}</style></head>"
            f"<body><article class='bd-article'>{html}</article></body></html>")


@pytest.mark.browser
def test_overflow_check_reports_a_wide_code_block_and_a_wide_table(tmp_path):
    """The checker itself: a 300-character code line and a wide table are reported, a short one is not."""
    binary = _browser_or_skip()
    page = tmp_path / "page.html"
    page.write_text(_page("<pre>" + "x" * 300 + "</pre><pre>short</pre>"
                          "<table><tr><td style='white-space:nowrap'>" + "wide " * 200 + "</td></tr></table>"))
    with _chromium.Chromium(binary) as browser:
        browser.open(page.as_uri())
        found = browser.evaluate(_chromium.OVERFLOW_JS)["found"]
    assert len(found) == 2 and found[0].startswith("<pre") and found[1].startswith("<table"), found


@pytest.mark.browser
def test_math_check_reports_math_that_was_not_rendered(tmp_path):
    """The checker itself: a math node without MathJax (what a CDN-only page shows offline) is reported raw."""
    binary = _browser_or_skip()
    page = tmp_path / "page.html"
    page.write_text(_page(r'<p>Loss <span class="math notranslate nohighlight">\(p(x)\)</span>.</p>'))
    with _chromium.Chromium(binary) as browser:
        browser.open(page.as_uri())
        math = browser.evaluate(_chromium.MATH_JS)
    assert not math["loaded"] and math["nodes"] == 1 and math["rendered"] == 0 and math["raw"] == [r"\(p(x)\)"]
    assert math["rawDelimiters"] == 1


@pytest.mark.slow
@pytest.mark.browser
def test_book_builds_with_warnings_as_errors_and_every_page_renders():
    """`jupyter-book build . -W -n --keep-going` succeeds; each chapter page opens in Chromium (1280 px wide, network
    blocked), shows no traceback or error/stderr output, shows all the figures its notebook holds, has no code cell,
    output, table or display formula wider than the content column, and renders every formula with the local
    MathJax (no raw TeX); the claims ledger links to cells that exist."""
    binary = _browser_or_skip()
    assert MATHJAX.is_file(), ("MathJax is not installed for the book: "
                               "npm install --prefix _build/mathjax mathjax@3 (the README's build command)")
    build = subprocess.run(["jupyter-book", "build", ".", "-W", "-n", "--keep-going"], cwd=ROOT,
                           capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, f"book build failed:\n{build.stdout[-4000:]}\n{build.stderr[-4000:]}"

    html = ROOT / "_build" / "html"
    shots = ROOT / "_build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    overflow, math_pages = [], []
    with _chromium.Chromium(binary, width=1280) as browser:
        for path in CHAPTERS:
            page = html / "book" / f"{path.stem}.html"
            assert page.is_file(), f"no page for {path.name}"
            browser.open(page.as_uri())
            math = browser.evaluate(_chromium.MATH_JS)
            dom = browser.html()
            assert "</html>" in dom, f"{page.name}: Chromium returned no DOM"
            text = re.sub(r"<(style|script)\b.*?</\1>", "", dom, flags=re.S)  # CSS names token classes "Traceback"
            assert "Traceback" not in text, f"{page.name} shows a Python traceback"
            for css in ("output_stderr", "output stderr", "output error", "output traceback"):
                assert css not in text, f"{page.name} shows {css!r} output"
            shown = len(re.findall(r'<img[^>]+src="[^"]*_images/[^"]+\.(?:png|svg)"', text))  # output figures
            expected = _images(nbformat.read(path, as_version=4))
            assert shown >= expected, f"{page.name}: {shown} figures shown, {expected} expected"

            # math: rendered offline by the local MathJax, none left as raw TeX
            assert all(not src.startswith("http") for src in math["src"]), f"{page.name} loads MathJax from {math['src']}"
            assert not math["raw"] and not math["rawDelimiters"], (
                f"{page.name}: math not rendered offline: {math['raw'][:3]} ({math['rawDelimiters']} raw delimiters)")
            if math["nodes"]:
                assert math["loaded"] and math["rendered"] >= math["nodes"], f"{page.name}: {math}"
                math_pages.append(path.stem)

            # no horizontal overflow of code, outputs, tables or display math
            overflow += [f"{page.name}: {o}" for o in browser.evaluate(_chromium.OVERFLOW_JS)["found"]]
            if path.stem in SCREENSHOTS:
                browser.screenshot(shots / f"{path.stem}.png")
                assert (shots / f"{path.stem}.png").is_file(), f"{page.name}: no screenshot"

            # every link within the book reaches a page and an anchor that exist
            for target, anchor in re.findall(r'<a[^>]+href="(?!https?:|mailto:|#)([^"#]+\.html)#([^"]+)"', dom):
                linked = (page.parent / target).resolve()
                assert linked.is_file(), f"{page.name} links to a missing page {target}"
                assert f'id="{anchor}"' in linked.read_text(encoding="utf-8"), (
                    f"{page.name} links to {target}#{anchor}, which has no such anchor")
    assert not overflow, "blocks wider than the content column at 1280 px:\n" + "\n".join(overflow)
    assert "model" in math_pages, f"the model chapter's formulas were not found (pages with math: {math_pages})"


def test_bibliography_is_author_year_with_et_al_and_titles_as_written():
    """book/_ext/bib_style.py formats references.bib with the labels the text cites ("Radford et al., 2019"),
    "et al." for a trailing "others" (never "and others"), and titles keeping their capitals."""
    import pybtex.database

    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    import bib_style

    bib = pybtex.database.parse_file(str(ROOT / "book" / "references.bib"))
    entries = list(bib_style.Style().format_entries(bib.entries.values()))
    labels = {e.key: e.label for e in entries}
    texts = {e.key: e.text.render_as("text") for e in entries}
    assert labels["radford2019language"] == "Radford et al., 2019"
    assert labels["karpathy2022nanogpt"] == "Karpathy, 2022"
    assert labels["chowdhery2022palm"] == "Chowdhery et al., 2022"
    assert all(re.fullmatch(r".+, (\d{4}[a-z]?|n\.d\.)", label) for label in labels.values()), labels
    assert len(set(labels.values())) == len(labels), "two entries share a label"
    assert "nanoGPT" in texts["karpathy2022nanogpt"]
    assert "Reproducing GPT-2 (124M) in llm.c" in texts["karpathy2024llmc"]
    assert "PaLM: Scaling Language Modeling with Pathways" in texts["chowdhery2022palm"]
    assert not [k for k, t in texts.items() if "and others" in t or "\\$" in t]


@pytest.mark.parametrize("path", CHAPTERS, ids=CHAPTER_IDS)
def test_code_lines_fit_the_content_column(path):
    """No code line of a chapter (the set-up cell aside: it is folded away) is longer than the 88 characters that
    fit the content column at 1280 px; `python book/_tools/reflow_code.py --write <chapter>` reflows them."""
    sys.path.insert(0, str(ROOT / "book" / "_tools"))
    from reflow_code import LIMIT

    nb = nbformat.read(path, as_version=4)
    long = [(c.get("id"), len(line)) for c in nb.cells if c.cell_type == "code" and "setup" not in
            c.metadata.get("tags", []) for line in c.source.splitlines() if len(line) > LIMIT]
    assert not long, f"{path.name}: code lines over {LIMIT} characters (cell id, length): {long}"
