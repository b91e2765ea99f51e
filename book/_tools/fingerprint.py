"""Evidence, not names: does this machine compute the float bits the chapters were committed with?

Two machines with the same kernel *variables* (:func:`gpt2lib.numerics.kernel_path`) can still compute other
bits: the chapters executed on an Intel Xeon under ``ATEN_CPU_CAPABILITY=avx2`` + ``MKL_ENABLE_INSTRUCTIONS=AVX2``
failed 12 cells on an AMD Zen 5 under the very same variables (MKL picks its GEMM code by processor, not only by
instruction set). So the decision "compare this chapter exactly" rests on a *fingerprint* of the bits this
machine actually produces, recorded in each notebook by ``execute.py`` and recomputed by ``conftest.py``:

* the sha256 of a fixed set of float operations (GEMMs of the chapters' shapes, including a 50257-wide LM head,
  the element-wise kernels, and three AdamW steps of a small GPT-2 with clipping), run on one thread as the
  chapters' kernels run, and
* the sha256 of the zoo models' trained weights (32-120 optimiser steps amplify any difference in the kernels
  into many changed bits).

Equal fingerprints: this run reproduces the committed bits, and every cell is compared exactly. Different
fingerprints (another CPU, another BLAS, another torch): cells with a ``drift`` rule are checked by their rule
(:mod:`drift`), all others still exactly.
"""
from __future__ import annotations

import functools
import hashlib

# The zoo models whose trained weights go into the fingerprint (every chapter that trains or loads a model
# runs on the same kernels, so these two stand for all of them).
ZOO_MODELS = ("webtext-tiny", "shakespeare-tiny")


def _update(h, t) -> None:
    h.update(t.detach().contiguous().float().numpy().tobytes())


def ops_digest() -> str:
    """sha256 of fixed forward/backward/optimizer float ops, computed on one thread."""
    import torch

    from gpt2lib.model import GPT2, GPT2Config

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    h = hashlib.sha256(torch.__version__.encode())
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            for m, k, n in [(7, 33, 65), (64, 128, 128), (256, 128, 512), (128, 128, 50257)]:
                _update(h, torch.randn(m, k) @ torch.randn(k, n))
            x = torch.randn(100_003)
            for f in (torch.exp, torch.log1p, torch.tanh, torch.nn.functional.gelu, torch.sum, torch.softmax):
                _update(h, f(x, 0) if f is torch.softmax else f(x.abs() if f is torch.log1p else x))
            _update(h, torch.nn.functional.layer_norm(x.view(-1, 1)[:100_000].view(100, 1000), (1000,)))
            model = GPT2(GPT2Config(vocab_size=1000, block_size=64, n_layer=2, n_head=2, n_embd=64))
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
            ids = torch.randint(0, 1000, (4, 65))
            for _ in range(3):
                _, loss = model(ids[:, :-1], targets=ids[:, 1:])
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
                _update(h, loss)
            for p in model.parameters():
                _update(h, p)
    finally:
        torch.set_num_threads(threads)
    return h.hexdigest()


def zoo_digest(names=ZOO_MODELS) -> str:
    """sha256 over the trained weights of the zoo models (training them first if they are not cached)."""
    from gpt2lib.datasets import cache_root
    from gpt2lib.zoo import RECIPES, load_pretrained_tiny, recipe_key

    h = hashlib.sha256()
    for name in names:
        load_pretrained_tiny(name, progress=False)
        folder = cache_root() / "zoo" / f"{name}-{recipe_key(RECIPES[name])}"
        h.update(name.encode() + hashlib.sha256((folder / "model.safetensors").read_bytes()).digest())
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def fingerprint() -> str:
    """A short hex name for the float bits this process's kernels produce (see the module docstring)."""
    return hashlib.sha256((ops_digest() + zoo_digest()).encode()).hexdigest()[:20]
