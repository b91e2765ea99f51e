"""The zero-shot tasks of GPT-2 §3, one module each, a registry by name, and ``python -m gpt2lib eval``.

==================  ===========  ============================================================  ==================
name                paper        module                                                        ``--limit`` counts
==================  ===========  ============================================================  ==================
wikitext2, ptb      §3.1         :mod:`gpt2lib.tasks.lm` (perplexity, de-tokenized)            lines of the file
1bw                 §3.1         :mod:`gpt2lib.tasks.lm` (One Billion Word, shuffled sentences) lines (sentences)
wikitext103         §3.1         :mod:`gpt2lib.tasks.lm` (downloaded, not in the mirror)       lines of the file
enwik8, text8       §3.1         :mod:`gpt2lib.tasks.lm` (last 5M bytes / chars, downloaded)   bytes / characters
cbt-cn, cbt-ne      §3.2         :mod:`gpt2lib.tasks.cbt` (CBTest.tgz valid, de-tokenized)      questions
lambada             §3.3         :mod:`gpt2lib.tasks.lambada`                                  passages
winograd            §3.4         :mod:`gpt2lib.tasks.winograd` (WSC273, full and partial)      schemas
coqa                §3.5         :mod:`gpt2lib.tasks.coqa`                                     questions
summarization       §3.6         :mod:`gpt2lib.tasks.summarization`                            articles
translation-en-fr   §3.7         :mod:`gpt2lib.tasks.translation` (WMT-14 newstest2014)        sentences
translation-fr-en   §3.7         :mod:`gpt2lib.tasks.translation`                              sentences
nq                  §3.8         :mod:`gpt2lib.tasks.qa` (NQ-Open dev)                         questions
==================  ===========  ============================================================  ==================

Every task is a function ``task(model, tokenizer, *, limit=None, batch_size=8, progress=False, ...)``
returning a :class:`gpt2lib.evaluate.TaskResult`; the language-modelling ones also take ``stride``,
``max_length`` (the context) and ``convention``. ``--task all`` runs Table 3's columns
(:data:`TABLE3_TASKS`); a column whose data cannot be had (not in the mirror, offline) is reported
as skipped with the reason, so on a CPU with the mirror it gives the columns the mirror allows.

``eval`` scores a model with *its own* tokenizer (a run's data tokenizer, a zoo model's, a Hugging Face
folder's tokenizer files; :func:`gpt2lib.resolve.resolve_model`) and prints which; per-word and per-byte
numbers do not depend on the tokenizer (§2.2), so models with different tokenizers compare on them. A
model whose vocabulary is not its tokenizer's is an error (:func:`gpt2lib.evaluate.check_vocab`).

This package imports :mod:`gpt2lib.evaluate`, never the reverse.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from gpt2lib.evaluate import TaskResult, check_vocab, load_model, results_table  # noqa: F401 (load_model: public)
from gpt2lib.options import Int, check_device, check_eval, checked_task
from gpt2lib.resolve import resolve_model
from gpt2lib.tasks import cbt, coqa, lambada, lm, qa, summarization, translation, winograd

__all__ = ["TASKS", "TABLE3_TASKS", "LIMIT_UNITS", "task_names", "get_task", "add_cli"]

TASKS: dict[str, Callable[..., TaskResult]] = {
    "wikitext2": lm.wikitext2,
    "ptb": lm.ptb,
    "1bw": lm.one_billion_word,
    "wikitext103": lm.wikitext103,
    "enwik8": lm.enwik8,
    "text8": lm.text8,
    "cbt": cbt.run,
    "cbt-cn": cbt.run_cn,
    "cbt-ne": cbt.run_ne,
    "lambada": lambada.run,
    "winograd": winograd.run,
    "coqa": coqa.run,
    "summarization": summarization.run,
    "translation-en-fr": translation.run_en_fr,
    "translation-fr-en": translation.run_fr_en,
    "nq": qa.run,
}
TASKS = {name: checked_task(fn) for name, fn in TASKS.items()}  # shared arguments checked alike (gpt2lib.options)

# Table 3's columns, in the paper's order.
TABLE3_TASKS = ["lambada", "cbt-cn", "cbt-ne", "wikitext2", "ptb", "enwik8", "text8", "wikitext103", "1bw"]

LIMIT_UNITS: dict[str, str] = {
    "wikitext2": "lines", "ptb": "lines", "1bw": "lines (sentences)", "wikitext103": "lines",
    "enwik8": "bytes of the test split", "text8": "characters of the test split", "cbt": "questions",
    "cbt-cn": "questions", "cbt-ne": "questions", "lambada": "passages", "winograd": "schemas",
    "coqa": "questions", "summarization": "articles", "translation-en-fr": "sentences",
    "translation-fr-en": "sentences", "nq": "questions",
}
LM_TASKS = {"wikitext2", "ptb", "1bw", "wikitext103", "enwik8", "text8"}
GENERATIVE_TASKS = {"coqa", "summarization", "translation-en-fr", "translation-fr-en", "nq"}


def task_names() -> list[str]:
    return list(TASKS)


def get_task(name: str) -> Callable[..., TaskResult]:
    """The task function called ``name``; ``KeyError`` listing the available names otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; available: {', '.join(TASKS)}") from None


# --------------------------------------------------------------------------------------------------
# The command line.


