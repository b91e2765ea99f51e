"""Every option of every command refuses a wrong value with one line naming it (gpt2lib.options).

The cases are generated from the command line's own argparse parsers: each option's domain comes from its
argument type (``Int``/``Real`` ranges, ``choices``, TrainConfig field types); hypothesis draws values
outside it. Options whose values are free text are listed in FREE with the reason, and a test fails when an
option is neither generated nor listed, so a new option cannot slip past. Then the probes of issue 22
(silently wrong metrics, accepted nonsense) as cheap tests.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from gpt2lib.cli import _field_type, build_parser, main
from gpt2lib.errors import ConfigError
from gpt2lib.options import Int, Real
from gpt2lib.train import TrainConfig

# the least each command needs so that parsing reaches the option under test
REQUIRED = {"prepare": ["--out", "_o"], "train-tokenizer": ["--vocab-size", "300", "--out", "_o"],
            "webtext": ["_in", "--out", "_o"], "train": [], "sample": ["--model", "_m"], "eval": ["--task", "lambada"]}

# free text (any string is a value) or a path checked where it is used (tested elsewhere): no generated case
FREE = {
    ("prepare", "--dataset"): "a dataset name; an unknown one is a one-line error listing the names (test_datasets)",
    ("prepare", "--input"): "a path; a missing file is a one-line OSError (test_cli_errors below)",
    ("prepare", "--out"): "any folder path", ("train-tokenizer", "--out"): "any file path",
    ("train-tokenizer", "--dataset"): "as prepare's", ("train-tokenizer", "--input"): "as prepare's",
    ("train-tokenizer", "--name"): "free text", ("webtext", "input"): "a path (tested in test_engine)",
    ("webtext", "--out"): "any folder path", ("train", "--sample-prompt"): "free text",
    ("sample", "--prompt"): "free text", ("eval", "--model"): "as sample's --model",
}
# hand-picked wrong values for options with an open text domain: (command, option) -> (value, exit status)
HAND = {
    ("prepare", "--doc-sep"): ("\\x4", 2), ("train-tokenizer", "--doc-sep"): ("\\x4", 2),
    ("prepare", "--tokenizer"): ("no/such/tokenizer.json", 2), ("sample", "--tokenizer"): ("no/such.json", 2),
    ("webtext", "--address"): ("tcp://localhost:1", 2),  # with the default --engine serial
    ("train", "--config"): ("no/such/run.json", 2), ("train", "--set"): ("no-equals-sign", 2),
    ("sample", "--model"): ("no/such/run", 1), ("eval", "--device"): ("tpu9", 2),
}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _options() -> list[tuple[str, argparse.Action]]:
    return [(cmd, a) for cmd, p in _subparsers().items() for a in p._actions
            if not isinstance(a, argparse._HelpAction)]


def _name(action: argparse.Action) -> str:
    return action.option_strings[0] if action.option_strings else action.dest


TRAIN_FIELDS = {f.name: _field_type(f)[0] for f in dataclasses.fields(TrainConfig)}


def _kind(cmd: str, action: argparse.Action) -> str | None:
    if (cmd, _name(action)) in FREE:
        return None
    if isinstance(action.type, (Int, Real)):
        return "range"
    if action.choices:
        return "choice"
    if isinstance(action, (argparse._StoreTrueAction, argparse.BooleanOptionalAction)):
        return "flag"
    if cmd == "train" and action.dest.startswith("cfg_"):
        return "field"
    return "hand" if (cmd, _name(action)) in HAND else None


GENERATED = [(cmd, a) for cmd, a in _options() if _kind(cmd, a) not in (None, "hand")]
HANDPICKED = [(cmd, a) for cmd, a in _options() if _kind(cmd, a) == "hand"]


def test_every_option_of_every_command_is_covered():
    missing = [(cmd, _name(a)) for cmd, a in _options() if _kind(cmd, a) is None and (cmd, _name(a)) not in FREE]
    assert missing == []
    covered = len(GENERATED) + len(HANDPICKED)
    print(f"options: {len(_options())}, generated {len(GENERATED)}, hand-picked {len(HANDPICKED)}, free {len(FREE)}")
    assert covered + len(FREE) == len(_options()) and covered >= 65


def _outside(domain) -> st.SearchStrategy[str]:
    """Text that is no value of an Int/Real option: out of range, or not a number at all."""
    bad_text = st.text(max_size=8).filter(lambda t: not _parses(t, domain))
    if isinstance(domain, Int):
        ranges = []
        if domain.lo is not None:
            ranges.append(st.integers(max_value=domain.lo - 1).map(str))
        if domain.hi is not None:
            ranges.append(st.integers(min_value=domain.hi + 1).map(str))
        return st.one_of(*ranges, bad_text, st.sampled_from(["1.5", "True", "1e3x"]))
    ranges = [st.sampled_from(["nan", "inf", "-inf", "True"])]
    if domain.lo is not None:
        ranges.append(st.floats(max_value=domain.lo, allow_nan=False, exclude_max=not domain.lo_open).map(repr))
    if domain.hi is not None:
        ranges.append(st.floats(min_value=domain.hi, allow_nan=False, exclude_min=not domain.hi_open).map(repr))
    return st.one_of(*ranges, bad_text)


def _parses(text: str, domain) -> bool:
    """Whether Python reads ``text`` as a value in the option's declared range (then it is no wrong value)."""
    if isinstance(domain, Int) and domain.none and text.strip().lower() in ("none", "null"):
        return True
    try:
        v = int(text) if isinstance(domain, Int) else float(text)
    except ValueError:
        return False
    if isinstance(v, float) and not math.isfinite(v):
        return False
    lo_ok = domain.lo is None or (v > domain.lo if getattr(domain, "lo_open", False) else v >= domain.lo)
    hi_ok = domain.hi is None or (v < domain.hi if getattr(domain, "hi_open", False) else v <= domain.hi)
    return lo_ok and hi_ok


