"""The §3 tasks (gpt2lib.tasks): data readers on the real mirror files, prompt formats, metrics
re-computed by hand or with `transformers`, and the methods shown on small hand-written examples."""
from __future__ import annotations

import math

import pytest
import torch

from _evalref import hf_logprobs, make_pair
from gpt2lib.evaluate import generate_text
from gpt2lib.tokenizer import get_gpt2_tokenizer

EOT = 50256


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return make_pair(tmp_path_factory.mktemp("hf"), block_size=256)


@pytest.fixture(scope="module")
def tok():
    return get_gpt2_tokenizer()


def hf_cont_logprob(hf, ctx: list[int], cont: list[int]) -> float:
    ctx = ctx or [EOT]
    lp = hf_logprobs(hf, ctx + cont)
    return sum(lp[len(ctx) - 1 + i, t].item() for i, t in enumerate(cont))


# ------------------------------------------------------------------------------------------ Winograd


def test_wsc273_is_parsed_from_the_collection(data_mirror) -> None:
    from gpt2lib.tasks.winograd import load_wsc273

    schemas = load_wsc273()
    assert len(schemas) == 273
    first = schemas[0]
    assert (first.txt1, first.pronoun, first.txt2) == (
        "The city councilmen refused the demonstrators a permit because", "they", "feared violence.")
    assert first.candidates == ("The city councilmen", "The demonstrators") and first.answer == 0
    assert schemas[1].answer == 1
    assert {s.answer for s in schemas} == {0, 1}


def test_substitution_handles_case_and_possessives() -> None:
    from gpt2lib.tasks.winograd import WinogradSchema, substitute

    s = WinogradSchema("The trophy doesn't fit into the brown suitcase because", "it", "is too large.",
                       ("the trophy", "the suitcase"), 0)
    assert substitute(s, "The trophy") == ("The trophy doesn't fit into the brown suitcase because the trophy",
                                           " is too large.")
    start = WinogradSchema("Sam tried to paint a picture of shepherds with sheep, but", "They", "ended up looking more like golfers.",
                           ("the shepherds", "the sheep"), 0)
    assert substitute(start, "the sheep")[0].endswith("but The sheep")
    poss = WinogradSchema("Joe paid the detective after", "his", "case was solved.", ("Joe", "the detective"), 1)
    assert substitute(poss, "the detective") == ("Joe paid the detective after the detective's", " case was solved.")


def test_winograd_full_and_partial_scoring_match_transformers(pair, tok, data_mirror) -> None:
    """Partial: log p(rest | prefix with candidate); full: log p(whole sentence). Recomputed with HF."""
    from gpt2lib.tasks.winograd import evaluate_winograd, load_wsc273, substitute

    hf, ours = pair
    schemas = load_wsc273()[:8]
    res = evaluate_winograd(ours, tok, schemas, batch_size=4)
    part = full = 0
    for s in schemas:
        p, f = [], []
        for c in s.candidates:
            prefix, rest = substitute(s, c)
            p.append(hf_cont_logprob(hf, tok.encode(prefix), tok.encode(rest)))
            f.append(hf_cont_logprob(hf, [], tok.encode(prefix + rest)))
        part += (0 if p[0] > p[1] else 1) == s.answer
        full += (0 if f[0] > f[1] else 1) == s.answer
    assert res.metrics["acc"] == pytest.approx(100 * part / 8)
    assert res.metrics["acc_full"] == pytest.approx(100 * full / 8)


# ------------------------------------------------------------------------------------------ CBT


CBT_FILE = """1 Once there was a little fox who lived in the wood .
2 The fox had a friend , a rabbit named Tom .
21 One day the XXXXX went to the river .\tfox\t\tbear|fox|rabbit|wood

1 A king had three daughters .
21 The youngest XXXXX was the kindest .\tdaughter\t\tking|daughter|river
"""


