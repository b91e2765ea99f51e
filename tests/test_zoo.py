"""gpt2lib.zoo: small cached models, trained deterministically on first use."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from gpt2lib import zoo
from gpt2lib.zoo import load_pretrained_tiny


def _weights(cache) -> dict[str, torch.Tensor]:
    (folder,) = [p for p in (cache / "zoo").iterdir() if p.is_dir() and not p.name.startswith(".")]
    return load_file(str(folder / "model.safetensors"))


_RACE = """
import sys
from gpt2lib.zoo import load_pretrained_tiny
load_pretrained_tiny("shakespeare-tiny", cache_dir=sys.argv[1], max_steps=2)
"""


@pytest.mark.slow
def test_concurrent_first_loads_deterministic_weights_and_cache(tmp_path, monkeypatch):
    """Two processes loading the same (shortened) recipe at once both succeed and leave one complete folder;
    training it again here, in another process, gives identical weights; a second load reads the cache
    without training; the model and tokenizer work together."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", _RACE, str(tmp_path / "a")], env=env) for _ in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    folders = [p for p in (tmp_path / "a" / "zoo").iterdir() if p.is_dir()]
    assert len(folders) == 1  # no temporary folder left either
    assert {f.name for f in folders[0].iterdir()} == {"model.safetensors", "config.json", "tokenizer.json"}

    m1, _ = load_pretrained_tiny("shakespeare-tiny", cache_dir=tmp_path / "b", max_steps=2)
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of reading the cache")

    monkeypatch.setattr(zoo, "_train_recipe", no_training)
    m2, tok2 = load_pretrained_tiny("shakespeare-tiny", cache_dir=tmp_path / "a", max_steps=2)
    assert all(torch.equal(x, y) for x, y in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert m2.lm_head.weight is m2.transformer.wte.weight
    ids = tok2.encode("ROMEO:")
    out = m2.generate(torch.tensor([ids]), 5, temperature=0)
    assert out.shape == (1, len(ids) + 5) and tok2.n_vocab == 1024 and m2.config.vocab_size == 1024


def test_recipe_changes_change_the_cache_key():
    r = zoo.RECIPES["webtext-tiny"]
    assert zoo.recipe_key(r) == zoo.recipe_key(dict(r))
    assert zoo.recipe_key(r) != zoo.recipe_key({**r, "train": {**r["train"], "max_steps": 1}})


def test_unknown_model_or_setting_is_refused(tmp_path):
    with pytest.raises(KeyError, match="webtext-tiny"):
        load_pretrained_tiny("webtext-huge", cache_dir=tmp_path)
    with pytest.raises(TypeError, match="bogus"):
        load_pretrained_tiny("webtext-tiny", cache_dir=tmp_path, bogus=1)


