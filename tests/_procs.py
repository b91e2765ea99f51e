"""Real processes for the tests that run two at once or signal one: one environment, a launcher that
never leaves a process behind, and a wait with a deadline that reports a process that ended early."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def cli(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m gpt2lib *argv`` to its end, its output captured as text."""
    return subprocess.run([sys.executable, "-m", "gpt2lib", *argv], env=ENV, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@contextlib.contextmanager
def running(args: list[str], ready: str | None = None) -> Iterator[subprocess.Popen]:
    """``python *args`` started with piped text output (``-c SCRIPT ...`` or ``-m gpt2lib ...``); with ``ready``,
    the block starts once the process has printed that line. A process still running when the block ends
    (an assertion failed) is killed and reaped."""
    proc = subprocess.Popen([sys.executable, *args], env=ENV, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        if ready is not None:
            assert proc.stdout.readline().strip() == ready
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_until(predicate: Callable[[], bool], proc: subprocess.Popen, timeout: float = 120) -> None:
    """Poll ``predicate`` until it holds; an error if ``proc`` ends first (with its stderr) or time runs out."""
    end = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the first process ended early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.05)