def test_read_cbt_parses_blocks(tmp_path) -> None:
    from gpt2lib.tasks.cbt import read_cbt

    p = tmp_path / "cbt.txt"
    p.write_text(CBT_FILE, encoding="utf-8")
    ex = read_cbt(p)
    assert len(ex) == 2
    assert ex[0].context.startswith("Once there was") and ex[0].context.endswith("named Tom .")
    assert ex[0].candidates == ["bear", "fox", "rabbit", "wood"] and ex[0].answer == "fox"
    p.write_text("1 a\n21 no blank here\tx\t\ta|b\n", encoding="utf-8")
    with pytest.raises(ValueError, match=":2:"):
        read_cbt(p)


def test_cbt_scores_candidate_plus_rest_of_sentence(pair, tok, tmp_path) -> None:
    """The paper: the probability of each choice *and the rest of the sentence*; argmax wins."""
    from gpt2lib.tasks.cbt import candidate_pairs, evaluate_cbt, read_cbt

    hf, ours = pair
    p = tmp_path / "cbt.txt"
    p.write_text(CBT_FILE, encoding="utf-8")
    examples = read_cbt(p)
    assert candidate_pairs(examples[0])[1] == (
        examples[0].context + " One day the", " fox went to the river .")
    res = evaluate_cbt(ours, tok, examples)
    right = 0
    for ex in examples:
        lps = [hf_cont_logprob(hf, tok.encode(c), tok.encode(r)) for c, r in candidate_pairs(ex)]
        right += ex.candidates[max(range(len(lps)), key=lps.__getitem__)] == ex.answer
    assert res.metrics["acc"] == pytest.approx(100 * right / 2)
    with pytest.raises(FileNotFoundError, match="needs path=.*cbt-cn"):
        from gpt2lib.tasks import get_task
        get_task("cbt")(ours, tok)


# ------------------------------------------------------------------------------------------ CoQA / QA metrics


@pytest.mark.parametrize("pred, gold, f1", [
    ("The Eiffel Tower", "eiffel tower", 1.0),
    ("in Paris, France", "Paris", 2 * (1 / 3) * 1 / (1 / 3 + 1)),
    ("blue", "red", 0.0),
    ("", "", 1.0),
    ("the the", "a", 1.0),  # both normalize to empty
])
def test_squad_f1_by_hand(pred, gold, f1) -> None:
    from gpt2lib.tasks.coqa import f1_score

    assert f1_score(pred, gold) == pytest.approx(f1)


def test_squad_normalization_and_exact_match() -> None:
    from gpt2lib.tasks.coqa import exact_match, normalize_answer

    assert normalize_answer("  The  U.S.A.,   an Ally! ") == "usa ally"
    assert exact_match("14 December 1972", "14 december, 1972") and not exact_match("1972", "December 1972")


def test_coqa_prompt_and_greedy_answer_match_transformers(pair, tok) -> None:
    from gpt2lib.tasks.coqa import CoQAExample, coqa_prompt, evaluate_coqa, f1_score

    hf, ours = pair
    ex = CoQAExample("Anna has a red bike. She rides it to school.", "What color is it?", ["red"],
                     history=[("Who has a bike?", "Anna")])
    prompt = coqa_prompt(ex)
    assert prompt == ("Anna has a red bike. She rides it to school.\n\nQ: Who has a bike?\nA: Anna\n\n"
                      "Q: What color is it?\nA:")
    ids = tok.encode(prompt)
    out = hf.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False, pad_token_id=EOT)[0, len(ids):]
    answer = tok.decode(out.tolist()).split("\n")[0].strip()
    res = evaluate_coqa(ours, tok, [ex], max_new_tokens=8)
    assert res.metrics["f1"] == pytest.approx(100 * f1_score(answer, "red"))


