"""The book's pinned numeric environment: fewer kernel paths, one thread, repeatable runs on one machine.

A float32 sum depends on the order of its terms, and CPU kernels choose that order by instruction set:
PyTorch's ATen dispatches to AVX-512, AVX2 or plain kernels at run time, and MKL (PyTorch's BLAS on x86)
picks its GEMM kernels by processor too. A model trained with AVX-512 kernels therefore ends with other bits
than one trained with AVX2 kernels, and after a few dozen optimiser steps the difference is visible in the
fourth digit of a perplexity (measured for the book's zoo model: WikiText-2 perplexity 9172 on one CPU,
9102 on another). The chapters are executed, and checked, under one pinned environment:

===========================  ========  ====================================================================
variable                     value     effect
===========================  ========  ====================================================================
``ATEN_CPU_CAPABILITY``      ``avx2``  ATen's vectorised kernels use AVX2 even where AVX-512 exists
``MKL_ENABLE_INSTRUCTIONS``  ``AVX2``  MKL's GEMMs use their AVX2 code path (a no-op on AVX2-only CPUs)
``ONEDNN_MAX_CPU_ISA``       ``AVX2``  the same cap for oneDNN, should an op route through it
``OMP_NUM_THREADS``          ``1``     the chapters' thread count (the zoo trains on its recipe's count)
===========================  ========  ====================================================================

The pins narrow the kernel paths; they do **not** make two CPUs compute the same bits. Measured: chapters
executed on an Intel Xeon (Sapphire Rapids) under these variables fail 12 exactly-compared cells on an AMD EPYC
Zen 5 and on an AMD EPYC Zen 4 under the very same variables (MKL chooses its GEMM code by processor, not only
by instruction set). So the name of the environment (:func:`kernel_path`) is never taken as evidence of equal
bits: ``book/_tools/fingerprint.py`` measures the bits, and only a run whose fingerprint equals a chapter's
recorded one compares that chapter exactly; elsewhere the drifting cells are checked by their stated tolerance.

Measured on an Intel Xeon (Sapphire Rapids, AVX-512): the zoo model's weights hash changes between native
(AVX-512) kernels and this environment, and is the same under ``MKL_ENABLE_INSTRUCTIONS=AVX2`` as under
``MKL_CBWR=AVX2``. We cap the instruction set rather than set ``MKL_CBWR``: Intel documents that CBWR
branches other than AUTO and COMPATIBLE are honoured on Intel processors only (elsewhere CNR silently falls
back to AUTO), while an AVX2 cap leaves an AVX2-only AMD CPU on exactly its default path.

Where the environment cannot be pinned (not x86-64, no AVX2, or a user who set these variables to something
else), and on any other CPU model even where it can, results differ in the last bits and everything downstream
of training drifts. The chapters' checks are built for that (see ``conftest.py``): a chapter run on other bits
compares its drifting cells with a stated tolerance or their own asserts instead of exactly.

This module imports nothing heavy: it must run before torch is imported, for the variables to take effect.
"""
from __future__ import annotations

import os
import platform
from typing import Mapping, MutableMapping

__all__ = ["PINNED", "can_pin", "pinned_environment", "apply", "kernel_path"]

PINNED: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}
# Variables that change the float kernels: all of them go into the name of the kernel path.
_KERNEL_VARIABLES = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA",
                     "OMP_NUM_THREADS")


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def can_pin() -> bool:
    """True on an x86-64 CPU with AVX2 and FMA (every such CPU can run the pinned kernels)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    flags = _cpu_flags()
    return {"avx2", "fma"} <= flags


def pinned_environment(threads: int | None = 1) -> dict[str, str]:
    """The variables of the pinned environment on this machine ({} where it cannot be pinned).

    ``threads`` also fixes ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` (``None`` leaves them out).
    """
    env = dict(PINNED) if can_pin() else {}
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def apply(environ: MutableMapping[str, str] | None = None, threads: int | None = 1) -> dict[str, str]:
    """Fill in (never override) the pinned variables in ``environ`` (default ``os.environ``).

    A variable the user already set wins: whoever sets ``ATEN_CPU_CAPABILITY=default`` gets that kernel path
    (and the chapters then check their drifting cells with tolerances). Returns what was filled in.
    Call it before ``import torch``; afterwards it affects only processes started later.
    """
    environ = os.environ if environ is None else environ
    added = {}
    for key, value in pinned_environment(threads).items():
        if key not in environ:
            environ[key] = value
            added[key] = value
    return added


def kernel_path(environ: Mapping[str, str] | None = None) -> str:
    """A name for the float-kernel environment ``environ`` describes, e.g.
    ``"x86_64/ATEN_CPU_CAPABILITY=avx2/MKL_ENABLE_INSTRUCTIONS=AVX2/ONEDNN_MAX_CPU_ISA=AVX2/OMP_NUM_THREADS=1"``.

    A name, not evidence: two CPUs under the same name can compute other bits (see the module docstring)."""
    environ = os.environ if environ is None else environ
    machine = platform.machine().lower().replace("amd64", "x86_64")
    if machine == "x86_64" and not can_pin():
        machine = "x86_64-noavx2"
    parts = [f"{k}={environ[k]}" for k in _KERNEL_VARIABLES if environ.get(k)]
    return "/".join([machine, *parts])
