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
