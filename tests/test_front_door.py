"""The front door: README's first screen, the licences, the citation file and the "run it yourself" page agree with
the configuration and the table of contents."""
from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_tools"))
import sync_notebooks  # noqa: E402

README = (ROOT / "README.md").read_text(encoding="utf-8")
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
FIRST_SCREEN = README[:README.index("## Set-up")]


def _hosted() -> str:
    return CONFIG["html"]["baseurl"]


def test_hosted_url_is_configured_once_and_readme_links_to_it():
    """_config.yml's html.baseurl is the hosted book; README's first screen links to it, and every chapter link
    of README is under it."""
    base = _hosted()
    assert re.fullmatch(r"https://[\w.-]+/([\w.-]+/)*", base), base
    assert f"<{base}>" in FIRST_SCREEN
    links = re.findall(r"\((https://[^)\s]+\.html)\)", README)
    assert links and all(link.startswith(base) for link in links), [x for x in links if not x.startswith(base)]


def test_readme_first_screen_lists_every_chapter_of_the_toc_once():
    base = _hosted()
    chapters = [name for name in sync_notebooks.toc_files(ROOT) if (ROOT / f"{name}.ipynb").exists()]
    for name in chapters:
        assert FIRST_SCREEN.count(f"({base}{name}.html)") == 1, f"README does not list {name} once"
    assert len(FIRST_SCREEN.splitlines()) <= 45, "the first screen of README is longer than a screen"


def test_colab_badge_opens_a_chapter_of_the_configured_repository():
    repo = sync_notebooks.repository_url(ROOT).removeprefix("https://github.com/")
    badge = re.search(r"\[!\[Open in Colab\]\([^)]+\)\]\((https://colab\.research\.google\.com/github/([^)]+))\)",
                      FIRST_SCREEN)
    assert badge, "README's first screen has no Colab badge"
    owner, name, blob, branch, path = badge.group(2).split("/", 4)
    assert f"{owner}/{name}" == repo and blob == "blob"
    assert branch == CONFIG["repository"]["branch"]
    assert (ROOT / path).is_file(), f"the badge opens {path}, which does not exist"


def test_quick_start_clones_the_configured_repository_and_installs_cpu_torch_first():
    block = re.search(r"\*\*Quick start\*\*.*?```bash\n(.*?)```", FIRST_SCREEN, re.S)
    assert block, "no quick start block in README's first screen"
    commands = block.group(1).strip().splitlines()
    assert len(commands) == 2
    assert commands[0].startswith(f"git clone {sync_notebooks.repository_url(ROOT)} ")
    assert commands[1].index("download.pytorch.org/whl/cpu") < commands[1].index('pip install -e ".[book]"')
    assert "jupyter" in commands[1].split('".[book]"')[1], "the quick start installs no Jupyter front end"


def test_licences_and_citation():
    """LICENSE is the MIT licence pyproject declares for the code; the text's licence (CC BY 4.0) is stated in
    README, LICENSE and the book's footer; CITATION.cff is valid CFF pointing at the configured repository."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["license"]["text"] == "MIT"
    licence = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert licence.startswith("MIT License") and "Permission is hereby granted, free of charge" in licence
    for text in (README, licence, CONFIG["copyright"]):
        assert "CC BY 4.0" in text
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT"
    assert cff["repository-code"] == sync_notebooks.repository_url(ROOT)
    assert cff["url"] == _hosted()
    assert cff["version"] == pyproject["project"]["version"]
    assert cff["authors"] and cff["title"] and cff["message"]
    paper = cff["references"][0]
    assert paper["title"] == "Language Models are Unsupervised Multitask Learners" and paper["year"] == 2019


def test_run_yourself_and_how_built_pages_are_in_the_book():
    listed = sync_notebooks.toc_files(ROOT)
    assert "book/run_yourself" in listed and "book/how_built" in listed
    page = (ROOT / "book" / "run_yourself.md").read_text(encoding="utf-8")
    for needed in ("Python 3.11 or newer", "download.pytorch.org/whl/cpu", "jupyterlab", "GPT2LIB_CACHE",
                   "HF_HUB_OFFLINE=1", "ATEN_CPU_CAPABILITY=avx2"):
        assert needed in page, f"run_yourself.md does not mention {needed}"
    assert page.index("download.pytorch.org/whl/cpu") < page.index('pip install -e ".[book]"')
    # the pinned numerics line is the library's own
    from gpt2lib import numerics

    exports = re.search(r"export (ATEN_CPU_CAPABILITY=[^\n]+)", page).group(1).split()
    assert dict(e.split("=", 1) for e in exports) == {**numerics.PINNED, "OMP_NUM_THREADS": "1"}
