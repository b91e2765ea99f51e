"""gpt2lib.model.causal_self_attention, the attention to read first, computes what the production module
CausalSelfAttention computes (same weights): with the fused kernel or the manual path, with and without a KV
cache, and (through the production module) what transformers' GPT-2 computes."""
from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2lib.model import CausalSelfAttention, GPT2Config, KVCache, causal_self_attention


def _config(n_head: int, hs: int, implementation: str = "sdpa") -> GPT2Config:
    return GPT2Config(block_size=64, vocab_size=11, n_layer=1, n_head=n_head, n_embd=n_head * hs,
                      attention=implementation)


def _attention(n_head: int, hs: int, seed: int, implementation: str = "sdpa") -> CausalSelfAttention:
    torch.manual_seed(seed)
    attn = CausalSelfAttention(_config(n_head, hs, implementation)).eval()
    for p in attn.parameters():  # a non-zero bias too (the init zeroes biases only inside GPT2)
        torch.nn.init.normal_(p, std=0.3)
    return attn


def _basic(attn: CausalSelfAttention, x: torch.Tensor) -> torch.Tensor:
    return causal_self_attention(x, attn.c_attn, attn.c_proj, attn.n_head)


@settings(max_examples=40, deadline=None)
@given(B=st.integers(1, 3), T=st.integers(1, 40), n_head=st.integers(1, 4), hs=st.integers(1, 16),
       seed=st.integers(0, 2**16), implementation=st.sampled_from(["sdpa", "manual"]))
def test_equals_the_production_module(B, T, n_head, hs, seed, implementation):
    attn = _attention(n_head, hs, seed, implementation)
    x = torch.randn(B, T, n_head * hs)
    with torch.no_grad():
        torch.testing.assert_close(_basic(attn, x), attn(x))


@settings(max_examples=40, deadline=None)
@given(T=st.integers(2, 40), data=st.data(), seed=st.integers(0, 2**16))
def test_equals_the_production_module_fed_in_pieces_through_a_kv_cache(T, data, seed):
    """A prefix, then pieces of random lengths (one token at a time included) through the cache: the outputs
    put together equal the minimal function's on the whole sequence."""
    attn = _attention(2, 8, seed)
    x = torch.randn(2, T, 16)
    cuts = sorted(data.draw(st.sets(st.integers(1, T - 1), max_size=6)))
    cache = KVCache(_config(2, 8), batch_size=2, max_len=T)
    outs = []
    with torch.no_grad():
        for a, b in zip([0, *cuts], [*cuts, T]):
            outs.append(attn(x[:, a:b], kv_cache=cache))
            cache.pos = b  # GPT2.forward advances the cache after the last layer
        torch.testing.assert_close(torch.cat(outs, dim=1), _basic(attn, x))


def test_a_position_ignores_later_positions():
    attn = _attention(2, 4, 0)
    x = torch.randn(1, 10, 8)
    y = x.clone()
    y[:, 6:] = torch.randn(1, 4, 8)
    with torch.no_grad():
        assert torch.equal(_basic(attn, x)[:, :6], _basic(attn, y)[:, :6])
        assert not torch.allclose(_basic(attn, x)[:, 6:], _basic(attn, y)[:, 6:])


def test_inside_a_model_it_gives_the_models_logits():
    """Swap the minimal function into every block of a GPT2: the logits do not change."""
    from gpt2lib.model import GPT2

    torch.manual_seed(0)
    model = GPT2(GPT2Config(block_size=32, vocab_size=97, n_layer=2, n_head=4, n_embd=32)).eval()
    idx = torch.randint(0, 97, (2, 20))
    with torch.no_grad():
        want, _ = model(idx)
        for block in model.transformer.h:
            a = block.attn
            a.forward = lambda x, kv_cache=None, attn_out=None, a=a: _basic(a, x)
        got, _ = model(idx)
    torch.testing.assert_close(got, want)
