"""The token shards the training tests read: the first characters of Tiny Shakespeare, GPT-2 tokens."""
from __future__ import annotations

from pathlib import Path

from gpt2lib.data import prepare, split_documents
from gpt2lib.datasets import read_text
from gpt2lib.tokenizer import get_gpt2_tokenizer


def shakespeare_shards(out: Path, chars: int) -> Path:
    """Tiny Shakespeare's first ``chars`` characters as documents, GPT-2 tokens, 10% held out, in ``out``."""
    prepare(split_documents(read_text("tiny-shakespeare")[:chars]), out, get_gpt2_tokenizer(), val_fraction=0.1,
            progress=False)
    return out
