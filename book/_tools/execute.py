"""Execute chapters in place, the way CI does (one thread, offline data mirror), and time them.

    python book/_tools/execute.py book/model.ipynb [more.ipynb ...]
    python book/_tools/execute.py --all
    python book/_tools/execute.py --out _build/nbcheck book/model.ipynb   # check a chapter, leave it untouched

Run it after editing a chapter, then check it with ``python -m pytest --nbval book/<nb>.ipynb -p no:xdist``.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from gpt2lib.numerics import kernel_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fingerprint import fingerprint  # noqa: E402
from offline_env import set_offline_defaults, warm_zoo  # noqa: E402
from sync_notebooks import ROOT, chapter_notebooks, repository_url, sync  # noqa: E402


def execute(path: Path, timeout: int = 600, out: Path | None = None) -> float:
    """Run every cell of ``path`` in a fresh kernel (cwd = the notebook's folder); return seconds taken.

    The executed notebook replaces ``path``, or is written to ``out/<name>`` (``path`` untouched) when given."""
    if out is None:
        sync(path, repository_url())
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    for cell in nb.cells:  # keep diffs small: no execution timestamps
        cell.metadata.pop("execution", None)
    # The evidence of the bits the outputs were made with: nbval compares exactly only where a run's own
    # fingerprint equals it (book/_tools/fingerprint.py); the kernel path's name is kept for the reader.
    # ... and the library commit it ran on: the set-up cell installs exactly that version on Colab.
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    nb.metadata["gpt2lib"] = {"kernel_path": kernel_path(), "fingerprint": fingerprint(), "commit": commit or None}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        path = out / path.name
    nbformat.write(nb, path)
    if out is None:
        sync(path, repository_url())  # the set-up cell names the recorded commit
    return seconds


def _unusable(path: Path, in_place: bool) -> str | None:
    """Why ``path`` cannot be executed (checked for every notebook before any runs), or None."""
    if not path.is_file():
        return f"{path} does not exist" if not path.exists() else f"{path} is not a file"
    if in_place and not path.is_relative_to(ROOT):
        return (f"{path} is outside the repository {ROOT}: execute.py runs the book's chapters in place; "
                f"pass --out FOLDER to execute a copy of another notebook")
    try:
        nbformat.validate(nbformat.read(path, as_version=4))
    except (OSError, UnicodeDecodeError) as e:
        return f"{path} cannot be read: {e}"
    except (ValueError, TypeError, KeyError, AttributeError, nbformat.ValidationError) as e:  # (NotJSONError too)
        return f"{path} is not a Jupyter notebook: {' '.join(str(e).split())[:200]}"
    return None


def _shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--all", action="store_true", help="every chapter in _toc.yml")
    parser.add_argument("--out", type=Path, help="write executed copies here instead of in place")
    args = parser.parse_args(argv)
    # every input is checked before the (minutes of) model training and execution, so a typo fails at once
    if args.all == bool(args.notebooks):
        parser.error("give the notebooks to execute, or --all (not both)")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} exists and is not a folder")
    paths = chapter_notebooks() if args.all else [p.resolve() for p in args.notebooks]
    for path in paths:
        problem = _unusable(path, in_place=args.out is None)
        if problem:
            parser.error(problem)
    set_offline_defaults(ROOT)  # the same environment as CI's notebook kernels
    warm_zoo()  # trained here, not inside a chapter, so no first-use notice lands in a committed output
    for path in paths:
        print(f"{_shown(path)}: {execute(path, out=args.out):.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
