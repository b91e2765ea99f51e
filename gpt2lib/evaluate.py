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
* :func:`add_cli`: the ``python -m gpt2lib eval`` subcommand.

Conventions. A text is scored as if it starts a new document: ``<|endoftext|>`` is prepended, so
the first real token is scored too (the paper reports "the log-probability of a dataset").
Log-probabilities are natural logs, computed in float32 with ``log_softmax`` over the tokenizer's
vocabulary (a model with a padded, larger vocabulary has the extra logits dropped).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

__all__ = [
    "ContinuationScore", "score_continuations", "token_nlls", "LMResult", "evaluate_lm", "count_words",
    "generate_text", "check_vocab", "read_jsonl", "TaskResult", "PAPER_TABLE3", "PAPER_TEXT_RESULTS",
    "results_table", "load_model", "add_cli",
]

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


def check_vocab(model: torch.nn.Module, tokenizer: Any) -> None:
    """Raise ``ValueError`` unless the model's output vocabulary covers the tokenizer's ids."""
    model_vocab = int(model.config.vocab_size)
    if model_vocab < tokenizer.n_vocab:
        raise ValueError(
            f"model vocab_size={model_vocab} is smaller than the tokenizer's n_vocab={tokenizer.n_vocab} "
            f"({getattr(tokenizer, 'name', type(tokenizer).__name__)}): they were not trained together"
        )


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _log_probs(model: torch.nn.Module, idx: torch.Tensor, n_vocab: int | None) -> torch.Tensor:
    out = model(idx)
    logits = out[0] if isinstance(out, tuple) else getattr(out, "logits", out)
    if n_vocab is not None:
        logits = logits[..., :n_vocab]
    return F.log_softmax(logits.float(), dim=-1)


