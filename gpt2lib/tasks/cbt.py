"""Children's Book Test (GPT-2 §3.2): CBT-CN and CBT-NE, Table 3's two CBT columns.

Each example is 20 sentences of a children's book (the context), a 21st sentence with one word
blanked out (``XXXXX``) and 10 candidate words; CBT-CN uses common nouns, CBT-NE named entities.
The paper: "Following the LM approach introduced in the original paper, we compute the probability
of each choice and the rest of the sentence conditioned on this choice according to the LM, and
predict the one with the highest probability." So for each candidate ``c``: the context is the 20
sentences plus the query up to the blank; the scored continuation is ``c`` + the rest of the query;
the prediction is the candidate with the highest log-probability. (Reported in Table 3: 87.65 /
83.4 for 117M on CN / NE.)

Table 3's protocol, which the tasks ``cbt-cn`` / ``cbt-ne`` follow by default:

* the **validation** split. The paper: "Data overlap analysis showed one of the CBT test set books,
  The Jungle Book by Rudyard Kipling, is in WebText, so we report results on the validation set
  which has no significant overlap." (§3.2). ``split="test"`` scores the test files instead; the
  result is then named ``cbt-cn-test`` / ``cbt-ne-test`` and is not printed beside Table 3.
* **de-tokenized** text: "A de-tokenizer was applied to remove PTB style tokenization artifacts
  from CBT" (§3.2); ours is :func:`gpt2lib.detokenize.cbt_detokenize` (```` `` ```` / ``''`` quotes,
  ``-LRB-`` brackets, split clitics and punctuation), applied to the 20 sentences and the query
  (``detokenize=False`` scores the raw tokens).

Data: ``CBTest.tgz`` (Hill et al. 2016), registered as ``"cbt"`` in :mod:`gpt2lib.datasets` with
its canonical URL, size and sha256; not in the offline mirror (120 MB), so it is downloaded into the
cache on first use. Its members ``CBTest/data/cbtest_{CN,NE}_valid_2000ex.txt`` (2,000 questions
each) and ``..._test_2500ex.txt`` (2,500) are the splits (:data:`MEMBERS`). :func:`read_cbt` parses
that format: blocks of lines ``"1 sentence"`` ... ``"20 sentence"``,
``"21 query\\tanswer\\t\\tc1|c2|...|c10"``, blank line between.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from gpt2lib import datasets
from gpt2lib.detokenize import cbt_detokenize
from gpt2lib.evaluate import TaskResult, check_vocab, score_continuations

__all__ = ["CBTExample", "read_cbt", "parse_cbt", "detokenize_example", "candidate_pairs", "evaluate_cbt", "run",
           "run_cn", "run_ne", "MEMBERS", "TEST_MEMBERS", "SPLITS"]

MEMBERS = {(kind, split): f"CBTest/data/cbtest_{kind.upper()}_{split}_{n}ex.txt"
           for kind in ("cn", "ne") for split, n in (("valid", 2000), ("test", 2500))}
TEST_MEMBERS = {kind: MEMBERS[kind, "test"] for kind in ("cn", "ne")}
SPLITS = ("valid", "test")

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


def detokenize_example(ex: CBTExample) -> CBTExample:
    """The example with its context and query de-tokenized (:func:`gpt2lib.detokenize.cbt_detokenize`)."""
    query = cbt_detokenize(ex.query)
    if query.count(BLANK) != ex.query.count(BLANK):
        raise ValueError(f"de-tokenizing lost the blank of {ex.query!r}")
    return CBTExample(cbt_detokenize(ex.context), query, list(ex.candidates), ex.answer)


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
                 progress: bool = False, name: str = "cbt", detokenize: bool = False,
                 split: str = "") -> TaskResult:
    """Accuracy on ``examples`` (module docstring); ``detokenize``: apply :func:`detokenize_example` first."""
    if not examples:
        raise ValueError("no CBT examples to evaluate")
    check_vocab(model, tokenizer)
    if detokenize:
        examples = [detokenize_example(ex) for ex in examples]
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
    settings = {"questions": len(examples), "candidates": 10, "scored": "candidate + rest of the query sentence",
                "de-tokenized": "yes (PTB artifacts removed)" if detokenize else "no (raw CBT tokens)"}
    if split:
        settings = {"split": split, **settings}
    return TaskResult(name, {"acc": 100.0 * right / len(examples)}, len(examples), settings=settings)


def run(model: Any, tokenizer: Any, *, limit: int | None = None, batch_size: int = 8, progress: bool = False,
        path: str | None = None, name: str = "cbt", detokenize: bool = True, **_: Any) -> TaskResult:
    """A CBT file you have (``path``), de-tokenized by default; ``limit``: the first N questions."""
    if path is None:
        raise FileNotFoundError("task 'cbt' needs path= to a CBT file; use the tasks 'cbt-cn' / 'cbt-ne' for the "
                                "test sets of CBTest.tgz (downloaded by gpt2lib.datasets)")
    examples = read_cbt(path)
    return evaluate_cbt(model, tokenizer, examples[:limit] if limit else examples, batch_size=batch_size,
                        progress=progress, name=name, detokenize=detokenize, split=str(path))


def _run_split(kind: str, model: Any, tokenizer: Any, *, limit: int | None = None, batch_size: int = 8,
               progress: bool = False, archive: str | Path | None = None, split: str = "valid",
               detokenize: bool = True, **_: Any) -> TaskResult:
    if split not in SPLITS:
        raise ValueError(f"CBT split must be one of {', '.join(SPLITS)}, got {split!r}")
    archive = archive or datasets.download("cbt", progress=progress)
    member = MEMBERS[kind, split]
    examples = parse_cbt(datasets.read_member(archive, member).decode("utf-8"), f"{archive}:{member}")
    name = f"cbt-{kind}" if split == "valid" else f"cbt-{kind}-test"
    label = ("validation (Table 3's split)" if split == "valid"
             else "test (not Table 3's split: its book The Jungle Book is in WebText)")
    return evaluate_cbt(model, tokenizer, examples[:limit] if limit else examples, batch_size=batch_size,
                        progress=progress, name=name, detokenize=detokenize, split=label)


def run_cn(model: Any, tokenizer: Any, **kw: Any) -> TaskResult:
    """CBT-CN (common nouns): the validation split (2,000 questions, Table 3's), de-tokenized; ``split="test"``:
    the 2,500 test questions; ``limit``: the first N; ``archive``: a CBTest.tgz."""
    return _run_split("cn", model, tokenizer, **kw)


def run_ne(model: Any, tokenizer: Any, **kw: Any) -> TaskResult:
    """CBT-NE (named entities): as :func:`run_cn`."""
    return _run_split("ne", model, tokenizer, **kw)
