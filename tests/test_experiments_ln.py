"""gpt2lib.experiments_ln: the post-LN teaching contrast of the model chapter (GPT-2 §2.3), checked against
formulas written out here with torch.nn.functional and torch.autograd."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gpt2lib import experiments_ln as E
from gpt2lib.model import GPT2Config

CONFIG = GPT2Config(n_layer=6, n_head=2, n_embd=32, block_size=16, vocab_size=50)


def _ln(ln: torch.nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], ln.weight, ln.bias, ln.eps)


def test_post_ln_block_normalizes_after_each_residual_addition():
    """x -> LN_1(x + Attn(x)) -> LN_2(h + MLP(h)), the original Transformer / GPT-1 order."""
    torch.manual_seed(0)
    model = E.build(CONFIG, post_ln=True).eval()
    block = model.transformer.h[0]
    assert isinstance(block, E.PostLNBlock)
    x = torch.randn(2, 5, CONFIG.n_embd)
    with torch.no_grad():
        h = _ln(block.ln_1, x + block.attn(x))
        want = _ln(block.ln_2, h + block.mlp(h))
        torch.testing.assert_close(block(x), want)
        # every post-LN block hands on a stream of std ~1 (LayerNorm with gain 1, bias 0 at initialization)
        assert block(x).std(-1, correction=0).mean().item() == pytest.approx(1.0, abs=0.01)
    assert isinstance(model.transformer.ln_f, torch.nn.Identity)


def test_same_seed_gives_both_orders_the_same_weights():
    pre, post = E.build(CONFIG, seed=3), E.build(CONFIG, seed=3, post_ln=True)
    post_state = post.state_dict()
    for name, tensor in pre.state_dict().items():
        if not name.startswith("transformer.ln_f"):
            torch.testing.assert_close(post_state[name], tensor, rtol=0, atol=0)
    copy = E.post_ln_copy(pre)
    torch.testing.assert_close(copy.transformer.h[2].mlp.c_fc.weight, pre.transformer.h[2].mlp.c_fc.weight)
    assert isinstance(copy.transformer.h[2], E.PostLNBlock) and not isinstance(pre.transformer.h[2], E.PostLNBlock)


def test_plain_init_drops_the_residual_scaling_and_position_std_rescales_only_wpe():
    """GPT-1: N(0, 0.02) for the residual projections; GPT-2: 0.02 / sqrt(2 * n_layer); position_std: wpe only."""
    config = GPT2Config(n_layer=8, n_head=2, n_embd=128, block_size=64, vocab_size=300)
    gpt2, gpt1 = E.build(config), E.build(config, plain_init=True)
    for block2, block1 in zip(gpt2.transformer.h, gpt1.transformer.h):
        assert block2.mlp.c_proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.05)
        assert block1.mlp.c_proj.weight.std().item() == pytest.approx(0.02, rel=0.05)
    scaled = E.build(config, position_std=1.0)
    assert scaled.transformer.wpe.weight.std().item() == pytest.approx(1.0, rel=0.05)
    torch.testing.assert_close(scaled.transformer.wte.weight, gpt2.transformer.wte.weight, rtol=0, atol=0)
    assert scaled.lm_head.weight is scaled.transformer.wte.weight
    with pytest.raises(ValueError, match="position_std"):
        E.build(config, position_std=0.0)


def test_block_grad_norms_equal_autograd_per_block():
    torch.manual_seed(0)
    model = E.build(CONFIG, post_ln=True)
    x = torch.randint(0, CONFIG.vocab_size, (3, 10))
    y = torch.randint(0, CONFIG.vocab_size, (3, 10))
    got = E.block_grad_norms(model, x, y)
    _, loss = model(x, y)
    want = []
    for block in model.transformer.h:
        grads = torch.autograd.grad(loss, list(block.parameters()), retain_graph=True)
        want.append(math.sqrt(sum((g.double() ** 2).sum().item() for g in grads)))
    assert got == pytest.approx(want, rel=1e-5)
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())  # leaves no gradient behind


def test_train_losses_learns_a_fixed_batch_and_stops_on_a_non_finite_loss():
    x = torch.randint(0, CONFIG.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    inputs, targets = x[:, :-1].contiguous(), x[:, 1:].contiguous()
    fixed = lambda step: (inputs, targets)  # noqa: E731
    for options in ({}, {"post_ln": True, "plain_init": True}):
        losses = E.train_losses(E.build(CONFIG, **options), fixed, steps=30, lr=1e-2)
        assert len(losses) == 30 and losses[-1] < losses[0] - 1.0
        assert losses == E.train_losses(E.build(CONFIG, **options), fixed, steps=30, lr=1e-2)  # deterministic
    broken = E.build(CONFIG)
    with torch.no_grad():
        broken.transformer.wpe.weight[0, 0] = float("nan")
    assert E.train_losses(broken, fixed, steps=5, lr=1e-3) == []
