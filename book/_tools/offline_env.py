"""The environment every chapter runs in, in CI (via conftest.py) and by hand (via execute.py).

One thread, no network, and the pinned float kernels of :mod:`gpt2lib.numerics` (the one definition of
the numeric environment, also used by the zoo models' training): the data mirror and tiktoken's cache
default to ``../shared`` beside the checkout when the environment does not already name them. Kernels
started afterwards inherit it.
"""
from __future__ import annotations

import os
from pathlib import Path


def set_offline_defaults(root: Path) -> None:
    """Fill in (never override) the variables that make runs offline, single-threaded and repeatable."""
    from gpt2lib import numerics  # imports nothing heavy: torch must not be loaded yet

    numerics.apply(threads=1)  # pinned kernels (where the CPU allows) + OMP/MKL_NUM_THREADS=1
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    shared = root.parent / "shared"
    if (shared / "data").is_dir():
        os.environ.setdefault("GPT2LIB_DATA_MIRROR", str(shared / "data"))
    if (shared / "tiktoken_cache").is_dir():
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(shared / "tiktoken_cache"))


def warm_zoo() -> None:
    """Train (or find cached) the zoo models the chapters load, before any chapter runs.

    Run from the process that then starts the chapters' kernels (after :func:`set_offline_defaults`), so the
    models' first-use notice appears here rather than inside a chapter's committed output.
    """
    from concurrent.futures import ThreadPoolExecutor

    from gpt2lib.zoo import RECIPES, load_pretrained_tiny

    # Each model trains in a child process on its recipe's fixed thread count, so two at a time (on two cores)
    # give the same bits as one after another, in about half the time.
    # GPT2LIB_WARM_ZOO_SKIP=prefix,...: models not trained here (a run that leaves out the chapters using them).
    skip = tuple(p for p in os.environ.get("GPT2LIB_WARM_ZOO_SKIP", "").split(",") if p)
    names = [name for name in RECIPES if not (skip and name.startswith(skip))]
    with ThreadPoolExecutor(max_workers=2) as pool:
        for _ in pool.map(load_pretrained_tiny, names):
            pass
