"""gpt2lib.train: schedule, optimizer groups, precision/MFU tables, memory estimate, the loop, exact resume."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from _shards import shakespeare_shards
from hypothesis import strategies as st
from safetensors.torch import load_file

from gpt2lib.checkpoint import latest_checkpoint, load_checkpoint
from gpt2lib.data import TokenShards
from gpt2lib.hardware import choose_precision, estimate_memory, max_micro_batch_size, peak_flops
from gpt2lib.model import GPT2, GPT2Config
from gpt2lib.train import NonFiniteLossError, TrainConfig, configure_optimizer, lr_at, plot_losses, train


# --- learning-rate schedule ---------------------------------------------------------------------------------
def test_lr_schedule_known_points():
    """Linear warm-up to lr, cosine to min_lr: half-way through the decay the lr is the mean of the two."""
    cfg = TrainConfig(lr=6e-4, min_lr=6e-5, warmup_steps=10, max_steps=110)
    assert lr_at(0, cfg) == pytest.approx(6e-5) and lr_at(4, cfg) == pytest.approx(3e-4)
    assert lr_at(9, cfg) == pytest.approx(6e-4) and lr_at(10, cfg) == pytest.approx(6e-4)
    assert lr_at(60, cfg) == pytest.approx((6e-4 + 6e-5) / 2)
    assert lr_at(110, cfg) == pytest.approx(6e-5) and lr_at(10_000, cfg) == pytest.approx(6e-5)
    assert lr_at(60, TrainConfig(warmup_steps=10, max_steps=20, lr_decay_steps=110)) == pytest.approx(3.3e-4)


@settings(max_examples=25, deadline=None)
@given(warmup=st.integers(1, 50), decay=st.integers(51, 300), lr=st.floats(1e-5, 1e-2))
def test_lr_schedule_properties(warmup, decay, lr):
    """Warm-up increases strictly to lr, decay never increases, and after warm-up lr is in [min_lr, lr]."""
    cfg = TrainConfig(lr=lr, min_lr=lr / 10, warmup_steps=warmup, max_steps=decay)
    lrs = [lr_at(s, cfg) for s in range(decay + 5)]
    assert all(a < b for a, b in zip(lrs[:warmup], lrs[1:warmup]))
    assert all(a >= b - 1e-15 for a, b in zip(lrs[warmup - 1 :], lrs[warmup:]))
    assert all(0 < x <= lr * (1 + 1e-12) for x in lrs) and lrs[warmup - 1] == pytest.approx(lr)
    assert all(lr / 10 * (1 - 1e-12) <= x for x in lrs[warmup:])


def test_batch_is_reached_by_gradient_accumulation():
    """The paper's 512 x 1024 tokens per step = micro_batch x block x accum x world."""
    cfg = TrainConfig()
    assert cfg.tokens_per_step == 512 * 1024 and cfg.block_size == 1024
    assert cfg.grad_accum(1) == 32 and cfg.grad_accum(8) == 4
    with pytest.raises(ValueError, match="not a multiple"):
        TrainConfig(micro_batch_size=24).grad_accum(1)
    assert TrainConfig.preset("cpu-tiny").grad_accum(1) == 1
    with pytest.raises(ValueError, match="unknown preset"):
        TrainConfig.preset("nope")


def test_weight_decay_only_on_2d_weights():
    """Decayed: the matmul weights and embeddings; not decayed: biases and LayerNorm parameters.
    Every parameter is in exactly one group and the tied head is not counted twice."""
    model = GPT2(GPT2Config.from_name("gpt2-tiny", vocab_size=100))
    opt = configure_optimizer(model, TrainConfig(), torch.device("cpu"))
    decay, no_decay = ({id(p) for p in g["params"]} for g in opt.param_groups)
    assert opt.param_groups[0]["weight_decay"] == 0.1 and opt.param_groups[1]["weight_decay"] == 0.0
    named = dict(model.named_parameters())
    expect_decay = {id(p) for n, p in named.items() if n.endswith("weight") and ".ln_" not in n and "ln_f" not in n}
    assert decay == expect_decay and not (decay & no_decay)
    assert decay | no_decay == {id(p) for p in model.parameters()}
    assert opt.param_groups[0]["betas"] == (0.9, 0.95)


