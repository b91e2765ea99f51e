"""Sampling text from GPT-2 (GPT-2 §3 uses greedy decoding, top-k and nucleus sampling).

The model predicts a distribution over the next token; generation appends one token at a time.
A *KV cache* (:class:`gpt2lib.model.KVCache`) keeps the keys and values of past positions, so each
step only runs the new token through the network.

Decoding rules, applied in this order to the last position's logits:

1. ``temperature``: divide the logits by it; ``temperature=0`` means greedy (argmax) decoding.
2. ``top_k``: keep the ``k`` largest logits (Fan et al. 2018; the paper's §3.7 uses top-k with k=2).
3. ``top_p``: nucleus sampling (Holtzman et al. 2019), keep the smallest set of most likely tokens
   whose probability adds up to at least ``p``.

Context: a prompt longer than ``block_size`` is cropped to its last ``block_size`` tokens. When
generation runs past the context, the window slides: the next token is predicted from the last
``block_size`` tokens, and since every position then moves, the cache is recomputed on that cropped
window. The result is exactly what recomputing the cropped window from scratch every step gives.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from gpt2lib.model import GPT2, KVCache, evaluating

__all__ = ["generate", "stream", "top_k_filter", "top_p_filter", "sample_next", "check_generator_device"]


def _check_top_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ValueError(f"top_k must be a positive int, got {k!r}")


def _check_top_p(p: float) -> None:
    # written so that NaN fails the range test (every comparison with NaN is False)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 < p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {p!r}")


def _check_temperature(temperature: float) -> None:
    if (isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature)
            or temperature < 0):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")


def check_generator_device(generator: torch.Generator | None, device: torch.device | str) -> None:
    """Raise ``ValueError`` naming both devices when ``generator`` cannot draw samples on ``device``
    (``torch.multinomial`` needs a generator of the same device type as the probabilities; a CPU
    ``torch.Generator()`` with a model on CUDA fails deep inside sampling otherwise)."""
    if generator is None:
        return
    device = torch.device(device)
    gen = torch.device(generator.device)
    same_index = gen.index is None or device.index is None or gen.index == device.index
    if gen.type != device.type or (gen.type != "cpu" and not same_index):
        raise ValueError(
            f"the torch.Generator is on device {gen} but the model (and its logits) are on {device}; "
            f"create it there: torch.Generator(device={str(device)!r}).manual_seed(seed)")


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Set every logit below the ``k``-th largest of its row to ``-inf`` (ties with it are kept)."""
    _check_top_k(k)
    k = min(k, logits.size(-1))
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the most likely tokens until their probability reaches ``p``.

    In each row, sort tokens by probability (descending); a token is kept when the probability of the
    tokens strictly before it is below ``p``. So the most likely token is always kept and ``p=1``
    keeps everything. The others get ``-inf``.
    """
    _check_top_p(p)
    if p == 1.0:  # keeps everything by definition; the float cumsum below can reach 1 early
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    before = torch.cumsum(probs, dim=-1) - probs  # probability mass strictly before each token
    remove_sorted = before >= p
    remove = torch.zeros_like(remove_sorted).scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


def _check_options(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """The filters' own checks, made up front (``stream`` is lazy) so bad options fail at the call."""
    _check_temperature(temperature)
    if top_k is not None:
        _check_top_k(top_k)
    if top_p is not None:
        _check_top_p(top_p)


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick the next token of each row from ``logits`` ``[B, vocab]``; returns ``[B]`` (long).
    Bad options (NaN or infinite ``temperature``, ``generator`` on another device) raise ``ValueError``."""
    _check_temperature(temperature)
    check_generator_device(generator, logits.device)
    if temperature == 0:
        return torch.argmax(logits, dim=-1)
    scaled = logits.float() / temperature
    if not torch.isfinite(scaled.amax(dim=-1)).all():  # a tiny temperature (1e-40) overflowed a row to inf:
        shifted = logits.float() - logits.float().amax(dim=-1, keepdim=True)  # shift first: the max is 0, the rest
        scaled = torch.where(shifted == 0, 0.0, shifted / temperature)  # -> -inf (also when T is 0 in float32)
    logits = scaled
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


def stream(
    model: GPT2,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[torch.Tensor | int]:
    """Yield new tokens one step at a time.

    ``idx`` is a prompt ``[B, T]`` (yields a LongTensor ``[B]`` per step) or ``[T]`` (yields an int).
    With ``eos_id``, a row that has produced ``eos_id`` keeps producing ``eos_id`` (padding) and the
    stream ends once every row has. Arguments are checked at the call, before the first token, including
    that ``generator`` is on the model's device.
    The model is in eval mode while the stream runs and back in its former mode once it ends.
    """
    _check_options(temperature, top_k, top_p)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    if not isinstance(idx, torch.Tensor):
        raise TypeError(f"idx must be a torch.Tensor of token ids, got {type(idx).__name__}")
    single = idx.dim() == 1
    prompt = model.check_ids(idx.unsqueeze(0) if single else idx)
    if prompt.size(1) == 0:
        raise ValueError("the prompt is empty; start from at least one token (e.g. <|endoftext|>)")
    model.check_id_range(prompt)
    check_generator_device(generator, model.transformer.wte.weight.device)  # also for greedy: fail on CPU too
    vocab = model.config.vocab_size
    if eos_id is not None and not (isinstance(eos_id, int) and 0 <= eos_id < vocab):
        raise ValueError(f"eos_id {eos_id!r} is outside the vocabulary (vocab_size={vocab})")
    return _stream(model, prompt, max_new_tokens, temperature, top_k, top_p, eos_id, generator, single)


def _lm_head(model: GPT2, steps: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The tied LM head as a function of the last hidden state ``[B, n_embd]`` -> ``[B, vocab]``.

    On CPU, a matrix-vector product with the head stored ``[n_embd, vocab]`` runs about 2-3x faster
    than with ``nn.Linear``'s ``[vocab, n_embd]``, and at GPT-2's vocabulary the head is most of the
    work per generated token. So generation keeps one transposed copy of the head on the model
    (``model._lm_head_t``; ~150 MB for the 124M model), remade whenever the weights change (their
    version counter moves on every in-place update, e.g. an optimizer step or ``load_state_dict``).
    Same product, same result up to float rounding.
    """
    weight = model.lm_head.weight
    if weight.device.type != "cpu" or steps < 4:
        return lambda h: F.linear(h, weight)
    key = (weight.data_ptr(), weight._version, weight.dtype, tuple(weight.shape))
    cached = getattr(model, "_lm_head_t", None)
    if cached is None or cached[0] != key:
        cached = (key, weight.detach().t().contiguous())
        model._lm_head_t = cached
    weight_t = cached[1]
    return lambda h: h @ weight_t


