"""Specification of the GPT-2 model (GPT-2 §2.3): sizes, structure, initialization, loss, errors.

The independent reference is `transformers.GPT2LMHeadModel` (numerics) and the paper's Table 2
(sizes); parameter counts are the well-known totals of the released checkpoints.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2lib.model import GPT2, GPT2Config, attention_maps

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()


def tiny(**overrides) -> GPT2Config:
    base = dict(block_size=32, vocab_size=97, n_layer=2, n_head=4, n_embd=32)
    return GPT2Config(**{**base, **overrides})


def make(config: GPT2Config, seed: int = 0) -> GPT2:
    torch.manual_seed(seed)
    return GPT2(config)


def hf_twin(model: GPT2, attn: str = "eager"):
    """A transformers GPT2LMHeadModel holding the same weights as ``model``."""
    from transformers import GPT2Config as HFConfig
    from transformers import GPT2LMHeadModel

    from gpt2lib.weights import config_to_hf

    cfg = HFConfig(**{k: v for k, v in config_to_hf(model.config).items() if k != "gpt2lib"})
    cfg._attn_implementation = attn
    hf = GPT2LMHeadModel(cfg)
    sd = {}
    for k, v in model.state_dict().items():
        if k.endswith(("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")):
            v = v.t()
        sd[k] = v.clone()
    hf.load_state_dict(sd, strict=True)
    return hf.eval()


# -------------------------------------------------------------------------------------------------
# Configurations
@pytest.mark.parametrize(
    "name, n_layer, n_embd, n_head",
    [("gpt2", 12, 768, 12), ("gpt2-medium", 24, 1024, 16), ("gpt2-large", 36, 1280, 20), ("gpt2-xl", 48, 1600, 25)],
)
def test_from_name_gives_the_four_sizes_of_table_2(name, n_layer, n_embd, n_head):
    """The paper's four models: context 1024, vocabulary 50,257, d_ff = 4 d_model."""
    c = GPT2Config.from_name(name)
    assert (c.n_layer, c.n_embd, c.n_head) == (n_layer, n_embd, n_head)
    assert c.block_size == 1024 and c.vocab_size == 50257 and c.d_ff == 4 * n_embd


@pytest.mark.parametrize("name", ["gpt2-tiny", "gpt2-mini"])
def test_cpu_presets_are_small_and_valid(name):
    c = GPT2Config.from_name(name)
    assert c.n_layer <= 6 and c.n_embd <= 192 and c.block_size == 256
    with torch.device("meta"):
        assert GPT2(c).num_parameters(non_embedding=True) < 3_000_000


def test_from_name_applies_overrides_and_rejects_unknown_names_and_fields():
    c = GPT2Config.from_name("gpt2-tiny", vocab_size=4096, dropout=0.1)
    assert c.vocab_size == 4096 and c.dropout == 0.1 and c.n_layer == GPT2Config.from_name("gpt2-tiny").n_layer
    with pytest.raises(ValueError, match="gpt2-huge"):
        GPT2Config.from_name("gpt2-huge")
    with pytest.raises(TypeError, match="n_layers"):
        GPT2Config.from_name("gpt2", n_layers=3)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(n_embd=30, n_head=4), "divisible"),
        (dict(n_layer=0), "n_layer"),
        (dict(vocab_size=-1), "vocab_size"),
        (dict(block_size=2.5), "block_size"),
        (dict(dropout=1.0), "dropout"),
        (dict(attention="flash3"), "attention"),
        (dict(layer_norm_epsilon=0.0), "layer_norm_epsilon"),
    ],
)
def test_invalid_config_raises_value_error_naming_the_field(kwargs, word):
    with pytest.raises(ValueError, match=word):
        GPT2Config(**kwargs)


def test_config_round_trips_through_a_dict():
    c = GPT2Config.from_name("gpt2-mini", bias=False)
    assert GPT2Config.from_dict(c.to_dict()) == c


