"""What the hardware can do: precision choice, peak FLOP/s for MFU, and a training-memory estimate.

Peak dense (no sparsity) tensor-core throughput in TFLOP/s, from NVIDIA's datasheets:

* A100 (SXM and PCIe): BF16/FP16 312, TF32 156, FP32 19.5 - "NVIDIA A100 Tensor Core GPU" datasheet.
* H100 SXM: BF16/FP16 989, TF32 495, FP32 67; H100 PCIe: 756 / 378 / 51; H100 NVL: 835 / 418 / 60 -
  "NVIDIA H100 Tensor Core GPU" datasheet (the datasheet's headline numbers are with sparsity, i.e. 2x these).
* H200 (SXM): BF16/FP16 989, TF32 495, FP32 67 - "NVIDIA H200 Tensor Core GPU" datasheet (same compute as H100).
* V100 SXM2: FP16 125, FP32 15.7; V100 PCIe: 112 / 14 - "NVIDIA Tesla V100" datasheet (no BF16, no TF32).
* T4: FP16 65, FP32 8.1 - "NVIDIA T4" datasheet (no BF16, no TF32).
* L4: BF16/FP16 121, TF32 60, FP32 30.3 - "NVIDIA L4" datasheet (headline 242 / 120 are with sparsity).
* A10: BF16/FP16 125, TF32 62.5, FP32 31.2 - "NVIDIA A10" datasheet. AWS's A10G has no NVIDIA datasheet;
  we use the A10 numbers for it, so its MFU is, if anything, underestimated.
* L40S: BF16/FP16 362, TF32 183, FP32 91.6 - "NVIDIA L40S" datasheet.

With TF32 enabled (``torch.backends.cuda.matmul.allow_tf32``), "fp32" training runs its matmuls on the TF32
tensor cores, so its MFU is measured against the TF32 peak on GPUs that have one.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import torch

__all__ = ["PEAK_TFLOPS", "peak_flops", "choose_precision", "autocast_dtype", "MemoryEstimate",
           "estimate_memory", "max_micro_batch_size", "flops_per_token", "EvalMemoryEstimate", "estimate_eval_memory",
           "LOGITS_CHUNK_BYTES"]

# name fragment (matched against torch.cuda.get_device_name, most specific first) -> TFLOP/s per precision
PEAK_TFLOPS: list[tuple[str, dict[str, float]]] = [
    ("H100 PCIe", {"bf16": 756.0, "fp16": 756.0, "tf32": 378.0, "fp32": 51.0}),
    ("H100 NVL", {"bf16": 835.0, "fp16": 835.0, "tf32": 418.0, "fp32": 60.0}),
    ("H100", {"bf16": 989.0, "fp16": 989.0, "tf32": 495.0, "fp32": 67.0}),
    ("H200", {"bf16": 989.0, "fp16": 989.0, "tf32": 495.0, "fp32": 67.0}),
    ("A100", {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5}),
    ("V100-PCIE", {"fp16": 112.0, "fp32": 14.0}),
    ("V100", {"fp16": 125.0, "fp32": 15.7}),
    ("T4", {"fp16": 65.0, "fp32": 8.1}),
    ("L40S", {"bf16": 362.0, "fp16": 362.0, "tf32": 183.0, "fp32": 91.6}),
    ("L4", {"bf16": 121.0, "fp16": 121.0, "tf32": 60.0, "fp32": 30.3}),
    ("A10", {"bf16": 125.0, "fp16": 125.0, "tf32": 62.5, "fp32": 31.2}),  # also matches "A10G"
]


def peak_flops(device_name: str | None, precision: str, tf32: bool = True) -> float | None:
    """Peak FLOP/s of ``device_name`` at ``precision`` ("bf16", "fp16", "fp32"); ``None`` if unknown (or CPU)."""
    if not device_name:
        return None
    for fragment, table in PEAK_TFLOPS:
        # a whole model name, not a substring: "L4" is not an L40, "A10" is not an RTX A1000 (but is an A10G)
        if re.search(rf"(?<![a-z0-9]){re.escape(fragment.lower())}(?![0-9])", device_name.lower()):
            key = "tf32" if precision == "fp32" and tf32 and "tf32" in table else precision
            return table[key] * 1e12 if key in table else None
    return None


def choose_precision(device: torch.device | str, requested: str = "auto") -> str:
    """``"bf16"`` on CUDA GPUs with native bf16 (compute capability >= 8.0), ``"fp16"`` (with a GradScaler) on
    older GPUs such as T4 and V100, ``"fp32"`` on CPU. An explicit request is checked, not overridden."""
    device = torch.device(device)
    if requested not in ("auto", "fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {requested!r}")
    native_bf16 = device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8
    if requested == "auto":
        return "fp32" if device.type != "cuda" else ("bf16" if native_bf16 else "fp16")
    if requested == "fp16" and device.type != "cuda":
        raise ValueError("fp16 training needs a CUDA GPU; use fp32 (or bf16) on CPU")
    if requested == "bf16" and device.type == "cuda" and not native_bf16:
        raise ValueError(f"{torch.cuda.get_device_name(device)} has no native bf16; use fp16 or fp32")
    return requested


def autocast_dtype(precision: str) -> torch.dtype | None:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def flops_per_token(n_params: int, n_layer: int, n_embd: int, block_size: int) -> float:
    """Training FLOPs per token: 6N for the weight matmuls (forward 2N + backward 4N) plus 12 * L * d * T for
    attention scores and their weighted sum (Kaplan et al. 2020 §2.1; PaLM, Chowdhery et al. 2022, App. B).
    ``n_params`` should exclude the position embedding (a lookup, not a matmul); the tied token embedding
    counts once, for the LM head's matmul."""
    return 6 * n_params + 12 * n_layer * n_embd * block_size


