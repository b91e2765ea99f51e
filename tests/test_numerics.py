"""The pinned numeric environment (gpt2lib.numerics) and the drift rules of cells whose outputs depend on it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from gpt2lib import numerics

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "book" / "_tools"))
import drift  # noqa: E402
import sync_notebooks  # noqa: E402


def test_apply_fills_in_but_never_overrides():
    env = {"ATEN_CPU_CAPABILITY": "default"}
    added = numerics.apply(env, threads=1)
    assert env["ATEN_CPU_CAPABILITY"] == "default" and "ATEN_CPU_CAPABILITY" not in added
    assert env["OMP_NUM_THREADS"] == "1"
    if numerics.can_pin():
        assert env["MKL_ENABLE_INSTRUCTIONS"] == "AVX2"


def test_kernel_path_names_every_kernel_variable():
    a = numerics.kernel_path({**numerics.PINNED, "OMP_NUM_THREADS": "1"})
    b = numerics.kernel_path({**numerics.PINNED, "OMP_NUM_THREADS": "2"})
    c = numerics.kernel_path({**numerics.PINNED, "OMP_NUM_THREADS": "1", "MKL_CBWR": "COMPATIBLE"})
    assert len({a, b, c}) == 3 and "ATEN_CPU_CAPABILITY=avx2" in a


_PROBE = r"""
import hashlib, torch
torch.manual_seed(0)
x = torch.randn(96, 200); w = torch.randn(200, 300, requires_grad=True)
y = torch.nn.functional.gelu(x @ w).softmax(-1).log().sum(); y.backward()
print(torch.backends.cpu.get_cpu_capability(), hashlib.sha256(w.grad.numpy().tobytes()).hexdigest())
"""


def _probe(env: dict[str, str]) -> tuple[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in numerics.PINNED and k != "MKL_CBWR"}
    out = subprocess.run([sys.executable, "-c", _PROBE], env={**clean, **env}, capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    return out[0], out[1]


@pytest.mark.skipif(not numerics.can_pin(), reason="the pinned kernels need an x86-64 CPU with AVX2")
def test_the_pins_take_effect_and_select_the_avx2_kernels():
    """Under the pins ATen reports AVX2 kernels; the default (non-vectorised) kernels give other bits, so the
    kernel path really decides the floats (the premise of the drift rules)."""
    capability, pinned = _probe(numerics.pinned_environment())
    assert capability == "AVX2"
    _, plain = _probe({"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"})
    assert plain != pinned
    assert _probe(numerics.pinned_environment())[1] == pinned  # and the pinned bits repeat


# --- drift rules -------------------------------------------------------------------------------------------

def test_tolerant_comparison_of_numbers_in_text():
    ref = "WikiText-2   ppl  9172.1   (paper 29.41)\n8-gram hits: 57"
    assert drift.compare_text(ref, "WikiText-2   ppl 9102.4   (paper 29.41)\n8-gram hits: 59", 0.05, 0) is None
    assert drift.compare_text(ref, "WikiText-2 ppl 12000.0 (paper 29.41)\n8-gram hits: 57", 0.05, 0)
    assert drift.compare_text(ref, "WikiText-103 ppl 9172.1 (paper 29.41)\n8-gram hits: 57", 0.05, 0)
    assert drift.compare_text("log p -17.530", "log p -17.395", 0.01, 0) is None
    assert drift.compare_text("1,234 tokens", "1,240 tokens", 0.01, 0) is None
    assert drift.compare_text("a 1 b", "a 1 b 2", 0.5, 0)


def test_every_drift_rule_in_the_book_is_well_formed():
    """A cell that is not compared exactly off the committed kernel path says how it is checked instead."""
    problems = []
    for path in sync_notebooks.chapter_notebooks(ROOT):
        for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
            if cell.cell_type == "code" and "drift" in cell.metadata:
                reason = drift.validate_rule(cell.metadata["drift"], cell.source)
                if reason:
                    problems.append(f"{path.name} cell {i}: {reason}")
    assert not problems, "\n".join(problems)


def test_chapters_were_executed_under_the_pinned_kernel_path():
    """Every committed chapter records the pinned kernel path it was executed under (book/_tools/execute.py)."""
    for path in sync_notebooks.chapter_notebooks(ROOT):
        nb = nbformat.read(path, as_version=4)
        if not any(c.cell_type == "code" for c in nb.cells):
            continue
        recorded = nb.metadata.get("gpt2lib", {}).get("kernel_path", "")
        assert all(f"{k}={v}" in recorded.split("/") for k, v in numerics.PINNED.items()), (path.name, recorded)
        assert "OMP_NUM_THREADS=1" in recorded.split("/"), (path.name, recorded)


def test_drift_comparison_ignores_the_order_of_mime_types():
    """A live kernel may list an output's mime types in another order than the committed JSON does."""
    ref = [{"output_type": "display_data", "data": {"text/markdown": "ppl 9126", "text/plain": "<Markdown>"}}]
    test = [{"output_type": "display_data", "data": {"text/plain": "<Markdown>", "text/markdown": "ppl 9033"}}]
    assert drift.compare_outputs(ref, test, {"rtol": 0.05}, ()) is None
    assert drift.compare_outputs(ref, test, {"rtol": 0.001}, ())
