"""gpt2lib.cli: `python -m gpt2lib prepare | train-tokenizer | train | sample`, config files and overrides."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gpt2lib.cli import build_parser, main, train_config_from_args
from gpt2lib.train import TrainConfig


@pytest.mark.parametrize("command", ["prepare", "train-tokenizer", "train", "sample"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert "usage: gpt2lib " + command in capsys.readouterr().out


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "gpt2lib", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "train-tokenizer" in out.stdout


@pytest.mark.parametrize("argv, needle", [
    (["train", "--no-such-flag", "1"], "--no-such-flag"),
    (["train", "--max-steps", "ten"], "max_steps"),
    (["train", "--lr", "fast"], "'lr'"),
    (["train", "--set", "learning_rate=1"], "learning_rate"),
    (["train", "--set", "lr"], "key=value"),
    (["train", "--set", "compile=maybe"], "compile"),
    (["train", "--preset", "huge"], "huge"),
    (["prepare", "--out", "x"], "--dataset"),
    (["bogus-command"], "bogus-command"),
])
def test_bad_options_exit_2_naming_the_option(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert needle in capsys.readouterr().err


def test_config_file_errors_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"lr": 1e-3, "warmup": 5}))
    for argv, needle in [(["train", "--config", str(bad)], "warmup"),
                         (["train", "--config", str(tmp_path / "missing.toml")], "does not exist")]:
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2 and needle in capsys.readouterr().err


def test_settings_precedence_preset_file_flag_set(tmp_path):
    """preset < config file < per-field flag < --set; values get the field's type."""
    toml = tmp_path / "run.toml"
    toml.write_text('max_steps = 50\nlr = 1e-3\nwarmup_steps = 7\nlr_decay_steps = 40\ncompile = true\n')
    args = build_parser().parse_args(["train", "--preset", "cpu-tiny", "--config", str(toml), "--lr", "2e-3",
                                      "--warmup-steps", "9", "--set", "warmup_steps=11", "--set",
                                      "lr_decay_steps=none", "--no-progress"])
    cfg = train_config_from_args(args)
    preset = TrainConfig.preset("cpu-tiny")
    assert cfg.model == preset.model == "gpt2-tiny" and cfg.block_size == preset.block_size  # from the preset
    assert cfg.max_steps == 50 and cfg.compile is True  # from the file
    assert cfg.lr == 2e-3  # flag beats file
    assert cfg.warmup_steps == 11  # --set beats flag
    assert cfg.lr_decay_steps is None and cfg.progress is False
    assert isinstance(cfg.max_steps, int)


