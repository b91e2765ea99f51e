"""benchmarks/gpu_check.sh without a GPU: its CPU dry run exercises every part (issue 8)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


@pytest.mark.slow
def test_gpu_check_dry_run_runs_every_part(tmp_path):
    out = tmp_path / "gpu-check"
    run = subprocess.run(["bash", str(SCRIPT), "--dry-run", str(out)], cwd=ROOT, capture_output=True, text=True,
                         timeout=600, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry_run"] is True
    parts = summary["parts"]
    assert list(parts) == ["train", "fp16", "memory", "chapters", "throughput"]
    assert not [name for name, res in parts.items() if "error" in res]
    assert [r["mode"] for r in parts["train"]["rows"]] == ["fp32", "bf16"]  # compile is left out on the CPU
    for row in parts["train"]["rows"] + parts["fp16"]["rows"]:
        assert row["tokens_per_s"] > 0 and row["est_mem_gib"] > 0 and row["final_loss"] > 0
    assert parts["fp16"]["t4_micro_batch"] > 0
    assert len(parts["memory"]["train"]) == 3
    mem = parts["memory"]["eval"]
    assert mem["n_tokens"] == mem["batch"] * mem["block_size"]  # one batch of full windows
    from gpt2lib import hardware

    if hasattr(hardware, "estimate_eval_memory"):
        assert mem["est_mem_gib"] > 0
    chapters = parts["chapters"]
    assert chapters["passed"], chapters["pytest_tail"]
    assert set(chapters["chapter_seconds"]) == {"preface", "abstract"}
    for row in parts["throughput"]["rows"]:
        assert row["ours_tokens_per_s"] > 0 and row["hf_tokens_per_s"] > 0
        assert row["ratio"] == pytest.approx(row["ours_tokens_per_s"] / row["hf_tokens_per_s"])
    md = (out / "summary.md").read_text()
    assert "DRY RUN" in md and "| fp32 |" in md and "gpt2lib vs transformers" in md


def test_gpu_check_without_a_gpu_says_to_use_the_dry_run(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the real run would start")
    run = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode == 2
    assert "no CUDA GPU" in run.stderr and "--dry-run" in run.stderr
    assert not (tmp_path / "out").exists()  # nothing written


def test_gpu_check_rejects_unknown_parts(tmp_path):
    run = subprocess.run(["bash", str(SCRIPT), "--dry-run", str(tmp_path / "out"), "--parts", "train,warp"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 2
    assert "--parts: unknown part(s) warp" in run.stderr
