"""Loading and saving GPT-2 weights in the Hugging Face layout (GPT-2 §2.3, the released models).

OpenAI released the four GPT-2 sizes as TensorFlow checkpoints; the Hugging Face Hub hosts them as
``config.json`` + ``model.safetensors`` (``pytorch_model.bin`` in older folders). Their module names
match ours (``wte``, ``h.0.attn.c_attn``, ...), with two differences this module takes care of:

* the TF code (and Hugging Face's ``Conv1D``) stores each projection matrix as ``[in, out]``, the
  transpose of ``nn.Linear``'s ``[out, in]``;
* keys may carry a ``transformer.`` prefix (``GPT2LMHeadModel``) or not (``GPT2Model``), old files
  hold the causal-mask buffers ``attn.bias``/``attn.masked_bias``, and the tied ``lm_head.weight`` may
  be present or absent.

State dicts of our own model (also from ``torch.compile``, keys prefixed ``_orig_mod.``) load too.
Files are read with ``safetensors`` or ``torch.load(weights_only=True)``: loading never runs code.

``from_pretrained`` checks every key and shape of the weights against ``config.json`` *before* it builds the
model (on PyTorch's ``meta`` device, which allocates nothing; a ``model.safetensors`` header gives the shapes
without reading the tensors), so a config that does not match its weights is reported, not allocated.
``n_head`` cannot be checked against the weights: GPT-2's attention matrices are ``[C, 3C]`` whatever the
number of heads (heads only split ``C``), so a wrong ``n_head`` loads and computes a different function. It is
checked to divide ``n_embd``, and against ``head_dim`` where a config.json carries one.
"""
from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from gpt2lib._io import atomic_path, atomic_write_text, normal_mode, read_json_object
from gpt2lib.model import GPT2, GPT2Config

__all__ = [
    "from_pretrained",
    "save_pretrained",
    "config_from_hf",
    "config_to_hf",
    "convert_state_dict",
    "load_state_dict",
    "read_state_dict",
    "check_shapes",
]

# Matrices stored as [in, out] by the TF code / Hugging Face Conv1D.
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# Causal-mask buffers saved by old Hugging Face versions; not weights.
_BUFFERS = (".attn.bias", ".attn.masked_bias")
_PREFIXES = ("_orig_mod.", "module.", "transformer.")


# ---------------------------------------------------------------------------------------------------
# config.json
def config_from_hf(d: dict[str, Any], **overrides: Any) -> GPT2Config:
    """Our config from a Hugging Face GPT-2 ``config.json`` dict (``overrides`` win, e.g. dropout=0.1).

    Dropout defaults to 0.0 (inference); the released models were trained with 0.1."""
    model_type = d.get("model_type", "gpt2")
    if model_type != "gpt2":
        raise ValueError(f"config.json describes model_type {model_type!r}, not 'gpt2'")
    act = d.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh", "gelu_python_tanh"):
        raise ValueError(f"unsupported activation_function {act!r}: GPT-2 uses the tanh GELU ('gelu_new')")
    unsupported = {
        "scale_attn_weights": (d.get("scale_attn_weights", True), True),
        "scale_attn_by_inverse_layer_idx": (d.get("scale_attn_by_inverse_layer_idx", False), False),
        "add_cross_attention": (d.get("add_cross_attention", False), False),
        "tie_word_embeddings": (d.get("tie_word_embeddings", True), True),
    }
    for key, (value, wanted) in unsupported.items():
        if bool(value) != wanted:
            raise ValueError(f"unsupported config.json setting {key}={value!r} (GPT-2 has {wanted})")
    extra = d.get("gpt2lib", {})  # fields only our model has, written by save_pretrained
    kwargs: dict[str, Any] = dict(
        vocab_size=d["vocab_size"],
        block_size=d.get("n_positions", d.get("n_ctx", 1024)),
        n_layer=d["n_layer"],
        n_head=d["n_head"],
        n_embd=d["n_embd"],
        n_inner=d.get("n_inner"),
        layer_norm_epsilon=d.get("layer_norm_epsilon", 1e-5),
        initializer_range=d.get("initializer_range", 0.02),
        dropout=0.0,
    )
    for key in ("bias", "scale_residual_init", "attention"):
        if key in extra:
            kwargs[key] = extra[key]
    kwargs.update(overrides)
    return GPT2Config(**kwargs)


