"""Scoring machinery of GPT-2 §3 (gpt2lib.evaluate), checked against `transformers` on the same
random weights: continuation log-probs, sliding-window perplexity, LAMBADA metrics, bad input."""
from __future__ import annotations

import math

import pytest
import torch

from _evalref import hf_logprobs, make_pair
from gpt2lib.evaluate import (
    PAPER_TABLE3, TaskResult, check_vocab, count_words, evaluate_lm, generate_text, load_model, read_jsonl,
    results_table, score_continuations, token_nlls,
)
from gpt2lib.tokenizer import get_gpt2_tokenizer

EOT = 50256


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return make_pair(tmp_path_factory.mktemp("hf"))


@pytest.fixture(scope="module")
def tok():
    return get_gpt2_tokenizer()


TEXT = ("The Children's Book Test and LAMBADA measure how well a language model uses long contexts. "
        "WikiText-2 and the Penn Treebank measure perplexity on tokenized text, which GPT-2 reads as bytes. ") * 3


def test_score_continuations_matches_transformers(pair, tok) -> None:
    """Summed log p(continuation | context) equals the HF model's, for unequal lengths batched together."""
    hf, ours = pair
    ctxs = [tok.encode("Once upon a time"), tok.encode("The weather today is"), [], tok.encode("A")]
    conts = [tok.encode(" there was a dragon"), tok.encode(" sunny"), tok.encode("Hello world"), tok.encode(" b c d e")]
    got = score_continuations(ours, ctxs, conts, batch_size=3)
    for ctx, cont, s in zip(ctxs, conts, got):
        ctx = ctx or [EOT]  # documented: an empty context means "start of a document"
        lp = hf_logprobs(hf, ctx + cont)
        ref = sum(lp[len(ctx) - 1 + i, t].item() for i, t in enumerate(cont))
        assert s.logprob == pytest.approx(ref, abs=1e-4)
        assert s.n_tokens == len(cont)
        assert s.argmax == lp[len(ctx) - 1 : len(ctx) - 1 + len(cont)].argmax(-1).tolist()


def test_greedy_flag_is_true_exactly_for_the_argmax_path(pair, tok) -> None:
    """A continuation made of HF's own greedy tokens is 'greedy'; changing its last token is not."""
    hf, ours = pair
    ctx = tok.encode("In the beginning")
    greedy = hf.generate(torch.tensor([ctx]), max_new_tokens=4, do_sample=False, pad_token_id=EOT)[0, len(ctx):].tolist()
    wrong = greedy[:-1] + [(greedy[-1] + 1) % 50257]
    a, b = score_continuations(ours, [ctx, ctx], [greedy, wrong])
    assert a.greedy and not b.greedy


def test_first_token_mask_excludes_tokens_from_the_argmax(pair, tok) -> None:
    """With the argmax token masked, ``filtered_first`` is HF's second most likely token."""
    hf, ours = pair
    ctx = tok.encode("The stop-word filter")
    lp = hf_logprobs(hf, ctx)[-1]
    best, second = lp.topk(2).indices.tolist()
    mask = torch.zeros(50257, dtype=torch.bool)
    mask[best] = True
    (s,) = score_continuations(ours, [ctx], [[best]], first_token_mask=mask)
    assert s.greedy and s.argmax == [best] and s.filtered_first == second


def test_left_truncation_keeps_the_continuation(pair, tok) -> None:
    """Context + continuation longer than block_size: the oldest context tokens are dropped."""
    hf, ours = pair
    ctx = tok.encode(TEXT)[:100]
    cont = tok.encode(" perplexity")
    (s,) = score_continuations(ours, [ctx], [cont])
    kept = (ctx + cont)[-65:]
    lp = hf_logprobs(hf, kept[:-1])  # 64 tokens in, the last one's prediction is the final target
    ref = sum(lp[len(kept) - len(cont) - 1 + i, t].item() for i, t in enumerate(cont))
    assert s.logprob == pytest.approx(ref, abs=1e-4)


def _reference_nlls(hf, seq: list[int], L: int, stride: int) -> list[float]:
    """Token t (of seq, t >= 1) is predicted by the first window [k*stride, k*stride + L] that covers it."""
    out = []
    for t in range(1, len(seq)):
        k = max(0, math.ceil((t - L) / stride))
        begin = k * stride
        lp = hf_logprobs(hf, seq[begin:t])  # at most L tokens in; the last position predicts seq[t]
        out.append(-lp[t - 1 - begin, seq[t]].item())
    return out


@pytest.mark.parametrize("stride", [64, 32, 17])
def test_sliding_window_nll_matches_transformers(pair, tok, stride) -> None:
    """Every token scored once, with the context the sliding-window rule gives it."""
    hf, ours = pair
    ids = tok.encode(TEXT)[:110]
    got = token_nlls(ours, ids, stride=stride, batch_size=2, bos=EOT)
    assert got.shape == (len(ids),)
    ref = _reference_nlls(hf, [EOT] + ids, 64, stride)
    assert torch.allclose(got, torch.tensor(ref, dtype=torch.float64), atol=1e-4)


