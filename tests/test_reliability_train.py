"""Training never loses work: real signals, kill -9 and a full disk against real `python -m gpt2lib train` runs,
and the run-folder rules (refuse / --resume / --overwrite moves aside / other files untouched).

Every test asserts that what was saved before the trouble is still there, byte for byte or loadable, and
the signal and kill tests that a resumed run ends bit-identical to a straight one.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gpt2lib.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
from gpt2lib.cli import build_parser, main, train_config_from_args
from gpt2lib.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Tiny Shakespeare's first 40k characters, byte-level tokens (vocab 257): a tiny model trains fast."""
    from gpt2lib.bpe import BytePairTokenizer
    from gpt2lib.data import prepare, split_documents
    from gpt2lib.datasets import read_text

    out = tmp_path_factory.mktemp("bytes") / "data"
    prepare(split_documents(read_text("tiny-shakespeare")[:40_000]), out, BytePairTokenizer(), val_fraction=0.1,
            progress=False)
    return out


def _argv(data: Path, out: Path, *extra: str) -> list[str]:
    """A gpt2-tiny run on 32-token windows, one 4-window micro-step per step, dropout on (so resume must
    restore the RNG), a fixed schedule length (so runs of any --max-steps share every step's lr)."""
    return ["train", "--data-dir", str(data), "--out-dir", str(out), "--model", "gpt2-tiny", "--block-size", "32",
            "--micro-batch-size", "4", "--tokens-per-step", "128", "--warmup-steps", "2", "--lr-decay-steps", "30",
            "--lr", "3e-3", "--min-lr", "3e-4", "--dropout", "0.1", "--eval-interval", "0", "--eval-batches", "2",
            "--sample-tokens", "0", "--save-interval", "0", "--log-interval", "1", "--no-progress", "--device", "cpu",
            *extra]


def _config(argv: list[str]) -> TrainConfig:
    return train_config_from_args(build_parser().parse_args(argv))


def _popen(argv: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gpt2lib", *argv], env=ENV, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _cli(argv: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gpt2lib", *argv], env=ENV, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def _log_steps(path: Path) -> int:
    try:
        return path.read_text().count("\n")
    except FileNotFoundError:
        return 0


def _wait(predicate, proc: subprocess.Popen | None = None, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        if time.monotonic() > end:
            raise AssertionError("timed out waiting")
        time.sleep(0.01)


def _saved_step(run: Path) -> int:
    """The step of the checkpoint ``latest`` names (0 if none); reads only state.json (polled during a run)."""
    try:
        return json.loads((latest_checkpoint(run) / "state.json").read_text())["step"]
    except (OSError, ValueError, CheckpointError):
        return 0


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(latest_checkpoint(run) / "model.safetensors"))


def _losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())]


