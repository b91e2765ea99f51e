"""Children's Book Test (GPT-2 §3.2). Method only: CBT is not in the offline data mirror.

Each example is 20 sentences of a children's book (the context), a 21st sentence with one word
blanked out (``XXXXX``) and 10 candidate words; CBT-CN uses common nouns, CBT-NE named entities.
The paper: "Following the LM approach introduced in the original paper, we compute the probability
of each choice and the rest of the sentence conditioned on this choice according to the LM, and
predict the one with the highest probability." So for each candidate ``c``: the context is the 20
sentences plus the query up to the blank; the scored continuation is ``c`` + the rest of the query;
the prediction is the candidate with the highest log-probability. (Reported in Table 3: 87.65 /
83.4 for 117M on CN / NE.)

:func:`read_cbt` parses the original files (``cbtest_CN_test_2500ex.txt``) if you have them:
blocks of lines ``"1 sentence"`` ... ``"20 sentence"``, ``"21 query\\tanswer\\t\\tc1|c2|...|c10"``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from gpt2lib.evaluate import TaskResult, check_vocab, score_continuations

__all__ = ["CBTExample", "read_cbt", "candidate_pairs", "evaluate_cbt", "run"]

BLANK = "XXXXX"


@dataclass
class CBTExample:
    context: str  # the 20 sentences
    query: str  # the 21st sentence, with BLANK
    candidates: list[str]
    answer: str


def read_cbt(path: str | Path) -> list[CBTExample]:
    """Parse a CBT file; ``ValueError`` with the line number on a malformed question line."""
    examples, sentences = [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                sentences = []
                continue
            num, _, rest = line.partition(" ")
            if num == "21":
                parts = rest.split("\t")
                if len(parts) != 4 or BLANK not in parts[0]:
                    raise ValueError(f"{path}:{lineno}: expected 'query\\tanswer\\t\\tc1|...|c10'")
                examples.append(CBTExample(" ".join(sentences), parts[0], parts[3].split("|"), parts[1]))
            else:
                sentences.append(rest)
    return examples


def candidate_pairs(ex: CBTExample) -> list[tuple[str, str]]:
    """(context, continuation) per candidate: the blank is filled and the rest of the sentence follows."""
    if ex.query.count(BLANK) != 1:
        raise ValueError(f"query must contain exactly one {BLANK}: {ex.query!r}")
    if ex.answer not in ex.candidates:
        raise ValueError(f"answer {ex.answer!r} is not among the candidates {ex.candidates}")
    before, after = ex.query.split(BLANK)
    context = (ex.context + " " + before).rstrip(" ")
    sep = " " if before.endswith(" ") or not before else ""
    return [(context, sep + c + after) for c in ex.candidates]


def evaluate_cbt(model: Any, tokenizer: Any, examples: Sequence[CBTExample], *, batch_size: int = 8,
                 progress: bool = False) -> TaskResult:
    if not examples:
        raise ValueError("no CBT examples to evaluate")
    check_vocab(model, tokenizer)
    ctxs, conts, spans = [], [], []
    for ex in examples:
        pairs = candidate_pairs(ex)
        spans.append((len(ctxs), len(pairs)))
        ctxs += [tokenizer.encode(c) for c, _ in pairs]
        conts += [tokenizer.encode(c) for _, c in pairs]
    scores = score_continuations(model, ctxs, conts, batch_size, n_vocab=tokenizer.n_vocab, bos=tokenizer.eot,
                                 progress=progress, desc="cbt")
    right = 0
    for ex, (start, k) in zip(examples, spans):
        best = max(range(k), key=lambda j: scores[start + j].logprob)
        right += ex.candidates[best] == ex.answer
    return TaskResult("cbt", {"acc": 100.0 * right / len(examples)}, len(examples))


def run(model: Any, tokenizer: Any, *, limit: int | None = None, batch_size: int = 8, progress: bool = False,
        path: str | None = None) -> TaskResult:
    if path is None:
        raise FileNotFoundError("CBT is not in the offline data mirror; pass path= to a CBT file "
                                "(e.g. cbtest_CN_test_2500ex.txt from the CBT release)")
    examples = read_cbt(path)
    return evaluate_cbt(model, tokenizer, examples[:limit] if limit else examples, batch_size=batch_size,
                        progress=progress)
