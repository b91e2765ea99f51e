"""§3.6 summarization (gpt2lib.tasks.summarization): ROUGE re-computed by an independent n-gram / LCS
implementation, sentence splitting and PTB de-tokenization by hand, the 250 CNN/Daily Mail test articles
checked against the official split, the Lead-3 / Random-3 rows of Table 4 reproduced, and the TL;DR
prompt and decoding checked against `transformers`."""
from __future__ import annotations

import collections
import hashlib
import json
import random
import re

import pytest
import torch
from hypothesis import given, settings, strategies as st

from _evalref import make_pair
from gpt2lib.tokenizer import get_gpt2_tokenizer

EOT = 50256


@pytest.fixture(scope="module")
def tok():
    return get_gpt2_tokenizer()


@pytest.fixture(scope="module")
def articles(data_mirror):
    from gpt2lib.tasks.summarization import load_cnndm_articles

    return load_cnndm_articles()


# ------------------------------------------------------------------------------ an independent ROUGE


def _tokens(text: str) -> list[str]:
    # Lin's ROUGE tokenization: lower-case, every non-alphanumeric character separates words. The tests'
    # words are at most 3 letters, which the Porter stemmer (applied to words of 4+ letters) leaves alone.
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


def _f1(hits: int, n_pred: int, n_ref: int) -> float:
    if hits == 0:
        return 0.0
    p, r = hits / n_pred, hits / n_ref
    return 2 * p * r / (p + r)


def _rouge_n(pred: str, ref: str, n: int) -> float:
    grams = lambda t: collections.Counter(tuple(t[i:i + n]) for i in range(len(t) - n + 1))  # noqa: E731
    p, r = grams(_tokens(pred)), grams(_tokens(ref))
    return _f1(sum((p & r).values()), sum(p.values()), sum(r.values()))


def _lcs(a: list[str], b: list[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        prev_diag, row[0] = 0, 0
        for j, y in enumerate(b, 1):
            prev_diag, row[j] = row[j], prev_diag + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def _rouge_l(pred: str, ref: str) -> float:
    p, r = _tokens(pred), _tokens(ref)
    return _f1(_lcs(p, r), len(p), len(r))


WORDS = ["the", "cat", "dog", "sat", "on", "a", "mat", "ran", "to", "it", "was", "red", "big", "and"]
texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=12).map(" ".join)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(texts, texts), min_size=1, max_size=3))
def test_rouge_equals_independent_ngram_and_lcs_computation(pairs) -> None:
    from gpt2lib.tasks.summarization import rouge

    preds, refs = [p for p, _ in pairs], [r for _, r in pairs]
    got = rouge(preds, refs)
    mean = lambda f: 100 * sum(f(p, r) for p, r in pairs) / len(pairs)  # noqa: E731
    assert got["rouge1"] == pytest.approx(mean(lambda p, r: _rouge_n(p, r, 1)))
    assert got["rouge2"] == pytest.approx(mean(lambda p, r: _rouge_n(p, r, 2)))
    # One sentence each: the summary-level LCS is the plain LCS.
    assert got["rougeL"] == pytest.approx(mean(_rouge_l)) and got["rougeL_text"] == pytest.approx(mean(_rouge_l))
    assert got["rouge_avg"] == pytest.approx((got["rouge1"] + got["rouge2"] + got["rougeL"]) / 3)


def test_summary_level_rouge_l_is_the_union_lcs_of_lin_2004() -> None:
    """Lin (2004) §3.2's example: reference r = w1..w5, candidate sentences c1 = w1 w2 w6 w7 w8 and
    c2 = w1 w3 w8 w9 w5; the union LCS of r with c1, c2 is w1 w2 w3 w5, so R = 4/5 and P = 4/10."""
    from gpt2lib.tasks.summarization import rouge

    ref = "aa bb cc dd ee."
    for pred in ["aa bb ff gg hh. aa cc hh ii ee.", "aa cc hh ii ee. aa bb ff gg hh."]:
        got = rouge([pred], [ref])
        assert got["rougeL"] == pytest.approx(100 * _f1(4, 10, 5))  # the union does not depend on the order
        assert got["rougeL_text"] == pytest.approx(100 * _rouge_l(pred, ref))
    # Over the whole text, in the second order the LCS is only 3 long (aa cc ee): sentence boundaries matter.
    assert _rouge_l("aa cc hh ii ee. aa bb ff gg hh.", ref) == pytest.approx(_f1(3, 10, 5))