# --- hardware tables ----------------------------------------------------------------------------------------
def test_precision_follows_the_device():
    assert choose_precision("cpu") == "fp32"
    with pytest.raises(ValueError, match="fp16 training needs a CUDA GPU"):
        choose_precision("cpu", "fp16")
    with pytest.raises(ValueError, match="precision must be"):
        choose_precision("cpu", "fp8")


def test_peak_flops_from_datasheets():
    """Dense tensor-core peaks (datasheet values without sparsity), TF32 for fp32 where the GPU has it."""
    assert peak_flops("NVIDIA H100 80GB HBM3", "bf16") == 989e12
    assert peak_flops("NVIDIA H100 PCIe", "bf16") == 756e12
    assert peak_flops("NVIDIA H200", "bf16") == 989e12
    assert peak_flops("NVIDIA A100-SXM4-40GB", "fp32") == 156e12
    assert peak_flops("NVIDIA A100-SXM4-40GB", "fp32", tf32=False) == 19.5e12
    assert peak_flops("Tesla T4", "fp16") == 65e12 and peak_flops("Tesla T4", "fp32") == 8.1e12
    assert peak_flops("Tesla V100-SXM2-16GB", "fp16") == 125e12
    assert peak_flops("Tesla T4", "bf16") is None and peak_flops(None, "fp32") is None


def test_peak_flops_matches_whole_model_names_only():
    """An L40 is not an L4 and an RTX A1000 is not an A10: unknown GPUs give None, not a wrong MFU."""
    assert peak_flops("NVIDIA L40", "bf16") is None
    assert peak_flops("NVIDIA RTX A1000", "fp16") is None
    assert peak_flops("NVIDIA L4", "bf16") == 121e12
    assert peak_flops("NVIDIA A10G", "bf16") == 125e12
    assert peak_flops("NVIDIA L40S", "bf16") == 362e12


# --- memory estimate ----------------------------------------------------------------------------------------
def test_memory_estimate_parameter_and_optimizer_terms_are_exact():
    """params/grads/Adam bytes equal the real tensors of a model after one AdamW step."""
    cfg = GPT2Config.from_name("gpt2-tiny", vocab_size=300, block_size=64)
    model = GPT2(cfg)
    opt = torch.optim.AdamW(model.parameters())
    _, loss = model(torch.randint(0, 300, (2, 64)), torch.randint(0, 300, (2, 64)))
    loss.backward()
    opt.step()
    est = estimate_memory(cfg, micro_batch_size=2, block_size=64)
    nbytes = lambda ts: sum(t.numel() * t.element_size() for t in ts)  # noqa: E731
    assert est.params == nbytes(model.parameters())
    assert est.grads == nbytes(p.grad for p in model.parameters())
    assert est.optimizer == nbytes(s[k] for s in opt.state.values() for k in ("exp_avg", "exp_avg_sq"))


def test_memory_estimate_activations_match_saved_tensors():
    """The fp32 activation + logits terms are within 15% of the bytes autograd actually saves on CPU
    (measured with saved_tensors_hooks, each storage counted once)."""
    cfg = GPT2Config.from_name("gpt2-tiny", vocab_size=512, block_size=128)
    model = GPT2(cfg)
    storages: dict[int, int] = {}
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            storages[s.data_ptr()] = s.nbytes()
        return t

    x = torch.randint(0, 512, (4, 128))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _, loss = model(x, x)
    measured = sum(storages.values())
    est = estimate_memory(cfg, micro_batch_size=4, block_size=128)
    predicted = est.activations + est.logits - 4 * 128 * 512 * 4  # the logits' gradient is not a saved tensor
    assert abs(predicted - measured) / measured < 0.15, (predicted, measured)


def test_largest_micro_batch_fits_the_budget():
    """GPT-2 124M on a 16 GB T4 in fp16: the chosen micro-batch fits, one more does not."""
    cfg = GPT2Config.from_name("gpt2")
    b = max_micro_batch_size(cfg, 16e9, precision="fp16")
    assert b >= 1
    assert estimate_memory(cfg, micro_batch_size=b, precision="fp16").total <= 0.9 * 16e9
    assert estimate_memory(cfg, micro_batch_size=b + 1, precision="fp16").total > 0.9 * 16e9
    small = [estimate_memory(cfg, micro_batch_size=m).total for m in (1, 2, 4)]
    assert small == sorted(small) and max_micro_batch_size(cfg, 1e9) == 0