def config_to_hf(config: GPT2Config) -> dict[str, Any]:
    """A ``config.json`` dict that ``transformers.GPT2LMHeadModel`` understands."""
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "activation_function": "gelu_new",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_ctx": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": config.n_inner,
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "initializer_range": config.initializer_range,
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
        "bos_token_id": 50256 if config.vocab_size > 50256 else None,
        "eos_token_id": 50256 if config.vocab_size > 50256 else None,
        "gpt2lib": {
            "bias": config.bias,
            "scale_residual_init": config.scale_residual_init,
            "attention": config.attention,
        },
    }


# ---------------------------------------------------------------------------------------------------
# state dicts
def _short_key(key: str) -> str:
    """``_orig_mod.transformer.h.0.ln_1.weight`` -> ``h.0.ln_1.weight``."""
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def convert_state_dict(state_dict: dict[str, torch.Tensor], config: GPT2Config) -> dict[str, torch.Tensor]:
    """Map a Hugging Face GPT-2 or gpt2lib state dict onto our parameter names and layouts.

    The layout is told apart by the ``c_attn`` matrix, which is ``[C, 3C]`` in the Hugging Face/TF
    layout and ``[3C, C]`` in ours, and applied to every projection of the file.
    """
    short: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        s = _short_key(key)
        if s.endswith(_BUFFERS):
            continue
        if s in short:
            raise ValueError(f"state dict has key {s!r} twice (as {key!r} and another prefix)")
        short[s] = value

    C = config.n_embd
    probe = "h.0.attn.c_attn.weight"
    if probe not in short:
        raise ValueError(f"state dict has no key {probe!r}; is this a GPT-2 state dict?")
    shape = tuple(short[probe].shape)
    if shape == (C, 3 * C):
        transposed = True
    elif shape == (3 * C, C):
        transposed = False
    else:
        raise ValueError(
            f"key {probe!r} has shape {shape}; expected {(C, 3 * C)} (Hugging Face) or {(3 * C, C)} (gpt2lib) "
            f"for n_embd={C}"
        )

    out: dict[str, torch.Tensor] = {}
    for s, value in short.items():
        if s == "lm_head.weight":
            wte = short.get("wte.weight")
            if (wte is not None and value.shape == wte.shape and value.device.type != "meta"
                    and not torch.equal(value, wte)):
                raise ValueError("lm_head.weight differs from wte.weight; GPT-2 ties them (untied heads unsupported)")
            if wte is None:
                out["transformer.wte.weight"] = value
            continue
        if transposed and s.endswith(_CONV1D) and value.dim() == 2:
            value = value.t()
        out["transformer." + s] = value
    if "transformer.wte.weight" in out:
        out["lm_head.weight"] = out["transformer.wte.weight"]
    return out


