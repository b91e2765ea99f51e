"""Translation, WMT-14 newstest2014 English<->French (GPT-2 §3.7).

The paper: "we condition the language model on a context of example pairs of the format
english sentence = french sentence and then after a final prompt of english sentence = we sample
from the model with greedy decoding and use the first generated sentence as the translation."
It reports 5 BLEU on WMT-14 En-Fr and 11.5 BLEU on Fr-En (1542M).

Prompt (ours; the paper gives the format, not the examples): the first ``n_shots`` segment pairs
of the test set are the demonstrations, one ``"source = target"`` pair per line, and they are
*left out* of the scored set; then ``"source ="``. For Fr->En the pairs read
``"french sentence = english sentence"``. BLEU: ``sacrebleu.corpus_bleu`` (13a tokenization).

The prompt is never cut. Prompt and ``max_new_tokens`` must fit the model's context together; when
the ``n_shots`` demonstrations do not, a sentence gets the most of them that fit (the first ``k``),
and the result says how many were used (``settings["shots"]``); a sentence that does not fit even
without demonstrations is left out of the scored set and counted (``settings["skipped"]``; with
``skip_long=False`` it is a ``ValueError``). ``max_new_tokens`` defaults to 128, at most half the
context (64 for a 128-token model).

Which part of the continuation is the translation (``first=``): ``"sentence"`` (default), the
paper's "first generated sentence": the text up to the first ``.``, ``!``, ``?`` or ``…`` followed by
white space (closing quotes and brackets kept; not after a lone capital, as in ``M. Dupont``), or up
to the first newline if that comes first;
``"line"``: up to the first newline (one demonstration per line).

Data: the official SGML files; :func:`read_sgm` takes every ``<seg id=...>...</seg>`` in order,
tolerating attribute order/quoting and whitespace, and unescaping XML entities.
"""
from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm

from gpt2lib import datasets
from gpt2lib.errors import optional_import
from gpt2lib.evaluate import TaskResult, check_vocab, generate_text, prompt_room
from gpt2lib.tasks.coqa import stop_at_newline
__all__ = ["read_sgm", "translation_prompt", "first_sentence", "stop_at_sentence", "choose_shots",
           "evaluate_translation", "run_en_fr", "run_fr_en", "FIRST_RULES"]

FIRST_RULES = ("sentence", "line")
# a sentence ends at . ! ? or …, closing quotes/brackets kept, before white space; not after an initial ("M. Dupont")
_SENTENCE_END = re.compile(r"(?<!\b[A-ZÀ-Ý])[.!?…](?:[\"'»”’)\]]|\s»)*(?=\s)")

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


def stop_at_sentence(text: str) -> int | None:
    """Where the first sentence of ``text`` ends (the §3.7 rule, module docstring), or None if not yet."""
    text_nl = text.find("\n", 1 if text.startswith("\n") else 0)
    m = _SENTENCE_END.search(text)
    ends = [i for i in (text_nl if text_nl >= 0 else None, m.end() if m else None) if i is not None]
    return min(ends) if ends else None


def first_sentence(text: str) -> str:
    """The first sentence of a finished continuation (its end may be the end of the text)."""
    cut = stop_at_sentence(text + "\n")
    return text[:cut].strip()


def choose_shots(tokenizer: Any, shots: Sequence[tuple[str, str]], source: str, room: int) -> int:
    """The most demonstrations (the first ``k`` of ``shots``) whose prompt fits in ``room`` tokens; ``ValueError``
    when even the bare ``"source ="`` does not."""
    for k in range(len(shots), -1, -1):
        if len(tokenizer.encode(translation_prompt(shots[:k], source))) <= room:
            return k
    n = len(tokenizer.encode(translation_prompt([], source)))
    raise ValueError(f"the sentence alone is a prompt of {n} tokens, more than the {room} the context leaves beside "
                     f"the generated tokens; lower max_new_tokens or use a model with a longer context")


def evaluate_translation(model: Any, tokenizer: Any, sources: Sequence[str], references: Sequence[str], *,
                         name: str, n_shots: int = 5, limit: int | None = None, max_new_tokens: int | None = None,
                         first: str = "sentence", skip_long: bool = True, progress: bool = False,
                         **_: Any) -> TaskResult:
    """BLEU of greedy translations (module docstring: prompt, shots that fit, ``first`` rule)."""
    sacrebleu = optional_import("sacrebleu")
    if len(sources) != len(references):
        raise ValueError(f"{len(sources)} source segments but {len(references)} references")
    if n_shots < 0:
        raise ValueError(f"n_shots must be >= 0, got {n_shots}")
    if len(sources) <= n_shots:
        raise ValueError(f"need more than n_shots={n_shots} segments, got {len(sources)}")
    if first not in FIRST_RULES:
        raise ValueError(f"first must be one of {', '.join(FIRST_RULES)}, got {first!r}")
    check_vocab(model, tokenizer)
    block = int(model.config.block_size)
    max_new = max_new_tokens if max_new_tokens is not None else min(128, block // 2)
    room = prompt_room(model, max_new)
    shots = list(zip(sources[:n_shots], references[:n_shots]))
    todo = list(zip(sources[n_shots:], references[n_shots:]))[:limit or None]  # limit 0/None: all, as elsewhere
    hyps, refs, used, skipped = [], [], [], 0
    stop = stop_at_sentence if first == "sentence" else stop_at_newline
    for src, ref in tqdm(todo, desc=name, disable=not progress, leave=False):
        try:
            k = choose_shots(tokenizer, shots, src, room)
        except ValueError:
            if not skip_long:
                raise
            skipped += 1
            continue
        used.append(k)
        out = generate_text(model, tokenizer, translation_prompt(shots[:k], src), max_new, stop=stop)
        hyps.append(first_sentence(out) if first == "sentence" else out.strip())
        refs.append(ref)
    if not hyps:
        raise ValueError(f"none of the {len(todo)} sentences fits the {block}-token context beside {max_new} new "
                         f"tokens, even without demonstrations; lower max_new_tokens")
    bleu = sacrebleu.corpus_bleu(hyps, [refs])
    lo, hi = min(used), max(used)
    shots_said = (f"{n_shots}" if lo == hi == n_shots else
                  f"{n_shots} asked, {lo if lo == hi else f'{lo}-{hi}'} used (mean {sum(used) / len(used):.1f}): "
                  f"the most that fit the {block}-token context beside {max_new} new tokens")
    settings = {"shots": shots_said, "max_new_tokens": max_new,
                "skipped": f"{skipped} of {len(todo)} sentences (too long for the context even without "
                           f"demonstrations)" if skipped else "none",
                "translation": "first generated sentence" if first == "sentence" else "first generated line",
                "decoding": "greedy"}
    return TaskResult(name, {"bleu": bleu.score}, len(hyps), settings=settings,
                      notes=f"{name}: demonstrations per sentence: {shots_said}; greedy decoding, "
                            f"{settings['translation']}")


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
