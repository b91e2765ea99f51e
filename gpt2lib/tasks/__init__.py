"""The zero-shot tasks of GPT-2 §3, one module each, and a registry by name.

==================  ===========  ==========================================================
name                paper        module
==================  ===========  ==========================================================
wikitext2, ptb      §3.1         :mod:`gpt2lib.tasks.lm` (perplexity, de-tokenized)
cbt                 §3.2         :mod:`gpt2lib.tasks.cbt` (method only: data not in the mirror)
lambada             §3.3         :mod:`gpt2lib.tasks.lambada`
winograd            §3.4         :mod:`gpt2lib.tasks.winograd` (WSC273, full and partial scoring)
coqa                §3.5         :mod:`gpt2lib.tasks.coqa` (method only: data not in the mirror)
summarization       §3.6         :mod:`gpt2lib.tasks.summarization` (method only: no CNN/DM)
translation-en-fr   §3.7         :mod:`gpt2lib.tasks.translation` (WMT-14 newstest2014)
translation-fr-en   §3.7         :mod:`gpt2lib.tasks.translation`
nq                  §3.8         :mod:`gpt2lib.tasks.qa` (NQ-Open dev)
==================  ===========  ==========================================================

Every task is a function ``task(model, tokenizer, *, limit=None, batch_size=8, progress=False, ...)``
returning a :class:`gpt2lib.evaluate.TaskResult`.
"""
from __future__ import annotations

from typing import Callable

from gpt2lib.evaluate import TaskResult
from gpt2lib.tasks import cbt, coqa, lambada, lm, qa, summarization, translation, winograd

__all__ = ["TASKS", "task_names", "get_task"]

TASKS: dict[str, Callable[..., TaskResult]] = {
    "wikitext2": lm.wikitext2,
    "ptb": lm.ptb,
    "cbt": cbt.run,
    "lambada": lambada.run,
    "winograd": winograd.run,
    "coqa": coqa.run,
    "summarization": summarization.run,
    "translation-en-fr": translation.run_en_fr,
    "translation-fr-en": translation.run_fr_en,
    "nq": qa.run,
}


def task_names() -> list[str]:
    return list(TASKS)


def get_task(name: str) -> Callable[..., TaskResult]:
    """The task function called ``name``; ``KeyError`` listing the available names otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; available: {', '.join(TASKS)}") from None
