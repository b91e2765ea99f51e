"""The book: its chapters are consistent with _config.yml/_toc.yml, and it builds and renders.

Fast checks (every run): the Colab set-up cell of every chapter carries the one repository URL of _config.yml,
the table of contents lists every chapter notebook, chapters are committed with outputs and without errors, and
every chapter ends with exercises whose solutions are hidden.

Slow browser check: ``jupyter-book build . -W -n --keep-going`` (warnings are errors), then headless Chromium (1280 px
wide, network blocked; driven over the DevTools protocol, tests/_chromium.py) opens every chapter page, which must
exist, show no Python traceback or stderr output, show as many figures as its notebook has image outputs, have no
code, output, table or formula block wider than the content column, and render its math with the local MathJax.
The claims ledger's status filter shows exactly the claims of the chosen status. Every figure has alt text of its
own (not a file name) and a numbered caption, and the text of every SVG diagram
is drawn at least MIN_FIGURE_TEXT_PX tall at 1280 px. Then at a phone's width (390 px) every page of the book,
chapters and documentation pages alike, must not scroll sideways and no block may overflow the column.
Whole-page screenshots of the model chapter, the claims ledger and the reproduce page go to ``_build/screenshots/``
(and of two pages at 390 px). Without Chromium the check fails under CI (``CI=true``) and is skipped elsewhere.
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
PHONE = 390                   # px: the width of a phone held upright
PHONE_SCREENSHOTS = ("model", "paper_claims")
MIN_FIGURE_TEXT_PX = 11.0     # the smallest text of an SVG diagram as drawn in the column at 1280 px
MIN_PLOT_SCALE = 0.55         # a plot (PNG) is not shown smaller than this fraction of its drawn size at 1280 px
PAGES = [ROOT / f"{name}.{ext}" for name in sync_notebooks.toc_files(ROOT) for ext in ("ipynb", "md")
         if (ROOT / f"{name}.{ext}").exists()]


def _svg_text_px(svg: Path, drawn_width: float) -> float:
    """The smallest font of an SVG (sizes in its user units, the width in pt) as drawn ``drawn_width`` px wide."""
    import xml.etree.ElementTree as ET

    root = ET.parse(svg).getroot()
    width = float(re.sub(r"[a-z]+$", "", root.get("width")))
    sizes = [float(x) for el in root.iter() for x in re.findall(r"font-size:\s*([\d.]+)px", el.get("style", ""))]
    return min(sizes) * drawn_width / width if sizes else float("inf")


def figure_problems(figures: list[dict], page: Path) -> list[str]:
    """What is wrong with a page's figures (FIGURES_JS): alt text that is missing or only a file name, a figure
    without a numbered caption, SVG text drawn smaller than MIN_FIGURE_TEXT_PX, a plot shrunk below MIN_PLOT_SCALE."""
    problems = []
    for f in figures:
        name = f["src"].rsplit("/", 1)[-1]
        if len(f["alt"]) < 20 or f["alt"] in f["src"] or re.fullmatch(r"[\w./-]+\.(png|svg)", f["alt"]):
            problems.append(f"{name}: alt text {f['alt']!r} does not describe the figure")
        if not re.match(r"Fig\. ?\d", f["number"]) or len(f["caption"]) < 20:
            problems.append(f"{name}: no numbered caption")
        if name.endswith(".svg") and f["width"]:
            px = _svg_text_px((page.parent / f["src"]).resolve(), f["width"])
            if px < MIN_FIGURE_TEXT_PX:
                problems.append(f"{name}: smallest text {px:.1f} px")
        elif f["natural"] and f["width"] / f["natural"] < MIN_PLOT_SCALE:
            problems.append(f"{name}: shown at {f['width'] / f['natural']:.2f} of its drawn size")
    return problems


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
def test_phone_check_reports_a_page_that_scrolls_sideways(tmp_path):
    """The checker itself: at 390 px an unbreakable 600 px word makes the page wider than the window; wrapped text
    does not."""
    binary = _browser_or_skip()
    wide, fine = tmp_path / "wide.html", tmp_path / "fine.html"
    body = "<!DOCTYPE html><html><body style='margin:0'><article class='bd-article'><p>{}</p></article></body></html>"
    wide.write_text(body.format("<span style='white-space:nowrap'>" + "x" * 100 + "</span>"), encoding="utf-8")
    fine.write_text(body.format("word " * 100), encoding="utf-8")
    with _chromium.Chromium(binary, width=PHONE) as browser:
        browser.open(wide.as_uri())
        got = browser.evaluate(_chromium.PAGE_WIDTH_JS)
        assert got["scrollWidth"] > got["clientWidth"] == PHONE and got["wide"], got
        browser.open(fine.as_uri())
        got = browser.evaluate(_chromium.PAGE_WIDTH_JS)
        assert got["scrollWidth"] == got["clientWidth"] == PHONE and not got["wide"], got


@pytest.mark.browser
def test_wrapped_code_keeps_its_indentation_and_its_text(tmp_path):
    """book/_static/gpt2book.js + gpt2book.css at 390 px: a long indented line of a highlighted code block wraps,
    its continuation starts 2 characters right of the line's indentation (not at column 0), blank lines keep their
    height, and the block's text (what a copy gives) is unchanged."""
    binary = _browser_or_skip()
    static = ROOT / "book" / "_static"
    code = ('def f():\n\n        return some_function(argument_one, argument_two, argument_three, '
            'argument_four, argument_five)\n')
    highlighted = code.replace("def", "<span class='k'>def</span>").replace("return", "<span class='k'>return</span>")
    page = tmp_path / "code.html"
    page.write_text(f"<!DOCTYPE html><html><head><link rel='stylesheet' href='{(static / 'gpt2book.css').as_uri()}'>"
                    "<style>pre{font-family:monospace;font-size:12px;margin:0}</style></head><body style='margin:0'>"
                    f"<article class='bd-article'><div class='highlight'><pre>{highlighted}</pre></div></article>"
                    f"<script src='{(static / 'gpt2book.js').as_uri()}'></script></body></html>", encoding="utf-8")
    with _chromium.Chromium(binary, width=PHONE) as browser:
        browser.open(page.as_uri())
        got = browser.evaluate(r"""(() => {
          const pre = document.querySelector('pre'), lines = pre.querySelectorAll('span.gb-line');
          const probe = document.createElement('span'); probe.textContent = 'x'; pre.appendChild(probe);
          const ch = probe.getBoundingClientRect().width; probe.remove();
          const range = document.createRange(); range.selectNodeContents(lines[2]);
          const rows = {};  // the leftmost start of each visual row of the long line
          for (const r of range.getClientRects())
            rows[Math.round(r.top)] = Math.min(rows[Math.round(r.top)] ?? Infinity, r.left);
          return {text: pre.textContent, lines: lines.length, ch, left: pre.getBoundingClientRect().left,
                  rows: Object.keys(rows).map(Number).sort((a, b) => a - b).map(top => rows[top]),
                  blank: lines[1].getBoundingClientRect().height, first: lines[0].getBoundingClientRect().height,
                  scroll: pre.scrollWidth - pre.clientWidth};
        })()""")
    assert got["text"] == code.rstrip("\n") and got["lines"] == 3, got
    assert got["scroll"] <= 1, f"the block scrolls sideways: {got}"
    first, *continued = got["rows"]  # the first row starts with the 8 spaces of indentation, at the block's left
    assert continued, f"the long line did not wrap at {PHONE} px: {got}"
    assert all(abs((x - first) - 10 * got["ch"]) <= 1 for x in continued), f"continuation not at indent + 2: {got}"
    assert abs(got["blank"] - got["first"]) <= 1, f"a blank line lost its height: {got}"


