"""Summarization with "TL;DR:" (GPT-2 §3.6). Method only: CNN/Daily Mail is not in the mirror.

The paper: "To induce summarization behavior we add the text TL;DR: after the article and
generate 100 tokens with Top-k random sampling (Fan et al., 2018) with k = 2 which reduces
repetition and encourages more abstractive summaries than greedy decoding. We use the first 3
generated sentences in these 100 tokens as the summary." Scored with ROUGE-1/2/L F-measures from
Google's ``rouge-score`` package (with stemming); Table 4 reports GPT-2 TL;DR at 21.40 R-AVG.
Prompt (ours, the paper gives only "TL;DR:"): ``article + "\\nTL;DR:"``.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import torch

from gpt2lib.evaluate import TaskResult, check_vocab, generate_text

__all__ = ["first_sentences", "summarize", "rouge", "evaluate_summarization", "run"]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"')\]])\s+")


def first_sentences(text: str, n: int = 3) -> str:
    """The first ``n`` sentences: a sentence ends at ``.``, ``!`` or ``?`` (plus one closing quote or
    bracket) followed by whitespace."""
    parts = [p.strip() for p in _SENTENCE_END.split(text.strip()) if p.strip()]
    return " ".join(parts[:n])


def summarize(model: Any, tokenizer: Any, article: str, *, max_new_tokens: int = 100, top_k: int = 2,
              generator: torch.Generator | None = None) -> str:
    """TL;DR summary: top-k (k=2) sampling of 100 tokens, first 3 sentences kept."""
    text = generate_text(model, tokenizer, article.strip() + "\nTL;DR:", max_new_tokens, temperature=1.0,
                         top_k=top_k, generator=generator)
    return first_sentences(text, 3)


def rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 (x100) and their average, with ``rouge_score`` (Porter stemming)."""
    from rouge_score import rouge_scorer

    if len(predictions) != len(references) or not predictions:
        raise ValueError(f"need equally many (>0) predictions and references, got {len(predictions)}, {len(references)}")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for p, r in zip(predictions, references):
        for k, v in scorer.score(r, p).items():
            totals[k] += v.fmeasure
    out = {k: 100.0 * v / len(predictions) for k, v in totals.items()}
    out["rouge_avg"] = (out["rouge1"] + out["rouge2"] + out["rougeL"]) / 3
    return out


def evaluate_summarization(model: Any, tokenizer: Any, examples: Sequence[tuple[str, str]], *, seed: int = 0,
                           max_new_tokens: int = 100, **_: Any) -> TaskResult:
    """``examples``: (article, reference summary) pairs; seeded sampling, so reruns agree."""
    if not examples:
        raise ValueError("no summarization examples to evaluate")
    check_vocab(model, tokenizer)
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    preds = [summarize(model, tokenizer, a, max_new_tokens=max_new_tokens, generator=gen) for a, _ in examples]
    return TaskResult("summarization", rouge(preds, [r for _, r in examples]), len(examples))


def run(model: Any, tokenizer: Any, *, examples: Sequence[tuple[str, str]] | None = None,
        limit: int | None = None, **kw: Any) -> TaskResult:
    if examples is None:
        raise FileNotFoundError("CNN/Daily Mail is not in the offline data mirror; pass examples=[(article, summary), ...]")
    return evaluate_summarization(model, tokenizer, list(examples)[:limit] if limit else examples, **kw)
