"""De-duplication (GPT-2 §2.1): exact hashes and MinHash-LSH near duplicates, scored on planted pairs."""
from __future__ import annotations

import random
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2lib.dedup import (
    ExactDedup,
    NearDedup,
    jaccard,
    minhash,
    near_duplicate_pairs,
    normalize_text,
    perturb,
    plant_near_duplicates,
    score_pairs,
    shingles,
    text_hash,
)
from gpt2lib.webtext import Drop, Stage, read_webtext_sample, run_pipeline


@pytest.fixture(scope="module")
def sample(data_mirror) -> list[str]:
    return [d.text for d in read_webtext_sample(limit=400)]


def test_text_hash_ignores_case_and_whitespace_layout_only():
    assert text_hash("Hello  World\n\nagain ") == text_hash("hello world again")
    assert text_hash("hello world") != text_hash("hello, world")
    assert text_hash("ﬁne") == text_hash("fine")  # NFKC folds the ligature


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Zs", "Cc", "Zl", "Zp")), min_size=1,
                        max_size=8), min_size=1, max_size=10),
       st.lists(st.sampled_from([" ", "  ", "\n", "\t", " \n "]), min_size=9, max_size=9))
def test_any_whitespace_layout_of_the_same_words_hashes_equal(words, seps):
    words = [w for w in words if w.split() == [w]]
    plain = " ".join(words)
    laid_out = "".join(w + seps[i % len(seps)] for i, w in enumerate(words))
    assert text_hash(plain) == text_hash(laid_out)
    assert normalize_text(laid_out) == " ".join(unicodedata.normalize("NFKC", plain).casefold().split())


def test_shingles_and_jaccard_by_hand():
    assert shingles("a b c d", n=3) == {b"a b c", b"b c d"}
    assert shingles("A, b!", n=3) == {b"a b"}  # shorter than n: one shingle
    assert jaccard({1, 2, 3}, {2, 3, 4}) == 0.5 and jaccard(set(), set()) == 1.0


def test_minhash_estimates_the_exact_jaccard(sample):
    rng = random.Random(0)
    vocab = sorted({w for t in sample for w in t.split()})
    for text in sample[:20]:
        copy = perturb(text, 0.1, rng, vocab)
        exact = jaccard(shingles(text), shingles(copy))
        est = minhash(text, num_perm=256).jaccard(minhash(copy, num_perm=256))
        assert est == pytest.approx(exact, abs=0.12)


def test_perturb_is_seeded_and_changes_about_rate_of_the_words():
    text = " ".join(f"w{i}" for i in range(2000))
    a = perturb(text, 0.1, random.Random(1), ["X"])
    assert a == perturb(text, 0.1, random.Random(1), ["X"])
    assert perturb(text, 0.0, random.Random(1), ["X"]) == text
    words = a.split()
    replaced, kept = words.count("X"), sum(w != "X" for w in words)
    deleted = 2000 - len(words)
    assert 50 < replaced < 150 and 50 < deleted < 150 and kept == 2000 - replaced - deleted
    with pytest.raises(ValueError, match="rate"):
        perturb(text, 1.5, random.Random(0), ["X"])


def test_exact_dedup_finds_exactly_the_planted_copies(sample):
    docs = sample[:200]
    assert len({normalize_text(d) for d in docs}) == len(docs)  # the sample itself has no exact duplicates
    rng = random.Random(0)
    planted = sorted(rng.sample(range(len(docs)), 30))
    items = docs + ["\n".join(docs[i].upper().split(" ")) if i % 2 else "  " + docs[i] + "\n" for i in planted]
    run = run_pipeline([Stage("exact", ExactDedup(), pure=False)], items)
    kept = list(run)
    assert kept == docs
    assert run.reports[0].dropped == {"exact duplicate": 30}


def test_near_duplicates_planted_in_webtext_are_found(sample):
    """Copies with 2% and 5% of the words deleted or replaced are found (recall >= 0.95) and nothing
    else is reported (precision >= 0.95), against the exact list of what was planted."""
    planted = plant_near_duplicates(sample, n_copies=80, rates=(0.02, 0.05), seed=0)
    found = near_duplicate_pairs(planted.texts, threshold=0.5)
    s = score_pairs(found, planted.pairs)
    assert s.recall >= 0.95 and s.precision >= 0.95, s
    # every reported pair really is similar (exact shingle Jaccard, not the MinHash estimate)
    for i, j in found:
        assert jaccard(shingles(planted.texts[i]), shingles(planted.texts[j])) > 0.35


def test_heavy_perturbation_falls_below_the_threshold(sample):
    """At 30% changed words the 3-shingle Jaccard is ~0.2: such copies are not near duplicates."""
    planted = plant_near_duplicates(sample, n_copies=30, rates=(0.3,), seed=1)
    assert score_pairs(near_duplicate_pairs(planted.texts), planted.pairs).recall < 0.2


def test_near_dedup_stage_keeps_one_document_per_planted_pair(sample):
    planted = plant_near_duplicates(sample[:150], n_copies=40, rates=(0.02,), seed=2)
    run = run_pipeline([Stage("near", NearDedup(threshold=0.5), pure=False)], planted.texts)
    assert list(run) == sample[:150]
    assert run.reports[0].dropped == {"near duplicate": 40}


def test_score_pairs_is_order_insensitive():
    s = score_pairs({(2, 1), (3, 4)}, {(1, 2), (5, 6)})
    assert (s.precision, s.recall, s.tp, s.fp, s.fn) == (0.5, 0.5, 1, 1, 1)


def test_bad_arguments_are_refused_clearly(sample):
    with pytest.raises(ValueError, match="threshold"):
        NearDedup(threshold=1.5)
    with pytest.raises(ValueError, match="copies"):
        plant_near_duplicates(sample[:5], n_copies=10, rates=(0.1,))
    assert isinstance(ExactDedup()("x"), str) and ExactDedup()("") == ""
    d = ExactDedup()
    d("same")
    assert d("SAME") == Drop("exact duplicate")