@torch.no_grad()
def _stream(model, prompt, max_new_tokens, temperature, top_k, top_p, eos_id, generator, single):
    if max_new_tokens == 0:
        return
    block = model.config.block_size
    window = prompt[:, -block:]  # documented crop: keep the last block_size tokens
    B = window.size(0)
    with evaluating(model):
        param = model.transformer.wte.weight
        max_len = min(block, window.size(1) + max_new_tokens)
        cache = KVCache(model.config, B, max_len, device=param.device, dtype=param.dtype)
        head = _lm_head(model, max_new_tokens)
        logits = head(model.hidden_states(window, kv_cache=cache)[:, -1])
        finished = torch.zeros(B, dtype=torch.bool, device=window.device)
        for step in range(max_new_tokens):
            nxt = sample_next(logits, temperature, top_k, top_p, generator)
            if eos_id is not None:
                nxt = nxt.masked_fill(finished, eos_id)
                finished |= nxt == eos_id
            yield int(nxt[0]) if single else nxt
            if step == max_new_tokens - 1 or (eos_id is not None and bool(finished.all())):
                return
            nxt = nxt.unsqueeze(1)
            window = torch.cat([window, nxt], dim=1)[:, -block:]
            if cache.pos < block:  # room left in the context: feed only the new token
                logits = head(model.hidden_states(nxt, kv_cache=cache)[:, -1])
            else:  # the context is full: slide the window by one token and rebuild the cache on it
                cache.pos = 0
                logits = head(model.hidden_states(window, kv_cache=cache)[:, -1])


def generate(
    model: GPT2,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return the prompt followed by up to ``max_new_tokens`` new tokens (fewer when every row hit
    ``eos_id``). ``[B, T]`` in, ``[B, T + n]`` out; ``[T]`` in, ``[T + n]`` out.
    ``temperature=0`` is greedy; sampling is deterministic given ``generator``."""
    new = list(stream(model, idx, max_new_tokens, temperature, top_k, top_p, eos_id, generator))
    if idx.dim() == 1:
        return torch.cat([idx.long(), torch.tensor(new, dtype=torch.long, device=idx.device)])
    if not new:
        return idx.long()
    return torch.cat([idx.long().to(new[0].device), torch.stack(new, dim=1)], dim=1)  # on the model's device