class _Bytes:
    """Shared by the memory estimates: printed in GiB, part by part."""

    def __str__(self) -> str:
        gib = 1024**3
        return ", ".join(f"{k} {v / gib:.2f} GiB" for k, v in asdict(self).items())


@dataclass
class MemoryEstimate(_Bytes):
    """Predicted peak training memory in bytes, by part (see :func:`estimate_memory`)."""

    params: int
    grads: int
    optimizer: int
    weight_copies: int
    activations: int
    logits: int
    total: int


def _n_params(model_config) -> int:
    d, V, T, L, ff = model_config.n_embd, model_config.vocab_size, model_config.block_size, model_config.n_layer, \
        model_config.d_ff
    b = 1 if model_config.bias else 0
    per_layer = (2 * d + 2 * d * b) + (3 * d * d + 3 * d * b) + (d * d + d * b) + (d * ff + ff * b) + (ff * d + d * b)
    return V * d + T * d + L * per_layer + (d + d * b)  # wte (tied head) + wpe + blocks + ln_f


def estimate_memory(model_config, train_config=None, *, micro_batch_size: int | None = None,
                    block_size: int | None = None, precision: str | None = None) -> MemoryEstimate:
    """Predicted peak memory of a training step of GPT-2 with AdamW, without activation checkpointing.

    Let P be the parameter count (tied head once), b the micro-batch, T the context, d the width, L the
    depth, V the vocabulary. Parameters, gradients and Adam's two moments are fp32: 4P + 4P + 8P bytes.
    Under bf16/fp16 autocast the forward also caches 16-bit copies of the weight matrices (2P). Activations
    saved for backward, per layer and per token, counted from what each op stores (SDPA/flash attention
    saves no T x T matrix; dropout is off):

    * fp32: LN inputs 2x4d, c_attn input 4d, q/k/v 12d, attention output + c_proj input 8d, c_fc input 4d,
      GELU input 16d, c_proj input 16d -> 68d bytes;
    * 16-bit autocast: LN inputs stay fp32 (2x4d), the other tensors are 2 bytes -> 38d bytes
      (cf. the 34 s·b·h of Korthikanti et al. 2022, which also counts dropout masks and a 16-bit LN).

    Plus the embedding output and ln_f input (fp32, 8d per token). Logits: b·T·V values, stored in the
    compute dtype, plus the fp32 copy and log-softmax that cross-entropy keeps, plus their gradient at the
    start of backward: 16-bit: (2 + 4 + 4 + 4) b T V bytes; fp32: (4 + 4 + 4) b T V bytes.
    """
    b = micro_batch_size or (train_config.micro_batch_size if train_config is not None else 1)
    T = block_size or (train_config.block_size if train_config is not None else model_config.block_size)
    precision = precision or "fp32"
    if precision == "auto":
        precision = "fp32"
    P = _n_params(model_config)
    d, L, V = model_config.n_embd, model_config.n_layer, model_config.vocab_size
    half = precision in ("bf16", "fp16")
    params, grads, optimizer = 4 * P, 4 * P, 8 * P
    weight_copies = 2 * (P - model_config.block_size * d) if half else 0
    per_token_layer = (38 if half else 68) * d
    activations = b * T * (L * per_token_layer + 8 * d)
    logits = b * T * V * (14 if half else 12)
    total = params + grads + optimizer + weight_copies + activations + logits
    return MemoryEstimate(params, grads, optimizer, weight_copies, activations, logits, total)


