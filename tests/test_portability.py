"""The book on a machine that does not compute the committed float bits: MKL's other GEMM code under names that
look pinned (issue 16). See tests/_portability.py for how a second CPU is played on this one."""
from __future__ import annotations

import nbformat
import pytest

from _portability import LADDER_CHAPTERS, assert_chapters_pass_off_path, chapters, foreign_paths
from gpt2lib import numerics


def test_every_chapter_is_run_off_path():
    names = {p.stem for p in chapters("mkl-compatible")}
    assert names == {p.stem for p in chapters()}
    assert {"model", "introduction", "language_modeling", "cbt_lambada_winograd", "training", "memorization",
            "reproduce", "preface", "paper_claims", "thesis"} <= names


def test_the_isa_run_leaves_out_exactly_the_ladder_chapters_and_their_models():
    """Under the second foreign path only the chapters of the two size ladders are left out, and the models it
    does not train are used by no chapter it runs: searched in every chapter's source."""
    from gpt2lib.zoo import RECIPES

    assert {p.stem for p in chapters()} - {p.stem for p in chapters("isa")} == set(LADDER_CHAPTERS)
    for path in chapters():
        source = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        uses = {prefix for prefix in LADDER_CHAPTERS.values() if prefix in source}
        assert uses == ({LADDER_CHAPTERS[path.stem]} if path.stem in LADDER_CHAPTERS else set()), path.stem
    for prefix in LADDER_CHAPTERS.values():
        assert any(name.startswith(prefix) for name in RECIPES)


def test_the_mkl_path_claims_every_pinned_variable():
    """The path this file plays names all the pinned variables, so only evidence (the fingerprint), not the
    kernel path's name, can tell it from the committed one."""
    path = numerics.kernel_path({**foreign_paths()["mkl-compatible"], "OMP_NUM_THREADS": "1"})
    assert all(f"{k}={v}" in path.split("/") for k, v in numerics.PINNED.items())


@pytest.mark.slow
@pytest.mark.skipif(not numerics.can_pin(), reason="needs an x86-64 CPU with AVX2 to make the committed path")
def test_chapters_pass_nbval_under_mkl_compatible_while_claiming_it(tmp_path):
    assert_chapters_pass_off_path("mkl-compatible", tmp_path)


def test_warm_zoo_leaves_out_the_models_the_run_skips(monkeypatch):
    """GPT2LIB_WARM_ZOO_SKIP (set by the isa run) keeps warm_zoo from training the ladders; unset, it trains all."""
    import offline_env

    from gpt2lib import zoo

    trained = []
    monkeypatch.setattr(zoo, "load_pretrained_tiny", trained.append)
    monkeypatch.setenv("GPT2LIB_WARM_ZOO_SKIP", ",".join(LADDER_CHAPTERS.values()))
    offline_env.warm_zoo()
    assert sorted(trained) == sorted(n for n in zoo.RECIPES if not n.startswith(tuple(LADDER_CHAPTERS.values())))
    assert "webtext-tiny" in trained
    trained.clear()
    monkeypatch.delenv("GPT2LIB_WARM_ZOO_SKIP")
    offline_env.warm_zoo()
    assert sorted(trained) == sorted(zoo.RECIPES)