def _assert_same_run(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[n], wb[n]) for n in wa)
    assert _losses(a) == _losses(b)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- signals ------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_saves_the_step_prints_the_resume_command_and_resume_equals_a_straight_run(tmp_path, data, sig,
                                                                                              code):
    """SIGINT / SIGTERM sent to a running `python -m gpt2lib train` (which saves only at the end): it finishes
    the step, saves it, prints one line with the command that resumes, exits 128 + signal; running that
    command (to a later --max-steps) gives the same weights and losses as an uninterrupted run."""
    run = tmp_path / "run"
    proc = _popen(_argv(data, run, "--max-steps", "100000"))
    _wait(lambda: _log_steps(run / "log.jsonl") >= 3, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    k = _saved_step(run)
    assert k >= 3 and f"{signal.Signals(sig).name}: stopped after step {k}" in lines[0]
    assert [s for s, _ in _losses(run)] == list(range(1, k + 1))  # every finished step is logged and saved
    cmd = shlex.split(lines[0].split("resume with: ", 1)[1])
    assert cmd[:3] == ["python", "-m", "gpt2lib"] and cmd[3:] == _argv(data, run, "--max-steps", "100000") + [
        "--resume"]
    n = k + 3
    done = subprocess.run([sys.executable, *cmd[1:], "--max-steps", str(n)], env=ENV, cwd=ROOT, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    train(_config(_argv(data, tmp_path / "straight", "--max-steps", str(n))))
    _assert_same_run(run, tmp_path / "straight")


_SLOW_STEP = """
import pathlib, sys, time
import gpt2lib.model as M
marker, calls, forward = pathlib.Path(sys.argv[1]), [0], M.GPT2.forward
def slow_forward(self, *a, **k):  # step 3 (one forward per step) takes 60 s
    calls[0] += 1
    if calls[0] == 3:
        marker.write_text("in step 3")
        time.sleep(60)
    return forward(self, *a, **k)
M.GPT2.forward = slow_forward
from gpt2lib.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_a_second_ctrl_c_aborts_at_once_and_keeps_the_last_checkpoint(tmp_path, data):
    """Ctrl-C twice during a (60-second) step: the process ends within seconds with exit 130 and one line,
    without finishing the step; the checkpoint of the step before is intact and no temporary folder is left."""
    run, marker = tmp_path / "run", tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_STEP, str(marker),
                             *_argv(data, run, "--max-steps", "10", "--save-interval", "1")],
                            env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait(marker.exists, proc)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 20  # not the 60 s of the step
    assert proc.returncode == 130 and err.strip().splitlines() == [
        "gpt2lib train: aborted by SIGINT; files already saved are intact"], err
    assert _saved_step(run) == 2 and [s for s, _ in _losses(run)] == [1, 2]
    assert not list(run.glob(".tmp-*"))


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _rank_of(pid: int) -> int | None:
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    ranks = [e.split(b"=", 1)[1] for e in env if e.startswith(b"RANK=")]
    return int(ranks[0]) if ranks else None


def _torchrun(argv: list[str], port: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
            f"--master_port={port}", "-m", "gpt2lib", *argv]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the DDP ranks' processes in /proc")
def test_sigterm_to_one_ddp_rank_stops_every_rank_after_the_same_step(tmp_path, data):
    """torchrun, 2 gloo ranks: SIGTERM to rank 1 only. Both ranks stop after the same step (a rank stopping
    alone would leave the other waiting in a collective), rank 0 saves it, and resuming under torchrun gives
    the same weights and losses as a straight 2-rank run. (Dropout off: on resume, ranks other than 0 start
    a fresh dropout stream.)"""
    run, straight = tmp_path / "run", tmp_path / "straight"
    common = ["--dropout", "0", "--tokens-per-step", "256"]
    proc = subprocess.Popen(_torchrun(_argv(data, run, "--max-steps", "100000", *common), _free_port()), env=ENV,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait(lambda: _log_steps(run / "log.jsonl") >= 3, proc, timeout=180)
        workers = {_rank_of(p): p for p in _children(proc.pid)}
        assert set(workers) == {0, 1}, workers
        os.kill(workers[1], signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    k = _saved_step(run)
    assert k >= 3 and [s for s, _ in _losses(run)] == list(range(1, k + 1)), err[-3000:]
    n = k + 2
    for argv, out in ((_argv(data, run, "--max-steps", str(n), "--resume", *common), run),
                      (_argv(data, straight, "--max-steps", str(n), *common), straight)):
        done = subprocess.run(_torchrun(argv, _free_port()), env=ENV, cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_run(run, straight)


# --- kill -9 and a full disk --------------------------------------------------------------------------------
@pytest.mark.slow
def test_kill_9_again_and_again_then_resume_equals_a_straight_run(tmp_path, data):
    """A run saving every step is killed with SIGKILL at arbitrary moments (mid-step, mid-save, mid-log-line)
    three times and resumed each time: the saved step never goes back, the torn log is repaired, no temporary
    folder survives the next start, and the finished run equals a straight one bit for bit."""
    run, n = tmp_path / "run", 24
    argv = _argv(data, run, "--max-steps", str(n), "--save-interval", "1")
    saved = 0
    for cycle, delay in enumerate((0.0, 0.013, 0.031)):
        proc = _popen(argv + (["--resume"] if cycle else []))
        _wait(lambda: _saved_step(run) >= saved + 2, proc)
        time.sleep(delay)
        proc.kill()
        proc.wait()
        assert _saved_step(run) >= saved + 2  # nothing already saved is lost
        saved = _saved_step(run)
    done = _cli(argv + ["--resume"])
    assert done.returncode == 0, done.stderr
    assert not list(run.glob(".tmp-*")) and len(list(run.glob("ckpt-*"))) == 1
    assert [s for s, _ in _losses(run)] == list(range(1, n + 1))
    train(_config(_argv(data, tmp_path / "straight", "--max-steps", str(n))))
    _assert_same_run(run, tmp_path / "straight")


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 14 MB tmpfs: room for one checkpoint of the tiny run (about 10 MB) but not for a second beside it."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if sys.platform != "linux":
        pytest.skip("mounting a tmpfs needs Linux")
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=14m", "tmpfs", str(mnt)], capture_output=True,
                           text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"cannot run mount: {e}")
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True, timeout=30)


@pytest.mark.slow
def test_a_full_disk_fails_the_save_in_one_line_and_keeps_the_previous_checkpoint(tmp_path, data, small_tmpfs):
    """Saving every step on a disk with room for one checkpoint: the second save fails (ENOSPC) with one
    line and exit 1; the first checkpoint is intact (equal to a 1-step run's) and the failed save's temporary
    folder is gone, so the disk is not left full."""
    run = small_tmpfs / "run"
    r = _cli(_argv(data, run, "--max-steps", "5", "--save-interval", "1"))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "No space left on device" in r.stderr or "Errno 28" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert _saved_step(run) == 1 and not list(run.glob(".tmp-*"))
    train(_config(_argv(data, tmp_path / "one", "--max-steps", "1")))
    one, kept = _weights(tmp_path / "one"), _weights(run)
    assert all(torch.equal(one[k], kept[k]) for k in one)


# --- the run folder ---------------------------------------------------------------------------------------
@pytest.fixture
def earlier_run(tmp_path, data):
    """A finished 3-step run with a user's file beside it."""
    run = tmp_path / "run"
    train(_config(_argv(data, run, "--max-steps", "3", "--save-interval", "1")))
    (run / "notes.txt").write_text("mine")
    return run


@pytest.mark.parametrize("extra", [[], ["--max-steps", "1"], ["--max-steps", "2", "--save-interval", "1"]])
def test_an_existing_run_is_refused_without_resume_or_overwrite(earlier_run, data, extra, capsys):
    before = _snapshot(earlier_run)
    with pytest.raises(SystemExit) as e:
        main(_argv(data, earlier_run, *extra))
    err = capsys.readouterr().err
    assert e.value.code == 1 and "already holds a training run" in err and "--resume" in err
    assert "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert _snapshot(earlier_run) == before


@pytest.mark.parametrize("steps,message", [("0", "--max-steps: must be an integer >= 1, got 0"),
                                           ("2", "is already at step 3, so --resume would train nothing")])
def test_resume_with_max_steps_at_or_below_the_checkpoint_is_refused_and_changes_nothing(earlier_run, data, steps,
                                                                                         message, capsys):
    """It used to exit 0 printing "train loss nan" (issue 22): now one line, exit status 2, nothing touched."""
    before = _snapshot(earlier_run)
    with pytest.raises(SystemExit) as e:
        main(_argv(data, earlier_run, "--max-steps", steps, "--resume"))
    lines = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(lines) == 1 and message in lines[0]
    assert _snapshot(earlier_run) == before


def test_overwrite_moves_the_earlier_run_aside_whole(earlier_run, data, capsys):
    """--overwrite renames the earlier run's log, pointer and checkpoints into old-run-<time>/, byte for byte
    (and still loadable there); the user's file stays where it was; the new run starts at step 1."""
    before = _snapshot(earlier_run)
    assert main(_argv(data, earlier_run, "--max-steps", "2", "--overwrite")) == 0
    assert "moved the earlier run" in capsys.readouterr().out
    (old,) = earlier_run.glob("old-run-*")
    moved = {k: v for k, v in before.items() if k != "notes.txt"}
    assert _snapshot(old) == moved and (earlier_run / "notes.txt").read_text() == "mine"
    assert load_checkpoint(old, restore_rng=False)["step"] == 3
    assert [s for s, _ in _losses(earlier_run)] == [1, 2] and _saved_step(earlier_run) == 2


def test_training_leaves_files_it_did_not_write_alone(tmp_path, data):
    """Other files in out_dir, even ones named like the trainer's (ckpt-*.txt, a ckpt-* folder, .tmp-*), are
    not a run, are not deleted when old checkpoints are, and are not cleaned up as temporaries."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "ckpt-notes.txt").write_text("a")
    (run / "ckpt-mine").mkdir()
    (run / "ckpt-mine" / "x").write_text("b")
    (run / ".tmp-ckpt-mine").mkdir()
    (run / "model.bin").write_bytes(b"c")
    before = _snapshot(run)
    train(_config(_argv(data, run, "--max-steps", "3", "--save-interval", "1")))
    after = _snapshot(run)
    assert {k: after[k] for k in before} == before
    assert len([p for p in run.glob("ckpt-0*")]) == 1


def test_leftovers_of_killed_saves_are_removed_at_start(earlier_run, data):
    """Temporary checkpoint folders and pointer/log temporaries of dead processes go at the next start;
    those of a live process stay (it may still be writing them)."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = [f".tmp-ckpt-00000004-0123abcd.{dead}", ".tmp-ckpt-00000004-89abcdef", f".latest.{dead}.0123abcd.tmp",
             f".log.jsonl.{dead}.0123abcd.tmp"]
    live = f".tmp-ckpt-00000004-cafebabe.{os.getpid()}"
    for name in stale[:2] + [live]:
        (earlier_run / name).mkdir()
        (earlier_run / name / "model.safetensors").write_bytes(b"partial")
    for name in stale[2:]:
        (earlier_run / name).write_text("partial")
    train(_config(_argv(data, earlier_run, "--max-steps", "4", "--resume")))
    assert not any((earlier_run / name).exists() for name in stale)
    assert (earlier_run / live).is_dir()


# --- clear errors -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flag, value", [("--micro-batch-size", "0"), ("--block-size", "0"), ("--log-interval", "0"),
                                         ("--eval-batches", "-1"), ("--max-steps", "-5"), ("--save-interval", "-1"),
                                         ("--grad-clip", "-1"), ("--seed", "-1"), ("--lr", "0"), ("--lr", "nan"),
                                         ("--keep-checkpoints", "0"), ("--dropout", "1")])
