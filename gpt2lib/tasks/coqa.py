"""CoQA, conversational question answering (GPT-2 §3.5), with the official data format and F1.

The paper: "Greedy decoding from GPT-2 when conditioned on a document, the history of the
associated conversation, and a final token A: achieves 55 F1 on the development set" (1542M).
Prompt format (ours; the paper gives only the ingredients)::

    <story>

    Q: <question 1>
    A: <answer 1>

    Q: <question n>
    A:

The history holds the earlier questions of the same story with their gold (first) answers. The
answer is the greedy continuation up to the first newline.

Data: CoQA dev v1.0 (Reddy et al. 2019), ``coqa-dev-v1.0.json`` from the official site (dataset name
``"coqa-dev"`` in :mod:`gpt2lib.datasets`; not in the offline mirror). :func:`read_coqa` reads the
official JSON layout: ``data`` -> stories with ``id``, ``source``, ``story``, ``questions``
(``input_text``, ``turn_id``), ``answers`` and ``additional_answers`` (three more human answers per
turn, keyed ``"0"``, ``"1"``, ``"2"``).

Score: as the official evaluation script (``evaluate-v1.0.py``) computes it. Answers are normalized
SQuAD-style (lower-case, punctuation removed, the articles a/an/the removed, spaces squeezed) and
compared by token F1. A turn with n > 1 human answers scores the average, over each human answer
left out in turn, of the best F1 against the n - 1 others (so a model is scored like a human);
a turn with one answer scores F1 against it. The result is the mean over all turns, x100.
"""
from __future__ import annotations

import collections
import json
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm

from gpt2lib.datasets import download
from gpt2lib.evaluate import TaskResult, check_vocab, generate_text, prompt_room

__all__ = ["CoQAExample", "normalize_answer", "f1_score", "exact_match", "turn_score", "read_coqa", "coqa_prompt",
           "evaluate_coqa", "run", "stop_at_newline"]


@dataclass
class CoQAExample:
    """One turn: the story, the question, every human answer (first = the primary one), the earlier turns."""

    story: str
    question: str
    answers: list[str]
    history: list[tuple[str, str]] = field(default_factory=list)
    story_id: str = ""
    turn_id: int = 0
    source: str = ""


_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(s: str) -> str:
    """SQuAD / CoQA normalization: lower-case, drop punctuation, drop the articles a/an/the, squeeze spaces."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def f1_score(prediction: str, gold: str) -> float:
    """Token-overlap F1 between normalized answers (1.0 when both are empty, 0.0 when only one is)."""
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


def turn_score(prediction: str, golds: Sequence[str]) -> dict[str, float]:
    """The official per-turn ``em`` and ``f1`` (0-1): with several human answers, leave each one out in turn,
    take the best score against the others, and average; with one, the score against it."""
    if not golds:
        raise ValueError("a CoQA turn needs at least one gold answer")
    groups = [list(golds[:i]) + list(golds[i + 1:]) for i in range(len(golds))] if len(golds) > 1 else [list(golds)]
    return {
        "em": sum(max(float(exact_match(prediction, g)) for g in group) for group in groups) / len(groups),
        "f1": sum(max(f1_score(prediction, g) for g in group) for group in groups) / len(groups),
    }


def _bad(path: Any, where: str, what: str) -> ValueError:
    return ValueError(f"{path}: {where}: {what} (expected the official CoQA v1.0 JSON layout)")


def read_coqa(path: str | Path) -> list[CoQAExample]:
    """Every turn of an official CoQA JSON file, in file order. The gold answers of a turn are the
    primary answer followed by the ``additional_answers`` in key order; the history is the earlier
    turns' questions with their primary answers. A malformed file raises ``ValueError`` naming the
    file, the story and the turn."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not an official CoQA JSON file with a 'data' list ({e!r})") from None
    out: list[CoQAExample] = []
    for n, story in enumerate(data):
        sid = story.get("id", f"#{n}") if isinstance(story, dict) else f"#{n}"
        try:
            text, questions, answers = story["story"], story["questions"], story["answers"]
            extra = story.get("additional_answers") or {}
            answer_lists = [answers] + [extra[k] for k in sorted(extra)]
        except (KeyError, TypeError) as e:
            raise _bad(path, f"story {sid}", f"missing {e}") from None
        history: list[tuple[str, str]] = []
        for i, q in enumerate(questions):
            turn = i + 1
            golds = []
            try:
                for lst in answer_lists:
                    if i >= len(lst):
                        raise _bad(path, f"story {sid} turn {turn}", "an answer list is shorter than the questions")
                    if lst[i].get("turn_id") != turn or q.get("turn_id") != turn:
                        raise _bad(path, f"story {sid} turn {turn}", "turn_id does not match the position")
                    golds.append(lst[i]["input_text"])
                question = q["input_text"]
            except (KeyError, TypeError, AttributeError) as e:  # a question or answer that is not an object
                raise _bad(path, f"story {sid} turn {turn}", f"a question or answer lacks input_text ({e!r})") from None
            if not isinstance(question, str) or not all(isinstance(g, str) for g in golds):
                raise _bad(path, f"story {sid} turn {turn}", "input_text is not a string")
            out.append(CoQAExample(text, question, golds, list(history), str(sid), turn, story.get("source", "")))
            history.append((question, golds[0]))
    if not out:
        raise ValueError(f"{path}: no CoQA questions found")
    return out


