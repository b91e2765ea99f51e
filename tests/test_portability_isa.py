"""The book under another instruction set: ATen's and MKL's AVX-512 kernels where the CPU has them, else ATen's
non-vectorised kernels (issue 16; see tests/_portability.py). A second foreign path in every CI run."""
from __future__ import annotations

import pytest

from _portability import run_chapters_off_path, zoo_weights_differ
from gpt2lib import numerics


@pytest.mark.slow
@pytest.mark.skipif(not numerics.can_pin(), reason="needs an x86-64 CPU with AVX2 to make the committed path")
def test_chapters_pass_nbval_under_another_instruction_set_while_claiming_it(tmp_path):
    run, report, _ = run_chapters_off_path("isa", tmp_path)
    assert run.returncode == 0, f"nbval under the isa path failed:\n{run.stdout[-8000:]}\n{run.stderr[-2000:]}"
    assert zoo_weights_differ(tmp_path / "cache"), "the foreign path trained the same bits: it tested nothing"
    assert report.is_file() and report.read_text().strip(), "no drift-ruled cell was compared off the committed bits"
