"""Atomic, code-free training checkpoints: weights, optimizer, scaler, RNG states and data cursor.

A run folder holds checkpoint folders ``ckpt-<step>-<id>/`` and a pointer file ``latest`` naming the newest.
A save writes a complete new folder under a temporary name (every file fsync'ed), renames it into place,
fsyncs the run folder, and only then replaces ``latest`` (temporary file + fsync + rename). A process killed
at any moment therefore leaves ``latest`` naming a complete checkpoint; older ones are deleted last. The
temporary folder of a save that was killed (``.tmp-ckpt-<step>-<id>.<pid>``) is removed by the next save
(:func:`remove_stale_saves`); nothing in the run folder that does not have the trainer's own names is touched.

Inside a checkpoint nothing is pickled, so loading never executes code:

* ``model.safetensors`` - the model's weights (names without ``_orig_mod.`` / ``module.``, the tied LM head
  stored once), loadable into a plain uncompiled :class:`gpt2lib.model.GPT2`;
* ``optimizer.safetensors`` - optimizer state tensors and the torch / CUDA RNG states;
* ``state.json`` - step, configs, optimizer hyper-parameters, GradScaler state, Python and NumPy RNG states,
  data-loader cursor and any extra JSON the trainer adds.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from gpt2lib._io import (atomic_write_text, fsync_dir, fsync_file, normal_mode, pid_alive, read_json_object,
                         remove_stale_temporaries)
from gpt2lib.errors import GPT2LibError

__all__ = ["save_checkpoint", "load_checkpoint", "latest_checkpoint", "CheckpointError", "unwrap_model",
           "model_state_dict", "is_checkpoint_name", "remove_stale_saves"]

FORMAT = "gpt2lib-checkpoint-v1"
POINTER = "latest"
_NAME = re.compile(r"ckpt-\d{8}-[0-9a-f]{8}")  # the folders save_checkpoint writes
_TMP = re.compile(r"\.tmp-(ckpt-\d{8}-[0-9a-f]{8})(?:\.(\d+))?")  # and their names while being written


class CheckpointError(GPT2LibError, ValueError):
    """A checkpoint that cannot be used here: missing, incomplete, damaged, or saved for another configuration."""


def is_checkpoint_name(name: str) -> bool:
    """Whether ``name`` is a checkpoint folder name as :func:`save_checkpoint` makes them."""
    return _NAME.fullmatch(name) is not None


def remove_stale_saves(run_dir: str | os.PathLike) -> list[Path]:
    """Remove what killed saves left in ``run_dir``: their temporary checkpoint folders (those of processes
    no longer running) and the temporary files of the ``latest`` pointer. Returns what was removed."""
    run_dir = Path(run_dir)
    removed = remove_stale_temporaries(run_dir, {POINTER})
    try:
        entries = list(run_dir.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _TMP.fullmatch(p.name)
        if m and p.is_dir() and not (m[2] and pid_alive(int(m[2]))):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def model_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Weights with wrapper prefixes stripped and tied tensors kept once (safetensors refuses shared memory)."""
    out, seen = {}, set()
    for name, t in unwrap_model(model).state_dict().items():
        name = name.replace("_orig_mod.", "")  # in case a compiled submodule sits inside
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key in seen:
            continue
        seen.add(key)
        out[name] = t.detach().contiguous().cpu()
    return out


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    version, pystate, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    js = {"python": [version, list(pystate), gauss],
          "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]}
    return tensors, js


def _set_rng_state(tensors: dict[str, torch.Tensor], js: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[f"rng.cuda.{i}"] for i in range(len([k for k in tensors if k.startswith("rng.cuda.")]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    version, pystate, gauss = js["python"]
    random.setstate((version, tuple(pystate), gauss))
    kind, keys, pos, has_gauss, cached = js["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def _optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for k, v in state.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{idx}.{k}"] = v.detach().contiguous().cpu()
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], js: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, t in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = t
    for key, v in js["scalars"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": js["param_groups"]})


def latest_checkpoint(run_dir: str | os.PathLike) -> Path:
    """The checkpoint folder named by ``run_dir/latest`` (or ``run_dir`` itself if it is a checkpoint)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"resume directory {run_dir} does not exist")
    if (run_dir / "state.json").is_file():
        return run_dir
    pointer = run_dir / POINTER
    if not pointer.is_file():
        raise FileNotFoundError(f"no checkpoint in {run_dir} (no '{POINTER}' file)")
    name = pointer.read_text().strip()
    if not is_checkpoint_name(name):
        raise CheckpointError(f"{pointer} does not name a checkpoint folder (it holds {name[:80]!r})")
    ckpt = run_dir / name
    if not (ckpt / "state.json").is_file():
        raise CheckpointError(f"{pointer} names {ckpt.name}, which is not a complete checkpoint")
    return ckpt


def save_checkpoint(
    run_dir: str | os.PathLike,
    *,
    model: torch.nn.Module,
    step: int,
    optimizer: torch.optim.Optimizer | None = None,
    scaler: torch.amp.GradScaler | None = None,
    config: dict[str, Any] | None = None,
    loader_state: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    keep: int = 1,
) -> Path:
    """Write a checkpoint of everything needed to continue training bit-for-bit; returns its folder.

    ``config`` is a JSON-able dict (e.g. ``{"model": ..., "train": ...}``) compared on load. ``keep`` newest
    checkpoints are kept (older ones are removed after ``latest`` points at the new one).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_saves(run_dir)
    name = f"ckpt-{step:08d}-{uuid.uuid4().hex[:8]}"
    tmp = run_dir / f".tmp-{name}.{os.getpid()}"
    tmp.mkdir()
    try:
        save_file(model_state_dict(model), str(tmp / "model.safetensors"), metadata={"format": FORMAT})
        normal_mode(tmp / "model.safetensors")
        fsync_file(tmp / "model.safetensors")
        rng_tensors, rng_js = _rng_state()
        tensors = dict(rng_tensors)
        state: dict[str, Any] = {"format": FORMAT, "step": int(step), "config": config or {},
                                 "loader": loader_state, "extra": extra or {}, "rng": rng_js}
        if optimizer is not None:
            opt_tensors, state["optimizer"] = _optimizer_state(optimizer)
            tensors.update(opt_tensors)
        state["scaler"] = scaler.state_dict() if scaler is not None and scaler.is_enabled() else None
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        normal_mode(tmp / "optimizer.safetensors")
        fsync_file(tmp / "optimizer.safetensors")
        _write_json(tmp / "state.json", state)  # written last: its presence marks a complete folder
        fsync_dir(tmp)
        os.replace(tmp, run_dir / name)
        fsync_dir(run_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(run_dir / POINTER, name + "\n")
    old = sorted((p for p in run_dir.iterdir() if is_checkpoint_name(p.name) and p.name != name and p.is_dir()),
                 key=lambda p: p.name)
    for p in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return run_dir / name


def _config_diff(saved: Any, expected: Any, prefix: str = "") -> list[str]:
    if isinstance(saved, dict) and isinstance(expected, dict):
        out = []
        for k in sorted(set(saved) | set(expected)):
            out += _config_diff(saved.get(k, "<missing>"), expected.get(k, "<missing>"), f"{prefix}{k}.")
        return out
    return [] if saved == expected else [f"{prefix[:-1]}: checkpoint has {saved!r}, this run has {expected!r}"]


def load_checkpoint(
    path: str | os.PathLike,
    *,
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scaler: torch.amp.GradScaler | None = None,
    expected_config: dict[str, Any] | None = None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Load the checkpoint at ``path`` (a run folder or a checkpoint folder) into the given objects.

    ``expected_config`` entries must equal the saved ones (others are not compared), else
    :class:`CheckpointError` lists every difference before anything is modified. Returns ``state.json``.
    """
    ckpt = latest_checkpoint(path)
    state = read_json_object(ckpt / "state.json", error=CheckpointError, not_json="is damaged",
                             hint="resume from an older checkpoint folder if one is kept")
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{ckpt}: unknown checkpoint format {state.get('format')!r}")
    if expected_config is not None:
        diff = _config_diff({k: state["config"].get(k, "<missing>") for k in expected_config}, expected_config)
        if diff:
            raise CheckpointError(f"checkpoint {ckpt} was saved with a different config:\n  " + "\n  ".join(diff))
    # optimizer.safetensors holds the optimizer and RNG states: only resuming needs it (sample does not)
    tensors = _read_tensors(ckpt / "optimizer.safetensors") if optimizer is not None or restore_rng else {}
    if model is not None:
        weights = _read_tensors(ckpt / "model.safetensors")
        target = unwrap_model(model)
        own = target.state_dict()
        missing = [n for n in own if n not in weights and not _is_tied(target, n, weights)]
        unexpected = [n for n in weights if n not in own]
        shapes = [f"{n}: {tuple(weights[n].shape)} vs {tuple(own[n].shape)}" for n in weights
                  if n in own and weights[n].shape != own[n].shape]
        if missing or unexpected or shapes:
            raise CheckpointError(f"checkpoint {ckpt} does not fit the model: missing {missing}, "
                                  f"unexpected {unexpected}, shape mismatches {shapes}")
        target.load_state_dict(weights, strict=False)
    if optimizer is not None:
        if "optimizer" not in state:
            raise CheckpointError(f"checkpoint {ckpt} has no optimizer state")
        _load_optimizer_state(optimizer, tensors, state["optimizer"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    if restore_rng:
        _set_rng_state(tensors, state["rng"])
    state["path"] = str(ckpt)
    return state


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """``load_file``, with an error naming the file when it is missing, truncated or not safetensors."""
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the checkpoint folder {path.parent} is incomplete")
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors' SafetensorError (a truncated or overwritten file) and OSError
        raise CheckpointError(f"{path} is damaged or truncated ({type(e).__name__}: {e}); resume from an older "
                              f"checkpoint folder if one is kept") from e


def _is_tied(model: torch.nn.Module, name: str, weights: dict[str, torch.Tensor]) -> bool:
    """True if parameter ``name`` shares memory with a parameter that was loaded (e.g. the tied LM head)."""
    params = dict(model.named_parameters(remove_duplicate=False))
    if name not in params:
        return False
    ptr = params[name].data_ptr()
    return any(p.data_ptr() == ptr and n in weights for n, p in params.items() if n != name)
