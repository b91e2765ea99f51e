"""The book under another instruction set: ATen's and MKL's AVX-512 kernels where the CPU has them, else ATen's
non-vectorised kernels (issue 16; see tests/_portability.py). A second foreign path in every CI run."""
from __future__ import annotations

import pytest

from _portability import assert_chapters_pass_off_path
from gpt2lib import numerics


@pytest.mark.slow
@pytest.mark.skipif(not numerics.can_pin(), reason="needs an x86-64 CPU with AVX2 to make the committed path")
def test_chapters_pass_nbval_under_another_instruction_set_while_claiming_it(tmp_path):
    assert_chapters_pass_off_path("isa", tmp_path)