def test_nq_open_reader_and_qa_metrics(pair, tok, data_mirror) -> None:
    """EM and the top-1% accuracy are re-derived from the generated answers and their probabilities."""
    from gpt2lib.tasks.qa import evaluate_qa, load_nq_open, qa_prompt

    data = load_nq_open()
    assert len(data) == 3610 and data[0] == ("when was the last time anyone was on the moon",
                                             ["14 December 1972 UTC", "December 1972"])
    assert qa_prompt("q?", [("a?", "b")]) == "Q: a?\nA: b\n\nQ: q?\nA:"
    hf, ours = pair
    # Plant a question whose gold answer is the model's own greedy answer, so EM is non-trivial.
    q = "who is the best"
    ids = tok.encode(qa_prompt(q))
    out = hf.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False, pad_token_id=EOT)[0, len(ids):]
    own = tok.decode(out.tolist()).split("\n")[0].strip()
    assert own, "the random model's greedy answer to the planted question should not be empty"
    examples = data[:3] + [(q, [own])]
    res = evaluate_qa(ours, tok, examples, max_new_tokens=6)
    assert res.metrics["exact_match"] >= 25.0
    # ceil(1% of 4) = 1 question: the most confident one.
    assert res.metrics["acc_top1pct"] in (0.0, 100.0)


# ------------------------------------------------------------------------------------------ summarization


def test_first_sentences() -> None:
    from gpt2lib.tasks.summarization import first_sentences

    text = ' The cat sat (on a mat.) "Why?" he asked! It was warm? Yes. No.'
    assert first_sentences(text) == 'The cat sat (on a mat.) "Why?" he asked!'
    assert first_sentences("One. Two. Three. Four.", 2) == "One. Two."
    assert first_sentences("no period at all") == "no period at all"


def test_rouge_against_hand_computation() -> None:
    from gpt2lib.tasks.summarization import rouge

    assert rouge(["the cat sat"], ["the cat sat"])["rouge_avg"] == pytest.approx(100.0)
    r = rouge(["cat dog"], ["cat bird fish"])
    p, rc = 1 / 2, 1 / 3
    assert r["rouge1"] == pytest.approx(100 * 2 * p * rc / (p + rc))
    assert r["rouge2"] == 0.0
    with pytest.raises(ValueError, match="equally many"):
        rouge(["a"], [])


def test_tldr_summaries_are_seeded_and_deterministic(pair, tok) -> None:
    from gpt2lib.tasks.summarization import evaluate_summarization

    _, ours = pair
    ex = [("The council approved a new park on Monday. It will open next year.", "A new park was approved.")]
    a = evaluate_summarization(ours, tok, ex, max_new_tokens=20, seed=3)
    b = evaluate_summarization(ours, tok, ex, max_new_tokens=20, seed=3)
    assert a.metrics == b.metrics and set(a.metrics) == {"rouge1", "rouge2", "rougeL", "rougeL_text", "rouge_avg"}


# ------------------------------------------------------------------------------------------ translation


def test_read_sgm_is_robust(tmp_path, data_mirror) -> None:
    from gpt2lib.tasks.translation import read_sgm

    p = tmp_path / "x.sgm"
    p.write_text('<srcset>\n<doc docid="a">\n<seg id="1">Fish &amp; chips</seg>\n'
                 "<SEG  id='2' >Two\n lines </SEG >\n<seg id=3></seg>\n</doc>\n</srcset>\n", encoding="utf-8")
    assert read_sgm(p) == ["Fish & chips", "Two lines", ""]
    (tmp_path / "empty.sgm").write_text("<srcset></srcset>", encoding="utf-8")
    with pytest.raises(ValueError, match="no <seg>"):
        read_sgm(tmp_path / "empty.sgm")
    en = read_sgm(data_mirror / "wmt14" / "newstest2014-fren-src.en.sgm")
    fr = read_sgm(data_mirror / "wmt14" / "newstest2014-fren-ref.fr.sgm")
    assert len(en) == len(fr) == 3003 and en[0] == "Spectacular Wingsuit Jump Over Bogota"


