"""The model a §3 chapter loads: ``gpt2lib.zoo.load_book_model`` (the chapters' one-line loading cell).

The name comes from the call, else ``GPT2_BOOK_MODEL``, else the scale's default, at either scale (issue 18:
a reader with a laptop runs the CPU slices on the released 124M with ``GPT2_BOOK_MODEL=gpt2``); an unknown
name fails in one line that lists the valid ones. Loading a released id is checked against ``transformers``
on the random stand-in checkpoint in an offline Hugging Face cache (``tests/_standin.py``).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from gpt2lib.zoo import book_model_name, book_model_names

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _standin import standin_env, write_standin_cache  # noqa: E402

# The zoo model with GPT-2's tokenizer, and the four sizes OpenAI released on the Hugging Face hub.
VALID = ["webtext-tiny", "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"]


def test_the_valid_names_are_the_tiny_model_and_the_four_released_sizes():
    assert book_model_names() == VALID


@pytest.mark.parametrize("scale, default", [("cpu", "webtext-tiny"), ("gpu", "gpt2")])
def test_each_scale_has_its_default_and_the_variable_wins_at_any_scale(scale, default):
    assert book_model_name(scale, environ={}) == default
    assert book_model_name(scale, environ={"GPT2_BOOK_MODEL": ""}) == default  # set but empty: the default
    for name in VALID:
        assert book_model_name(scale, environ={"GPT2_BOOK_MODEL": name}) == name
        assert book_model_name(scale, name, environ={"GPT2_BOOK_MODEL": "gpt2-xl"}) == name  # the call wins


def test_the_variable_is_read_from_the_process_environment(monkeypatch):
    monkeypatch.setenv("GPT2_BOOK_MODEL", "gpt2-medium")
    assert book_model_name("cpu") == "gpt2-medium"
    monkeypatch.delenv("GPT2_BOOK_MODEL")
    assert book_model_name("cpu") == "webtext-tiny"


@given(st.text(max_size=20).filter(lambda s: s not in VALID and s != ""))
def test_an_unknown_name_is_one_line_naming_it_and_every_valid_one(name):
    for scale in ("cpu", "gpu"):
        with pytest.raises(ValueError) as err:
            book_model_name(scale, environ={"GPT2_BOOK_MODEL": name})
        message = str(err.value)
        assert message.startswith(f"GPT2_BOOK_MODEL={name!r} ") and "\n" not in message.replace(repr(name), "")
        assert message.endswith("choose one of: " + ", ".join(VALID))
        with pytest.raises(ValueError, match="^name="):
            book_model_name(scale, name, environ={})


def test_an_unknown_scale_is_refused():
    with pytest.raises(ValueError, match="scale must be 'cpu' or 'gpu', not 'GPU'"):
        book_model_name("GPU", environ={})


@pytest.mark.slow
def test_gpt2_book_model_loads_the_released_id_at_scale_cpu_as_transformers_does(tmp_path):
    """In a fresh process (huggingface_hub reads its cache location at import) with the network off:
    ``GPT2_BOOK_MODEL=gpt2`` at ``scale="cpu"`` gives the hub's "gpt2" (the stand-in), in eval mode, with the
    GPT-2 tokenizer, and logits equal to ``transformers``' model from the same cache."""
    cache = write_standin_cache(tmp_path / "hf")
    code = (
        "import tiktoken, torch, transformers\n"
        "from gpt2lib.zoo import load_book_model\n"
        "model, tok, name = load_book_model('cpu', 'cpu')\n"
        "ref = transformers.GPT2LMHeadModel.from_pretrained('gpt2').eval()\n"
        "text = 'Zero-shot, on a laptop.'\n"
        "assert tok.encode(text) == tiktoken.get_encoding('gpt2').encode(text)\n"
        "ids = torch.tensor([tok.encode(text)])\n"
        "with torch.no_grad():\n"
        "    d = (model(ids)[0] - ref(ids).logits).abs().max().item()\n"
        "print(name, model.training, model.config.block_size, model.config.n_layer, d)\n"
    )
    env = {**os.environ, **standin_env(cache), "GPT2_BOOK_MODEL": "gpt2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    name, training, context, n_layer, diff = out.stdout.split()
    assert (name, training, context, n_layer) == ("gpt2", "False", "1024", "2")
    assert float(diff) < 1e-4
