"""The run machinery around the training recipe (:mod:`gpt2lib.recipe`): folders, logs, signals, checkpoints, DDP.

:func:`gpt2lib.train.train` reads as the recipe; everything here is what makes a long run safe to start, watch,
stop and continue:

* an ``out_dir`` that holds a run (``log.jsonl``, ``latest``, ``ckpt-*``) is refused unless ``resume`` continues
  it or ``overwrite`` moves it aside, into ``out_dir/old-run-<UTC time>/`` (nothing is deleted):
  :func:`refuse_earlier_run`, :meth:`Run.start`;
* SIGINT (Ctrl-C) or SIGTERM (pre-emption, ``docker stop``) finishes the current step, saves a checkpoint and
  raises :class:`TrainingInterrupted`; a second signal aborts at once, leaving the previous checkpoint. Under
  DDP every rank learns of a signal that reached any of them in the same step, so all stop after it
  (:class:`StopRequests`, :meth:`Run.stop_after`);
* ``log.jsonl`` gets one JSON record per logged step; a last line torn by a kill is repaired on resume;
* one process per GPU under ``torchrun`` (:func:`setup_distributed`, :func:`wrap_model`): rank 0 writes, every
  rank evaluates and agrees on when to stop.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from gpt2lib import checkpoint as ckpt
from gpt2lib._io import atomic_write_text, fsync_dir, remove_stale_temporaries
from gpt2lib.data import TokenLoader, TokenShards, load_tokenizer
from gpt2lib.errors import GPT2LibError
from gpt2lib.hardware import autocast_dtype, choose_precision, flops_per_token, peak_flops
from gpt2lib.model import GPT2, evaluating
from gpt2lib.recipe import evaluate_loss
from gpt2lib.runtok import tokenizer_record

if TYPE_CHECKING:
    from gpt2lib.train import TrainConfig

__all__ = ["LOG", "Run", "StopRequests", "NonFiniteLossError", "RunExistsError", "LogError", "TrainingInterrupted",
           "TrainingAborted", "refuse_earlier_run", "setup_distributed", "mixed_precision", "open_data",
           "place_model", "wrap_model", "read_log", "plot_losses"]

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



def setup_distributed(want: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device) of this process: under ``torchrun`` join the process group (NCCL on GPUs,
    gloo on CPU), one GPU per local rank; otherwise rank 0 of 1. ``want``: auto or a torch device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
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


class StopRequests:
    """While active (main thread only), SIGINT and SIGTERM ask the training loop to stop after the current
    step; a second one raises :class:`TrainingAborted` at once. Signals that were ignored stay ignored, and
    the previous handlers come back at exit."""

    def __init__(self) -> None:
        self.signum = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopRequests":
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




_StopRequests = StopRequests  # the earlier private name


def refuse_earlier_run(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Raise :class:`RunExistsError` if ``out`` holds a run and neither ``resume`` nor ``overwrite`` is set."""
    earlier = _earlier_run(out)
    if earlier and not (resume or overwrite):
        raise RunExistsError(
            f"{out} already holds a training run ({', '.join(p.name for p in earlier[:4])}"
            f"{', ...' if len(earlier) > 4 else ''}): continue it with resume (--resume), or start afresh with "
            f"overwrite (--overwrite), which moves it into {out / 'old-run-<time>'}/, or choose another out_dir")


def mixed_precision(device: torch.device, want: str) -> tuple[str, contextlib.AbstractContextManager]:
    """(precision, autocast context) for ``device``: bf16 autocast where native, fp16 on older GPUs, fp32 on CPU
    (see :func:`gpt2lib.hardware.choose_precision`); TF32 matmuls on."""
    precision = choose_precision(device, want)
    amp_dtype = autocast_dtype(precision)
    amp = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return precision, amp


def open_data(cfg: TrainConfig) -> tuple[TokenShards, TokenShards | None]:
    """The train split and the val split (None if the data has none), checked now that val can be evaluated:
    the first evaluation may come after hours of training."""
    train_shards = TokenShards.open(cfg.data_dir, "train")
    val_shards = TokenShards.open(cfg.data_dir, "val") if "val" in train_shards.meta["splits"] else None
    if val_shards is not None and cfg.eval_batches:
        try:
            TokenLoader(val_shards, cfg.block_size, 1, shuffle=False)
        except ValueError as e:
            raise ValueError(f"{cfg.data_dir}: cannot evaluate: {e} (set eval_batches 0 to train without "
                             f"evaluation)") from None
    return train_shards, val_shards


def place_model(model: GPT2, n_vocab: int, device: torch.device) -> GPT2:
    """Check that ``model`` covers the data's vocabulary and move it to ``device``."""
    if model.config.vocab_size < n_vocab:
        raise ValueError(f"model vocab_size {model.config.vocab_size} < data's n_vocab {n_vocab}")
    model.to(device)
    if device.type != "cpu":
        # The shards' ids were checked against the vocabulary when they were opened (meta.json);
        # skip the per-step host read-back that would stall the GPU.
        model.validate_ids = False
    return model