def _field_wrong(field: str) -> st.SearchStrategy[str]:
    base = TRAIN_FIELDS[field]
    if base is int:  # every integer setting is a count, a step or a seed: none is negative
        return st.one_of(st.integers(max_value=-1).map(str), st.sampled_from(["x", "1.5", "nan"]))
    if base is float:  # every real setting is a rate, a coefficient or a norm: none is negative or NaN
        return st.one_of(st.floats(max_value=-1e-12, allow_infinity=False).map(repr), st.just("nan"), st.just("x"))
    return st.sampled_from({"model": ["gpt3", "nope"], "precision": ["fp8", "x"], "device": ["tpu9", "cuda:x"],
                            "data_dir": [""], "out_dir": [""]}[field])


def _wrong(cmd: str, action: argparse.Action) -> st.SearchStrategy[str]:
    kind = _kind(cmd, action)
    if kind == "range":
        return _outside(action.type)
    if kind == "choice":
        return st.text(min_size=1, max_size=10).filter(lambda t: t not in action.choices)
    if kind == "flag":
        return st.sampled_from(["maybe", "1"])
    return _field_wrong(action.dest[len("cfg_"):])


def _run(argv: list[str], capsys) -> tuple[int, list[str]]:
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    return e.value.code, err.strip().splitlines()


@pytest.mark.parametrize("cmd,action", GENERATED, ids=[f"{c} {_name(a)}" for c, a in GENERATED])
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_wrong_value_is_one_line_naming_the_option(cmd, action, data, capsys):
    value = data.draw(_wrong(cmd, action), label="value")
    code, lines = _run([cmd, *REQUIRED[cmd], f"{_name(action)}={value}"], capsys)
    assert code == 2 and len(lines) == 1, lines
    assert _name(action) in lines[0] and lines[0].startswith(f"gpt2lib {cmd}: error:") or \
        lines[0].startswith(f"gpt2lib {cmd}: error: argument {_name(action)}"), lines


