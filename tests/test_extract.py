"""HTML -> text (GPT-2 §2.1): decoding any bytes, the teaching extractor, and the benchmark metrics."""
from __future__ import annotations

import json
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2lib.extract import (
    all_text,
    bag_prf,
    benchmark_scores,
    decode_html,
    extract_text,
    extract_trafilatura,
    load_benchmark,
    mean_bag_scores,
    run_extractor,
)

TEXT = "Café crème, naïve façade — 10 €"


# ------------------------------------------------------------------------------ decoding


def test_utf8_page_decodes_exactly():
    page = f"<html><body><p>{TEXT}</p></body></html>"
    out = decode_html(page.encode("utf-8"))
    assert out.text == page and out.how == "utf-8"


def test_meta_charset_is_honoured_for_cp1252_pages():
    page = f'<html><head><meta charset="windows-1252"></head><body><p>{TEXT}</p></body></html>'
    out = decode_html(page.encode("cp1252"))
    assert out.text == page and out.how == "meta" and out.encoding == "cp1252"


def test_http_equiv_shift_jis_page():
    page = ('<html><head><meta http-equiv="Content-Type" content="text/html; charset=Shift_JIS"></head>'
            "<body><p>日本語のテキストです。</p></body></html>")
    out = decode_html(page.encode("shift_jis"))
    assert out.text == page and out.how == "meta"


def test_declared_header_charset_wins_over_guessing():
    page = f"<p>{TEXT}</p>"
    out = decode_html(page.encode("latin-1", errors="replace"), declared="ISO-8859-1")
    assert out.how == "declared" and out.text == page.encode("latin-1", errors="replace").decode("latin-1")


def test_undeclared_latin1_falls_back_without_crashing():
    data = "<p>Gr\u00fc\u00dfe aus K\u00f6ln</p>".encode("latin-1")
    out = decode_html(data)
    assert out.how == "fallback" and out.text == "<p>Grüße aus Köln</p>"


def test_unknown_or_lying_charset_names_do_not_crash():
    lying = '<meta charset="utf-8"><p>'.encode() + "naïve".encode("cp1252") + b"</p>"
    assert decode_html(lying).how == "fallback"
    unknown = b'<meta charset="x-no-such-charset"><p>plain</p>'
    assert decode_html(unknown).how == "utf-8"
    assert decode_html(b"<p>x</p>", declared="bogus-charset").how == "utf-8"


def test_utf16_with_bom():
    page = f"<p>{TEXT}</p>"
    out = decode_html(page.encode("utf-16"))
    assert out.text == page and out.how == "bom"


def test_decode_rejects_str_with_a_clear_error():
    with pytest.raises(TypeError, match="bytes"):
        decode_html("<p>already text</p>")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["base64", "rot13", "zlib", "hex", "idna", "utf-7", "", "utf-32", "mbcs"])
def test_meta_naming_a_non_text_codec_never_crashes(name):
    data = f'<meta charset="{name}"><p>caf\u00e9</p>'.encode("utf-8")
    assert "<p>" in decode_html(data).text
    assert "<p>" in decode_html(data, declared=name).text


def test_declared_charset_name_is_normalised():
    out = decode_html("<p>café</p>".encode("cp1252"), declared=" Windows-1252 ")
    assert out.text == "<p>café</p>" and out.encoding == "cp1252" and out.how == "declared"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_decode_to_str_never_raise(data):
    out = decode_html(data)
    assert isinstance(out.text, str)
    assert out.how in {"bom", "declared", "meta", "utf-8", "fallback"}


html_soup = st.lists(st.one_of(
    st.sampled_from(["<p>", "</p>", "<div>", "</div>", "<a href=x>", "</a>", "<script>", "</script>", "<br>",
                     "<!--", "-->", "<![CDATA[", "]]>", "<!DOCTYPE html>", "<nav>", "</nav>", "&amp;", "&#x110000;", "<![foo[", "<![ ",
                     "<p class='", "<", ">", "</", "<![if", "<?php"]),
    st.text(max_size=20)), max_size=40).map("".join)


@settings(max_examples=200, deadline=None)
@given(html_soup)
def test_extractors_survive_broken_html(html):
    assert isinstance(extract_text(html), str) and isinstance(all_text(html), str)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_utf8_text_round_trips(text):
    assert decode_html(text.encode("utf-8")).text == text.lstrip("\ufeff")


# ------------------------------------------------------------------------------ metrics


def _bag_by_removal(pred: str, gold: str) -> tuple[float, float]:
    """Independent re-computation: match each predicted token by removing it from a gold list."""
    remaining = gold.split()
    tp = 0
    for tok in pred.split():
        if tok in remaining:
            remaining.remove(tok)
            tp += 1
    n_pred, n_gold = len(pred.split()), len(gold.split())
    return (tp / n_pred if n_pred else 1.0), (tp / n_gold if n_gold else 1.0)


def test_bag_prf_hand_example():
    # pred has 5 tokens, gold 4; common bag = {the, cat, sat} -> tp 3 ("the" twice in pred, once in gold)
    s = bag_prf("the the cat sat down", "the cat sat here")
    assert (s.precision, s.recall) == (3 / 5, 3 / 4)
    assert s.f1 == pytest.approx(2 * 0.6 * 0.75 / 1.35)