# -------------------------------------------------------------------------------------------------
# Parameter counts
@pytest.mark.parametrize(
    "name, expected",
    [("gpt2", 124_439_808), ("gpt2-medium", 354_823_168), ("gpt2-large", 774_030_080), ("gpt2-xl", 1_557_611_200)],
)
def test_parameter_counts_match_the_released_checkpoints(name, expected):
    """Tied LM head counted once; built on the meta device so no memory is used."""
    with torch.device("meta"):
        model = GPT2(GPT2Config.from_name(name))
    assert model.num_parameters() == expected


@given(
    n_layer=st.integers(1, 4), n_head=st.integers(1, 4), head=st.integers(1, 16), vocab=st.integers(2, 500),
    block=st.integers(1, 64), bias=st.booleans(),
)
@settings(max_examples=25, deadline=None)
def test_parameter_count_matches_transformers_and_the_closed_form(n_layer, n_head, head, vocab, block, bias):
    """Per block 12 C^2 weights (+ 13 C biases/LN when bias=True), plus embeddings and the final LN."""
    C = n_head * head
    with torch.device("meta"):
        model = GPT2(GPT2Config(n_layer=n_layer, n_head=n_head, n_embd=C, vocab_size=vocab, block_size=block, bias=bias))
    per_block = 12 * C * C + (13 * C if bias else 2 * C)
    non_embedding = n_layer * per_block + (2 * C if bias else C)
    assert model.num_parameters(non_embedding=True) == non_embedding
    assert model.num_parameters() == non_embedding + vocab * C + block * C
    if bias:
        from transformers import GPT2Config as HFConfig
        from transformers import GPT2LMHeadModel

        with torch.device("meta"):
            hf = GPT2LMHeadModel(HFConfig(n_layer=n_layer, n_head=n_head, n_embd=C, vocab_size=vocab, n_positions=block))
        assert model.num_parameters() == hf.num_parameters()


# -------------------------------------------------------------------------------------------------
# Structure and initialization
def test_lm_head_is_tied_to_the_token_embedding():
    model = make(tiny())
    assert model.lm_head.weight is model.transformer.wte.weight
    idx = torch.randint(0, 97, (2, 8))
    _, loss = model(idx, idx)
    loss.backward()
    assert model.transformer.wte.weight.grad is not None


def test_init_is_normal_002_with_residual_projections_scaled_by_one_over_sqrt_2n():
    """GPT-2 §2.3: residual layers scaled by 1/sqrt(N), N = 2 * n_layer; everything else N(0, 0.02)."""
    config = GPT2Config(n_layer=8, n_head=4, n_embd=256, vocab_size=1000, block_size=64)
    model = make(config)
    std = lambda t: t.detach().float().std().item()  # noqa: E731
    assert std(model.transformer.wte.weight) == pytest.approx(0.02, rel=0.03)
    assert std(model.transformer.wpe.weight) == pytest.approx(0.02, rel=0.03)
    for block in model.transformer.h:
        assert std(block.attn.c_attn.weight) == pytest.approx(0.02, rel=0.03)
        assert std(block.mlp.c_fc.weight) == pytest.approx(0.02, rel=0.03)
        assert std(block.attn.c_proj.weight) == pytest.approx(0.02 / math.sqrt(16), rel=0.03)
        assert std(block.mlp.c_proj.weight) == pytest.approx(0.02 / math.sqrt(16), rel=0.03)
        assert torch.all(block.attn.c_attn.bias == 0) and torch.all(block.ln_1.weight == 1)
        assert torch.all(block.ln_2.bias == 0)
    plain = make(GPT2Config(**{**config.to_dict(), "scale_residual_init": False}))
    assert std(plain.transformer.h[0].mlp.c_proj.weight) == pytest.approx(0.02, rel=0.03)


def test_construction_is_deterministic_under_a_seed():
    a, b = make(tiny(), seed=3), make(tiny(), seed=3)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_bias_false_removes_every_bias():
    model = make(tiny(bias=False))
    assert not any(name.endswith("bias") for name, _ in model.named_parameters())
    logits, _ = model(torch.randint(0, 97, (1, 5)))
    assert torch.isfinite(logits).all()


