"""Engine errors a user can meet are one line (gpt2lib.engine.EngineError): a Dask scheduler without workers
fails within the stated timeout naming the scheduler, instead of waiting forever; a missing Dask is an
install hint."""
from __future__ import annotations

import sys
import time

import pytest

from gpt2lib.engine import EngineError, get_engine


def test_a_dask_scheduler_without_workers_fails_within_the_timeout_naming_it():
    distributed = pytest.importorskip("distributed")
    import logging

    with distributed.LocalCluster(n_workers=0, dashboard_address=":0", silence_logs=logging.ERROR) as cluster:
        address = cluster.scheduler_address
        t0 = time.monotonic()
        with pytest.raises(EngineError, match=f"the Dask scheduler at {address} has no workers \\(waited 2 s"):
            get_engine("dask", address=address)  # the timeout from $GPT2LIB_ENGINE_WORKER_TIMEOUT (2 s here)
        elapsed = time.monotonic() - t0
    assert elapsed < 10


@pytest.fixture(autouse=True)
def _short_wait(monkeypatch):
    monkeypatch.setenv("GPT2LIB_ENGINE_WORKER_TIMEOUT", "2")


def test_the_webtext_command_reports_it_in_one_line(capsys, tmp_path):
    distributed = pytest.importorskip("distributed")
    import logging

    from gpt2lib.cli import main

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.html").write_text("<p>a</p>")
    with distributed.LocalCluster(n_workers=0, dashboard_address=":0", silence_logs=logging.ERROR) as cluster:
        with pytest.raises(SystemExit) as e:
            main(["webtext", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--engine", "dask", "--address",
                  cluster.scheduler_address])
    lines = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 1 and len(lines) == 1 and cluster.scheduler_address in lines[0] and "no workers" in lines[0]
    assert not (tmp_path / "out").exists()


def test_a_missing_dask_is_an_install_hint(monkeypatch, capsys, tmp_path):
    from gpt2lib.cli import main
    from gpt2lib.errors import MissingPackageError

    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(MissingPackageError, match='pip install "gpt2lib\\[scale\\]"'):
        get_engine("dask")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.html").write_text("<p>a</p>")
    with pytest.raises(SystemExit) as e:
        main(["webtext", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--engine", "dask"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 1 and len(lines) == 1 and "pip install" in lines[0]
