"""Summarization with "TL;DR:" and the Lead-3 / Random-3 baselines (GPT-2 §3.6, Table 4).

The paper: "To induce summarization behavior we add the text TL;DR: after the article and
generate 100 tokens with Top-k random sampling (Fan et al., 2018) with k = 2 which reduces
repetition and encourages more abstractive summaries than greedy decoding. We use the first 3
generated sentences in these 100 tokens as the summary." Table 4 compares this with the article's
first 3 sentences (Lead-3) and 3 random sentences of the article (Random-3): :data:`PAPER_TABLE4`.

Data: the mirror's 250 CNN/Daily Mail test articles (FRANK benchmark, ``cnn-dailymail-articles``),
each checked to be in the official 11,490-story test split (See et al. 2017: story id = sha1(url)),
see :func:`load_cnndm_articles`. Their reference highlights are PTB-tokenized (``Friday .``,
``Locke 's``, ```` ` gold digger ' ````); :func:`detokenize_ptb` undoes that before scoring.
FRANK stores *truncated* articles (the inputs its summarizers were given): at most ~1,000 words, 572 on
average, and 84 of the 250 end mid-sentence (their last line, closing quotes and brackets stripped,
does not end with ``.``, ``!`` or ``?``; 137 if a closing quote after the period counts as mid-sentence;
``tests/test_summarization.py`` counts both), where full CNN/DM test stories are longer. Lead-3 does not
notice; Random-3 draws from the kept part only and TL;DR sees only it, so those rows are not exactly the
paper's quantity. Random-3 on 250 articles also depends on its seed: over seeds 0-9, R-1 27.7 +- 0.6
(26.7-28.4) and R-AVG 20.1 +- 0.6 (seed 0, the default, gives 28.2 / 20.7).

Choices the paper does not state (ours):

* Prompt ``article + "\\nTL;DR:"``; "no hint" is the article alone. An article longer than the
  context keeps its *first* tokens (the prompt always ends with the hint and leaves room for the
  100 new tokens).
* Sentences: an article's sentences are those of its paragraphs (the story file's lines), split by
  :func:`split_sentences`; Random-3 keeps its 3 sentences in article order and is seeded.
* ROUGE: Google's ``rouge-score`` with Porter stemming (as ROUGE-1.5.5's ``-m``, used by the
  baselines Table 4 cites), F1 x100, averaged over articles. R-L is the *summary-level* LCS
  (``rougeLsum``, one sentence per line), as in the pyrouge scores of the CNN/DM literature the
  table's baseline rows come from; the plain whole-text LCS is reported too, as ``rougeL_text``.
  R-AVG is the mean of R-1, R-2 and R-L.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from gpt2lib.datasets import download
from gpt2lib.errors import optional_import
from gpt2lib.evaluate import TaskResult, check_vocab, generate_text

__all__ = ["PAPER_TABLE4", "Article", "split_sentences", "first_sentences", "detokenize_ptb", "official_test_ids",
           "load_cnndm_articles", "lead3", "random3", "summarize", "rouge", "evaluate_baselines",
           "evaluate_summarization", "table4", "run"]

# Radford et al. (2019), Table 4, "Summarization performance as measured by ROUGE F1 metrics on the CNN and
# Daily Mail dataset": R-1, R-2, R-L, R-AVG.
PAPER_TABLE4: dict[str, tuple[float, float, float, float]] = {
    "Bottom-Up Sum": (41.22, 18.68, 38.34, 32.75),
    "Lede-3": (40.38, 17.66, 36.62, 31.55),
    "Seq2Seq + Attn": (31.33, 11.81, 28.83, 23.99),
    "GPT-2 TL;DR:": (29.34, 8.27, 26.58, 21.40),
    "Random-3": (28.78, 8.63, 25.52, 20.98),
    "GPT-2 no hint": (21.58, 4.03, 19.47, 15.03),
}

HINT = "\nTL;DR:"

_CLOSERS = "\"')]’”"
# A sentence ends at . ! ? (optionally followed by closing quotes/brackets) and then whitespace, unless the
# word before the point is a common abbreviation (Mr. Dr. St. ...) or a single capital initial (J. R.).
_ABBREVIATIONS = ("Mr", "Mrs", "Ms", "Dr", "Prof", "St", "Jr", "Sr", "Gen", "Gov", "Sen", "Rep", "Rev", "Sgt",
                  "Capt", "Lt", "Col", "Spc", "Mt", "No", "vs", "Co", "Inc", "Ltd", "Corp")
_SENTENCE_END = re.compile(r"[.!?][" + re.escape(_CLOSERS) + r"]*\s+")
_NO_BREAK_BEFORE = re.compile(r"(?:\b(?:" + "|".join(_ABBREVIATIONS) + r")|\b[A-Z])\.$")


@dataclass(frozen=True)
class Article:
    """One CNN/Daily Mail test story: ``paragraphs`` are its lines, ``reference`` its de-tokenized highlights."""

    id: str  # sha1 of the story's URL, as in the official split
    url: str
    paragraphs: tuple[str, ...]
    reference: str

    @property
    def text(self) -> str:
        return " ".join(self.paragraphs)

    @property
    def sentences(self) -> list[str]:
        return [s for p in self.paragraphs for s in split_sentences(p)]


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``: each ends at ``.``, ``!`` or ``?`` (plus closing quotes or brackets) followed by
    whitespace, except after an abbreviation such as ``Mr.`` or a capital initial such as ``J.``; the rest
    of the text, if any, is the last sentence."""
    text = text.strip()
    out, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        head = text[start:m.start() + 1]
        if m.group().startswith(".") and _NO_BREAK_BEFORE.search(head):
            continue
        out.append(text[start:m.end()].strip())
        start = m.end()
    if text[start:].strip():
        out.append(text[start:].strip())
    return out


