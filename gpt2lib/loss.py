"""The language-modelling loss without the ``[tokens, vocab]`` logits tensor (training, GPT-2 §2.3).

GPT-2's output layer is wide: 50,257 logits per position. For a batch of 8 x 256 tokens the
logits alone are 2048 x 50257 floats (400 MB), and the usual ``F.cross_entropy(lm_head(x), y)``
writes them, reads them for the log-softmax, writes a gradient of the same size (zero-filled
first) and reads it back through the log-softmax backward. On a CPU that memory traffic costs
about a sixth of a small model's training step.

:func:`linear_cross_entropy` computes the same loss and the same gradients chunk by chunk: for
each block of rows it forms the logits, their log-softmax, the loss, and at once the gradient of
the loss with respect to the logits, ``softmax(z) - onehot(y)``, which it turns into the
gradients of the hidden states and of the head's weight before moving on. No full-size tensor is
ever made; the backward pass only scales the stored gradients. The arithmetic is the textbook
derivative of softmax cross-entropy, nothing GPT-2 specific; the trick of fusing the head with
the loss is common in training libraries (e.g. Liger Kernel's fused linear cross-entropy).

It gives the loss of ``F.cross_entropy(x @ weight.T, targets, ignore_index=-1)`` and its
gradients (tested to float rounding); used by ``GPT2.forward(..., return_logits=False)``.
"""
from __future__ import annotations

import torch

__all__ = ["linear_cross_entropy"]


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_size: int):
        n_valid = int((targets != -1).sum())
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        grad_x = torch.empty_like(x) if need_grad else None
        grad_w = torch.zeros_like(weight) if need_grad else None
        total = x.new_zeros((), dtype=torch.float32)
        for start in range(0, x.shape[0], chunk_size):
            xc, yc = x[start : start + chunk_size], targets[start : start + chunk_size]
            logits = xc @ weight.t()  # [c, vocab]: the only large tensor, one chunk at a time
            logp = torch.log_softmax(logits, dim=-1)
            del logits
            valid = yc != -1
            safe_y = yc.clamp(min=0)
            total -= (logp.gather(1, safe_y[:, None]).squeeze(1) * valid).sum()
            if need_grad:
                # d(loss)/d(logits) = (softmax(logits) - onehot(y)) * scale, scale = 1/n_valid on
                # counted rows and 0 on ignored ones; the scale is applied to the small [c, d] side.
                probs = logp.exp_()
                probs[torch.arange(len(yc), device=yc.device), safe_y] -= 1.0
                scale = (valid.to(x.dtype) / max(n_valid, 1))[:, None]
                torch.mm(probs, weight, out=grad_x[start : start + chunk_size])
                grad_x[start : start + chunk_size] *= scale
                grad_w.addmm_(probs.t(), xc * scale)
        ctx.save_for_backward(grad_x, grad_w)
        # as F.cross_entropy: the mean over counted positions (nan when every target is ignored)
        return total / n_valid if n_valid else total / 0.0

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        grad_x, grad_w = ctx.saved_tensors
        if grad_out.numel() == 1 and float(grad_out) == 1.0:  # loss.backward(): nothing to scale
            gx, gw = grad_x, grad_w
        else:
            gx, gw = grad_x * grad_out, grad_w * grad_out
        gx = gx if ctx.needs_input_grad[0] else None
        gw = gw if ctx.needs_input_grad[1] else None
        return gx, gw, None, None


def linear_cross_entropy(
    x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_size: int = 512
) -> torch.Tensor:
    """Mean cross-entropy of ``x @ weight.T`` against ``targets`` (``-1`` = ignored), chunked.

    ``x``: hidden states ``[N, d]``; ``weight``: the LM head ``[vocab, d]``; ``targets``: ``[N]``
    int64. Equal to ``F.cross_entropy(x @ weight.T, targets, ignore_index=-1)`` in value and
    gradients, without the ``[N, vocab]`` logits. Meant for float32 on CPU; under autocast (mixed
    precision on a GPU) use the plain path, which the model does for you.
    """
    if x.dim() != 2 or weight.dim() != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"x {tuple(x.shape)} and weight {tuple(weight.shape)} do not fit x @ weight.T")
    if targets.shape != x.shape[:1]:
        raise ValueError(f"targets shape {tuple(targets.shape)} != ({x.shape[0]},)")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if targets.numel():  # another negative id would silently count as class 0 (clamped below)
        lo, hi = int(targets.min()), int(targets.max())
        if lo < -1 or hi >= weight.shape[0]:
            raise ValueError(
                f"targets hold id {lo if lo < -1 else hi}; expected -1 (ignored) or 0 .. {weight.shape[0] - 1}"
            )
    return _LinearCrossEntropy.apply(x, weight, targets, chunk_size)
