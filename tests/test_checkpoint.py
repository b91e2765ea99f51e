"""gpt2lib.checkpoint: atomic, code-free checkpoints that restore training state exactly."""
from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from gpt2lib import checkpoint as ckpt
from gpt2lib.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint
from gpt2lib.model import GPT2, GPT2Config

CFG = GPT2Config(block_size=16, vocab_size=50, n_layer=1, n_head=2, n_embd=8)


def _trained(seed: int = 0) -> tuple[GPT2, torch.optim.AdamW]:
    torch.manual_seed(seed)
    model = GPT2(CFG)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(2):
        _, loss = model(torch.randint(0, 50, (2, 8)), torch.randint(0, 50, (2, 8)))
        loss.backward()
        opt.step()
        opt.zero_grad()
    return model, opt


def _same_params(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_roundtrip_restores_weights_optimizer_rng_and_cursor(tmp_path):
    """Weights, Adam moments, step counts, all RNG streams and the loader cursor come back exactly."""
    model, opt = _trained()
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_checkpoint(tmp_path, model=model, step=7, optimizer=opt, config={"a": 1}, loader_state={"pos": 5})
    expect = (random.random(), np.random.rand(), torch.rand(3))
    model2 = GPT2(CFG)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-2)
    state = load_checkpoint(tmp_path, model=model2, optimizer=opt2)
    assert (random.random(), np.random.rand()) == expect[:2] and torch.equal(torch.rand(3), expect[2])
    assert state["step"] == 7 and state["loader"] == {"pos": 5} and state["config"] == {"a": 1}
    assert _same_params(model, model2)
    for p, q in zip(model.parameters(), model2.parameters()):
        s1, s2 = opt.state[p], opt2.state[q]
        assert all(torch.equal(torch.as_tensor(s1[k]), torch.as_tensor(s2[k])) for k in s1)
    assert model2.lm_head.weight is model2.transformer.wte.weight  # still tied


def test_weights_are_plain_safetensors_without_wrapper_prefixes(tmp_path):
    """A compiled model's checkpoint has the plain names (no `_orig_mod.`), the tied head stored once, and
    loads into an uncompiled GPT2."""
    model, _ = _trained()
    compiled = torch.compile(model)  # wraps lazily; nothing is compiled until it is called
    path = save_checkpoint(tmp_path, model=compiled, step=1)
    names = set(load_file(str(path / "model.safetensors")))
    assert names == set(model.state_dict()) - {"lm_head.weight"}
    fresh = GPT2(CFG)
    load_checkpoint(tmp_path, model=fresh)
    assert _same_params(model, fresh)


def test_config_mismatch_is_a_clear_error(tmp_path):
    model, _ = _trained()
    save_checkpoint(tmp_path, model=model, step=1, config={"model": CFG.to_dict(), "lr": 1e-3})
    with pytest.raises(CheckpointError, match=r"model.n_embd: checkpoint has 8, this run has 16"):
        load_checkpoint(tmp_path, expected_config={"model": {**CFG.to_dict(), "n_embd": 16}})
    with pytest.raises(CheckpointError, match="does not fit the model"):
        load_checkpoint(tmp_path, model=GPT2(GPT2Config(**{**CFG.to_dict(), "n_embd": 16})))


def test_missing_resume_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("fail_at", ["weights", "optimizer", "state", "rename", "pointer"])
def test_failure_during_save_leaves_previous_checkpoint(tmp_path, monkeypatch, fail_at):
    """An error at any point of a save leaves `latest` on the previous, complete checkpoint."""
    old, opt = _trained(0)
    save_checkpoint(tmp_path, model=old, step=1, optimizer=opt)
    new, opt_new = _trained(1)

    def boom(*a, **k):
        raise KeyboardInterrupt("killed")

    real_save, real_replace = ckpt.save_file, ckpt.os.replace
    calls = {"n": 0}
    if fail_at in ("weights", "optimizer"):
        def save_file(tensors, path, **kw):
            calls["n"] += 1
            if (fail_at == "weights") == (calls["n"] == 1):
                real_save(tensors, path, **kw)
                raise KeyboardInterrupt("killed mid-write")
            real_save(tensors, path, **kw)
        monkeypatch.setattr(ckpt, "save_file", save_file)
    elif fail_at == "state":
        monkeypatch.setattr(ckpt, "_write_json", boom)
    else:
        def replace(src, dst):
            if (fail_at == "rename" and "ckpt-" in str(dst)) or (fail_at == "pointer" and str(dst).endswith("latest")):
                raise KeyboardInterrupt("killed")
            real_replace(src, dst)
        monkeypatch.setattr(ckpt.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, model=new, step=2, optimizer=opt_new)
    monkeypatch.undo()
    fresh = GPT2(CFG)
    assert load_checkpoint(tmp_path, model=fresh)["step"] == 1
    assert _same_params(old, fresh)
    assert not list(tmp_path.glob(".tmp-*"))


