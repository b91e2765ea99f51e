"""Language modelling: Table 3's perplexity and bits-per-byte/character columns (GPT-2 §3.1).

Prompt: none; the test file, de-tokenized (:mod:`gpt2lib.detokenize`), is scored as one document
with a sliding window (:func:`gpt2lib.evaluate.token_nlls`: windows of ``max_length`` = L tokens,
the context, default the model's 1024; a new window every ``stride`` tokens, default L/2).
Normalization, the paper's: "computing the log-probability of a dataset according to a WebText LM
and dividing by the number of canonical units", always by the units of the *original* file:

* ``ppl``: exp(NLL / words incl. one ``<eos>`` per line) - WikiText-2/103, PTB, 1BW (``</s>`` per
  sentence); ``ppl_no_eos`` without the ``<eos>``; ``ppl_token`` per BPE token;
* ``bpb``: bits per UTF-8 byte of the original text (as lm-evaluation-harness divides; ``bpb_read``:
  per byte of what the model read) - enwik8; ``bpc``: bits per character - text8.

Files: WikiText-2 and PTB test and the One Billion Word heldout shard 0 (``news.en.heldout-00000-of-00050``,
the usual 1BW test set; its sentences are *shuffled*, so a sentence has no document context, one
reason the paper gives for GPT-2's poor 1BW result) are in the data mirror; WikiText-103, enwik8
and text8 are downloaded by :mod:`gpt2lib.datasets` (not in the mirror). enwik8 and text8 are
scored on the standard split's last 5,000,000 bytes / characters (the first 90M train, the next 5M
validation, the last 5M test, as in Mahoney's data and the character-level literature).

``convention="lm-eval"`` reproduces lm-evaluation-harness's ``wikitext`` task definitions on our
files: the file split into Wikipedia pages (a line ``= Title =`` starts one), each page read after
the harness's own de-tokenizer (:func:`gpt2lib.detokenize.harness_wikitext_detokenize`) with
``loglikelihood_rolling`` (disjoint windows of L tokens, ``<|endoftext|>`` first, the final partial
window with full context), and ``word_perplexity`` = exp(-sum LL / sum ``len(re.split(r"\\s+", page))``),
``byte_perplexity`` and ``bits_per_byte`` per UTF-8 byte of the original page. (The harness reads the
``raw`` WikiText without ``<unk>``; the mirror has the tokenized version, as the paper used.)
"""
from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any, Callable

from gpt2lib import datasets
from gpt2lib.detokenize import (harness_wikitext_detokenize, lm1b_detokenize, ptb_detokenize,
                                wikitext_detokenize)
from gpt2lib.evaluate import LMResult, TaskResult, evaluate_lm

__all__ = ["wikitext2", "ptb", "one_billion_word", "wikitext103", "enwik8", "text8", "lm_task", "wikitext_pages",
           "harness_lm", "standard_test_split"]

TEST_SIZE = 5_000_000  # enwik8 / text8: the last 5M bytes / characters
FULL_SIZE = 100_000_000


def wikitext_pages(text: str) -> list[str]:
    """Split a WikiText file into Wikipedia pages the way lm-evaluation-harness's ``wikitext_document_level``
    does: a line that, after ``"= = ="`` -> ``"==="`` and ``"= ="`` -> ``"=="`` and stripping, starts with
    ``"= "`` and ends with ``" ="`` begins a page; pages are ``"\\n".join`` of their lines; blank pages
    are dropped, except the last."""
    pages, lines = [], []
    for line in text.split("\n"):
        r = line.replace("= = =", "===").replace("= =", "==").strip()
        if r.startswith("= ") and r.endswith(" ="):
            page = "\n".join(lines)
            if page.strip():
                pages.append(page)
            lines = []
        lines.append(line)
    pages.append("\n".join(lines))
    return pages