def test_translation_prompt_and_bleu(pair, tok) -> None:
    import sacrebleu

    from gpt2lib.tasks.translation import evaluate_translation, translation_prompt

    assert translation_prompt([("Hello", "Bonjour")], "Thanks") == "Hello = Bonjour\nThanks ="
    _, ours = pair
    src = ["one", "two", "three", "four"]
    ref = ["un", "deux", "trois", "quatre"]
    res = evaluate_translation(ours, tok, src, ref, name="translation-en-fr", n_shots=2, max_new_tokens=4)
    assert res.n_examples == 2 and 0.0 <= res.metrics["bleu"] <= 100.0
    assert sacrebleu.corpus_bleu(["le chat est assis"], [["le chat est assis"]]).score == pytest.approx(100.0)
    with pytest.raises(ValueError, match="n_shots"):
        evaluate_translation(ours, tok, src[:2], ref[:2], name="x", n_shots=2)


@pytest.mark.parametrize("text, first", [
    ("Le chat est assis. Il dort", "Le chat est assis."),
    ("Bonjour !\nHello", "Bonjour !"),
    ("M. Dupont est là. Oui", "M. Dupont est là."),
    ("Il a dit « oui. » Puis", "Il a dit « oui. »"),
    ("sans point final", "sans point final"),
])
def test_first_generated_sentence(text, first) -> None:
    from gpt2lib.tasks.translation import first_sentence

    assert first_sentence(text) == first


def test_translation_prompt_is_never_cut_silently(pair, tok) -> None:
    """Demonstrations that do not fit the context beside the new tokens are dropped from the end, per sentence,
    and the result says how many were used; a sentence that does not fit alone is an error; generate_text
    refuses an overflowing prompt unless asked to cut it."""
    import tiktoken

    from gpt2lib.tasks.translation import evaluate_translation, translation_prompt

    _, ours = pair  # context 256
    enc = tiktoken.get_encoding("gpt2")
    long = " ".join(["the green house by the river"] * 6)  # ~37 tokens
    src = [f"{long} {i}" for i in range(5)] + ["one", long + " " + long]
    ref = [f"{long} fr {i}" for i in range(5)] + ["un", "deux"]
    res = evaluate_translation(ours, tok, src, ref, name="translation-en-fr", n_shots=5, max_new_tokens=16)
    expected = []
    for s in src[5:]:
        fits = [k for k in range(6) if len(enc.encode(translation_prompt(list(zip(src, ref))[:k], s))) <= 256 - 16]
        expected.append(max(fits))
    assert expected[0] > expected[1] and expected[0] < 5  # the setup really overflows 5 shots
    assert f"5 asked, {min(expected)}-{max(expected)} used" in res.settings["shots"]
    assert "256-token context beside 16 new tokens" in res.settings["shots"]
    with pytest.raises(ValueError, match="prompt of .* tokens, more than the 16"):
        evaluate_translation(ours, tok, src, ref, name="x", n_shots=1, max_new_tokens=240, skip_long=False)
    skip = evaluate_translation(ours, tok, src, ref, name="x", n_shots=0, max_new_tokens=200)  # room 56 tokens
    too_long = sum(len(enc.encode(translation_prompt([], s))) > 56 for s in src)
    assert too_long == 1 and skip.n_examples == 6 and skip.settings["skipped"].startswith("1 of 7 sentences")
    with pytest.raises(ValueError, match="does not fit the model's context of 256 tokens"):
        generate_text(ours, tok, [1] * 250, 8)
    assert isinstance(generate_text(ours, tok, [1] * 250, 8, on_overflow="left"), str)


def test_nq_uses_the_seed_pairs_that_fit_and_says_so(pair, tok) -> None:
    import tiktoken

    from gpt2lib.tasks.qa import evaluate_qa, qa_prompt

    _, ours = pair  # context 256
    enc = tiktoken.get_encoding("gpt2")
    seeds = [(" ".join(["which river runs through the old town"] * 8) + f" {i}?", "the Rhine") for i in range(5)]
    res = evaluate_qa(ours, tok, [("who wrote it?", ["Ann"])], seeds=seeds, max_new_tokens=16)
    k = max(k for k in range(6) if len(enc.encode(qa_prompt("who wrote it?", seeds[:k]))) <= 240)
    assert 0 < k < 5 and res.settings["seed pairs"].startswith(f"5 asked, {k} used")