def coqa_prompt(ex: CoQAExample) -> str:
    turns = "".join(f"Q: {q}\nA: {a}\n\n" for q, a in ex.history)
    return f"{ex.story.strip()}\n\n{turns}Q: {ex.question}\nA:"


def stop_at_newline(text: str) -> int | None:
    i = text.find("\n")
    return i if i >= 0 else None


def evaluate_coqa(model: Any, tokenizer: Any, examples: Sequence[CoQAExample], *, max_new_tokens: int = 32,
                  progress: bool = False, **_: Any) -> TaskResult:
    """Greedy answers scored with the official per-turn F1 / EM (:func:`turn_score`), averaged over turns."""
    if not examples:
        raise ValueError("no CoQA examples to evaluate")
    check_vocab(model, tokenizer)
    if progress:
        examples = tqdm(examples, desc="coqa")
    room = prompt_room(model, max_new_tokens)
    f1 = em = 0.0
    n = cut = 0
    for ex in examples:
        prompt = tokenizer.encode(coqa_prompt(ex))
        cut += len(prompt) > room
        answer = generate_text(model, tokenizer, prompt, max_new_tokens, stop=stop_at_newline,
                               on_overflow="left").strip()  # a long story loses its beginning; counted below
        s = turn_score(answer, ex.answers)
        f1, em, n = f1 + s["f1"], em + s["em"], n + 1
    settings = {"max_new_tokens": max_new_tokens,
                "prompts cut": f"{cut} of {n} (their oldest tokens dropped to fit the {room + max_new_tokens}-token "
                               f"context beside {max_new_tokens} new tokens)"}
    return TaskResult("coqa", {"f1": 100.0 * f1 / n, "em": 100.0 * em / n}, n, settings=settings,
                      notes="official CoQA F1 and exact match (leave-one-out over the human answers), greedy "
                            f"decoding; {cut} of {n} prompts were cut from the left to fit the context")


def run(model: Any, tokenizer: Any, *, examples: Sequence[CoQAExample] | None = None, path: str | Path | None = None,
        limit: int | None = None, **kw: Any) -> TaskResult:
    """CoQA dev: ``examples``, or the turns of ``path``, or of ``coqa-dev-v1.0.json`` fetched by
    :func:`gpt2lib.datasets.download` (not in the offline mirror: it needs the network or a cached copy)."""
    if examples is None:
        if path is None:
            path = download("coqa-dev")
        examples = read_coqa(path)
    return evaluate_coqa(model, tokenizer, list(examples)[:limit] if limit else examples, **kw)
