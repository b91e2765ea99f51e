"""Small pretrained models for the book, trained once on CPU and cached (GPT-2 §2-§3 at toy scale).

``load_pretrained_tiny("webtext-tiny")`` returns ``(model, tokenizer)``: a 4-layer, 128-wide GPT-2 with the real
GPT-2 tokenizer (so the §3 evaluations run on it), trained for well under a minute on the WebText sample.
``"shakespeare-tiny"`` is the same model size with a 1024-token BPE trained on Tiny Shakespeare. ``"miniworld-*"``
(the thesis chapter) and ``"webtext-ladder-*"`` (a miniature of GPT-2's Figure 4, §4) are ladders of four sizes,
each trained on one thread with the same data and token budget; :func:`model_card` gives their recorded losses.

The first call trains the model deterministically and writes ``model.safetensors`` + ``config.json``
(+ ``tokenizer.json``) under ``<cache>/zoo/<name>-<hash>/``; later calls load that folder. Training runs in a
child process under the book's pinned numeric environment (:mod:`gpt2lib.numerics`: AVX2 kernels, the
recipe's thread count), so the same recipe gives the same bits on the same machine whatever the calling
process has already set up (another CPU model may give other bits under the same variables); the hash covers
the recipe *and* that kernel path. The first call says
what it is doing on stderr, with a progress bar. Concurrent first calls (e.g. notebooks under pytest-xdist)
serialize on a lock file, and the folder appears by an atomic rename, so every caller ends with the same
complete files.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from gpt2lib import numerics
from gpt2lib._io import read_json_object
from gpt2lib.bpe import BytePairTokenizer
from gpt2lib.checkpoint import model_state_dict
from gpt2lib.data import TokenShards, prepare, split_documents
from gpt2lib.datasets import cache_root, read_text
from gpt2lib.miniworld import WorldConfig, make_world
from gpt2lib.model import GPT2, GPT2Config
from gpt2lib.recipe import evaluate_loss
from gpt2lib.tokenizer import get_gpt2_tokenizer
from gpt2lib.train import TrainConfig, train
from gpt2lib.weights import load_state_dict

__all__ = ["RECIPES", "MINIWORLD_SIZES", "RELEASED_MODELS", "book_model_name", "book_model_names", "load_book_model",
           "load_pretrained_tiny", "model_card", "recipe_key", "training_environment"]

_MODEL = dict(n_layer=4, n_head=4, n_embd=128, block_size=128)
_TRAIN = dict(block_size=128, micro_batch_size=8, tokens_per_step=2048, warmup_steps=10, lr=3e-3, min_lr=3e-4,
              weight_decay=0.1, seed=1337, eval_interval=0, eval_batches=4, sample_tokens=0, save_interval=0,
              log_interval=10)
# "version" is bumped whenever the training code changes the numbers (v2: the fused LM-head loss; v3:
# training really runs on the recipe's 2 threads, no longer reset to 1 by data.prepare),
# so a cache made by older code is never mistaken for this recipe.
RECIPES: dict[str, dict[str, Any]] = {
    # The 50257-wide output layer costs ~1 s per 1024 tokens on 2 cores: 32 steps of 1024 tokens.
    "webtext-tiny": {"dataset": "webtext-sample", "tokenizer": "gpt2", "model": _MODEL,
                     "train": {**_TRAIN, "tokens_per_step": 1024, "warmup_steps": 4, "lr": 6e-3, "min_lr": 6e-4,
                               "max_steps": 32}, "threads": 2, "version": 3},
    "shakespeare-tiny": {"dataset": "tiny-shakespeare", "tokenizer": {"bpe_vocab_size": 1024}, "model": _MODEL,
                         "train": {**_TRAIN, "max_steps": 120}, "threads": 2, "version": 3},
}

# The miniature world of gpt2lib.miniworld (the paper's thesis at toy scale): a ladder of sizes trained on the same
# text with the same token budget, each on ONE thread, and a control trained on the world without demonstrations.
MINIWORLD_SIZES: dict[str, dict[str, int]] = {
    "xs": dict(n_layer=1, n_head=2, n_embd=32), "s": dict(n_layer=2, n_head=2, n_embd=64),
    "m": dict(n_layer=3, n_head=4, n_embd=96), "l": dict(n_layer=4, n_head=4, n_embd=128)}
# 480 steps of 1024 tokens (about 2.4 passes over the 10,000 documents' 200k tokens) at a high learning rate.
_MINIWORLD = {"dataset": "miniworld", "world": {"n_docs": 10000, "demo_rate": 1.0, "seed": 0},
              "tokenizer": {"bpe_vocab_size": 1024}, "threads": 1, "version": 1,
              "train": {**_TRAIN, "micro_batch_size": 8, "tokens_per_step": 1024, "max_steps": 480, "lr": 1e-2,
                        "min_lr": 1e-3}}
# As in GPT-2 (§3: "The learning rate of each model was manually tuned"), the learning rate may differ by size:
# at 1e-2 the largest size was still at a loss of 1.5 after 480 steps, where the others reach 0.8.
_MINIWORLD_LR = {"l": {"lr": 3e-3, "min_lr": 3e-4}}
for _size, _shape in MINIWORLD_SIZES.items():
    for _control in (False, True):
        if _control and _size not in ("xs", "l"):  # the control: the smallest and the largest size
            continue
        RECIPES[f"miniworld-{'control-' if _control else ''}{_size}"] = {
            **_MINIWORLD, "control": _control, "model": {**_shape, "block_size": 128},
            "train": {**_MINIWORLD["train"], **_MINIWORLD_LR.get(_size, {})}}

# Mini Figure 4 (GPT-2 §4): the same ladder of shapes trained on the WebText sample, with a 1024-token BPE learnt on
# the sample (GPT-2's 50,257-wide output layer would cost ~1 s per 1024 tokens), one thread each, the same data and
# token budget for every size: 400 steps of 512 tokens (about a seventh of the training split, so no window is seen
# twice). Held-out loss on the 5% of documents that data.prepare keeps out, every eval_interval steps; at the end
# the train and the held-out loss measured alike, on the first final_eval_batches batches of each split.
_WEBTEXT_LADDER = {"dataset": "webtext-sample", "tokenizer": {"bpe_vocab_size": 1024}, "threads": 1, "version": 1,
                   "final_eval_batches": 32,
                   "train": {**_TRAIN, "micro_batch_size": 4, "tokens_per_step": 512, "max_steps": 400,
                             "lr": 1.5e-3, "min_lr": 1.5e-4, "eval_interval": 50, "eval_batches": 8,
                             "log_interval": 1}}
# The learning rate tuned per size on held-out loss, as GPT-2's (§3), among 1.5e-3, 3e-3 and 6e-3 (600-step runs).
_WEBTEXT_LADDER_LR = {"xs": {"lr": 3e-3, "min_lr": 3e-4}}
for _size, _shape in MINIWORLD_SIZES.items():
    RECIPES[f"webtext-ladder-{_size}"] = {**_WEBTEXT_LADDER, "model": {**_shape, "block_size": 128},
                                          "train": {**_WEBTEXT_LADDER["train"], **_WEBTEXT_LADDER_LR.get(_size, {})}}

# Roughly how long a first-use training takes on an idle 2-core machine (said before it starts).
_EXPECTED_SECONDS = {"webtext-tiny": 60, "shakespeare-tiny": 45, "miniworld-xs": 10, "miniworld-s": 20,
                     "miniworld-m": 40, "miniworld-l": 75, "miniworld-control-xs": 10, "miniworld-control-l": 75,
                     "webtext-ladder-xs": 10, "webtext-ladder-s": 15, "webtext-ladder-m": 25, "webtext-ladder-l": 40}


def training_environment(recipe: dict[str, Any], environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the recipe trains in: the caller's, with the pinned kernel variables filled in where the
    caller did not set them (:func:`gpt2lib.numerics.apply`) and the recipe's own thread count."""
    env = dict(os.environ if environ is None else environ)
    threads = str(recipe["threads"])
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    numerics.apply(env, threads=None)
    return env