def test_rouge_stems_and_rejects_bad_input() -> None:
    from gpt2lib.tasks.summarization import rouge

    assert rouge(["Cats running."], ["cat runs"])["rouge1"] == pytest.approx(100.0)  # Porter stemming is on
    assert rouge(["the cat sat"], ["the cat sat"])["rouge_avg"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="equally many"):
        rouge(["a"], [])
    with pytest.raises(ValueError, match="equally many"):
        rouge([], [])


# ------------------------------------------------------------------------------ sentences, de-tokenization


@pytest.mark.parametrize("text, sentences", [
    ("A cat sat. It was warm! Was it? Yes.", ["A cat sat.", "It was warm!", "Was it?", "Yes."]),
    ('He said "stop." Then he left.', ['He said "stop."', "Then he left."]),
    ("‘I’d be over the moon.’ Locke said.", ["‘I’d be over the moon.’", "Locke said."]),
    ("Mr. Smith and Dr. Jones met J. R. Ewing in St. Louis. They talked.",
     ["Mr. Smith and Dr. Jones met J. R. Ewing in St. Louis.", "They talked."]),
    ("It rose 2.5 per cent in the U.S. market. Shares fell", ["It rose 2.5 per cent in the U.S. market.",
                                                              "Shares fell"]),
    ("no full stop at all", ["no full stop at all"]),
    ("   ", []),
])
def test_split_sentences(text, sentences) -> None:
    from gpt2lib.tasks.summarization import first_sentences, split_sentences

    assert split_sentences(text) == sentences
    assert first_sentences(text, 2) == " ".join(sentences[:2])


@pytest.mark.parametrize("ptb, text", [
    ("Gary Locke will be confirmed as Kilmarnock boss on Friday . The club went unbeaten during Locke 's first six "
     "games in charge .", "Gary Locke will be confirmed as Kilmarnock boss on Friday. The club went unbeaten during "
     "Locke's first six games in charge."),
    ("A troll called ` fatalsplash ' then accused Alexis of being a ` gold digger ' Fowler told the hater .",
     "A troll called 'fatalsplash' then accused Alexis of being a 'gold digger' Fowler told the hater."),
    ("He ca n't go , she said : `` It 's over '' -LRB- really -RRB- .",
     "He can't go, she said: \"It's over\" (really)."),
    ("Prices rose 20 % to £ 5 or $ 7 ... then fell ; the players ' union agreed !",
     "Prices rose 20% to £5 or $7... then fell; the players' union agreed!"),
])
def test_detokenize_ptb_by_hand(ptb, text) -> None:
    from gpt2lib.tasks.summarization import detokenize_ptb

    assert detokenize_ptb(ptb) == text


PTB_TOKENS = ["word", "Locke", "'s", "n't", "ca", ".", ",", ":", ";", "?", "!", "%", "$", "£", "`", "'", "``",
              "''", "-LRB-", "-RRB-", "...", "--", "39-year-old", "U.S."]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(PTB_TOKENS), min_size=1, max_size=15))
def test_detokenize_ptb_only_moves_spaces(tokens) -> None:
    """Whatever the tokens, de-tokenizing changes only spaces (and the PTB bracket / quote symbols)."""
    from gpt2lib.tasks.summarization import detokenize_ptb

    symbols = {"-LRB-": "(", "-RRB-": ")", "``": '"', "''": '"', "`": "'"}
    out = detokenize_ptb(" ".join(tokens))
    assert out.replace(" ", "") == "".join(symbols.get(t, t) for t in tokens)
    assert out == out.strip() and "  " not in out


# ------------------------------------------------------------------------------ the 250 real articles