def test_eval_cli_passes_shots_and_max_new_tokens(pair, tmp_path, capsys, data_mirror) -> None:
    from gpt2lib.cli import main

    _, ours = pair
    ours.save_pretrained(str(tmp_path))
    assert main(["eval", "--task", "translation-fr-en", "--model", str(tmp_path), "--limit", "2", "--shots", "1",
                 "--max-new-tokens", "8", "--first", "line"]) == 0
    out = capsys.readouterr().out
    assert "shots=1, max_new_tokens=8, skipped=none, translation=first generated line" in out


# ------------------------------------------------------------------------------------------ LM tasks


def test_lm_task_on_wikitext_prefix_uses_original_word_count(pair, tok, data_mirror) -> None:
    from gpt2lib.detokenize import wikitext_detokenize
    from gpt2lib.evaluate import count_words, token_nlls
    from gpt2lib.tasks import get_task

    _, ours = pair
    res = get_task("wikitext2")(ours, tok, limit=4, stride=128)
    original = "".join((data_mirror / "wikitext-2" / "test.txt").read_text(encoding="utf-8").splitlines(True)[:4])
    nll = token_nlls(ours, tok.encode(wikitext_detokenize(original)), stride=128).sum().item()
    assert res.metrics["words"] == count_words(original)
    assert res.metrics["ppl"] == pytest.approx(math.exp(nll / count_words(original)), rel=1e-6)


# ------------------------------------------------------------------ Table 3 files not in the mirror

# Two questions in the exact layout of CBTest/data/cbtest_*_{valid_2000ex,test_2500ex}.txt: 20 numbered sentences
# ("N " then PTB-style tokens: `` '' quotes, -LRB- -RRB-, split clitics and punctuation), the 21st
# "21 query<TAB>answer<TAB><TAB>c1|...|c10", then an empty line.
_CBT_SENTENCES = [
    "Once upon a time there lived a King and a Queen who had no children .",
    "`` We shall have a daughter , '' said the Queen -LRB- she was very wise -RRB- .",
    "The King did n't believe her ; he thought the Queen 's dream was only a dream .",
] + [f"On the {i}th day the King walked in the garden ." for i in range(4, 21)]
_CBT_QUERY = "`` Where is my XXXXX ? '' asked the King .\tQueen\t\tQueen|King|Wolf|Mouse|Fox|Cat|Dog|Bird|Frog|Owl"
_CBT_BLOCK = "".join(f"{i} {s}\n" for i, s in enumerate(_CBT_SENTENCES, 1)) + f"21 {_CBT_QUERY}\n\n"


def _write_cbt_tgz(path, blocks: int = 3) -> None:
    """A CBTest.tgz laid out as the release: CBTest/data/cbtest_{CN,NE}_{valid_2000ex,test_2500ex}.txt; the test
    files hold one question more than the validation files, so the split read shows in the count."""
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as t:
        for kind in ("CN", "NE"):
            for split, n in (("valid_2000ex", blocks), ("test_2500ex", blocks + 1)):
                data = (_CBT_BLOCK * n).encode()
                info = tarfile.TarInfo(f"CBTest/data/cbtest_{kind}_{split}.txt")
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))


