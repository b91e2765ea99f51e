"""CoQA, conversational question answering (GPT-2 §3.5). Method only: CoQA is not in the mirror.

The paper: "Greedy decoding from GPT-2 when conditioned on a document, the history of the
associated conversation, and a final token A: achieves 55 F1 on the development set" (1542M).
Prompt format (ours; the paper gives only the ingredients)::

    <story>

    Q: <question 1>
    A: <answer 1>

    Q: <question n>
    A:

The answer is the greedy continuation up to the first newline. Score: SQuAD-style token F1
(lower-case, punctuation and articles removed), the best over the gold answers, averaged.
"""
from __future__ import annotations

import collections
import re
import string
from dataclasses import dataclass, field
from typing import Any, Sequence

from gpt2lib.evaluate import TaskResult, check_vocab, generate_text

__all__ = ["CoQAExample", "normalize_answer", "f1_score", "exact_match", "coqa_prompt", "evaluate_coqa", "run",
           "stop_at_newline"]


@dataclass
class CoQAExample:
    story: str
    question: str
    answers: list[str]
    history: list[tuple[str, str]] = field(default_factory=list)


def normalize_answer(s: str) -> str:
    """SQuAD normalization: lower-case, drop punctuation and the articles a/an/the, squeeze spaces."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def f1_score(prediction: str, gold: str) -> float:
    """Token-overlap F1 between normalized answers (1.0 when both are empty)."""
    p, g = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not p or not g:
        return float(p == g)
    common = sum((collections.Counter(p) & collections.Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, gold: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(gold)


def coqa_prompt(ex: CoQAExample) -> str:
    turns = "".join(f"Q: {q}\nA: {a}\n\n" for q, a in ex.history)
    return f"{ex.story.strip()}\n\n{turns}Q: {ex.question}\nA:"


def stop_at_newline(text: str) -> int | None:
    i = text.find("\n")
    return i if i >= 0 else None


def evaluate_coqa(model: Any, tokenizer: Any, examples: Sequence[CoQAExample], *, max_new_tokens: int = 32,
                  progress: bool = False, **_: Any) -> TaskResult:
    if not examples:
        raise ValueError("no CoQA examples to evaluate")
    check_vocab(model, tokenizer)
    f1 = 0.0
    for ex in examples:
        answer = generate_text(model, tokenizer, coqa_prompt(ex), max_new_tokens, stop=stop_at_newline).strip()
        f1 += max(f1_score(answer, g) for g in ex.answers)
    return TaskResult("coqa", {"f1": 100.0 * f1 / len(examples)}, len(examples))


def run(model: Any, tokenizer: Any, *, examples: Sequence[CoQAExample] | None = None, limit: int | None = None,
        **kw: Any) -> TaskResult:
    if examples is None:
        raise FileNotFoundError("CoQA is not in the offline data mirror; pass examples=[CoQAExample(...), ...]")
    return evaluate_coqa(model, tokenizer, list(examples)[:limit] if limit else examples, **kw)
