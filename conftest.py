"""Shared test set-up for tests/ and the book's notebooks (nbval): offline, deterministic, one thread.

The suite never touches the network. The data mirror and tiktoken's cache default to the
``../shared`` folder beside the checkout (as in CI) unless the environment already names them, and
the float kernels are pinned (:mod:`gpt2lib.numerics`) unless the environment already chose others.

Notebooks: cells whose outputs depend on float rounding carry a ``drift`` rule in their metadata (a stated
tolerance, or the cell's own asserts; see ``book/_tools/drift.py``) and are checked by it on every machine,
unless this run *proves* it computes the committed bits: its fingerprint (``book/_tools/fingerprint.py``: a hash
of fixed float ops and of the zoo models' trained weights) equals the one the chapter recorded when it was
executed (metadata ``gpt2lib.fingerprint``). Equal kernel variables are not evidence: two CPUs under the same
variables compute other bits. Every cell without a rule is compared exactly everywhere.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "book" / "_tools"))
from offline_env import set_offline_defaults, warm_zoo  # noqa: E402

set_offline_defaults(ROOT)  # before torch is imported, so OMP_NUM_THREADS and the kernel pins take effect

import drift  # noqa: E402
import fingerprint  # noqa: E402
from gpt2lib import numerics  # noqa: E402

KERNEL_PATH = numerics.kernel_path()  # the notebooks' kernels inherit this process's environment

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


def _exact(nb) -> bool:
    """True only when this run computes the bits a notebook's outputs were made with: the fingerprint recorded
    at execution equals this machine's (computed once per process, on first need). The recorded kernel path's
    *name* is not evidence (the same variables give other bits on another vendor's CPU)."""
    recorded = nb.metadata.get("gpt2lib", {}).get("fingerprint")
    return bool(recorded) and recorded == fingerprint.fingerprint()


def _install_drift_rules() -> None:
    try:
        from nbval.plugin import IPyNbCell
    except ImportError:  # nbval not installed: no notebooks are collected
        return
    exact_compare = IPyNbCell.compare_outputs
    if getattr(exact_compare, "_gpt2lib", False):
        return

    def compare_outputs(self, test, ref, skip_compare=None):
        rule = self.cell.metadata.get("drift")
        # A cell checked by its own asserts prints text decided by near-ties of a trained model's logits (sampled
        # or greedy text): even with equal fingerprints MKL may round a near-tie the other way from one run to the
        # next (its results depend on memory alignment without MKL_CBWR), so it is never compared exactly.
        if rule is None or (rule.get("check") != "assert" and _exact(self.parent.nb)):
            return exact_compare(self, test, ref, skip_compare)
        skip = skip_compare or self.parent.skip_compare
        reason = drift.compare_outputs(ref, test, rule, skip)
        report = os.environ.get("GPT2LIB_DRIFT_REPORT")
        if report:  # calibration: how far this run's numbers moved from the committed ones (book/_tools/drift.py)
            drift.append_report(report, self.parent.fspath, self.cell, rule, drift.observed(ref, test, skip), reason)
        if reason is None:
            return True
        exact_compare(self, test, ref, skip_compare)  # fills comparison_traceback with nbval's own diff
        self.comparison_traceback.insert(0, f"not the committed bits (fingerprint {fingerprint.fingerprint()}, "
                                            f"kernel path {KERNEL_PATH}), drift rule {rule}: {reason}")
        return False

    compare_outputs._gpt2lib = True
    IPyNbCell.compare_outputs = compare_outputs


_install_drift_rules()


def pytest_sessionstart(session):
    """Before any chapter runs, train (or find) the zoo models, so no chapter shows their first-use notice.

    Only in the process that starts the notebooks' workers, and only when chapters are part of the run."""
    config = session.config
    if hasattr(config, "workerinput"):
        return
    targets = [str(a) for a in config.args] or list(config.getini("testpaths"))
    if any(t.endswith(".ipynb") or Path(t).resolve() == ROOT / "book" or Path(t).resolve() == ROOT
           for t in (a.split("::")[0] for a in targets)):
        warm_zoo()


# The longest test files start first, so that under `-n 2 --dist loadfile` neither worker is left with
# a long file at the end while the other idles (the portability run alone takes minutes).
_LONGEST_FIRST = ("tests/test_portability.py", "tests/test_portability_isa.py", "tests/test_gpu_path.py")


def pytest_configure(config):
    report = os.environ.get("GPT2LIB_DRIFT_REPORT")
    problem = drift.report_problem(report) if report else None
    if problem:  # once, in one line, rather than as a failure of every drift-ruled cell
        raise pytest.UsageError(f"GPT2LIB_DRIFT_REPORT={report}: {problem}")
    # pytest-xdist would otherwise re-sort files by their number of tests (most first), which put the
    # two-test portability file, the longest of all, last
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(session, config, items):
    def rank(item) -> int:
        path = Path(str(item.fspath)).resolve()
        for i, name in enumerate(_LONGEST_FIRST):
            if path == ROOT / name:
                return i
        return len(_LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within each file and among the rest is kept