def recipe_key(recipe: dict[str, Any], environ: dict[str, str] | None = None) -> str:
    """A short hash of the recipe and of the kernel path it trains under: either changed gets a new folder."""
    path = numerics.kernel_path(training_environment(recipe, environ))
    return hashlib.sha256(json.dumps([recipe, path], sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            import fcntl  # lazy: POSIX only

            fcntl.flock(f, fcntl.LOCK_EX)
        except ImportError:  # Windows: rely on the atomic rename alone
            pass
        yield


def _world(recipe: dict[str, Any], control: bool):
    return make_world(WorldConfig(**recipe["world"]), control=control)


def _documents(recipe: dict[str, Any]) -> list[str]:
    if recipe["dataset"] == "miniworld":
        return _world(recipe, recipe["control"]).documents
    text = read_text(recipe["dataset"])
    if recipe["dataset"].startswith("webtext"):
        return [json.loads(line)["text"] for line in text.splitlines() if line.strip()]
    return split_documents(text)


def _tokenizer(recipe: dict[str, Any], docs: list[str]):
    if recipe["tokenizer"] == "gpt2":
        return get_gpt2_tokenizer()
    if recipe["dataset"] == "miniworld":  # one tokenizer for the world and its control: learnt on the world
        return BytePairTokenizer(name="miniworld-bpe").train(_world(recipe, False).text,
                                                             recipe["tokenizer"]["bpe_vocab_size"])
    name = "shakespeare-bpe" if recipe["dataset"] == "tiny-shakespeare" else f"{recipe['dataset']}-bpe"
    return BytePairTokenizer(name=name).train("\n\n".join(docs), recipe["tokenizer"]["bpe_vocab_size"])


def _prepare(docs: list[str], tok, data_dir: Path) -> dict[str, Any]:
    """Tokenize a recipe's documents into ``data_dir``: 5% of the documents form the held-out split, as GPT-2's
    "5% held-out sample of WebText" (§3), chosen by :func:`gpt2lib.data.prepare`'s seeded permutation."""
    return prepare(docs, data_dir, tok, val_fraction=0.05, progress=False)


def _train_recipe(recipe: dict[str, Any], out: Path) -> None:
    """Train ``recipe`` into the folder ``out`` (model.safetensors, config.json, maybe tokenizer.json)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(recipe["threads"])  # float sums depend on the thread count: fix it
    try:
        docs = _documents(recipe)
        tok = _tokenizer(recipe, docs)
        tmp = out / "_work"  # the parent process follows tmp/run/log.jsonl for its progress bar
        try:
            _prepare(docs, tok, Path(tmp) / "data")
            torch.manual_seed(recipe["train"]["seed"])
            config = GPT2Config(vocab_size=tok.n_vocab, **recipe["model"])
            model = GPT2(config)
            cfg = TrainConfig(data_dir=str(Path(tmp) / "data"), out_dir=str(Path(tmp) / "run"), device="cpu",
                              precision="fp32", progress=False, **recipe["train"])
            start, cpu = time.perf_counter(), time.process_time()
            res = train(cfg, model=model)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            measured = _final_losses(model, Path(tmp) / "data", recipe) if recipe.get("final_eval_batches") else {}
            history = _history(Path(tmp) / "run" / "log.jsonl")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        save_file(model_state_dict(model), str(out / "model.safetensors"))
        (out / "config.json").write_text(json.dumps({"model": config.to_dict(), "recipe": recipe,
                                                     "val_loss": res["val_loss"], "val_bpb": res["val_bpb"],
                                                     **measured, "history": history,
                                                     "train_seconds": round(seconds, 1), "train_cpu_seconds": round(cpu, 1),
                                                     "n_params": sum(p.numel() for p in model.parameters())},
                                                    indent=1))
        if hasattr(tok, "save"):
            tok.save(out / "tokenizer.json")
    finally:
        torch.set_num_threads(threads)


def _final_losses(model, data_dir: Path, recipe: dict[str, Any]) -> dict[str, float]:
    """Figure 4's two numbers at the end of training: the mean loss on the first ``final_eval_batches`` batches
    (corpus order) of the train split and of the held-out split, measured the same way (GPT-2 §4)."""
    t = recipe["train"]
    out = {}
    for split in ("train", "val"):
        loss, bpb = evaluate_loss(model, TokenShards.open(data_dir, split), t["block_size"], t["micro_batch_size"],
                                  recipe["final_eval_batches"], torch.device("cpu"))
        out[f"final_{split}_loss"], out[f"final_{split}_bpb"] = loss, bpb
    return out


def _history(log: Path) -> dict[str, list]:
    """The run's ``log.jsonl`` in columns: every logged step's training-batch loss, and the held-out loss at each
    evaluation (so a loss-against-steps curve comes from the cache, without retraining)."""
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    evals = [r for r in records if r.get("val_loss") is not None]
    return {"step": [r["step"] for r in records], "loss": [r["loss"] for r in records],
            "val_step": [r["step"] for r in evals], "val_loss": [r["val_loss"] for r in evals]}


def _train_in_child(name: str, recipe: dict[str, Any], out: Path, progress: bool) -> None:
    """Run :func:`_train_recipe` in a fresh interpreter under :func:`training_environment`, with a progress bar
    fed from the child's ``log.jsonl``; the child's own output goes to a log file, not to the caller."""
    env = training_environment(recipe)
    steps = int(recipe["train"]["max_steps"])
    if progress:
        print(f"gpt2lib.zoo: first use of {name!r}: training it once on CPU ({steps} steps, about "
              f"{_EXPECTED_SECONDS.get(name, 60)} s on {recipe['threads']} idle core(s)); later calls load "
              f"{out.parent}", file=sys.stderr, flush=True)
    log = out / "child.log"
    with open(log, "wb") as sink, tqdm(total=steps, desc=f"training {name}", unit="step", disable=not progress,
                                       file=sys.stderr) as bar:
        child = subprocess.Popen([sys.executable, "-m", "gpt2lib.zoo", json.dumps(recipe), str(out)], env=env,
                                 stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            while child.poll() is None:
                time.sleep(0.5)
                step = _last_step(out / "_work" / "run" / "log.jsonl")
                if step > bar.n:  # redraw only when training moved on (a notebook keeps every redraw)
                    bar.update(step - bar.n)
        except BaseException:  # Ctrl-C in the caller: stop the child too
            child.kill()
            child.wait()
            raise
        if child.returncode == 0:
            bar.update(steps - bar.n)
    if child.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"training the zoo model {name!r} failed (exit {child.returncode}):\n{tail}")
    log.unlink()


def _last_step(log: Path) -> int:
    try:
        lines = log.read_text().splitlines()
    except OSError:
        return 0
    for line in reversed(lines):
        try:
            return int(json.loads(line).get("step", 0))
        except (ValueError, AttributeError):  # a line being written
            continue
    return 0


def _load(folder: Path):
    meta = read_json_object(folder / "config.json")
    # every key checked (a missing or mis-shaped one is a ValueError); lm_head is tied to wte
    model = load_state_dict(GPT2(GPT2Config.from_dict(meta["model"])), load_file(str(folder / "model.safetensors")))
    model.eval()
    if (folder / "tokenizer.json").is_file():
        tok = BytePairTokenizer.load(folder / "tokenizer.json")
    else:
        tok = get_gpt2_tokenizer()
    return model, tok


def _cached_folder(name: str, cache_dir, progress: bool, train_overrides: dict[str, Any]) -> Path:
    """The folder of a cached model, trained first if it is not there yet."""
    if name not in RECIPES:
        raise KeyError(f"unknown tiny model {name!r}; known: {', '.join(RECIPES)}")
    recipe = json.loads(json.dumps(RECIPES[name]))
    unknown = set(train_overrides) - set(recipe["train"]) - {"max_steps"}
    if unknown:
        raise TypeError(f"unknown training setting(s) {sorted(unknown)}")
    recipe["train"].update(train_overrides)
    folder = cache_root(cache_dir) / "zoo" / f"{name}-{recipe_key(recipe)}"
    if not (folder / "config.json").is_file():
        with _file_lock(folder.with_name(folder.name + ".lock")):
            if not (folder / "config.json").is_file():  # another process may have finished meanwhile
                tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
                try:
                    _train_in_child(name, recipe, tmp, progress)
                    try:
                        os.rename(tmp, folder)  # atomic; fails if the folder appeared meanwhile
                    except OSError:
                        if not (folder / "config.json").is_file():
                            raise
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
    return folder


def load_pretrained_tiny(name: str = "webtext-tiny", *, cache_dir: str | os.PathLike | None = None,
                         progress: bool = True, **train_overrides: Any):
    """``(model, tokenizer)`` of a small cached model; trains it (deterministically, on CPU) on first use.

    ``train_overrides`` change the recipe's training settings (e.g. ``max_steps=2`` for tests); they are part
    of the cache key. ``progress=False`` silences the first-use notice and progress bar.
    """
    return _load(_cached_folder(name, cache_dir, progress, train_overrides))


def model_card(name: str = "webtext-tiny", *, cache_dir: str | os.PathLike | None = None, progress: bool = True,
               **train_overrides: Any) -> dict[str, Any]:
    """What the cache records about a model (trained first if needed): ``recipe``, ``model`` (its shape),
    ``val_loss`` and ``val_bpb`` at the end of training, ``n_params``, and ``train_seconds`` (wall clock) and
    ``train_cpu_seconds`` (CPU time of the training process) of the run that made it (None for older caches)."""
    meta = read_json_object(_cached_folder(name, cache_dir, progress, train_overrides) / "config.json")
    meta.setdefault("train_seconds", None)
    meta.setdefault("train_cpu_seconds", None)
    return meta


# The released GPT-2 sizes on the Hugging Face hub (§2.3, Table 2: the paper's 117M, 345M, 762M and 1542M; the
# smallest has 124M parameters counted with its tied embeddings).
RELEASED_MODELS = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
BOOK_MODEL_ENV = "GPT2_BOOK_MODEL"


def book_model_names() -> list[str]:
    """The models a §3 chapter can evaluate: the zoo's models with GPT-2's tokenizer, then the released sizes."""
    return [name for name, recipe in RECIPES.items() if recipe["tokenizer"] == "gpt2"] + list(RELEASED_MODELS)


def book_model_name(scale: str, name: str | None = None, environ: dict[str, str] | None = None) -> str:
    """Which model a §3 chapter loads: ``name``, else ``$GPT2_BOOK_MODEL``, else ``"webtext-tiny"`` when
    ``scale == "cpu"`` and the released 124M ``"gpt2"`` when ``scale == "gpu"``. Unknown names raise a
    ValueError listing the valid ones."""
    if scale not in ("cpu", "gpu"):
        raise ValueError(f"scale must be 'cpu' or 'gpu', not {scale!r}")
    environ = os.environ if environ is None else environ
    source = "name" if name is not None else BOOK_MODEL_ENV
    name = name if name is not None else environ.get(BOOK_MODEL_ENV) or ("webtext-tiny" if scale == "cpu" else "gpt2")
    if name not in book_model_names():
        raise ValueError(f"{source}={name!r} is not a model the chapters can load; "
                         f"choose one of: {', '.join(book_model_names())}")
    return name


def load_book_model(scale: str = "cpu", device: str | torch.device = "cpu", name: str | None = None):
    """``(model, tokenizer, name)``: the GPT-2 a §3 chapter evaluates zero-shot, in eval mode on ``device``.

    The name comes from :func:`book_model_name` (``name``, ``$GPT2_BOOK_MODEL``, or the scale's default), at any
    ``scale``: a reader with a laptop and a network can run a chapter's CPU-sized slices on the released 124M
    with ``GPT2_BOOK_MODEL=gpt2``. A zoo model is trained and cached on first use (:func:`load_pretrained_tiny`);
    a released one is read from the Hugging Face hub (or its offline cache) by :meth:`GPT2.from_pretrained`.
    """
    name = book_model_name(scale, name)
    if name in RELEASED_MODELS:
        model, tokenizer = GPT2.from_pretrained(name), get_gpt2_tokenizer()
    else:
        model, tokenizer = load_pretrained_tiny(name)
    return model.to(device).eval(), tokenizer, name


if __name__ == "__main__":  # the child process of _train_in_child: python -m gpt2lib.zoo RECIPE_JSON OUT
    _train_recipe(json.loads(sys.argv[1]), Path(sys.argv[2]))
