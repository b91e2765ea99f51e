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
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from gpt2lib import checkpoint as ckpt
from gpt2lib._io import atomic_write_text
from gpt2lib.data import TokenLoader, TokenShards, load_tokenizer
from gpt2lib.hardware import (autocast_dtype, choose_precision, estimate_memory, flops_per_token,
                              max_micro_batch_size, peak_flops)
from gpt2lib.model import GPT2, GPT2Config

__all__ = ["TrainConfig", "train", "lr_at", "NonFiniteLossError", "configure_optimizer", "evaluate_loss",
           "plot_losses", "estimate_memory", "max_micro_batch_size", "PRESETS"]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; training stopped before the optimizer step."""


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
    eval_batches: int = 20
    sample_interval: int = 0  # steps between printed samples; 0 = only at the end (if sample_tokens > 0)
    sample_tokens: int = 64
    sample_prompt: str = "\n"
    save_interval: int = 1000  # steps between checkpoints (and at the end); 0 = only at the end
    keep_checkpoints: int = 1
    log_interval: int = 1  # steps between log.jsonl records
    resume: bool = False  # continue from out_dir's latest checkpoint
    progress: bool = True

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
    order, and bits per byte = loss * tokens / (ln 2 * bytes), where bytes/tokens is the split's ratio."""
    was_training = model.training
    model.eval()
    loader = TokenLoader(shards, block_size, batch_size, shuffle=False, device=device)
    total, n = 0.0, 0
    for i, (x, y) in enumerate(loader):
        if i == max_batches:
            break
        with amp or contextlib.nullcontext():
            _, loss = model(x, y, return_logits=False)
        total += float(loss) * y.numel()
        n += y.numel()
    model.train(was_training)
    mean = total / max(n, 1)
    bpb = mean * shards.num_tokens / (math.log(2) * shards.num_bytes) if shards.num_bytes else float("nan")
    return mean, bpb


def _write_log(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _trim_log(path: Path, last_step: int) -> None:
    """Keep only records up to ``last_step`` (a resumed run rewrites what followed its checkpoint)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= last_step]
    atomic_write_text(path, "".join(line + "\n" for line in keep))


def train(cfg: TrainConfig, *, model: GPT2 | None = None, max_time: float | None = None) -> dict[str, Any]:
    """Train according to ``cfg``; returns a summary (final step, losses, tokens/s, paths, and the model).

    ``model``: start from this model instead of a fresh ``cfg.model`` one (its context must fit
    ``cfg.block_size``). ``max_time``: stop (and save) after this many seconds of training.
    """
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

    out = Path(cfg.out_dir)
    log_path = out / "log.jsonl"
    expected = {"model": model.config.to_dict(), "train": {k: getattr(cfg, k) for k in TrainConfig.MATH_FIELDS},
                "decay_steps": cfg.decay_steps, "data": {"n_vocab": n_vocab, "tokens": train_shards.num_tokens}}
    start_step = 0
    if cfg.resume:
        state = ckpt.load_checkpoint(out, model=model, optimizer=optimizer, scaler=scaler, expected_config=expected)
        loader.load_state_dict({**state["loader"], "seed": cfg.seed})
        start_step = state["step"]
        if master:
            _trim_log(log_path, start_step)
    elif master:
        out.mkdir(parents=True, exist_ok=True)
        log_path.unlink(missing_ok=True)
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

    def save(step: int, last_loss: float | None) -> None:
        if master:
            ckpt.save_checkpoint(out, model=raw_model, step=step, optimizer=optimizer, scaler=scaler,
                                 config={**expected, "train_full": cfg.to_dict()}, loader_state=loader.state_dict(),
                                 extra={"loss": last_loss}, keep=cfg.keep_checkpoints)

    def run_eval(step: int) -> tuple[float | None, float | None]:
        if val_shards is None:
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
                f"loss is {step_loss} at step {step + 1}; stopped before its optimizer step. The last checkpoint in "
                f"{out} is intact: lower the learning rate or check the data, then resume."
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
        if world > 1 and max_time is not None:  # all ranks stop at the same step, or the collectives hang
            flag = torch.tensor(float(timed_out), device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            timed_out = bool(flag)
        if (cfg.save_interval and done % cfg.save_interval == 0) or done == cfg.max_steps or timed_out:
            save(done, step_loss)
        if timed_out:
            break
    bar.close()
    if world > 1:
        dist.barrier()
    return {"step": done, "losses": losses,
            "val_loss": val_loss, "val_bpb": val_bpb, "tokens_per_s": tokens_per_s, "mfu": mfu,
            "samples": samples, "log": str(log_path), "out_dir": str(out), "model": raw_model,
            "precision": precision, "grad_accum": grad_accum, "world_size": world}


def plot_losses(log_path: str | os.PathLike, ax=None):
    """Plot train and val loss (nats per token) against step from a ``log.jsonl``; returns the axes."""
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
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
