"""Distributed data parallel: 2 gloo processes == 1 process accumulating the same global batch."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from _shards import shakespeare_shards
from safetensors.torch import load_file

from gpt2lib.checkpoint import latest_checkpoint

SCRIPT = """
import json, sys, torch
torch.set_num_threads(1)
from gpt2lib.model import GPT2, GPT2Config
from gpt2lib.train import TrainConfig, train
cfg = TrainConfig(**json.loads(sys.argv[1]))
torch.manual_seed(0)
model = GPT2(GPT2Config(block_size=32, vocab_size=50257, n_layer=2, n_head=2, n_embd=32))
res = train(cfg, model=model)
if res["world_size"] > 1 and torch.distributed.get_rank() == 0:
    print("GRAD_ACCUM", res["grad_accum"], "WORLD", res["world_size"])
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return shakespeare_shards(tmp_path_factory.mktemp("ddp_shards"), 40_000)


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process_with_the_same_global_batch(tmp_path, shards):
    """torchrun with 2 CPU ranks (micro-batch 4, 2 micro-steps each) ends with the same weights and losses as
    1 process (micro-batch 4, 4 micro-steps): each step both read the same 16 windows (TokenLoader deals
    them round-robin) and average the same 16 per-window gradients.

    Tolerance: the sums are taken in a different order (per rank, then all-reduce), so gradients differ in
    the last bits (~1e-7 relative). Adam's update m / (sqrt(v) + eps) is scale-free, so that relative error
    passes into the update almost unchanged: about lr * 1e-7 per step, far below the 1e-5 tolerance after
    4 steps, while the weights themselves move by > 1e-3. Bit-equality is not expected.
    (Measured on CPU: max weight difference 3.5e-7.)"""
    base = dict(data_dir=str(shards), model="gpt2-tiny", block_size=32, micro_batch_size=4, tokens_per_step=512,
                max_steps=4, warmup_steps=1, lr=1e-3, min_lr=1e-4, eval_interval=0, eval_batches=2,
                sample_tokens=0, save_interval=0, progress=False, device="cpu")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = {**base, "out_dir": str(tmp_path / "one")}
    subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(one)], check=True, env=env, timeout=300)
    two = {**base, "out_dir": str(tmp_path / "two")}
    script = tmp_path / "ddp_script.py"
    script.write_text(SCRIPT)
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
         f"--master_port={_free_port()}", str(script), json.dumps(two)],
        check=True, env=env, timeout=300, capture_output=True, text=True)
    assert "GRAD_ACCUM 2 WORLD 2" in out.stdout
    a = load_file(str(latest_checkpoint(tmp_path / "one") / "model.safetensors"))
    b = load_file(str(latest_checkpoint(tmp_path / "two") / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-5, msg=name)
    print("max |one - two| over all weights:", max((a[n] - b[n]).abs().max().item() for n in a))
    log_a = [json.loads(x)["loss"] for x in (tmp_path / "one/log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x)["loss"] for x in (tmp_path / "two/log.jsonl").read_text().splitlines()]
    assert len(log_a) == len(log_b) == 4
    for x, y in zip(log_a, log_b):
        assert y == pytest.approx(x, rel=1e-5)
    # and training did something: the weights left their initialization by far more than the tolerance
    from gpt2lib.model import GPT2, GPT2Config

    torch.manual_seed(0)
    start = GPT2(GPT2Config(block_size=32, vocab_size=50257, n_layer=2, n_head=2, n_embd=32)).state_dict()
    assert max((a[n] - start[n]).abs().max().item() for n in a) > 1e-3