def first_sentences(text: str, n: int = 3) -> str:
    """The first ``n`` sentences of ``text`` (:func:`split_sentences`), joined by single spaces."""
    return " ".join(split_sentences(text)[:n])


_PTB_SYMBOLS = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}",
                "``": '"', "''": '"', "`": "'"}
_ATTACH_LEFT = {"n't", "'s", "'re", "'ve", "'ll", "'d", "'m", "'S", "N'T", "'RE", "'VE", "'LL", "'D", "'M",
                ".", ",", ";", ":", "!", "?", "%", "...", "''", "'", "-RRB-", "-RSB-", "-RCB-", ")", "]", "}"}
_ATTACH_RIGHT = {"``", "`", "$", "£", "€", "#", "-LRB-", "-LSB-", "-LCB-", "(", "[", "{"}


def detokenize_ptb(text: str) -> str:
    """Undo Penn-Treebank tokenization of CNN/DM highlights: ``Locke 's first game , on Friday .`` ->
    ``Locke's first game, on Friday.``; ```` `` ```` / ``''`` -> ``"``, `````` ` `````` -> ``'``, ``-LRB-`` ->
    ``(``, ``ca n't`` -> ``can't``. Only the spaces next to punctuation and the quote/bracket symbols change."""
    out: list[str] = []
    glue = True  # no space before the next token (start of text, or after an opening quote/bracket)
    for tok in text.split():
        if out and not glue and tok not in _ATTACH_LEFT:
            out.append(" ")
        out.append(_PTB_SYMBOLS.get(tok, tok))
        glue = tok in _ATTACH_RIGHT
    return "".join(out)


def official_test_ids(url_list: str | Path | None = None) -> set[str]:
    """The story ids (sha1 of each URL) of the official CNN/Daily Mail test split (``all_test.txt``)."""
    if url_list is None:
        url_list = download("cnn-dailymail-test-urls", progress=False)
    with open(url_list, encoding="utf-8") as f:
        return {hashlib.sha1(line.strip().encode("utf-8")).hexdigest() for line in f if line.strip()}


def load_cnndm_articles(folder: str | Path | None = None, *, url_list: str | Path | None = None) -> list[Article]:
    """The CNN/Daily Mail test articles of ``folder`` (default: the 250 of ``cnn-dailymail-articles``),
    sorted by id. Each file must be JSON with ``url``, ``article_lines`` and ``bart_reference``; its id
    (file name) must be sha1(url) and be in the official test split, else ``ValueError`` names the file."""
    if folder is None:
        folder = download("cnn-dailymail-articles", progress=False)
    split = official_test_ids(url_list)
    files = sorted(Path(folder).glob("*.json"))
    if not files:
        raise FileNotFoundError(f"no CNN/Daily Mail article files (*.json) in {folder}")
    out = []
    for path in files:
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            url, lines, ref = d["url"], d["article_lines"], d["bart_reference"]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: not a CNN/DM article file with url, article_lines, bart_reference ({e!r})") from None
        story_id = hashlib.sha1(url.encode("utf-8")).hexdigest()
        if path.stem != story_id:
            raise ValueError(f"{path}: file name is not sha1 of its url {url!r} ({story_id})")
        if story_id not in split:
            raise ValueError(f"{path}: story {story_id} is not in the official CNN/Daily Mail test split")
        paragraphs = tuple(p.strip() for p in lines if p.strip())
        out.append(Article(story_id, url, paragraphs, detokenize_ptb(ref)))
    return out


def lead3(article: Article) -> str:
    """The Lead-3 baseline: the article's first 3 sentences."""
    return " ".join(article.sentences[:3])


def random3(article: Article, rng: random.Random) -> str:
    """The Random-3 baseline: 3 sentences drawn without replacement (all if fewer), kept in article order."""
    sents = article.sentences
    keep = sorted(rng.sample(range(len(sents)), min(3, len(sents))))
    return " ".join(sents[i] for i in keep)