def test_text_that_fits_equals_one_forward_pass(pair, tok) -> None:
    hf, ours = pair
    ids = tok.encode("Perplexity is the exponentiated average negative log-likelihood.")
    with torch.no_grad():
        loss = hf(torch.tensor([[EOT] + ids]), labels=torch.tensor([[EOT] + ids])).loss.item()
    assert token_nlls(ours, ids).mean().item() == pytest.approx(loss, abs=1e-4)


def test_evaluate_lm_normalizes_by_original_units(pair, tok) -> None:
    """ppl per word uses the original file's words (+1 <eos> per line); bpb/bpc the original's bytes/chars
    (as lm-evaluation-harness divides), bpb_read the bytes the model read."""
    hf, ours = pair
    original = " He did n't go . \n It was 1 @,@ 000 km . \n"
    text = "He didn't go.\nIt was 1,000 km.\n"
    res = evaluate_lm(ours, tok, text, original=original, stride=32)
    ids = tok.encode(text)
    with torch.no_grad():
        total = hf(torch.tensor([[EOT] + ids]), labels=torch.tensor([[EOT] + ids])).loss.item() * len(ids)
    assert res.nll == pytest.approx(total, abs=1e-3)
    assert res.n_words == 12 + 2 == count_words(original)
    assert res.ppl_word == pytest.approx(math.exp(total / 14), rel=1e-4)
    assert res.ppl_token == pytest.approx(math.exp(total / len(ids)), rel=1e-4)
    assert res.ppl_word_no_eos == pytest.approx(math.exp(total / 12), rel=1e-4)
    assert res.bits_per_byte == pytest.approx(total / math.log(2) / len(original.encode()), rel=1e-4)
    assert res.bits_per_byte_read == pytest.approx(total / math.log(2) / len(text.encode()), rel=1e-4)
    assert res.bits_per_char == pytest.approx(total / math.log(2) / len(original), rel=1e-4)
    assert (res.context, res.stride) == (64, 32)


def test_lambada_metrics_match_transformers(pair, tok) -> None:
    """acc / last-token acc / stop-word acc / ppl recomputed from HF logits on the same passages.

    Some passages end with the word the model itself predicts (found with HF greedy decoding), so
    the accuracies are not trivially zero."""
    from gpt2lib.tasks.lambada import evaluate_lambada, split_last_word

    hf, ours = pair
    texts = ["She looked at the old house", "He said the", "They walked along the river bank",
             "It was a dark and stormy night"]
    for ctx in ["Nobody knew where the treasure was", "I said yes", "The ship sailed into the", "over and over",
                "the dog", "a cat", "she was there", "We will meet at", "Then the king", "Good morning"]:
        nxt = int(hf_logprobs(hf, tok.encode(ctx))[-1].argmax())
        word = tok.decode([nxt])
        if word[:1] == " " and word[1:].isalpha():
            texts.append(ctx + word)
    assert len(texts) > 5
    res = evaluate_lambada(ours, tok, texts, batch_size=3)
    # the acc metric is checked here; the word-level stop-word filter has its own brute-force test below
    acc = last = nll = 0.0
    for t in texts:
        ctx, word = split_last_word(t)
        c, w = tok.encode(ctx), tok.encode(word)
        lp = hf_logprobs(hf, c + w)[len(c) - 1 : len(c) - 1 + len(w)]
        am = lp.argmax(-1).tolist()
        acc += am == w
        last += am[-1] == w[-1]
        nll -= sum(lp[i, x].item() for i, x in enumerate(w))
    n = len(texts)
    m = res.metrics
    assert m["acc"] == pytest.approx(100 * acc / n) and m["acc"] > 0
    assert m["acc_last_token"] == pytest.approx(100 * last / n)
    assert m["ppl"] == pytest.approx(math.exp(nll / n), rel=1e-4)


def test_lambada_split_and_real_file(data_mirror) -> None:
    from gpt2lib.tasks.lambada import load_lambada, split_last_word

    texts = load_lambada()
    assert len(texts) == 5153
    assert split_last_word(texts[0])[1] == " signs"
    with pytest.raises(ValueError, match="empty"):
        split_last_word("   ")
    with pytest.raises(ValueError, match="no context"):
        split_last_word("alone")


# ---------------------------------------------------------------------------------------- bad input


def test_vocab_mismatch_is_a_value_error(tok) -> None:
    from gpt2lib.model import GPT2, GPT2Config

    small = GPT2(GPT2Config.from_name("gpt2-tiny", vocab_size=1000))
    with pytest.raises(ValueError, match="vocab_size=1000"):
        check_vocab(small, tok)
    with pytest.raises(ValueError, match="vocab_size=1000"):
        evaluate_lm(small, tok, "hello world")