def test_bad_settings_exit_2_naming_the_flag_before_touching_the_run(earlier_run, data, flag, value, capsys):
    before = _snapshot(earlier_run)
    with pytest.raises(SystemExit) as e:
        main(_argv(data, earlier_run, "--resume", flag, value))
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"error: {flag}: must be" in err and len(err.strip().splitlines()) == 1
    assert _snapshot(earlier_run) == before


def test_eval_batches_0_skips_evaluation_instead_of_reporting_zero(tmp_path, data, capsys):
    assert main(_argv(data, tmp_path / "run", "--max-steps", "2", "--eval-batches", "0")) == 0
    assert "val loss None" in capsys.readouterr().out
    assert all(json.loads(r)["val_loss"] is None for r in (tmp_path / "run/log.jsonl").read_text().splitlines())


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_damaged_checkpoint_is_one_line_naming_the_file(earlier_run, data, capsys, damage):
    weights = latest_checkpoint(earlier_run) / "model.safetensors"
    raw = weights.read_bytes()
    weights.write_bytes(raw[: len(raw) // 2] if damage == "truncate" else b"\x07" * 64)
    with pytest.raises(SystemExit) as e:
        main(_argv(data, earlier_run, "--max-steps", "5", "--resume"))
    err = capsys.readouterr().err
    assert e.value.code == 1 and str(weights) in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def _raiser(exc: BaseException):
    def fake_train(cfg, **kw):
        raise exc
    return fake_train


@pytest.mark.parametrize("exc, code", [
    ("safetensors", 1), ("nonfinite", 1), ("floating", 1), ("gpt2lib", 1), ("keyboard", 130),
])
def test_the_cli_turns_gpt2lib_errors_into_one_line_and_an_exit_code(tmp_path, data, monkeypatch, capsys, exc, code):
    """No traceback for gpt2lib's own errors, safetensors' errors, a non-finite loss or Ctrl-C."""
    import gpt2lib.cli
    import gpt2lib.train as T
    from safetensors import SafetensorError

    from gpt2lib.errors import GPT2LibError

    made = {"safetensors": SafetensorError("Error while deserializing header: invalid"),
            "nonfinite": T.NonFiniteLossError("loss is nan at step 5"),
            "floating": FloatingPointError("overflow"), "gpt2lib": GPT2LibError("bad thing\n  in two lines"),
            "keyboard": KeyboardInterrupt()}[exc]
    monkeypatch.setattr(gpt2lib.cli, "train", _raiser(made))  # the train() the command line calls
    with pytest.raises(SystemExit) as e:
        main(_argv(data, tmp_path / "run", "--max-steps", "2"))
    err = capsys.readouterr().err
    assert e.value.code == code and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("gpt2lib train: ")
