"""The GPT-2 model (GPT-2 §2.3 "Model").

GPT-2 is the GPT-1 Transformer decoder (Radford et al. 2018) with a few changes listed in §2.3:

* layer normalization moved to the *input* of each sub-block ("pre-LN"), plus one extra layer
  normalization after the final self-attention block;
* a modified initialization that accounts for the accumulation on the residual path with depth;
* vocabulary expanded to 50,257 tokens, context from 512 to 1024 tokens (batch size 512).

Everything else is the usual decoder-only Transformer: learned token and position embeddings,
masked (causal) multi-head self-attention, a position-wise MLP with a 4x hidden layer and the
tanh approximation of GELU, and a language-model head that shares ("ties") its weight with the
token embedding.  Module names follow the released checkpoints (``wte``, ``wpe``, ``h.{i}.attn.c_attn``,
...), so converting weights is mostly a matter of transposing matrices (see ``gpt2lib.weights``).

Usage::

    config = GPT2Config.from_name("gpt2-tiny", vocab_size=4096)
    model = GPT2(config)
    logits, loss = model(idx, targets)      # idx, targets: LongTensor [B, T]
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from gpt2lib.loss import linear_cross_entropy

__all__ = ["GPT2Config", "GPT2", "CausalSelfAttention", "MLP", "Block", "KVCache", "attention_maps", "evaluating",
           "causal_self_attention"]

ATTENTION_IMPLEMENTATIONS = ("sdpa", "manual")


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 has no device argument
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()

# (n_layer, n_head, n_embd, block_size): the four sizes of Table 2 plus two presets that train on a CPU.
_PRESETS: dict[str, dict[str, int]] = {
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024),  # 117M in the paper, 124M counted
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024, block_size=1024),  # 345M (355M counted)
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280, block_size=1024),  # 762M (774M counted)
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600, block_size=1024),  # 1542M (1558M counted)
    "gpt2-tiny": dict(n_layer=4, n_head=4, n_embd=128, block_size=256),
    "gpt2-mini": dict(n_layer=6, n_head=6, n_embd=192, block_size=256),
}


@dataclass
class GPT2Config:
    """Hyper-parameters of a GPT-2 model (GPT-2 §2.3, Table 2).

    ``block_size`` is the context length (1024 in the paper), ``vocab_size`` the BPE vocabulary
    (50,257), ``n_layer``/``n_head``/``n_embd`` the depth, number of attention heads and model width
    ``d_model``. The MLP hidden width is ``n_inner`` (``None`` means ``4 * n_embd``, as in the paper).

    Extra switches:

    * ``bias``: biases in Linear and LayerNorm layers (GPT-2 has them; ``False`` is a common modern variant).
    * ``scale_residual_init``: scale the init of the residual projections by ``1/sqrt(2 * n_layer)``
      (see :class:`GPT2`).
    * ``attention``: ``"sdpa"`` (``F.scaled_dot_product_attention``, fused/flash kernels where available)
      or ``"manual"`` (the explicit ``softmax(QK^T / sqrt(d)) V`` for reading and plotting). Both give the
      same numbers up to float rounding.
    """

    block_size: int = 1024
    vocab_size: int = 50257
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True
    layer_norm_epsilon: float = 1e-5
    n_inner: int | None = None
    initializer_range: float = 0.02
    scale_residual_init: bool = True
    attention: str = "sdpa"

    def __post_init__(self) -> None:
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"GPT2Config.{name} must be a positive int, got {value!r}")
        if self.n_inner is not None and (
            isinstance(self.n_inner, bool) or not isinstance(self.n_inner, int) or self.n_inner <= 0
        ):
            raise ValueError(f"GPT2Config.n_inner must be a positive int or None, got {self.n_inner!r}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"GPT2Config.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})"
            )
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"GPT2Config.dropout must be in [0, 1), got {self.dropout!r}")
        if not float(self.layer_norm_epsilon) > 0.0:
            raise ValueError(f"GPT2Config.layer_norm_epsilon must be > 0, got {self.layer_norm_epsilon!r}")
        if not float(self.initializer_range) > 0.0:
            raise ValueError(f"GPT2Config.initializer_range must be > 0, got {self.initializer_range!r}")
        if self.attention not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(
                f"GPT2Config.attention must be one of {ATTENTION_IMPLEMENTATIONS}, got {self.attention!r}"
            )

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def d_ff(self) -> int:
        """Hidden width of the MLP (``4 * n_embd`` in the paper)."""
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    @classmethod
    def names(cls) -> list[str]:
        """Names accepted by :meth:`from_name`."""
        return list(_PRESETS)

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> "GPT2Config":
        """A named size: the paper's four ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", Table 2)
        or a CPU preset ("gpt2-tiny", "gpt2-mini"); keyword ``overrides`` replace any field."""
        if name not in _PRESETS:
            raise ValueError(f"unknown GPT-2 config name {name!r}; known: {', '.join(_PRESETS)}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise TypeError(f"unknown GPT2Config field(s): {', '.join(unknown)}")
        return cls(**{**_PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GPT2Config":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise ValueError(f"unknown GPT2Config field(s): {', '.join(unknown)}")
        return cls(**d)


class KVCache:
    """Keys and values of past positions, preallocated for ``max_len`` positions in every layer.

    ``k``/``v`` have shape ``[n_layer, B, n_head, max_len, head_size]``; ``pos`` is the number of
    positions already stored. A forward pass with a cache writes the new keys/values of each layer
    at ``pos`` and attends over ``[0, pos + T)``; the model advances ``pos`` at the end of the pass.
    """

    def __init__(
        self, config: GPT2Config, batch_size: int, max_len: int, *, device=None, dtype=None
    ) -> None:
        shape = (config.n_layer, batch_size, config.n_head, max_len, config.head_size)
        self.k = torch.empty(shape, device=device, dtype=dtype)  # only [0, pos) is ever read
        self.v = torch.empty(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self.pos = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's ``k, v`` ([B, n_head, T, hs]) for ``layer``; return all keys/values so far."""
        start, end = self.pos, self.pos + k.size(2)
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; cannot store up to {end}")
        self.k[layer, :, :, start:end] = k
        self.v[layer, :, :, start:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


def causal_self_attention(x: torch.Tensor, c_attn: nn.Linear, c_proj: nn.Linear, n_head: int) -> torch.Tensor:
    """Masked multi-head self-attention, written out (GPT-2 §2.3; Vaswani et al. 2017 §3.2): each position
    attends to itself and the positions before it. ``x``: [B, T, C]; ``c_attn`` maps it to queries, keys and
    values at once, ``c_proj`` mixes the heads' outputs. :class:`CausalSelfAttention` computes the same, faster,
    and with a KV cache for generation."""
    B, T, C = x.shape
    hs = C // n_head  # each head works in a hs-dimensional subspace
    q, k, v = c_attn(x).split(C, dim=2)
    q = q.view(B, T, n_head, hs).transpose(1, 2)  # [B, n_head, T, hs]
    k = k.view(B, T, n_head, hs).transpose(1, 2)
    v = v.view(B, T, n_head, hs).transpose(1, 2)
    att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)  # [B, n_head, T, T]: how well query i matches key j
    causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()  # j <= i: the past and itself
    att = att.masked_fill(~causal, float("-inf"))
    att = F.softmax(att, dim=-1)  # each row: weights summing to 1 over positions j <= i
    y = att @ v  # [B, n_head, T, hs]: the weighted average of the values
    y = y.transpose(1, 2).contiguous().view(B, T, C)  # the heads side by side again
    return c_proj(y)


