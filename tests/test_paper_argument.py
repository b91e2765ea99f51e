"""The conceptual claims the chapters add for issue 13, each checked against an independent computation.

- §2: the supervised loss is the language-modelling loss restricted to the output positions (so a global
  minimum of the LM loss minimizes it too); checked on gpt2lib's loss against a per-token recomputation.
- §2.3: attention without position embeddings cannot tell the order of the tokens a position sees.
- §2.2: byte-level cost, bytes per GPT-2 token on the WebText sample, counted with tiktoken directly.
- Abstract: Table 3's trend is linear in log-perplexity (numpy's least squares, not the chapter's formula).
- Training: the squared error of a mini-batch gradient falls as 1/batch.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import tiktoken
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2lib.datasets import read_text
from gpt2lib.evaluate import PAPER_TABLE3
from gpt2lib.model import GPT2, GPT2Config

SIZES = ["117M", "345M", "762M", "1542M"]


@pytest.fixture(scope="module")
def tiny() -> GPT2:
    torch.manual_seed(0)
    return GPT2(GPT2Config.from_name("gpt2-tiny", vocab_size=257)).eval()


def test_supervised_loss_is_the_lm_loss_on_the_output_positions(tiny):
    """Masking the targets outside the output gives the mean of exactly those per-token LM losses (§2)."""
    seq = list(b"translate to french: the cat sleeps => le chat dort")
    start = seq.index(ord(">")) + 1  # the output positions: everything after "=>"
    idx = torch.tensor([seq[:-1]])
    targets = torch.tensor([seq[1:]])
    with torch.no_grad():
        logits, lm_loss = tiny(idx, targets)
        masked = targets.clone()
        masked[0, : start - 1] = -1  # position i predicts seq[i + 1]
        _, sup_loss = tiny(idx, masked)
    per_token = -torch.log_softmax(logits[0].double(), -1).gather(1, targets[0, :, None]).squeeze(1)
    assert sup_loss.item() == pytest.approx(per_token[start - 1 :].mean().item(), rel=1e-5)
    assert lm_loss.item() == pytest.approx(per_token.mean().item(), rel=1e-5)
    # the supervised terms are a subset of the LM loss's terms, so the LM sum bounds the supervised sum
    assert per_token.sum() >= per_token[start - 1 :].sum()


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, 255), min_size=3, max_size=24), st.randoms(use_true_random=False))
def test_attention_without_positions_sees_a_set(tiny, ids, rnd):
    """Without wpe, block 1's last position is the same for any order of the earlier tokens (§2.3)."""
    head, last = ids[:-1], ids[-1]
    shuffled = head[:]
    rnd.shuffle(shuffled)
    block = tiny.transformer.h[0]
    with torch.no_grad():
        out = [block(tiny.transformer.wte(torch.tensor([h + [last]])))[0, -1] for h in (head, shuffled)]
    torch.testing.assert_close(out[0], out[1], atol=1e-5, rtol=1e-5)


def test_positions_break_the_symmetry(tiny):
    """With wpe added, the two orders of the chapter's example give different last-position outputs."""
    pos = tiny.transformer.wpe(torch.arange(14))
    block = tiny.transformer.h[0]
    orders = [torch.tensor([list(s)]) for s in (b"dog bites man.", b"man bites dog.")]
    with torch.no_grad():
        a, b = (block(tiny.transformer.wte(o))[0, -1] for o in orders)
        c, d = (block(tiny.transformer.wte(o) + pos)[0, -1] for o in orders)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert (c - d).abs().max() > 1e-4


def test_bytes_per_gpt2_token_on_the_webtext_sample():
    """GPT-2's tokens cover about 4.5 bytes of WebText each, counted with tiktoken itself (§2.2)."""
    enc = tiktoken.get_encoding("gpt2")
    docs = [json.loads(line)["text"] for line in read_text("webtext-sample").splitlines()]
    n_bytes = sum(len(d.encode("utf-8")) for d in docs)
    n_tokens = sum(len(t) for t in enc.encode_ordinary_batch(docs))
    assert 4.3 < n_bytes / n_tokens < 4.7


def test_table3_is_linear_in_log_perplexity_not_in_perplexity():
    """Least squares of log PPL on log2 parameters: every slope negative, residuals small; raw gains shrink."""
    x = np.log2([117, 345, 762, 1542])
    for column, row in PAPER_TABLE3.items():
        if not column.endswith("/ppl"):
            continue
        y = np.log([row[s] for s in SIZES])
        slope, intercept = np.polyfit(x, y, 1)
        residuals = y - (slope * x + intercept)
        assert -0.4 < slope < -0.1, column
        assert np.abs(residuals).max() < 0.14, column
    ppl = [PAPER_TABLE3["lambada/ppl"][s] for s in SIZES]
    gains = [(p - q) / (b - a) for p, q, a, b in zip(ppl, ppl[1:], x, x[1:])]
    assert [round(g, 1) for g in gains] == [12.5, 4.1, 2.2]  # the chapter's prose
    assert PAPER_TABLE3["cbt-cn/acc"]["762M"] > PAPER_TABLE3["cbt-cn/acc"]["1542M"]


def test_gradient_error_falls_as_one_over_batch():
    """The squared error of a mini-batch gradient against a large batch's falls about 8x from batch 1 to 8."""
    torch.manual_seed(0)
    net = GPT2(GPT2Config.from_name("gpt2-tiny", vocab_size=257))
    text = torch.tensor(list(read_text("tiny-shakespeare").encode("utf-8")[:100_000]))
    gen = torch.Generator().manual_seed(1)
    T = 32

    def grad(batch: int) -> torch.Tensor:
        start = torch.randint(0, len(text) - T - 1, (batch,), generator=gen)
        x = torch.stack([text[s : s + T] for s in start])
        y = torch.stack([text[s + 1 : s + T + 1] for s in start])
        net.zero_grad()
        net(x, y)[1].backward()
        return torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])

    g = grad(128)
    err = {b: torch.stack([(grad(b) - g).pow(2).sum() for _ in range(8)]).mean().item() for b in (1, 8)}
    assert 4 < err[1] / err[8] < 16
    assert math.isfinite(err[1])