def test_the_250_articles_are_in_the_official_test_split(articles, data_mirror) -> None:
    folder = data_mirror / "cnn-dailymail" / "frank-test-250"
    with open(data_mirror / "cnn-dailymail" / "all_test.txt", encoding="utf-8") as f:
        urls = [line.strip() for line in f if line.strip()]
    assert len(urls) == 11490
    split = {hashlib.sha1(u.encode()).hexdigest() for u in urls}
    assert len(articles) == 250 and [a.id for a in articles] == sorted(p.stem for p in folder.glob("*.json"))
    assert all(a.id in split and hashlib.sha1(a.url.encode()).hexdigest() == a.id for a in articles)
    first = json.loads((folder / f"{articles[0].id}.json").read_text(encoding="utf-8"))
    assert articles[0].paragraphs == tuple(first["article_lines"])
    assert articles[0].reference == ("Gary Locke will be confirmed as Kilmarnock boss on Friday. The club went "
                                     "unbeaten during Locke's first six games in charge. The 39-year-old former "
                                     "Killie defender has paid tribute to his players.")
    # No PTB artefacts left in any reference: no space before . , 's n't, no backquote, no -LRB-.
    assert not any(re.search(r" (\.|,|'s|n't)( |$)|`|-[LR]RB-", a.reference) for a in articles)


def test_how_many_articles_end_mid_sentence(data_mirror) -> None:
    """The count the module docstring states, read from the article files themselves: an article ends
    mid-sentence when its last line, closing quotes and brackets stripped, does not end with . ! or ?
    (84 of 250); counting a closing quote after the period as mid-sentence gives 137."""
    lasts = []
    for path in sorted((data_mirror / "cnn-dailymail" / "frank-test-250").glob("*.json")):
        lines = [ln for ln in json.loads(path.read_text(encoding="utf-8"))["article_lines"] if ln.strip()]
        lasts.append(lines[-1].rstrip())
    assert len(lasts) == 250
    assert sum(not re.sub(r"[\"'”’)\]`]+$", "", s).endswith((".", "!", "?")) for s in lasts) == 84
    assert sum(not s.endswith((".", "!", "?")) for s in lasts) == 137


