"""Shared test set-up for tests/ and the book's notebooks (nbval): offline, deterministic, one thread.

The suite never touches the network. The data mirror and tiktoken's cache default to the
``../shared`` folder beside the checkout (as in CI) unless the environment already names them.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "book" / "_tools"))
from offline_env import set_offline_defaults  # noqa: E402

set_offline_defaults(ROOT)  # before torch is imported, so OMP_NUM_THREADS takes effect

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
