"""Reliability of the data side (GPT-2 §2.1): prepare never loses a user's files or the old dataset, shard ids
are checked at open, meta.json cannot point outside its folder, downloads fail cleanly without a network.

Every test here failed before the change it covers (issue 9, items 1, 2, 10 and 12).
"""
from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2lib.data import TokenLoader, TokenShards, check_shard_ids, load_tokenizer, prepare, read_meta

DOCS = [f"Speech number {i}: the quick brown fox jumps over the lazy dog, {i * 7} times." for i in range(40)]
USER_FILES = {"pytorch_model.bin": b"\x00weights of my own", "audio_take_3.bin": b"RIFF....WAVE",
              "notes.txt": b"do not delete"}


@pytest.fixture(scope="module")
def tok():
    from gpt2lib.tokenizer import get_gpt2_tokenizer

    return get_gpt2_tokenizer()


def _put_user_files(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in USER_FILES.items():
        (folder / name).write_bytes(data)


def _assert_user_files_intact(folder: Path) -> None:
    for name, data in USER_FILES.items():
        assert (folder / name).read_bytes() == data, f"{name} was changed or deleted"


def _tokens(folder: Path, split: str = "train") -> np.ndarray:
    return TokenShards.open(folder, split).tokens()


def _all_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


# --- item 1: folders are owned ---------------------------------------------------------------------------
def test_prepare_refuses_a_non_empty_folder_it_did_not_write(tmp_path, tok):
    """The issue's probe: a folder holding pytorch_model.bin and audio_take_3.bin. Before, prepare deleted
    every *_*.bin in it and exited 0; now it refuses, naming the folder and the option that allows it."""
    _put_user_files(tmp_path / "d")
    with pytest.raises(FileExistsError, match=r"not empty.*--overwrite") as info:
        prepare(DOCS, tmp_path / "d", tok, progress=False)
    assert str(tmp_path / "d") in str(info.value) and "audio_take_3.bin" in str(info.value)
    _assert_user_files_intact(tmp_path / "d")
    assert _all_files(tmp_path / "d") == set(USER_FILES)  # nothing written either


def test_overwrite_writes_beside_the_users_files_and_the_manifest_lists_only_prepares_own(tmp_path, tok):
    d = tmp_path / "d"
    _put_user_files(d)
    meta = prepare(DOCS, d, tok, progress=False, overwrite=True)
    _assert_user_files_intact(d)
    assert set(meta["files"]) == _all_files(d) - set(USER_FILES)  # the manifest is exactly what it wrote
    assert not set(meta["files"]) & set(USER_FILES)
    first = _tokens(d)
    # re-running replaces its own dataset (no --overwrite needed) and still leaves the user's files alone
    again = prepare(DOCS[::-1], d, tok, progress=False, seed=5)
    _assert_user_files_intact(d)
    assert _all_files(d) == set(USER_FILES) | set(again["files"])  # the old dataset's files are gone
    assert not np.array_equal(_tokens(d), first)


def test_re_prepare_keeps_files_a_user_put_among_the_shards(tmp_path, tok):
    """A user file inside the dataset's own subfolder (or next to it) survives the replacement."""
    d = tmp_path / "d"
    meta = prepare(DOCS, d, tok, progress=False)
    sub = d / Path(meta["splits"]["train"]["shards"][0]["file"]).parent
    (sub / "train_notes.bin").write_bytes(b"mine")
    (d / "val_extra_1.bin").write_bytes(b"mine too")
    new = prepare(DOCS[:20], d, tok, progress=False)
    assert (sub / "train_notes.bin").read_bytes() == b"mine" and (d / "val_extra_1.bin").read_bytes() == b"mine too"
    assert _all_files(d) == set(new["files"]) | {sub.relative_to(d).as_posix() + "/train_notes.bin",
                                                  "val_extra_1.bin"}
    assert read_meta(d)["splits"]["train"]["documents"] == new["splits"]["train"]["documents"]


def test_a_foreign_meta_json_is_never_overwritten(tmp_path, tok):
    d = tmp_path / "d"
    d.mkdir()
    (d / "meta.json").write_text('{"title": "my photo album"}')
    for overwrite in (False, True):
        with pytest.raises(ValueError, match=r"meta.json.*unknown format.*does not overwrite"):
            prepare(DOCS, d, tok, progress=False, overwrite=overwrite)
    assert (d / "meta.json").read_text() == '{"title": "my photo album"}' and _all_files(d) == {"meta.json"}


def test_folders_written_before_the_manifest_are_replaced_without_touching_other_files(tmp_path, tok):
    """The old layout (shards at the top, no "files" in meta.json): only the shards its meta lists go."""
    d = tmp_path / "d"
    meta = prepare(DOCS, d, tok, progress=False)
    for split in meta["splits"].values():  # rewrite it as the old prepare laid it out
        for shard in split["shards"]:
            name = Path(shard["file"]).name
            (d / shard["file"]).rename(d / name)
            shard["file"] = name
    for f in meta.pop("files"):
        (d / f).unlink(missing_ok=True)
    (d / "meta.json").write_text(json.dumps(meta))
    for p in d.iterdir():
        if p.is_dir():
            p.rmdir()
    (d / "train_000099.bin").write_bytes(b"a user's file that merely looks like a shard")
    old = _tokens(d)
    new = prepare(DOCS[:30], d, tok, progress=False)
    assert not (d / "train_000000.bin").exists() and (d / "train_000099.bin").read_bytes().startswith(b"a user")
    assert _all_files(d) == set(new["files"]) | {"train_000099.bin"} and len(_tokens(d)) < len(old)


def test_cli_prepare_refuses_then_overwrite_writes_beside(tmp_path, capsys):
    from gpt2lib.cli import main

    text = tmp_path / "in.txt"
    text.write_text("\n\n".join(DOCS), encoding="utf-8")
    d = tmp_path / "d"
    _put_user_files(d)
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", "--input", str(text), "--out", str(d)])
    assert exit_info.value.code == 1 and "--overwrite" in capsys.readouterr().err
    _assert_user_files_intact(d)
    assert main(["prepare", "--input", str(text), "--out", str(d), "--overwrite"]) == 0
    _assert_user_files_intact(d)
    assert len(_tokens(d)) > 0


# --- item 2: transactional replacement ---------------------------------------------------------------------
class _FailingTokenizer:
    """GPT-2's tokenizer that raises ``error`` at its ``fail_at``-th batch (a Ctrl-C or a crash midway)."""

    def __init__(self, tok, error: BaseException, fail_at: int = 2):
        self.tok, self.error, self.fail_at, self.calls = tok, error, fail_at, 0
        self.name, self.n_vocab, self.eot = tok.name, tok.n_vocab, tok.eot

    def encode(self, text):
        return self.tok.encode(text)

    def decode(self, ids):
        return self.tok.decode(ids)

    def encode_batch(self, texts):
        self.calls += 1
        if self.calls == self.fail_at:
            raise self.error
        return self.tok.encode_batch(texts)


@pytest.mark.parametrize("error", [KeyboardInterrupt(), RuntimeError("disk on fire")], ids=["ctrl-c", "exception"])
def test_interrupted_prepare_leaves_the_old_dataset_fully_usable(tmp_path, tok, error):
    """Before, prepare deleted meta.json and the shards first: a Ctrl-C left a folder train refused. Now the
    old dataset loads, has the same tokens, nothing of the unfinished one is left, and train accepts it."""
    from gpt2lib.train import TrainConfig, train

    d = tmp_path / "d"
    prepare(DOCS * 3, d, tok, progress=False, val_fraction=0.1)
    before_files, before_meta = _all_files(d), (d / "meta.json").read_bytes()
    before = {s: _tokens(d, s) for s in ("train", "val")}
    with pytest.raises(type(error)):
        prepare(DOCS * 50, d, _FailingTokenizer(tok, error), progress=False, chunk_docs=10)
    assert _all_files(d) == before_files and (d / "meta.json").read_bytes() == before_meta
    for split, toks in before.items():
        np.testing.assert_array_equal(_tokens(d, split), toks)
    cfg = TrainConfig(data_dir=str(d), out_dir=str(tmp_path / "run"), model="gpt2-tiny", block_size=16,
                      micro_batch_size=2, tokens_per_step=32, max_steps=2, warmup_steps=1, eval_interval=0,
                      eval_batches=1, sample_tokens=0, save_interval=0, progress=False, device="cpu")
    assert train(cfg)["step"] == 2


def test_leftovers_of_a_killed_prepare_are_removed_but_lookalike_user_folders_are_not(tmp_path, tok):
    """A kill -9 leaves its tokens-<n>/ subfolder (marked as ours); the next prepare removes it. A folder
    that only looks like one (no marker) is the user's and stays."""
    d = tmp_path / "d"
    prepare(DOCS, d, tok, progress=False)
    killed = d / "tokens-2"  # what a killed second prepare leaves
    killed.mkdir()
    (killed / ".gpt2lib-prepare").write_text("x")
    (killed / "train_000000.bin").write_bytes(b"\x01\x00" * 10)
    (killed / ".train_000001.bin.123.abcd1234.tmp").write_bytes(b"\x01")
    mine = d / "tokens-7"
    mine.mkdir()
    (mine / "train_000000.bin").write_bytes(b"the user's")
    new = prepare(DOCS, d, tok, progress=False)
    assert not killed.exists() and (mine / "train_000000.bin").read_bytes() == b"the user's"
    assert _all_files(d) == set(new["files"]) | {"tokens-7/train_000000.bin"}


def test_prepare_killed_for_real_leaves_the_old_dataset_and_the_next_run_cleans_up(tmp_path, tok):
    """A real SIGKILL of a prepare process midway (not an exception): the old dataset still loads."""
    import subprocess
    import time

    d = tmp_path / "d"
    prepare(DOCS, d, tok, progress=False)
    before = _tokens(d)
    script = (
        "import sys, time\n"
        "from gpt2lib.data import prepare\n"
        "from gpt2lib.tokenizer import get_gpt2_tokenizer\n"
        "tok = get_gpt2_tokenizer()\n"
        "class Slow:\n"
        "    name, n_vocab, eot = tok.name, tok.n_vocab, tok.eot\n"
        "    encode, decode = staticmethod(tok.encode), staticmethod(tok.decode)\n"
        "    def encode_batch(self, texts):\n"
        "        print('working', flush=True); time.sleep(0.5); return tok.encode_batch(texts)\n"
        f"prepare([str(i) + ' words' * 50 for i in range(400)], {str(d)!r}, Slow(), progress=False, "
        "chunk_docs=1, shard_size=64)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(3):  # a few shards written into the new subfolder
            assert proc.stdout.readline().strip() == "working"
        time.sleep(0.2)
        proc.kill()
    finally:
        proc.wait(30)
    assert (d / "tokens-2").is_dir()  # the killed run's subfolder, not yet referenced
    np.testing.assert_array_equal(_tokens(d), before)
    new = prepare(DOCS[:10], d, tok, progress=False)
    assert _all_files(d) == set(new["files"])  # the killed run's files are gone, the first dataset's too


# --- item 10: ids checked at open ---------------------------------------------------------------------------
def _corrupt(folder: Path, split: str, offsets: list[int], value: int) -> Path:
    meta = read_meta(folder)
    path = folder / meta["splits"][split]["shards"][0]["file"]
    arr = np.fromfile(path, dtype=meta["dtype"])
    arr[offsets] = value
    arr.tofile(path)
    return path


def test_bad_ids_are_refused_when_shards_are_opened(tmp_path, tok):
    """10 ids >= n_vocab in a shard: before, TokenShards.open accepted them (and on CPU, train ran 200 steps
    and exited 0). Now the error names the shard, the first bad offset and the vocabulary size."""
    prepare(DOCS * 3, tmp_path, tok, progress=False)
    offsets = list(range(37, 47))
    path = _corrupt(tmp_path, "train", offsets, 50300)
    with pytest.raises(ValueError) as info:
        TokenShards.open(tmp_path, "train")
    msg = str(info.value)
    assert str(path) in msg and "offset 37 " in msg and "50257" in msg and "50300" in msg
    TokenShards.open(tmp_path, "val")  # the other split is fine


def test_train_refuses_shards_with_bad_ids(tmp_path, tok):
    from gpt2lib.train import TrainConfig, train

    prepare(DOCS * 3, tmp_path / "d", tok, progress=False)
    _corrupt(tmp_path / "d", "train", [5], 65535)
    cfg = TrainConfig(data_dir=str(tmp_path / "d"), out_dir=str(tmp_path / "run"), model="gpt2-tiny",
                      block_size=16, micro_batch_size=2, tokens_per_step=32, max_steps=2, warmup_steps=1,
                      eval_interval=0, eval_batches=1, sample_tokens=0, save_interval=0, progress=False,
                      device="cpu")
    with pytest.raises(ValueError, match=r"offset 5 .*outside the vocabulary of 50257"):
        train(cfg)


def test_loader_checks_shards_that_were_built_by_hand():
    arrays = [np.arange(100, dtype=np.uint16), np.array([1, 2, 3, 300, 4] * 10, dtype=np.uint16)]
    shards = TokenShards(Path("."), "train", {"n_vocab": 300, "splits": {"train": {"bytes": 0}}}, arrays)
    with pytest.raises(ValueError, match=r"offset 3 .*300 ids"):
        TokenLoader(shards, 4, 1)
    ok = TokenShards(Path("."), "train", {"n_vocab": 301, "splits": {"train": {"bytes": 0}}}, arrays)
    TokenLoader(ok, 4, 1)
    assert ok.ids_checked


@settings(max_examples=60, deadline=None)
@given(data=st.lists(st.integers(0, 1000), min_size=0, max_size=300), n_vocab=st.integers(1, 1001),
       chunk=st.integers(1, 64))
def test_check_shard_ids_finds_the_first_bad_offset_across_chunks(data, n_vocab, chunk):
    """The chunked, vectorised check equals a plain scan for the first id >= n_vocab, whatever the chunk."""
    arr = np.array(data, dtype=np.uint16)
    bad = [i for i, x in enumerate(data) if x >= n_vocab]
    if not bad:
        check_shard_ids(arr, n_vocab, "s.bin", chunk=chunk)
        return
    with pytest.raises(ValueError, match=rf"token id {data[bad[0]]} at offset {bad[0]} .* {n_vocab} ids"):
        check_shard_ids(arr, n_vocab, "s.bin", chunk=chunk)


def test_ids_are_checked_on_a_memory_mapped_shard_without_reading_it_into_memory(tmp_path):
    """The check runs over np.memmap in chunks: a bad id in the last chunk of a 40 MB shard is found."""
    path = tmp_path / "big.bin"
    n = 20_000_000
    arr = np.memmap(path, dtype=np.uint16, mode="w+", shape=(n,))
    arr[:] = 7
    arr[n - 3] = 50257
    arr.flush()
    del arr
    shard = np.memmap(path, dtype=np.uint16, mode="r")
    with pytest.raises(ValueError, match=rf"offset {n - 3} "):
        check_shard_ids(shard, 50257, path)


# --- item 12: meta.json and configs -----------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["../outside.bin", "/etc/passwd", "a/../../x.bin", "C:\\Windows\\x.bin", ""])
def test_meta_json_shard_paths_must_stay_inside_the_folder(tmp_path, tok, bad):
    (tmp_path / "outside.bin").write_bytes(b"\x00\x00" * 4)
    d = tmp_path / "d"
    meta = prepare(DOCS, d, tok, progress=False)
    meta["splits"]["train"]["shards"][0]["file"] = bad
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"meta.json") as info:
        TokenShards.open(d, "train")
    assert "outside the data folder" in str(info.value) or "not a file name" in str(info.value)


@pytest.mark.parametrize("text", ["[1, 2]", '"a string"', "null", "42", "{not json"])
def test_non_object_meta_json_is_a_clear_error_naming_the_file(tmp_path, text):
    (tmp_path / "meta.json").write_text(text)
    for call in (lambda: TokenShards.open(tmp_path), lambda: load_tokenizer(tmp_path), lambda: read_meta(tmp_path)):
        with pytest.raises(ValueError, match=r"meta.json (holds a JSON|is not valid JSON)") as info:
            call()
        assert str(tmp_path / "meta.json") in str(info.value)


def test_meta_json_with_missing_or_wrong_fields_names_the_field(tmp_path, tok):
    meta = prepare(DOCS, tmp_path, tok, progress=False)
    for change, field in [(lambda m: m.pop("n_vocab"), "n_vocab"), (lambda m: m.update(splits=[]), "splits"),
                          (lambda m: m["splits"]["train"]["shards"][0].update(tokens="12"), "tokens"),
                          (lambda m: m.update(dtype="uint8"), "uint8"), (lambda m: m.update(eot=10**6), "eot")]:
        broken = json.loads(json.dumps(meta))
        change(broken)
        (tmp_path / "meta.json").write_text(json.dumps(broken))
        with pytest.raises(ValueError, match=field):
            TokenShards.open(tmp_path)


@pytest.mark.parametrize("name, text", [("run.json", "[1, 2]"), ("run.json", '"max_steps=3"'),
                                        ("run.json", "{oops"), ("run.toml", "max_steps = = 3")])
def test_non_object_train_config_file_is_a_usage_error_naming_the_file(tmp_path, capsys, name, text):
    from gpt2lib.cli import main

    cfg = tmp_path / name
    cfg.write_text(text)
    with pytest.raises(SystemExit) as info:
        main(["train", "--config", str(cfg)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and str(cfg) in err and "AttributeError" not in err


# --- item 12: downloads without a network or mirror ---------------------------------------------------------
class _DyingResponse:
    """A response that delivers some bytes, then times out (a connection lost mid-download)."""

    def __init__(self):
        self.sent = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self, n):
        if not self.sent:
            self.sent = True
            return b"x" * min(n, 1000)
        raise socket.timeout("timed out")


@pytest.mark.parametrize("failure", ["no-network", "timeout-midway", "refused"])
def test_download_without_network_or_mirror_names_dataset_url_and_mirror(tmp_path, monkeypatch, failure):
    from gpt2lib import datasets

    def fake_urlopen(req, timeout=None):
        if failure == "no-network":
            raise URLError(socket.gaierror(-2, "Name or service not known"))
        if failure == "refused":
            raise ConnectionRefusedError(111, "Connection refused")
        return _DyingResponse()

    monkeypatch.delenv("GPT2LIB_DATA_MIRROR", raising=False)
    monkeypatch.setattr(datasets, "urlopen", fake_urlopen)
    monkeypatch.setattr(datasets, "_sleep", lambda seconds: None)  # a timeout is retried with backoff
    with pytest.raises(datasets.DownloadError) as info:
        datasets.download("tiny-shakespeare", cache_dir=tmp_path, progress=False)
    msg = str(info.value)
    entry = datasets.info("tiny-shakespeare")
    assert "tiny-shakespeare" in msg and entry.url in msg and "GPT2LIB_DATA_MIRROR" in msg
    assert isinstance(info.value, OSError)  # the CLI reports OSErrors in one line
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # no partial file left


def test_cli_reports_a_failed_download_in_one_line(tmp_path, monkeypatch, capsys):
    from gpt2lib import datasets
    from gpt2lib.cli import main

    def fake_urlopen(req, timeout=None):
        raise URLError("no network")

    monkeypatch.delenv("GPT2LIB_DATA_MIRROR", raising=False)
    monkeypatch.setenv("GPT2LIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets, "urlopen", fake_urlopen)
    with pytest.raises(SystemExit) as info:
        main(["prepare", "--dataset", "tiny-shakespeare", "--out", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert info.value.code == 1 and "GPT2LIB_DATA_MIRROR" in err and "Traceback" not in err


# --- review fixes -------------------------------------------------------------------------------------------
def test_a_manifest_listing_a_users_file_cannot_make_prepare_delete_it(tmp_path, tok):
    """meta.json's "files" is trusted only for names prepare gives its files: a hand-edited or copied
    meta.json that lists model.safetensors is refused, naming the entry, and loses nothing (issue 22: refused
    rather than skipped, so the user learns the manifest is not prepare's); a hand-built dataset whose shard
    is my_corpus.bin loses nothing when the folder is re-prepared. Before, both files were deleted."""
    d = tmp_path / "d"
    prepare(DOCS, d, tok, progress=False)
    (d / "model.safetensors").write_bytes(b"precious")
    meta = json.loads((d / "meta.json").read_text())
    meta["files"].append("model.safetensors")
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"files entry 'model.safetensors' is not a file prepare writes"):
        prepare(DOCS[:20], d, tok, progress=False)
    assert (d / "model.safetensors").read_bytes() == b"precious"

    hand = tmp_path / "hand"  # a dataset built by hand in the old layout (no manifest), shard named by its user
    hand.mkdir()
    ids = np.array(tok.encode_batch(DOCS[:3])[0], dtype=np.uint16)
    ids.tofile(hand / "my_corpus.bin")
    (hand / "meta.json").write_text(json.dumps({
        "format": "gpt2lib-tokens-v1", "tokenizer": "gpt2", "n_vocab": tok.n_vocab, "eot": tok.eot,
        "dtype": "uint16", "splits": {"train": {"documents": 1, "tokens": len(ids), "bytes": 10,
                                                "shards": [{"file": "my_corpus.bin", "tokens": len(ids)}]}}}))
    prepare(DOCS, hand, tok, progress=False)
    np.testing.assert_array_equal(np.fromfile(hand / "my_corpus.bin", dtype=np.uint16), ids)


def test_a_byte_swapped_dtype_is_refused_not_written_as_garbage(tmp_path, tok):
    """dtype=">u2" used to write big-endian shards under a meta.json that says "uint16": every id read back
    byte-swapped (caught only if a swapped id happened to exceed the vocabulary)."""
    with pytest.raises(ValueError, match=r"byte order.*'uint16'"):
        prepare(DOCS, tmp_path / "d", tok, progress=False, dtype=">u2")
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir())
    meta = prepare(DOCS, tmp_path / "e", tok, progress=False, dtype="<u2" if sys.byteorder == "little" else ">u2")
    first = TokenShards.open(tmp_path / "e", "train").tokens()[:5].tolist()
    assert meta["dtype"] == "uint16" and first[0] == tok.eot


# --- issue 22: a hand-edited meta.json naming user files in a subfolder ----------------------------------------
def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _users_subfolder(d: Path) -> None:
    """A user's own folder inside the dataset folder, its files named like prepare's."""
    (d / "mine").mkdir()
    (d / "mine" / "train_000000.bin").write_bytes(b"\x00my own corpus, tokenized by me")
    (d / "mine" / "tokenizer.json").write_bytes(b'{"my": "tokenizer"}')
    (d / "mine" / "notes.txt").write_bytes(b"do not delete")


@pytest.mark.parametrize("entry", ["mine/train_000000.bin", "mine/tokenizer.json", "./mine/train_000000.bin",
                                   "tokens-1/../mine/train_000000.bin", "tokens-1//train_000000.bin",
                                   "tokens-1/sub/train_000000.bin", "tokens-1\\train_000000.bin", "tokenizer.json"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_hand_edited_manifest_naming_a_users_file_is_refused_and_nothing_is_touched(tmp_path, tok, entry,
                                                                                     overwrite):
    """Issue 22 item 7: a meta.json whose "files" names mine/train_000000.bin made prepare (and --overwrite)
    delete that user file, and empty the user's mine/ folder of every file with one of prepare's names. Now an
    entry that is not one of prepare's names directly inside a marked tokens-<n>/ folder is refused before any
    work with one line naming it; every file in the folder stays byte for byte."""
    d = tmp_path / "d"
    prepare(DOCS, d, tok, progress=False)
    _users_subfolder(d)
    if entry == "tokenizer.json":
        (d / "tokenizer.json").write_bytes(b"a user's tokenizer at the top")
    meta = json.loads((d / "meta.json").read_text())
    meta["files"].append(entry)
    (d / "meta.json").write_text(json.dumps(meta))
    before = _snapshot(d)
    with pytest.raises(ValueError) as info:
        prepare(DOCS[:20], d, tok, progress=False, overwrite=overwrite)
    msg = str(info.value)
    assert len(msg.splitlines()) == 1 and (repr(entry) in msg or (".." in entry and "outside" in msg)), msg
    assert _snapshot(d) == before


def test_cli_reports_a_manifest_naming_a_users_file_in_one_line(tmp_path, tok, capsys):
    from gpt2lib.cli import main

    text = tmp_path / "in.txt"
    text.write_text("\n\n".join(DOCS), encoding="utf-8")
    d = tmp_path / "d"
    assert main(["prepare", "--input", str(text), "--out", str(d)]) == 0
    _users_subfolder(d)
    meta = json.loads((d / "meta.json").read_text())
    meta["files"] += ["mine/train_000000.bin", "mine/notes.txt"]
    (d / "meta.json").write_text(json.dumps(meta))
    before = _snapshot(d)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["prepare", "--input", str(text), "--out", str(d), "--overwrite"])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 1 and len(err) == 1 and "'mine/train_000000.bin'" in err[0], err
    assert _snapshot(d) == before


def test_a_manifest_entry_in_a_symlinked_or_unmarked_tokens_folder_is_refused(tmp_path, tok):
    """tokens-<n>/ must be a real folder holding prepare's marker: a symlink named tokens-5 pointing at the
    user's folder (even one holding a copied marker), or a tokens-6/ the user made, is not prepare's."""
    d, elsewhere = tmp_path / "d", tmp_path / "elsewhere"
    prepare(DOCS, d, tok, progress=False)
    elsewhere.mkdir()
    (elsewhere / ".gpt2lib-prepare").write_text("copied along with a dataset")
    (elsewhere / "train_000000.bin").write_bytes(b"the user's only copy")
    (d / "tokens-5").symlink_to(elsewhere, target_is_directory=True)
    (d / "tokens-6").mkdir()
    (d / "tokens-6" / "val_000000.bin").write_bytes(b"mine too")
    outside = _snapshot(elsewhere)
    for entry in ("tokens-5/train_000000.bin", "tokens-6/val_000000.bin"):
        meta = json.loads((d / "meta.json").read_text())
        (d / "meta.json").write_text(json.dumps({**meta, "files": meta["files"] + [entry]}))
        before = _snapshot(d)
        with pytest.raises(ValueError, match=rf"files entry '{entry}' lies in {entry.split('/')[0]}/, which is not"):
            prepare(DOCS[:20], d, tok, progress=False)
        assert _snapshot(d) == before and _snapshot(elsewhere) == outside
        (d / "meta.json").write_text(json.dumps(meta))
    # unlisted, the symlink is not taken for a killed prepare's leftovers either (which are deleted)
    new = prepare(DOCS[:20], d, tok, progress=False)
    assert _snapshot(elsewhere) == outside and (d / "tokens-5").is_symlink()
    assert (d / "tokens-6" / "val_000000.bin").read_bytes() == b"mine too"
    assert _all_files(d) == set(new["files"]) | {"tokens-6/val_000000.bin"}  # (rglob does not enter tokens-5)


def test_a_dataset_from_before_the_manifest_with_a_shard_in_a_users_subfolder_loses_nothing(tmp_path, tok):
    """Without a manifest only the shard list says which files are the dataset's: shards named like the old
    prepare's, directly in the folder, are replaced; a shard in a subfolder (a hand-built dataset) stays, and
    so do the other files of that subfolder. Before, prepare deleted mine/train_000000.bin and emptied mine/
    of everything with one of its names (mine/tokenizer.json)."""
    d = tmp_path / "d"
    d.mkdir()
    _users_subfolder(d)
    ids = np.array(tok.encode_batch(DOCS[:3])[0], dtype=np.uint16)
    ids.tofile(d / "mine" / "train_000000.bin")
    (d / "meta.json").write_text(json.dumps({
        "format": "gpt2lib-tokens-v1", "tokenizer": "gpt2", "n_vocab": tok.n_vocab, "eot": tok.eot,
        "dtype": "uint16", "splits": {"train": {"documents": 1, "tokens": len(ids), "bytes": 10,
                                                "shards": [{"file": "mine/train_000000.bin", "tokens": len(ids)}]}}}))
    np.testing.assert_array_equal(_tokens(d), ids)  # a valid dataset, as its user made it
    mine = _snapshot(d / "mine")
    new = prepare(DOCS, d, tok, progress=False)
    assert _snapshot(d / "mine") == mine
    assert _all_files(d) == set(new["files"]) | {f"mine/{f}" for f in mine}
