"""Command line: ``python -m gpt2lib prepare | train-tokenizer | train | sample [| eval] ...``.

``train`` builds a :class:`gpt2lib.train.TrainConfig` from, in increasing priority: a ``--preset``, a config
file (``--config run.json`` or ``run.toml``), one flag per field (``--max-steps 100``) and ``--set key=value``.
Unknown options and bad values exit with status 2 and a message naming the option.

Errors are one line on stderr, no traceback (``GPT2LIB_DEBUG=1`` shows it): 2 for a bad command line or
setting, 1 for bad files and data (gpt2lib's own errors, damaged safetensors, a non-finite loss), 128 + N
after signal N (130 for Ctrl-C, 143 for SIGTERM). ``train`` stopped by a signal saves first and prints the
command that resumes it.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gzip
import json
import linecache
import os
import re
import shlex
import signal
import sys
import tomllib
import types
import typing
import zlib
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from gpt2lib import tasks
from gpt2lib._io import json_lines, read_json_object
from gpt2lib.bpe import BytePairTokenizer
from gpt2lib.data import prepare, split_documents
from gpt2lib.datasets import read_text
from gpt2lib.engine import get_engine
from gpt2lib.errors import ConfigError, GPT2LibError, MissingPackageError
from gpt2lib.lock import output_lock
from gpt2lib.options import Int, OneLineParser, Real, check_device, check_precision, check_train_steps
from gpt2lib.resolve import resolve_model
from gpt2lib.tokenizer import check_split_pattern, get_gpt2_tokenizer
from gpt2lib.train import PRESETS, TrainConfig, TrainingInterrupted, train

__all__ = ["main", "build_parser", "train_config_from_args", "UsageError", "InputError", "is_user_error"]


class UsageError(ValueError):
    """A bad command line: reported as ``error: ...`` with exit status 2."""


class InputError(ValueError):
    """A bad input file (reported in one line, exit status 1)."""


def _field_type(f: dataclasses.Field) -> tuple[type, bool]:
    """(base type, accepts None) of a dataclass field with a simple annotation."""
    hint = typing.get_type_hints(TrainConfig)[f.name]
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        base = [a for a in args if a is not type(None)][0]
        return base, type(None) in args
    return hint, False


def _convert(name: str, raw: Any) -> Any:
    """Convert a string (or JSON/TOML value) to TrainConfig field ``name``'s type; ValueError names the option."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    if name not in fields:
        raise UsageError(f"unknown option {name!r}; known: {', '.join(sorted(fields))}")
    base, nullable = _field_type(fields[name])
    if isinstance(raw, bool) and base is not bool:  # JSON/TOML true is not the number 1
        raise UsageError(f"invalid value {raw!r} for option {name!r} (expected {base.__name__}, not a bool)")
    if nullable and (raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null", ""))):
        return None
    try:
        if base is bool:
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("1", "true", "yes", "on"):
                return True
            if str(raw).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if base is int and isinstance(raw, float) and not raw.is_integer():
            raise ValueError
        if base is int and isinstance(raw, str):
            try:
                return int(raw)
            except ValueError:
                if float(raw).is_integer():  # 1e4
                    return int(float(raw))
                raise
        return base(raw)
    except (TypeError, ValueError):
        raise UsageError(f"invalid value {raw!r} for option {name!r} (expected {base.__name__})") from None


def _load_config_file(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--config: file {path} does not exist")
    if p.suffix == ".toml":
        try:
            return tomllib.loads(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise UsageError(f"--config: {path} is not valid TOML: {e}") from None
    if p.suffix == ".json":
        try:
            return read_json_object(p)
        except ValueError as e:
            raise UsageError(f"--config: {e}") from None
    raise UsageError(f"--config: {path} must end in .json or .toml")


def train_config_from_args(args: argparse.Namespace):
    """Preset < config file < per-field flags < --set key=value."""
    values: dict[str, Any] = {}
    if args.config:
        values.update({k: _convert(k, v) for k, v in _load_config_file(args.config).items()})
    for f in dataclasses.fields(TrainConfig):
        if hasattr(args, "cfg_" + f.name):
            values[f.name] = getattr(args, "cfg_" + f.name)
    for item in args.set or []:
        if "=" not in item:
            raise UsageError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        values[key.strip().replace("-", "_")] = _convert(key.strip().replace("-", "_"), raw)
    try:
        cfg = TrainConfig.preset(args.preset, **values) if args.preset else TrainConfig(**values)
        check_train_steps(cfg.max_steps)  # at least one step, as train() requires
        check_device("device", cfg.device)
        check_precision("precision", cfg.precision, cfg.device)
    except ConfigError as e:
        raise UsageError(_config_error(e)) from None
    except (TypeError, ValueError) as e:
        raise UsageError(str(e)) from None
    return cfg


def _config_error(e) -> str:
    """A ConfigError as the command line spells the option: ``--micro-batch-size: must be ...``."""
    return f"--{e.option.replace('_', '-')}: {e.detail}"


def _preset_in(argv: list[str] | None) -> str | None:
    """The --preset NAME of a `train` command line (so that --help can show that preset's own defaults)."""
    argv = list(argv or [])
    if "train" not in argv:
        return None
    argv = argv[argv.index("train") + 1:]
    for i, a in enumerate(argv):
        name = a.split("=", 1)[1] if a.startswith("--preset=") else argv[i + 1] if a == "--preset" and \
            i + 1 < len(argv) else None
        if name in PRESETS:
            return name
    return None


def _add_train(sub, preset: str | None = None) -> None:
    # --help shows the defaults of the --preset given on the command line, else TrainConfig's own
    shown = TrainConfig.preset(preset) if preset else None
    origin = f" of preset {preset}" if preset else ""

    p = sub.add_parser("train", help="train a GPT-2 on prepared token shards", allow_abbrev=False,
                       description="Train GPT-2 (GPT-2 §2.3). Settings: --preset < --config < flags < --set. "
                                   "An out dir that holds a run needs --resume or --overwrite (moves it aside). "
                                   "Ctrl-C / SIGTERM: finish the step, save, print the resume command.")
    p.add_argument("--preset", choices=sorted(PRESETS), help="start from a named TrainConfig preset")
    p.add_argument("--config", help="a JSON or TOML file of TrainConfig fields")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any field (repeatable)")
    for f in dataclasses.fields(TrainConfig):
        base, nullable = _field_type(f)
        flag = "--" + f.name.replace("_", "-")
        kw: dict[str, Any] = dict(dest="cfg_" + f.name, default=argparse.SUPPRESS)
        default = getattr(shown, f.name) if shown is not None else f.default
        help_text = f"(default{origin} {default})".replace("%", "%%")
        if base is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text, **kw)
        else:
            p.add_argument(flag, type=lambda s, n=f.name: _argtype(n, s), metavar=base.__name__.upper(),
                           help=help_text, **kw)
    p.set_defaults(func=_cmd_train)


def _argtype(name: str, s: str) -> Any:
    try:
        return _convert(name, s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _read_documents(args) -> list[str]:
    texts: list[tuple[str, str]] = []
    for name in args.dataset or []:
        texts.append((name, read_text(name)))
    for path in args.input or []:
        texts.append((path, Path(path).read_text(encoding="utf-8")))
    if not texts:
        raise UsageError("give --dataset NAME or --input FILE (at least one)")
    docs: list[str] = []
    for name, text in texts:
        if name.endswith(".jsonl") or name in ("webtext-sample", "lambada-test"):
            docs += _jsonl_texts(name, text)
        elif args.doc_sep:
            docs += split_documents(text, _unescape(args.doc_sep))
        else:
            docs.append(text)
    return docs


def _jsonl_texts(name: str, text: str) -> list[str]:
    """The ``"text"`` of every line of a .jsonl file; a line that is no such object is a one-line error. Lines
    end at ``\n`` only: JSON strings may hold U+2028 and other characters ``str.splitlines`` would split at."""
    try:
        return [obj["text"] for obj in json_lines(text.split("\n"), name, {"text": str})]
    except ValueError as e:
        raise InputError(str(e)) from None


def _unescape(sep: str) -> str:
    """``--doc-sep``'s backslash escapes (``\\n``, ``\\t``, ``\\u00a7``) decoded; every other character kept as
    it is (``unicode_escape`` alone would read the UTF-8 bytes of ``§`` as two Latin-1 characters)."""
    try:
        return sep.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError as e:
        raise UsageError(f"--doc-sep: {sep!r} holds a bad escape sequence ({e.reason})") from None


def _load_tokenizer(spec: str):
    if spec == "gpt2":
        return get_gpt2_tokenizer()
    if not Path(spec).is_file():
        raise UsageError(f"--tokenizer: {spec!r} is neither 'gpt2' nor a saved BytePairTokenizer file")
    tok = BytePairTokenizer.load(spec)
    check_split_pattern(tok.pattern, spec)
    return tok


def _add_inputs(p) -> None:
    p.add_argument("--dataset", action="append", help="a registered dataset name (gpt2lib.datasets), repeatable")
    p.add_argument("--input", action="append", help="a UTF-8 text or .jsonl ({'text': ...}) file, repeatable")
    p.add_argument("--doc-sep", default="\\n\\n",
                   help="split plain text into documents at this separator (escapes allowed; '' = one document)")


def _cmd_prepare(args) -> int:
    docs = _read_documents(args)
    meta = prepare(docs, args.out, _load_tokenizer(args.tokenizer), val_fraction=args.val_fraction,
                   shard_size=args.shard_size, num_workers=args.workers, seed=args.seed, overwrite=args.overwrite)
    for split, s in meta["splits"].items():
        print(f"{split}: {s['documents']} documents, {s['tokens']:,} tokens, {len(s['shards'])} shard(s)")
    return 0


def _cmd_train_tokenizer(args) -> int:
    text = "\n\n".join(_read_documents(args))
    tok = BytePairTokenizer(name=args.name).train(text, args.vocab_size)
    tok.save(args.out)
    print(f"trained {tok.n_vocab}-token BPE on {len(text):,} characters -> {args.out}")
    return 0


def _resume_command(argv: list[str], cfg) -> str:
    """The command that continues an interrupted ``train`` run: the same one with ``--resume`` (and without
    ``--overwrite``, which would move the run aside)."""
    drop = {"--resume", "--no-resume", "--overwrite", "--no-overwrite"}
    args, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a in drop or a.split("=", 1)[0] in drop:
            i += 1
            continue
        if a == "--set" and i + 1 < len(argv) or a.startswith("--set="):
            item = argv[i + 1] if a == "--set" else a[len("--set="):]
            if item.split("=", 1)[0].strip().replace("-", "_") in ("resume", "overwrite"):
                i += 2 if a == "--set" else 1
                continue
        args.append(a)
        i += 1
    args += ["--resume"] + (["--no-overwrite"] if cfg.overwrite else [])
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        nproc = os.environ.get("LOCAL_WORLD_SIZE", str(world))
        return shlex.join(["torchrun", f"--nproc_per_node={nproc}", "-m", "gpt2lib", *args])
    return shlex.join(["python", "-m", "gpt2lib", *args])


def _cmd_webtext(args) -> int:
    from gpt2lib.webtext import build_webtext  # lazy: webtext needs datasketch (optional: gpt2lib[experiments])

    if args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    if args.address and args.engine != "dask":
        raise UsageError(f"--address needs --engine dask (got --engine {args.engine})")
    with get_engine(args.engine, workers=args.workers, address=args.address) as engine:
        build_webtext(args.input, args.out, engine=engine, partitions=args.partitions, karma=args.karma,
                      threshold=args.threshold, val_fraction=args.val_fraction,
                      log=lambda m: print(m, file=sys.stderr, flush=True))
    print(f"done: {args.out}/webtext-report.json")
    return 0


def _train_lock(cfg):
    if int(os.environ.get("RANK", "0") or 0) != 0:  # only rank 0 writes
        return contextlib.nullcontext()
    return output_lock(cfg.out_dir, "train")


def _check_resume_steps(cfg) -> None:
    """``--resume`` with a ``--max-steps`` the run has already reached would train nothing (the check
    :func:`gpt2lib.train.train` makes too, spelled as the command line's option)."""
    try:
        check_train_steps(cfg.max_steps, resume=cfg.resume, out_dir=cfg.out_dir)
    except ConfigError as e:
        raise UsageError(_config_error(e).replace("so resume", "so --resume")) from None


def _cmd_train(args) -> int:
    cfg = train_config_from_args(args)
    try:
        with _train_lock(cfg):  # before the resume check reads the folder; train() takes it again (re-entrant)
            _check_resume_steps(cfg)
            res = train(cfg)
    except TrainingInterrupted as e:
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"gpt2lib train: {signal_name(e.signum)}: stopped after step {e.step}, saved in {e.out_dir}; "
                  f"resume with: {_resume_command(args.argv, cfg)}", file=sys.stderr, flush=True)
        return e.exit_code
    vl = res["val_loss"]
    print(f"done: step {res['step']}, train loss {res['losses'][-1] if res['losses'] else float('nan'):.4f}, "
          f"val loss {vl if vl is None else round(vl, 4)}, tokens/s {res['tokens_per_s'] or 0:,.0f}")
    return 0


def _cmd_sample(args) -> int:
    resolved = resolve_model(args.model, tokenizer=_load_tokenizer(args.tokenizer) if args.tokenizer else None)
    model, tok = resolved.model, resolved.tokenizer
    gen = torch.Generator().manual_seed(args.seed)
    ids = tok.encode(args.prompt) or [tok.eot]
    for i in range(args.num_samples):
        out = model.generate(torch.tensor([ids]), args.max_new_tokens, temperature=args.temperature,
                             top_k=args.top_k, top_p=args.top_p, generator=gen)
        print(f"--- sample {i + 1} ---\n{tok.decode(out[0].tolist())}")
    return 0


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The command line; ``argv`` only decides which preset's defaults `train --help` shows."""
    parser = OneLineParser(prog="gpt2lib", description="GPT-2 (Radford et al. 2019): data, training, "
                                                                 "sampling.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("prepare", help="tokenize documents into token shards (GPT-2 §2.1)")
    _add_inputs(p)
    p.add_argument("--tokenizer", default="gpt2", help="'gpt2' or a saved BytePairTokenizer file")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--val-fraction", type=Real("--val-fraction", 0, 1, hi_open=True), default=0.1)
    p.add_argument("--shard-size", type=Int("--shard-size", 1), default=100_000_000, help="tokens per shard")
    p.add_argument("--workers", type=Int("--workers", 1), default=1, help="tokenizer processes")
    p.add_argument("--seed", type=Int("--seed", 0, 2**32 - 1), default=0)
    p.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty folder that holds no dataset (its files are left untouched)")
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("train-tokenizer", help="train a byte-level BPE (GPT-2 §2.2)")
    _add_inputs(p)
    p.add_argument("--vocab-size", type=Int("--vocab-size", 257), required=True,
                   help="256 byte tokens + <|endoftext|> + merges")
    p.add_argument("--out", required=True, help="output file (JSON)")
    p.add_argument("--name", default="bpe")
    p.set_defaults(func=_cmd_train_tokenizer)

    p = sub.add_parser("webtext", help="§2.1 pipeline: link files and HTML pages -> cleaned, de-duplicated "
                                       "token shards, serially or on an engine")
    p.add_argument("input", help="a folder (searched recursively) of link files (.ndjson[.gz], .jsonl) and "
                                 "HTML pages (.html, .htm), or one such file")
    p.add_argument("--out", required=True, help="a new or empty output folder")
    p.add_argument("--engine", choices=["serial", "process", "dask"], default="serial")
    p.add_argument("--workers", type=Int("--workers", 1), default=2,
                   help="worker processes of a local process pool or Dask cluster")
    p.add_argument("--address", default=None, help="a running Dask scheduler (tcp://host:8786); default "
                                                   "$GPT2LIB_ENGINE_ADDRESS, else a local cluster")
    p.add_argument("--partitions", type=Int("--partitions", 1, none=True), default=None,
                   help="partitions of the pages (default 2 per worker)")
    p.add_argument("--karma", type=Int("--karma", 0), default=3)
    p.add_argument("--threshold", type=Real("--threshold", 0, 1, lo_open=True, hi_open=True), default=0.5,
                   help="near-duplicate Jaccard threshold, in (0, 1)")
    p.add_argument("--val-fraction", type=Real("--val-fraction", 0, 1, hi_open=True), default=0.1)
    p.set_defaults(func=_cmd_webtext)

    _add_train(sub, _preset_in(argv))

    p = sub.add_parser("sample", help="generate text from a training run or a pretrained folder")
    p.add_argument("--model", required=True, help="a train output folder (--out-dir), a checkpoint folder, a "
                                                  "Hugging Face folder, zoo:<name> or a hub id")
    p.add_argument("--tokenizer", help="'gpt2' or a BytePairTokenizer file (default: the run's data tokenizer)")
    p.add_argument("--prompt", default="\n")
    p.add_argument("--max-new-tokens", type=Int("--max-new-tokens", 1), default=200)
    p.add_argument("--num-samples", type=Int("--num-samples", 1), default=1)
    p.add_argument("--temperature", type=Real("--temperature", 0), default=1.0, help="0 = greedy")
    p.add_argument("--top-k", type=Int("--top-k", 1, none=True), default=None)
    p.add_argument("--top-p", type=Real("--top-p", 0, 1, lo_open=True), default=None)
    p.add_argument("--seed", type=Int("--seed", 0, 2**63 - 1), default=0)
    p.set_defaults(func=_cmd_sample)

    tasks.add_cli(sub)
    return parser


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


# Exceptions that are always the user's data, files or setup, whatever raised them: one line, exit status 1.
def _user_error_types() -> tuple[type, ...]:
    return (GPT2LibError, InputError, SafetensorError, OSError, UnicodeError, EOFError, json.JSONDecodeError,
            gzip.BadGzipFile, zlib.error, FloatingPointError)


_NEVER_USER = (AssertionError, NotImplementedError, RecursionError, MemoryError, SyntaxError, NameError,
               AttributeError, ImportError)


def _raised_on_purpose(e: BaseException) -> bool:
    """True if the innermost frame that raised ``e`` is a ``raise`` statement in gpt2lib (a checked error with a
    message, such as ``raise ValueError(f"... names the problem")``), not an implicit error (a KeyError of a
    dict lookup, a TypeError inside torch): those are bugs, and keep their traceback."""
    tb = e.__traceback__
    if tb is None or isinstance(e, _NEVER_USER):
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename, lineno = tb.tb_frame.f_code.co_filename, tb.tb_lineno
    package = str(Path(__file__).resolve().parent)
    remote = e.__cause__
    if type(remote).__name__ == "_RemoteTraceback" and "concurrent" in filename:  # raised in a worker process
        frames = re.findall(r'File "([^"]+)", line (\d+)', str(remote))
        if not frames:
            return False
        filename, lineno = frames[-1][0], int(frames[-1][1])
    if not str(Path(filename).resolve()).startswith(package):
        return False
    return linecache.getline(filename, lineno).strip().startswith("raise ")


def is_user_error(e: BaseException) -> bool:
    """Whether the command line reports ``e`` in one line (see :func:`main`) rather than as a bug."""
    if isinstance(e, MissingPackageError):
        return True
    return (isinstance(e, _user_error_types()) and not isinstance(e, _NEVER_USER)) or _raised_on_purpose(e)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every command's clean-up runs (``train`` has its own handler)."""

    signum = 15


def _terminate_like_ctrl_c():
    """While a command runs, SIGTERM raises :class:`_Terminated` in this process (not in forked workers, which
    keep the default: they just end). Returns the previous handler."""
    main_pid = os.getpid()

    def handler(signum, frame):
        if os.getpid() != main_pid:  # a forked worker process
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise _Terminated()

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return None


def _aborted_while_starting():
    """Ctrl-C before a command started: one line, exit 130 (nothing was written yet)."""
    if os.environ.get("GPT2LIB_DEBUG"):
        raise KeyboardInterrupt
    sys.stderr.write("gpt2lib: aborted by SIGINT while starting; nothing was written\n")
    raise SystemExit(130)


def main(argv: list[str] | None = None) -> int:
    """Run a command. A bad command line exits 2; an error the user can fix (gpt2lib's own errors, bad files and
    data, I/O, decoding, a missing optional package, an engine without workers) is one line and exit 1; Ctrl-C
    and SIGTERM exit 128 + N after the command's clean-up. Any other exception is a bug: its traceback shows."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:  # (building the parser imports torch: seconds, in which a Ctrl-C is one line too)
        parser = build_parser(argv)
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        _aborted_while_starting()
    args.argv = argv
    previous = _terminate_like_ctrl_c()
    try:
        return int(args.func(args) or 0)
    except UsageError as e:
        parser.exit(2, f"gpt2lib {args.command}: error: {' '.join(str(e).split())}\n")
    except ConfigError as e:  # a setting checked after parsing, e.g. by TrainConfig.validate
        parser.exit(2, f"gpt2lib {args.command}: error: {' '.join(_config_error(e).split())}\n")
    except KeyboardInterrupt as e:  # Ctrl-C / SIGTERM outside training, or a second one during it
        if os.environ.get("GPT2LIB_DEBUG"):
            raise
        signum = getattr(e, "signum", 2)
        parser.exit(128 + signum, f"gpt2lib {args.command}: aborted by {signal_name(signum)}; files already "
                                  f"saved are intact\n")
    except Exception as e:
        if os.environ.get("GPT2LIB_DEBUG") or not is_user_error(e):
            raise  # a bug: the traceback is what a report needs
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        message = " ".join(str(message).split())  # one line, even for messages that list several problems
        parser.exit(1, f"gpt2lib {args.command}: error: {message} (GPT2LIB_DEBUG=1 shows the traceback)\n")
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
