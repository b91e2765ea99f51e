"""One validation layer for the options of every command and the matching API arguments.

Each check names the option and says what it must be, as a :class:`~gpt2lib.errors.ConfigError`
(``ValueError``): ``--batch-size: must be an integer >= 1, got -1``. A bool is not a number (``True`` would
pass ``int()``/``float()``), NaN is no number either, and combinations are checked too (fp16 needs a CUDA
GPU, a CUDA device needs CUDA). The command line's argument types (:class:`Int`, :class:`Real`) use the
same checks, so ``--batch-size -1`` and ``batch_size=-1`` fail with the same words; :func:`check_eval`
checks the arguments every §3 task shares, identically for every task.
"""
from __future__ import annotations

import argparse
import functools
import math
from dataclasses import dataclass
from typing import Any

import torch

from gpt2lib._io import read_json_object
from gpt2lib.checkpoint import CheckpointError, latest_checkpoint
from gpt2lib.errors import ConfigError

__all__ = ["check_int", "check_real", "check_choice", "check_device", "check_precision", "check_eval",
           "check_token_ids", "check_train_steps", "checked_task", "Int", "Real", "OneLineParser", "PRECISIONS"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)


def _range_text(lo: float | None, hi: float | None, lo_open: bool = False, hi_open: bool = False) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {hi}"
    return ""


def _check_range(name: str, value: Any, is_kind, noun: str, lo: float | None, hi: float | None,
                 lo_open: bool = False, hi_open: bool = False, none: bool = False) -> Any:
    """``value`` if ``is_kind(value)`` and it lies in the range (or it is None when ``none``); else ConfigError
    ``must be <noun> <range>[ or None], got <value>``."""
    if value is None and none:
        return value
    if not (is_kind(value) and (lo is None or (value > lo if lo_open else value >= lo))
            and (hi is None or (value < hi if hi_open else value <= hi))):
        what = f"{noun} {_range_text(lo, hi, lo_open, hi_open)}".rstrip()
        raise ConfigError(name, f"must be {what}{' or None' if none else ''}, got {value!r}")
    return value


def check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None, *, none: bool = False) -> Any:
    """``value`` if it is an integer (not a bool) in ``[lo, hi]`` (or None when ``none``); else ConfigError."""
    return _check_range(name, value, _is_int, "an integer", lo, hi, none=none)


def check_real(name: str, value: Any, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
               hi_open: bool = False, none: bool = False) -> Any:
    """``value`` if it is a real number (int or float, not a bool, not NaN) in the range; else ConfigError."""
    return _check_range(name, value, _is_real, "a number", lo, hi, lo_open, hi_open, none)


