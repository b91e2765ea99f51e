"""Specification of weight loading/saving (gpt2lib.weights) against `transformers.GPT2LMHeadModel`.

The reference models are built from configs with random weights: no downloads (HF_HUB_OFFLINE=1).
"""
from __future__ import annotations

import json
import pickle

import pytest
import torch

from gpt2lib.model import GPT2, GPT2Config
from gpt2lib.weights import config_from_hf, from_pretrained, load_state_dict, read_state_dict, save_pretrained

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()
from transformers import GPT2Config as HFConfig  # noqa: E402
from transformers import GPT2LMHeadModel, GPT2Model  # noqa: E402

SMALL = dict(n_layer=2, n_head=4, n_embd=64, vocab_size=300, n_positions=48)
ODD = dict(n_layer=3, n_head=3, n_embd=48, vocab_size=211, n_positions=40, n_inner=100, layer_norm_epsilon=1e-6)


def hf_model(seed: int = 0, attn: str = "eager", **cfg) -> GPT2LMHeadModel:
    """A reference model with random weights. The init std is 0.1 unless given: with GPT-2's 0.02 the
    activations of a small random model are so small that e.g. exact-vs-tanh GELU hides below 1e-4."""
    torch.manual_seed(seed)
    cfg.setdefault("initializer_range", 0.1)
    config = HFConfig(**cfg, bos_token_id=0, eos_token_id=0)
    config._attn_implementation = attn
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # HF zero-inits biases and sets LayerNorm to identity: randomize them too
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(0.05 * torch.randn_like(p))
    return model


def ours_from_hf(hf: GPT2LMHeadModel) -> GPT2:
    model = GPT2(config_from_hf(hf.config.to_dict()))
    return load_state_dict(model, hf.state_dict()).eval()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# -------------------------------------------------------------------------------------------------
