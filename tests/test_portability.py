"""The book on a machine whose float kernels differ from the committed run's (issue: portable CI).

The chapters are committed under the pinned kernel path of gpt2lib.numerics, and CI compares them exactly
under it. A reader elsewhere (aarch64, another BLAS, or anyone who sets other kernel variables) gets other
trained bits. This test is that reader: it re-runs, under a *different* kernel path, every chapter that trains a model or loads a trained one, with a
fresh model cache so the zoo models are trained again under that path too, and requires nbval to pass: cells
that depend on trained floats are then checked by their stated tolerance or by their own asserts
(book/_tools/drift.py), every other cell still exactly. (Which other path: see :func:`foreign_kernels`.)
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from gpt2lib import numerics

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "book" / "_tools"))
import sync_notebooks  # noqa: E402



def foreign_kernels() -> dict[str, str]:
    """Another kernel path that is still fast on this CPU: where AVX-512 exists, ATen's and MKL's AVX-512 code
    (exactly the case that broke CI: notebooks made on an AVX-512 machine, checked on an AVX2 one, here the
    other way round); on an AVX2-only CPU, MKL's SSE2 compatibility branch under ATen's AVX2 kernels. (The
    drift rules were calibrated on the slowest and most different path, ATen's non-vectorised kernels with
    MKL_CBWR=COMPATIBLE: too slow for every CI run, 3× the chapters' time.)"""
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= numerics._cpu_flags():
        return {"ATEN_CPU_CAPABILITY": "avx512", "MKL_ENABLE_INSTRUCTIONS": "AVX512", "ONEDNN_MAX_CPU_ISA": "ALL"}
    return {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
            "ONEDNN_MAX_CPU_ISA": "AVX2"}


FOREIGN = foreign_kernels()
_TRAINS = re.compile(r"load_pretrained_tiny|TrainConfig|\.backward\(|torch\.optim|gpt2lib\.train\b|train_model")


def trained_float_chapters() -> list[Path]:
    """Chapters whose code trains a model or loads one of the zoo's trained models."""
    out = []
    for path in sync_notebooks.chapter_notebooks(ROOT):
        src = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        if _TRAINS.search(src):
            out.append(path)
    return out


def test_the_chapters_that_depend_on_trained_floats_are_found():
    names = {p.stem for p in trained_float_chapters()}
    assert {"language_modeling", "cbt_lambada_winograd", "training", "memorization", "reproduce"} <= names


@pytest.mark.slow
@pytest.mark.skipif(not numerics.can_pin(), reason="needs an x86-64 CPU with AVX2 to make the committed path")
def test_chapters_pass_nbval_under_another_kernel_path(tmp_path):
    chapters = trained_float_chapters()
    env = {**os.environ, **FOREIGN, "GPT2LIB_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    assert numerics.kernel_path(env) != numerics.kernel_path()
    cmd = [sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", "-q", "-o",
           "console_output_style=classic", *[str(p.relative_to(ROOT)) for p in chapters]]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, f"nbval under {FOREIGN} failed:\n{run.stdout[-8000:]}\n{run.stderr[-2000:]}"

    # The run really was on other bits: the zoo model it trained (under its own kernel path, so in a folder of
    # its own) differs from the one trained on the pinned path.
    from safetensors.torch import load_file

    from gpt2lib.datasets import cache_root
    from gpt2lib.zoo import RECIPES, load_pretrained_tiny, recipe_key

    load_pretrained_tiny("webtext-tiny", progress=False)  # the pinned one (already trained in CI)
    pinned_dir = cache_root() / "zoo" / f"webtext-tiny-{recipe_key(RECIPES['webtext-tiny'])}"
    (foreign_dir,) = [p for p in (tmp_path / "cache" / "zoo").iterdir()
                      if p.is_dir() and p.name.startswith("webtext-tiny-")]
    assert foreign_dir.name != pinned_dir.name
    foreign, pinned = load_file(str(foreign_dir / "model.safetensors")), load_file(str(pinned_dir / "model.safetensors"))
    assert foreign.keys() == pinned.keys()
    assert not all(torch.equal(foreign[k], pinned[k]) for k in pinned)
