"""Where a model comes from: one resolution for ``sample``, ``eval`` and the Python API (GPT-2 §2.3 weights, §3).

:func:`resolve_model` accepts, in this order:

* ``zoo:<name>``: a small cached model of :mod:`gpt2lib.zoo` (trained on first use);
* a train output folder (``train --out-dir run/``; it holds the ``latest`` pointer): its latest checkpoint;
* a checkpoint folder (``run/step-000100/``, it holds ``state.json``);
* a Hugging Face folder (``save_pretrained``; it holds ``config.json``);
* a hub id (``gpt2``, ``openai-community/gpt2-medium``), online only.

Anything else is one :class:`ModelSourceError` that names the argument and lists what would have worked.

Each source comes with *its own* tokenizer (§2.2: per-word and per-byte results do not depend on it):
a run's is the one its training data was made with (:func:`run_tokenizer`), a zoo model's is saved beside
it, a Hugging Face folder's is read from its tokenizer files (:func:`folder_tokenizer`; GPT-2's when it
has none, and ``tokenizer_source`` says so).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpt2lib.errors import GPT2LibError

KINDS = ("zoo", "run", "checkpoint", "huggingface", "hub")
ACCEPTED = ("a train output folder (holds 'latest'), a checkpoint folder (holds state.json), a Hugging Face "
            "folder (holds config.json), zoo:<name> or a Hugging Face hub id")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?")


class ModelSourceError(GPT2LibError, RuntimeError):
    """A ``--model`` / ``model=`` argument that names no model gpt2lib can load."""


@dataclass
class ResolvedModel:
    """A loaded model (in eval mode), the kind of source it came from, and the tokenizer that goes with it."""

    model: Any
    kind: str
    path: Path | None
    tokenizer: Any
    tokenizer_source: str = ""  # where the tokenizer came from, in words


def run_tokenizer(state: dict) -> Any:
    """The tokenizer a train run was made with: the one its data folder (``config.train_full.data_dir``)
    names in its ``meta.json``. The one place that reads a run's tokenizer."""
    from gpt2lib.data import load_tokenizer

    return load_tokenizer(state["config"]["train_full"]["data_dir"])


