"""Pre-LN against post-LN: the teaching contrast of the model chapter (GPT-2 §2.3).

GPT-2 moved layer normalization "to the input of each sub-block" and added one after the final block (§2.3);
GPT-1 and the original Transformer normalized *after* each residual addition ("post-LN"). gpt2lib implements
only GPT-2's pre-LN block. This module builds the post-LN variant **for comparison only** and measures the two
things the model chapter shows: the gradient each block receives at initialization, and short training runs
without learning-rate warm-up.

Fairness controls (what the chapter needs to compare like with like):

* ``plain_init=True`` builds the post-LN model with GPT-1's initialization, N(0, 0.02) for every weight, without
  GPT-2's 1/sqrt(N) scaling of the residual projections (``GPT2Config.scale_residual_init``);
* ``position_std`` re-draws the position table ``wpe`` with another std, so the residual stream can start at the
  same scale in both variants: a post-LN stream has std 1 after every block, a pre-LN stream built with GPT-2's
  0.02 starts near 0.03, and LayerNorm's backward pass divides by the std of its input. Only ``wpe`` changes:
  ``wte`` is tied to the LM head, so rescaling it would also rescale the logits.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import torch.nn as nn

from gpt2lib.model import GPT2, Block, GPT2Config

__all__ = ["PostLNBlock", "build", "post_ln_copy", "block_grad_norms", "train_losses"]

Batch = Callable[[int], tuple[torch.Tensor, torch.Tensor]]


class PostLNBlock(Block):
    """The post-LN block of the original Transformer and GPT-1: LayerNorm *after* each residual addition."""

    def forward(self, x, kv_cache=None, attn_out=None):
        x = self.ln_1(x + self.attn(x, kv_cache, attn_out))
        x = self.ln_2(x + self.mlp(x))
        return x


def _to_post_ln(model: GPT2) -> GPT2:
    """Swap in post-LN blocks with the same weights and drop the final LayerNorm (GPT-1 has none)."""
    state = model.state_dict()
    model.transformer.h = nn.ModuleList(PostLNBlock(model.config, i) for i in range(model.config.n_layer))
    model.load_state_dict(state)
    model.transformer.ln_f = nn.Identity()
    return model


def post_ln_copy(model: GPT2) -> GPT2:
    """A post-LN model with the same weights as the pre-LN ``model`` (and no final LayerNorm)."""
    post = GPT2(model.config).to(model.device)
    post.load_state_dict(model.state_dict())
    return _to_post_ln(post)


def build(config: GPT2Config, *, post_ln: bool = False, plain_init: bool = False,
          position_std: float | None = None, seed: int = 0) -> GPT2:
    """A freshly initialized model of ``config``: pre-LN (GPT-2) or post-LN (GPT-1 order).

    ``plain_init``: GPT-1's N(0, 0.02) everywhere (no 1/sqrt(2 * n_layer) for the residual projections).
    ``position_std``: re-draw the position embedding ``wpe`` with this std (a larger residual stream).
    The same ``seed`` gives the same weights to every variant (up to the two options).
    """
    if position_std is not None and not position_std > 0:
        raise ValueError(f"position_std must be positive, got {position_std}")
    if plain_init:
        config = dataclasses.replace(config, scale_residual_init=False)
    torch.manual_seed(seed)
    model = GPT2(config)
    if position_std is not None:
        with torch.no_grad():
            model.transformer.wpe.weight.mul_(position_std / config.initializer_range)
    return _to_post_ln(model) if post_ln else model


def block_grad_norms(model: GPT2, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """The L2 norm of the loss gradient over each block's parameters, block 1 (next to the embeddings) first."""
    model.zero_grad()
    _, loss = model(x, y)
    loss.backward()
    norms = [torch.cat([p.grad.flatten() for p in b.parameters()]).norm().item() for b in model.transformer.h]
    model.zero_grad()
    return norms


def train_losses(model: GPT2, batch: Batch, steps: int, lr: float, *, seed: int = 0) -> list[float]:
    """AdamW (no weight decay) at a constant ``lr`` with **no warm-up**, one batch ``batch(step + 1)`` per step;
    the training loss of every step. A non-finite loss ends the run early (the list is shorter)."""
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses: list[float] = []
    for step in range(steps):
        _, loss = model(*batch(step + 1))
        if not torch.isfinite(loss):
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
