"""Training GPT-2 from token shards (GPT-2 §2.3: context 1024, batch 512 sequences).

The paper gives the model sizes, the 1024-token context and the batch of 512 sequences; it does not give the
optimizer settings. The defaults below follow GPT-3's small model, the published recipe closest to GPT-2 124M
(Brown et al. 2020, Table 2.1 and Appendix B): AdamW with beta = (0.9, 0.95), eps 1e-8, weight decay 0.1 on the
2-D weight matrices only, learning rate 6e-4 with linear warm-up and cosine decay to 10% of the peak, gradient
clipping at 1.0, and 0.5M tokens per step (512 x 1024), reached by gradient accumulation:

    tokens_per_step = micro_batch_size * block_size * grad_accum * world_size

The same entry point runs on one CPU, one GPU or ``torchrun --nproc_per_node=N`` (DDP: NCCL on GPUs, gloo on
CPU; gradients are all-reduced only on the last micro-step). Precision follows the device (bf16 autocast
where native, fp16 + GradScaler on older GPUs, fp32 on CPU; TF32 matmuls on). Every run writes ``log.jsonl``,
checkpoints (see :mod:`gpt2lib.checkpoint`) and can resume bit-for-bit.

A run never loses work:

* an ``out_dir`` that holds a run (``log.jsonl``, ``latest``, ``ckpt-*``) is refused unless ``resume`` continues
  it or ``overwrite`` moves it aside, into ``out_dir/old-run-<UTC time>/`` (nothing is deleted);
* SIGINT (Ctrl-C) or SIGTERM (pre-emption, ``docker stop``) finishes the current step, saves a checkpoint and
  raises :class:`TrainingInterrupted`; a second signal aborts at once, leaving the previous checkpoint. Under
  DDP every rank learns of a signal that reached any of them in the same step, so all stop after it;
* a ``log.jsonl`` whose last line was torn by a kill is repaired on resume (the incomplete line dropped);
* settings are checked when a :class:`TrainConfig` is made, before anything is read or written.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from gpt2lib import checkpoint as ckpt
from gpt2lib._io import atomic_write_text, fsync_dir, remove_stale_temporaries
from gpt2lib.errors import ConfigError, GPT2LibError
from gpt2lib.data import TokenLoader, TokenShards, load_tokenizer
from gpt2lib.lock import locks_output
from gpt2lib.runtok import tokenizer_record
from gpt2lib.hardware import (autocast_dtype, choose_precision, estimate_memory, flops_per_token,
                              max_micro_batch_size, peak_flops)
from gpt2lib.model import GPT2, GPT2Config

__all__ = ["TrainConfig", "train", "lr_at", "NonFiniteLossError", "RunExistsError", "LogError",
           "TrainingInterrupted", "TrainingAborted", "configure_optimizer", "evaluate_loss", "read_log", "plot_losses",
           "estimate_memory", "max_micro_batch_size", "PRESETS"]

LOG = "log.jsonl"


class NonFiniteLossError(GPT2LibError, FloatingPointError):
    """The training loss became NaN or infinite; training stopped before the optimizer step."""


class RunExistsError(GPT2LibError, FileExistsError):
    """``out_dir`` already holds a run and neither ``resume`` nor ``overwrite`` was asked for."""


class LogError(GPT2LibError, ValueError):
    """A ``log.jsonl`` line that is not a training record (and not the torn last line of a killed run)."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped training after a complete step, whose checkpoint was saved.

    ``signum``, ``step`` (the last step done and saved), ``checkpoint`` (its folder, on the rank that saved)
    and ``exit_code`` (128 + signum: 130 for SIGINT, 143 for SIGTERM). A ``KeyboardInterrupt``, so code that
    handles Ctrl-C handles it too."""

    def __init__(self, signum: int, step: int, out_dir: str, checkpoint: str | None):
        self.signum, self.step, self.out_dir, self.checkpoint = signum, step, out_dir, checkpoint
        self.exit_code = 128 + signum
        super().__init__(f"training stopped by {signal.Signals(signum).name} after step {step}; "
                         f"saved in {out_dir}; continue with resume=True")


class TrainingAborted(KeyboardInterrupt):
    """A second SIGINT / SIGTERM during a run: aborted at once, without saving (the last checkpoint stays)."""

    def __init__(self, signum: int):
        self.signum, self.exit_code = signum, 128 + signum
        super().__init__(f"aborted by a second {signal.Signals(signum).name}")


@dataclass
class TrainConfig:
    """Everything a training run needs; saved with every checkpoint."""

    data_dir: str = "data"  # a gpt2lib.data.prepare folder
    out_dir: str = "out"  # checkpoints, log.jsonl
    model: str = "gpt2"  # a GPT2Config.from_name preset; vocab_size comes from the data
    block_size: int = 1024  # context length T (GPT-2 §2.3)
    dropout: float = 0.0
    micro_batch_size: int = 16  # sequences per forward pass per process
    tokens_per_step: int = 512 * 1024  # the paper's 512 sequences of 1024 tokens
    max_steps: int = 19073  # ~10B tokens at 0.5M tokens/step
    warmup_steps: int = 715  # ~375M tokens (GPT-3 App. B warms up over 375M tokens)
    lr_decay_steps: int | None = None  # cosine reaches min_lr here; None = max_steps
    lr: float = 6e-4
    min_lr: float = 6e-5  # 10% of lr (GPT-3 App. B)
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # 0 = off
    seed: int = 1337
    device: str = "auto"  # auto, cpu, cuda, cuda:1, ...
    precision: str = "auto"  # auto, fp32, bf16, fp16
    compile: bool = False
    eval_interval: int = 250  # steps between val evaluations (and at the end); 0 = only at the end
    eval_batches: int = 20  # batches per val evaluation; 0 = no evaluation
    sample_interval: int = 0  # steps between printed samples; 0 = only at the end (if sample_tokens > 0)
    sample_tokens: int = 64
    sample_prompt: str = "\n"
    save_interval: int = 1000  # steps between checkpoints (and at the end); 0 = only at the end
    keep_checkpoints: int = 1
    log_interval: int = 1  # steps between log.jsonl records
    resume: bool = False  # continue from out_dir's latest checkpoint
    overwrite: bool = False  # out_dir holds a run: move it into out_dir/old-run-<time>/ and start afresh
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`~gpt2lib.errors.ConfigError` naming the first setting whose value cannot work."""
        def check(name: str, ok: bool, what: str) -> None:
            if not ok:
                raise ConfigError(name, f"must be {what}, got {getattr(self, name)!r}")

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_real(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)

        for name in ("block_size", "micro_batch_size", "tokens_per_step", "log_interval", "keep_checkpoints"):
            check(name, is_int(getattr(self, name)) and getattr(self, name) >= 1, "an integer >= 1")
        for name in ("max_steps", "warmup_steps", "eval_interval", "eval_batches", "sample_interval",
                     "sample_tokens", "save_interval"):
            check(name, is_int(getattr(self, name)) and getattr(self, name) >= 0, "an integer >= 0")
        check("lr_decay_steps", self.lr_decay_steps is None or (is_int(self.lr_decay_steps) and
                                                                self.lr_decay_steps >= 0), "None or an integer >= 0")
        check("seed", is_int(self.seed) and 0 <= self.seed < 2**32, "an integer in [0, 2**32) (NumPy's seed range)")
        check("lr", is_real(self.lr) and 0 < self.lr < math.inf, "a number > 0")
        check("min_lr", is_real(self.min_lr) and 0 <= self.min_lr <= self.lr, f"a number in [0, lr={self.lr}]")
        check("weight_decay", is_real(self.weight_decay) and 0 <= self.weight_decay < math.inf, "a number >= 0")
        for name in ("beta1", "beta2"):
            check(name, is_real(getattr(self, name)) and 0 <= getattr(self, name) < 1, "a number in [0, 1)")
        check("eps", is_real(self.eps) and 0 < self.eps < math.inf, "a number > 0")
        check("dropout", is_real(self.dropout) and 0 <= self.dropout < 1, "a number in [0, 1)")
        check("grad_clip", is_real(self.grad_clip) and self.grad_clip >= 0, "a number >= 0 (0 = no clipping)")
        check("model", self.model in GPT2Config.names(), "one of " + ", ".join(GPT2Config.names()))
        check("precision", self.precision in ("auto", "fp32", "bf16", "fp16"), "auto, fp32, bf16 or fp16")
        device_ok = isinstance(self.device, str)
        if device_ok and self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, ValueError):
                device_ok = False
        check("device", device_ok, "auto or a torch device such as cpu, cuda, cuda:1")
        for name in ("data_dir", "out_dir"):
            check(name, isinstance(getattr(self, name), str) and getattr(self, name) != "", "a folder path")
        check("sample_prompt", isinstance(self.sample_prompt, str), "a string")
        check("overwrite", not (self.overwrite and self.resume), "false when resume is true (resume continues the "
                                                                  "run, overwrite moves it aside)")
        per_micro = self.micro_batch_size * self.block_size
        if self.tokens_per_step % per_micro:
            raise ConfigError("tokens_per_step", f"{self.tokens_per_step} is not a multiple of micro_batch_size "
                                                 f"x block_size = {self.micro_batch_size} x {self.block_size} = "
                                                 f"{per_micro}")

    @property
    def decay_steps(self) -> int:
        return self.lr_decay_steps if self.lr_decay_steps is not None else self.max_steps

    def grad_accum(self, world_size: int = 1) -> int:
        """Micro-steps per optimizer step so that the global batch is ``tokens_per_step`` tokens exactly."""
        per_micro = self.micro_batch_size * self.block_size * world_size
        if self.tokens_per_step % per_micro:
            raise ValueError(
                f"tokens_per_step={self.tokens_per_step} is not a multiple of micro_batch_size x block_size x "
                f"world_size = {self.micro_batch_size} x {self.block_size} x {world_size} = {per_micro}"
            )
        return self.tokens_per_step // per_micro

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s): {', '.join(unknown)}")
        return cls(**d)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "TrainConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    # fields that change the numbers a run computes; a resumed run must agree on these
    MATH_FIELDS = ("model", "block_size", "dropout", "micro_batch_size", "tokens_per_step", "warmup_steps",
                   "lr", "min_lr", "weight_decay", "beta1", "beta2", "eps", "grad_clip", "seed")


