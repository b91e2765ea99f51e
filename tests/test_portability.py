"""The book on a machine that does not compute the committed float bits: MKL's other GEMM code under names that
look pinned (issue 16). See tests/_portability.py for how a second CPU is played on this one."""
from __future__ import annotations

import pytest

from _portability import assert_chapters_pass_off_path, chapters, foreign_paths
from gpt2lib import numerics


def test_every_chapter_is_run_off_path():
    names = {p.stem for p in chapters()}
    assert {"model", "introduction", "language_modeling", "cbt_lambada_winograd", "training", "memorization",
            "reproduce", "preface", "paper_claims"} <= names


def test_the_mkl_path_claims_every_pinned_variable():
    """The path this file plays names all the pinned variables, so only evidence (the fingerprint), not the
    kernel path's name, can tell it from the committed one."""
    path = numerics.kernel_path({**foreign_paths()["mkl-compatible"], "OMP_NUM_THREADS": "1"})
    assert all(f"{k}={v}" in path.split("/") for k, v in numerics.PINNED.items())


@pytest.mark.slow
@pytest.mark.skipif(not numerics.can_pin(), reason="needs an x86-64 CPU with AVX2 to make the committed path")
def test_chapters_pass_nbval_under_mkl_compatible_while_claiming_it(tmp_path):
    assert_chapters_pass_off_path("mkl-compatible", tmp_path)
