"""Stamp the shared set-up cell into every chapter, with the repository URL from ``_config.yml``.

The repository URL lives in exactly one place, ``_config.yml`` (``repository.url``). Every chapter's
first code cell installs gpt2lib from that URL when the chapter runs on Colab, at the commit the chapter's
metadata records (``metadata.gpt2lib.commit``), with the extras the chapter needs (:data:`CHAPTER_EXTRAS`),
keeping installed packages that satisfy pyproject.toml's lower bounds. This script rewrites those cells
from :data:`SETUP_TEMPLATE`; ``--check`` only reports notebooks that disagree (exit 1).

    python book/_tools/sync_notebooks.py          # rewrite the set-up cells
    python book/_tools/sync_notebooks.py --check  # fail if any chapter is out of date
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[2]
SETUP_TAG = "setup"
# The boilerplate is not part of the reading flow: no input shown in the rendered book, and it prints nothing.
SETUP_TAGS = [SETUP_TAG, "remove-input"]
# Extras of gpt2lib a chapter installs on Colab beyond "experiments" (the WebText chapter runs Dask).
CHAPTER_EXTRAS = {"webtext": "experiments,scale"}
DEFAULT_EXTRAS = "experiments"
DEFAULT_REF = "main"  # until the execution tool records the commit a chapter was run with

SETUP_TEMPLATE = '''\
# Set-up, the same in every chapter (written by book/_tools/sync_notebooks.py; hidden in the rendered book).
# On Colab it installs gpt2lib at the commit this chapter was run with; locally, run `pip install -e ".[book]"`
# once in the repository root instead.
import os, subprocess, sys, warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets: plain bars
REPO_URL = "{url}"  # configured once: repository.url in _config.yml
REF, EXTRAS = "{ref}", "{extras}"  # the commit this chapter was executed with; what it needs
FLOORS = {floors}  # pyproject.toml's lower bounds
CLONE = os.environ.get("GPT2_BOOK_CLONE", "/content/gpt2-book")
if "google.colab" in sys.modules:
    try:
        import gpt2lib  # installed by an earlier run of this cell
    except ImportError:  # (again after a failed install: this cell can simply be rerun)
        if not os.path.isdir(os.path.join(CLONE, ".git")):
            if os.path.exists(CLONE):
                raise RuntimeError(f"{{CLONE}} exists but is not a git clone: move it away, then rerun this cell")
            subprocess.run(["git", "clone", "-q", "--filter=blob:none", "--no-checkout", REPO_URL, CLONE], check=True)
        if subprocess.run(["git", "-C", CLONE, "checkout", "-q", REF]).returncode != 0:
            subprocess.run(["git", "-C", CLONE, "fetch", "-q", "origin"], check=True)
            subprocess.run(["git", "-C", CLONE, "checkout", "-q", REF], check=True)
        # keep every installed package that satisfies the floors: pip then upgrades only what it must
        from importlib.metadata import distributions
        from packaging.version import Version

        def _keep(d):
            floor = FLOORS.get((d.metadata["Name"] or "").lower().replace("_", "-"), "0")
            try:
                return Version(d.version) >= Version(floor)
            except ValueError:
                return False
        with open(os.path.join(CLONE, ".installed.txt"), "w") as f:
            f.write("\\n".join(sorted({{f"{{d.metadata['Name']}}=={{d.version}}" for d in distributions() if _keep(d)}})))
        pip = [sys.executable, "-m", "pip", "install", "-q", f"{{CLONE}}[{{EXTRAS}}]"]
        if subprocess.run(pip + ["-c", os.path.join(CLONE, ".installed.txt")]).returncode != 0:
            subprocess.run(pip, check=True)  # a newer version of an installed package is needed after all
        import importlib

        importlib.invalidate_caches()
        import gpt2lib
    os.chdir(os.path.join(CLONE, "book"))  # chapters read a few files of the repository

import torch

device = "cuda" if torch.cuda.is_available() else "cpu"
# SCALE sets each chapter's size: "cpu" runs in about a minute on two CPU cores; "gpu" is the bigger run the
# text describes (the default on a GPU); GPT2_BOOK_SCALE overrides it.
SCALE = os.environ.get("GPT2_BOOK_SCALE", "gpu" if device == "cuda" else "cpu")
if SCALE not in ("cpu", "gpu"):
    raise ValueError(f"GPT2_BOOK_SCALE must be 'cpu' or 'gpu' (got {{SCALE!r}})")
torch.manual_seed(0)'''


def repository_url(root: Path = ROOT) -> str:
    """``repository.url`` from ``_config.yml``: the one place the URL is configured."""
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    return str(config["repository"]["url"]).rstrip("/")


def floors(root: Path = ROOT) -> dict[str, str]:
    """``{package: lower bound}`` from pyproject.toml (names normalised as pip does: lower case, "-")."""
    sys.path.insert(0, str(root / "benchmarks"))
    try:
        from floors import floors as read_floors
    finally:
        sys.path.pop(0)
    return {name.lower().replace("_", "-"): v for name, v in read_floors(root / "pyproject.toml").items()}


def setup_cell_source(url: str, ref: str = DEFAULT_REF, extras: str = DEFAULT_EXTRAS,
                      floor_versions: dict[str, str] | None = None) -> str:
    """The set-up cell every chapter starts with."""
    import textwrap

    items = ", ".join(f"{k!r}: {v!r}" for k, v in (floors() if floor_versions is None else floor_versions).items())
    floors_src = "{" + textwrap.fill(items, 100, subsequent_indent="          ", break_long_words=False,
                                     break_on_hyphens=False) + "}"
    return SETUP_TEMPLATE.format(url=url, ref=ref, extras=extras, floors=floors_src)


def notebook_setup_source(path: Path, url: str, nb=None) -> str:
    """The set-up cell of chapter ``path``: its extras, and the commit its metadata records
    (``metadata.gpt2lib.commit``, written by the execution tool) or :data:`DEFAULT_REF`."""
    nb = nbformat.read(path, as_version=4) if nb is None else nb
    ref = str(nb.metadata.get("gpt2lib", {}).get("commit") or DEFAULT_REF)
    return setup_cell_source(url, ref, CHAPTER_EXTRAS.get(path.stem, DEFAULT_EXTRAS))


def toc_files(root: Path = ROOT) -> list[str]:
    """Every ``file:`` entry of ``_toc.yml`` (root first), without suffix, in reading order."""
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc.get("parts", toc.get("chapters", [])))
    return files


def chapter_notebooks(root: Path = ROOT) -> list[Path]:
    """The notebooks the table of contents lists (chapters that exist as ``.ipynb``)."""
    paths = [root / f"{name}.ipynb" for name in toc_files(root)]
    return [p for p in paths if p.exists()]


def first_code_cell(nb) -> nbformat.NotebookNode | None:
    return next((c for c in nb.cells if c.cell_type == "code"), None)


def sync(path: Path, url: str, check: bool = False) -> bool:
    """Make ``path``'s first code cell the set-up cell; return True if it already was."""
    nb = nbformat.read(path, as_version=4)
    want = notebook_setup_source(path, url, nb)
    cell = first_code_cell(nb)
    ok = cell is not None and cell.source == want and cell.metadata.get("tags", []) == SETUP_TAGS
    if ok or check:
        return ok
    if cell is None or SETUP_TAG not in cell.metadata.get("tags", []):
        cell = nbformat.v4.new_code_cell(want)
        cell.metadata["tags"] = list(SETUP_TAGS)
        cell.pop("id", None)
        cell["id"] = f"{path.stem[:20]}-setup"
        index = 1 if nb.cells and nb.cells[0].cell_type == "markdown" else 0
        nb.cells.insert(index, cell)
    cell.source = want
    cell.metadata["tags"] = list(SETUP_TAGS)
    nbformat.write(nb, path)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report chapters that are out of date")
    args = parser.parse_args(argv)
    url = repository_url()
    stale = [p for p in chapter_notebooks() if not sync(p, url, check=args.check)]
    for p in stale:
        print(f"{'out of date' if args.check else 'updated'}: {p.relative_to(ROOT)}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