def summarize(model: Any, tokenizer: Any, article: str, *, max_new_tokens: int = 100, top_k: int = 2,
              hint: bool = True, generator: torch.Generator | None = None) -> str:
    """TL;DR summary: top-k (k=2) sampling of ``max_new_tokens`` after ``article + "\\nTL;DR:"`` (or the
    article alone, ``hint=False``), first 3 sentences kept. A long article keeps its first tokens."""
    ids = tokenizer.encode(article.strip())
    suffix = tokenizer.encode(HINT) if hint else []
    room = max(1, int(model.config.block_size) - max_new_tokens - len(suffix))
    text = generate_text(model, tokenizer, ids[:room] + suffix, max_new_tokens, temperature=1.0, top_k=top_k,
                         generator=generator)
    return first_sentences(text, 3)


def rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE F1 (x100) with ``rouge_score`` and Porter stemming: ``rouge1``, ``rouge2``, ``rougeL``
    (summary-level LCS over sentences, ``rougeLsum``), ``rougeL_text`` (LCS of the whole texts) and
    ``rouge_avg`` = mean of R-1, R-2, R-L."""
    rouge_scorer = optional_import("rouge_score.rouge_scorer")
    if len(predictions) != len(references) or not predictions:
        raise ValueError(f"need equally many (>0) predictions and references, got {len(predictions)}, {len(references)}")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    names = {"rouge1": "rouge1", "rouge2": "rouge2", "rougeLsum": "rougeL", "rougeL": "rougeL_text"}
    totals = dict.fromkeys(names.values(), 0.0)
    for p, r in zip(predictions, references):
        lines = lambda t: "\n".join(split_sentences(t))  # noqa: E731  rougeLsum reads one sentence per line
        for k, v in scorer.score(lines(r), lines(p)).items():
            totals[names[k]] += v.fmeasure
    out = {k: 100.0 * totals[k] / len(predictions) for k in ("rouge1", "rouge2", "rougeL", "rougeL_text")}
    out["rouge_avg"] = (out["rouge1"] + out["rouge2"] + out["rougeL"]) / 3
    return out


def evaluate_baselines(articles: Sequence[Article], *, seed: int = 0) -> dict[str, TaskResult]:
    """Lead-3 and Random-3 (``random.Random(seed)``, articles in the given order) scored on ``articles``."""
    if not articles:
        raise ValueError("no articles to evaluate")
    rng = random.Random(seed)
    refs = [a.reference for a in articles]
    return {
        "Lead-3": TaskResult("summarization", rouge([lead3(a) for a in articles], refs), len(articles), "Lead-3"),
        "Random-3": TaskResult("summarization", rouge([random3(a, rng) for a in articles], refs), len(articles),
                               "Random-3", notes=f"seed {seed}"),
    }


def evaluate_summarization(model: Any, tokenizer: Any, examples: Sequence[tuple[str, str]] | Sequence[Article], *,
                           seed: int = 0, max_new_tokens: int = 100, hint: bool = True, progress: bool = False,
                           **_: Any) -> TaskResult:
    """TL;DR on ``examples`` ((article, reference) pairs or :class:`Article`); seeded sampling with a
    generator on the model's device, so reruns agree."""
    if not examples:
        raise ValueError("no summarization examples to evaluate")
    check_vocab(model, tokenizer)
    pairs = [(e.text, e.reference) if isinstance(e, Article) else tuple(e) for e in examples]
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    if progress:
        pairs = tqdm(pairs, desc="summarization")
    preds, refs = [], []
    for article, ref in pairs:
        preds.append(summarize(model, tokenizer, article, max_new_tokens=max_new_tokens, hint=hint, generator=gen))
        refs.append(ref)
    notes = f"{'TL;DR' if hint else 'no hint'}, top-k 2, {max_new_tokens} tokens, seed {seed}"
    return TaskResult("summarization", rouge(preds, refs), len(refs), notes=notes)


def table4(rows: dict[str, dict[str, float]], paper: dict[str, str] | None = None) -> str:
    """A markdown table of our ROUGE rows (name -> :func:`rouge` metrics) beside the paper's Table 4 row
    ``paper[name]`` (default: the row of the same name; ``Lead-3`` is the paper's ``Lede-3``)."""
    lines = ["| ours | R-1 | R-2 | R-L | R-AVG | paper row | R-1 | R-2 | R-L | R-AVG |",
             "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |"]
    paper = {"Lead-3": "Lede-3", **(paper or {})}
    for name, m in rows.items():
        row = paper.get(name, name)
        cells = [f"{m[k]:.2f}" for k in ("rouge1", "rouge2", "rougeL", "rouge_avg")]
        if row in PAPER_TABLE4:
            cells += [row] + [f"{v:.2f}" for v in PAPER_TABLE4[row]]
        else:
            cells += ["-"] * 5
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(model: Any, tokenizer: Any, *, examples: Sequence[tuple[str, str]] | Sequence[Article] | None = None,
        limit: int | None = None, **kw: Any) -> TaskResult:
    """TL;DR on ``examples`` (default: the mirror's 250 CNN/Daily Mail test articles)."""
    if examples is None:
        examples = load_cnndm_articles()
    return evaluate_summarization(model, tokenizer, list(examples)[:limit] if limit else examples, **kw)