def test_end_to_end_tokenizer_prepare_train_sample(tmp_path, capsys):
    """train-tokenizer -> prepare -> train -> sample, all through the command line."""
    text = tmp_path / "corpus.txt"
    text.write_text("\n\n".join(f"To be, or not to be, that is question {i}." for i in range(300)))
    assert main(["train-tokenizer", "--input", str(text), "--vocab-size", "300", "--out",
                 str(tmp_path / "bpe.json")]) == 0
    assert main(["prepare", "--input", str(text), "--tokenizer", str(tmp_path / "bpe.json"), "--out",
                 str(tmp_path / "data"), "--val-fraction", "0.1"]) == 0
    assert "train: 270 documents" in capsys.readouterr().out
    assert main(["train", "--preset", "cpu-tiny", "--data-dir", str(tmp_path / "data"), "--out-dir",
                 str(tmp_path / "run"), "--max-steps", "3", "--block-size", "32", "--tokens-per-step", "512",
                 "--eval-interval", "0", "--sample-tokens", "0", "--no-progress"]) == 0
    assert "done: step 3" in capsys.readouterr().out
    assert len((tmp_path / "run/log.jsonl").read_text().splitlines()) == 1  # log_interval 10: the last step
    assert main(["sample", "--model", str(tmp_path / "run"), "--prompt", "To be", "--max-new-tokens", "5",
                 "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("--- sample 1 ---\nTo be")


# --------------------------------------------------------------------------------------------------
# One model resolution (gpt2lib.resolve) for sample, eval and the Python API


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A 2-step cpu-tiny run written by `train --out-dir run/` (byte tokenizer of 300 tokens)."""
    tmp = tmp_path_factory.mktemp("resolve")
    text = tmp / "corpus.txt"
    text.write_text("\n\n".join(f"To be, or not to be, that is question {i}." for i in range(200)))
    assert main(["train-tokenizer", "--input", str(text), "--vocab-size", "300", "--out", str(tmp / "bpe.json")]) == 0
    assert main(["prepare", "--input", str(text), "--tokenizer", str(tmp / "bpe.json"), "--out", str(tmp / "data"),
                 "--val-fraction", "0.1"]) == 0
    assert main(["train", "--preset", "cpu-tiny", "--data-dir", str(tmp / "data"), "--out-dir", str(tmp / "run"),
                 "--max-steps", "2", "--block-size", "32", "--tokens-per-step", "512", "--eval-interval", "0",
                 "--sample-tokens", "0", "--no-progress"]) == 0
    return tmp


def test_one_resolution_loads_a_run_its_checkpoint_and_a_hugging_face_folder_alike(trained_run, capsys):
    """The train output folder, the checkpoint folder it points to and a save_pretrained folder of the same model
    give the same logits, through resolve_model, evaluate.load_model (what `eval --model` calls) and `sample`."""
    import torch

    from gpt2lib.checkpoint import latest_checkpoint
    from gpt2lib.evaluate import load_model
    from gpt2lib.resolve import resolve_model, source_kind

    run = trained_run / "run"
    ckpt = latest_checkpoint(run)
    from_run = resolve_model(str(run))
    assert (from_run.kind, from_run.path) == ("run", ckpt) and from_run.tokenizer.n_vocab == 300
    hf = trained_run / "hf"
    from_run.model.save_pretrained(str(hf))
    assert [source_kind(str(p)) for p in (run, ckpt, hf)] == ["run", "checkpoint", "huggingface"]
    assert source_kind("zoo:webtext-tiny") == "zoo" and source_kind("openai-community/gpt2") == "hub"
    x = torch.tensor([[1, 2, 3, 4]])
    want = from_run.model(x)[0]
    for spec in (run, ckpt, hf):
        assert torch.equal(load_model(str(spec))(x)[0], want), spec
    capsys.readouterr()
    for spec in (run, ckpt):
        assert main(["sample", "--model", str(spec), "--prompt", "To be", "--max-new-tokens", "3"]) == 0
        assert capsys.readouterr().out.startswith("--- sample 1 ---\nTo be")
    assert main(["sample", "--model", str(hf), "--tokenizer", str(trained_run / "bpe.json"), "--prompt", "To be",
                 "--max-new-tokens", "3"]) == 0


@pytest.mark.parametrize("make, match", [
    (lambda tmp: tmp / "nothing-here", "no such folder"),
    (lambda tmp: tmp, "the folder holds no model"),
    (lambda tmp: (tmp / "weights.txt", (tmp / "weights.txt").write_text("x"))[0], "is a file"),
], ids=["missing-folder", "empty-folder", "a-file"])
def test_anything_else_is_one_clear_error_naming_what_works(tmp_path, make, match, capsys):
    """A path that is no model is a ModelSourceError naming the argument and every accepted kind (eval's
    load_model and the Python API); `sample` exits non-zero with that message."""
    from gpt2lib.evaluate import load_model
    from gpt2lib.resolve import ACCEPTED, ModelSourceError

    spec = str(make(tmp_path))
    with pytest.raises(ModelSourceError, match=match) as err:
        load_model(spec)
    assert spec in str(err.value) and ACCEPTED in str(err.value)
    with pytest.raises(SystemExit) as exit_:
        main(["sample", "--model", spec])
    assert exit_.value.code != 0 and match in capsys.readouterr().err


def test_offline_hub_id_and_unknown_zoo_name_are_clear_errors(monkeypatch):
    from gpt2lib.resolve import ModelSourceError, resolve_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelSourceError, match="offline"):
        resolve_model("gpt2")
    with pytest.raises(ModelSourceError, match="unknown tiny model 'no-such-model'"):
        resolve_model("zoo:no-such-model")


def test_train_help_shows_the_chosen_presets_defaults(capsys):
    """`train --preset cpu-tiny --help` lists cpu-tiny's block size and step count, not gpt2-124m's."""
    from gpt2lib.train import TrainConfig

    for preset in ("cpu-tiny", "gpt2-124m"):
        with pytest.raises(SystemExit):
            main(["train", "--preset", preset, "--help"])
        out = " ".join(capsys.readouterr().out.split())
        cfg = TrainConfig.preset(preset)
        assert f"--block-size INT (default of preset {preset} {cfg.block_size})" in out
        assert f"--max-steps INT (default of preset {preset} {cfg.max_steps})" in out
    assert TrainConfig.preset("cpu-tiny").block_size != TrainConfig.preset("gpt2-124m").block_size
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert f"(default {TrainConfig().block_size})" in capsys.readouterr().out