def check_choice(name: str, value: Any, choices: tuple | list) -> Any:
    if value not in choices:
        raise ConfigError(name, f"must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def check_device(name: str, value: Any) -> Any:
    """A torch device string this machine has (``cuda`` needs CUDA, ``cuda:3`` a fourth GPU)."""
    if not isinstance(value, str):
        raise ConfigError(name, f"must be a device name such as cpu or cuda, got {value!r}")
    if value == "auto":
        return value
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        raise ConfigError(name, f"must be auto or a torch device such as cpu, cuda, cuda:1, got {value!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(name, f"{value!r} needs a CUDA GPU, and this torch has none (torch.cuda.is_available() "
                                    f"is False); use cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(name, f"{value!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type not in ("cpu", "mps", "xpu", "meta"):
        raise ConfigError(name, f"unsupported device type {device.type!r}; use cpu or cuda")
    return value


def check_precision(name: str, precision: Any, device: Any) -> Any:
    """``precision`` is one of :data:`PRECISIONS` and can run on ``device`` (fp16 only on a CUDA GPU)."""
    check_choice(name, precision, PRECISIONS)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu") if device in (None, "auto") else \
        torch.device(device)
    if precision == "fp16" and dev.type != "cuda":
        raise ConfigError(name, f"fp16 needs a CUDA GPU, and the device is {dev}; use fp32 (or bf16) on CPU")
    return precision


def check_eval(*, limit: Any = None, batch_size: Any = 8, max_length: Any = None, stride: Any = None,
               precision: Any = "auto", device: Any = None, block_size: int | None = None,
               names: dict[str, str] | None = None) -> None:
    """The arguments the §3 tasks share, checked the same way for every task (and by ``eval``'s options).
    ``names`` renames arguments in the messages (``{"max_length": "context"}`` for ``--context``)."""
    n = {"limit": "limit", "batch_size": "batch_size", "max_length": "max_length", "stride": "stride",
         "precision": "precision", **(names or {})}
    check_int(n["limit"], limit, 1, none=True)
    check_int(n["batch_size"], batch_size, 1)
    check_int(n["max_length"], max_length, 2, block_size, none=True)
    check_int(n["stride"], stride, 1, max_length or block_size, none=True)
    check_precision(n["precision"], precision, device)


def check_token_ids(ids: Any, n_vocab: int | None = None, name: str = "ids") -> list[int]:
    """A list of token ids: integers (bools are not ids) in ``[0, n_vocab)``."""
    ids = list(ids)
    for i in ids:
        ok = (_is_int(i) or (hasattr(i, "dtype") and not str(getattr(i, "dtype")).startswith("bool")
                             and float(i).is_integer())) and int(i) >= 0
        if not ok or (n_vocab is not None and int(i) >= n_vocab):
            raise ConfigError(name, f"must be token ids (integers in [0, {n_vocab if n_vocab else 'n_vocab'})), "
                                    f"got {i!r}")
    return [int(i) for i in ids]


# --------------------------------------------------------------------------------------------------
# argparse types built on the same checks (the generated option test reads their ranges).


@dataclass(frozen=True)
class Int:
    """``type=Int("--batch-size", 1)``: an integer in ``[lo, hi]``; ``none=True`` also takes ``none``."""

    option: str
    lo: int | None = None
    hi: int | None = None
    none: bool = False

    def __call__(self, text: str) -> int | None:
        if self.none and text.lower() in ("none", "null"):
            return None
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer {_range_text(self.lo, self.hi)}, got {text!r}")
        try:
            return check_int(self.option, value, self.lo, self.hi)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(e.detail) from None


@dataclass(frozen=True)
class Real:
    """``type=Real("--val-fraction", 0, 1, hi_open=True)``: a finite number in the range."""

    option: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __call__(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if math.isinf(value):
            value = math.nan  # no option of gpt2lib takes an infinite value
        try:
            return check_real(self.option, value, self.lo, self.hi, lo_open=self.lo_open, hi_open=self.hi_open)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(e.detail.replace("got nan", f"got {text!r}")) from None


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, ``gpt2lib eval: error: argument --batch-size: ...``
    (``--help`` still shows the usage)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (--help shows the usage)\n")


def checked_task(task):
    """Wrap a §3 task function so that its shared arguments go through :func:`check_eval` before any work,
    the same for every task (the model's device decides whether fp16 can run, its context bounds max_length)."""
    @functools.wraps(task)
    def run(model: Any, tokenizer: Any, **kw: Any):
        try:
            device = next(model.parameters()).device.type
        except (AttributeError, StopIteration, TypeError):
            device = None
        block = getattr(getattr(model, "config", None), "block_size", None)
        check_eval(limit=kw.get("limit"), batch_size=kw.get("batch_size", 8), max_length=kw.get("max_length"),
                   stride=kw.get("stride"), precision=kw.get("precision", "auto"), device=device,
                   block_size=block if isinstance(block, int) else None)
        return task(model, tokenizer, **kw)
    return run


def check_train_steps(max_steps: Any, *, resume: bool = False, out_dir: Any = None, name: str = "max_steps") -> int:
    """A training run trains at least one step (GPT-2 §2.3's optimisation, counted in optimizer steps): ``max_steps``
    is an integer >= 1 and, on ``resume``, above the step of ``out_dir``'s latest checkpoint. Equal is refused
    too: ``resume`` means "train on", and a run already at ``max_steps`` is finished (load it with
    :func:`gpt2lib.resolve.resolve_model` or :func:`gpt2lib.checkpoint.load_checkpoint`). ``gpt2lib train`` and
    :func:`gpt2lib.train.train` both call this, so both refuse with the same words. A missing or damaged
    checkpoint is left for the loader to report."""
    check_int(name, max_steps, 1)
    if resume and out_dir is not None:
        try:
            step = read_json_object(latest_checkpoint(out_dir) / "state.json")["step"]
        except (CheckpointError, OSError, ValueError, KeyError, TypeError):
            return max_steps
        if _is_int(step) and step >= max_steps:
            raise ConfigError(name, f"must be above {step}: the run in {out_dir} is already at step {step}, so "
                                    f"resume would train nothing, got {max_steps}")
    return max_steps
