"""The fused, chunked LM loss is the plain one: ``F.cross_entropy(x @ W.T, y, ignore_index=-1)``,
in value and in the gradients of both the hidden states and the (tied) head weight."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2lib.loss import linear_cross_entropy
from gpt2lib.model import GPT2, GPT2Config


def _reference(x, w, y):
    return F.cross_entropy(x @ w.t(), y, ignore_index=-1)


def _grads(fn, x, w, y):
    x = x.clone().requires_grad_(True)
    w = w.clone().requires_grad_(True)
    loss = fn(x, w, y)
    (loss * 3.0).backward()  # a non-unit upstream gradient must be applied too
    return loss.detach(), x.grad, w.grad


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 40),
    d=st.integers(1, 12),
    vocab=st.integers(2, 70),
    chunk=st.integers(1, 50),
    ignore_frac=st.floats(0.0, 0.7),
    seed=st.integers(0, 2**16),
)
def test_value_and_gradients_equal_plain_cross_entropy(n, d, vocab, chunk, ignore_frac, seed):
    g = torch.Generator().manual_seed(seed)
    x, w = torch.randn(n, d, generator=g), torch.randn(vocab, d, generator=g)
    y = torch.randint(0, vocab, (n,), generator=g)
    y[torch.rand(n, generator=g) < ignore_frac] = -1
    y[0] = 0  # at least one counted position
    ref = _grads(_reference, x, w, y)
    got = _grads(lambda a, b, c: linear_cross_entropy(a, b, c, chunk_size=chunk), x, w, y)
    for r, o in zip(ref, got):
        torch.testing.assert_close(o, r, rtol=1e-5, atol=1e-6)


def test_all_targets_ignored_gives_nan_like_cross_entropy():
    x, w, y = torch.randn(3, 4), torch.randn(5, 4), torch.full((3,), -1)
    assert torch.isnan(_reference(x, w, y)) and torch.isnan(linear_cross_entropy(x, w, y))


def test_shape_mismatches_are_named():
    with pytest.raises(ValueError, match="do not fit"):
        linear_cross_entropy(torch.randn(3, 4), torch.randn(5, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="targets shape"):
        linear_cross_entropy(torch.randn(3, 4), torch.randn(5, 4), torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize("bad", [-100, -2, 5])
def test_targets_outside_the_vocabulary_are_a_value_error(bad):
    """Only -1 is ignored: -100 (PyTorch's default ignore_index) or an id >= vocab is an error
    (F.cross_entropy raises too), never a row silently scored as some class."""
    x, w = torch.randn(3, 4), torch.randn(5, 4)
    y = torch.tensor([0, bad, 1])
    with pytest.raises(IndexError):
        _reference(x, w, y)
    with pytest.raises(ValueError, match=f"targets hold id {bad}"):
        linear_cross_entropy(x, w, y)


def test_model_training_path_matches_the_logits_path():
    """``return_logits=False`` (the trainer's path) gives the same loss and parameter gradients."""
    torch.manual_seed(0)
    model = GPT2(GPT2Config(n_layer=2, n_head=2, n_embd=16, block_size=16, vocab_size=97))
    idx = torch.randint(0, 97, (3, 16))
    targets = idx.roll(-1, dims=1)
    targets[:, -1] = -1

    def run(**kw):
        model.zero_grad(set_to_none=True)
        logits, loss = model(idx, targets, **kw)
        loss.backward()
        return logits, loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    logits_a, loss_a, grads_a = run()
    logits_b, loss_b, grads_b = run(return_logits=False)
    assert logits_a is not None and logits_b is None
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-6, atol=1e-6)
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-4, atol=1e-6, msg=name)
