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

:func:`train` is an outline: the recipe (schedule, optimizer, loss, one optimizer step, held-out loss) is in
:mod:`gpt2lib.recipe`, the run machinery (folders, logs, signals, checkpoints, DDP) in :mod:`gpt2lib.runner`.

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

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gpt2lib.data import TokenLoader
from gpt2lib.errors import ConfigError
from gpt2lib.hardware import estimate_memory, max_micro_batch_size
from gpt2lib import checkpoint as ckpt
from gpt2lib.lock import locks_output
from gpt2lib.model import GPT2, GPT2Config
from gpt2lib.options import check_train_steps
from gpt2lib.recipe import batch_loss, configure_optimizer, evaluate_loss, lr_at, optimizer_step
# the run machinery; LOG, the exceptions, read_log and plot_losses keep their old home here too
from gpt2lib.runner import (LOG, LogError, NonFiniteLossError, Run, RunExistsError, StopRequests, TrainingAborted,
                            TrainingInterrupted, mixed_precision, open_data, place_model, plot_losses, read_log,
                            refuse_earlier_run, setup_distributed, wrap_model)

__all__ = ["TrainConfig", "train", "lr_at", "NonFiniteLossError", "RunExistsError", "LogError",
           "TrainingInterrupted", "TrainingAborted", "configure_optimizer", "evaluate_loss", "read_log", "plot_losses",
           "estimate_memory", "max_micro_batch_size", "PRESETS", "batch_loss", "optimizer_step"]



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


@locks_output("train", lambda cfg, *a, **k: cfg.out_dir)  # one writer per out_dir (gpt2lib.lock)
def train(cfg: TrainConfig, *, model: GPT2 | None = None, max_time: float | None = None) -> dict[str, Any]:
    """Train according to ``cfg`` (GPT-2 §2.3; the recipe in :mod:`gpt2lib.recipe`); returns a summary (final
    step, losses, tokens/s, paths, and the model).

    ``model``: start from this model instead of a fresh ``cfg.model`` one (its context must fit
    ``cfg.block_size``). ``max_time``: stop (and save) after this many seconds of training.

    Raises :class:`RunExistsError` if ``out_dir`` holds a run and neither ``resume`` nor ``overwrite`` is set,
    :class:`~gpt2lib.errors.ConfigError` (a ``ValueError``) naming ``max_steps`` if it would train nothing
    (``max_steps`` 0, or on ``resume`` not above the checkpoint's step: see
    :func:`gpt2lib.options.check_train_steps`), and :class:`TrainingInterrupted` after saving when SIGINT / SIGTERM stopped the run early.
    """
    cfg.validate()
    refuse_earlier_run(Path(cfg.out_dir), resume=cfg.resume, overwrite=cfg.overwrite)
    check_train_steps(cfg.max_steps, resume=cfg.resume, out_dir=cfg.out_dir)  # >= 1 step, above a resumed one
    rank, world, device = setup_distributed(cfg.device)
    precision, amp = mixed_precision(device, cfg.precision)  # bf16 / fp16 autocast on GPUs, fp32 on CPU
    grad_accum = cfg.grad_accum(world)  # tokens_per_step = micro_batch_size x block_size x grad_accum x world
    train_shards, val_shards = open_data(cfg)
    n_vocab = train_shards.meta["n_vocab"]

    torch.manual_seed(cfg.seed)  # the initial weights
    if model is None:
        model = GPT2(GPT2Config.from_name(cfg.model, vocab_size=n_vocab, block_size=cfg.block_size,
                                          dropout=cfg.dropout))
    place_model(model, n_vocab, device)
    loader = TokenLoader(train_shards, cfg.block_size, cfg.micro_batch_size, seed=cfg.seed, rank=rank,
                         world_size=world, model_block_size=model.config.block_size, device=device)
    optimizer = configure_optimizer(model, cfg, device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")  # loss scaling for fp16 only

    run = Run(cfg, model, optimizer, scaler, loader, val_shards=val_shards, rank=rank, world=world, device=device,
              precision=precision, amp=amp, grad_accum=grad_accum)
    start_step = run.start()  # resume from the latest checkpoint, or a fresh folder
    model = wrap_model(model, cfg.compile, world, device)  # torch.compile, DDP; run keeps the plain model

    t_start = time.perf_counter()
    with StopRequests() as stop, run.progress():
        for step in range(start_step, cfg.max_steps):
            t0 = time.perf_counter()
            lr = lr_at(step, cfg)
            loss, grad_norm = optimizer_step(model, optimizer, loader.next_batch, grad_accum, lr, cfg.grad_clip,
                                             amp=amp, scaler=scaler)
            if grad_norm is None:
                raise NonFiniteLossError(
                    f"loss is {loss} at step {step + 1}; stopped before its optimizer step. " + (
                        f"The last checkpoint in {cfg.out_dir} is intact: lower the learning rate or check the data,"
                        f" then resume." if (Path(cfg.out_dir) / ckpt.POINTER).is_file() else "No checkpoint was "
                        "saved before it: lower the learning rate or check the data, then start again."))
            run.synchronize()
            run.step_done(step + 1, loss, lr, grad_norm, seconds=time.perf_counter() - t0)  # log, eval, sample
            timed_out = max_time is not None and time.perf_counter() - t_start > max_time
            if run.stop_after(step + 1, timed_out, stop.signum):  # a checkpoint is saved when due or stopping
                break
    return run.finish()
