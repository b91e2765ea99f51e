"""The book: its chapters are consistent with _config.yml/_toc.yml, and it builds and renders.

Fast checks (every run): the Colab set-up cell of every chapter carries the one repository URL of _config.yml,
the table of contents lists every chapter notebook, chapters are committed with outputs and without errors, and
every chapter ends with exercises whose solutions are hidden.

Slow browser check: ``jupyter-book build . -W -n --keep-going`` (warnings are errors), then headless Chromium opens
every chapter page, which must exist, show no Python traceback or stderr output, and show as many figures as its
notebook has image outputs. Screenshots go to ``_build/screenshots/``. Without Chromium the check fails under CI
(``CI=true``) and is skipped elsewhere.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "book" / "_tools"))
import sync_notebooks  # noqa: E402

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
    want = sync_notebooks.setup_cell_source(url)
    for path in CHAPTERS:
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


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _chrome(binary: str, *args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}"]
        return subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.browser
def test_book_builds_with_warnings_as_errors_and_every_page_renders():
    """`jupyter-book build . -W -n --keep-going` succeeds; each chapter page opens in Chromium, shows no traceback or
    error/stderr output, and shows all the figures its notebook holds."""
    binary = _chromium()
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("Chromium is not installed (apt-get install -y chromium)")
        pytest.skip("Chromium is not installed; the browser check runs in CI")
    build = subprocess.run(["jupyter-book", "build", ".", "-W", "-n", "--keep-going"], cwd=ROOT,
                           capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, f"book build failed:\n{build.stdout[-4000:]}\n{build.stderr[-4000:]}"

    shots = ROOT / "_build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    for path in CHAPTERS:
        page = ROOT / "_build" / "html" / "book" / f"{path.stem}.html"
        assert page.is_file(), f"no page for {path.name}"
        dom = _chrome(binary, "--virtual-time-budget=5000", "--dump-dom", page.as_uri()).stdout
        assert "</html>" in dom, f"{page.name}: Chromium returned no DOM"
        dom = re.sub(r"<(style|script)\b.*?</\1>", "", dom, flags=re.S)  # CSS names token classes "Traceback"
        assert "Traceback" not in dom, f"{page.name} shows a Python traceback"
        for css in ("output_stderr", "output stderr", "output error", "output traceback"):
            assert css not in dom, f"{page.name} shows {css!r} output"
        shown = len(re.findall(r'<img[^>]+src="[^"]*_images/[^"]+\.(?:png|svg)"', dom))  # output figures
        expected = _images(nbformat.read(path, as_version=4))
        assert shown >= expected, f"{page.name}: {shown} figures shown, {expected} expected"
        shot = _chrome(binary, "--window-size=1280,2400", f"--screenshot={shots / (path.stem + '.png')}",
                       page.as_uri())
        assert (shots / f"{path.stem}.png").is_file(), f"{page.name}: no screenshot ({shot.stderr[-500:]})"