def _block_size(model: torch.nn.Module) -> int:
    return int(model.config.block_size)


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
) -> list[ContinuationScore]:
    """``log p(continuation | context)`` and greedy-match flags for each pair (GPT-2 §3).

    Token id lists in, one :class:`ContinuationScore` per pair out, in the input order. Pairs are
    sorted by length and batched with right padding (padding sits after every scored position, so
    with causal attention it cannot change a score). An empty context is replaced by ``[bos]``
    (``<|endoftext|>``, the start of a document). When context + continuation is longer than the
    model's context, the *oldest context tokens* are dropped (left truncation); a continuation that
    alone does not fit raises ``ValueError``.

    ``first_token_mask`` (bool, ``[vocab]``): ids excluded when taking the argmax at the first
    continuation position; the result is ``filtered_first`` (used by LAMBADA's stop-word filter).
    ``n_vocab`` restricts the softmax to the tokenizer's ids (``None``: all logits).
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
            T = max(len(seqs[i][0]) for i in chunk) - 1
            idx = torch.zeros((len(chunk), T), dtype=torch.long)
            for row, i in enumerate(chunk):
                full = seqs[i][0]
                idx[row, : len(full) - 1] = torch.tensor(full[:-1])
            logp = _log_probs(model, idx.to(device), n_vocab)
            for row, i in enumerate(chunk):
                full, n = seqs[i]
                L = len(full) - 1
                lp = logp[row, L - n : L]  # positions whose next token is a continuation token
                target = torch.tensor(full[-n:], device=lp.device)
                tok_lp = lp.gather(1, target[:, None]).squeeze(1)
                argmax = lp.argmax(dim=-1)
                filtered = None
                if first_token_mask is not None:
                    first = lp[0].masked_fill(first_token_mask.to(lp.device)[: lp.size(-1)], float("-inf"))
                    filtered = int(first.argmax())
                results[i] = ContinuationScore(
                    logprob=float(tok_lp.double().sum()),
                    greedy=bool((argmax == target).all()),
                    n_tokens=n,
                    token_logprobs=tok_lp.tolist(),
                    argmax=argmax.tolist(),
                    filtered_first=filtered,
                )
            bar.update(len(chunk))
        bar.close()
    finally:
        model.train(was_training)
    return results  # type: ignore[return-value]


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
) -> torch.Tensor:
    """Negative log-likelihood (nats, float64) of every token of ``ids``, each scored exactly once.

    Sliding window: windows of ``L = max_length or block_size`` tokens start every ``stride`` tokens;
    each window scores only the tokens no earlier window scored, so every token is predicted once,
    with between ``L - stride + 1`` and ``L`` tokens of context (only the first window has less).
    ``stride = L`` is disjoint chunks (fast, less context); the default ``stride = L // 2`` is a
    common compromise; ``stride = 1`` gives every token its full context (slow).
    With ``bos`` set (default ``<|endoftext|>``), it is prepended so the first token is scored too.
    """
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
    device = _device(model)
    out = torch.empty(len(seq) - 1, dtype=torch.float64)
    was_training = model.training
    model.eval()
    try:
        for start in tqdm(range(0, len(windows), batch_size), desc="perplexity", disable=not progress, leave=False):
            chunk = windows[start : start + batch_size]
            T = max(e - b - 1 for b, e, _ in chunk)
            idx = torch.zeros((len(chunk), T), dtype=torch.long)
            tgt = torch.zeros((len(chunk), T), dtype=torch.long)  # tgt[row, j] = seq[b + j + 1]
            for row, (b, e, _) in enumerate(chunk):
                idx[row, : e - b - 1] = torch.tensor(seq[b : e - 1])
                tgt[row, : e - b - 1] = torch.tensor(seq[b + 1 : e])
            logp = _log_probs(model, idx.to(device), n_vocab)
            # one gather and one device->host copy per batch (not per window)
            nll = -logp.gather(2, tgt.to(logp.device)[..., None]).squeeze(-1).double().cpu()
            for row, (b, e, first) in enumerate(chunk):
                out[first - 1 : e - 1] = nll[row, first - 1 - b : e - 1 - b]
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
    """Total log-loss of a text and the unit counts it can be normalized by (GPT-2 §3.1)."""

    nll: float  # total negative log-likelihood, nats
    n_tokens: int  # BPE tokens scored
    n_words: int  # canonical words of the original (pre-detokenization) text
    n_bytes: int  # UTF-8 bytes of the text the model read
    n_chars: int  # characters of the text the model read

    @property
    def ppl_token(self) -> float:
        return math.exp(self.nll / self.n_tokens)

    @property
    def ppl_word(self) -> float:
        """``exp(total NLL / number of original words)``: the quantity WikiText/PTB report."""
        return math.exp(self.nll / self.n_words)

    @property
    def bits_per_byte(self) -> float:
        return self.nll / math.log(2) / self.n_bytes

    @property
    def bits_per_char(self) -> float:
        return self.nll / math.log(2) / self.n_chars

    def metrics(self) -> dict[str, float]:
        return {"ppl": self.ppl_word, "ppl_token": self.ppl_token, "bpb": self.bits_per_byte,
                "bpc": self.bits_per_char, "tokens": self.n_tokens, "words": self.n_words}


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
) -> LMResult:
    """Score ``text`` as one document and normalize per token, original word, byte and character.

    The paper (§3.1): "Results on language modeling datasets are commonly reported in a quantity
    which is a scaled or exponentiated version of the average negative log probability per
    canonical prediction unit - usually a character, a byte, or a word. We evaluate the same
    quantity by computing the log-probability of a dataset according to a WebText LM and dividing
    by the number of canonical units." So: per-word perplexity = exp(total NLL / words of the
    *original* file), where ``original`` is the file before de-tokenization (default: ``text``).
    """
    if not text.strip():
        raise ValueError("the evaluation text is empty")
    check_vocab(model, tokenizer)
    ids = tokenizer.encode(text)
    nll = token_nlls(model, ids, stride, batch_size, max_length=max_length, n_vocab=tokenizer.n_vocab,
                     bos=tokenizer.eot, progress=progress)
    return LMResult(float(nll.sum()), len(ids), count_words(original if original is not None else text),
                    len(text.encode("utf-8")), len(text))


# --------------------------------------------------------------------------------------------------
# Generation for the generative tasks (§3.5-§3.8).


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
) -> str:
    """Decode from ``prompt`` (greedy by default; ``top_k`` sampling when ``temperature > 0``).

    ``stop(text)`` returns the index to cut the generated text at, or ``None`` to keep going; the
    generation also stops at ``<|endoftext|>``. A prompt longer than the context keeps its last
    ``block_size - max_new_tokens`` tokens (documented left truncation).
    """
    from gpt2lib.generation import stream

    check_vocab(model, tokenizer)
    ids = list(prompt) if not isinstance(prompt, str) else tokenizer.encode(prompt)
    if not ids:
        ids = [tokenizer.eot]
    keep = max(1, _block_size(model) - max_new_tokens)
    idx = torch.tensor(ids[-keep:], dtype=torch.long, device=_device(model))
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
    JSON object, or lacks a ``required`` key, raises ``ValueError`` naming the file and line."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            missing = [k for k in required if k not in obj]
            if missing:
                raise ValueError(f"{path}:{lineno}: missing key(s) {missing}")
            yield obj


@dataclass
class TaskResult:
    """The outcome of one task run: metric name -> value (percentages as 0-100)."""

    task: str
    metrics: dict[str, float]
    n_examples: int
    model: str = ""
    notes: str = ""


def results_table(results: Sequence[TaskResult]) -> str:
    """A markdown table of our metrics beside the paper's (Table 3, or the §3 text where Table 3 is silent).

    Paper columns are GPT-2 117M / 345M / 762M / 1542M as printed in Table 3 of Radford et al.
    (2019); a number stated only in the text (e.g. Winograd 70.70) is the 1542M model's and is
    shown in the 1542M column with its source.
    """
    sizes = ["117M", "345M", "762M", "1542M"]
    lines = ["| task | metric | ours | model | n | " + " | ".join(f"paper {s}" for s in sizes) + " | paper source |",
             "| --- | --- | ---: | --- | ---: | " + " | ".join("---:" for _ in sizes) + " | --- |"]
    for r in results:
        for metric, value in r.metrics.items():
            key = f"{r.task}/{metric}"
            paper = ["-"] * len(sizes)
            source = ""
            if key in PAPER_TABLE3:
                paper = [f"{PAPER_TABLE3[key][s]:g}" for s in sizes]
                source = "Table 3"
            elif key in PAPER_TEXT_RESULTS:
                paper[-1] = f"{PAPER_TEXT_RESULTS[key][0]:g}"
                source = PAPER_TEXT_RESULTS[key][1]
            lines.append(f"| {r.task} | {metric} | {value:.4g} | {r.model} | {r.n_examples} | "
                         + " | ".join(paper) + f" | {source} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Loading a model and the command line.


def load_model(spec: str, device: str = "cpu") -> torch.nn.Module:
    """``"zoo:<name>"`` (gpt2lib.zoo), a local Hugging Face-layout folder, or a hub id (online only)."""
    from gpt2lib.model import GPT2

    if spec.startswith("zoo:"):
        from gpt2lib.zoo import load_pretrained_tiny

        model, _ = load_pretrained_tiny(spec[4:])  # KeyError naming the known models
    elif Path(spec).is_dir():
        model = GPT2.from_pretrained(spec)
    else:
        if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1":
            raise RuntimeError(
                f"--model {spec}: not a local folder, and the Hugging Face hub is offline "
                "(HF_HUB_OFFLINE=1). Download the weights while online, or pass a folder or zoo:<name>."
            )
        try:
            model = GPT2.from_pretrained(spec)
        except OSError as e:
            raise RuntimeError(f"--model {spec}: could not load from the hub (offline?): {e}") from e
    return model.to(device).eval()


def add_cli(subparsers: Any) -> None:
    """Add ``eval``: ``python -m gpt2lib eval --task lambada --model gpt2 --limit N --batch-size B``."""
    from gpt2lib import tasks

    p = subparsers.add_parser("eval", help="zero-shot evaluation on a GPT-2 §3 task",
                              description="Zero-shot evaluation (GPT-2 §3); prints a table beside the paper's.")
    p.add_argument("--task", required=True, choices=tasks.task_names(), metavar="TASK",
                   help=f"one of: {', '.join(tasks.task_names())}")
    p.add_argument("--model", default="gpt2", help="gpt2 | gpt2-medium | ... (hub, online) | a folder | zoo:<name>")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N examples")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run_cli)


def _run_cli(args: Any) -> int:
    from gpt2lib import tasks
    from gpt2lib.tokenizer import get_gpt2_tokenizer

    task = tasks.get_task(args.task)  # KeyError with the available names
    model = load_model(args.model, args.device)
    torch.manual_seed(args.seed)
    result = task(model, get_gpt2_tokenizer(), limit=args.limit, batch_size=args.batch_size, progress=True)
    result.model = args.model
    print(results_table([result]))
    if result.notes:
        print("\n" + result.notes)
    return 0
