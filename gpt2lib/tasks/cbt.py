"""Children's Book Test (GPT-2 §3.2): CBT-CN and CBT-NE, Table 3's two CBT columns.

Each example is 20 sentences of a children's book (the context), a 21st sentence with one word
blanked out (``XXXXX``) and 10 candidate words; CBT-CN uses common nouns, CBT-NE named entities.
The paper: "Following the LM approach introduced in the original paper, we compute the probability
of each choice and the rest of the sentence conditioned on this choice according to the LM, and
predict the one with the highest probability." So for each candidate ``c``: the context is the 20
sentences plus the query up to the blank; the scored continuation is ``c`` + the rest of the query;
the prediction is the candidate with the highest log-probability. (Reported in Table 3: 87.65 /
83.4 for 117M on CN / NE.)

Data: ``CBTest.tgz`` (Hill et al. 2016), registered as ``"cbt"`` in :mod:`gpt2lib.datasets` with
its canonical URL, size and sha256; not in the offline mirror (120 MB), so it is downloaded into the
cache on first use. Its members ``CBTest/data/cbtest_CN_test_2500ex.txt`` and ``..._NE_...`` are
the test sets (2,500 questions each). :func:`read_cbt` parses that format: blocks of lines
``"1 sentence"`` ... ``"20 sentence"``, ``"21 query\\tanswer\\t\\tc1|c2|...|c10"``, blank line between.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from gpt2lib.evaluate import TaskResult, check_vocab, score_continuations

__all__ = ["CBTExample", "read_cbt", "parse_cbt", "candidate_pairs", "evaluate_cbt", "run", "run_cn", "run_ne",
           "TEST_MEMBERS"]

TEST_MEMBERS = {"cn": "CBTest/data/cbtest_CN_test_2500ex.txt", "ne": "CBTest/data/cbtest_NE_test_2500ex.txt"}

BLANK = "XXXXX"


@dataclass
class CBTExample:
    context: str  # the 20 sentences
    query: str  # the 21st sentence, with BLANK
    candidates: list[str]
    answer: str


def read_cbt(path: str | Path) -> list[CBTExample]:
    """Parse a CBT file; ``ValueError`` with the line number on a malformed question line."""
    with open(path, encoding="utf-8") as f:
        return parse_cbt(f.read(), str(path))


def parse_cbt(text: str, source: str = "<cbt>") -> list[CBTExample]:
    """Parse CBT text (see the module docstring); errors name ``source`` and the line."""
    examples, sentences = [], []
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            sentences = []
            continue
        num, _, rest = line.partition(" ")
        if num == "21":
            parts = rest.split("\t")
            if len(parts) != 4 or BLANK not in parts[0]:
                raise ValueError(f"{source}:{lineno}: expected 'query\\tanswer\\t\\tc1|...|c10'")
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
                 progress: bool = False, name: str = "cbt") -> TaskResult:
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
    return TaskResult(name, {"acc": 100.0 * right / len(examples)}, len(examples),
                      settings={"questions": len(examples), "candidates": 10,
                                "scored": "candidate + rest of the query sentence"})


def run(model: Any, tokenizer: Any, *, limit: int | None = None, batch_size: int = 8, progress: bool = False,
        path: str | None = None, name: str = "cbt", **_: Any) -> TaskResult:
    """A CBT file you have (``path``); ``limit``: the first N questions."""
    if path is None:
        raise FileNotFoundError("task 'cbt' needs path= to a CBT file; use the tasks 'cbt-cn' / 'cbt-ne' for the "
                                "test sets of CBTest.tgz (downloaded by gpt2lib.datasets)")
    examples = read_cbt(path)
    return evaluate_cbt(model, tokenizer, examples[:limit] if limit else examples, batch_size=batch_size,
                        progress=progress, name=name)


def _run_split(kind: str, model: Any, tokenizer: Any, *, limit: int | None = None, batch_size: int = 8,
               progress: bool = False, archive: str | Path | None = None, **_: Any) -> TaskResult:
    from gpt2lib import datasets

    archive = archive or datasets.download("cbt", progress=progress)
    member = TEST_MEMBERS[kind]
    examples = parse_cbt(datasets.read_member(archive, member).decode("utf-8"), f"{archive}:{member}")
    return evaluate_cbt(model, tokenizer, examples[:limit] if limit else examples, batch_size=batch_size,
                        progress=progress, name=f"cbt-{kind}")


def run_cn(model: Any, tokenizer: Any, **kw: Any) -> TaskResult:
    """CBT-CN (common nouns) test, 2,500 questions; ``limit``: the first N; ``archive``: a CBTest.tgz."""
    return _run_split("cn", model, tokenizer, **kw)


def run_ne(model: Any, tokenizer: Any, **kw: Any) -> TaskResult:
    """CBT-NE (named entities) test, 2,500 questions; ``limit``: the first N; ``archive``: a CBTest.tgz."""
    return _run_split("ne", model, tokenizer, **kw)
