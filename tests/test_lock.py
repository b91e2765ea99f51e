"""One writer per output folder (gpt2lib.lock): real concurrent processes into one folder.

For each of `train` (plain, --resume and --overwrite), `prepare` and `webtext`: while a first process
writes into a folder, a second real `python -m gpt2lib ...` into the same folder fails at once with one line
naming the first's PID, and the first's files come out intact.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from _procs import ENV, cli as _cli, running, wait_until

from gpt2lib.lock import LOCK_FILE, FolderLockedError, lock_owner, output_lock


def _assert_refused(res: subprocess.CompletedProcess, command: str, pid: int) -> None:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1, res.stderr
    assert len(lines) == 1 and f"gpt2lib {command}: error:" in lines[0] and "in use by" in lines[0], res.stderr
    assert f"PID {pid} " in lines[0] and "Traceback" not in res.stderr


# ----------------------------------------------------------------------------------------- the lock itself


def test_lock_is_exclusive_reentrant_and_leaves_no_file(tmp_path):
    out = tmp_path / "new"
    with output_lock(out, "prepare") as lock:
        assert lock.created and lock_owner(out)["pid"] == os.getpid()
        with output_lock(out, "prepare"):  # the same process again (the CLI, then the library)
            pass
        assert (out / LOCK_FILE).is_file()
        script = f"from gpt2lib.lock import output_lock\nwith output_lock({str(out)!r}, 'train'): pass\n"
        res = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True, timeout=60)
        assert res.returncode == 1 and "FolderLockedError" in res.stderr and f"PID {os.getpid()} " in res.stderr
    assert not out.exists()  # the lock made the folder, nothing was written: nothing is left
    kept = tmp_path / "kept"
    kept.mkdir()
    with output_lock(kept, "webtext"):
        pass
    assert kept.is_dir() and list(kept.iterdir()) == []


def test_a_stale_lock_of_a_killed_process_is_taken_over(tmp_path, capsys):
    out = tmp_path / "run"
    script = (f"import os, time\nfrom gpt2lib.lock import output_lock\n"
              f"with output_lock({str(out)!r}, 'train'):\n    print('held', flush=True); time.sleep(60)\n")
    with running(["-c", script], ready="held") as proc:
        with pytest.raises(FolderLockedError, match=f"PID {proc.pid} "):
            with output_lock(out, "train"):
                pass
        proc.send_signal(signal.SIGKILL)  # no clean-up: the lock file stays, its flock goes with the process
        proc.wait(30)
    assert lock_owner(out)["pid"] == proc.pid
    with output_lock(out, "train") as lock:
        assert lock.stale["pid"] == proc.pid and lock_owner(out)["pid"] == os.getpid()
    assert f"stale lock of train (PID {proc.pid} " in capsys.readouterr().err
    assert not (out / LOCK_FILE).exists()


def test_a_file_in_place_of_the_folder_is_refused(tmp_path):
    f = tmp_path / "f"
    f.write_text("mine")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        with output_lock(f, "prepare"):
            pass
    assert f.read_text() == "mine"


# ----------------------------------------------------------------------------------------- train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from gpt2lib.bpe import BytePairTokenizer
    from gpt2lib.data import prepare, split_documents
    from gpt2lib.datasets import read_text

    out = tmp_path_factory.mktemp("bytes") / "data"
    prepare(split_documents(read_text("tiny-shakespeare")[:20_000]), out, BytePairTokenizer(), val_fraction=0.1,
            progress=False)
    return out


def _train_argv(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data-dir", str(data), "--out-dir", str(out), "--model", "gpt2-tiny", "--block-size", "32",
            "--micro-batch-size", "4", "--tokens-per-step", "128", "--warmup-steps", "2", "--lr-decay-steps", "50",
            "--eval-interval", "0", "--eval-batches", "0", "--sample-tokens", "0", "--save-interval", "5", "--log-interval", "1",
            "--no-progress", "--device", "cpu", *extra]


def test_two_trains_into_one_folder_the_second_fails_and_the_first_is_intact(data, tmp_path):
    out = tmp_path / "run"
    assert _cli(_train_argv(data, out, "--max-steps", "5")).returncode == 0  # a finished run to resume
    with running(["-m", "gpt2lib", *_train_argv(data, out, "--max-steps", "100000", "--resume")]) as first:
        wait_until(lambda: (out / "log.jsonl").read_text().count("\n") >= 7, first)
        with contextlib.ExitStack() as stack:
            seconds = [stack.enter_context(running(["-m", "gpt2lib", *_train_argv(data, out, "--max-steps", "50",
                                                                                 *extra)]))
                       for extra in ([], ["--resume"], ["--overwrite"])]
            for p in seconds:
                _, err2 = p.communicate(timeout=120)
                _assert_refused(subprocess.CompletedProcess(p.args, p.returncode, "", err2), "train", first.pid)
        assert first.poll() is None  # the first run did not notice
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
    assert first.returncode == 130 and "resume with" in err
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, len(steps) + 1))  # one writer: no duplicate, no interleaved records
    assert not list(out.glob("old-run-*")) and not (out / LOCK_FILE).exists()
    from gpt2lib.checkpoint import latest_checkpoint

    assert json.loads((latest_checkpoint(out) / "state.json").read_text())["step"] == steps[-1]


# ----------------------------------------------------------------------------------------- prepare

_WAIT_FOR_GO = (  # the first process works until the test has run the second one
    "import os, sys, time\n"
    "def wait_for_go():\n"
    "    end = time.monotonic() + 120\n"
    "    while not os.path.exists(sys.argv[-1]) and time.monotonic() < end:\n"
    "        time.sleep(0.05)\n"
)
_SLOW_PREPARE = _WAIT_FOR_GO + (
    "import sys, time\n"
    "from gpt2lib.data import prepare\n"
    "from gpt2lib.bpe import BytePairTokenizer\n"
    "tok = BytePairTokenizer()\n"
    "class Slow:\n"
    "    name, n_vocab, eot, pattern = tok.name, tok.n_vocab, tok.eot, tok.pattern\n"
    "    encode, decode = staticmethod(tok.encode), staticmethod(tok.decode)\n"
    "    def encode_batch(self, texts):\n"
    "        print('working', flush=True); wait_for_go(); return [tok.encode(t) for t in texts]\n"
    "prepare([str(i) + ' words' * 20 for i in range(12)], sys.argv[1], Slow(), progress=False, chunk_docs=1,\n"
    "        val_fraction=0.0)\n"
    "print('done', flush=True)\n"
)


def test_two_prepares_into_one_folder_the_second_fails_and_the_first_dataset_is_whole(tmp_path):
    out = tmp_path / "data"
    docs = tmp_path / "docs.txt"
    docs.write_text("one\n\ntwo\n\nthree\n\nfour\n", encoding="utf-8")
    go = tmp_path / "go"
    with running(["-c", _SLOW_PREPARE, str(out), str(go)], ready="working") as first:
        for extra in ([], ["--overwrite"]):
            _assert_refused(_cli(["prepare", "--input", str(docs), "--out", str(out), *extra]), "prepare", first.pid)
        go.touch()
        rest, err = first.communicate(timeout=120)
    assert first.returncode == 0 and rest.strip().endswith("done"), err
    from gpt2lib.data import TokenShards

    shards = TokenShards.open(out, "train")
    assert shards.meta["splits"]["train"]["documents"] == 12
    assert shards.num_tokens == sum(len(str(i) + " words" * 20) + 1 for i in range(12))  # bytes + one EOT each
    assert not (out / LOCK_FILE).exists()


# ----------------------------------------------------------------------------------------- webtext

_SLOW_WEBTEXT = _WAIT_FOR_GO + (
    "import sys, time\n"
    "from gpt2lib.webtext import build_webtext\n"
    "from gpt2lib.bpe import BytePairTokenizer\n"
    "def log(message):\n"
    "    print('working', flush=True); wait_for_go()\n"
    "build_webtext(sys.argv[1], sys.argv[2], tokenizer=BytePairTokenizer(), val_fraction=0.0, log=log)\n"
    "print('done', flush=True)\n"
)


def _crawl(root: Path) -> Path:
    (root / "pages").mkdir(parents=True)
    from gpt2lib.webtext import read_webtext_sample

    for i, doc in enumerate(read_webtext_sample(limit=6)):
        body = "".join(f"<p>{para}</p>" for para in doc.text.split("\n") if para.strip())
        (root / "pages" / f"p{i}.html").write_text(f"<html><body><article>{body}</article></body></html>",
                                                  encoding="utf-8")
    (root / "links.ndjson").write_text("".join(json.dumps({"u": f"http://ex{i}.com/a", "r": "x", "k": 5}) + "\n"
                                               for i in range(5)), encoding="utf-8")
    return root


def test_two_webtexts_into_one_folder_the_second_fails_and_the_first_output_is_whole(tmp_path, data_mirror):
    crawl, out = _crawl(tmp_path / "crawl"), tmp_path / "out"
    go = tmp_path / "go"
    with running(["-c", _SLOW_WEBTEXT, str(crawl), str(out), str(go)], ready="working") as first:
        _assert_refused(_cli(["webtext", str(crawl), "--out", str(out)]), "webtext", first.pid)
        go.touch()
        rest, err = first.communicate(timeout=120)
    assert first.returncode == 0 and rest.strip().endswith("done"), err
    assert (out / "links.ndjson").read_text().count("\n") == 5
    report = json.loads((out / "webtext-report.json").read_text())
    assert report["shards"]["train"]["documents"] == 6
    assert not (out / LOCK_FILE).exists()


def test_the_error_survives_pickling_across_processes(tmp_path):
    import pickle

    e = FolderLockedError(tmp_path, "train", {"pid": 7, "host": "h", "command": "prepare", "started": "t"})
    back = pickle.loads(pickle.dumps(e))
    assert str(back) == str(e) and back.owner["pid"] == 7