# Parity with transformers
@pytest.mark.parametrize("cfg", [SMALL, ODD], ids=["small", "odd-sizes"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_converted_weights_give_transformers_logits_and_greedy_tokens(cfg, attn):
    hf = hf_model(attn=attn, **cfg)
    ours = ours_from_hf(hf)
    idx = torch.randint(0, cfg["vocab_size"], (2, 17), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert max_diff(ours(idx)[0], hf(idx).logits) <= 1e-4
        prompt = idx[:1, :6]
        ref = hf.generate(prompt, max_new_tokens=20, do_sample=False, use_cache=True, pad_token_id=0, eos_token_id=None)
    assert torch.equal(ours.generate(prompt, 20, temperature=0), ref)


@pytest.mark.slow
def test_full_124m_shape_matches_transformers():
    """GPT-2 small (124M) with random weights: logits within 1e-4, 20 greedy tokens identical."""
    hf = hf_model(
        attn="sdpa", n_layer=12, n_head=12, n_embd=768, vocab_size=50257, n_positions=1024, initializer_range=0.02
    )
    ours = ours_from_hf(hf)
    assert ours.num_parameters() == 124_439_808
    idx = torch.randint(0, 50257, (1, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert max_diff(ours(idx)[0], hf(idx).logits) <= 1e-4
        ref = hf.generate(idx, max_new_tokens=20, do_sample=False, use_cache=True, pad_token_id=0, eos_token_id=None)
    assert torch.equal(ours.generate(idx, 20, temperature=0), ref)


# -------------------------------------------------------------------------------------------------
# Saving for transformers, loading what transformers saves
def test_save_pretrained_loads_in_transformers_with_identical_logits(tmp_path):
    torch.manual_seed(0)
    ours = GPT2(GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=120, block_size=24)).eval()
    ours.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    hf = GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    assert hf.lm_head.weight.data_ptr() == hf.transformer.wte.weight.data_ptr()  # tied on load
    idx = torch.randint(0, 120, (2, 24))
    with torch.no_grad():
        assert max_diff(hf(idx).logits, ours(idx)[0]) <= 1e-5


def test_bias_free_model_saves_as_zero_biases_and_round_trips(tmp_path):
    torch.manual_seed(0)
    ours = GPT2(GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=50, block_size=16, bias=False)).eval()
    save_pretrained(ours, tmp_path)
    idx = torch.randint(0, 50, (1, 16))
    with torch.no_grad():
        assert max_diff(GPT2LMHeadModel.from_pretrained(tmp_path).eval()(idx).logits, ours(idx)[0]) <= 1e-5
    back = GPT2.from_pretrained(tmp_path)
    assert back.config == ours.config
    assert torch.equal(back(idx)[0], ours(idx)[0])


def test_round_trip_through_save_pretrained_is_exact_and_returns_eval_mode(tmp_path):
    torch.manual_seed(1)
    ours = GPT2(GPT2Config.from_name("gpt2-tiny", vocab_size=500))
    ours.save_pretrained(tmp_path)
    back = GPT2.from_pretrained(tmp_path)
    assert not back.training and back.config == ours.config
    for (k, a), (_, b) in zip(ours.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k


def test_transformers_folders_load_from_safetensors_and_from_pytorch_model_bin(tmp_path):
    hf = hf_model(**SMALL)
    idx = torch.randint(0, 300, (1, 10))
    with torch.no_grad():
        ref = hf(idx).logits
    hf.save_pretrained(tmp_path / "st")
    assert max_diff(GPT2.from_pretrained(tmp_path / "st")(idx)[0], ref) <= 1e-4
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "config.json").write_text(hf.config.to_json_string())
    torch.save(hf.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    assert max_diff(GPT2.from_pretrained(tmp_path / "bin")(idx)[0], ref) <= 1e-4


def test_old_style_checkpoints_without_prefix_and_with_mask_buffers_load():
    """Like the hub's gpt2 file: GPT2Model keys ('h.0...'), causal-mask buffers, no lm_head."""
    hf = hf_model(**SMALL)
    base: GPT2Model = hf.transformer
    sd = dict(base.state_dict())
    for i in range(SMALL["n_layer"]):
        sd[f"h.{i}.attn.bias"] = torch.tril(torch.ones(1, 1, 48, 48))
        sd[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    ours = load_state_dict(GPT2(config_from_hf(hf.config.to_dict())), sd).eval()
    idx = torch.randint(0, 300, (1, 10))
    with torch.no_grad():
        assert max_diff(ours(idx)[0], hf(idx).logits) <= 1e-4


def test_our_own_and_compiled_state_dicts_load():
    torch.manual_seed(0)
    src = GPT2(GPT2Config.from_name("gpt2-tiny", vocab_size=200)).eval()
    idx = torch.randint(0, 200, (1, 9))
    for sd in (src.state_dict(), torch.compile(src).state_dict()):
        dst = load_state_dict(GPT2(src.config), sd).eval()
        assert torch.equal(dst(idx)[0], src(idx)[0])
    assert any(k.startswith("_orig_mod.") for k in torch.compile(src).state_dict())


# -------------------------------------------------------------------------------------------------
# Errors
def test_shape_mismatch_names_the_key_and_both_shapes():
    hf = hf_model(**SMALL)
    model = GPT2(config_from_hf({**hf.config.to_dict(), "n_positions": 64}))
    with pytest.raises(ValueError, match=r"wpe\.weight.*\(48, 64\).*\(64, 64\)"):
        load_state_dict(model, hf.state_dict())


def test_missing_and_unexpected_keys_are_named():
    hf = hf_model(**SMALL)
    model = GPT2(config_from_hf(hf.config.to_dict()))
    sd = dict(hf.state_dict())
    del sd["transformer.h.1.mlp.c_fc.bias"]
    with pytest.raises(ValueError, match=r"missing.*h\.1\.mlp\.c_fc\.bias"):
        load_state_dict(model, sd)
    sd = dict(hf.state_dict())
    sd["transformer.h.2.ln_1.weight"] = torch.ones(64)
    with pytest.raises(ValueError, match=r"unexpected.*h\.2\.ln_1\.weight"):
        load_state_dict(model, sd)


def test_untied_lm_head_is_refused():
    hf = hf_model(**SMALL)
    sd = {k: v.clone() for k, v in hf.state_dict().items()}
    sd["lm_head.weight"] += 1.0
    with pytest.raises(ValueError, match="lm_head"):
        load_state_dict(GPT2(config_from_hf(hf.config.to_dict())), sd)


def test_unsupported_config_settings_are_refused():
    cfg = HFConfig(**SMALL).to_dict()
    with pytest.raises(ValueError, match="activation_function"):
        config_from_hf({**cfg, "activation_function": "relu"})
    with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx"):
        config_from_hf({**cfg, "scale_attn_by_inverse_layer_idx": True})


def test_corrupt_files_raise_errors_naming_the_file(tmp_path):
    GPT2(GPT2Config.from_name("gpt2-tiny", vocab_size=100)).save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated download
    with pytest.raises(ValueError, match="model.safetensors"):
        GPT2.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json"):
        GPT2.from_pretrained(tmp_path)
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="x.bin"):
        read_state_dict(bad)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickles_that_would_run_code_are_refused(tmp_path, capsys):
    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(pickle.dumps({"w": _Payload()}))
    with pytest.raises(ValueError, match="pytorch_model.bin"):
        read_state_dict(path)
    assert "must never run" not in capsys.readouterr().out


def test_unknown_name_offline_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OSError, match="gpt2lib-no-such-org/no-such-model"):
        from_pretrained("gpt2lib-no-such-org/no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        from_pretrained(tmp_path / "empty")


def test_save_over_an_existing_folder_replaces_files_and_leaves_no_temporaries(tmp_path):
    a = GPT2(GPT2Config.from_name("gpt2-tiny", vocab_size=100))
    b = GPT2(GPT2Config.from_name("gpt2-tiny", vocab_size=100, n_layer=2))
    a.save_pretrained(tmp_path)
    b.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((tmp_path / "config.json").read_text())["n_layer"] == 2
    assert GPT2.from_pretrained(tmp_path).config.n_layer == 2


# -------------------------------------------------------------------------------------------------
# Shapes checked against config.json before the model is built
def _edit_config(folder, **changes) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(changes)
    (folder / "config.json").write_text(json.dumps(cfg))


def _max_rss_mb() -> float:
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_a_config_much_larger_than_its_weights_is_reported_not_allocated(tmp_path, fmt):
    """n_embd=16384 (n_head=16) with 64-wide weights: building that model would take ~150 GB (12 layers x
    12 x 16384^2 floats); before, from_pretrained built it first and ran out of memory. Now the shapes are
    compared on the meta device and the error names the file, the key and both shapes."""
    hf = hf_model(**SMALL)
    if fmt == "safetensors":
        hf.save_pretrained(tmp_path)
    else:  # an older hub folder
        (tmp_path / "config.json").write_text(hf.config.to_json_string())
        torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    _edit_config(tmp_path, n_embd=16384, n_head=16, n_layer=12)
    before = _max_rss_mb()
    with pytest.raises(ValueError) as info:
        GPT2.from_pretrained(tmp_path)
    msg = str(info.value)
    assert "h.0.attn.c_attn.weight" in msg and "(64, 192)" in msg and "16384" in msg
    assert str(tmp_path / "config.json") in msg and ("model.safetensors" in msg or "pytorch_model.bin" in msg)
    assert _max_rss_mb() - before < 1000  # nothing near the 150 GB the config describes was allocated


def test_other_shape_mismatches_are_found_from_the_safetensors_header(tmp_path, monkeypatch):
    """vocab_size and n_layer mismatches are reported before any tensor is read from the file."""
    from gpt2lib import weights

    hf = hf_model(**SMALL)
    hf.save_pretrained(tmp_path)
    _edit_config(tmp_path, vocab_size=50257)

    def no_reading(*args, **kwargs):
        raise AssertionError("the tensors were read before the shapes were checked")

    monkeypatch.setattr(weights, "load_file", no_reading)  # what gpt2lib.weights reads tensors with
    with pytest.raises(ValueError, match=r"wte.weight.*\(300, 64\).*\(50257, 64\)"):
        GPT2.from_pretrained(tmp_path)
    _edit_config(tmp_path, vocab_size=300, n_layer=3)
    with pytest.raises(ValueError, match="missing key.*h.2"):
        GPT2.from_pretrained(tmp_path)


def test_n_head_must_divide_n_embd_and_match_head_dim_where_given(tmp_path):
    """n_head itself cannot be checked against GPT-2 weights (c_attn is [C, 3C] for any head count): it must
    divide n_embd, and agree with head_dim when config.json carries one; errors name config.json."""
    hf = hf_model(**SMALL)
    hf.save_pretrained(tmp_path)
    _edit_config(tmp_path, n_head=5)
    with pytest.raises(ValueError, match=r"config.json.*divisible by n_head"):
        GPT2.from_pretrained(tmp_path)
    _edit_config(tmp_path, n_head=4, head_dim=32)
    with pytest.raises(ValueError, match=r"config.json.*head_dim=32 x n_head=4 is not n_embd=64"):
        GPT2.from_pretrained(tmp_path)
    _edit_config(tmp_path, head_dim=16)
    assert GPT2.from_pretrained(tmp_path).config.n_head == 4
    _edit_config(tmp_path, n_head=8, head_dim=None)  # documented: a wrong n_head that divides n_embd loads
    assert GPT2.from_pretrained(tmp_path).config.n_head == 8


def test_check_shapes_allocates_nothing_for_gpt2_xl_sizes():
    """check_shapes works on the meta device: the 1.5B model's shapes are checked in well under a second of
    memory (its weights would be 6 GB)."""
    from gpt2lib.weights import check_shapes

    config = GPT2Config.from_name("gpt2-xl")
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in GPT2(config).state_dict().items()}
    before = _max_rss_mb()
    check_shapes(config, shapes)
    assert _max_rss_mb() - before < 500
    shapes["transformer.h.47.mlp.c_fc.weight"] = (1600, 6400)  # transposed, in a file of our layout
    with pytest.raises(ValueError, match=r"h.47.mlp.c_fc.weight.*\(1600, 6400\)"):
        check_shapes(config, shapes)


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_a_huge_n_layer_is_refused_from_the_keys_without_building_the_model(tmp_path, fmt, monkeypatch):
    """config.json n_layer=20000 over 2-layer weights: before, from_pretrained built the 20000-layer model
    (on the meta device, ~90 s on 2 cores; n_layer=10**6 would take hours) before reporting the missing keys.
    Now the layer count is compared from the keys first; the model is never built."""
    import gpt2lib.weights as weights

    hf = hf_model(**SMALL)
    if fmt == "safetensors":
        hf.save_pretrained(tmp_path)
    else:
        (tmp_path / "config.json").write_text(hf.config.to_json_string())
        torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    _edit_config(tmp_path, n_layer=20000)

    def no_building(*args, **kwargs):
        raise AssertionError("the model was built before the layer count was checked")

    monkeypatch.setattr(weights, "GPT2", no_building)
    with pytest.raises(ValueError, match=r"missing key.*2 layer\(s\).*n_layer=20000") as info:
        GPT2.from_pretrained(tmp_path)
    assert str(tmp_path / "config.json") in str(info.value)
    _edit_config(tmp_path, n_layer=1)
    with pytest.raises(ValueError, match=r"unexpected key.*2 layers.*n_layer=1"):
        GPT2.from_pretrained(tmp_path)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.int64, torch.bool])
def test_safetensors_reader_equals_the_library(tmp_path, dtype):
    """The reader that avoids a memory map (issue 23) gives what ``safetensors.torch.load_file`` gives."""
    from safetensors.torch import load_file, save_file

    from gpt2lib.weights import read_state_dict

    g = torch.Generator().manual_seed(0)
    tensors = {"a": (torch.randn(3, 5, generator=g) * 100).to(dtype), "b.c": torch.randn(7, generator=g).to(dtype),
               "scalar": torch.tensor(3).to(dtype), "empty": torch.zeros(0, 4, dtype=dtype)}
    save_file(tensors, str(tmp_path / "w.safetensors"), metadata={"format": "pt"})
    ours, ref = read_state_dict(tmp_path / "w.safetensors"), load_file(str(tmp_path / "w.safetensors"))
    assert ours.keys() == ref.keys()
    for key in ref:
        assert ours[key].dtype == ref[key].dtype and ours[key].shape == ref[key].shape
        assert torch.equal(ours[key], ref[key])


def test_loading_keeps_the_tied_head_and_the_parameter_count(tmp_path):
    """Built on the meta device and assigned the file's tensors: one shared head, nothing left on meta."""
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=50)
    model = GPT2(cfg)
    model.save_pretrained(tmp_path)
    loaded = GPT2.from_pretrained(tmp_path)
    assert loaded.lm_head.weight is loaded.transformer.wte.weight
    assert loaded.num_parameters() == model.num_parameters()
    assert all(t.device.type == "cpu" for t in [*loaded.parameters(), *loaded.buffers()])
    assert all(p.requires_grad and p.is_contiguous() for p in loaded.parameters())
    idx = torch.randint(0, 50, (2, 16))
    assert torch.equal(loaded(idx)[0], model.eval()(idx)[0])
    loaded.train()
    _, loss = loaded(idx, idx)
    loss.backward()  # trainable after loading
    assert loaded.transformer.wte.weight.grad is not None
