"""Stamp the shared set-up cell into every chapter, with the repository URL from ``_config.yml``.

The repository URL lives in exactly one place, ``_config.yml`` (``repository.url``). Every chapter's
first code cell installs gpt2lib from that URL when the chapter runs on Colab. This script rewrites
those cells from :data:`SETUP_TEMPLATE`; ``--check`` only reports notebooks that disagree (exit 1).

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
SETUP_TAGS = [SETUP_TAG, "hide-input"]  # the boilerplate is folded away in the rendered book

SETUP_TEMPLATE = '''\
# Set-up, the same in every chapter. On Colab it fetches the book's repository and installs gpt2lib
# from it; locally, run `pip install -e ".[book]"` once in the repository root instead.
import os, subprocess, sys, warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets: plain bars
REPO_URL = "{url}"
if "google.colab" in sys.modules:
    if not os.path.isdir("/content/gpt2-book"):
        subprocess.run(["git", "clone", "--depth", "1", REPO_URL, "/content/gpt2-book"], check=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "/content/gpt2-book[experiments]"], check=True)
    os.chdir("/content/gpt2-book/book")  # chapters read a few files of the repository

import torch

device = "cuda" if torch.cuda.is_available() else "cpu"
# SCALE sets each chapter's size: "cpu" runs in about a minute on two CPU cores; "gpu" is the bigger
# run the text describes. The environment variable GPT2_BOOK_SCALE overrides the default.
# GPT2_BOOK_GPU_SIZE=tiny keeps the "gpu" code path but shrinks its loops and slices to seconds (CI runs
# it on CPU with a small stand-in for the released "gpt2" weights).
SCALE = os.environ.get("GPT2_BOOK_SCALE", "gpu" if device == "cuda" else "cpu")
GPU_SIZE = os.environ.get("GPT2_BOOK_GPU_SIZE", "full")
if SCALE not in ("cpu", "gpu") or GPU_SIZE not in ("full", "tiny"):
    raise ValueError(f"GPT2_BOOK_SCALE must be 'cpu' or 'gpu' (got {{SCALE!r}}), "
                     f"GPT2_BOOK_GPU_SIZE 'full' or 'tiny' (got {{GPU_SIZE!r}})")
GPU_TINY = SCALE == "gpu" and GPU_SIZE == "tiny"
torch.manual_seed(0)
print(f"device={{device}}  SCALE={{SCALE!r}}")'''


def repository_url(root: Path = ROOT) -> str:
    """``repository.url`` from ``_config.yml``: the one place the URL is configured."""
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    return str(config["repository"]["url"]).rstrip("/")


def setup_cell_source(url: str) -> str:
    """The set-up cell every chapter starts with."""
    return SETUP_TEMPLATE.format(url=url)


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
    want = setup_cell_source(url)
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
