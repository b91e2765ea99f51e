"""Translation, WMT-14 newstest2014 English<->French (GPT-2 §3.7).

The paper: "we condition the language model on a context of example pairs of the format
english sentence = french sentence and then after a final prompt of english sentence = we sample
from the model with greedy decoding and use the first generated sentence as the translation."
It reports 5 BLEU on WMT-14 En-Fr and 11.5 BLEU on Fr-En (1542M).

Prompt (ours; the paper gives the format, not the examples): the first ``n_shots`` segment pairs
of the test set are the demonstrations, one ``"source = target"`` pair per line, and they are
*left out* of the scored set; then ``"source ="``. For Fr->En the pairs read
``"french sentence = english sentence"``. The translation is the greedy continuation up to the
first newline (one line = one sentence here). BLEU: ``sacrebleu.corpus_bleu`` (13a tokenization).

Data: the official SGML files; :func:`read_sgm` takes every ``<seg id=...>...</seg>`` in order,
tolerating attribute order/quoting and whitespace, and unescaping XML entities.
"""
from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any, Sequence

from gpt2lib import datasets
from gpt2lib.evaluate import TaskResult, check_vocab, generate_text
from gpt2lib.tasks.coqa import stop_at_newline

__all__ = ["read_sgm", "translation_prompt", "evaluate_translation", "run_en_fr", "run_fr_en"]

_SEG = re.compile(r"<seg\b[^>]*>(.*?)</seg\s*>", re.DOTALL | re.IGNORECASE)


def read_sgm(path: str | Path) -> list[str]:
    """The segments of an SGML test file, in document order (``ValueError`` if there are none)."""
    text = Path(path).read_text(encoding="utf-8")
    segs = [" ".join(html.unescape(m).split()) for m in _SEG.findall(text)]
    if not segs:
        raise ValueError(f"{path}: no <seg> elements found")
    return segs


def translation_prompt(shots: Sequence[tuple[str, str]], source: str) -> str:
    return "".join(f"{s} = {t}\n" for s, t in shots) + f"{source} ="


def evaluate_translation(model: Any, tokenizer: Any, sources: Sequence[str], references: Sequence[str], *,
                         name: str, n_shots: int = 5, limit: int | None = None, max_new_tokens: int = 128,
                         progress: bool = False, **_: Any) -> TaskResult:
    import sacrebleu
    from tqdm.auto import tqdm

    if len(sources) != len(references):
        raise ValueError(f"{len(sources)} source segments but {len(references)} references")
    if len(sources) <= n_shots:
        raise ValueError(f"need more than n_shots={n_shots} segments, got {len(sources)}")
    check_vocab(model, tokenizer)
    shots = list(zip(sources[:n_shots], references[:n_shots]))
    todo = list(zip(sources[n_shots:], references[n_shots:]))[:limit or None]  # limit 0/None: all, as elsewhere
    hyps = []
    for src, _ in tqdm(todo, desc=name, disable=not progress, leave=False):
        out = generate_text(model, tokenizer, translation_prompt(shots, src), max_new_tokens, stop=stop_at_newline)
        hyps.append(out.strip())
    bleu = sacrebleu.corpus_bleu(hyps, [[r for _, r in todo]])
    return TaskResult(name, {"bleu": bleu.score}, len(todo), notes=f"{n_shots} demonstration pairs, greedy")


def run_en_fr(model: Any, tokenizer: Any, **kw: Any) -> TaskResult:
    src = read_sgm(datasets.download("wmt14-en-fr-src", progress=False))
    ref = read_sgm(datasets.download("wmt14-en-fr-ref", progress=False))
    kw.pop("batch_size", None)
    return evaluate_translation(model, tokenizer, src, ref, name="translation-en-fr", **kw)


def run_fr_en(model: Any, tokenizer: Any, **kw: Any) -> TaskResult:
    src = read_sgm(datasets.download("wmt14-fr-en-src", progress=False))
    ref = read_sgm(datasets.download("wmt14-fr-en-ref", progress=False))
    kw.pop("batch_size", None)
    return evaluate_translation(model, tokenizer, src, ref, name="translation-fr-en", **kw)
