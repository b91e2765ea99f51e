"""Zero-shot evaluation: the scoring machinery behind GPT-2 §3.

OpenAI never released the evaluation code of the paper (Radford et al. 2019), so every choice
below is written down next to the code. The tasks themselves (prompt formats, data readers,
metrics per task) live in :mod:`gpt2lib.tasks`; this module holds what they share:

* :func:`score_continuations`: log p(continuation | context) for many pairs, batched and padded,
  with greedy-match flags (is every continuation token the argmax?). Multiple-choice tasks
  (Winograd, CBT) and LAMBADA are built on it.
* :func:`token_nlls` / :func:`evaluate_lm`: language-model perplexity with a sliding window and
  normalization per token, per original word, per byte and per character (§3.1).
* :func:`generate_text`: greedy or top-k decoding with a stop rule (CoQA, translation, QA,
  summarization).
* :func:`results_table`: our numbers beside the paper's Table 3.

Conventions. A text is scored as if it starts a new document: ``<|endoftext|>`` is prepended, so
the first real token is scored too (the paper reports "the log-probability of a dataset").
Log-probabilities are natural logs, computed in float32 (``logits - logsumexp(logits)``) over the
tokenizer's vocabulary (a model with a padded, larger vocabulary has the extra logits dropped).

Memory and precision. The model's forward runs in fp32 on CPU (numbers unchanged) and under
autocast on a GPU: bf16 where the GPU has it (compute capability >= 8), fp16 otherwise (T4, V100);
``precision=`` overrides. Logits are never materialized for a whole batch: the final hidden states
are projected to the vocabulary only at the positions that are scored, at most
:data:`LOGITS_CHUNK_BYTES` of fp32 logits at a time, so a batch of 16 x 1024 tokens never holds
16 x 1024 x 50257 fp32 logits (3.3 GB; 26 GB with the old log-softmax copy).
:func:`gpt2lib.hardware.estimate_eval_memory` is the matching arithmetic (gpt2-xl fits 16 GB).

Dependencies run one way: :mod:`gpt2lib.tasks` imports this module, never the reverse (the
``eval`` command line lives in :mod:`gpt2lib.tasks`).
"""
from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch
from tqdm.auto import tqdm

from gpt2lib._io import json_lines
from gpt2lib.generation import stream
from gpt2lib.hardware import LOGITS_CHUNK_BYTES, autocast_dtype, choose_precision
from gpt2lib.options import check_int

__all__ = [
    "ContinuationScore", "score_continuations", "next_token_argmax", "token_nlls", "LMResult", "evaluate_lm", "count_words",
    "generate_text", "prompt_room", "check_vocab", "read_jsonl", "TaskResult", "PAPER_TABLE3", "PAPER_TEXT_RESULTS",
    "results_table", "load_model", "LOGITS_CHUNK_BYTES", "eval_precision", "METRIC_UNITS",
    "format_number", "format_paper_number",
]

# fp32 logits held at once while scoring (defined in gpt2lib.hardware beside the memory estimate).

# --------------------------------------------------------------------------------------------------
# The paper's numbers.

# Table 3 of Radford et al. (2019), "Zero-shot results on many datasets". Columns are the four
# model sizes as the paper names them (117M, 345M, 762M, 1542M parameters); SOTA is the prior
# state of the art the table compares with. LAMBADA (ACC) for 1542M, 63.24, is the number the text
# says was obtained *with* the stop-word filter (§3.3), see gpt2lib.tasks.lambada.
PAPER_TABLE3: dict[str, dict[str, float]] = {
    "lambada/ppl": {"SOTA": 99.8, "117M": 35.13, "345M": 15.60, "762M": 10.87, "1542M": 8.63},
    "lambada/acc": {"SOTA": 59.23, "117M": 45.99, "345M": 55.48, "762M": 60.12, "1542M": 63.24},
    "cbt-cn/acc": {"SOTA": 85.7, "117M": 87.65, "345M": 92.35, "762M": 93.45, "1542M": 93.30},
    "cbt-ne/acc": {"SOTA": 82.3, "117M": 83.4, "345M": 87.1, "762M": 88.0, "1542M": 89.05},
    "wikitext2/ppl": {"SOTA": 39.14, "117M": 29.41, "345M": 22.76, "762M": 19.93, "1542M": 18.34},
    "ptb/ppl": {"SOTA": 46.54, "117M": 65.85, "345M": 47.33, "762M": 40.31, "1542M": 35.76},
    "enwik8/bpb": {"SOTA": 0.99, "117M": 1.16, "345M": 1.01, "762M": 0.97, "1542M": 0.93},
    "text8/bpc": {"SOTA": 1.08, "117M": 1.17, "345M": 1.06, "762M": 1.02, "1542M": 0.98},
    "wikitext103/ppl": {"SOTA": 18.3, "117M": 37.50, "345M": 26.37, "762M": 22.05, "1542M": 17.48},
    "1bw/ppl": {"SOTA": 21.8, "117M": 75.20, "345M": 55.72, "762M": 44.575, "1542M": 42.16},
}

