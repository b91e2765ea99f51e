"""A stand-in for the released GPT-2 weights, written into a Hugging Face cache that works offline.

The chapters' ``SCALE = "gpu"`` branches load ``GPT2.from_pretrained("gpt2")`` (§2.3, §3). CI has no
network and no GPU, so :func:`write_standin_cache` writes a small, randomly initialised
``transformers.GPT2LMHeadModel`` with GPT-2's vocabulary (50,257 tokens) and context (1,024 positions)
into a throw-away cache, in the layout ``huggingface_hub`` resolves with ``HF_HUB_OFFLINE=1``::

    <cache>/models--gpt2/refs/main                 -> <revision>
    <cache>/models--gpt2/snapshots/<revision>/config.json, model.safetensors

Point ``HF_HUB_CACHE`` at ``<cache>`` (:func:`standin_env`) and every ``from_pretrained("gpt2")`` loads
it. Used by ``tests/test_gpu_path.py`` and ``benchmarks/gpu_check.sh``; as a script::

    python tests/_standin.py _build/hf-standin      # prints the export line for the shell
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

# The ids the chapters load: GPT2_BOOK_MODEL defaults to "gpt2" (and names the bigger releases).
REPO_IDS = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
VOCAB_SIZE = 50257  # GPT-2's byte-level BPE vocabulary, §2.2
CONTEXT = 1024  # GPT-2's context, §2.3


def standin_model(n_layer: int = 2, n_head: int = 2, n_embd: int = 64, seed: int = 0):
    """A random ``transformers`` GPT-2 with the real vocabulary and context and a few small layers."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=VOCAB_SIZE, n_positions=CONTEXT, n_embd=n_embd, n_layer=n_layer, n_head=n_head)
    return GPT2LMHeadModel(config).eval()


def write_standin_cache(cache: str | os.PathLike, repo_ids: tuple[str, ...] = ("gpt2",), **sizes) -> Path:
    """Write the stand-in under every id in ``repo_ids`` into the hub cache folder ``cache``; return it.

    Only files this function creates are written (a fresh folder per id); an id already in ``cache``
    raises instead of being overwritten."""
    cache = Path(cache)
    repos = [cache / f"models--{repo_id.replace('/', '--')}" for repo_id in repo_ids]
    for repo in repos:
        if repo.exists():
            raise FileExistsError(f"{repo} already exists; write the stand-in into an empty cache folder")
    with tempfile.TemporaryDirectory() as staging:
        standin_model(**sizes).save_pretrained(staging, safe_serialization=True)
        files = {name: (Path(staging) / name).read_bytes() for name in ("config.json", "model.safetensors")}
    revision = hashlib.sha1(files["model.safetensors"]).hexdigest()  # a 40-hex commit-like name
    for repo in repos:
        snapshot = repo / "snapshots" / revision
        snapshot.mkdir(parents=True)
        for name, data in files.items():
            (snapshot / name).write_bytes(data)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(revision)
    return cache


def standin_env(cache: str | os.PathLike) -> dict[str, str]:
    """Environment variables that make ``huggingface_hub`` read ``cache`` and never the network."""
    cache = str(cache)
    return {"HF_HUB_CACHE": cache, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/_standin.py CACHE_DIR")
    folder = write_standin_cache(sys.argv[1], REPO_IDS)
    print("export " + " ".join(f"{k}={v}" for k, v in standin_env(folder).items()))