# --- the training loop --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return shakespeare_shards(tmp_path_factory.mktemp("shards"), 60_000)


def _cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(data_dir=str(data), out_dir=str(out), model="gpt2-tiny", block_size=32, micro_batch_size=4,
                tokens_per_step=256, max_steps=6, warmup_steps=2, lr=3e-3, min_lr=3e-4, eval_interval=3,
                eval_batches=2, sample_tokens=0, save_interval=0, progress=False)
    return TrainConfig(**{**base, **kw})


def _tiny_model(vocab: int, dropout: float = 0.0) -> GPT2:
    torch.manual_seed(0)
    return GPT2(GPT2Config(block_size=32, vocab_size=vocab, n_layer=1, n_head=2, n_embd=16, dropout=dropout))


def test_training_lowers_loss_and_logs(tmp_path, tiny_data):
    """A few steps lower the loss; log.jsonl has one record per step with the documented fields, and
    val bpb = val_loss * tokens / (ln 2 * bytes) of the val split."""
    res = train(_cfg(tiny_data, tmp_path, max_steps=12, eval_interval=6, lr=2e-2), model=_tiny_model(50257))
    assert res["losses"][-1] < res["losses"][0] - 0.5
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 13))
    assert {"step", "loss", "val_loss", "lr", "grad_norm", "tokens_per_s", "mfu"} <= set(records[0])
    assert records[0]["mfu"] is None  # CPU: no peak-FLOPs entry
    val = TokenShards.open(tiny_data, "val")
    assert records[-1]["val_bpb"] == pytest.approx(
        records[-1]["val_loss"] * val.num_tokens / (math.log(2) * val.num_bytes))
    assert records[5]["val_loss"] is not None and records[4]["val_loss"] is None
    ax = plot_losses(tmp_path / "log.jsonl")
    assert ax.get_xlabel() and ax.get_ylabel() and len(ax.lines) == 2


def test_eval_loss_is_the_mean_loss_over_val_windows(tmp_path, tiny_data):
    """evaluate_loss equals the cross-entropy recomputed by hand over the first val windows."""
    from gpt2lib.train import evaluate_loss

    model = _tiny_model(50257)
    val = TokenShards.open(tiny_data, "val")
    loss, _ = evaluate_loss(model, val, 32, 4, 2, torch.device("cpu"))
    toks = torch.from_numpy(val.tokens()[: 8 * 32 + 1].astype(np.int64))
    x = torch.stack([toks[i * 32 : i * 32 + 32] for i in range(8)])
    y = torch.stack([toks[i * 32 + 1 : i * 32 + 33] for i in range(8)])
    with torch.no_grad():
        logits, _ = model(x)
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, 50257), y.reshape(-1))
    assert loss == pytest.approx(float(ref), rel=1e-5)


def test_nan_loss_stops_training_and_keeps_last_checkpoint(tmp_path, tiny_data):
    """A NaN in the forward pass raises NonFiniteLossError; the checkpoint of the last good step survives."""
    model = _tiny_model(50257)
    calls = {"n": 0}

    def poison(module, inputs, output):
        calls["n"] += 1
        return output * float("nan") if calls["n"] > 8 else output  # steps 1-4 (2 micro-steps each) are fine

    model.transformer.ln_f.register_forward_hook(poison)
    with pytest.raises(NonFiniteLossError, match="loss is nan at step 5"):
        train(_cfg(tiny_data, tmp_path, max_steps=10, save_interval=2, eval_interval=0), model=model)
    fresh = _tiny_model(50257)
    state = load_checkpoint(tmp_path, model=fresh)
    assert state["step"] == 4
    assert all(torch.isfinite(p).all() for p in fresh.parameters())


def test_block_size_larger_than_model_context_is_refused(tmp_path, tiny_data):
    with pytest.raises(ValueError, match="larger than the model's context"):
        train(_cfg(tiny_data, tmp_path, block_size=64, tokens_per_step=512), model=_tiny_model(50257))


def test_resume_of_a_missing_run_is_a_clear_error(tmp_path, tiny_data):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(_cfg(tiny_data, tmp_path, resume=True))


def test_resume_with_a_different_config_is_refused(tmp_path, tiny_data):
    train(_cfg(tiny_data, tmp_path, max_steps=2), model=_tiny_model(50257))
    with pytest.raises(ValueError, match="lr: checkpoint has 0.003, this run has 0.001"):
        train(_cfg(tiny_data, tmp_path, max_steps=4, lr=1e-3, resume=True), model=_tiny_model(50257))