def load_state_dict(model: GPT2, state_dict: dict[str, torch.Tensor], assign: bool = False) -> GPT2:
    """Copy weights into ``model`` from a Hugging Face or gpt2lib state dict; a missing, unexpected or
    mis-shaped key raises ``ValueError`` naming the key (and both shapes).

    ``assign=True`` makes the state dict's tensors the model's parameters instead of copying them (for a
    model built on the ``meta`` device: no second copy of the weights); the head is tied again after."""
    converted = convert_state_dict(state_dict, model.config)
    own = model.state_dict()
    if not model.config.bias:  # biases written as zeros by save_pretrained for Hugging Face
        for key in [k for k in converted if k.endswith(".bias") and k not in own]:
            if converted[key].device.type != "meta" and torch.count_nonzero(converted[key]) != 0:
                raise ValueError(f"key {key!r} holds non-zero biases but the config has bias=False")
            del converted[key]
    missing = sorted(set(own) - set(converted))
    unexpected = sorted(set(converted) - set(own))
    if missing:
        raise ValueError(f"missing key(s) in state dict: {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
    if unexpected:
        raise ValueError(
            f"unexpected key(s) in state dict: {', '.join(unexpected[:5])}" + (" ..." if len(unexpected) > 5 else "")
        )
    for key, value in converted.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise ValueError(
                f"shape mismatch for {key!r}: file has {tuple(value.shape)}, model expects {tuple(own[key].shape)}"
            )
    if assign:
        dtype = model.transformer.wte.weight.dtype
        converted = {k: v if v.dtype == dtype else v.to(dtype) for k, v in converted.items()}
        converted.pop("lm_head.weight")  # tied to wte: assigned once, below
        model.load_state_dict(converted, strict=False, assign=True)
        model.lm_head.weight = model.transformer.wte.weight
        return model
    model.load_state_dict(converted, strict=True)
    return model


def _to_our_layout(state_dict: dict[str, torch.Tensor], config: GPT2Config) -> None:
    """Transpose the Hugging Face ``[in, out]`` projection matrices of ``state_dict`` in place, one at a
    time (each original is freed before the next is copied), so that no view of a transposed matrix is left
    for ``assign=True`` and the host holds about one copy of the weights."""
    probe = next((k for k in state_dict if _short_key(k) == "h.0.attn.c_attn.weight"), None)
    if probe is None or tuple(state_dict[probe].shape) != (config.n_embd, 3 * config.n_embd):
        return  # already ours, or not a GPT-2 state dict: convert_state_dict reports it
    for key in list(state_dict):
        if key.endswith(_CONV1D) and state_dict[key].dim() == 2:
            state_dict[key] = state_dict.pop(key).t().contiguous()


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read tensors from ``*.safetensors`` or a ``torch.save`` file (``weights_only=True``: no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            sd = _read_safetensors(path)
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated, or not a weights file
        raise ValueError(f"could not read weights from {path}: {type(e).__name__}: {e}") from e
    if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict):
        sd = sd["model"]  # a training checkpoint {"model": state_dict, ...}
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return sd


_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                       "U8": torch.uint8, "BOOL": torch.bool}


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """A ``.safetensors`` file's tensors, each read straight into its own buffer (no memory map of the
    file, whose pages would count as a second copy while loading). Tested equal to
    ``safetensors.torch.load_file``. The format: an 8-byte little-endian header length, a JSON header
    ``{name: {"dtype", "shape", "data_offsets": [begin, end]}}``, then the data, little-endian."""
    if sys.byteorder != "little":  # the format is little-endian; leave other hosts to the library
        return load_file(str(path), device="cpu")
    size = path.stat().st_size
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n > size - 8:
            raise ValueError(f"header length {n} exceeds the file size {size}")
        header = json.loads(f.read(n))
        base, out = 8 + n, {}
        for key, spec in header.items():
            if key == "__metadata__":
                continue
            dtype = _SAFETENSORS_DTYPES[spec["dtype"]]
            begin, end = spec["data_offsets"]
            shape = tuple(spec["shape"])
            nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
            if end - begin != nbytes or base + end > size:
                raise ValueError(f"tensor {key!r}: data_offsets {begin}..{end} do not fit its shape or the file")
            buffer = torch.empty(nbytes, dtype=torch.uint8)
            f.seek(base + begin)
            if nbytes and f.readinto(memoryview(buffer.numpy())) != nbytes:
                raise ValueError(f"tensor {key!r}: the file ends early")
            out[key] = buffer.view(dtype).reshape(shape)
    return out


def check_shapes(config: GPT2Config, shapes: dict[str, tuple[int, ...]]) -> None:
    """Check a weights file's keys and shapes (``{key: shape}``) against ``config`` without allocating the
    model: both sides live on the ``meta`` device. Raises the ``ValueError`` of :func:`load_state_dict`.
    The width (``c_attn``'s shape) and the number of layers are compared first, from the keys and shapes
    alone: even on the meta device, building the model of a config's ``n_layer=20000`` takes minutes."""
    with torch.device("meta"):
        tensors = {key: torch.empty(shape) for key, shape in shapes.items()}
    convert_state_dict(tensors, config)  # the width (n_embd) first: c_attn's shape, no model needed
    layers = {int(m.group(1)) for key in shapes if (m := re.match(r"h\.(\d+)\.", _short_key(key)))}
    n_file = max(layers) + 1 if layers else 0
    if n_file < config.n_layer:
        raise ValueError(f"missing key(s) in state dict: the weights hold {n_file} layer(s) (h.0 .. h.{n_file - 1}) "
                         f"but the config has n_layer={config.n_layer} (h.{n_file} .. h.{config.n_layer - 1} missing)")
    if n_file > config.n_layer:
        raise ValueError(f"unexpected key(s) in state dict: the weights hold {n_file} layers (h.0 .. h.{n_file - 1}) "
                         f"but the config has n_layer={config.n_layer}")
    with torch.device("meta"):
        model = GPT2(config)
    load_state_dict(model, tensors)


def _file_shapes(path: Path) -> dict[str, tuple[int, ...]] | None:
    """``{key: shape}`` from a ``.safetensors`` header (no tensor is read); None for other formats."""
    if path.suffix != ".safetensors":
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    except Exception as e:  # corrupt, truncated, or not a safetensors file
        raise ValueError(f"could not read weights from {path}: {type(e).__name__}: {e}") from e