# -------------------------------------------------------------------------------------------------
# Forward pass, against transformers
@pytest.mark.parametrize("attention", ["sdpa", "manual"])
def test_logits_and_loss_match_transformers(attention):
    """Same weights -> same logits for every position, and the same mean next-token loss."""
    # init std 0.1: large enough activations that a wrong GELU or LayerNorm shows above 1e-5
    model = make(tiny(attention=attention, initializer_range=0.1)).eval()
    hf = hf_twin(model)
    idx = torch.randint(0, 97, (3, 20))
    with torch.no_grad():
        ref = hf(idx, labels=idx)
        targets = torch.cat([idx[:, 1:], torch.full((3, 1), -1)], dim=1)  # HF shifts labels itself
        logits, loss = model(idx, targets)
    assert logits.shape == (3, 20, 97)
    assert (logits - ref.logits).abs().max().item() <= 1e-5
    assert loss.item() == pytest.approx(ref.loss.item(), abs=1e-5)


def test_attention_maps_match_transformers_output_attentions():
    model = make(tiny(initializer_range=0.1)).eval()
    hf = hf_twin(model, attn="eager")
    idx = torch.randint(0, 97, (2, 11))
    maps = attention_maps(model, idx)
    with torch.no_grad():
        ref = torch.stack(hf(idx, output_attentions=True).attentions)
    assert maps.shape == (2, 2, 4, 11, 11)  # [n_layer, B, n_head, T, T]
    assert (maps - ref).abs().max().item() <= 1e-6
    assert torch.allclose(maps.sum(-1), torch.ones(2, 2, 4, 11))
    assert torch.all(maps.triu(diagonal=1) == 0)  # causal: nothing attends to the future


@given(B=st.integers(1, 3), T=st.integers(1, 32), seed=st.integers(0, 2**16))
@settings(max_examples=20, deadline=None)
def test_sdpa_and_manual_attention_give_the_same_numbers(B, T, seed):
    """The readable softmax(QK^T/sqrt(d))V path and F.scaled_dot_product_attention agree."""
    model = make(tiny(), seed=seed % 7)
    idx = torch.randint(0, 97, (B, T), generator=torch.Generator().manual_seed(seed))
    model.set_attention("sdpa")
    a, la = model(idx, idx)
    model.set_attention("manual")
    b, lb = model(idx, idx)
    assert (a - b).abs().max().item() <= 1e-5
    assert abs(la.item() - lb.item()) <= 1e-5


@given(T=st.integers(2, 32), cut=st.integers(1, 31), seed=st.integers(0, 2**16))
@settings(max_examples=20, deadline=None)
def test_logits_at_a_position_do_not_depend_on_later_tokens(T, cut, seed):
    cut = min(cut, T - 1)
    model = make(tiny(), seed=1).eval()
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, 97, (1, T), generator=g)
    other = idx.clone()
    other[:, cut:] = torch.randint(0, 97, (1, T - cut), generator=g)
    with torch.no_grad():
        a, _ = model(idx)
        b, _ = model(other)
    assert torch.allclose(a[:, :cut], b[:, :cut], atol=1e-5)


def test_loss_is_mean_cross_entropy_ignoring_minus_one():
    model = make(tiny()).eval()
    idx = torch.randint(0, 97, (2, 10))
    targets = torch.randint(0, 97, (2, 10))
    targets[0, :4] = -1
    targets[1, 7] = -1
    logits, loss = model(idx, targets)
    keep = targets != -1
    logp = torch.log_softmax(logits.double(), dim=-1)
    expected = -logp[keep, targets[keep]].mean()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)


def test_integer_dtypes_other_than_long_are_accepted():
    model = make(tiny()).eval()
    idx = torch.randint(0, 97, (2, 6))
    a, _ = model(idx)
    b, _ = model(idx.to(torch.int32))
    assert torch.equal(a, b)