def test_cbt_cn_and_ne_read_the_release_archive(pair, tok, tmp_path) -> None:
    """cbt-cn / cbt-ne read the validation member of a CBTest.tgz by default (Table 3's split, §3.2), de-tokenized,
    and score as evaluate_cbt on the de-tokenized text; split="test" reads the test member and says so."""
    from gpt2lib.tasks import cbt, get_task

    hf, ours = pair
    _write_cbt_tgz(tmp_path / "CBTest.tgz")
    ex = cbt.parse_cbt(_CBT_BLOCK * 2)
    assert len(ex) == 2 and ex[0].answer == "Queen" and len(ex[0].candidates) == 10
    assert ex[0].context.startswith("Once upon a time") and ex[0].context.endswith("walked in the garden .")
    assert ex[0].query == "`` Where is my XXXXX ? '' asked the King ."
    det = cbt.detokenize_example(ex[0])  # the paper's de-tokenization, checked by hand on this example
    assert det.query == '"Where is my XXXXX?" asked the King.'
    assert ('"We shall have a daughter," said the Queen (she was very wise). The King didn\'t believe her; '
            "he thought the Queen's dream was only a dream.") in det.context
    res = get_task("cbt-ne")(ours, tok, archive=tmp_path / "CBTest.tgz")
    assert res.task == "cbt-ne" and res.n_examples == 3 and res.settings["split"].startswith("validation")
    assert res.settings["de-tokenized"].startswith("yes")
    # recomputed with transformers on the hand-checked de-tokenized text (the oldest tokens dropped to fit 64)
    pairs = cbt.candidate_pairs(det)
    assert pairs[0] == (det.context + ' "Where is my', ' Queen?" asked the King.')
    block, lps = ours.config.block_size, []
    for c, r in pairs:
        cont = tok.encode(r)
        ids = (tok.encode(c) + cont)[-(block + 1):]
        lp = hf_logprobs(hf, ids[:-1])
        lps.append(sum(lp[len(ids) - 1 - len(cont) + i, t].item() for i, t in enumerate(cont)))
    right = det.candidates[max(range(10), key=lps.__getitem__)] == det.answer
    assert res.metrics["acc"] == pytest.approx(100.0 * right)
    test = get_task("cbt-cn")(ours, tok, archive=tmp_path / "CBTest.tgz", split="test", limit=4)
    assert test.task == "cbt-cn-test" and test.n_examples == 4 and "not Table 3's split" in test.settings["split"]
    with pytest.raises(ValueError, match="split must be one of valid, test"):
        get_task("cbt-cn")(ours, tok, archive=tmp_path / "CBTest.tgz", split="dev")


def _zip(path, member: str, data: bytes) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr(member, data)


def test_text8_and_enwik8_score_the_last_split(pair, tok, tmp_path) -> None:
    """text8 / enwik8 read `text8` / `enwik8` from their zip and score only the last `test` units: bits
    per character (text8) / per byte of the raw file (enwik8), recomputed with token_nlls."""
    from gpt2lib.evaluate import token_nlls
    from gpt2lib.tasks import lm

    _, ours = pair
    words = "anarchism originated as a term of abuse first used against early working class radicals "
    text = (words * 20)[:1000]
    _zip(tmp_path / "text8.zip", "text8", text.encode())
    res = lm.text8(ours, tok, path=tmp_path / "text8.zip", total=1000, test=300, stride=64)
    nll = token_nlls(ours, tok.encode(text[700:]), stride=64).sum().item()
    assert res.metrics["bpc"] == pytest.approx(nll / math.log(2) / 300, rel=1e-6)
    raw = ("<page><title>Caf\u00e9</title> " * 40).encode()[:900]
    _zip(tmp_path / "enwik8.zip", "enwik8", raw)
    res = lm.enwik8(ours, tok, path=tmp_path / "enwik8.zip", total=900, test=200, stride=64)
    nll = token_nlls(ours, tok.encode(raw[700:].decode("utf-8", errors="replace")), stride=64).sum().item()
    assert res.metrics["bpb"] == pytest.approx(nll / math.log(2) / 200, rel=1e-6) and res.metrics["bytes"] == 200
    with pytest.raises(ValueError, match="expected 1,000 bytes"):
        lm.enwik8(ours, tok, path=tmp_path / "enwik8.zip", total=1000, test=200)


def test_wikitext103_reads_the_release_zip(pair, tok, tmp_path, data_mirror) -> None:
    """wikitext103 reads wikitext-103/wiki.test.tokens from the zip and is scored like WikiText-2."""
    from gpt2lib.detokenize import wikitext_detokenize
    from gpt2lib.evaluate import count_words, token_nlls
    from gpt2lib.tasks import get_task

    _, ours = pair
    original = "".join((data_mirror / "wikitext-2/test.txt").read_text(encoding="utf-8").splitlines(True)[:6])
    _zip(tmp_path / "wikitext-103-v1.zip", "wikitext-103/wiki.test.tokens", original.encode())
    res = get_task("wikitext103")(ours, tok, path=tmp_path / "wikitext-103-v1.zip", stride=128)
    nll = token_nlls(ours, tok.encode(wikitext_detokenize(original)), stride=128).sum().item()
    assert res.metrics["ppl"] == pytest.approx(math.exp(nll / count_words(original)), rel=1e-6)
    assert res.settings["context"] == 256 and res.settings["stride"] == 128


