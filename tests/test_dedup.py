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
from gpt2lib.pipeline import components_drops
from gpt2lib.webtext import read_webtext_sample, run_pipeline


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
    run = run_pipeline([ExactDedup()], items)
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
    run = run_pipeline([NearDedup(threshold=0.5)], planted.texts)
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
    run = run_pipeline([ExactDedup()], ["x", "", "same", "SAME", ""])
    assert list(run) == ["x", "", "same"] and run.reports[0].dropped == {"exact duplicate": 2}


def test_lsh_band_keys_find_the_same_pairs_as_datasketch(sample):
    """The band keys NearDedup emits (grouped here by hand), verified with the MinHash estimate, give
    exactly the pairs datasketch's own MinHashLSH index finds (near_duplicate_pairs)."""
    planted = plant_near_duplicates(sample[:200], n_copies=40, rates=(0.02, 0.1, 0.2), seed=3)
    stage = NearDedup(threshold=0.5)
    groups: dict[bytes, list[int]] = {}
    for i, t in enumerate(planted.texts):
        for k in stage.keys(t):
            groups.setdefault(k, []).append(i)
    sig = [stage.sketch(t) for t in planted.texts]
    ours = {(a, b) for ids in groups.values() for a in ids for b in ids
            if a < b and stage.similar(sig[a], sig[b])}
    assert ours == near_duplicate_pairs(planted.texts, threshold=0.5) and len(ours) >= 20


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 30).flatmap(lambda n: st.tuples(st.just(n), st.lists(
    st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=40))))
def test_components_keep_the_lowest_index_of_each_connected_group(graph):
    """Against a breadth-first search: each component of the pair graph keeps only its lowest node."""
    n, edges = graph
    adj = {i: set() for i in range(n)}
    for a, b in edges:
        adj[a].add(b)
        adj[b].add(a)
    expected, seen = set(), set()
    for start in range(n):  # ascending, so `start` is the lowest node of a new component
        if start in seen:
            continue
        comp, frontier = {start}, [start]
        while frontier:
            for y in adj[frontier.pop()] - comp:
                comp.add(y)
                frontier.append(y)
        seen |= comp
        expected |= comp - {start}
    assert components_drops(edges) == expected


def test_near_dedup_drops_a_whole_chain_keeping_its_first_document():
    """A~B and B~C but not A~C: connected components drop B and C (a greedy pass would keep C)."""
    base = [f"w{i}" for i in range(90)]
    a = " ".join(base)
    b = " ".join(base[:70] + [f"x{i}" for i in range(20)])
    c = " ".join(base[:50] + [f"x{i}" for i in range(20)] + [f"y{i}" for i in range(20)])
    j = lambda s, t: jaccard(shingles(s), shingles(t))  # noqa: E731
    assert j(a, b) > 0.6 and j(b, c) >= 0.6 and j(a, c) < 0.4
    run = run_pipeline([NearDedup(threshold=0.5)], [a, "other text entirely here", b, c])
    assert list(run) == [a, "other text entirely here"]
    assert run.reports[0].dropped == {"near duplicate": 2}
