"""gpt2lib.bpe_basic, the BPE to read: its trainer and encoder equal tiktoken and gpt2lib.bpe's fast paths
(the incremental trainer ``learn_merges``, the naive ``train_naive``, the heap encoder) on any text."""
from __future__ import annotations

import warnings

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2lib import bpe_basic
from gpt2lib.bpe import BytePairTokenizer, count_pretokens, learn_merges
from tokenizer_corpus import tricky_text


@pytest.fixture(scope="module")
def ref() -> tiktoken.Encoding:
    return tiktoken.get_encoding("gpt2")


@pytest.fixture(scope="module")
def gpt2_bpe(ref) -> BytePairTokenizer:
    return BytePairTokenizer.from_tiktoken(ref)


def test_hand_worked_merges():
    """'aaabdaaabac' (Wikipedia's example): aa (256), then aa+a... counted by hand per pre-token."""
    # one pre-token "aaabdaaabac": pairs aa:4, ab:2, bd:1, da:1, ba:1, ac:1 -> merge (97, 97)
    # then 256 a b d 256 a b a c: (256,97):2, (97,98):2 tie -> smallest ids (97, 98)
    merges = bpe_basic.train("aaabdaaabac", 3)
    assert merges[:2] == [(97, 97), (97, 98)]
    ranks = bpe_basic.vocabulary(merges)
    assert bpe_basic.decode(bpe_basic.encode("aaabdaaabac", ranks), ranks) == "aaabdaaabac"


@settings(max_examples=150, deadline=None)
@given(st.text() | tricky_text)
def test_encode_with_gpt2s_ranks_equals_tiktoken(ref, text):
    ranks = ref._mergeable_ranks  # tiktoken exposes no public accessor for the table
    assert bpe_basic.encode(text, ranks) == ref.encode_ordinary(text)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=120) | st.text(alphabet="ab ", min_size=33, max_size=200).map(str.encode))
def test_bpe_of_any_bytes_equals_the_heap_encoder_and_tiktoken(ref, gpt2_bpe, piece):
    """Long pieces (> 32 bytes) take gpt2lib.bpe's heap path, short ones its rescan."""
    ids = bpe_basic.bpe(piece, ref._mergeable_ranks)
    assert ids == gpt2_bpe._bpe_heap(piece) == gpt2_bpe._bpe(piece) == ref._encode_single_piece(piece)


@settings(max_examples=60, deadline=None)
@given(corpus=st.text(max_size=150) | tricky_text, n=st.integers(0, 40), text=st.text(max_size=80))
def test_train_equals_the_incremental_and_naive_trainers_and_encodes_alike(corpus, n, text):
    merges = bpe_basic.train(corpus, n)
    assert merges == learn_merges(count_pretokens([corpus], special_tokens=()), n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no pairs left": short corpora run out of merges
        naive = BytePairTokenizer().train_naive(corpus, 256 + n, special_tokens=())
        fast = BytePairTokenizer().train(corpus, 256 + n, special_tokens=())
    vocab = [bytes([b]) for b in range(256)]
    for a, b in merges:
        vocab.append(vocab[a] + vocab[b])
    assert naive.vocab == fast.vocab == vocab
    ranks = bpe_basic.vocabulary(merges)
    for sample in (text, corpus, corpus * 3):
        ids = bpe_basic.encode(sample, ranks)
        assert ids == fast.encode_ordinary(sample)
        assert bpe_basic.decode(ids, ranks) == sample


def test_train_on_shakespeare_equals_the_fast_trainer(data_mirror):
    text = (data_mirror / "tinyshakespeare/input.txt").read_text(encoding="utf-8")[:20_000]
    fast = BytePairTokenizer().train(text, 256 + 120, special_tokens=())
    merges = bpe_basic.train(text, 120)
    assert merges == learn_merges(count_pretokens([text], special_tokens=()), 120)
    ranks = bpe_basic.vocabulary(merges)
    assert bpe_basic.encode(text[:3000], ranks) == fast.encode_ordinary(text[:3000])


def test_the_fast_module_uses_the_same_pattern():
    from gpt2lib import bpe

    assert bpe.GPT2_SPLIT_PATTERN is bpe_basic.GPT2_SPLIT_PATTERN  # checked against tiktoken in test_bpe.py
