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
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpt2lib._io import read_json_object
from gpt2lib.bpe import FORMAT, BytePairTokenizer
from gpt2lib.checkpoint import POINTER, CheckpointError, latest_checkpoint, load_checkpoint
from gpt2lib.data import load_tokenizer
from gpt2lib.errors import GPT2LibError
from gpt2lib.model import GPT2, GPT2Config
from gpt2lib.runtok import GPT2_VOCAB_SIZES, RunTokenizerError, tokenizer_from_record
from gpt2lib.tokenizer import get_gpt2_tokenizer
from gpt2lib.zoo import load_pretrained_tiny

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


def _hf_bpe_files(folder: Path, tmp: Path) -> tuple[Path, Path] | None:
    """``(vocab.json, merges.txt)`` of a transformers tokenizer folder; a ``tokenizer.json`` of the
    ``tokenizers`` library (BPE model) is unpacked to that pair in ``tmp``. None when there is neither."""
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return folder / "vocab.json", folder / "merges.txt"
    path = folder / "tokenizer.json"
    if not path.is_file():
        return None
    doc = read_json_object(path, error=ModelSourceError)
    model = doc.get("model")
    if not isinstance(model, dict) or model.get("type") != "BPE":
        raise ModelSourceError(f"{path}: not a BPE tokenizer gpt2lib can read (expected a byte-level BPE)")
    vocab = dict(model["vocab"])
    for tok in doc.get("added_tokens", []):
        vocab.setdefault(tok["content"], tok["id"])
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (tmp / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (tmp / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return tmp / "vocab.json", tmp / "merges.txt"


def folder_tokenizer(folder: str | os.PathLike, vocab_size: int | None = None) -> tuple[Any, str]:
    """``(tokenizer, where it came from)`` for a model folder: gpt2lib's ``tokenizer.json`` (a trained
    :class:`gpt2lib.bpe.BytePairTokenizer`), transformers' ``vocab.json`` + ``merges.txt`` or ``tokenizer.json``
    (GPT-2's own files give the GPT-2 tokenizer), else GPT-2's tokenizer, said to be assumed: only if the
    model's ``vocab_size`` (when given) is GPT-2's, else :class:`gpt2lib.runtok.RunTokenizerError` (decoding
    with GPT-2's would print garbage)."""
    folder = Path(folder)
    path = folder / "tokenizer.json"
    if path.is_file():
        doc = read_json_object(path, error=ModelSourceError)
        if doc.get("format") == FORMAT:  # gpt2lib's own format
            return BytePairTokenizer.load(path), f"gpt2lib BPE from {path}"
    with tempfile.TemporaryDirectory() as tmp:
        files = _hf_bpe_files(folder, Path(tmp))
        if files is None:
            if vocab_size is not None and vocab_size not in GPT2_VOCAB_SIZES:
                raise RunTokenizerError(
                    f"--model {folder}: the folder has no tokenizer files (vocab.json + merges.txt or "
                    f"tokenizer.json) and its vocabulary of {vocab_size} tokens is not GPT-2's "
                    f"({GPT2_VOCAB_SIZES[0]}); pass --tokenizer FILE (the BytePairTokenizer it was trained with)")
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


def _read_state(ckpt: Path) -> dict:
    """A checkpoint's state.json, checked for the fields a model is built from (a damaged or hand-edited one is
    a one-line CheckpointError naming the file and the field)."""
    path = ckpt / "state.json"
    state = read_json_object(path, error=CheckpointError, not_json="is damaged")
    problems = []
    config = state.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        problems.append(f"'config' must be an object with a 'model' object, got {str(config)[:40]!r}")
    elif not isinstance(config.get("train_full", {}), dict):
        problems.append("'config.train_full' must be an object")
    if isinstance(state.get("step"), bool) or not isinstance(state.get("step"), int):
        problems.append(f"'step' must be an integer, got {state.get('step')!r}")
    if problems:
        raise CheckpointError(f"{path} is damaged or hand-edited: {'; '.join(problems)}")
    return state


def _run_tokenizer(state: dict, ckpt: Path, vocab_size: int):
    """The tokenizer a checkpoint recorded; for checkpoints from before the record, the data folder's, taken
    relative to the current directory only if that is how the run named it, and only if its size fits."""
    if state["config"].get("tokenizer") is not None:
        return tokenizer_from_record(state["config"]["tokenizer"], str(ckpt))
    data_dir = state["config"]["train_full"]["data_dir"]
    tok = load_tokenizer(data_dir)
    if tok.n_vocab > vocab_size or (not Path(data_dir).is_absolute() and tok.n_vocab != vocab_size
                                    and tok.n_vocab < vocab_size - 64):
        raise RunTokenizerError(f"{ckpt} records no tokenizer, and {data_dir}'s ({tok.n_vocab} tokens) does not "
                                f"fit the model's {vocab_size}; pass --tokenizer")
    return tok


def resolve_model(spec: str, device: str = "cpu", tokenizer: Any = None, *,
                  tokenizer_required: bool = True) -> ResolvedModel:
    """Load the model ``spec`` names (see the module docstring) onto ``device``, in eval mode.

    ``tokenizer`` (a loaded tokenizer) overrides the source's own: a run's data tokenizer, a zoo model's tokenizer,
    GPT-2's for a Hugging Face folder or hub id (one without tokenizer files only if its vocabulary is GPT-2's:
    else :class:`gpt2lib.runtok.RunTokenizerError`, or ``tokenizer=None`` when ``tokenizer_required`` is False).
    """
    kind = source_kind(spec)
    path = None if kind in ("zoo", "hub") else Path(spec)
    tok, source = None, ""
    if kind == "zoo":
        try:
            model, tok = load_pretrained_tiny(spec[len("zoo:"):])
        except KeyError as e:
            raise ModelSourceError(f"--model {spec}: {e.args[0] if e.args else e}") from e
        source = f"the zoo model's own ({spec})"
    elif kind in ("run", "checkpoint"):
        ckpt = latest_checkpoint(spec)
        state = _read_state(ckpt)
        model = GPT2(GPT2Config.from_dict(state["config"]["model"]))
        load_checkpoint(ckpt, model=model, restore_rng=False)
        path = ckpt
        if tokenizer is None:
            tok = _run_tokenizer(state, ckpt, model.config.vocab_size)
            source = (f"the run's own (recorded in {ckpt})" if state["config"].get("tokenizer") is not None
                      else f"the run's training data ({state['config']['train_full']['data_dir']})")
    elif kind == "huggingface":
        model = GPT2.from_pretrained(spec)
        if tokenizer is None:
            try:
                tok, source = folder_tokenizer(spec, model.config.vocab_size)
            except RunTokenizerError:
                if tokenizer_required:
                    raise
                tok, source = None, "none"
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
    elif tok is None and kind in ("zoo", "hub"):
        tok, source = get_gpt2_tokenizer(), f"GPT-2's (the hub model {spec})"
    return ResolvedModel(model=model.to(device).eval(), kind=kind, path=path, tokenizer=tok, tokenizer_source=source)