PRESETS: dict[str, dict[str, Any]] = {
    # GPT-2 124M, the paper's context and batch (the class defaults).
    "gpt2-124m": {},
    # Small CPU runs: a 4-layer, 128-wide model on 128-token windows, 16 x 128 = 2048 tokens per step.
    "cpu-tiny": dict(model="gpt2-tiny", block_size=128, micro_batch_size=16, tokens_per_step=2048, max_steps=600,
                     warmup_steps=30, lr=2e-3, min_lr=2e-4, eval_interval=100, eval_batches=8, save_interval=0,
                     sample_tokens=200, log_interval=10),
    "cpu-mini": dict(model="gpt2-mini", block_size=256, micro_batch_size=8, tokens_per_step=4096, max_steps=2000,
                     warmup_steps=100, lr=1e-3, min_lr=1e-4, eval_interval=250, eval_batches=10, save_interval=500,
                     sample_tokens=200, log_interval=10),
}


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


def _setup_distributed(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    want = cfg.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(want)
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


@torch.no_grad()
def evaluate_loss(model: torch.nn.Module, shards: TokenShards, block_size: int, batch_size: int,
                  max_batches: int, device: torch.device, amp: contextlib.AbstractContextManager | None = None
                  ) -> tuple[float, float]:
    """Mean next-token loss (nats) over the first ``max_batches`` windows-batches of ``shards`` in corpus
    order, and bits per byte = loss * tokens / (ln 2 * bytes), where bytes/tokens is the split's ratio.
    A split with fewer windows than one batch is evaluated as one smaller batch of all its windows."""
    if max_batches < 1:
        raise ValueError(f"max_batches must be >= 1, got {max_batches}")
    was_training = model.training
    model.eval()
    loader = TokenLoader(shards, block_size, batch_size, shuffle=False, device=device)
    if len(loader) == 0:
        loader = TokenLoader(shards, block_size, loader.windows_per_rank, shuffle=False, device=device)
    total, n = 0.0, 0
    for i, (x, y) in enumerate(loader):
        if i == max_batches:
            break
        with amp or contextlib.nullcontext():
            _, loss = model(x, y, return_logits=False)
        total += float(loss) * y.numel()
        n += y.numel()
    model.train(was_training)
    if n == 0:
        raise ValueError(f"the {shards.split} split has no complete batch of {batch_size} x {block_size} tokens")
    mean = total / n
    bpb = mean * shards.num_tokens / (math.log(2) * shards.num_bytes) if shards.num_bytes else float("nan")
    return mean, bpb


def _write_log(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _parse_record(path: Path, lineno: int, line: bytes) -> dict[str, Any]:
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LogError(f"{path}, line {lineno}: not a JSON record ({e})") from None
    if not isinstance(record, dict) or not isinstance(record.get("step"), int):
        raise LogError(f"{path}, line {lineno}: not a training record (a JSON object with an integer 'step')")
    return record


def _log_lines(path: Path) -> tuple[list[tuple[dict[str, Any], bytes]], bytes | None]:
    """(record, line) pairs of a log, and the torn last line (None if there is none). The trainer appends whole
    lines, so only the last line can be incomplete (a kill mid-write, or zeros after a power loss); a bad line
    anywhere else is a :class:`LogError` naming the file and line."""
    lines = path.read_bytes().split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    pairs = [(_parse_record(path, i, line), line) for i, line in enumerate(lines, 1) if line.strip()]
    if not tail.strip(b"\x00 \t\r"):
        return pairs, (tail or None)
    whole = tail.rstrip(b"\x00")
    try:
        pairs.append((_parse_record(path, len(lines) + 1, whole), whole))  # whole, only its newline missing
        return pairs, tail[len(whole):]
    except LogError:
        return pairs, tail


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``log.jsonl``. An incomplete last line (the run is writing it, or was killed while
    it did) is left out; any other bad line is a :class:`LogError` naming the file and line."""
    return [record for record, _ in _log_lines(Path(path))[0]]


def _resume_log(path: Path, last_step: int, trim: bool) -> None:
    """On resume: drop a torn last line (saying so in one line on stderr) and, if ``trim``, the records after
    ``last_step`` (the resumed run rewrites what followed its checkpoint)."""
    if not path.exists():
        return
    pairs, torn = _log_lines(path)
    keep = [line for record, line in pairs if not trim or record["step"] <= last_step]
    if torn:
        print(f"{path}: dropped its incomplete last line ({len(torn)} bytes, torn when the run was stopped)",
              file=sys.stderr, flush=True)
    if torn is not None or len(keep) < len(pairs):
        atomic_write_text(path, "".join(line.decode("utf-8") + "\n" for line in keep))


def _earlier_run(out: Path) -> list[Path]:
    """The entries of ``out`` that an earlier run wrote: its log, ``latest`` pointer and checkpoint folders."""
    try:
        entries = list(out.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(p for p in entries if p.name in (LOG, ckpt.POINTER) or (ckpt.is_checkpoint_name(p.name)
                                                                          and p.is_dir()))


def _move_aside(out: Path, entries: list[Path]) -> Path:
    """Move an earlier run's entries into a new ``out/old-run-<UTC time>/`` (renames: nothing is copied or
    deleted; ``latest`` keeps naming its checkpoint there)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest, n = out / f"old-run-{stamp}", 1
    while True:
        try:
            dest.mkdir()
            break
        except FileExistsError:
            dest, n = out / f"old-run-{stamp}-{n}", n + 1
    for p in sorted(entries, key=lambda p: p.name != ckpt.POINTER):  # the pointer first, the log and folders after
        os.rename(p, dest / p.name)
    fsync_dir(out)
    fsync_dir(dest)
    return dest


class _StopRequests:
    """While active (main thread only), SIGINT and SIGTERM ask the training loop to stop after the current
    step; a second one raises :class:`TrainingAborted` at once. Signals that were ignored stay ignored, and
    the previous handlers come back at exit."""

    def __init__(self) -> None:
        self.signum = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopRequests":
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(s) is not signal.SIG_IGN:
                    self._previous[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum:
            self.__exit__()
            raise TrainingAborted(signum)
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()


@locks_output("train", lambda cfg, *a, **k: cfg.out_dir)  # one writer per out_dir (gpt2lib.lock)
def train(cfg: TrainConfig, *, model: GPT2 | None = None, max_time: float | None = None) -> dict[str, Any]:
    """Train according to ``cfg``; returns a summary (final step, losses, tokens/s, paths, and the model).

    ``model``: start from this model instead of a fresh ``cfg.model`` one (its context must fit
    ``cfg.block_size``). ``max_time``: stop (and save) after this many seconds of training.

    Raises :class:`RunExistsError` if ``out_dir`` holds a run and neither ``resume`` nor ``overwrite`` is set,
    and :class:`TrainingInterrupted` after saving when SIGINT / SIGTERM stopped the run early.
    """
    cfg.validate()
    out = Path(cfg.out_dir)
    log_path = out / LOG
    earlier = _earlier_run(out)
    if earlier and not (cfg.resume or cfg.overwrite):
        raise RunExistsError(
            f"{out} already holds a training run ({', '.join(p.name for p in earlier[:4])}"
            f"{', ...' if len(earlier) > 4 else ''}): continue it with resume (--resume), or start afresh with "
            f"overwrite (--overwrite), which moves it into {out / 'old-run-<time>'}/, or choose another out_dir")
    rank, world, device = _setup_distributed(cfg)
    master = rank == 0
    precision = choose_precision(device, cfg.precision)
    amp_dtype = autocast_dtype(precision)
    amp = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    grad_accum = cfg.grad_accum(world)

    train_shards = TokenShards.open(cfg.data_dir, "train")
    has_val = "val" in train_shards.meta["splits"]
    val_shards = TokenShards.open(cfg.data_dir, "val") if has_val else None
    if val_shards is not None and cfg.eval_batches:
        try:  # now, not at the first evaluation: that may come after hours of training
            TokenLoader(val_shards, cfg.block_size, 1, shuffle=False)
        except ValueError as e:
            raise ValueError(f"{cfg.data_dir}: cannot evaluate: {e} (set eval_batches 0 to train without "
                             f"evaluation)") from None
    n_vocab = train_shards.meta["n_vocab"]

    torch.manual_seed(cfg.seed)
    if model is None:
        model = GPT2(GPT2Config.from_name(cfg.model, vocab_size=n_vocab, block_size=cfg.block_size,
                                          dropout=cfg.dropout))
    if model.config.vocab_size < n_vocab:
        raise ValueError(f"model vocab_size {model.config.vocab_size} < data's n_vocab {n_vocab}")
    model.to(device)
    if device.type != "cpu":
        # The shards' ids were checked against the vocabulary when they were opened (meta.json);
        # skip the per-step host read-back that would stall the GPU.
        model.validate_ids = False
    loader = TokenLoader(train_shards, cfg.block_size, cfg.micro_batch_size, seed=cfg.seed, rank=rank,
                         world_size=world, model_block_size=model.config.block_size, device=device)
    optimizer = configure_optimizer(model, cfg, device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    expected = {"model": model.config.to_dict(), "train": {k: getattr(cfg, k) for k in TrainConfig.MATH_FIELDS},
                "decay_steps": cfg.decay_steps, "data": {"n_vocab": n_vocab, "tokens": train_shards.num_tokens}}
    start_step = 0
    if master and out.is_dir():  # what killed saves left behind (only the trainer's own temporary names)
        ckpt.remove_stale_saves(out)
        remove_stale_temporaries(out, {LOG})
    if cfg.resume:
        state = ckpt.load_checkpoint(out, model=model, optimizer=optimizer, scaler=scaler, expected_config=expected)
        loader.load_state_dict({**state["loader"], "seed": cfg.seed})
        start_step = state["step"]
        if master:
            _resume_log(log_path, start_step, trim=start_step < cfg.max_steps)
    elif master:
        out.mkdir(parents=True, exist_ok=True)
        earlier = _earlier_run(out)
        if earlier:  # cfg.overwrite: checked above
            dest = _move_aside(out, earlier)
            print(f"overwrite: moved the earlier run in {out} ({len(earlier)} entries) into {dest}", flush=True)
    if not cfg.resume:
        torch.manual_seed(cfg.seed + 1 + rank)  # the dropout stream; each rank its own
    elif world > 1 and rank > 0:  # the checkpoint holds rank 0's RNG state: other ranks get their own stream
        torch.manual_seed(cfg.seed + 1 + rank + 1_000_003 * start_step)

    raw_model = model
    if cfg.compile:
        model = torch.compile(model)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                          else None)

    n_flop_params = raw_model.num_parameters() - raw_model.transformer.wpe.weight.numel()
    flops_tok = flops_per_token(n_flop_params, raw_model.config.n_layer, raw_model.config.n_embd, cfg.block_size)
    peak = peak_flops(torch.cuda.get_device_name(device) if device.type == "cuda" else None, precision)
    tokenizer = None
    if master and cfg.sample_tokens > 0:
        try:
            tokenizer = load_tokenizer(cfg.data_dir)
        except (FileNotFoundError, KeyError):
            tokenizer = None

    run_tokenizer = tokenizer_record(cfg.data_dir) if master else None  # a copy: sample works from anywhere

    def save(step: int, last_loss: float | None) -> Path | None:
        if master:
            return ckpt.save_checkpoint(out, model=raw_model, step=step, optimizer=optimizer, scaler=scaler,
                                 config={**expected, "train_full": cfg.to_dict(), "tokenizer": run_tokenizer},
                                 loader_state=loader.state_dict(),
                                 extra={"loss": last_loss}, keep=cfg.keep_checkpoints)
        return None

    def run_eval(step: int) -> tuple[float | None, float | None]:
        if val_shards is None or cfg.eval_batches == 0:
            return None, None
        return evaluate_loss(raw_model, val_shards, cfg.block_size, cfg.micro_batch_size, cfg.eval_batches,
                             device, amp)

    def sample(step: int) -> str | None:
        if tokenizer is None:
            return None
        gen = torch.Generator(device=device).manual_seed(cfg.seed + step)
        prompt = tokenizer.encode(cfg.sample_prompt) or [tokenizer.eot]
        idx = torch.tensor([prompt[-cfg.block_size:]], device=device)
        was = raw_model.training
        raw_model.eval()
        with amp:
            out_ids = raw_model.generate(idx, cfg.sample_tokens, top_k=50, generator=gen)
        raw_model.train(was)
        text = tokenizer.decode(out_ids[0].tolist())
        tqdm.write(f"--- sample at step {step} ---\n{text}\n---")
        return text

    model.train()
    losses: list[float] = []
    val_loss = val_bpb = None
    samples: list[str] = []
    tokens_per_s = mfu = None
    t_start = time.perf_counter()
    bar = tqdm(total=cfg.max_steps, initial=start_step, disable=not (master and cfg.progress), desc="train")
    done = start_step
    signum, saved = 0, None
    with _StopRequests() as stop:
        for step in range(start_step, cfg.max_steps):
            t0 = time.perf_counter()
            lr = lr_at(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum = torch.zeros((), device=device)
            for micro in range(grad_accum):
                x, y = loader.next_batch()
                last = micro == grad_accum - 1
                sync = model.no_sync() if world > 1 and not last else contextlib.nullcontext()
                with sync:
                    with amp:
                        _, loss = model(x, y, return_logits=False)
                        loss = loss / grad_accum
                    scaler.scale(loss).backward()
                loss_sum += loss.detach()
            if world > 1:
                dist.all_reduce(loss_sum, op=dist.ReduceOp.AVG)
            step_loss = float(loss_sum)
            if not math.isfinite(step_loss):
                bar.close()
                raise NonFiniteLossError(
                    f"loss is {step_loss} at step {step + 1}; stopped before its optimizer step. " + (
                        f"The last checkpoint in {out} is intact: lower the learning rate or check the data, then "
                        f"resume." if (out / ckpt.POINTER).is_file() else "No checkpoint was saved before it: lower "
                        "the learning rate or check the data, then start again.")
                )
            scaler.unscale_(optimizer)
            params = [p for p in raw_model.parameters()]
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            dt = time.perf_counter() - t0
            tokens_per_s = cfg.tokens_per_step / dt
            mfu = tokens_per_s * flops_tok / (peak * world) if peak else None
            losses.append(step_loss)
            done = step + 1
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.3f}", tok_s=f"{tokens_per_s:,.0f}")
            record = None
            if master and (done % cfg.log_interval == 0 or done == cfg.max_steps):
                record = {"step": done, "loss": step_loss, "val_loss": None, "lr": lr, "grad_norm": float(grad_norm),
                          "tokens_per_s": tokens_per_s, "mfu": mfu}
            if (cfg.eval_interval and done % cfg.eval_interval == 0) or done == cfg.max_steps:
                val_loss, val_bpb = run_eval(done)
                if master:
                    record = record or {"step": done, "loss": step_loss, "lr": lr}
                    record.update(val_loss=val_loss, val_bpb=val_bpb)
                    if val_loss is not None:
                        tqdm.write(f"step {done}: train loss {step_loss:.4f}, val loss {val_loss:.4f}, "
                                   f"val bpb {val_bpb:.4f}")
            if master and cfg.sample_tokens > 0 and (
                    (cfg.sample_interval and done % cfg.sample_interval == 0) or done == cfg.max_steps):
                s = sample(done)
                if s is not None:
                    samples.append(s)
            if record is not None:
                _write_log(log_path, record)
            timed_out = max_time is not None and time.perf_counter() - t_start > max_time
            signum = stop.signum
            if world > 1:  # all ranks stop at the same step, or the collectives hang
                flags = torch.tensor([float(timed_out), float(signum)], device=device)
                dist.all_reduce(flags, op=dist.ReduceOp.MAX)
                timed_out, signum = bool(flags[0]), int(flags[1])
            if (cfg.save_interval and done % cfg.save_interval == 0) or done == cfg.max_steps or timed_out or signum:
                saved = save(done, step_loss)
            if timed_out or signum:
                break
    bar.close()
    if world > 1:
        dist.barrier()
    if signum and done < cfg.max_steps:
        raise TrainingInterrupted(signum, done, str(out), str(saved) if saved else None)
    return {"step": done, "losses": losses,
            "val_loss": val_loss, "val_bpb": val_bpb, "tokens_per_s": tokens_per_s, "mfu": mfu,
            "samples": samples, "log": str(log_path), "out_dir": str(out), "model": raw_model,
            "precision": precision, "grad_accum": grad_accum, "world_size": world}


def plot_losses(log_path: str | os.PathLike, ax=None):
    """Plot train and val loss (nats per token) against step from a ``log.jsonl``; returns the axes."""
    import matplotlib.pyplot as plt

    records = read_log(log_path)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    tr = [(r["step"], r["loss"]) for r in records if r.get("loss") is not None]
    va = [(r["step"], r["val_loss"]) for r in records if r.get("val_loss") is not None]
    if tr:
        ax.plot(*zip(*tr), label="train")
    if va:
        ax.plot(*zip(*va), "o-", label="val")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy loss (nats / token)")
    ax.set_title(Path(log_path).parent.name or "training")
    ax.legend()
    return ax