class CausalSelfAttention(nn.Module):
    """Masked multi-head self-attention: position t attends to positions <= t (GPT-2 §2.3)."""

    def __init__(self, config: GPT2Config, layer_idx: int = 0) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.layer_idx = layer_idx
        self.dropout = config.dropout
        self.implementation = config.attention  # "sdpa" or "manual"; may be switched on the fly
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v together
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)  # a residual projection
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        kv_cache: KVCache | None = None,
        attn_out: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        B, T, C = x.shape
        hs = C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # [B, nh, T, hs]
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)
        past = 0
        if kv_cache is not None:
            past = kv_cache.pos
            k, v = kv_cache.update(self.layer_idx, k, v)  # [B, nh, past + T, hs]

        if self.implementation == "manual" or attn_out is not None:
            # The attention of the Transformer paper, written out: softmax(Q K^T / sqrt(d_k)) V.
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # [B, nh, T, past + T]
            # Query i sits at absolute position past + i and may look at keys j <= past + i.
            q_pos = torch.arange(past, past + T, device=x.device).unsqueeze(1)
            k_pos = torch.arange(past + T, device=x.device).unsqueeze(0)
            att = att.masked_fill(k_pos > q_pos, float("-inf"))
            att = F.softmax(att, dim=-1)
            if attn_out is not None:
                attn_out.append(att.detach())
            att = self.attn_dropout(att)
            y = att @ v
        else:
            p = self.dropout if self.training else 0.0
            if past == 0:
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
            elif T == 1:  # one new token sees the whole cache: no mask needed
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
            else:  # several new tokens after a prefix: the mask is aligned bottom-right
                mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward network: Linear(d, 4d) -> GELU (tanh form) -> Linear(4d, d)."""

    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.d_ff, bias=config.bias)
        self.c_proj = nn.Linear(config.d_ff, config.n_embd, bias=config.bias)  # a residual projection
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # GPT-2's GELU: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), a fused kernel in PyTorch.
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    """One pre-LN Transformer block: LayerNorm at the *input* of each sub-block (GPT-2 §2.3)."""

    def __init__(self, config: GPT2Config, layer_idx: int = 0) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        kv_cache: KVCache | None = None,
        attn_out: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), kv_cache, attn_out)
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT2(nn.Module):
    """GPT-2: a decoder-only Transformer language model (GPT-2 §2.3).

    Initialization: every Linear and Embedding weight is drawn from N(0, 0.02), biases are zero,
    LayerNorms start as the identity. The paper adds: "We scale the weights of residual layers at
    initialization by a factor of 1/sqrt(N) where N is the number of residual layers." We read the
    residual layers as the two projections that write into the residual stream in each block
    (``attn.c_proj`` and ``mlp.c_proj``), so N = 2 * n_layer and their std is 0.02 / sqrt(2 * n_layer).
    Note that the released TensorFlow code (openai/gpt-2, ``model.py``) does *not* apply this scaling;
    it is only a training-from-scratch detail (pretrained weights overwrite it). Set
    ``config.scale_residual_init = False`` to follow the released code.

    The LM head is tied to the token embedding (``lm_head.weight is transformer.wte.weight``).
    """

    def __init__(self, config: GPT2Config) -> None:
        super().__init__()
        if not isinstance(config, GPT2Config):
            raise TypeError(f"GPT2 expects a GPT2Config, got {type(config).__name__}")
        self.config = config
        # Check token ids against the vocabulary on every call (a clear ValueError instead of an
        # index error). On a GPU this reads two numbers back to the host and breaks a torch.compile
        # graph; the trainer turns it off there, having checked the token shards once up front.
        self.validate_ids = True
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),  # token embedding
                wpe=nn.Embedding(config.block_size, config.n_embd),  # learned position embedding
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config, i) for i in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # weight tying
        self.apply(self._init_weights)
        if config.scale_residual_init:
            std = config.initializer_range / math.sqrt(2 * config.n_layer)
            for block in self.transformer.h:
                nn.init.normal_(block.attn.c_proj.weight, mean=0.0, std=std)
                nn.init.normal_(block.mlp.c_proj.weight, mean=0.0, std=std)

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    # ----------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.transformer.wte.weight.device

    def set_attention(self, implementation: str) -> None:
        """Switch every layer to ``"sdpa"`` or ``"manual"`` attention (same numbers, different code)."""
        if implementation not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(f"attention must be one of {ATTENTION_IMPLEMENTATIONS}, got {implementation!r}")
        self.config.attention = implementation
        for block in self.transformer.h:
            block.attn.implementation = implementation

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Number of parameters (the tied LM head counted once). ``non_embedding=True`` leaves out the
        token and position embedding matrices (the convention of Kaplan et al. 2020)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wte.weight.numel() + self.transformer.wpe.weight.numel()
        return n

    # ----------------------------------------------------------------------------------------------
    def check_ids(self, idx: torch.Tensor, what: str = "idx") -> torch.Tensor:
        """``idx`` as a long [batch, time] tensor on the model's device; a clear error naming ``what`` if it
        is not a tensor of integer ids of that shape on that device. (Range: :meth:`check_id_range`.)"""
        if not isinstance(idx, torch.Tensor):
            raise TypeError(f"{what} must be a torch.Tensor of token ids, got {type(idx).__name__}")
        if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
            raise TypeError(f"{what} must hold integer token ids, got dtype {idx.dtype}")
        if idx.dim() != 2:
            raise ValueError(f"{what} must have shape [batch, time], got {tuple(idx.shape)}")
        if idx.device != self.device:
            if idx.device.type == "meta" or self.device.type == "meta":
                raise ValueError(
                    f"{what} is on device {idx.device} but the model is on {self.device}; "
                    f"move one of them (e.g. idx.to(model.device))"
                )
            idx = idx.to(self.device)  # token ids are small and exact on any device: move them, as for a batch
        return idx if idx.dtype == torch.long else idx.long()

    def check_id_range(self, idx: torch.Tensor, low: int = 0, what: str = "idx") -> None:
        """Raise ValueError naming the first id of ``idx`` outside ``[low, vocab_size)`` (skipped when
        ``validate_ids`` is off: the check reads the ids back from an accelerator)."""
        if not self.validate_ids or idx.numel() == 0 or idx.device.type == "meta":
            return
        if torch.compiler.is_compiling():
            return
        lo, hi = int(idx.min()), int(idx.max())
        if lo < low:
            raise ValueError(f"{what} contains id {lo}, below the smallest valid id {low}")
        if hi >= self.config.vocab_size:
            raise ValueError(
                f"{what} contains id {hi}, outside the vocabulary (vocab_size={self.config.vocab_size})"
            )

    def hidden_states(
        self,
        idx: torch.Tensor,
        kv_cache: KVCache | None = None,
        attn_out: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The final (layer-normalized) hidden states ``[B, T, n_embd]`` that the LM head reads.

        ``kv_cache`` (generation) continues from the cached positions and is advanced by ``T``;
        ``attn_out`` collects the attention maps of each layer.
        """
        idx = self.check_ids(idx)
        B, T = idx.shape
        past = kv_cache.pos if kv_cache is not None else 0
        if T == 0:
            raise ValueError("idx has no tokens (time dimension is 0)")
        if past + T > self.config.block_size:
            raise ValueError(
                f"sequence length {past + T} exceeds the model's context length "
                f"block_size={self.config.block_size}"
            )
        self.check_id_range(idx)

        pos = torch.arange(past, past + T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for block in self.transformer.h:
            x = block(x, kv_cache, attn_out)
        if kv_cache is not None:
            kv_cache.pos += T
        return self.transformer.ln_f(x)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        kv_cache: KVCache | None = None,
        last_only: bool = False,
        attn_out: list[torch.Tensor] | None = None,
        return_logits: bool = True,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Next-token logits ``[B, T, vocab]`` for every position, and the mean cross-entropy against
        ``targets`` (``[B, T]``, ``-1`` = ignored) when given, else ``None``.

        ``kv_cache`` (generation) continues from the cached positions; ``last_only`` returns logits of
        the last position only (``[B, 1, vocab]``); ``attn_out`` collects attention maps per layer.
        ``return_logits=False`` (with ``targets``; what the trainer uses) returns ``(None, loss)``: on a
        CPU without autocast the loss then comes from :func:`gpt2lib.loss.linear_cross_entropy`, the
        same number and gradients without the ``[B, T, vocab]`` logits tensor. ``idx`` and ``targets``
        on another device than the model are moved to the model's device (the outputs are there).
        """
        if targets is not None:  # check before the (expensive) forward pass
            idx, targets = self.check_ids(idx), self.check_ids(targets, "targets")
            if targets.shape != idx.shape:
                raise ValueError(f"targets shape {tuple(targets.shape)} != idx shape {tuple(idx.shape)}")
            self.check_id_range(targets, low=-1, what="targets")
        x = self.hidden_states(idx, kv_cache, attn_out)
        if targets is None:
            return self.lm_head(x[:, -1:, :] if last_only else x), None
        if not return_logits and x.device.type == "cpu" and not _autocast_enabled("cpu"):
            return None, linear_cross_entropy(x.reshape(-1, x.size(-1)), self.lm_head.weight, targets.reshape(-1))
        logits = self.lm_head(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return (logits if return_logits else None), loss

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> torch.Tensor:
        """Attention probabilities of every layer and head: ``[n_layer, B, n_head, T, T]``."""
        maps: list[torch.Tensor] = []
        self.hidden_states(idx, attn_out=maps)  # the maps are all we need: skip the LM head
        return torch.stack(maps)

    # Generation and weights live in their own modules; these are thin entry points. Their imports are lazy:
    # gpt2lib.generation and gpt2lib.weights import this module.
    def generate(self, idx: torch.Tensor, max_new_tokens: int, **kwargs: Any) -> torch.Tensor:
        """Autoregressive sampling with a KV cache; see :func:`gpt2lib.generation.generate`."""
        from gpt2lib.generation import generate

        return generate(self, idx, max_new_tokens, **kwargs)

    def stream(self, idx: torch.Tensor, max_new_tokens: int, **kwargs: Any):
        """Like :meth:`generate`, but yields tokens as they come; see :func:`gpt2lib.generation.stream`."""
        from gpt2lib.generation import stream

        return stream(self, idx, max_new_tokens, **kwargs)

    @classmethod
    def from_pretrained(cls, name_or_dir: str, **kwargs: Any) -> "GPT2":
        """Load a Hugging Face GPT-2 folder or hub id; see :func:`gpt2lib.weights.from_pretrained`."""
        from gpt2lib.weights import from_pretrained

        return from_pretrained(name_or_dir, **kwargs)

    def save_pretrained(self, directory: str) -> None:
        """Write ``config.json`` + ``model.safetensors`` in the Hugging Face layout."""
        from gpt2lib.weights import save_pretrained

        save_pretrained(self, directory)


def attention_maps(model: GPT2, idx: torch.Tensor) -> torch.Tensor:
    """Attention probabilities of ``model`` on ``idx``: ``[n_layer, B, n_head, T, T]`` (for plotting)."""
    return model.attention_maps(idx)


@contextlib.contextmanager
def evaluating(model: nn.Module):
    """Run the body with ``model`` in eval mode (dropout off), then put back the mode it had, also on errors."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
