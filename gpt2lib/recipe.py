"""The training recipe, and nothing else: schedule, optimizer, loss, one optimizer step, held-out loss.

GPT-2 §2.3 gives the context (1024 tokens) and the batch (512 sequences) but no optimizer settings; these follow
GPT-3's small model (Brown et al. 2020, Appendix B): AdamW, weight decay on the 2-D weights only, linear
warm-up then cosine decay of the learning rate, gradient clipping at 1.0. A step's batch is reached by
gradient accumulation over micro-batches. Folders, logs, checkpoints and signals are :mod:`gpt2lib.runner`'s;
:func:`gpt2lib.train.train` puts the two together.
"""
from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Callable

import torch

from gpt2lib.data import TokenLoader, TokenShards
from gpt2lib.model import evaluating

if TYPE_CHECKING:
    from gpt2lib.train import TrainConfig

__all__ = ["lr_at", "configure_optimizer", "batch_loss", "optimizer_step", "evaluate_loss"]

Batch = tuple[torch.Tensor, torch.Tensor]  # (inputs, next-token targets), each (B, T)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate at optimizer step ``step`` (0-based): linear warm-up from lr/warmup to lr over
    ``warmup_steps``, cosine decay to ``min_lr`` at ``decay_steps``, then constant ``min_lr``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if step >= cfg.decay_steps:
        return cfg.min_lr
    progress = (step - cfg.warmup_steps) / max(1, cfg.decay_steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def configure_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on the 2-D weights (matmuls, embeddings) only; biases and LayerNorm gains are
    not decayed. Fused kernel on CUDA."""
    params = [p for p in model.parameters() if p.requires_grad]  # the tied head appears once
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    extra = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, **extra)


def batch_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
               amp: contextlib.AbstractContextManager | None = None) -> torch.Tensor:
    """Mean next-token cross-entropy (nats) of one batch, under ``amp`` (autocast) if given."""
    with amp or contextlib.nullcontext():
        _, loss = model(x, y, return_logits=False)
    return loss


def optimizer_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, next_batch: Callable[[], Batch],
                   grad_accum: int, lr: float, grad_clip: float, *,
                   amp: contextlib.AbstractContextManager | None = None,
                   scaler: torch.amp.GradScaler | None = None) -> tuple[float, float | None]:
    """One AdamW step at learning rate ``lr`` on the gradient of the mean loss over ``grad_accum`` micro-batches,
    its norm clipped to ``grad_clip`` (0 = no clipping). Returns (mean loss, gradient norm before clipping).

    A NaN / infinite loss makes no update: it is returned with ``None`` for the norm, and the caller stops.
    Under DDP the gradients are all-reduced on the last micro-batch only and the loss is averaged over ranks;
    with fp16 the ``scaler`` scales the loss against gradient underflow."""
    scaler = scaler or torch.amp.GradScaler(enabled=False)
    for group in optimizer.param_groups:
        group["lr"] = lr
    ddp = isinstance(model, torch.nn.parallel.DistributedDataParallel)
    loss_sum = torch.zeros((), device=next(model.parameters()).device)
    for micro in range(grad_accum):
        x, y = next_batch()
        last = micro == grad_accum - 1
        with model.no_sync() if ddp and not last else contextlib.nullcontext():
            loss = batch_loss(model, x, y, amp) / grad_accum
            scaler.scale(loss).backward()
        loss_sum += loss.detach()
    if ddp:
        torch.distributed.all_reduce(loss_sum, op=torch.distributed.ReduceOp.AVG)
    mean_loss = float(loss_sum)
    if not math.isfinite(mean_loss):
        return mean_loss, None
    scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(list(model.parameters()), grad_clip if grad_clip > 0 else math.inf)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return mean_loss, float(grad_norm)


@torch.no_grad()
def evaluate_loss(model: torch.nn.Module, shards: TokenShards, block_size: int, batch_size: int,
                  max_batches: int, device: torch.device, amp: contextlib.AbstractContextManager | None = None
                  ) -> tuple[float, float]:
    """Held-out loss: the mean next-token loss (nats) over the first ``max_batches`` batches of ``shards`` in
    corpus order, and bits per byte = loss * tokens / (ln 2 * bytes), where bytes/tokens is the split's ratio.
    A split with fewer windows than one batch is evaluated as one smaller batch of all its windows."""
    if max_batches < 1:
        raise ValueError(f"max_batches must be >= 1, got {max_batches}")
    loader = TokenLoader(shards, block_size, batch_size, shuffle=False, device=device)
    if len(loader) == 0:
        loader = TokenLoader(shards, block_size, loader.windows_per_rank, shuffle=False, device=device)
    total, n = 0.0, 0
    with evaluating(model):
        for i, (x, y) in enumerate(loader):
            if i == max_batches:
                break
            loss = batch_loss(model, x, y, amp)
            total += float(loss) * y.numel()
            n += y.numel()
    if n == 0:
        raise ValueError(f"the {shards.split} split has no complete batch of {batch_size} x {block_size} tokens")
    mean = total / n
    bpb = mean * shards.num_tokens / (math.log(2) * shards.num_bytes) if shards.num_bytes else float("nan")
    return mean, bpb
