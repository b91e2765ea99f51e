"""Language modelling on WikiText-2 and PTB (GPT-2 §3.1).

Prompt: none; the whole test file, de-tokenized (:mod:`gpt2lib.detokenize`), is scored as one
document with a sliding window (:func:`gpt2lib.evaluate.token_nlls`). Scoring: per-word
perplexity = exp(total NLL / number of words of the *original* file, ``<eos>`` per line included),
the normalization the paper describes: "computing the log-probability of a dataset according to a
WebText LM and dividing by the number of canonical units". Also reported: per-token perplexity,
bits per byte and bits per character of the text the model read.
"""
from __future__ import annotations

from typing import Any

from gpt2lib import datasets
from gpt2lib.detokenize import ptb_detokenize, wikitext_detokenize
from gpt2lib.evaluate import TaskResult, evaluate_lm

__all__ = ["wikitext2", "ptb", "lm_task"]


def lm_task(model: Any, tokenizer: Any, original: str, detok, name: str, *, limit: int | None = None,
            batch_size: int = 4, stride: int | None = None, detokenize: bool = True,
            progress: bool = False) -> TaskResult:
    """Score ``original`` (first ``limit`` lines) after ``detok`` and report the §3.1 metrics."""
    if limit is not None:
        original = "".join(original.splitlines(keepends=True)[:limit])
    text = detok(original) if detokenize else original
    res = evaluate_lm(model, tokenizer, text, original=original, stride=stride, batch_size=batch_size,
                      progress=progress)
    n_lines = original.count("\n")
    return TaskResult(name, res.metrics(), n_lines,
                      notes=f"{name}: {'de-tokenized' if detokenize else 'raw tokenized'} text, "
                            f"ppl = exp(NLL / {res.n_words} original words incl. <eos>)")


def wikitext2(model: Any, tokenizer: Any, *, split: str = "test", **kw: Any) -> TaskResult:
    """WikiText-2 (tokenized ``<unk>`` version, as in the paper's Table 3), de-tokenized."""
    return lm_task(model, tokenizer, datasets.read_text(f"wikitext-2-{split}"), wikitext_detokenize, "wikitext2", **kw)


def ptb(model: Any, tokenizer: Any, **kw: Any) -> TaskResult:
    """Penn Treebank test (Mikolov's preprocessing), de-tokenized as far as possible."""
    return lm_task(model, tokenizer, datasets.read_text("ptb-test"), ptb_detokenize, "ptb", **kw)