def test_keep_removes_old_checkpoints_only_after_the_new_one(tmp_path):
    model, _ = _trained()
    for step in range(1, 5):
        save_checkpoint(tmp_path, model=model, step=step, keep=2)
    names = sorted(p.name for p in tmp_path.glob("ckpt-*"))
    assert [n.split("-")[1] for n in names] == ["00000003", "00000004"]
    assert latest_checkpoint(tmp_path).name == names[-1]


@pytest.mark.slow
def test_sigkill_during_repeated_saves_leaves_a_loadable_checkpoint(tmp_path):
    """A process killed (SIGKILL) while saving in a loop always leaves `latest` loadable."""
    script = textwrap.dedent(f"""
        import torch
        from gpt2lib.model import GPT2, GPT2Config
        from gpt2lib.checkpoint import save_checkpoint
        model = GPT2(GPT2Config(block_size=64, vocab_size=2000, n_layer=2, n_head=2, n_embd=64))
        step = 0
        while True:
            step += 1
            with torch.no_grad():
                for p in model.parameters():
                    p.fill_(step)
            save_checkpoint({str(tmp_path)!r}, model=model, step=step)
            print(step, flush=True)
    """)
    for delay in (0.05, 0.37):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()  # the first save is done
        time.sleep(delay)  # then kill it somewhere inside a later save
        proc.kill()
        proc.wait()
        model = GPT2(GPT2Config(block_size=64, vocab_size=2000, n_layer=2, n_head=2, n_embd=64))
        step = load_checkpoint(tmp_path, model=model)["step"]
        assert step >= 1
        assert all(torch.all(p == step) for p in model.parameters())  # the weights of that very step
        json.loads((latest_checkpoint(tmp_path) / "state.json").read_text())


@pytest.mark.parametrize("name, damage", [("model.safetensors", "truncate"), ("optimizer.safetensors", "truncate"),
                                          ("model.safetensors", "garbage"), ("state.json", "truncate"),
                                          ("optimizer.safetensors", "missing")])
def test_a_damaged_checkpoint_is_an_error_naming_the_file(tmp_path, name, damage):
    """A truncated, overwritten or missing file raises CheckpointError naming it (not safetensors' bare
    SafetensorError or a JSON error naming no file), before the model is changed."""
    model, opt = _trained()
    path = save_checkpoint(tmp_path, model=model, step=1, optimizer=opt) / name
    raw = path.read_bytes()
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(raw[: len(raw) // 2] if damage == "truncate" else b"\x07" * 100)
    fresh = GPT2(CFG)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(tmp_path, model=fresh, optimizer=torch.optim.AdamW(fresh.parameters()))
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())


def test_a_pointer_naming_something_else_is_refused(tmp_path):
    model, _ = _trained()
    save_checkpoint(tmp_path, model=model, step=1)
    (tmp_path / "latest").write_text("../../etc\n")
    with pytest.raises(CheckpointError, match="does not name a checkpoint"):
        latest_checkpoint(tmp_path)


def test_the_next_save_removes_temporaries_of_killed_saves_only(tmp_path):
    """Folders `.tmp-ckpt-<step>-<id>[.<pid>]` of dead processes go at the next save; a live process's, and
    anything not named like the trainer's temporaries, stay."""
    import os

    model, _ = _trained()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = [f".tmp-ckpt-00000002-0123abcd.{dead}", ".tmp-ckpt-00000002-0123abce"]
    keep = [f".tmp-ckpt-00000002-0123abcf.{os.getpid()}", ".tmp-ckpt-notes", "ckpt-notes"]
    for n in stale + keep:
        (tmp_path / n).mkdir()
    save_checkpoint(tmp_path, model=model, step=3)
    assert not any((tmp_path / n).exists() for n in stale) and all((tmp_path / n).is_dir() for n in keep)