def _hf_bpe_files(folder: Path, tmp: Path) -> tuple[Path, Path] | None:
    """``(vocab.json, merges.txt)`` of a transformers tokenizer folder; a ``tokenizer.json`` of the
    ``tokenizers`` library (BPE model) is unpacked to that pair in ``tmp``. None when there is neither."""
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return folder / "vocab.json", folder / "merges.txt"
    path = folder / "tokenizer.json"
    if not path.is_file():
        return None
    doc = json.loads(path.read_text(encoding="utf-8"))
    model = doc.get("model") if isinstance(doc, dict) else None
    if not isinstance(model, dict) or model.get("type") != "BPE":
        raise ModelSourceError(f"{path}: not a BPE tokenizer gpt2lib can read (expected a byte-level BPE)")
    vocab = dict(model["vocab"])
    for tok in doc.get("added_tokens", []):
        vocab.setdefault(tok["content"], tok["id"])
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (tmp / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tmp / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return tmp / "vocab.json", tmp / "merges.txt"


def folder_tokenizer(folder: str | os.PathLike) -> tuple[Any, str]:
    """``(tokenizer, where it came from)`` for a model folder: gpt2lib's ``tokenizer.json`` (a trained
    :class:`gpt2lib.bpe.BytePairTokenizer`), transformers' ``vocab.json`` + ``merges.txt`` or ``tokenizer.json``
    (GPT-2's own files give the GPT-2 tokenizer), else GPT-2's tokenizer, said to be assumed."""
    import tempfile

    from gpt2lib.bpe import BytePairTokenizer
    from gpt2lib.tokenizer import get_gpt2_tokenizer

    folder = Path(folder)
    from gpt2lib.bpe import FORMAT

    path = folder / "tokenizer.json"
    if path.is_file():
        doc = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(doc, dict) and doc.get("format") == FORMAT:  # gpt2lib's own format
            return BytePairTokenizer.load(path), f"gpt2lib BPE from {path}"
    with tempfile.TemporaryDirectory() as tmp:
        files = _hf_bpe_files(folder, Path(tmp))
        if files is None:
            return get_gpt2_tokenizer(), f"GPT-2's (assumed: {folder} holds no tokenizer files)"
        try:
            tok = BytePairTokenizer.from_gpt2_files(*files)
        except ValueError as e:
            raise ModelSourceError(f"{folder}: its tokenizer files cannot be read ({e})") from e
    gpt2 = get_gpt2_tokenizer()
    if tok.n_vocab == gpt2.n_vocab and all(tok.decode_bytes([i]) == gpt2.decode_bytes([i]) for i in range(gpt2.eot)):
        return gpt2, f"GPT-2's (the tokenizer files of {folder})"
    tok.name = folder.name
    return tok, f"BPE from the tokenizer files of {folder}"


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"


def source_kind(spec: str) -> str:
    """Which kind of source ``spec`` names (one of :data:`KINDS`), without loading anything."""
    from gpt2lib.checkpoint import POINTER

    if spec.startswith("zoo:"):
        return "zoo"
    path = Path(spec)
    if path.is_dir():
        if (path / "state.json").is_file():
            return "checkpoint"
        if (path / POINTER).is_file():
            return "run"
        if (path / "config.json").is_file():
            return "huggingface"
        raise ModelSourceError(f"--model {spec}: the folder holds no model; expected {ACCEPTED}")
    if path.exists():
        raise ModelSourceError(f"--model {spec}: is a file, not a model; expected {ACCEPTED}")
    if not _HUB_ID.fullmatch(spec) or spec.startswith((".", "/", "~")):
        raise ModelSourceError(f"--model {spec}: no such folder; expected {ACCEPTED}")
    return "hub"


def resolve_model(spec: str, device: str = "cpu", tokenizer: Any = None) -> ResolvedModel:
    """Load the model ``spec`` names (see the module docstring) onto ``device``, in eval mode.

    ``tokenizer`` (a loaded tokenizer) overrides the source's own: a run's data tokenizer, a zoo model's tokenizer,
    GPT-2's for a Hugging Face folder or hub id.
    """
    from gpt2lib.checkpoint import latest_checkpoint, load_checkpoint
    from gpt2lib.model import GPT2, GPT2Config

    kind = source_kind(spec)
    path = None if kind in ("zoo", "hub") else Path(spec)
    tok, source = None, ""
    if kind == "zoo":
        from gpt2lib.zoo import load_pretrained_tiny

        try:
            model, tok = load_pretrained_tiny(spec[len("zoo:"):])
        except KeyError as e:
            raise ModelSourceError(f"--model {spec}: {e.args[0] if e.args else e}") from e
        source = f"the zoo model's own ({spec})"
    elif kind in ("run", "checkpoint"):
        ckpt = latest_checkpoint(spec)
        state = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
        model = GPT2(GPT2Config.from_dict(state["config"]["model"]))
        load_checkpoint(ckpt, model=model, restore_rng=False)
        path = ckpt
        if tokenizer is None:
            tok = run_tokenizer(state)
            source = f"the run's training data ({state['config']['train_full']['data_dir']})"
    elif kind == "huggingface":
        model = GPT2.from_pretrained(spec)
        if tokenizer is None:
            tok, source = folder_tokenizer(spec)
    else:
        if _offline():
            raise ModelSourceError(f"--model {spec}: not a local folder, and the Hugging Face hub is offline "
                                   f"(HF_HUB_OFFLINE=1); download the weights while online, or pass {ACCEPTED}")
        try:
            model = GPT2.from_pretrained(spec)
        except OSError as e:
            raise ModelSourceError(f"--model {spec}: could not load it from the Hugging Face hub ({e}); "
                                   f"expected {ACCEPTED}") from e
    if tokenizer is not None:
        tok, source = tokenizer, "given by the caller"
    elif tok is None:
        from gpt2lib.tokenizer import get_gpt2_tokenizer

        tok, source = get_gpt2_tokenizer(), f"GPT-2's (the hub model {spec})"
    return ResolvedModel(model=model.to(device).eval(), kind=kind, path=path, tokenizer=tok, tokenizer_source=source)