# Numbers stated in the text of §3 (all for the largest model, 1542M, unless noted).
PAPER_TEXT_RESULTS: dict[str, tuple[float, str]] = {
    "lambada/acc_no_stopword_filter": (52.66, "1542M, §3.3 (before the stop-word filter)"),
    "winograd/acc": (70.70, "1542M, §3.4"),
    "coqa/f1": (55.0, "1542M, §3.5 (development set)"),
    "summarization/rouge_avg": (21.40, "1542M, Table 4 (TL;DR:, average of R-1, R-2, R-L)"),
    "translation-en-fr/bleu": (5.0, "1542M, §3.7 (WMT-14 En-Fr test)"),
    "translation-fr-en/bleu": (11.5, "1542M, §3.7 (WMT-14 Fr-En test)"),
    "nq/exact_match": (4.1, "1542M, §3.8 (Natural Questions)"),
    "nq/acc_top1pct": (63.1, "1542M, §3.8 (1% most confident answers)"),
}


# --------------------------------------------------------------------------------------------------
# Model plumbing.


def _padded(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def check_vocab(model: torch.nn.Module, tokenizer: Any) -> None:
    """Raise ``ValueError`` unless the model's output vocabulary is the tokenizer's (GPT-2 §2.2).

    Equal sizes, or the tokenizer's rounded up to a multiple of 64 or 128 (a vocabulary padded for speed,
    50,257 -> 50,304; the extra logits are dropped). Any other size, smaller *or* larger, means they were
    not trained together: a larger one would score a different tokenizer's ids silently."""
    model_vocab, n_vocab = int(model.config.vocab_size), int(tokenizer.n_vocab)
    if model_vocab in (n_vocab, _padded(n_vocab, 64), _padded(n_vocab, 128)):
        return
    name = getattr(tokenizer, "name", type(tokenizer).__name__)
    relation = "smaller" if model_vocab < n_vocab else "larger"
    raise ValueError(
        f"model vocab_size={model_vocab} is {relation} than the tokenizer's n_vocab={n_vocab} ({name}): they were "
        f"not trained together; evaluate the model with the tokenizer it was trained with"
    )


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def eval_precision(device: torch.device | str, requested: str = "auto") -> str:
    """Evaluation precision: ``"auto"`` is fp32 on CPU, bf16 on GPUs that have it, fp16 on older GPUs."""
    device = torch.device(device)
    if requested == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 needs a CUDA GPU; use fp32 (or bf16) on CPU")
    return choose_precision(device, requested)


def _autocast(model: torch.nn.Module, precision: str):
    device = _device(model)
    dtype = autocast_dtype(eval_precision(device, precision))
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def _hidden(model: torch.nn.Module, idx: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """``(final hidden states [B, T, d], head)`` for gpt2lib's GPT2; for another model ``(logits, None)``."""
    if hasattr(model, "hidden_states") and isinstance(getattr(model, "lm_head", None), torch.nn.Module):
        return model.hidden_states(idx), model.lm_head
    out = model(idx)
    return (out[0] if isinstance(out, tuple) else getattr(out, "logits", out)), None


def _score_rows(x: torch.Tensor, head: Any, targets: torch.Tensor, n_vocab: int | None, *,
                argmax: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log p(target) (fp32) and optionally the argmax, for rows ``x`` ([N, d] hidden states, or [N, V]
    logits when ``head`` is None), with at most LOGITS_CHUNK_BYTES of fp32 logits alive at once."""
    V = n_vocab or (head.out_features if head is not None else x.size(-1))
    rows = max(1, LOGITS_CHUNK_BYTES // (4 * V))
    lp = torch.empty(x.size(0), dtype=torch.float32, device=x.device)
    am = torch.empty(x.size(0), dtype=torch.long, device=x.device) if argmax else None
    for s in range(0, x.size(0), rows):
        z = x[s : s + rows]
        logits = (head(z) if head is not None else z)[..., :V].float()
        lp[s : s + rows] = logits.gather(1, targets[s : s + rows, None]).squeeze(1) - torch.logsumexp(logits, -1)
        if am is not None:
            am[s : s + rows] = logits.argmax(-1)
    return lp, am


def _row_logits(x: torch.Tensor, head: Any, n_vocab: int | None) -> torch.Tensor:
    """fp32 logits of a few rows (one per sequence: the first continuation position)."""
    V = n_vocab or (head.out_features if head is not None else x.size(-1))
    return (head(x) if head is not None else x)[..., :V].float()


def _block_size(model: torch.nn.Module) -> int:
    return int(model.config.block_size)


def _right_padded(rows: Sequence[Sequence[int]]) -> torch.Tensor:
    """``[len(rows), longest]`` token ids, each row left-aligned and padded with 0 on the right (padding after
    every real token: under causal attention it never changes the scores of the positions before it)."""
    out = torch.zeros((len(rows), max(len(r) for r in rows)), dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


# --------------------------------------------------------------------------------------------------
# Scoring continuations.


@dataclass
class ContinuationScore:
    """Score of one continuation given its context."""

    logprob: float  # sum of log p(token | everything before it) over the continuation, natural log
    greedy: bool  # every continuation token is the argmax at its position (teacher-forced)
    n_tokens: int
    token_logprobs: list[float] = field(default_factory=list)
    argmax: list[int] = field(default_factory=list)  # the model's argmax at each continuation position
    filtered_first: int | None = None  # argmax at the first position with `first_token_mask` applied
    first_top: list[int] = field(default_factory=list)  # the `first_topk` most likely ids at the first position


@torch.no_grad()
def score_continuations(
    model: torch.nn.Module,
    contexts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    batch_size: int = 8,
    *,
    n_vocab: int | None = None,
    first_token_mask: torch.Tensor | None = None,
    bos: int = 50256,
    progress: bool = False,
    desc: str = "scoring",
    first_topk: int = 0,
    precision: str = "auto",
) -> list[ContinuationScore]:
    """``log p(continuation | context)`` and greedy-match flags for each pair (GPT-2 §3).

    Token id lists in, one :class:`ContinuationScore` per pair out, in the input order. Pairs are
    sorted by length and batched with right padding (padding sits after every scored position, so
    with causal attention it cannot change a score). An empty context is replaced by ``[bos]``
    (``<|endoftext|>``, the start of a document). When context + continuation is longer than the
    model's context, the *oldest context tokens* are dropped (left truncation); a continuation that
    alone does not fit raises ``ValueError``.

    ``first_token_mask`` (bool, ``[vocab]``): ids excluded when taking the argmax at the first
    continuation position; the result is ``filtered_first``. ``first_topk``: also return the ids
    ranked 1..k at the first position, most likely first (``first_top``; LAMBADA's word-level
    stop-word filter walks them). ``n_vocab`` restricts the softmax to the tokenizer's ids (``None``:
    all logits). ``precision``: see the module docstring (``"auto"``: fp32 on CPU, bf16/fp16 on GPU).
    """
    if len(contexts) != len(continuations):
        raise ValueError(f"{len(contexts)} contexts but {len(continuations)} continuations")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    block = _block_size(model)
    seqs: list[tuple[list[int], int]] = []  # (tokens to feed + 1, number of continuation tokens)
    for i, (ctx, cont) in enumerate(zip(contexts, continuations)):
        ctx, cont = list(ctx) or [bos], list(cont)
        if not cont:
            raise ValueError(f"pair {i}: the continuation is empty; there is nothing to score")
        if len(cont) > block:
            raise ValueError(f"pair {i}: continuation of {len(cont)} tokens exceeds the context block_size={block}")
        full = (ctx + cont)[-(block + 1):]
        seqs.append((full, len(cont)))

    device = _device(model)
    was_training = model.training
    model.eval()
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i][0]))
    results: list[ContinuationScore | None] = [None] * len(seqs)
    try:
        bar = tqdm(total=len(order), desc=desc, disable=not progress, leave=False)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            idx = _right_padded([seqs[i][0][:-1] for i in chunk])
            with _autocast(model, precision):
                h, head = _hidden(model, idx.to(device))
                rb, rt, tg, firsts = [], [], [], []
                for row, i in enumerate(chunk):
                    full, n = seqs[i]
                    L = len(full) - 1
                    rb += [row] * n
                    rt += range(L - n, L)  # positions whose next token is a continuation token
                    tg += full[-n:]
                    firsts.append(L - n)
                tgt = torch.tensor(tg, device=h.device)
                lp, am = _score_rows(h[torch.tensor(rb, device=h.device), torch.tensor(rt, device=h.device)],
                                     head, tgt, n_vocab, argmax=True)
                first_logits = None
                if first_token_mask is not None or first_topk:
                    first_logits = _row_logits(h[torch.arange(len(chunk), device=h.device),
                                                 torch.tensor(firsts, device=h.device)], head, n_vocab)
            filt = top = None
            if first_logits is not None and first_token_mask is not None:
                m = first_token_mask.to(first_logits.device)[: first_logits.size(-1)]
                filt = first_logits.masked_fill(m, float("-inf")).argmax(-1).tolist()
            if first_logits is not None and first_topk:
                top = first_logits.topk(min(first_topk, first_logits.size(-1)), dim=-1).indices.tolist()
            lp, am, tgt = lp.double().cpu(), am.cpu(), tgt.cpu()
            off = 0
            for row, i in enumerate(chunk):
                n = seqs[i][1]
                tok_lp, argmax, target = lp[off : off + n], am[off : off + n], tgt[off : off + n]
                off += n
                results[i] = ContinuationScore(
                    logprob=float(tok_lp.sum()),
                    greedy=bool((argmax == target).all()),
                    n_tokens=n,
                    token_logprobs=tok_lp.tolist(),
                    argmax=argmax.tolist(),
                    filtered_first=None if filt is None else filt[row],
                    first_top=[] if top is None else top[row],
                )
            bar.update(len(chunk))
        bar.close()
    finally:
        model.train(was_training)
    return results  # type: ignore[return-value]


@torch.no_grad()
def next_token_argmax(model: torch.nn.Module, seqs: Sequence[Sequence[int]], batch_size: int = 8, *,
                      n_vocab: int | None = None, precision: str = "auto") -> list[int]:
    """The model's most likely next token after each sequence (the last ``block_size`` tokens are read);
    only the last position is projected to the vocabulary."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    block = _block_size(model)
    seqs = [list(q)[-block:] for q in seqs]
    if any(not q for q in seqs):
        raise ValueError("next_token_argmax: an empty sequence has no next token")
    out = [0] * len(seqs)
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            idx = _right_padded([seqs[i] for i in chunk])
            with _autocast(model, precision):
                h, head = _hidden(model, idx.to(_device(model)))
                last = torch.tensor([len(seqs[i]) - 1 for i in chunk], device=h.device)
                logits = _row_logits(h[torch.arange(len(chunk), device=h.device), last], head, n_vocab)
            for i, t in zip(chunk, logits.argmax(-1).tolist()):
                out[i] = t
    finally:
        model.train(was_training)
    return out


# --------------------------------------------------------------------------------------------------
# Language modelling (§3.1).


@torch.no_grad()
def token_nlls(
    model: torch.nn.Module,
    ids: Sequence[int],
    stride: int | None = None,
    batch_size: int = 4,
    *,
    max_length: int | None = None,
    n_vocab: int | None = None,
    bos: int | None = 50256,
    progress: bool = False,
    full_last_window: bool = False,
    precision: str = "auto",
) -> torch.Tensor:
    """Negative log-likelihood (nats, float64) of every token of ``ids``, each scored exactly once.

    Sliding window: windows of ``L = max_length or block_size`` tokens start every ``stride`` tokens;
    each window scores only the tokens no earlier window scored, so every token is predicted once,
    with between ``L - stride + 1`` and ``L`` tokens of context (only the first window has less).
    ``stride = L`` is disjoint chunks (fast, less context); the default ``stride = L // 2`` is a
    common compromise; ``stride = 1`` gives every token its full context (slow).
    With ``bos`` set (default ``<|endoftext|>``), it is prepended so the first token is scored too.

    ``full_last_window=True`` moves the last window's start back so it reads a full ``L`` tokens
    (when the text is longer than one window): with ``stride = L`` this is exactly
    lm-evaluation-harness's ``loglikelihood_rolling`` (``get_rolling_token_windows`` with
    ``context_len=1`` and ``make_disjoint_window``: disjoint windows, the final partial one with
    full context).
    """
    check_int("batch_size", batch_size, 1)  # an unchecked -1 left the result unfilled (ppl 1)
    L = max_length or _block_size(model)
    if L > _block_size(model) or L < 2:
        raise ValueError(f"max_length={L} must be in [2, block_size={_block_size(model)}]")
    stride = stride or max(1, L // 2)
    if not 1 <= stride <= L:
        raise ValueError(f"stride must be in [1, {L}], got {stride}")
    seq = ([bos] if bos is not None else []) + list(ids)
    if len(seq) < 2:
        raise ValueError("nothing to score: the text encodes to no tokens")
    windows: list[tuple[int, int, int]] = []  # (begin, end, first scored target position)
    scored_up_to = 1  # targets are seq[1:], target position t is predicted from seq[:t]
    begin = 0
    while scored_up_to < len(seq):
        end = min(begin + L + 1, len(seq))  # feed seq[begin:end-1], targets seq[begin+1:end]
        windows.append((begin, end, scored_up_to))
        scored_up_to = end
        begin += stride  # stride <= L, so the next window's targets start right where these end
    if full_last_window and len(windows) > 1:
        _, e, f = windows[-1]
        windows[-1] = (max(0, e - 1 - L), e, f)
    device = _device(model)
    out = torch.empty(len(seq) - 1, dtype=torch.float64)
    was_training = model.training
    model.eval()
    try:
        for start in tqdm(range(0, len(windows), batch_size), desc="perplexity", disable=not progress, leave=False):
            chunk = windows[start : start + batch_size]
            idx = _right_padded([seq[b : e - 1] for b, e, _ in chunk])
            tgt = _right_padded([seq[b + 1 : e] for b, e, _ in chunk])  # tgt[row, j] = seq[b + j + 1]
            with _autocast(model, precision):
                h, head = _hidden(model, idx.to(device))
                # only the positions this window scores (not the context an overlapping window re-reads)
                rb = torch.cat([torch.full((e - f,), row) for row, (b, e, f) in enumerate(chunk)])
                rt = torch.cat([torch.arange(f - 1 - b, e - 1 - b) for b, e, f in chunk])
                lp, _ = _score_rows(h[rb.to(h.device), rt.to(h.device)], head, tgt[rb, rt].to(h.device), n_vocab)
            nll = -lp.double().cpu()  # one device->host copy per batch (not per window)
            off = 0
            for b, e, first in chunk:
                out[first - 1 : e - 1] = nll[off : off + e - first]
                off += e - first
    finally:
        model.train(was_training)
    return out


def count_words(text: str) -> int:
    """Words of a pre-tokenized benchmark file, the unit its perplexity is normalized by.

    WikiText and PTB count whitespace-separated tokens plus one ``<eos>`` per line (WikiText-2 test:
    241,211 + 4,358 = 245,569; PTB test: 78,669 + 3,761 = 82,430).
    """
    return len(text.split()) + text.count("\n")


@dataclass
class LMResult:
    """Total log-loss of a text and the unit counts it can be normalized by (GPT-2 §3.1).

    Counts of the *original* file (before de-tokenization) are the default denominators, as the
    benchmarks define them and as lm-evaluation-harness divides (words and bytes of the original
    document); ``bits_per_byte_read`` divides by the bytes of what the model read instead.
    """

    nll: float  # total negative log-likelihood, nats
    n_tokens: int  # BPE tokens scored
    n_words: int  # words of the original text, one <eos> per line included (count_words)
    n_bytes: int  # UTF-8 bytes of the original text
    n_chars: int  # characters of the original text
    n_lines: int = 0  # lines (<eos>) of the original text
    n_bytes_read: int = 0  # UTF-8 bytes of the text the model read (after de-tokenization)
    context: int = 0  # window length L (tokens)
    stride: int = 0

    @property
    def ppl_token(self) -> float:
        return math.exp(self.nll / self.n_tokens)

    @property
    def ppl_word(self) -> float:
        """``exp(total NLL / number of original words incl. <eos>)``: the quantity WikiText/PTB/1BW report."""
        return math.exp(self.nll / self.n_words)

    @property
    def ppl_word_no_eos(self) -> float:
        """Per word without counting the ``<eos>`` of each line."""
        return math.exp(self.nll / (self.n_words - self.n_lines))

    @property
    def bits_per_byte(self) -> float:
        """Per UTF-8 byte of the original text (lm-evaluation-harness's ``bits_per_byte``)."""
        return self.nll / math.log(2) / self.n_bytes

    @property
    def bits_per_byte_read(self) -> float:
        """Per UTF-8 byte of the text the model read."""
        return self.nll / math.log(2) / (self.n_bytes_read or self.n_bytes)

    @property
    def bits_per_char(self) -> float:
        return self.nll / math.log(2) / self.n_chars

    def metrics(self) -> dict[str, float]:
        return {"ppl": self.ppl_word, "ppl_no_eos": self.ppl_word_no_eos, "ppl_token": self.ppl_token,
                "bpb": self.bits_per_byte, "bpb_read": self.bits_per_byte_read, "bpc": self.bits_per_char,
                "tokens": self.n_tokens, "words": self.n_words, "bytes": self.n_bytes}


# What each metric is normalized by, printed beside it by results_table (kept short: the table must fit a
# book page; "word" means a word of the original text, split on white space, and "eos" the end-of-line
# token WikiText/PTB/1BW count as a word; the harness's units follow lm-evaluation-harness's definitions).
METRIC_UNITS: dict[str, str] = {
    "ppl": "exp(NLL / word), 1 eos per line",
    "ppl_no_eos": "exp(NLL / word), no eos",
    "ppl_token": "exp(NLL / BPE token)",
    "bpb": "bits / byte of the original",
    "bpb_read": "bits / byte the model read",
    "bpc": "bits / char of the original",
    "tokens": "count", "words": "count", "bytes": "count", "documents": "count",
    "word_perplexity": "exp(NLL / harness word)",
    "byte_perplexity": "exp(NLL / byte of the page)",
    "bits_per_byte": "bits / byte of the page",
    "acc": "% of examples", "acc_last_token": "% of passages", "acc_stopword_filter": "% of passages",
    "chars": "count", "acc_full": "% of schemas (full scoring)", "bleu": "corpus BLEU",
    "exact_match": "% of questions", "acc_top1pct": "% of the 1% most confident",
    "f1": "mean F1 (0-100)", "rouge1": "ROUGE-1 F1", "rouge2": "ROUGE-2 F1", "rougeL": "ROUGE-L F1",
    "rouge_avg": "mean of R-1, R-2, R-L", "rougeL_text": "ROUGE-L F1, whole-text LCS",
    "coqa/em": "% of questions, exact match",
    # task-specific units take precedence over the generic ones above
    "lambada/acc": "% of passages, all target tokens greedy", "lambada/ppl": "exp(NLL / target word)",
    "lambada/ppl_token": "exp(NLL / target BPE tokens)", "winograd/acc": "% of schemas (partial scoring)",
}


def evaluate_lm(
    model: torch.nn.Module,
    tokenizer: Any,
    text: str,
    *,
    original: str | None = None,
    stride: int | None = None,
    batch_size: int = 4,
    max_length: int | None = None,
    progress: bool = False,
    full_last_window: bool = False,
    precision: str = "auto",
) -> LMResult:
    """Score ``text`` as one document and normalize per token, original word, byte and character.

    The paper (§3.1): "Results on language modeling datasets are commonly reported in a quantity
    which is a scaled or exponentiated version of the average negative log probability per
    canonical prediction unit - usually a character, a byte, or a word. We evaluate the same
    quantity by computing the log-probability of a dataset according to a WebText LM and dividing
    by the number of canonical units." So: per-word perplexity = exp(total NLL / words of the
    *original* file), where ``original`` is the file before de-tokenization (default: ``text``);
    bits per byte / character likewise divide by the original's bytes / characters (``bpb_read``:
    by the bytes the model read). ``max_length`` (context L) and ``stride``: see :func:`token_nlls`.
    """
    if not text.strip():
        raise ValueError("the evaluation text is empty")
    check_vocab(model, tokenizer)
    ids = tokenizer.encode(text)
    L = max_length or _block_size(model)
    stride = stride or max(1, L // 2)
    nll = token_nlls(model, ids, stride, batch_size, max_length=L, n_vocab=tokenizer.n_vocab,
                     bos=tokenizer.eot, progress=progress, full_last_window=full_last_window, precision=precision)
    orig = original if original is not None else text
    return LMResult(float(nll.sum()), len(ids), count_words(orig), len(orig.encode("utf-8")), len(orig),
                    n_lines=orig.count("\n"), n_bytes_read=len(text.encode("utf-8")), context=L, stride=stride)


# --------------------------------------------------------------------------------------------------
# Generation for the generative tasks (§3.5-§3.8).


def prompt_room(model: torch.nn.Module, max_new_tokens: int) -> int:
    """How many prompt tokens fit the context beside ``max_new_tokens`` generated ones (``ValueError`` if none)."""
    room = _block_size(model) - max_new_tokens
    if room < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in the model's context of "
                         f"{_block_size(model)} tokens; lower max_new_tokens")
    return room


def generate_text(
    model: torch.nn.Module,
    tokenizer: Any,
    prompt: str | Sequence[int],
    max_new_tokens: int,
    *,
    stop: Callable[[str], int | None] | None = None,
    temperature: float = 0.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    on_overflow: str = "error",
) -> str:
    """Decode from ``prompt`` (greedy by default; ``top_k`` sampling when ``temperature > 0``).

    ``stop(text)`` returns the index to cut the generated text at, or ``None`` to keep going; the
    generation also stops at ``<|endoftext|>``. The prompt and the ``max_new_tokens`` must fit the
    context together (:func:`prompt_room`): a prompt that does not is a ``ValueError`` naming the sizes
    (``on_overflow="error"``), or keeps its last ``block_size - max_new_tokens`` tokens when the caller
    asks for it (``on_overflow="left"``) and reports the cut itself. Never cut silently.
    """
    check_vocab(model, tokenizer)
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    ids = list(prompt) if not isinstance(prompt, str) else tokenizer.encode(prompt)
    if not ids:
        ids = [tokenizer.eot]
    room = prompt_room(model, max_new_tokens)
    if len(ids) > room:
        if on_overflow != "left":
            raise ValueError(f"a prompt of {len(ids)} tokens plus max_new_tokens={max_new_tokens} does not fit the "
                             f"model's context of {_block_size(model)} tokens; shorten the prompt (fewer "
                             f"demonstrations) or lower max_new_tokens")
        ids = ids[-room:]
    idx = torch.tensor(ids, dtype=torch.long, device=_device(model))
    out: list[int] = []
    for tok in stream(model, idx, max_new_tokens, temperature=temperature, top_k=top_k,
                      eos_id=tokenizer.eot, generator=generator):
        if tok == tokenizer.eot or tok >= tokenizer.n_vocab:
            break
        out.append(tok)
        if stop is not None:  # the stop rule reads the text so far (re-decoded: a char may span tokens)
            text = tokenizer.decode(out)
            if (cut := stop(text)) is not None:
                return text[:cut]
    return tokenizer.decode(out)


# --------------------------------------------------------------------------------------------------
# Data readers and results.


def read_jsonl(path: str | os.PathLike, required: Sequence[str] = ()) -> Iterator[dict]:
    """Yield the JSON objects of a ``.jsonl`` file. Blank lines are skipped; a line that is not a
    JSON object, or lacks a ``required`` key, raises ``ValueError`` naming the file and line
    (:func:`gpt2lib._io.json_lines`, which the command line's ``--input x.jsonl`` reads with too)."""
    with open(path, encoding="utf-8") as f:
        yield from json_lines(f, str(path), required)


@dataclass
class TaskResult:
    """The outcome of one task run: metric name -> value (percentages as 0-100).

    ``settings``: how it was computed (context, stride, convention, what ``limit`` counted...),
    printed under the table so a number never travels without its definition."""

    task: str
    metrics: dict[str, float]
    n_examples: int
    model: str = ""
    notes: str = ""
    settings: dict[str, Any] = field(default_factory=dict)


# Our metric that a paper number is printed beside, where the names differ: Table 3's LAMBADA accuracy
# is compared with the stop-word-filtered accuracy (see gpt2lib.tasks.lambada), not the strict `acc`.
_PAPER_BESIDE = {"lambada/acc_stopword_filter": "lambada/acc", "lambada/acc": None}


def _paper_key(task: str, metric: str) -> str | None:
    key = f"{task}/{metric}"
    return _PAPER_BESIDE.get(key, key)


def format_number(value: float, decimals: int = 2) -> str:
    """``value`` in fixed point with ``decimals`` places and thousands separators, never in scientific
    notation, so one column of a table reads alike at every magnitude: 30469.3 -> ``30,469.30``,
    9033 -> ``9,033.00``. NaN prints as ``nan``, infinities as ``inf`` / ``-inf``."""
    if math.isnan(value) or math.isinf(value):
        return f"{value}"
    return f"{value:,.{decimals}f}"


def format_paper_number(value: float) -> str:
    """A number quoted from the paper, in the paper's own fixed-point form: at least two decimals
    (Table 3 of Radford et al. (2019) prints most numbers so: 75.20, 15.60) and every decimal the
    paper printed (1BW 762M, 44.575), so a quoted number is never rounded."""
    if math.isnan(value) or math.isinf(value):
        return format_number(value)
    return format_number(value, next((d for d in range(2, 16) if round(value, d) == value), 15))


def results_table(results: Sequence[TaskResult]) -> str:
    """A markdown table of our metrics beside the paper's (Table 3, or the §3 text where Table 3 is silent).

    Paper columns are GPT-2 117M / 345M / 762M / 1542M as printed in Table 3 of Radford et al.
    (2019); a number stated only in the text (e.g. Winograd 70.70) is the 1542M model's and is
    shown in the 1542M column with its source. Each row states its unit (:data:`METRIC_UNITS`);
    each task's settings (context, stride, convention, counts) follow the table, one line per task.
    Numbers are in fixed point with thousands separators (:func:`format_number`): ours with two
    decimals (counts with none), the paper's as it printed them (:func:`format_paper_number`).
    """
    sizes = ["117M", "345M", "762M", "1542M"]
    lines = ["| task | metric | ours | unit | model | n | " + " | ".join(f"paper {s}" for s in sizes)
             + " | paper source |",
             "| --- | --- | ---: | --- | --- | ---: | " + " | ".join("---:" for _ in sizes) + " | --- |"]
    for r in results:
        for metric, value in r.metrics.items():
            key = _paper_key(r.task, metric)
            paper = ["-"] * len(sizes)
            source = ""
            if key in PAPER_TABLE3:
                paper = [format_paper_number(PAPER_TABLE3[key][s]) for s in sizes]
                source = "Table 3"
            elif key in PAPER_TEXT_RESULTS:
                paper[-1] = format_paper_number(PAPER_TEXT_RESULTS[key][0])
                source = PAPER_TEXT_RESULTS[key][1]
            unit = METRIC_UNITS.get(f"{r.task}/{metric}", METRIC_UNITS.get(metric, ""))
            shown = format_number(value, 0 if unit == "count" else 2)
            lines.append(f"| {r.task} | {metric} | {shown} | {unit} | {r.model} | "
                         f"{r.n_examples} | " + " | ".join(paper) + f" | {source} |")
    notes = [f"- {r.task}: " + ", ".join(f"{k}={v}" for k, v in r.settings.items()) for r in results if r.settings]
    if notes:
        lines += ["", "Settings:"] + notes
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Loading a model and the command line.


def load_model(spec: str, device: str = "cpu") -> torch.nn.Module:
    """The model ``spec`` names: a train output folder, a checkpoint folder, a Hugging Face folder, ``zoo:<name>``
    or a hub id (online only); see :func:`gpt2lib.resolve.resolve_model`."""
    from gpt2lib.resolve import resolve_model  # lazy: resolve -> zoo -> miniworld imports this module

    return resolve_model(spec, device, tokenizer_required=False).model
