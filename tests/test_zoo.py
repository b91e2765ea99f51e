"""gpt2lib.zoo: small cached models, trained deterministically on first use."""
from __future__ import annotations

import math
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

    monkeypatch.setattr(zoo, "_train_in_child", no_training)
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




def test_training_runs_under_the_pinned_kernels_unless_the_caller_chose_others(monkeypatch):
    """The child that trains gets the pinned kernel variables and the recipe's thread count; a variable the
    caller set explicitly wins, and then the cache key (which names the kernel path) differs."""
    from gpt2lib import numerics

    for key in numerics.PINNED:
        monkeypatch.delenv(key, raising=False)
    r = zoo.RECIPES["webtext-tiny"]
    env = zoo.training_environment(r)
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == str(r["threads"])
    if numerics.can_pin():
        assert {k: env[k] for k in numerics.PINNED} == numerics.PINNED
    pinned_key = zoo.recipe_key(r)
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    assert zoo.training_environment(r)["ATEN_CPU_CAPABILITY"] == "default"
    assert zoo.recipe_key(r) != pinned_key


@pytest.mark.slow
def test_first_use_says_what_it_does_on_stderr_and_nothing_on_stdout(tmp_path, capfd):
    """First use prints a notice and a progress bar on stderr (the trainer's own lines stay in the child);
    progress=False is silent; a cached load prints nothing."""
    load_pretrained_tiny("shakespeare-tiny", cache_dir=tmp_path / "a", max_steps=2)
    out, err = capfd.readouterr()
    assert out == ""
    assert "first use of 'shakespeare-tiny'" in err and "training shakespeare-tiny" in err and "2/2" in err
    load_pretrained_tiny("shakespeare-tiny", cache_dir=tmp_path / "a", max_steps=2)
    load_pretrained_tiny("shakespeare-tiny", cache_dir=tmp_path / "b", max_steps=2, progress=False)
    assert capfd.readouterr() == ("", "")


def test_a_failed_training_names_the_model_and_leaves_no_folder(tmp_path, monkeypatch):
    """A child that fails raises an error naming the model with the child's output, and no folder is left."""
    monkeypatch.setattr(zoo, "RECIPES", {"webtext-tiny": {**zoo.RECIPES["webtext-tiny"], "dataset": "no-such-data"}})
    with pytest.raises(RuntimeError, match="(?s)webtext-tiny.*no-such-data"):
        load_pretrained_tiny("webtext-tiny", cache_dir=tmp_path, progress=False)
    assert [p for p in (tmp_path / "zoo").iterdir() if p.is_dir()] == []


def test_the_miniworld_ladder_shares_data_budget_and_settings_and_has_controls():
    """GPT-2's size ladder in miniature: >= 4 sizes on the same world, the same training settings and token budget,
    one thread each, the learning rate alone tuned per size (as GPT-2's, §3); controls (the world without
    demonstrations) at the smallest and the largest size."""
    from gpt2lib.model import GPT2, GPT2Config

    ladder = [zoo.RECIPES[f"miniworld-{s}"] for s in zoo.MINIWORLD_SIZES]
    assert len(ladder) >= 4

    def settings(r):
        return {k: v for k, v in r["train"].items() if k not in ("lr", "min_lr")}

    for r in ladder:
        assert (r["world"], settings(r), r["tokenizer"], r["threads"], r["control"]) == \
            (ladder[0]["world"], settings(ladder[0]), ladder[0]["tokenizer"], 1, False)
        assert r["train"]["max_steps"] * r["train"]["tokens_per_step"] == 480 * 1024
    params = [GPT2(GPT2Config(vocab_size=r["tokenizer"]["bpe_vocab_size"], **r["model"])).num_parameters()
              for r in ladder]
    assert params == sorted(params) and params[-1] > 10 * params[0]
    sizes = list(zoo.MINIWORLD_SIZES)
    for s in (sizes[0], sizes[-1]):
        c, r = zoo.RECIPES[f"miniworld-control-{s}"], zoo.RECIPES[f"miniworld-{s}"]
        assert c["control"] is True and {**c, "control": False} == r