def harness_lm(model: Any, tokenizer: Any, docs: list[str], detok: Callable[[str], str], *, batch_size: int = 4,
               max_length: int | None = None, precision: str = "auto", progress: bool = False) -> dict[str, float]:
    """lm-evaluation-harness's rolling log-likelihood metrics summed over ``docs`` (module docstring)."""
    ll = 0.0
    words = nbytes = tokens = 0
    for doc in docs:
        L = max_length or int(model.config.block_size)
        res = evaluate_lm(model, tokenizer, detok(doc), original=doc, stride=L, max_length=L, batch_size=batch_size,
                          full_last_window=True, precision=precision, progress=progress)
        ll -= res.nll
        words += len(re.split(r"\s+", doc))
        nbytes += len(doc.encode("utf-8"))
        tokens += res.n_tokens
    return {"word_perplexity": math.exp(-ll / words), "byte_perplexity": math.exp(-ll / nbytes),
            "bits_per_byte": -ll / nbytes / math.log(2), "tokens": tokens, "words": words, "bytes": nbytes,
            "documents": len(docs)}


def lm_task(model: Any, tokenizer: Any, original: str, detok: Callable[[str], str], name: str, *,
            limit: int | None = None, batch_size: int = 4, stride: int | None = None, max_length: int | None = None,
            detokenize: bool = True, convention: str = "gpt2lib", precision: str = "auto",
            progress: bool = False) -> TaskResult:
    """Score ``original`` (its first ``limit`` lines) after ``detok`` and report the §3.1 metrics."""
    if limit is not None:
        original = "".join(original.splitlines(keepends=True)[:limit])
    n_lines = original.count("\n")
    L = max_length or int(model.config.block_size)
    if convention == "lm-eval":
        is_wiki = name.startswith("wikitext")
        docs = wikitext_pages(original) if is_wiki else [original]
        det = (harness_wikitext_detokenize if is_wiki else detok) if detokenize else (lambda s: s)
        metrics = harness_lm(model, tokenizer, docs, det, batch_size=batch_size, max_length=L, precision=precision,
                             progress=progress)
        settings = {"convention": "lm-eval (loglikelihood_rolling per page)" if is_wiki else "lm-eval (rolling)",
                    "context": L, "stride": L, "final window": "full context", "documents": len(docs),
                    "lines": n_lines}
        return TaskResult(name, metrics, n_lines, notes=f"{name}: lm-evaluation-harness definitions "
                          "(word_perplexity / byte_perplexity / bits_per_byte over original words and bytes)",
                          settings=settings)
    if convention != "gpt2lib":
        raise ValueError(f"convention must be 'gpt2lib' or 'lm-eval', got {convention!r}")
    text = detok(original) if detokenize else original
    res = evaluate_lm(model, tokenizer, text, original=original, stride=stride, batch_size=batch_size,
                      max_length=L, precision=precision, progress=progress)
    return TaskResult(name, res.metrics(), n_lines, notes=_notes(name, res, detokenize),
                      settings=_settings(res, detokenize, lines=n_lines))


def _settings(res: LMResult, detokenize: bool, **counts: Any) -> dict[str, Any]:
    return {"convention": "gpt2lib", "context": res.context, "stride": res.stride,
            "text": "de-tokenized" if detokenize else "as in the file", **counts, "tokens": res.n_tokens}


def _notes(name: str, res: LMResult, detokenize: bool) -> str:
    return (f"{name}: {'de-tokenized' if detokenize else 'raw'} text, context {res.context} tokens, stride {res.stride}; "
            f"ppl = exp(NLL / {res.n_words:,} original words incl. <eos>), bpb per {res.n_bytes:,} original bytes")


def wikitext2(model: Any, tokenizer: Any, *, split: str = "test", **kw: Any) -> TaskResult:
    """WikiText-2 (tokenized ``<unk>`` version, as in the paper's Table 3), de-tokenized."""
    return lm_task(model, tokenizer, datasets.read_text(f"wikitext-2-{split}"), wikitext_detokenize, "wikitext2", **kw)


def ptb(model: Any, tokenizer: Any, **kw: Any) -> TaskResult:
    """Penn Treebank test (Mikolov's preprocessing), de-tokenized as far as possible."""
    return lm_task(model, tokenizer, datasets.read_text("ptb-test"), ptb_detokenize, "ptb", **kw)


