"""The environment every chapter runs in, in CI (via conftest.py) and by hand (via execute.py).

One thread, no network: the data mirror and tiktoken's cache default to ``../shared`` beside the
checkout when the environment does not already name them. Kernels started afterwards inherit it.
"""
from __future__ import annotations

import os
from pathlib import Path


def set_offline_defaults(root: Path) -> None:
    """Fill in (never override) the variables that make runs offline, single-threaded and repeatable."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    shared = root.parent / "shared"
    if (shared / "data").is_dir():
        os.environ.setdefault("GPT2LIB_DATA_MIRROR", str(shared / "data"))
    if (shared / "tiktoken_cache").is_dir():
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(shared / "tiktoken_cache"))