@pytest.mark.slow
def test_a_miniworld_model_and_its_control_share_the_tokenizer_and_record_their_cost(tmp_path):
    m, tok = load_pretrained_tiny("miniworld-xs", cache_dir=tmp_path, progress=False, max_steps=2)
    c, tok_c = load_pretrained_tiny("miniworld-control-xs", cache_dir=tmp_path, progress=False, max_steps=2)
    text = 'Kalo had 3 apples. In Vellish, a red fox is called "'
    assert tok.encode(text) == tok_c.encode(text) and tok.merges == tok_c.merges
    assert tok.n_vocab == m.config.vocab_size == 1024
    card = zoo.model_card("miniworld-xs", cache_dir=tmp_path, progress=False, max_steps=2)
    assert card["n_params"] == m.num_parameters() and card["recipe"]["train"]["max_steps"] == 2
    assert card["train_seconds"] > 0 and card["train_cpu_seconds"] > 0
    assert not any(torch.equal(a, b) for a, b in zip(m.state_dict().values(), c.state_dict().values())
                   if a.dim() == 2)  # trained on other text


def test_the_webtext_ladder_differs_only_in_size():
    """Mini Figure 4 (GPT-2 §4): the thesis ladder's shapes on the WebText sample, with the same data, tokenizer,
    token budget and training settings for every size (the learning rate alone tuned per size, as GPT-2's, §3),
    one thread each, and parameters spanning more than ten times."""
    from gpt2lib.model import GPT2, GPT2Config

    ladder = [zoo.RECIPES[f"webtext-ladder-{s}"] for s in zoo.MINIWORLD_SIZES]
    assert len(ladder) >= 4

    def rest(r):
        return {**r, "model": None, "train": {k: v for k, v in r["train"].items() if k not in ("lr", "min_lr")}}

    for r, shape in zip(ladder, zoo.MINIWORLD_SIZES.values()):
        assert rest(r) == rest(ladder[0]) and r["threads"] == 1 and r["dataset"] == "webtext-sample"
        assert r["model"] == {**shape, "block_size": r["train"]["block_size"]}
        assert r["train"]["eval_interval"] > 0 and r["train"]["log_interval"] == 1  # loss against steps
    params = [GPT2(GPT2Config(vocab_size=r["tokenizer"]["bpe_vocab_size"], **r["model"])).num_parameters()
              for r in ladder]
    assert params == sorted(params) and params[-1] > 10 * params[0]


def test_the_webtext_ladders_held_out_documents_are_never_trained_on(tmp_path):
    """The held-out split is whole documents of the sample: decoded back from the shards, the two splits are
    disjoint, together they are the sample, and no held-out document occurs anywhere in the training text."""
    import numpy as np

    from gpt2lib.data import TokenShards

    recipe = zoo.RECIPES["webtext-ladder-xs"]
    docs = zoo._documents(recipe)
    tok = zoo._tokenizer(recipe, docs)
    zoo._prepare(docs, tok, tmp_path)

    def split_docs(split):
        ids = np.concatenate([np.asarray(a) for a in TokenShards.open(tmp_path, split).arrays]).tolist()
        text = tok.decode(ids, errors="strict")
        marker = tok.decode([tok.eot])
        return [d for d in text.split(marker) if d], text

    train_docs, train_text = split_docs("train")
    val_docs, _ = split_docs("val")
    assert len(val_docs) == round(0.05 * len(docs)) and len(train_docs) + len(val_docs) == len(docs)
    assert sorted(train_docs + val_docs) == sorted(docs)
    assert not set(val_docs) & set(train_docs)
    assert not any(d in train_text for d in val_docs)  # searched, not assumed from the split


@pytest.mark.slow
def test_a_webtext_ladder_model_trains_to_the_same_bits_twice_and_records_its_curves(tmp_path):
    m1, _ = load_pretrained_tiny("webtext-ladder-xs", cache_dir=tmp_path / "a", progress=False, max_steps=3)
    m2, tok = load_pretrained_tiny("webtext-ladder-xs", cache_dir=tmp_path / "b", progress=False, max_steps=3)
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    cards = [zoo.model_card("webtext-ladder-xs", cache_dir=tmp_path / d, progress=False, max_steps=3) for d in "ab"]
    assert cards[0] == cards[1] | {"train_seconds": cards[0]["train_seconds"],
                                   "train_cpu_seconds": cards[0]["train_cpu_seconds"]}
    card = cards[0]
    assert card["history"]["step"] == [1, 2, 3] and card["history"]["val_step"] == [3]
    assert card["history"]["val_loss"] == [card["val_loss"]]
    # at the start of training every loss is close to that of a uniform guess over the vocabulary
    for key in ("final_train_loss", "final_val_loss"):
        assert abs(card[key] - math.log(tok.n_vocab)) < 0.5