@pytest.mark.parametrize("cmd,action", HANDPICKED, ids=[f"{c} {_name(a)}" for c, a in HANDPICKED])
def test_a_wrong_text_value_is_one_line_naming_the_option(cmd, action, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs.txt").write_text("a\n\nb\n", encoding="utf-8")
    (tmp_path / "_in").mkdir()
    (tmp_path / "_in" / "p.html").write_text("<p>x</p>", encoding="utf-8")
    value, status = HAND[(cmd, _name(action))]
    extra = ["--input", "docs.txt"] if cmd in ("prepare", "train-tokenizer") else []
    extra += ["--model", "zoo:shakespeare-tiny"] if cmd == "sample" and _name(action) != "--model" else []
    code, lines = _run([cmd, *REQUIRED[cmd], *extra, f"{_name(action)}={value}"], capsys)
    assert code == status and len(lines) == 1 and _name(action) in lines[0], lines
    assert not (tmp_path / "_o").exists()


# --------------------------------------------------------------------------------------------------
# The probes of issue 22, item 1 and 5: accepted nonsense and silently wrong numbers.


@pytest.mark.parametrize("option,value", [("--batch-size", "-1"), ("--batch-size", "0"), ("--limit", "0"),
                                          ("--limit", "-1"), ("--context", "0"), ("--stride", "0")])
@pytest.mark.parametrize("task", ["wikitext2", "lambada", "all"])
def test_eval_refuses_values_that_were_silently_wrong(task, option, value, capsys):
    code, lines = _run(["eval", "--task", task, "--model", "zoo:no-such", option, value], capsys)
    assert code == 2 and len(lines) == 1 and option in lines[0], lines


def test_fp16_on_cpu_is_refused_for_every_task_before_the_model_loads(capsys):
    from gpt2lib.tasks import task_names

    for task in task_names() + ["all"]:
        code, lines = _run(["eval", "--task", task, "--model", "zoo:no-such", "--precision", "fp16", "--device",
                            "cpu"], capsys)
        assert code == 2 and lines == ["gpt2lib eval: error: --precision: fp16 needs a CUDA GPU, and the device is "
                                       "cpu; use fp32 (or bf16) on CPU"], (task, lines)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a CPU-only torch")
def test_cuda_without_cuda_is_one_line_not_an_assertion(capsys):
    for argv in (["eval", "--task", "lambada", "--device", "cuda"], ["train", "--device", "cuda"]):
        code, lines = _run(argv, capsys)
        assert code == 2 and len(lines) == 1 and "--device: 'cuda' needs a CUDA GPU" in lines[0], lines


def test_the_task_api_checks_the_shared_arguments_the_same_way_for_every_task():
    from gpt2lib.evaluate import token_nlls
    from gpt2lib.model import GPT2, GPT2Config
    from gpt2lib.tasks import TASKS

    model = GPT2(GPT2Config.from_name("gpt2-tiny", vocab_size=300, block_size=16))
    for name, task in TASKS.items():  # refused before any data is read, whatever the task
        for kw, option in [({"batch_size": -1}, "batch_size"), ({"limit": 0}, "limit"), ({"limit": True}, "limit"),
                           ({"precision": "fp16"}, "precision"), ({"max_length": 17}, "max_length"),
                           ({"stride": 0}, "stride")]:
            with pytest.raises(ConfigError) as e:
                task(model, None, **kw)
            assert e.value.option == option, (name, kw)
    with pytest.raises(ConfigError, match="batch_size: must be an integer >= 1, got -1"):
        token_nlls(model, list(range(40)), batch_size=-1)


def test_a_bool_in_a_json_config_is_not_a_number(tmp_path, capsys):
    for setting in ({"lr": True}, {"max_steps": True}, {"dropout": False}):
        cfg = tmp_path / "run.json"
        cfg.write_text(json.dumps(setting))
        code, lines = _run(["train", "--config", str(cfg)], capsys)
        key = next(iter(setting))
        assert code == 2 and len(lines) == 1 and repr(key) in lines[0] and "not a bool" in lines[0], lines


def test_doc_sep_keeps_non_ascii_separators(tmp_path):
    from gpt2lib.data import read_meta

    text = "§".join(["first document", "second one", "third", "the fourth"])
    (tmp_path / "in.txt").write_text(text, encoding="utf-8")
    for sep in ("§", "\\u00a7"):
        out = tmp_path / f"out{len(sep)}"
        assert main(["prepare", "--input", str(tmp_path / "in.txt"), "--out", str(out), "--doc-sep", sep,
                     "--val-fraction", "0"]) == 0
        assert read_meta(out)["splits"]["train"]["documents"] == 4


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from gpt2lib.bpe import BytePairTokenizer
    from gpt2lib.data import prepare, split_documents
    from gpt2lib.datasets import read_text

    root = tmp_path_factory.mktemp("run")
    prepare(split_documents(read_text("tiny-shakespeare")[:8_000]), root / "data", BytePairTokenizer(),
            val_fraction=0.0, progress=False)
    argv = ["train", "--data-dir", str(root / "data"), "--out-dir", str(root / "out"), "--model", "gpt2-tiny",
            "--block-size", "16", "--micro-batch-size", "2", "--tokens-per-step", "32", "--warmup-steps", "1",
            "--lr-decay-steps", "10", "--eval-batches", "0", "--sample-tokens", "0", "--no-progress", "--device",
            "cpu"]
    assert main([*argv, "--max-steps", "4"]) == 0
    return argv, root / "out"


def test_max_steps_zero_and_a_resume_below_the_checkpoint_train_nothing_and_say_so(tiny_run, capsys):
    argv, out = tiny_run
    capsys.readouterr()
    code, lines = _run([*argv, "--max-steps", "0"], capsys)
    assert code == 2 and len(lines) == 1 and "--max-steps: must be an integer >= 1, got 0" in lines[0]
    before = (out / "log.jsonl").read_bytes()
    for steps in ("2", "4"):
        code, lines = _run([*argv, "--resume", "--max-steps", steps], capsys)
        assert code == 2 and len(lines) == 1 and "already at step 4" in lines[0] and "nan" not in lines[0], lines
    assert (out / "log.jsonl").read_bytes() == before


def test_the_train_api_refuses_max_steps_that_train_nothing_as_the_cli_does(tiny_run, tmp_path):
    """Before, train(cfg) with max_steps=0, or resume=True with max_steps at or below the checkpoint's step,
    returned a summary with no losses (the CLI printed "train loss nan"); only the CLI refused. Now train()
    raises the same ConfigError (a ValueError naming max_steps) before touching the folder. Equal counts as
    nothing to train: resume means "train on", and a finished run is loaded, not resumed."""
    from gpt2lib.cli import train_config_from_args
    from gpt2lib.train import train

    argv, out = tiny_run
    cfg = train_config_from_args(build_parser().parse_args([*argv, "--max-steps", "4"]))
    before = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    fresh = dataclasses.replace(cfg, out_dir=str(out.parent / "never"), max_steps=0)
    with pytest.raises(ValueError, match=r"^max_steps: must be an integer >= 1, got 0$"):
        train(fresh)
    assert not (out.parent / "never").exists()
    for steps in (0, 2, 4):
        with pytest.raises(ConfigError) as info:
            train(dataclasses.replace(cfg, max_steps=steps, resume=True))
        assert info.value.option == "max_steps" and len(str(info.value).splitlines()) == 1
        if steps:
            assert "already at step 4" in str(info.value) and f"got {steps}" in str(info.value)
    assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    shutil.copytree(out, tmp_path / "out")  # one step above the checkpoint still trains (on a copy of the run)
    res = train(dataclasses.replace(cfg, out_dir=str(tmp_path / "out"), max_steps=5, resume=True))
    assert res["step"] == 5 and len(res["losses"]) == 1 and math.isfinite(res["losses"][0])


@pytest.mark.parametrize("pattern", ["", r"\p{L}+", r"(\p{L}+)+$"])
def test_bpe_load_refuses_split_patterns_the_command_line_refuses(tmp_path, pattern):
    from gpt2lib.bpe import BytePairTokenizer

    path = tmp_path / "tok.json"
    BytePairTokenizer().save(path)
    doc = json.loads(path.read_text())
    doc["pattern"] = pattern
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="split pattern"):
        BytePairTokenizer.load(path)


def test_bool_token_ids_are_not_ids():
    import numpy as np

    from gpt2lib.bpe import BytePairTokenizer
    from gpt2lib.tokenizer import get_gpt2_tokenizer

    for tok in (BytePairTokenizer(), get_gpt2_tokenizer()):
        for ids in ([True], [72, False], [72] * 300 + [True], np.array([True, False])):
            with pytest.raises(TypeError, match="token ids must be int"):
                tok.decode(ids)
        assert tok.decode(tok.encode("Hi")) == "Hi"


def test_webtext_finds_pages_in_a_folder_behind_a_link(tmp_path):
    from gpt2lib.webtext import find_inputs

    real = tmp_path / "real"
    real.mkdir()
    (real / "a.html").write_text("<p>a</p>")
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    (crawl / "linked").symlink_to(real, target_is_directory=True)
    (crawl / "loop").symlink_to(crawl, target_is_directory=True)  # a loop is walked once
    (crawl / "b.html").write_text("<p>b</p>")
    links, pages = find_inputs(crawl)
    assert links == [] and sorted(p.name for p in pages) == ["a.html", "b.html"]