def test_bad_requests_raise(pair, tok) -> None:
    _, ours = pair
    with pytest.raises(ValueError, match="continuation is empty"):
        score_continuations(ours, [[1]], [[]])
    with pytest.raises(ValueError, match="exceeds the context"):
        score_continuations(ours, [[1]], [[5] * 65])
    with pytest.raises(ValueError, match="2 contexts but 1"):
        score_continuations(ours, [[1], [2]], [[3]])
    with pytest.raises(ValueError, match="empty"):
        evaluate_lm(ours, tok, "  \n ")
    with pytest.raises(ValueError, match="stride"):
        token_nlls(ours, [1, 2, 3], stride=65)


def test_read_jsonl_names_the_bad_line(tmp_path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_text('{"text": "a"}\n\n{"text": "b"\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"x.jsonl, line 3: not JSON"):
        list(read_jsonl(p))
    p.write_text('{"text": "a"}\n{"other": 1}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r", line 2: missing key\(s\) \['text'\]"):
        list(read_jsonl(p, required=("text",)))
    p.write_text('{"text": "a"}\n\n[1]\n', encoding="utf-8")
    with pytest.raises(ValueError, match=", line 3: expected a JSON object"):
        list(read_jsonl(p))


def test_unknown_task_lists_available_names() -> None:
    from gpt2lib.tasks import get_task

    with pytest.raises(KeyError, match="available: .*lambada"):
        get_task("lambda")


def test_load_model_offline_hub_name_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="offline"):
        load_model("gpt2")


def test_load_model_reads_a_folder(pair, tmp_path) -> None:
    _, ours = pair
    ours.save_pretrained(str(tmp_path))
    loaded = load_model(str(tmp_path))
    x = torch.tensor([[1, 2, 3]])
    assert torch.equal(loaded(x)[0], ours(x)[0])


# ---------------------------------------------------------------------------------------- generation, table


def test_generate_text_greedy_matches_transformers_and_stops(pair, tok) -> None:
    hf, ours = pair
    prompt = tok.encode("Q: what is two plus two?\nA:")
    ref = hf.generate(torch.tensor([prompt]), max_new_tokens=6, do_sample=False, pad_token_id=EOT)[0, len(prompt):]
    assert generate_text(ours, tok, prompt, 6) == tok.decode(ref.tolist())
    cut = generate_text(ours, tok, prompt, 6, stop=lambda s: 1 if len(s) > 1 else None)
    assert len(cut) == 1


def test_results_table_puts_paper_numbers_beside_ours() -> None:
    table = results_table([TaskResult("lambada", {"acc": 9.5, "acc_stopword_filter": 12.5, "ppl": 99.0}, 10,
                                      model="tiny"),
                           TaskResult("winograd", {"acc": 51.0}, 273),
                           TaskResult("wikitext2", {"ppl": 30.0, "words": 245569}, 4358,
                                      settings={"context": 1024, "stride": 512})])
    # Table 3's LAMBADA accuracy sits beside the stop-word-filtered accuracy, not the strict one
    assert ("| lambada | acc_stopword_filter | 12.50 | % of passages | tiny | 10 | 45.99 | 55.48 | 60.12 | 63.24 "
            "| Table 3 |") in table
    assert "| lambada | acc | 9.50 | % of passages, all target tokens greedy | tiny | 10 | - | - | - | - |  |" in table
    assert "| lambada | ppl | 99.00 | exp(NLL / target word) |" in table
    assert "| 35.13 | 15.60 | 10.87 | 8.63 | Table 3 |" in table
    assert "| wikitext2 | words | 245,569 | count |" in table
    assert "exp(NLL / word), 1 eos per line" in table
    assert "- wikitext2: context=1024, stride=512" in table
    assert "70.70 | 1542M, §3.4 |" in table
    assert PAPER_TABLE3["wikitext2/ppl"]["117M"] == 29.41


def test_eval_cli_runs_a_task_on_a_local_model(pair, tmp_path, capsys, data_mirror) -> None:
    """`python -m gpt2lib eval --task lambada --model <folder> --limit 3` prints the table."""
    import argparse

    from gpt2lib.tasks import add_cli

    _, ours = pair
    ours.save_pretrained(str(tmp_path))
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers())
    args = parser.parse_args(["eval", "--task", "lambada", "--model", str(tmp_path), "--limit", "3",
                              "--batch-size", "2", "--device", "cpu"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "| lambada | acc_stopword_filter |" in out and "| 3 | 45.99 | 55.48 |" in out
    assert "convention=gpt2lib" in out and "limit=3 passages" in out


def test_eval_cli_rejects_unknown_tasks_and_models_by_name(capsys) -> None:
    """A task that does not exist is a usage error (exit 2) listing the tasks; a model that cannot
    be loaded is exit 1 with one line naming it, not a traceback."""
    from gpt2lib.cli import main

    with pytest.raises(SystemExit) as e:
        main(["eval", "--task", "lambda"])
    assert e.value.code == 2 and "lambada" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["eval", "--task", "lambada", "--model", "zoo:no-such-model"])
    err = capsys.readouterr().err
    assert e.value.code == 1 and "no-such-model" in err and "webtext-tiny" in err and "Traceback" not in err


# ------------------------------------------------------------------ LAMBADA: word-level stop-word filter


def _hf_next(hf, ids: list[int], block: int = 64) -> int:
    return int(hf_logprobs(hf, ids[-block:])[-1].argmax())


def _still_a_word(data: bytes) -> bool:
    """White space, opening quotes, letters/digits; a character cut at the end of the bytes may follow."""
    import re

    for cut in range(4):  # a UTF-8 character has at most 4 bytes: try dropping an incomplete tail
        try:
            text = data[: len(data) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return re.fullmatch(r"\s*[\"'“‘«„‚`]*[^\W_]*", text) is not None
    return False


def _hf_word(hf, tok, ids: list[int], first: int) -> str:
    """Brute force: complete the word that `first` begins, one full HF forward per piece."""
    word = [first]
    while len(word) < 12 and _still_a_word(tok.decode_bytes(word)):
        t = _hf_next(hf, ids + word)
        if t == EOT or not _still_a_word(tok.decode_bytes(word + [t])):
            break
        word.append(t)
    return tok.decode(word).strip()


def _hf_filtered_word(hf, tok, ctx: list[int], stop: set[str]) -> tuple[str, list[str]]:
    """Walk HF's ranking of first tokens; return the first word not in `stop` and the words skipped."""
    ranking = hf_logprobs(hf, ctx[-64:])[-1].argsort(descending=True).tolist()
    skipped = []
    for r in ranking:
        w = _hf_word(hf, tok, ctx, r)
        bare = w.lstrip("\"'“‘«„‚`")
        if any(c.isalpha() for c in bare) and bare.lower() not in stop:
            return w, skipped
        skipped.append(w)
    raise AssertionError("unreachable: the stop list is finite")


def test_lambada_stopword_filter_is_word_level_brute_force(pair, tok, data_mirror) -> None:
    """acc_stopword_filter equals a brute-force word-level computation on real LAMBADA passages: every
    candidate first token is completed to a whole word with HF, stop words are skipped as words.

    The stop list is made of words this random model really predicts (so the filter must skip
    some), plus the bare first piece of a multi-piece predicted word (a token-level mask of that
    piece would wrongly block the word, as " A" blocked " Alyssa")."""
    from gpt2lib.tasks.lambada import evaluate_lambada, load_lambada, split_last_word

    hf, ours = pair
    passages = [" ".join(p.split()[-25:]) for p in load_lambada()[:12]]  # fits the 64-token test model
    ctxs = [tok.encode(split_last_word(p)[0]) for p in passages]
    top1 = [_hf_filtered_word(hf, tok, c, set())[0] for c in ctxs]
    stop = {w.lower() for w in top1[:6] if w}
    multi = [(c, w) for c, w in zip(ctxs, top1) if len(tok.encode(" " + w)) > 1 and w.lower() not in stop]
    pieces = set()
    for c, w in multi[:2]:
        ranking = hf_logprobs(hf, c[-64:])[-1].argsort(descending=True).tolist()
        pieces.add(tok.decode([ranking[0]]).strip().lower())  # the first piece alone, e.g. "a" of "alyssa"
    stop |= pieces - {w.lower() for w in top1}
    # half the passages end with the word the filtered model predicts, so the accuracy is not trivially 0
    texts = []
    for i, (p, c) in enumerate(zip(passages, ctxs)):
        pred, _ = _hf_filtered_word(hf, tok, c, stop)
        ctx_text = split_last_word(p)[0]
        texts.append(f"{ctx_text} {pred}" if i % 2 == 0 and pred.isalnum() else p)
    res = evaluate_lambada(ours, tok, texts, batch_size=4, stop_words=frozenset(stop))
    right, n_skipped = 0, 0
    for t in texts:
        ctx, word = split_last_word(t)
        pred, skipped = _hf_filtered_word(hf, tok, tok.encode(ctx), stop)
        right += pred == word.strip()
        n_skipped += len(skipped)
    assert n_skipped >= 3  # the filter did skip words
    assert res.metrics["acc_stopword_filter"] == pytest.approx(100 * right / len(texts)) and right > 0


def test_lambada_lm_eval_convention_recomputed(pair, tok) -> None:
    """convention='lm-eval' is lm-evaluation-harness's lambada_openai: context = all but the last
    space-separated word, the target's ids = encode(context + target) after encode(context),
    acc = every target token greedy, ppl = exp(-mean LL); recomputed here with HF."""
    from gpt2lib.tasks.lambada import evaluate_lambada

    hf, ours = pair
    texts = ["She looked at the old house", "He paid 3.50 dollars", "It was a 'test' of will", "  two  spaces here"]
    res = evaluate_lambada(ours, tok, texts, batch_size=2, convention="lm-eval")
    lls, greedy = [], 0
    for t in texts:
        ctx, cont = " ".join(t.split(" ")[:-1]), " " + t.split(" ")[-1]
        n = len(ctx) - len(ctx.rstrip())
        if n:
            ctx, cont = ctx[:-n], ctx[-n:] + cont
        whole, c = tok.encode(ctx + cont), tok.encode(ctx)
        w = whole[len(c):]
        c = c or [EOT]
        lp = hf_logprobs(hf, c + w)[len(c) - 1 : len(c) - 1 + len(w)]
        lls.append(sum(lp[i, x].item() for i, x in enumerate(w)))
        greedy += lp.argmax(-1).tolist() == w
    assert res.metrics["ppl"] == pytest.approx(math.exp(-sum(lls) / len(lls)), rel=1e-4)
    assert res.metrics["acc"] == pytest.approx(100 * greedy / len(texts))
    assert res.settings["convention"] == "lm-eval"


# ------------------------------------------------------------ lm-evaluation-harness rolling windows


def _harness_rolling(tokens: list[int], prefix: int, L: int) -> list[tuple[list[int], list[int]]]:
    """get_rolling_token_windows(context_len=1) + make_disjoint_window, from the harness's definition."""
    out, predicted = [], 0
    first = min(L, len(tokens))
    out.append(([prefix] + tokens[: first - 1], tokens[:first]))
    predicted += first
    while predicted < len(tokens):
        n = min(len(tokens) - predicted, L)
        end = predicted + n
        out.append((tokens[end - L - 1 : end - 1], tokens[end - n : end]))
        predicted += n
    return [(a[: len(a) - (len(b) - 1)], b) for a, b in out]


@pytest.mark.parametrize("n_tokens", [40, 64, 150])
def test_full_last_window_is_the_harness_rolling_loglikelihood(pair, tok, n_tokens) -> None:
    """stride = L with full_last_window=True scores every token exactly as the harness's rolling windows."""
    hf, ours = pair
    ids = (tok.encode(TEXT) * 2)[:n_tokens]
    got = token_nlls(ours, ids, stride=64, batch_size=2, full_last_window=True)
    ref = []
    for ctx, cont in _harness_rolling(ids, EOT, 64):
        lp = hf_logprobs(hf, ctx + cont[:-1])
        ref += [-lp[len(ctx) - 1 + i, t].item() for i, t in enumerate(cont)]
    assert torch.allclose(got, torch.tensor(ref, dtype=torch.float64), atol=1e-4)
    plain = token_nlls(ours, ids, stride=64, batch_size=2)
    assert (not torch.allclose(plain, got, atol=1e-4)) == (n_tokens > 64 and n_tokens % 64 != 0)


# ------------------------------------------------------------------------- memory and precision


def test_scoring_never_holds_the_whole_batch_logits(pair, tok, monkeypatch) -> None:
    """The LM head sees at most LOGITS_CHUNK_BYTES // (4 V) rows at a time, only the scored positions,
    and the numbers are those of the unchunked HF computation."""
    import gpt2lib.evaluate as ev

    hf, ours = pair
    monkeypatch.setattr(ev, "LOGITS_CHUNK_BYTES", 4 * 50257 * 7)  # 7 rows at a time
    seen = []
    handle = ours.lm_head.register_forward_hook(lambda m, i, o: seen.append(o.shape[0] if o.dim() == 2 else -1))
    try:
        ids = tok.encode(TEXT)[:120]
        got = token_nlls(ours, ids, stride=64, batch_size=2)
        (s,) = score_continuations(ours, [ids[:50]], [ids[50:60]])
    finally:
        handle.remove()
    assert seen and max(seen) <= 7 and -1 not in seen  # never a [B, T, V] call
    ref = _reference_nlls(hf, [EOT] + ids, 64, 64)
    assert torch.allclose(got, torch.tensor(ref, dtype=torch.float64), atol=1e-4)
    lp = hf_logprobs(hf, ids[:60])
    assert s.logprob == pytest.approx(sum(lp[49 + i, t].item() for i, t in enumerate(ids[50:60])), abs=1e-4)


def test_eval_precision_is_fp32_on_cpu_and_bf16_runs(pair, tok) -> None:
    """auto = fp32 on CPU (numbers unchanged); an explicit bf16 runs under autocast and stays close."""
    from gpt2lib.evaluate import eval_precision

    _, ours = pair
    assert eval_precision("cpu") == "fp32"
    with pytest.raises(ValueError, match="fp16"):
        eval_precision("cpu", "fp16")
    ids = tok.encode(TEXT)[:100]
    a = token_nlls(ours, ids, stride=32)
    assert torch.equal(a, token_nlls(ours, ids, stride=32, precision="fp32"))
    b = token_nlls(ours, ids, stride=32, precision="bf16")
    assert not torch.equal(a, b) and b.sum().item() == pytest.approx(a.sum().item(), rel=2e-2)


def test_estimate_eval_memory_arithmetic_and_gpt2_xl_fits_16gb() -> None:
    """The estimate is the documented arithmetic, and gpt2-xl scoring 16 x 1024 tokens fits a 16 GB GPU
    in bf16/fp16 (the unchunked fp32 logits alone would take 16 * 1024 * 50257 * 8 bytes = 6.6 GB)."""
    from gpt2lib.hardware import estimate_eval_memory
    from gpt2lib.model import GPT2Config

    cfg = GPT2Config.from_name("gpt2-xl")
    d, T, V, b = 1600, 1024, 50257, 16
    n_params = 1_557_611_200  # GPT-2 XL with tied head: wte 50257*1600 + wpe 1024*1600 + 48 blocks + ln_f
    e = estimate_eval_memory(cfg, batch_size=b, precision="fp16")
    rows = (256 * 2**20) // (4 * V)
    assert e.params == 4 * n_params
    assert e.weight_copies == 2 * (n_params - T * d)
    assert e.activations == b * T * 40 * d
    assert e.logits == rows * V * 10
    assert e.total == e.params + e.weight_copies + e.activations + e.logits
    assert e.total < 0.9 * 16e9
    assert estimate_eval_memory(cfg, batch_size=b, precision="fp32").total < 0.9 * 16e9
    assert b * T * V * 8 + 4 * n_params > 0.75 * 16e9  # the old path: fp32 logits + log_softmax + weights


# ------------------------------------------------------------------------------- CLI and structure


def test_eval_cli_passes_context_and_stride_and_reports_them(pair, tmp_path, capsys, data_mirror) -> None:
    """--context / --stride reach the language-modelling task and are printed with the result."""
    import argparse

    from gpt2lib.tasks import add_cli

    _, ours = pair
    ours.save_pretrained(str(tmp_path))
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers())
    args = parser.parse_args(["eval", "--task", "wikitext2", "--model", str(tmp_path), "--limit", "4",
                              "--context", "32", "--stride", "16", "--device", "cpu"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "- wikitext2: convention=gpt2lib, context=32, stride=16" in out and "limit=4 lines" in out
    assert "| wikitext2 | ppl |" in out and "| 29.41 |" in out


def test_eval_cli_all_skips_columns_whose_data_cannot_be_had(pair, tmp_path, capsys, data_mirror,
                                                             monkeypatch) -> None:
    """--task all runs Table 3's columns; one whose file is neither in the mirror nor downloadable is listed
    as skipped with the reason (here: the network is down), the others are printed."""
    import argparse
    from urllib.error import URLError

    from gpt2lib import datasets, tasks

    def no_network(*a, **k):
        raise URLError("no network in this test")

    _, ours = pair
    ours.save_pretrained(str(tmp_path / "m"))
    monkeypatch.setattr(datasets, "urlopen", no_network)
    monkeypatch.setenv("GPT2LIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(tasks, "TABLE3_TASKS", ["ptb", "cbt-cn"])
    parser = argparse.ArgumentParser()
    tasks.add_cli(parser.add_subparsers())
    args = parser.parse_args(["eval", "--task", "all", "--model", str(tmp_path / "m"), "--limit", "3", "--device", "cpu"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "| ptb | ppl |" in out and "- cbt-cn: skipped" in out and "CBTest.tgz" in out
    assert not any((tmp_path / "cache").rglob("*.tgz"))


def test_evaluate_does_not_import_tasks() -> None:
    """One-way dependency: gpt2lib.tasks imports gpt2lib.evaluate, never the reverse (not even lazily)."""
    import ast
    from pathlib import Path

    import gpt2lib.evaluate as ev

    tree = ast.parse(Path(ev.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
    assert not any(m == "gpt2lib.tasks" or m.startswith("gpt2lib.tasks.") for m in imported)


def test_lambada_stopword_filter_with_an_oracle_on_every_passage(tok, data_mirror) -> None:
    """An oracle model (always the true next token) over all 5,153 LAMBADA passages: the filtered
    prediction is right exactly on the passages whose last word, read from the data at the word level,
    is one word (opening quotes allowed) whose bare form is not a stop word. Curly quotes are split
    over byte tokens (`“Holt`), so this holds only when a word's bytes are decoded as a whole."""
    import json
    import re

    from _evalref import OracleLM
    from gpt2lib.tasks.lambada import STOP_WORDS, evaluate_lambada, filtered_predictions, split_last_word

    with open(data_mirror / "lambada" / "lambada_test.jsonl", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    assert len(texts) == 5153
    # the reference, from the data alone: the last space-separated chunk, white space and opening quotes
    # stripped, must be one run of letters (no digits occur), not a stop word
    expected = set()
    for i, t in enumerate(texts):
        last = t.rstrip().split(" ")[-1]
        m = re.fullmatch(r"\s*[\"'“‘]*([^\W\d_]+)", last)
        if m and m.group(1).lower() not in STOP_WORDS:
            expected.add(i)
    assert len(expected) == 5095  # the count the lambada docstring and the book quote (98.87%)
    assert any("“" in texts[i].split(" ")[-1] for i in expected)  # curly-quoted words are among them

    pairs = [split_last_word(t) for t in texts]
    enc = [(tok.encode(c), tok.encode(w)) for c, w in pairs]
    oracle = OracleLM([c + w for c, w in enc])
    scores = score_continuations(oracle, [c for c, _ in enc], [w for _, w in enc], 64, n_vocab=tok.n_vocab,
                                 first_topk=20, bos=EOT)
    assert all(s.greedy for s in scores)  # it is an oracle: `acc` would be 100%
    preds = filtered_predictions(oracle, tok, [c for c, _ in enc], [s.first_top for s in scores], batch_size=64)
    got = {i for i, (p, (_, w)) in enumerate(zip(preds, pairs)) if p == w.strip()}
    assert got == expected
    # the metric itself, on a slice that holds the quoted words, the stop words and the joined words
    some = sorted({i for i in range(5153) if i not in expected} | {i for i in expected if "“" in texts[i]})[:80]
    res = evaluate_lambada(oracle, tok, [texts[i] for i in some], batch_size=32)
    assert res.metrics["acc"] == 100.0
    assert res.metrics["acc_stopword_filter"] == pytest.approx(100 * len(expected & set(some)) / len(some))


# ------------------------------------------------------------------ eval with each model's own tokenizer


def _hf_ppl_word(hf, ids: list[int], original: str, L: int) -> float:
    """Per-word perplexity recomputed: <|endoftext|> + ids in disjoint windows of L tokens (each window
    reads L tokens and scores the next L), divided by the original's words plus one <eos> per line."""
    seq = [EOT if hf.config.vocab_size == 50257 else hf.config.eos_token_id] + ids
    nll = 0.0
    for b in range(0, len(seq) - 1, L):
        lp = hf_logprobs(hf, seq[b : b + L])
        nxt = seq[b + 1 : b + L + 1]
        nll -= sum(lp[j, t].item() for j, t in enumerate(nxt))
    words = len(original.split()) + original.count("\n")
    return math.exp(nll / words)


def _table_value(out: str, task: str, metric: str) -> float:
    row = next(line for line in out.splitlines() if line.startswith(f"| {task} | {metric} |"))
    return float(row.split("|")[3].replace(",", ""))


def test_eval_scores_each_model_with_its_own_tokenizer(tmp_path, capsys, data_mirror) -> None:
    """A model trained with a custom BPE and one with GPT-2's tokenizer (GPT-2's files beside it), evaluated
    by `eval` on the same WikiText-2 lines: each per-word perplexity equals one recomputed with transformers,
    the folder's own tokenizer and the original's word count; the output names the tokenizer used."""
    import shutil

    from transformers import GPT2Config as HFConfig, GPT2LMHeadModel

    from gpt2lib.bpe import BytePairTokenizer
    from gpt2lib.cli import main
    from gpt2lib.detokenize import wikitext_detokenize

    lines = 5
    original = "".join((data_mirror / "wikitext-2" / "test.txt").read_text(encoding="utf-8").splitlines(True)[:lines])
    corpus = (data_mirror / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:20000]
    bpe = BytePairTokenizer(name="tiny-bpe").train(corpus, 320)
    assert "<|endoftext|>" in bpe.special_tokens
    folders = {}
    for name, n_vocab, eos in (("custom", bpe.n_vocab, bpe.eot), ("gpt2", 50257, EOT)):
        torch.manual_seed(1)
        hf = GPT2LMHeadModel(HFConfig(vocab_size=n_vocab, n_positions=32, n_embd=32, n_layer=2, n_head=2,
                                      eos_token_id=eos, bos_token_id=eos)).eval()
        folder = tmp_path / name
        hf.save_pretrained(folder)
        folders[name] = (folder, hf)
    bpe.save(folders["custom"][0] / "tokenizer.json")
    shutil.copy(data_mirror / "gpt2" / "encoder.json", folders["gpt2"][0] / "vocab.json")  # transformers' names
    shutil.copy(data_mirror / "gpt2" / "vocab.bpe", folders["gpt2"][0] / "merges.txt")

    gpt2_tok = get_gpt2_tokenizer()
    for name, tokenizer in (("custom", bpe), ("gpt2", gpt2_tok)):
        folder, hf = folders[name]
        assert main(["eval", "--task", "wikitext2", "--model", str(folder), "--limit", str(lines),
                     "--context", "32", "--stride", "32", "--device", "cpu"]) == 0
        out = capsys.readouterr().out
        assert f"tokenizer: {tokenizer.name} ({tokenizer.n_vocab:,} tokens)" in out
        ids = [t for t in _encode_independently(tokenizer, wikitext_detokenize(original))]
        ref = _hf_ppl_word(hf, ids, original, 32)
        assert _table_value(out, "wikitext2", "ppl") == pytest.approx(ref, rel=1e-3)

    # a mismatch in either direction is an error naming both sizes and the tokenizer
    (folders["custom"][0] / "tokenizer.json").unlink()  # no tokenizer files, and not GPT-2's vocabulary
    with pytest.raises(SystemExit):
        main(["eval", "--task", "wikitext2", "--model", str(folders["custom"][0]), "--limit", "1"])
    err = capsys.readouterr().err
    assert f"vocabulary of {bpe.n_vocab} tokens is not GPT-2's (50257)" in err
    for name in ("vocab.json", "merges.txt"):  # GPT-2's tokenizer files beside a 320-token model: smaller
        shutil.copy(folders["gpt2"][0] / name, folders["custom"][0] / name)
    with pytest.raises(SystemExit):
        main(["eval", "--task", "wikitext2", "--model", str(folders["custom"][0]), "--limit", "1"])
    err = capsys.readouterr().err
    assert f"vocab_size={bpe.n_vocab} is smaller than the tokenizer's n_vocab=50257 (gpt2)" in err
    big = GPT2LMHeadModel(HFConfig(vocab_size=60000, n_positions=32, n_embd=32, n_layer=1, n_head=2))
    big.save_pretrained(tmp_path / "big")
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(folders["gpt2"][0] / name, tmp_path / "big" / name)
    with pytest.raises(SystemExit):
        main(["eval", "--task", "wikitext2", "--model", str(tmp_path / "big"), "--limit", "1"])
    assert "vocab_size=60000 is larger than the tokenizer's n_vocab=50257 (gpt2)" in capsys.readouterr().err


def _encode_independently(tokenizer, text: str) -> list[int]:
    """GPT-2's ids from tiktoken itself; a trained BPE's from its own encoder (the object the folder holds)."""
    if tokenizer.name == "gpt2":
        import tiktoken

        return tiktoken.get_encoding("gpt2").encode_ordinary(text)
    return tokenizer.encode(text)


def test_folder_tokenizer_reads_transformers_files(tmp_path, data_mirror) -> None:
    """A Hugging Face folder's tokenizer: GPT-2's files under transformers' names (vocab.json + merges.txt, as on
    the hub) or a `tokenizers` tokenizer.json built from them are recognised as GPT-2's; a folder without
    tokenizer files says GPT-2's is assumed."""
    import shutil

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    from gpt2lib.resolve import folder_tokenizer
    from gpt2lib.runtok import RunTokenizerError, huggingface_tokenizer

    both = tmp_path / "both"
    both.mkdir()
    shutil.copy(data_mirror / "gpt2" / "encoder.json", both / "vocab.json")
    shutil.copy(data_mirror / "gpt2" / "vocab.bpe", both / "merges.txt")
    tok, source = folder_tokenizer(both)
    assert tok.name == "gpt2" and "tokenizer files" in source
    ref = Tokenizer(models.BPE.from_file(str(both / "vocab.json"), str(both / "merges.txt")))
    ref.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    ref.decoder = decoders.ByteLevel()
    (tmp_path / "only").mkdir()
    ref.save(str(tmp_path / "only" / "tokenizer.json"))
    tok, _ = folder_tokenizer(tmp_path / "only")
    text = "Hello world, this is GPT-2's tokenizer."
    assert tok.name == "gpt2" and tok.encode(text) == ref.encode(text).ids
    (tmp_path / "none").mkdir()
    tok, source = folder_tokenizer(tmp_path / "none")
    assert tok.name == "gpt2" and "assumed" in source
    assert folder_tokenizer(tmp_path / "none", vocab_size=50304)[0].name == "gpt2"  # GPT-2's, padded
    with pytest.raises(RunTokenizerError, match="vocabulary of 300 tokens is not GPT-2's"):
        folder_tokenizer(tmp_path / "none", vocab_size=300)  # GPT-2's would decode it to garbage
    assert folder_tokenizer(both, vocab_size=300)[0].name == "gpt2"  # its own files decide, not the size
    assert huggingface_tokenizer(tmp_path / "only", 50257).encode(text) == ref.encode(text).ids
