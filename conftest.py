"""Shared test set-up for tests/ and the book's notebooks (nbval): offline, deterministic, one thread.

The suite never touches the network. The data mirror and tiktoken's cache default to the
``../shared`` folder beside the checkout (as in CI) unless the environment already names them.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent
_SHARED = ROOT.parent / "shared"

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if (_SHARED / "data").is_dir():
    os.environ.setdefault("GPT2LIB_DATA_MIRROR", str(_SHARED / "data"))
if (_SHARED / "tiktoken_cache").is_dir():
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(_SHARED / "tiktoken_cache"))

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

torch.set_num_threads(1)

# Property tests: no wall-clock deadlines (the machine is shared and small); in CI the examples are
# derived from each test's name, so a run is reproducible and a red build can be replayed exactly.
settings.register_profile("default", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture(scope="session")
def data_mirror() -> Path:
    """The offline data mirror (laid out like ``../shared/data``)."""
    path = os.environ.get("GPT2LIB_DATA_MIRROR")
    if not path or not Path(path).is_dir():
        pytest.fail("GPT2LIB_DATA_MIRROR is not set to a folder laid out like ../shared/data")
    return Path(path)