_RESUME_SCRIPT = """
import os, sys, json, torch
torch.set_num_threads(1)
from gpt2lib.model import GPT2, GPT2Config
from gpt2lib.train import TrainConfig, train
cfg = TrainConfig(**json.loads(sys.argv[1]))
torch.manual_seed(0)
model = GPT2(GPT2Config(block_size=32, vocab_size=50257, n_layer=1, n_head=2, n_embd=16, dropout=0.1))
train(cfg, model=model)
"""


@pytest.mark.slow
def test_resume_in_a_new_process_is_bit_identical(tmp_path, tiny_data):
    """N steps in one go == k steps, save, resume in a new process, N - k steps: identical weights and losses
    (dropout on, so the RNG state must be restored too)."""
    N, k = 8, 3
    kw = dict(max_steps=N, lr_decay_steps=N, dropout=0.1, eval_interval=4, save_interval=0)
    straight = train(_cfg(tiny_data, tmp_path / "a", **kw), model=_tiny_model(50257, 0.1))
    train(_cfg(tiny_data, tmp_path / "b", **{**kw, "max_steps": k}), model=_tiny_model(50257, 0.1))
    cfg = _cfg(tiny_data, tmp_path / "b", **kw, resume=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", _RESUME_SCRIPT, json.dumps(cfg.to_dict())], check=True, env=env)
    a = load_file(str(latest_checkpoint(tmp_path / "a") / "model.safetensors"))
    b = load_file(str(latest_checkpoint(tmp_path / "b") / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
    log_a = [json.loads(x) for x in (tmp_path / "a/log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (tmp_path / "b/log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log_b] == list(range(1, N + 1))
    assert [r["loss"] for r in log_a] == [r["loss"] for r in log_b]
    # the k-step run also evaluated at its last step (3); the scheduled evaluations agree exactly
    assert [(r["step"], r["val_loss"]) for r in log_a if r["val_loss"] is not None] == [
        (r["step"], r["val_loss"]) for r in log_b if r["val_loss"] is not None and r["step"] != k]
    assert straight["losses"] == [r["loss"] for r in log_a]


_FAST_CLOCK_SCRIPT = """
import json, os, sys, time, types, torch
torch.set_num_threads(1)
import gpt2lib.train as T
from gpt2lib.model import GPT2, GPT2Config
if os.environ["RANK"] == "1":  # this rank's clock runs a million times faster: it reaches max_time first
    T.time = types.SimpleNamespace(perf_counter=lambda: time.perf_counter() * 1e6)
torch.manual_seed(0)
model = GPT2(GPT2Config(block_size=32, vocab_size=50257, n_layer=1, n_head=2, n_embd=16))
res = T.train(T.TrainConfig(**json.loads(sys.argv[1])), model=model, max_time=3600)
with open(sys.argv[2] + "/rank" + os.environ["RANK"], "w") as f:  # a file per rank: stdout lines interleave
    f.write(str(res["step"]))
"""


@pytest.mark.slow
def test_max_time_stops_every_ddp_rank_at_the_same_step(tmp_path, tiny_data):
    """Under DDP the ranks' clocks differ; when one rank passes max_time, all stop after the same step
    (a rank that stopped alone would leave the others waiting in a collective forever)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "fast_clock.py"
    script.write_text(_FAST_CLOCK_SCRIPT)
    cfg = _cfg(tiny_data, tmp_path / "run", max_steps=50, eval_interval=0, device="cpu")
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2", f"--master_port={port}",
         str(script), json.dumps(cfg.to_dict()), str(tmp_path)],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "rank0").read_text() == "1" and (tmp_path / "rank1").read_text() == "1"
    assert load_checkpoint(tmp_path / "run", restore_rng=False)["step"] == 1


# --- settings are checked up front; the log survives a torn line ----------------------------------------------
@pytest.mark.parametrize("field, bad", [("micro_batch_size", 0), ("block_size", 0), ("log_interval", 0),
                                        ("tokens_per_step", 0), ("max_steps", -5), ("save_interval", -1),
                                        ("eval_batches", -1), ("grad_clip", -1.0), ("grad_clip", float("nan")),
                                        ("seed", -1), ("seed", 2**32), ("lr", 0.0), ("lr", float("inf")),
                                        ("min_lr", 1.0), ("beta2", 1.0), ("eps", 0.0), ("dropout", 1.0),
                                        ("model", "gpt5"), ("precision", "fp8"), ("device", "toaster"),
                                        ("keep_checkpoints", 0), ("micro_batch_size", 1.5)])
def test_bad_settings_are_refused_naming_the_field(field, bad):
    from gpt2lib.errors import ConfigError

    with pytest.raises(ConfigError, match=f"^{field}: ") as e:
        TrainConfig(**{field: bad})
    assert e.value.option == field


@settings(max_examples=40, deadline=None)
@given(field=st.sampled_from(["micro_batch_size", "block_size", "log_interval", "max_steps", "save_interval",
                              "eval_batches", "eval_interval", "warmup_steps", "keep_checkpoints"]),
       value=st.integers(-10**6, 10**6))
def test_integer_settings_accept_exactly_their_range(field, value):
    """>= 1 for sizes and intervals that divide, >= 0 for counts where 0 means 'none' / 'only at the end'."""
    from gpt2lib.errors import ConfigError

    low = 1 if field in ("micro_batch_size", "block_size", "log_interval", "keep_checkpoints") else 0
    kw = {field: value}
    if field in ("micro_batch_size", "block_size"):  # keep tokens_per_step a multiple of the micro-batch
        kw["tokens_per_step"] = value * (16 if field == "block_size" else 1024) if value >= 1 else 1024
    if value >= low:
        assert getattr(TrainConfig(**kw), field) == value
    else:
        with pytest.raises(ConfigError, match=f"^{field}: must be an integer >= {low}"):
            TrainConfig(**kw)


def test_resume_and_overwrite_together_are_refused():
    from gpt2lib.errors import ConfigError

    with pytest.raises(ConfigError, match="overwrite"):
        TrainConfig(resume=True, overwrite=True)


def _log_bytes(n: int) -> bytes:
    return b"".join(json.dumps({"step": i, "loss": 1.0 / i, "val_loss": None}).encode() + b"\n"
                    for i in range(1, n + 1))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 6), data=st.data())
def test_a_log_cut_anywhere_reads_as_its_complete_records(tmp_path_factory, n, data):
    """A log cut at any byte (a kill mid-write) reads as the records written whole before the cut; zeros
    after the cut (a power loss) change nothing."""
    from gpt2lib.train import read_log

    full = _log_bytes(n)
    cut = data.draw(st.integers(0, len(full)))
    zeros = data.draw(st.integers(0, 8))
    path = tmp_path_factory.mktemp("log") / "log.jsonl"
    path.write_bytes(full[:cut] + b"\0" * zeros)
    expect = [json.loads(line) for line in full[:cut].split(b"\n") if line.strip() and _is_json(line)]
    assert read_log(path) == expect
    assert [r["step"] for r in expect] == list(range(1, len(expect) + 1))


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line)
        return True
    except ValueError:
        return False


def test_resume_repairs_a_torn_last_log_line_and_refuses_a_torn_middle_one(tmp_path, tiny_data, capsys):
    from gpt2lib.train import LogError

    train(_cfg(tiny_data, tmp_path, max_steps=4, eval_interval=0, lr_decay_steps=8), model=_tiny_model(50257))
    log = tmp_path / "log.jsonl"
    good = log.read_bytes()
    log.write_bytes(good + b'{"step": 5, "lo')
    capsys.readouterr()
    train(_cfg(tiny_data, tmp_path, max_steps=6, eval_interval=0, lr_decay_steps=8, resume=True), model=_tiny_model(50257))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dropped its incomplete last line" in err and str(log) in err
    assert [json.loads(x)["step"] for x in log.read_text().splitlines()] == [1, 2, 3, 4, 5, 6]
    lines = log.read_bytes().split(b"\n")
    torn = b"\n".join(lines[:1] + [lines[1][:10]] + lines[2:])
    log.write_bytes(torn)
    with pytest.raises(LogError, match=r"log\.jsonl, line 2: not a JSON record"):
        train(_cfg(tiny_data, tmp_path, max_steps=8, eval_interval=0, lr_decay_steps=8, resume=True), model=_tiny_model(50257))
    assert log.read_bytes() == torn  # left as it was, for the user to look at
