"""A run knows its own tokenizer (gpt2lib.runtok): `sample` gives the same greedy text from any directory,
even one whose ./data holds another BPE of the same size; Hugging Face folders without tokenizer files are
refused unless their vocabulary is GPT-2's."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpt2lib.cli import main

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _prepare(folder: Path, text: str, vocab: int) -> None:
    from gpt2lib.bpe import BytePairTokenizer
    from gpt2lib.data import prepare, split_documents

    tok = BytePairTokenizer().train(text, vocab)
    prepare(split_documents(text), folder, tok, val_fraction=0.0, progress=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run trained in a/ with data_dir 'data' (relative), and b/ whose ./data holds another 300-token BPE."""
    from gpt2lib.datasets import read_text

    text = read_text("tiny-shakespeare")
    root = tmp_path_factory.mktemp("runtok")
    (root / "a").mkdir()
    (root / "b").mkdir()
    _prepare(root / "a" / "data", text[:12_000], 300)
    _prepare(root / "b" / "data", text[-12_000:].upper(), 300)  # the decoy: same size, other merges
    cwd = os.getcwd()
    os.chdir(root / "a")
    try:
        assert main(["train", "--data-dir", "data", "--out-dir", "out", "--model", "gpt2-tiny", "--block-size", "16",
                     "--micro-batch-size", "2", "--tokens-per-step", "32", "--max-steps", "30", "--warmup-steps", "2",
                     "--lr", "1e-2", "--eval-batches", "0", "--sample-tokens", "0", "--no-progress", "--device",
                     "cpu"]) == 0
    finally:
        os.chdir(cwd)
    return root


def _sample(cwd: Path, model: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gpt2lib", "sample", "--model", model, "--prompt", "KING",
                           "--temperature", "0", "--max-new-tokens", "40"], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=120)


def test_sample_from_another_directory_with_a_decoy_data_folder_gives_the_same_text(run):
    here = _sample(run / "a", "out")
    there = _sample(run / "b", str(run / "a" / "out"))
    assert here.returncode == 0 and there.returncode == 0, (here.stderr, there.stderr)
    assert here.stdout == there.stdout and here.stdout.startswith("--- sample 1 ---\nKING")
    from gpt2lib.bpe import BytePairTokenizer
    from gpt2lib.data import load_tokenizer

    decoy, own = load_tokenizer(run / "b" / "data"), load_tokenizer(run / "a" / "data")
    assert isinstance(own, BytePairTokenizer) and decoy.n_vocab == own.n_vocab == 300
    assert decoy.encode("KING") != own.encode("KING")  # the decoy would have given other text


def test_the_recorded_copy_is_checked_and_used_when_the_data_folder_is_gone(run, tmp_path):
    import shutil

    from gpt2lib.checkpoint import latest_checkpoint
    from gpt2lib.resolve import resolve_model
    from gpt2lib.runtok import RunTokenizerError

    copy = tmp_path / "out"
    shutil.copytree(run / "a" / "out", copy)
    tok = resolve_model(str(copy)).tokenizer
    assert tok.encode("KING") == __import__("gpt2lib.data", fromlist=["x"]).load_tokenizer(
        run / "a" / "data").encode("KING")
    state_path = latest_checkpoint(copy) / "state.json"
    state = json.loads(state_path.read_text())
    assert state["config"]["tokenizer"]["kind"] == "bpe"
    state["config"]["tokenizer"]["json"]["name"] = "edited"
    state_path.write_text(json.dumps(state))
    with pytest.raises(RunTokenizerError, match="sha256"):
        resolve_model(str(copy))


def test_a_huggingface_folder_without_tokenizer_files_needs_gpt2s_vocabulary(tmp_path, capsys):
    from gpt2lib.model import GPT2, GPT2Config

    small = tmp_path / "small"
    GPT2(GPT2Config.from_name("gpt2-tiny", vocab_size=300, block_size=16)).save_pretrained(small)
    with pytest.raises(SystemExit) as e:
        main(["sample", "--model", str(small), "--max-new-tokens", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 1 and len(err) == 1 and "no tokenizer files" in err[0] and "300" in err[0]
    gpt2_sized = tmp_path / "g"
    GPT2(GPT2Config.from_name("gpt2-tiny", vocab_size=50257, block_size=16)).save_pretrained(gpt2_sized)
    assert main(["sample", "--model", str(gpt2_sized), "--max-new-tokens", "2", "--prompt", "Hi"]) == 0
    assert capsys.readouterr().out.startswith("--- sample 1 ---\nHi")