@pytest.mark.browser
def test_figure_check_reports_missing_alt_caption_and_small_text(tmp_path):
    """The checker itself: an image whose alt is its file name and that has no caption, and an SVG whose 10 pt text
    is drawn at a third of its size, are reported; a captioned figure with real alt text and large text is not."""
    binary = _browser_or_skip()
    svg = ("<svg xmlns='http://www.w3.org/2000/svg' width='600pt' height='100pt' viewBox='0 0 600 100'>"
           "<text x='10' y='50' style='font-size: 10px'>text</text></svg>")
    (tmp_path / "d.svg").write_text(svg, encoding="utf-8")
    page = tmp_path / "page.html"
    page.write_text(_page(
        "<img src='d.svg' alt='d.svg' style='width:200px'>"
        "<figure><img src='d.svg' alt='A diagram of one word drawn large enough' style='width:800px'>"
        "<figcaption><span class='caption-number'>Fig. 1 </span>A caption that says what it shows</figcaption>"
        "</figure>"))
    with _chromium.Chromium(binary) as browser:
        browser.open(page.as_uri())
        figures = browser.evaluate(_chromium.FIGURES_JS)
    problems = figure_problems(figures, page)
    assert len(figures) == 2 and len(problems) == 3, problems
    assert all(p.startswith("d.svg") for p in problems)
    assert not figure_problems(figures[1:], page)


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
    overflow, math_pages, figures = [], [], []
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

            # every figure: alt text, a numbered caption, text large enough to read
            figures += [f"{page.name}: {p}" for p in figure_problems(browser.evaluate(_chromium.FIGURES_JS), page)]

            # no horizontal overflow of code, outputs, tables or display math
            overflow += [f"{page.name}: {o}" for o in browser.evaluate(_chromium.OVERFLOW_JS)["found"]]
            if path.stem == "paper_claims":  # the ledger's status filter shows exactly the claims of a status
                ledger_filter = browser.evaluate(_chromium.LEDGER_FILTER_JS)
                assert ledger_filter and len(ledger_filter) >= 3, f"the ledger has no status filter: {ledger_filter}"
                total = ledger_filter.pop("all")["shown"]
                assert all(v["statuses"] == [k] and f"({v['shown']})" in v["label"] for k, v in ledger_filter.items())
                assert sum(v["shown"] for v in ledger_filter.values()) == total, ledger_filter
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

    # a phone: every page of the book, no sideways scrolling, no block wider than the column
    phone = []
    with _chromium.Chromium(binary, width=PHONE, height=844) as browser:
        for path in PAGES:
            page = html / "book" / f"{path.stem}.html"
            browser.open(page.as_uri())
            browser.evaluate(_chromium.MATH_JS)  # typeset first: formulas take their final width
            width = browser.evaluate(_chromium.PAGE_WIDTH_JS)
            if width["scrollWidth"] > width["clientWidth"] + 1:
                phone.append(f"{page.name}: page {width['scrollWidth']} px wide in a {width['clientWidth']} px "
                             f"window; widest: {width['wide']}")
            phone += [f"{page.name}: {o}" for o in browser.evaluate(_chromium.OVERFLOW_PHONE_JS)["found"]]
            if path.stem in PHONE_SCREENSHOTS:
                browser.screenshot(shots / f"{path.stem}-{PHONE}px.png")
    assert not phone, f"pages that do not fit a {PHONE} px phone:\n" + "\n".join(phone)
    assert not figures, "figures a reader cannot read or a screen reader cannot describe:\n" + "\n".join(figures)


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