def one_billion_word(model: Any, tokenizer: Any, *, path: str | Path | None = None, **kw: Any) -> TaskResult:
    """One Billion Word test (heldout shard 0, 30,301 shuffled sentences), de-tokenized; words count one
    ``</s>`` per sentence. The paper's 117M value is 75.20 (Table 3)."""
    text = Path(path).read_text(encoding="utf-8") if path else datasets.read_text("one-billion-word-test")
    return lm_task(model, tokenizer, text, lm1b_detokenize, "1bw", **kw)


def wikitext103(model: Any, tokenizer: Any, *, path: str | Path | None = None, **kw: Any) -> TaskResult:
    """WikiText-103 test (``wiki.test.tokens`` in ``wikitext-103-v1.zip``; downloaded, not in the mirror)."""
    archive = path or datasets.download("wikitext-103", progress=kw.get("progress", False))
    text = datasets.read_member(archive, "wikitext-103/wiki.test.tokens").decode("utf-8")
    return lm_task(model, tokenizer, text, wikitext_detokenize, "wikitext103", **kw)


def standard_test_split(data: bytes, *, total: int = FULL_SIZE, test: int = TEST_SIZE) -> bytes:
    """The last ``test`` units of the ``total``-long enwik8 / text8 file; ``ValueError`` if it has another length."""
    if len(data) != total:
        raise ValueError(f"expected {total:,} bytes (the whole file), got {len(data):,}: not the standard file")
    return data[total - test :]


def _char_task(model: Any, tokenizer: Any, name: str, member: str, path: str | Path | None, *, limit: int | None,
               total: int, test: int, convention: str = "gpt2lib", **kw: Any) -> TaskResult:
    archive = path or datasets.download(name, progress=kw.get("progress", False))
    raw = standard_test_split(datasets.read_member(archive, member), total=total, test=test)
    if name == "text8":
        text = raw.decode("ascii")[:limit] if limit else raw.decode("ascii")
        n_bytes = len(text)
    else:  # enwik8: bytes; a UTF-8 character cut by the split's edge reads as U+FFFD, the denominator stays bytes
        raw = raw[:limit] if limit else raw
        text, n_bytes = raw.decode("utf-8", errors="replace"), len(raw)
    L = kw.pop("max_length", None) or int(model.config.block_size)
    if convention == "lm-eval":
        kw.update(full_last_window=True)
        kw["stride"] = L
    res = evaluate_lm(model, tokenizer, text, max_length=L, **kw)
    res = dataclasses.replace(res, n_bytes=n_bytes, n_bytes_read=len(text.encode("utf-8")))
    metrics = {"bpb": res.bits_per_byte, "bpc": res.bits_per_char, "ppl_token": res.ppl_token,
               "tokens": res.n_tokens, "bytes": n_bytes}
    unit = "bytes" if name == "enwik8" else "characters"
    settings = {"convention": convention, "context": res.context, "stride": res.stride,
                "split": f"last {test:,} {unit} of {total:,}", f"{unit} scored": n_bytes if name == "enwik8" else len(text)}
    return TaskResult(name, metrics, n_bytes, settings=settings,
                      notes=f"{name}: bits per {'byte' if name == 'enwik8' else 'character'} of the standard test split "
                            f"(context {res.context}, stride {res.stride})")


def enwik8(model: Any, tokenizer: Any, *, path: str | Path | None = None, limit: int | None = None,
           total: int = FULL_SIZE, test: int = TEST_SIZE, **kw: Any) -> TaskResult:
    """enwik8 (first 10^8 bytes of an English Wikipedia XML dump), bits per byte on its last 5M bytes;
    ``limit``: score only the first N bytes of that split."""
    return _char_task(model, tokenizer, "enwik8", "enwik8", path, limit=limit, total=total, test=test, **kw)


def text8(model: Any, tokenizer: Any, *, path: str | Path | None = None, limit: int | None = None,
          total: int = FULL_SIZE, test: int = TEST_SIZE, **kw: Any) -> TaskResult:
    """text8 (enwik8 cleaned to lowercase a-z and spaces), bits per character on its last 5M characters;
    ``limit``: score only the first N characters of that split."""
    return _char_task(model, tokenizer, "text8", "text8", path, limit=limit, total=total, test=test, **kw)