# ---------------------------------------------------------------------------------------------------
# folders
def _resolve(name_or_dir: str | os.PathLike) -> Path:
    path = Path(name_or_dir)
    if path.is_dir():
        return path
    if path.exists():
        raise ValueError(f"{path} is a file; from_pretrained expects a folder with config.json and weights")
    name = str(name_or_dir)
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:
        raise FileNotFoundError(
            f"{name!r} is not a local folder, and huggingface_hub is not installed to fetch it from the Hub"
        ) from e
    try:
        return Path(snapshot_download(name, allow_patterns=["config.json", "model.safetensors"]))
    except Exception as e:
        raise OSError(
            f"{name!r} is not a local folder and could not be fetched from the Hugging Face Hub "
            f"({type(e).__name__}: {e}). If you are offline, download config.json and model.safetensors "
            f"elsewhere and pass their folder."
        ) from e


def from_pretrained(name_or_dir: str | os.PathLike, **overrides: Any) -> GPT2:
    """A :class:`GPT2` from a Hugging Face GPT-2 folder (``config.json`` + ``model.safetensors`` or
    ``pytorch_model.bin``), a folder written by :func:`save_pretrained`, or a hub id such as "gpt2"
    (needs ``huggingface_hub`` and a network). Returned in eval mode; ``overrides`` go to the config."""
    folder = _resolve(name_or_dir)
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"no config.json in {folder}")
    cfg = read_json_object(cfg_path)
    try:
        config = config_from_hf(cfg, **overrides)
    except KeyError as e:
        raise ValueError(f"{cfg_path} lacks the field {e.args[0]!r}") from e
    except (TypeError, ValueError) as e:
        raise ValueError(f"{cfg_path}: {e}") from e
    head_dim = cfg.get("head_dim")
    if head_dim is not None and head_dim * config.n_head != config.n_embd:
        raise ValueError(f"{cfg_path}: head_dim={head_dim!r} x n_head={config.n_head} is not n_embd={config.n_embd}")
    for filename in ("model.safetensors", "pytorch_model.bin"):
        if (folder / filename).is_file():
            weights = folder / filename
            break
    else:
        raise FileNotFoundError(f"no model.safetensors or pytorch_model.bin in {folder}")
    try:
        shapes = _file_shapes(weights)  # from the header: nothing read or allocated yet
        if shapes is not None:
            check_shapes(config, shapes)
        state_dict = read_state_dict(weights)  # its errors already name the file
        if shapes is None:  # pytorch_model.bin: its tensors are read, the model is not built yet
            check_shapes(config, {k: tuple(v.shape) for k, v in state_dict.items()})
        _to_our_layout(state_dict, config)
        with torch.device("meta"):  # no random initialisation: the file's tensors become the parameters
            model = GPT2(config)
        load_state_dict(model, state_dict, assign=True)
        del state_dict
    except ValueError as e:
        if str(weights) in str(e):
            raise
        raise ValueError(f"{weights} does not match {cfg_path}: {e}") from e
    return model.eval()


def save_pretrained(model: GPT2, directory: str | os.PathLike) -> None:
    """Write ``config.json`` and ``model.safetensors`` in the layout of ``transformers.GPT2LMHeadModel``.

    Projection matrices are stored transposed ([in, out], Conv1D), the tied head is stored once (as
    ``transformer.wte.weight``, like transformers does), and a model without biases gets zero biases.
    Files are written to a temporary name first and renamed, so an old save is never half overwritten.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = model.config
    tensors: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if key == "lm_head.weight":
            continue
        value = value.detach().to("cpu")
        if key.endswith(_CONV1D):
            value = value.t()
        tensors[key] = value.contiguous()
    if not config.bias:  # Hugging Face GPT-2 always has biases: zeros are the same function
        C = config.n_embd
        sizes = {"ln_1": C, "ln_2": C, "attn.c_attn": 3 * C, "attn.c_proj": C, "mlp.c_fc": config.d_ff, "mlp.c_proj": C}
        dtype = model.transformer.wte.weight.dtype
        for i in range(config.n_layer):
            for name, size in sizes.items():
                tensors[f"transformer.h.{i}.{name}.bias"] = torch.zeros(size, dtype=dtype)
        tensors["transformer.ln_f.bias"] = torch.zeros(C, dtype=dtype)

    with atomic_path(directory / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        normal_mode(tmp)  # safetensors writes 0600
    atomic_write_text(directory / "config.json", json.dumps(config_to_hf(config), indent=2) + "\n")