def max_micro_batch_size(model_config, budget_bytes: float = 16e9, *, block_size: int | None = None,
                         precision: str = "fp16", reserve: float = 0.1, limit: int = 4096) -> int:
    """Largest micro-batch whose :func:`estimate_memory` fits ``(1 - reserve) * budget_bytes`` (default: a
    16 GB T4 in fp16, keeping 10% for the CUDA context and allocator fragmentation); 0 if none fits."""
    usable = (1 - reserve) * budget_bytes
    best = 0
    for b in range(1, limit + 1):
        if estimate_memory(model_config, micro_batch_size=b, block_size=block_size, precision=precision).total > usable:
            break
        best = b
    return best


# fp32 logits gpt2lib.evaluate holds at once while scoring: rows = LOGITS_CHUNK_BYTES // (4 V), 1,335 at V = 50,257.
LOGITS_CHUNK_BYTES = 256 * 2**20


@dataclass
class EvalMemoryEstimate(_Bytes):
    """Predicted peak memory of one evaluation batch in bytes, by part (see :func:`estimate_eval_memory`)."""

    params: int
    weight_copies: int
    activations: int
    logits: int
    total: int


def estimate_eval_memory(model_config, *, batch_size: int = 16, block_size: int | None = None,
                         precision: str = "fp32", vocab: int = 50257,
                         logits_chunk_bytes: int | None = None) -> EvalMemoryEstimate:
    """Predicted peak memory of scoring one batch with :mod:`gpt2lib.evaluate` (no gradients, GPT-2 §3).

    Parameters stay fp32 (4P bytes); under bf16/fp16 autocast each weight matrix is also cached in 16 bits
    for the batch (2P, less the position table). Without autograd only one layer's tensors are alive at a
    time; per token, at the MLP, the input and output of the residual stream and the LayerNorm output
    (fp32, autocast keeps LayerNorm in fp32: 3 x 4d) plus the 4d-wide c_fc output and GELU output
    (2 x 4d values) -> 28d bytes in 16 bits, 44d in fp32; we budget 32d / 48d. Plus the final hidden
    states and the gathered scored rows (fp32, 8d per token). Logits exist only for
    ``rows = logits_chunk_bytes // (4 V)`` positions at a time: the head's output in the compute dtype,
    its fp32 copy and the logsumexp temporary: (2 + 4 + 4) rows V bytes in 16 bits, (4 + 4) rows V in fp32.
    (Attention is assumed to be a fused kernel, no T x T matrix, as on CUDA.)
    """
    logits_chunk_bytes = LOGITS_CHUNK_BYTES if logits_chunk_bytes is None else logits_chunk_bytes
    b, T = batch_size, block_size or model_config.block_size
    P, d = _n_params(model_config), model_config.n_embd
    half = precision in ("bf16", "fp16")
    params = 4 * P
    weight_copies = 2 * (P - model_config.block_size * d) if half else 0
    activations = b * T * ((32 if half else 48) * d + 8 * d)
    rows = min(b * T, max(1, logits_chunk_bytes // (4 * vocab)))
    logits = rows * vocab * (10 if half else 8)
    return EvalMemoryEstimate(params, weight_copies, activations, logits, params + weight_copies + activations + logits)