def test_an_article_outside_the_split_or_misnamed_is_refused(tmp_path) -> None:
    from gpt2lib.tasks.summarization import load_cnndm_articles

    url = "http://example.com/story"
    sid = hashlib.sha1(url.encode()).hexdigest()
    (tmp_path / "urls.txt").write_text("http://example.com/other\n", encoding="utf-8")
    doc = {"url": url, "article_lines": ["One. Two."], "bart_reference": "One ."}
    (tmp_path / "arts").mkdir()
    (tmp_path / "arts" / f"{sid}.json").write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ValueError, match="not in the official"):
        load_cnndm_articles(tmp_path / "arts", url_list=tmp_path / "urls.txt")
    (tmp_path / "urls.txt").write_text(url + "\n", encoding="utf-8")
    assert load_cnndm_articles(tmp_path / "arts", url_list=tmp_path / "urls.txt")[0].reference == "One."
    (tmp_path / "arts" / f"{sid}.json").rename(tmp_path / "arts" / "0000.json")
    with pytest.raises(ValueError, match="sha1"):
        load_cnndm_articles(tmp_path / "arts", url_list=tmp_path / "urls.txt")
    (tmp_path / "arts" / "0000.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match="0000.json"):
        load_cnndm_articles(tmp_path / "arts", url_list=tmp_path / "urls.txt")


def test_lead3_and_random3(articles) -> None:
    from gpt2lib.tasks.summarization import lead3, random3, split_sentences

    a = articles[0]
    sents = [s for p in a.paragraphs for s in split_sentences(p)]
    assert lead3(a) == " ".join(sents[:3])
    r1, r2 = random3(a, random.Random(5)), random3(a, random.Random(5))
    assert r1 == r2
    picked = [sents.index(s) for s in split_sentences(r1)]
    assert len(picked) == 3 and picked == sorted(picked)
    assert len({random3(a, random.Random(s)) for s in range(10)}) > 1


def test_baselines_reproduce_table4_rows(articles) -> None:
    """Lead-3 and Random-3 on the 250 articles land within 1.5 ROUGE points of the paper's rows (Table 4,
    full 11,490-article test set). Random-3 is checked at seed 0 only, which is near the top of its seed
    spread (over seeds 0-9 R-1 ranges 26.7-28.4; see the module docstring), and FRANK's articles are
    truncated, so this shows agreement, not that the setup is exactly the paper's."""
    from gpt2lib.tasks.summarization import PAPER_TABLE4, evaluate_baselines, table4

    res = evaluate_baselines(articles, seed=0)
    for ours, paper in [("Lead-3", "Lede-3"), ("Random-3", "Random-3")]:
        m = res[ours].metrics
        got = [m["rouge1"], m["rouge2"], m["rougeL"], m["rouge_avg"]]
        assert got == pytest.approx(list(PAPER_TABLE4[paper]), abs=1.5), (ours, got)
        assert res[ours].n_examples == 250
    assert res["Lead-3"].metrics["rouge_avg"] > res["Random-3"].metrics["rouge_avg"] + 8
    lines = table4({k: v.metrics for k, v in res.items()}, paper={"Random-3": "Random-3"}).splitlines()
    lead = res["Lead-3"].metrics
    assert lines[2] == (f"| Lead-3 | {lead['rouge1']:.2f} | {lead['rouge2']:.2f} | {lead['rougeL']:.2f} | "
                        f"{lead['rouge_avg']:.2f} | Lede-3 | 40.38 | 17.66 | 36.62 | 31.55 |")
    assert table4({"mine": lead}).splitlines()[2].endswith("| - | - | - | - | - |")


# ------------------------------------------------------------------------------ the TL;DR method


def test_tldr_prompt_keeps_the_article_start_and_matches_transformers(tmp_path, tok) -> None:
    """With k=1 the top-k sampler is greedy, so the summary must equal transformers' greedy continuation
    of (first tokens of the article) + "\\nTL;DR:"; with hint=False the hint is absent."""
    from gpt2lib.tasks.summarization import HINT, first_sentences, summarize

    hf, ours = make_pair(tmp_path, block_size=128)
    article = " ".join(f"Sentence {i} is about the council." for i in range(40))  # ~300 tokens > 128
    ids = tok.encode(article)
    for hint in (True, False):
        suffix = tok.encode(HINT) if hint else []
        prompt = ids[:128 - 20 - len(suffix)] + suffix
        out = hf.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False, pad_token_id=EOT)
        want = out[0, len(prompt):].tolist()
        want = want[:want.index(EOT)] if EOT in want else want
        got = summarize(ours, tok, article, max_new_tokens=20, top_k=1, hint=hint,
                        generator=torch.Generator().manual_seed(0))
        assert got == first_sentences(tok.decode(want), 3)


def test_tldr_on_articles_is_seeded(tmp_path, tok, articles) -> None:
    from gpt2lib.tasks.summarization import evaluate_summarization

    _, ours = make_pair(tmp_path, block_size=128)
    a = evaluate_summarization(ours, tok, articles[:2], max_new_tokens=12, seed=3)
    b = evaluate_summarization(ours, tok, articles[:2], max_new_tokens=12, seed=3)
    assert a.metrics == b.metrics and a.n_examples == 2
    assert set(a.metrics) == {"rouge1", "rouge2", "rougeL", "rougeL_text", "rouge_avg"}
    with pytest.raises(ValueError, match="no summarization"):
        evaluate_summarization(ours, tok, [])


def test_the_cli_seed_reaches_the_summarization_sampler():
    """`eval --task summarization --seed N` passes N on to the TL;DR sampler (it was dropped, always seed 0)."""
    import argparse
    import inspect

    from gpt2lib import tasks
    from gpt2lib.tasks import summarization

    args = argparse.Namespace(limit=3, batch_size=4, stride=None, context=None, convention="gpt2lib",
                              precision="auto", seed=7)
    kw = tasks._task_kwargs("summarization", args)
    assert kw["seed"] == 7
    accepted = inspect.signature(summarization.evaluate_summarization).parameters
    assert "seed" in accepted  # a named parameter, not swallowed by **kwargs