words = st.lists(st.sampled_from(["a", "b", "c", "the", "dog", "Dog", "dog."]), max_size=30).map(" ".join)


@settings(max_examples=150, deadline=None)
@given(words, words)
def test_bag_prf_matches_removal_count_and_swaps_p_and_r(pred, gold):
    s = bag_prf(pred, gold)
    assert (s.precision, s.recall) == pytest.approx(_bag_by_removal(pred, gold))
    t = bag_prf(gold, pred)
    assert (t.precision, t.recall) == pytest.approx((s.recall, s.precision))
    assert bag_prf(pred, pred).f1 == 1.0


def test_empty_prediction_scores_zero_f1():
    assert bag_prf("", "some gold text").f1 == 0.0
    assert bag_prf("", "").f1 == 1.0


def test_scores_refuse_mismatched_ids():
    with pytest.raises(ValueError, match="ids"):
        mean_bag_scores({"a": "x"}, {"b": "x"})
    with pytest.raises(ValueError, match="ids"):
        benchmark_scores({"a": "x"}, {"a": "x", "b": "y"})


def test_benchmark_protocol_reproduces_published_dragnet_numbers(data_mirror):
    """The benchmark's README publishes dragnet: precision 0.925, recall 0.889, F1 0.907
    (scrapinghub/article-extraction-benchmark); our re-implementation of its protocol must agree."""
    _, gold, stored = load_benchmark()
    s = benchmark_scores(stored["dragnet"], gold)
    assert s.precision == pytest.approx(0.925, abs=6e-4)
    assert s.recall == pytest.approx(0.889, abs=6e-4)
    assert s.f1 == pytest.approx(0.907, abs=6e-4)


# ------------------------------------------------------------------------------ extractors

ARTICLE = " ".join(["The committee met on Tuesday to discuss the budget for the coming year."] * 3)
PAGE = f"""<html><head><title>t</title><style>p {{color: red}}</style>
<script>var tracking = "do not extract me please, this is code and not prose at all";</script></head>
<body><nav><a href="/">Home</a> <a href="/news">News</a> <a href="/sport">Sport</a></nav>
<div class="menu"><a href="/a">A very long link text that goes on and on for many words here</a></div>
<article><h1>Budget talks</h1><p>{ARTICLE}</p><p>Short line.</p><p>{ARTICLE.upper()}</p></article>
<footer>Copyright 2019 Example Corp. All rights reserved. Terms of use and privacy policy apply here.</footer>
</body></html>"""


def test_extract_text_keeps_paragraphs_and_drops_chrome():
    text = extract_text(PAGE)
    assert ARTICLE in text and ARTICLE.upper() in text and "Short line." in text
    for junk in ("tracking", "color", "Home", "very long link", "Copyright"):
        assert junk not in text
    assert "very long link" in all_text(PAGE) and "tracking" not in all_text(PAGE)


def test_extract_text_accepts_bytes_in_any_charset_and_empty_pages():
    page = PAGE.replace("<head>", '<head><meta charset="cp1252">').replace("Tuesday", "Mardi (café)")
    assert "Mardi (café)" in extract_text(page.encode("cp1252"))
    assert extract_text("") == "" and extract_text("<html><body><nav>x</nav></body></html>") == ""


@pytest.fixture(scope="module")
def subset(data_mirror):
    ids = sorted(json.loads((data_mirror / "html_extraction" / "ground-truth.json").read_text()))[:24]
    return load_benchmark(ids)


def test_teaching_extractor_on_real_pages_beats_all_text(subset):
    """On 24 benchmark pages the density heuristic is far more precise than keeping all text and
    close to the extractors the paper used (measured: F1 0.93 vs dragnet 0.92 on this subset)."""
    pages, gold, stored = subset
    ours = mean_bag_scores(run_extractor(extract_text, pages), gold)
    everything = mean_bag_scores(run_extractor(all_text, pages), gold)
    dragnet = mean_bag_scores(stored["dragnet"], gold)
    assert everything.recall > 0.99 and everything.precision < 0.7
    assert ours.precision > everything.precision + 0.2
    assert ours.f1 > 0.88 and ours.f1 > dragnet.f1 - 0.03


def test_trafilatura_scores_high_on_real_pages(subset):
    pytest.importorskip("trafilatura")
    pages, gold, _ = subset
    s = mean_bag_scores(run_extractor(extract_trafilatura, pages), gold)
    assert s.f1 > 0.9 and s.recall > 0.95


def test_stored_outputs_cover_the_same_pages(subset):
    pages, gold, stored = subset
    assert set(stored) == {"dragnet", "newspaper"}
    for out in stored.values():
        assert out.keys() == gold.keys() == pages.keys()
    assert all(isinstance(v, bytes) and v for v in pages.values())
    assert Counter(bool(g.strip()) for g in gold.values())[True] == len(gold)


def test_benchmark_scores_of_an_extractor_that_finds_nothing_is_zero_precision_not_a_crash():
    from gpt2lib.extract import benchmark_scores

    gold = {"a": "some article text here", "b": "another article body"}
    scores = benchmark_scores({"a": "", "b": ""}, gold)
    assert scores.precision == 0.0 and scores.recall == 0.0 and scores.f1 == 0.0
