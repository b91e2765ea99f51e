"""A run knows its own tokenizer (GPT-2 §2.2): every checkpoint records a copy of it.

A training run's checkpoints used to name only the data folder (``data_dir``, often relative); ``sample``
then read the tokenizer of whatever ``./data`` the current directory held, and a run decoded with another
BPE of the same size printed other text without a word. Now ``state.json`` holds ``config["tokenizer"]``:
``{"kind": "gpt2"}`` for GPT-2's, or ``{"kind": "bpe", "sha256": ..., "source": <absolute file>, "json": <the
saved BytePairTokenizer>}``, a copy checked against its checksum when it is read back. Hugging Face folders
carry no gpt2lib tokenizer: one without ``vocab.json`` + ``merges.txt`` is accepted only when its vocabulary
has GPT-2's size.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from gpt2lib._io import read_json_object
from gpt2lib.bpe import BytePairTokenizer
from gpt2lib.data import TOKENIZER_FILE, read_meta
from gpt2lib.errors import GPT2LibError
from gpt2lib.tokenizer import get_gpt2_tokenizer

__all__ = ["tokenizer_record", "tokenizer_from_record", "GPT2_VOCAB_SIZES", "RunTokenizerError"]

GPT2_VOCAB_SIZES = (50257, 50304)  # GPT-2's vocabulary, and the same padded to a multiple of 64


class RunTokenizerError(GPT2LibError, ValueError):
    """A recorded tokenizer that is damaged, or a model folder whose tokenizer cannot be told."""


def _digest(doc: Any) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def tokenizer_record(data_dir: str | os.PathLike) -> dict[str, Any] | None:
    """What a checkpoint records of the tokenizer of the ``prepare`` folder ``data_dir`` (None if unknown)."""
    data_dir = Path(data_dir)
    try:
        meta = read_meta(data_dir)
    except (OSError, ValueError):
        return None
    path = data_dir / meta.get("tokenizer_file", TOKENIZER_FILE)
    if path.is_file():
        doc = read_json_object(path)
        return {"kind": "bpe", "sha256": _digest(doc), "source": str(path.resolve()), "json": doc}
    if meta.get("tokenizer") == "gpt2" and "tokenizer_file" not in meta:
        return {"kind": "gpt2"}
    return None  # a tokenizer gpt2lib cannot record: sample and eval then need --tokenizer


def tokenizer_from_record(record: Any, where: str):
    """The tokenizer a checkpoint recorded (see :func:`tokenizer_record`); ``where`` names the checkpoint."""
    if not isinstance(record, dict) or record.get("kind") not in ("gpt2", "bpe"):
        raise RunTokenizerError(f"{where}: the recorded tokenizer {str(record)[:60]!r} is not one gpt2lib wrote")
    if record["kind"] == "gpt2":
        return get_gpt2_tokenizer()
    doc = record.get("json")
    if _digest(doc) != record.get("sha256"):
        raise RunTokenizerError(f"{where}: the recorded tokenizer does not match its sha256 (edited or damaged)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokenizer.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        return BytePairTokenizer.load(path)


def huggingface_tokenizer(folder: str | os.PathLike, vocab_size: int):
    """The tokenizer of a Hugging Face folder whose model has ``vocab_size`` tokens: what
    :func:`gpt2lib.resolve.folder_tokenizer` finds (GPT-2's only if the folder has no tokenizer files and the
    vocabulary has GPT-2's size; otherwise :class:`RunTokenizerError`)."""
    from gpt2lib.resolve import folder_tokenizer  # lazy: gpt2lib.resolve imports this module

    return folder_tokenizer(folder, vocab_size)[0]
