"""Open-domain question answering on Natural Questions (GPT-2 §3.8).

The paper: "Similar to translation, the context of the language model is seeded with example
question answer pairs which helps the model infer the short answer style of the dataset. GPT-2
answers 4.1% of questions correctly when evaluated by the exact match metric commonly used on
reading comprehension datasets such as SQUAD." and "GPT-2 has an accuracy of 63.1% on the 1% of
questions it is most confident in" (1542M).

Data: NQ-Open dev (3,610 questions with short answers), the open-domain form of Natural Questions.
Prompt (ours): :data:`SEED_PAIRS`, hand-written general-knowledge pairs (not from NQ), as
``"Q: question\\nA: answer\\n\\n"``, then ``"Q: <question>\\nA:"``; greedy decoding to the first
newline. Exact match: SQuAD normalization against any gold answer. Confidence: the probability the
model gives its own answer, ``exp(log p(answer tokens | prompt))``; ``acc_top1pct`` is the exact
match on the ``ceil(1%)`` most confident questions.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from tqdm.auto import tqdm

from gpt2lib import datasets
from gpt2lib.evaluate import TaskResult, check_vocab, generate_text, prompt_room, read_jsonl, score_continuations
from gpt2lib.tasks.coqa import exact_match, stop_at_newline

__all__ = ["SEED_PAIRS", "load_nq_open", "qa_prompt", "evaluate_qa", "run"]

SEED_PAIRS: list[tuple[str, str]] = [
    ("what is the capital city of france", "Paris"),
    ("who wrote the play romeo and juliet", "William Shakespeare"),
    ("how many legs does a spider have", "eight"),
    ("what is the chemical symbol for gold", "Au"),
    ("in which year did the first world war begin", "1914"),
]


def load_nq_open(path: str | None = None) -> list[tuple[str, list[str]]]:
    path = path or datasets.download("nq-open-dev", progress=False)
    out = []
    for obj in read_jsonl(path, required=("question", "answer")):
        if not isinstance(obj["answer"], list) or not obj["answer"]:
            raise ValueError(f"{path}: question {obj['question']!r} has no answer list")
        out.append((obj["question"], obj["answer"]))
    return out


def qa_prompt(question: str, seeds: Sequence[tuple[str, str]] = SEED_PAIRS) -> str:
    return "".join(f"Q: {q}\nA: {a}\n\n" for q, a in seeds) + f"Q: {question}\nA:"


def evaluate_qa(model: Any, tokenizer: Any, examples: Sequence[tuple[str, list[str]]], *,
                seeds: Sequence[tuple[str, str]] = SEED_PAIRS, max_new_tokens: int = 24, batch_size: int = 8,
                progress: bool = False) -> TaskResult:
    if not examples:
        raise ValueError("no questions to evaluate")
    check_vocab(model, tokenizer)
    room = prompt_room(model, max_new_tokens)
    prompts, used = [], []
    for q, _ in examples:  # the most seed pairs that fit beside the answer (a prompt is never cut)
        k = next((k for k in range(len(seeds), -1, -1) if len(tokenizer.encode(qa_prompt(q, seeds[:k]))) <= room), None)
        if k is None:
            raise ValueError(f"the question {q!r} alone does not fit the context beside {max_new_tokens} new tokens")
        prompts.append(qa_prompt(q, seeds[:k]))
        used.append(k)
    answers = [generate_text(model, tokenizer, p, max_new_tokens, stop=stop_at_newline).strip()
               for p in tqdm(prompts, desc="nq", disable=not progress, leave=False)]
    correct = [any(exact_match(a, g) for g in gold) for a, (_, gold) in zip(answers, examples)]
    # Confidence of each generated answer: its log-probability; an empty answer gets -inf.
    scored = [i for i, a in enumerate(answers) if a]
    scores = score_continuations(model, [tokenizer.encode(prompts[i]) for i in scored],
                                 [tokenizer.encode(" " + answers[i]) for i in scored], batch_size,
                                 n_vocab=tokenizer.n_vocab, bos=tokenizer.eot)
    # Ranked by log-probability: exp() of a long answer's log-probability can underflow to 0.0 and
    # tie with the empty answers (log-probability -inf).
    confidence = [-math.inf] * len(answers)
    for i, s in zip(scored, scores):
        confidence[i] = s.logprob
    top = sorted(range(len(answers)), key=lambda i: -confidence[i])[: math.ceil(0.01 * len(answers))]
    metrics = {"exact_match": 100.0 * sum(correct) / len(correct),
               "acc_top1pct": 100.0 * sum(correct[i] for i in top) / len(top)}
    lo, hi = min(used), max(used)
    said = (f"{len(seeds)}" if lo == len(seeds) else f"{len(seeds)} asked, {lo if lo == hi else f'{lo}-{hi}'} used: "
            f"the most that fit the {room + max_new_tokens}-token context beside {max_new_tokens} new tokens")
    return TaskResult("nq", metrics, len(examples), notes=f"seed QA pairs: {said}; greedy answers",
                      settings={"seed pairs": said, "max_new_tokens": max_new_tokens})


def run(model: Any, tokenizer: Any, *, limit: int | None = None, path: str | None = None, **kw: Any) -> TaskResult:
    examples = load_nq_open(path)
    return evaluate_qa(model, tokenizer, examples[:limit] if limit else examples, **kw)