def test_dropout_is_active_in_training_and_off_in_eval():
    model = make(tiny(dropout=0.5))
    idx = torch.randint(0, 97, (2, 8))
    model.train()
    assert not torch.equal(model(idx)[0], model(idx)[0])
    model.eval()
    assert torch.equal(model(idx)[0], model(idx)[0])


def test_a_few_adamw_steps_fit_a_repeated_sequence():
    model = make(tiny())
    idx = torch.arange(20).repeat(4, 1) % 97
    targets = torch.roll(idx, -1, dims=1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        _, loss = model(idx, targets)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first


# -------------------------------------------------------------------------------------------------
# Errors
def test_ids_outside_the_vocabulary_raise_naming_the_id():
    model = make(tiny())
    with pytest.raises(ValueError, match="97"):
        model(torch.tensor([[1, 2, 97]]))
    with pytest.raises(ValueError, match="-3"):
        model(torch.tensor([[1, -3]]))
    with pytest.raises(ValueError, match="targets.*500"):
        model(torch.tensor([[1, 2]]), torch.tensor([[1, 500]]))


def test_too_long_sequence_raises_naming_both_lengths():
    model = make(tiny())
    with pytest.raises(ValueError, match=r"33.*32"):
        model(torch.zeros(1, 33, dtype=torch.long))


def test_float_ids_raise_type_error():
    model = make(tiny())
    with pytest.raises(TypeError, match="dtype"):
        model(torch.zeros(1, 4))
    with pytest.raises(TypeError):
        model([[1, 2, 3]])


def test_bad_shapes_raise_value_error():
    model = make(tiny())
    with pytest.raises(ValueError, match="shape"):
        model(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="targets shape"):
        model(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long))


def test_ids_on_another_device_raise_a_clear_error():
    with torch.device("meta"):
        model = GPT2(tiny())
    with pytest.raises(ValueError, match="device"):
        model(torch.zeros(1, 4, dtype=torch.long))


def test_id_validation_can_be_switched_off_for_accelerators():
    """``validate_ids`` (on by default) is what turns a bad id into a ValueError; the trainer turns
    it off on GPUs, where the check would read back to the host every step."""
    model = GPT2(GPT2Config(n_layer=1, n_head=1, n_embd=8, block_size=8, vocab_size=16))
    bad = torch.tensor([[3, 16]])
    with pytest.raises(ValueError, match="16"):
        model(bad)
    model.validate_ids = False
    with pytest.raises(IndexError):  # no check: the embedding lookup itself fails
        model(bad)


@pytest.mark.parametrize("mode", [True, False])
def test_evaluating_turns_dropout_off_and_restores_the_mode_even_on_errors(mode):
    from gpt2lib.model import evaluating

    model = make(tiny(dropout=0.5)).train(mode)
    with evaluating(model):
        assert not model.training and not any(m.training for m in model.modules())
    assert model.training is mode and all(m.training is mode for m in model.modules())
    with pytest.raises(RuntimeError, match="boom"), evaluating(model):
        raise RuntimeError("boom")
    assert model.training is mode and all(m.training is mode for m in model.modules())


def test_non_contiguous_targets_give_the_loss_of_their_contiguous_copy():
    """``ids[:, 1:]`` as targets (a view, not contiguous) is the usual way to shift a batch: it must work and
    give the same loss as the contiguous copy (it raised 'view size is not compatible' before)."""
    torch.manual_seed(0)
    model = GPT2(GPT2Config(vocab_size=97, block_size=16, n_layer=1, n_head=2, n_embd=16)).eval()
    ids = torch.randint(0, 97, (3, 9))
    targets = ids[:, 1:]
    assert not targets.is_contiguous()
    _, loss = model(ids[:, :-1], targets=targets)
    _, ref = model(ids[:, :-1], targets=targets.contiguous())
    assert torch.equal(loss, ref)