def test_one_billion_word_is_detokenized_and_counts_sentence_ends(pair, tok, data_mirror) -> None:
    """1bw: the mirror's heldout shard 0, de-tokenized, ppl per word with one </s> per sentence."""
    from gpt2lib.detokenize import lm1b_detokenize
    from gpt2lib.evaluate import token_nlls
    from gpt2lib.tasks import get_task

    _, ours = pair
    lines = (data_mirror / "one-billion-word/news.en.heldout-00000-of-00050").read_text(encoding="utf-8")
    original = "".join(lines.splitlines(True)[:5])
    res = get_task("1bw")(ours, tok, limit=5, stride=128)
    nll = token_nlls(ours, tok.encode(lm1b_detokenize(original)), stride=128).sum().item()
    assert res.metrics["words"] == len(original.split()) + 5
    assert res.metrics["ppl"] == pytest.approx(math.exp(nll / res.metrics["words"]), rel=1e-6)


# ---------------------------------------------------- lm-evaluation-harness's `wikitext`, recomputed


def test_wikitext_pages_split_like_the_harness() -> None:
    from gpt2lib.tasks.lm import wikitext_pages

    text = " \n = Alpha = \n \n a b \n = = Sub = = \n c \n = Beta = \n d \n"
    # the blank preamble is dropped; "= = Sub = =" is a subsection, not a new page
    assert wikitext_pages(text) == [" = Alpha = \n \n a b \n = = Sub = = \n c ", " = Beta = \n d \n"]


def test_wikitext_lm_eval_convention_recomputed(pair, tok, data_mirror) -> None:
    """convention='lm-eval': per page, the harness de-tokenizer, rolling disjoint windows with the final
    partial window at full context, word_perplexity = exp(-sum LL / sum len(re.split(r"\\s+", page))),
    byte_perplexity / bits_per_byte over the page's UTF-8 bytes; recomputed here with HF."""
    import re

    from gpt2lib.detokenize import harness_wikitext_detokenize
    from gpt2lib.tasks import get_task
    from gpt2lib.tasks.lm import wikitext_pages

    hf, ours = pair
    original = "".join((data_mirror / "wikitext-2/test.txt").read_text(encoding="utf-8").splitlines(True)[:40])
    res = get_task("wikitext2")(ours, tok, limit=40, convention="lm-eval", batch_size=3)
    pages = wikitext_pages(original)
    assert len(pages) >= 2
    L, ll, words, nbytes = 256, 0.0, 0, 0
    for page in pages:
        ids = tok.encode(harness_wikitext_detokenize(page))
        predicted, windows = 0, []
        first = min(L, len(ids))
        windows.append(([EOT] + ids[: first - 1], ids[:first]))
        predicted = first
        while predicted < len(ids):
            n = min(len(ids) - predicted, L)
            windows.append((ids[predicted + n - L - 1 : predicted + n - 1], ids[predicted : predicted + n]))
            predicted += n
        for inp, cont in windows:  # inp already ends right before the last target: score its last len(cont)
            lp = hf_logprobs(hf, inp)
            ll += sum(lp[len(inp) - len(cont) + i, t].item() for i, t in enumerate(cont))
        words += len(re.split(r"\s+", page))
        nbytes += len(page.encode("utf-8"))
    m = res.metrics
    assert m["word_perplexity"] == pytest.approx(math.exp(-ll / words), rel=1e-5)
    assert m["byte_perplexity"] == pytest.approx(math.exp(-ll / nbytes), rel=1e-5)
    assert m["bits_per_byte"] == pytest.approx(-ll / nbytes / math.log(2), rel=1e-5)
    assert res.settings["context"] == L == res.settings["stride"]
