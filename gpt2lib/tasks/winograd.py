"""Winograd Schema Challenge, WSC273 (GPT-2 §3.4).

Data: ``WSCollection.xml`` (Ernest Davis's collection); the first 273 schemas are WSC273.
Each schema is ``txt1 <pronoun> txt2`` with two candidate referents, e.g. "The trophy doesn't fit
into the brown suitcase because [it] is too large." -> "the trophy" / "the suitcase".

Method: the paper (§3.4) "follow[s] the problem formulation of Trinh & Le (2018) and visualize[s]
the performance of our models with both full and partial scoring techniques", reaching 70.70% with
1542M. The pronoun is replaced by each candidate and the model picks the more probable sentence:

* full scoring: log p(txt1 + candidate + txt2), the whole substituted sentence;
* partial scoring: log p(txt2 | txt1 + candidate), only the words after the substitution,
  so the candidates' own (un)likelihood does not count.

Substitution details (ours): whitespace is normalized; a candidate's leading article ("The", "A")
is lower-cased unless the pronoun starts a sentence (capitalized, or nothing before it), in which
case the candidate's first letter is capitalized;
the possessives "his"/"their"/"its" become "candidate's" ("her" is left as a plain substitution,
since it can be either possessive or object).
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, Sequence

from gpt2lib import datasets
from gpt2lib.evaluate import TaskResult, check_vocab, score_continuations

__all__ = ["WinogradSchema", "load_wsc273", "substitute", "evaluate_winograd", "run"]


@dataclass
class WinogradSchema:
    txt1: str
    pronoun: str
    txt2: str
    candidates: tuple[str, str]
    answer: int  # 0 or 1


def _clean(s: str | None) -> str:
    return " ".join((s or "").split())


def load_wsc273(path: str | None = None, n: int = 273) -> list[WinogradSchema]:
    """Parse the first ``n`` schemas of WSCollection.xml (``ValueError`` on a malformed schema)."""
    path = path or datasets.download("wsc", progress=False)
    root = ET.parse(path).getroot()
    schemas = []
    for i, node in enumerate(root.iter("schema")):
        if len(schemas) == n:
            break
        answers = [_clean(a.text) for a in node.iter("answer")]
        correct = _clean(node.findtext("correctAnswer")).rstrip(".").strip().upper()
        if len(answers) != 2 or correct not in ("A", "B"):
            raise ValueError(f"{path}: schema {i + 1} is malformed (answers={answers}, correct={correct!r})")
        schemas.append(WinogradSchema(_clean(node.findtext("text/txt1")), _clean(node.findtext("text/pron")),
                                      _clean(node.findtext("text/txt2")), (answers[0], answers[1]),
                                      "AB".index(correct)))
    return schemas


def substitute(schema: WinogradSchema, candidate: str) -> tuple[str, str]:
    """(prefix ending with the candidate, rest of the sentence) for one candidate."""
    cand = candidate
    if schema.txt1 and not schema.pronoun[:1].isupper():
        cand = re.sub(r"^(The|A|An) ", lambda m: m.group(1).lower() + " ", cand)
    else:  # the pronoun starts a sentence
        cand = cand[:1].upper() + cand[1:]
    if schema.pronoun.lower() in ("his", "their", "its"):
        cand += "'s"
    prefix = f"{schema.txt1} {cand}".strip()
    rest = schema.txt2 if schema.txt2[:1] in ".,;:!?'" else " " + schema.txt2
    return prefix, rest


def evaluate_winograd(model: Any, tokenizer: Any, schemas: Sequence[WinogradSchema], *, batch_size: int = 8,
                      progress: bool = False) -> TaskResult:
    """Accuracy (%) of full and partial scoring (Trinh & Le 2018) over ``schemas``."""
    if not schemas:
        raise ValueError("no Winograd schemas to evaluate")
    check_vocab(model, tokenizer)
    full_ctx, full_cont, part_ctx, part_cont = [], [], [], []
    for s in schemas:
        for cand in s.candidates:
            prefix, rest = substitute(s, cand)
            full_ctx.append([])
            full_cont.append(tokenizer.encode(prefix + rest))
            part_ctx.append(tokenizer.encode(prefix))
            part_cont.append(tokenizer.encode(rest))
    kw = dict(n_vocab=tokenizer.n_vocab, bos=tokenizer.eot, progress=progress)
    full = score_continuations(model, full_ctx, full_cont, batch_size, desc="winograd full", **kw)
    part = score_continuations(model, part_ctx, part_cont, batch_size, desc="winograd partial", **kw)

    def accuracy(scores) -> float:
        right = 0
        for j, s in enumerate(schemas):
            a, b = scores[2 * j].logprob, scores[2 * j + 1].logprob
            right += (0 if a > b else 1) == s.answer
        return 100.0 * right / len(schemas)

    return TaskResult("winograd", {"acc": accuracy(part), "acc_full": accuracy(full)}, len(schemas),
                      notes="acc = partial scoring (Trinh & Le 2018); acc_full = full-sentence scoring")


def run(model: Any, tokenizer: Any, *, limit: int | None = None, batch_size: int = 8, progress: bool = False,
        path: str | None = None) -> TaskResult:
    schemas = load_wsc273(path)
    return evaluate_winograd(model, tokenizer, schemas[:limit] if limit else schemas, batch_size=batch_size,
                             progress=progress)