def wrap_model(model: torch.nn.Module, compile: bool, world: int, device: torch.device) -> torch.nn.Module:
    """``model`` compiled if asked, inside DistributedDataParallel under ``torchrun`` (the recipe's step calls
    the wrapper; checkpoints and evaluations use the plain model)."""
    if compile:
        model = torch.compile(model)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                          else None)
    return model


class Run:
    """One training run's side effects around the recipe: its folder (resume or fresh start), ``log.jsonl``,
    scheduled evaluations, samples and checkpoints, the progress bar and speed, and the DDP ranks' agreement on
    when to stop. Rank 0 writes; every rank evaluates."""

    def __init__(self, cfg: TrainConfig, model: GPT2, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, loader: TokenLoader, *, val_shards: TokenShards | None,
                 rank: int, world: int, device: torch.device, precision: str,
                 amp: contextlib.AbstractContextManager, grad_accum: int) -> None:
        self.cfg, self.model, self.optimizer, self.scaler, self.loader = cfg, model, optimizer, scaler, loader
        self.val_shards, self.rank, self.world, self.device = val_shards, rank, world, device
        self.precision, self.amp, self.grad_accum = precision, amp, grad_accum
        self.master = rank == 0
        self.out = Path(cfg.out_dir)
        self.log_path = self.out / LOG
        shards = loader.shards
        self.expected = {"model": model.config.to_dict(), "train": {k: getattr(cfg, k) for k in cfg.MATH_FIELDS},
                         "decay_steps": cfg.decay_steps,
                         "data": {"n_vocab": shards.meta["n_vocab"], "tokens": shards.num_tokens}}
        n_flop_params = model.num_parameters() - model.transformer.wpe.weight.numel()
        self.flops_per_token = flops_per_token(n_flop_params, model.config.n_layer, model.config.n_embd,
                                               cfg.block_size)
        self.peak = peak_flops(torch.cuda.get_device_name(device) if device.type == "cuda" else None, precision)
        self.losses: list[float] = []
        self.samples: list[str] = []
        self.val_loss = self.val_bpb = self.tokens_per_s = self.mfu = None
        self.done, self.signum, self.saved = 0, 0, None
        self._tokenizer: Any = None
        self._record: dict | None = None
        self._bar: Any = None

    def start(self) -> int:
        """Resume from the folder's latest checkpoint, or start afresh (an earlier run moved aside if
        ``overwrite``); seed each rank's dropout stream. Returns the first step to run."""
        cfg, out = self.cfg, self.out
        start_step = 0
        if self.master and out.is_dir():  # what killed saves left behind (only the trainer's own temporary names)
            ckpt.remove_stale_saves(out)
            remove_stale_temporaries(out, {LOG})
        if cfg.resume:
            state = ckpt.load_checkpoint(out, model=self.model, optimizer=self.optimizer, scaler=self.scaler,
                                         expected_config=self.expected)
            self.loader.load_state_dict({**state["loader"], "seed": cfg.seed})
            start_step = state["step"]
            if self.master:
                _resume_log(self.log_path, start_step, trim=start_step < cfg.max_steps)
        elif self.master:
            out.mkdir(parents=True, exist_ok=True)
            earlier = _earlier_run(out)
            if earlier:  # cfg.overwrite: refuse_earlier_run refused the rest
                dest = _move_aside(out, earlier)
                print(f"overwrite: moved the earlier run in {out} ({len(earlier)} entries) into {dest}", flush=True)
        if not cfg.resume:
            torch.manual_seed(cfg.seed + 1 + self.rank)  # the dropout stream; each rank its own
        elif self.world > 1 and self.rank > 0:  # the checkpoint holds rank 0's RNG state: others get their own
            torch.manual_seed(cfg.seed + 1 + self.rank + 1_000_003 * start_step)
        self.done = start_step
        return start_step

    @contextlib.contextmanager
    def progress(self):
        """The progress bar (rank 0, if ``cfg.progress``), closed however the loop ends."""
        self._bar = tqdm(total=self.cfg.max_steps, initial=self.done, desc="train",
                         disable=not (self.master and self.cfg.progress))
        try:
            yield self._bar
        finally:
            self._bar.close()

    def synchronize(self) -> None:
        """Wait for the GPU to finish the step (so its time is measured)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _due(self, interval: int, step: int) -> bool:
        return (interval and step % interval == 0) or step == self.cfg.max_steps

    def step_done(self, step: int, loss: float, lr: float, grad_norm: float, seconds: float) -> None:
        """After optimizer step ``step`` (1-based), ``seconds`` long: progress bar, ``log.jsonl`` record, the
        scheduled held-out evaluation and sample."""
        cfg = self.cfg
        self.tokens_per_s = cfg.tokens_per_step / seconds
        self.mfu = self.tokens_per_s * self.flops_per_token / (self.peak * self.world) if self.peak else None
        self.losses.append(loss)
        self.done = step
        self._bar.update(1)
        self._bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{self.tokens_per_s:,.0f}")
        record = None
        if self.master and (step % cfg.log_interval == 0 or step == cfg.max_steps):
            record = {"step": step, "loss": loss, "val_loss": None, "lr": lr, "grad_norm": grad_norm,
                      "tokens_per_s": self.tokens_per_s, "mfu": self.mfu}
        if self._due(cfg.eval_interval, step):
            self.val_loss, self.val_bpb = self.evaluate()
            if self.master:
                record = record or {"step": step, "loss": loss, "lr": lr}
                record.update(val_loss=self.val_loss, val_bpb=self.val_bpb)
                if self.val_loss is not None:
                    tqdm.write(f"step {step}: train loss {loss:.4f}, val loss {self.val_loss:.4f}, "
                               f"val bpb {self.val_bpb:.4f}")
        if self.master and cfg.sample_tokens > 0 and self._due(cfg.sample_interval, step):
            text = self.sample(step)
            if text is not None:
                self.samples.append(text)
        if record is not None:
            _write_log(self.log_path, record)

    def evaluate(self) -> tuple[float | None, float | None]:
        """Held-out loss and bits per byte on ``eval_batches`` val batches; (None, None) without val data."""
        if self.val_shards is None or self.cfg.eval_batches == 0:
            return None, None
        return evaluate_loss(self.model, self.val_shards, self.cfg.block_size, self.cfg.micro_batch_size,
                             self.cfg.eval_batches, self.device, self.amp)

    def sample(self, step: int) -> str | None:
        """Print and return ``sample_tokens`` tokens sampled (top-k 50) after ``sample_prompt``; None without a
        tokenizer in the data folder."""
        cfg = self.cfg
        if self._tokenizer is None:
            try:
                self._tokenizer = load_tokenizer(cfg.data_dir)
            except (FileNotFoundError, KeyError):
                self._tokenizer = False
        if self._tokenizer is False:
            return None
        tok = self._tokenizer
        gen = torch.Generator(device=self.device).manual_seed(cfg.seed + step)
        prompt = tok.encode(cfg.sample_prompt) or [tok.eot]
        idx = torch.tensor([prompt[-cfg.block_size:]], device=self.device)
        with evaluating(self.model), self.amp:
            out_ids = self.model.generate(idx, cfg.sample_tokens, top_k=50, generator=gen)
        text = tok.decode(out_ids[0].tolist())
        tqdm.write(f"--- sample at step {step} ---\n{text}\n---")
        return text

    def stop_after(self, step: int, timed_out: bool, signum: int) -> bool:
        """Whether to stop after ``step`` (out of time, or a signal): under DDP all ranks agree, or the
        collectives hang. Saves a checkpoint when one is due or the run stops."""
        if self.world > 1:
            flags = torch.tensor([float(timed_out), float(signum)], device=self.device)
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
            timed_out, signum = bool(flags[0]), int(flags[1])
        self.signum = signum
        if self._due(self.cfg.save_interval, step) or timed_out or signum:
            self.saved = self.save(step, self.losses[-1])
        return bool(timed_out or signum)

    def save(self, step: int, last_loss: float | None) -> Path | None:
        """Checkpoint weights, optimizer, scaler, RNG and data cursor (rank 0); returns its folder."""
        if not self.master:
            return None
        if self._record is None:  # a copy of the run's tokenizer: sample and eval work from any folder
            self._record = tokenizer_record(self.cfg.data_dir)
        return ckpt.save_checkpoint(self.out, model=self.model, step=step, optimizer=self.optimizer,
                                    scaler=self.scaler, config={**self.expected, "train_full": self.cfg.to_dict(),
                                                                "tokenizer": self._record},
                                    loader_state=self.loader.state_dict(), extra={"loss": last_loss},
                                    keep=self.cfg.keep_checkpoints)

    def finish(self) -> dict[str, Any]:
        """Wait for every rank; raise :class:`TrainingInterrupted` if a signal stopped the run early; else the
        summary :func:`gpt2lib.train.train` returns."""
        if self.world > 1:
            dist.barrier()
        if self.signum and self.done < self.cfg.max_steps:
            raise TrainingInterrupted(self.signum, self.done, str(self.out), str(self.saved) if self.saved else None)
        return {"step": self.done, "losses": self.losses, "val_loss": self.val_loss, "val_bpb": self.val_bpb,
                "tokens_per_s": self.tokens_per_s, "mfu": self.mfu, "samples": self.samples,
                "log": str(self.log_path), "out_dir": str(self.out), "model": self.model,
                "precision": self.precision, "grad_accum": self.grad_accum, "world_size": self.world}


def plot_losses(log_path: str | os.PathLike, ax=None):
    """Plot train and val loss (nats per token) against step from a ``log.jsonl``; returns the axes."""
    import matplotlib.pyplot as plt  # lazy: a 1 s import that only plots need (train imports this module)

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