def add_cli(subparsers: Any) -> None:
    """Add ``eval``: ``python -m gpt2lib eval --task lambada --model gpt2 --limit N --batch-size B``."""
    limits = "; ".join(f"{k}: {v}" for k, v in LIMIT_UNITS.items())
    p = subparsers.add_parser("eval", help="zero-shot evaluation on a GPT-2 §3 task",
                              description="Zero-shot evaluation (GPT-2 §3); prints a table beside the paper's, "
                                          "with the unit of every number and the settings used.")
    p.add_argument("--task", required=True, choices=task_names() + ["all"], metavar="TASK",
                   help=f"one of: {', '.join(task_names())}, or 'all' (Table 3's columns)")
    p.add_argument("--model", default="gpt2", help="gpt2 | gpt2-medium | ... (hub, online) | a folder | zoo:<name>")
    p.add_argument("--limit", type=Int("--limit", 1, none=True), default=None, help=f"evaluate only the first N units; per task: {limits}")
    p.add_argument("--batch-size", type=Int("--batch-size", 1), default=8)
    p.add_argument("--context", type=Int("--context", 2, none=True), default=None,
                   help="language modelling: window length L in tokens (default: the model's block_size)")
    p.add_argument("--stride", type=Int("--stride", 1, none=True), default=None,
                   help="language modelling: a new window every STRIDE tokens (default L/2; L = disjoint windows)")
    p.add_argument("--convention", choices=["gpt2lib", "lm-eval"], default="gpt2lib",
                   help="gpt2lib: the definitions of gpt2lib.tasks (paper-style, one document per file); lm-eval: "
                        "lm-evaluation-harness's wikitext (per page, rolling windows) and lambada_openai")
    p.add_argument("--shots", type=Int("--shots", 0), default=5,
                   help="translation: demonstration pairs in the prompt (default 5); a sentence whose prompt would "
                        "not fit the context gets fewer, and the output says how many were used")
    p.add_argument("--max-new-tokens", type=Int("--max-new-tokens", 1, none=True), default=None,
                   help="generative tasks: tokens generated per answer (default: translation 128 at most half the "
                        "context, coqa 32, nq 24, summarization 100)")
    p.add_argument("--first", choices=["sentence", "line"], default="sentence",
                   help="translation: the translation is the first generated sentence (§3.7, default) or line")
    p.add_argument("--cbt-split", choices=["valid", "test"], default="valid",
                   help="cbt-cn / cbt-ne: the validation split (default; Table 3's, §3.2) or the test split "
                        "(reported as cbt-cn-test / cbt-ne-test: its book The Jungle Book is in WebText)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="auto: fp32 on CPU, bf16 on GPUs that have it, fp16 on older GPUs")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=Int("--seed", 0, 2**63 - 1), default=0)
    p.set_defaults(func=_run_cli)


def _task_kwargs(name: str, args: Any) -> dict[str, Any]:
    kw: dict[str, Any] = {"limit": args.limit, "batch_size": args.batch_size, "progress": True}
    if name in LM_TASKS:
        kw.update(stride=args.stride, max_length=args.context, convention=args.convention, precision=args.precision)
    elif name == "lambada":
        kw.update(convention=args.convention)
    elif name in ("cbt-cn", "cbt-ne"):
        kw.update(split=getattr(args, "cbt_split", "valid"))
    elif name == "summarization":  # the one sampled task: --seed picks its sampling stream
        kw.update(seed=args.seed)
    if name.startswith("translation"):
        kw.update(n_shots=getattr(args, "shots", 5), first=getattr(args, "first", "sentence"))
    if name in GENERATIVE_TASKS and getattr(args, "max_new_tokens", None) is not None:
        kw.update(max_new_tokens=args.max_new_tokens)
    return kw


def _run_cli(args: Any) -> int:
    names = TABLE3_TASKS if args.task == "all" else [args.task]
    for n in names:
        get_task(n)  # KeyError with the available names
    check_device("device", args.device)  # every option, for every task, before the model loads
    check_eval(limit=args.limit, batch_size=args.batch_size, max_length=args.context, stride=args.stride,
               precision=args.precision, device=args.device, names={"max_length": "context"})
    resolved = resolve_model(args.model, args.device)  # the model's own tokenizer (a run records it)
    model, tokenizer = resolved.model, resolved.tokenizer
    check_vocab(model, tokenizer)
    tok_name = f"{getattr(tokenizer, 'name', type(tokenizer).__name__)} ({tokenizer.n_vocab:,} tokens)"
    print(f"tokenizer: {tok_name}, {resolved.tokenizer_source}; per-word and per-byte numbers do not depend "
          f"on it, per-token ones do", flush=True)
    results, skipped = [], []
    for name in names:
        torch.manual_seed(args.seed)
        try:
            result = get_task(name)(model, tokenizer, **_task_kwargs(name, args))
        except (FileNotFoundError, ConnectionError) as e:
            if args.task != "all":
                raise
            skipped.append(f"- {name}: skipped, its data is not available here ({e})")
            continue
        result.model = args.model
        result.settings["tokenizer"] = tok_name
        result.settings["limit"] = f"{args.limit} {LIMIT_UNITS[name]}" if args.limit else "none"
        results.append(result)
    if results:
        print(results_table(results))
    for r in results:
        if r.notes:
            print("\n" + r.notes)
    if skipped:
        print("\n" + "\n".join(skipped))
    return 0
