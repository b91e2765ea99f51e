"""GPT-2 §2.2, educational path: a pure-Python byte-level BPE that, loaded with GPT-2's files,
gives tiktoken's ids on every input, and that learns merges we can check by hand."""
from __future__ import annotations

import base64
import hashlib
import json
import random
import time
import tracemalloc
import warnings
from collections import Counter
from pathlib import Path

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

import gpt2lib.bpe as bpe_module
from gpt2lib.bpe import (GPT2_SPLIT_PATTERN, BytePairTokenizer, bytes_to_unicode, count_pretokens,
                         learn_merges, merge_counts, stream_pieces, train_from_counts)
from gpt2lib.tokenizer import get_gpt2_tokenizer
from tokenizer_corpus import EDGE_CASES, TRICKY_PIECES, mirror_documents, tricky_text

EOT = "<|endoftext|>"
TRICKY_PIECES_CHARS = sorted(set("".join(TRICKY_PIECES)) | set(" \n\t\r\x0b\x0c\x1c\x1f\x85\u2028\u3000'sdl"))


@pytest.fixture(scope="module")
def ref() -> tiktoken.Encoding:
    return tiktoken.get_encoding("gpt2")


@pytest.fixture(scope="module")
def gpt2_bpe(data_mirror: Path) -> BytePairTokenizer:
    """Built from OpenAI's released encoder.json and vocab.bpe."""
    return BytePairTokenizer.from_gpt2_files(data_mirror / "gpt2/encoder.json", data_mirror / "gpt2/vocab.bpe")


@pytest.fixture(scope="module")
def shakespeare(data_mirror: Path) -> str:
    return (data_mirror / "tinyshakespeare/input.txt").read_text(encoding="utf-8")


# ---------------------------------------------------------------- GPT-2's building blocks
def test_bytes_to_unicode_is_gpt2s_printable_alphabet():
    """256 distinct visible characters; printable ASCII maps to itself, space to 'Ġ', newline to 'Ċ'."""
    m = bytes_to_unicode()
    assert sorted(m) == list(range(256))
    assert len(set(m.values())) == 256
    assert all(ch.isprintable() and not ch.isspace() for ch in m.values())
    assert all(m[b] == chr(b) for b in range(ord("!"), ord("~") + 1))
    assert (m[ord(" ")], m[ord("\n")], m[0]) == ("Ġ", "Ċ", "Ā")


def test_split_pattern_gives_tiktokens_pre_tokens(ref, data_mirror):
    import regex

    text = "\n".join(EDGE_CASES) + (data_mirror / "webtext/webtext.train.first1408.jsonl").read_text()[:200_000]
    assert regex.findall(GPT2_SPLIT_PATTERN, text) == regex.findall(ref._pat_str, text)
    assert regex.findall(GPT2_SPLIT_PATTERN, "I'm DON'T  go\n\n") == ["I", "'m", " DON", "'", "T", " ", " go", "\n\n"]


def test_single_byte_ids_follow_gpt2s_order_not_byte_order(gpt2_bpe, ref):
    for b in range(256):
        assert gpt2_bpe.vocab.index(bytes([b])) == ref.encode_single_token(bytes([b]))
    assert gpt2_bpe.vocab[0] == b"!" and gpt2_bpe.vocab[ref.encode_ordinary(" ")[0]] == b" "


def test_gpt2_vocab_merges_and_constants(gpt2_bpe, ref):
    assert (gpt2_bpe.n_vocab, gpt2_bpe.eot, gpt2_bpe.name) == (50257, 50256, "gpt2")
    assert all(gpt2_bpe.vocab[i] == ref.decode_single_token_bytes(i) for i in range(0, 50256, 7))
    merges = gpt2_bpe.merges  # recovered from the vocabulary; GPT-2's first merge is "Ġ t"
    assert len(merges) == 50000
    assert gpt2_bpe.vocab[merges[0][0]] + gpt2_bpe.vocab[merges[0][1]] == b" t" == gpt2_bpe.vocab[256]


# ---------------------------------------------------------------- identical ids to tiktoken
@pytest.fixture(params=["rescan", "heap"])
def merge_path(request, monkeypatch):
    """Run a test with the rescan loop for short pre-tokens (the default) and, again, with the
    O(n log n) heap for *every* pre-token, so that both are checked on the same inputs."""
    if request.param == "heap":
        monkeypatch.setattr(bpe_module, "_LONG_PIECE", 0)
    return request.param


@pytest.mark.slow
def test_encode_equals_tiktoken_on_every_mirror_document(gpt2_bpe, ref, data_mirror, merge_path):
    gpt2_bpe.clear_cache()
    for name, docs in mirror_documents(data_mirror).items():
        ids = gpt2_bpe.encode_batch(docs)
        assert ids == ref.encode_ordinary_batch(docs), name
        assert [gpt2_bpe.decode_bytes(x) for x in ids[:300]] == [ref.decode_bytes(x) for x in ids[:300]], name


def test_from_tiktoken_encoding_equals_tiktoken(ref, data_mirror):
    bpe = BytePairTokenizer.from_tiktoken(ref)
    docs = mirror_documents(data_mirror)["webtext"][:300]
    assert bpe.encode_batch(docs, allowed_special="all") == [ref.encode(d, allowed_special="all") for d in docs]


@pytest.mark.parametrize("text", EDGE_CASES)
def test_encode_equals_tiktoken_on_edge_cases(gpt2_bpe, ref, text):
    assert gpt2_bpe.encode(text) == ref.encode_ordinary(text)
    assert gpt2_bpe.encode(text, allowed_special="all") == ref.encode(text, allowed_special="all")
    assert gpt2_bpe.decode(gpt2_bpe.encode(text)) == text


@settings(max_examples=200, deadline=None)
@given(st.text() | tricky_text)
def test_educational_equals_fast_path_and_round_trips(gpt2_bpe, text):
    ids = gpt2_bpe.encode(text)
    assert ids == get_gpt2_tokenizer().encode(text)
    assert gpt2_bpe.decode(ids) == text


# long pre-tokens: runs of letters, digits or punctuation with few distinct characters
long_pieces = st.builds(lambda unit, n: (unit * n)[: 40 + n * 3], st.text(alphabet="aAbe0129.-=/", min_size=1, max_size=6),
                        st.integers(10, 700))


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=1, max_size=300) | long_pieces.map(str.encode))
def test_heap_merging_equals_tiktoken_on_any_bytes(gpt2_bpe, ref, piece):
    """The heap (used for pre-tokens over _LONG_PIECE bytes) against tiktoken on one pre-token
    of arbitrary bytes (tiktoken's _encode_single_piece runs its BPE on bytes with no regex split)."""
    assert gpt2_bpe._bpe_heap(piece) == ref._encode_single_piece(piece)
    assert gpt2_bpe._bpe(piece) == ref._encode_single_piece(piece)


def test_a_one_megabyte_pre_token_encodes_in_seconds(gpt2_bpe, ref):
    """Issue 9: the rescan was quadratic ('a' * 20_000 took ~27 s here, 1 MB about 19 hours);
    the heap makes it n log n. The measured times are in benchmarks/bench_tokenizer.py."""
    text = "a" * 1_000_000
    t0 = time.perf_counter()
    ids = gpt2_bpe.encode(text)
    assert time.perf_counter() - t0 < 60
    assert ids == ref.encode_ordinary(text)
    blob = base64.b64encode(random.Random(0).randbytes(60_000)).decode()  # letters, digits, + and /
    assert gpt2_bpe._bpe_heap(blob.encode()) == ref._encode_single_piece(blob.encode())


def test_lone_surrogate_is_replaced_like_tiktoken(gpt2_bpe, ref):
    assert gpt2_bpe.encode("x\udc80y") == ref.encode_ordinary("x\udc80y")


def test_cache_does_not_change_results(gpt2_bpe, ref):
    text = "the cache is warm; the cache is warm again"
    gpt2_bpe.clear_cache()
    cold = gpt2_bpe.encode(text)
    assert cold == gpt2_bpe.encode(text) == ref.encode_ordinary(text)


# ---------------------------------------------------------------- watching BPE
def test_merge_steps_show_partitions_from_bytes_to_final_tokens(gpt2_bpe, ref):
    steps = gpt2_bpe.merge_steps(" lower")
    assert steps[0] == [" ", "l", "o", "w", "e", "r"]
    assert steps[-1] == [ref.decode([i]) for i in ref.encode_ordinary(" lower")]
    for before, after in zip(steps, steps[1:]):
        assert len(after) == len(before) - 1 and "".join(after) == " lower"


def test_visualise_and_explain(gpt2_bpe):
    assert gpt2_bpe.visualise("Hello world!") == "Hello| world|!"
    explained = gpt2_bpe.explain("the cat the")
    assert list(explained) == ["the", " cat", " the"]
    assert explained[" cat"][-1] == [" cat"]


# ---------------------------------------------------------------- training
def test_training_reproduces_hand_worked_merges():
    """ "aaabdaaabac" is one pre-token. Pair counts: aa=4, ab=2, others 1 -> merge aa (256).
    Now Z a b d Z a b a c (Z=aa): Za=2 and ab=2 tie; the smaller pair (97,98) wins -> ab (257).
    Now Z Y d Z Y a c: ZY=2 -> (256,257) = "aaab" (258). Then all pairs count 1; the smallest is
    (97,99) = "ac" (259). <|endoftext|> comes last (260)."""
    tok = BytePairTokenizer().train("aaabdaaabac", vocab_size=256 + 4 + 1)
    assert tok.merges == [(97, 97), (97, 98), (256, 257), (97, 99)]
    assert tok.vocab[256:] == [b"aa", b"ab", b"aaab", b"ac"]
    assert (tok.n_vocab, tok.eot) == (261, 260)
    assert tok.encode("aaabdaaabac") == [258, ord("d"), 258, 259]


def test_training_never_merges_across_pre_tokens():
    """ "ab ab ab" pre-tokenizes to "ab" once and " ab" twice: ab=3 merges first (256), then
    (" ", ab)=2 (257). No pair is left (nothing spans "b "), so training stops early and says so."""
    with pytest.warns(UserWarning, match="no pairs left after 2 merges"):
        tok = BytePairTokenizer().train("ab ab ab", vocab_size=256 + 3 + 1)
    assert tok.merges == [(97, 98), (32, 256)]
    assert tok.n_vocab == 259 and tok.eot == 258
    assert tok.encode("ab ab", allowed_special="all") == [256, 257]


def test_incremental_training_learns_the_same_merges_as_naive(shakespeare, data_mirror):
    web = json.loads((data_mirror / "webtext/webtext.train.first1408.jsonl").read_text().splitlines()[3])["text"]
    for text, size in [(shakespeare[:30_000], 256 + 200 + 1), (web[:15_000] + "日本語 😀😀", 256 + 150 + 1)]:
        fast = BytePairTokenizer().train(text, size)
        slow = BytePairTokenizer().train_naive(text, size)
        assert fast.vocab == slow.vocab and fast.merges == slow.merges


@settings(max_examples=30, deadline=None)
@given(corpus=st.text(min_size=1, max_size=200) | tricky_text, text=st.text())
def test_a_trained_tokenizer_round_trips_any_text(corpus, text):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok = BytePairTokenizer().train(corpus, 256 + 20 + 1)
        assert tok.merges == BytePairTokenizer().train_naive(corpus, 256 + 20 + 1).merges
    assert tok.decode(tok.encode(text)) == text


def test_trained_tokenizer_compresses_its_training_text(shakespeare):
    text = shakespeare[:50_000]
    tok = BytePairTokenizer().train(text, 256 + 200 + 1)
    assert len(tok.encode(text)) < 0.6 * len(text.encode("utf-8"))


# ---------------------------------------------------------------- save / load
def test_save_load_round_trip_is_plain_json(tmp_path, shakespeare):
    tok = BytePairTokenizer(name="shake").train(shakespeare[:30_000], 256 + 100 + 1)
    path = tmp_path / "tok.json"
    tok.save(path)
    doc = json.loads(path.read_text(encoding="utf-8"))  # readable JSON, not pickle
    assert doc["format"] == "gpt2lib-bpe" and len(doc["vocab"]) == 356
    loaded = BytePairTokenizer.load(path)
    assert (loaded.vocab, loaded.special_tokens, loaded.name) == (tok.vocab, tok.special_tokens, "shake")
    sample = shakespeare[30_000:40_000]
    assert loaded.encode(sample) == tok.encode(sample)
    tok.save(path)  # overwriting works and leaves no temporary file behind
    assert [p.name for p in tmp_path.iterdir()] == ["tok.json"]


def test_gpt2_tokenizer_survives_save_load(tmp_path, gpt2_bpe, ref):
    gpt2_bpe.save(tmp_path / "gpt2.json")
    loaded = BytePairTokenizer.load(tmp_path / "gpt2.json")
    text = "Saved and loaded: GPT-2's vocabulary, intact. 日本語 <|endoftext|>"
    assert loaded.encode(text, allowed_special="all") == ref.encode(text, allowed_special="all")


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json at all", "not a gpt2lib-bpe JSON"),
        ('{"format": "something-else"}', "wrong 'format'"),
        ('{"format": "gpt2lib-bpe", "version": 99}', "unsupported"),
        ('{"format": "gpt2lib-bpe", "version": 1, "name": "x", "pattern": "x", "special_tokens": {}}', "damaged"),
        ('{"format": "gpt2lib-bpe", "version": 1, "name": "x", "pattern": "x", "special_tokens": {},'
         ' "vocab": ["!!notbase64"]}', "damaged"),
        ('{"format": "gpt2lib-bpe", "version": 1, "name": "x", "pattern": "x", "special_tokens": {},'
         ' "vocab": ["YQ=="]}', "256 single bytes"),
    ],
)
def test_loading_a_damaged_file_is_a_clear_value_error(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        BytePairTokenizer.load(path)


def test_mismatched_gpt2_files_are_rejected(tmp_path, data_mirror):
    lines = (data_mirror / "gpt2/vocab.bpe").read_text(encoding="utf-8").split("\n")
    lines[1], lines[2] = lines[2], lines[1]  # swap the first two merges
    (tmp_path / "vocab.bpe").write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(ValueError, match="merge 0"):
        BytePairTokenizer.from_gpt2_files(data_mirror / "gpt2/encoder.json", tmp_path / "vocab.bpe")


# ---------------------------------------------------------------- bad input
def test_bad_input_errors(gpt2_bpe):
    with pytest.raises(TypeError, match="bytes"):
        gpt2_bpe.encode(b"bytes")
    with pytest.raises(TypeError, match="single str"):
        gpt2_bpe.encode_batch("abc")
    assert gpt2_bpe.encode("") == [] and gpt2_bpe.decode([]) == ""
    for bad in (50257, -1, -50258, -10**9):
        with pytest.raises(ValueError, match=str(bad)):
            gpt2_bpe.decode([100, bad])
    with pytest.raises(TypeError, match="float"):
        gpt2_bpe.decode([100, 1.0])
    with pytest.raises(ValueError, match="unknown special"):
        gpt2_bpe.encode("x", allowed_special={"<|nope|>"})
    with pytest.raises(ValueError, match="vocab_size"):
        BytePairTokenizer().train("abc", 100)
    with pytest.raises(TypeError, match="vocab_size"):
        BytePairTokenizer().train("abc", 300.0)


def test_partial_character_decoding_follows_errors_argument(gpt2_bpe):
    ids = gpt2_bpe.encode("😀")
    assert gpt2_bpe.decode(ids[:1]) == "\ufffd"
    with pytest.raises(UnicodeDecodeError):
        gpt2_bpe.decode(ids[:1], errors="strict")
    assert gpt2_bpe.decode_bytes(ids[:1]) == "😀".encode()[: len(gpt2_bpe.decode_bytes(ids[:1]))]


def test_allowed_special_all_without_special_tokens_is_ordinary_encoding():
    """A tokenizer with no special tokens: allowed_special="all" allows nothing, so the text
    (special-token characters included) encodes exactly as ordinary text, as tiktoken's does."""
    bare = BytePairTokenizer(special_tokens={})
    text = "a <|endoftext|> b"
    ref = tiktoken.Encoding("bytes", pat_str=GPT2_SPLIT_PATTERN,
                            mergeable_ranks={bytes([b]): b for b in range(256)}, special_tokens={})
    assert bare.encode(text, allowed_special="all") == ref.encode(text, allowed_special="all")
    assert bare.encode(text, allowed_special="all") == list(text.encode("utf-8"))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 50256), min_size=0, max_size=700))
def test_decode_bytes_equals_tiktoken_for_short_and_long_id_lists(gpt2_bpe, ref, ids):
    """Short lists use the join, long ones (>= 256 ids) the vectorized gather: same bytes either way."""
    assert gpt2_bpe.decode_bytes(ids) == ref.decode_bytes(ids)


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (50257, ValueError), (1.5, TypeError), (2**70, ValueError)])
@pytest.mark.parametrize("length", [3, 400])
def test_decode_rejects_a_bad_id_by_name_in_short_and_long_lists(gpt2_bpe, bad, error, length):
    with pytest.raises(error, match=str(bad) if error is ValueError else "float"):
        gpt2_bpe.decode([11] * length + [bad])


# ---------------------------------------------------------------- training at scale (issues 9, 12)
def test_default_training_reproduces_the_merges_of_before_the_rewrite(shakespeare):
    """The zoo's shakespeare-tiny depends on these ids. The sha256 is of ``json.dumps(merges)`` for
    all of tiny-shakespeare at 1,024 tokens (the zoo recipe's size), computed with gpt2lib/bpe.py
    as of commit a324ba6, before the occurrence-indexed trainer replaced the word-rebuilding one."""
    tok = BytePairTokenizer().train(shakespeare, 1024)
    digest = hashlib.sha256(json.dumps(tok.merges).encode()).hexdigest()
    assert digest == "7ac6957d0a3b101c93c209763683715e27407639453355853600d4f8bff98f8d"


def _brute_force_merges(words: Counter, n_merges: int, rule: str) -> list[tuple[int, int]]:
    """The reference trainer: recount every pair of every word after every merge, and take the
    max by (count, rule). Written from the rule's statement, sharing no code with gpt2lib.bpe."""
    seqs = Counter({tuple(w): c for w, c in words.items()})
    vocab = [bytes([b]) for b in range(256)]
    merges = []
    for _ in range(n_merges):
        counts = Counter()
        for seq, c in seqs.items():
            for pair in zip(seq, seq[1:]):
                counts[pair] += c
        if not counts:
            break
        if rule == "smallest-ids":
            best = max(counts, key=lambda p: (counts[p], -p[0], -p[1]))
        else:
            best = max(counts, key=lambda p: (counts[p], vocab[p[0]], vocab[p[1]]))
        new = len(vocab)
        merges.append(best)
        vocab.append(vocab[best[0]] + vocab[best[1]])
        merged = Counter()
        for seq, c in seqs.items():
            out, i = [], 0
            while i < len(seq):
                if seq[i : i + 2] == best:
                    out.append(new)
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            merged[tuple(out)] += c
        seqs = merged
    return merges


@pytest.mark.parametrize("rule", ["smallest-ids", "lexicographic"])
def test_both_tie_break_rules_equal_a_brute_force_trainer(shakespeare, rule):
    import regex

    text = shakespeare[:25_000]
    words = Counter(w.encode() for w in regex.findall(GPT2_SPLIT_PATTERN, text))
    expected = _brute_force_merges(words, 150, rule)
    assert learn_merges(count_pretokens([text]), 150, rule) == expected
    tok = BytePairTokenizer().train(text, 256 + 150 + 1, tie_break=rule)
    vocab = [bytes([b]) for b in range(256)]
    for a, b in expected:
        vocab.append(vocab[a] + vocab[b])
    assert tok.vocab == vocab
    assert BytePairTokenizer().train_naive(text, 256 + 150 + 1, tie_break=rule).vocab == vocab


def test_the_two_rules_differ_where_counts_tie(shakespeare):
    text = shakespeare[:25_000]
    ids = learn_merges(count_pretokens([text]), 150, "smallest-ids")
    lex = learn_merges(count_pretokens([text]), 150, "lexicographic")
    assert ids != lex and sorted(ids[:5]) == sorted(lex[:5])  # the same frequent pairs first


def test_lexicographic_rule_on_the_cs336_worked_example():
    """Stanford CS336 (2025) assignment 1, the BPE example: words split on whitespace, counts
    low 5, lower 2, widest 3, newest 6. Worked by hand: es and st tie at 9, and ('s', 't') is the
    greater pair; then ('e', 'st') 9; ow and lo tie at 7 -> ('o', 'w'); ... as in the handout."""
    text = "low low low low low lower lower widest widest widest newest newest newest newest newest newest"
    tok = train_from_counts(count_pretokens([text], pattern=r"\S+"), 256 + 12 + 1,
                            tie_break="lexicographic", pattern=r"\S+")
    learned = [tok.vocab[i] for i in range(256, 268)]
    assert learned == [b"st", b"est", b"ow", b"low", b"west", b"ne", b"newest", b"wi", b"wid", b"widest",
                       b"lowe", b"lower"]


def test_special_tokens_never_take_part_in_merges(shakespeare):
    """Issue 12: documents joined by <|endoftext|> used to teach '<|', '|>' and 'endoftext'."""
    docs = shakespeare[:60_000].split("\n\n")
    corpus = EOT.join(docs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        leaky = BytePairTokenizer().train(corpus, 256 + 300 + 1, special_tokens=())  # the old behaviour
    assert any(b"<|" in t or b"|>" in t or b"endof" in t for t in leaky.vocab)  # so this test can fail
    tok = BytePairTokenizer().train(corpus, 256 + 300 + 1)
    assert not any(piece in t for t in tok.vocab[256:] for piece in (b"<|", b"|>", b"endof", b"oftext", b"<", b">"))
    each = merge_counts(count_pretokens([d], special_tokens=()) for d in docs)  # documents apart
    assert tok.vocab == train_from_counts(each, 256 + 300 + 1).vocab
    ids = tok.encode(corpus, allowed_special="all")
    assert ids.count(tok.eot) == len(docs) - 1 and tok.decode(ids) == corpus


def test_several_special_tokens_get_the_ids_after_the_merges():
    tok = BytePairTokenizer().train("a<|x|>ab<|y|>abab", 256 + 2 + 2, special_tokens=["<|x|>", "<|y|>"])
    assert tok.special_tokens == {"<|x|>": 258, "<|y|>": 259} and tok.vocab[256:] == [b"ab", b"abab"]
    with pytest.raises(ValueError, match="vocab_size must be >= 258"):
        BytePairTokenizer().train("ab", 257, special_tokens=["<|x|>", "<|y|>"])
    with pytest.raises(TypeError, match="not one string"):
        BytePairTokenizer().train("ab", 300, special_tokens="<|x|>")
    with pytest.raises(ValueError, match="tie_break"):
        BytePairTokenizer().train("ab", 300, tie_break="largest")


@settings(max_examples=30, deadline=None)
@given(docs=st.lists(st.text(max_size=60) | tricky_text, max_size=12), cuts=st.lists(st.integers(0, 12), max_size=4))
def test_counting_is_a_map_reduce_any_partition_gives_the_same_counts(docs, cuts):
    whole = count_pretokens(docs)
    bounds = sorted(set(cuts + [0, len(docs)]))
    parts = [count_pretokens(docs[a:b]) for a, b in zip(bounds, bounds[1:])]
    assert merge_counts(parts) == whole
    import regex

    expected = Counter(p.encode("utf-8", "replace") for d in docs for chunk in d.split(EOT)
                       for p in regex.findall(GPT2_SPLIT_PATTERN, chunk))
    assert whole == expected


def test_train_from_counts_of_partitions_equals_train(shakespeare):
    docs = shakespeare[:80_000].split("\n\n")
    random.Random(1).shuffle(docs)
    counts = merge_counts(count_pretokens(docs[k::3]) for k in range(3))
    tok = train_from_counts(counts, 600, name="shards")
    assert tok.vocab == BytePairTokenizer().train(EOT.join(docs), 600).vocab and tok.name == "shards"
    with pytest.raises(TypeError, match="iterable of str"):
        count_pretokens("one text")
    with pytest.raises(ValueError, match="non-negative int"):
        learn_merges({b"ab": -1}, 3)


def test_workers_give_the_same_merges(shakespeare):
    text = EOT.join(shakespeare[:200_000].split("\n\n")[:300]) + shakespeare[200_000:300_000]
    one = BytePairTokenizer().train(text, 700)
    two = BytePairTokenizer().train(text, 700, workers=2)
    assert two.vocab == one.vocab
    with pytest.raises(ValueError, match="workers"):
        BytePairTokenizer().train(text, 700, workers=0)


@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(TRICKY_PIECES_CHARS), max_size=300) | tricky_text | st.text(max_size=300),
       size=st.integers(1, 40))
def test_cuts_between_a_non_space_and_a_space_keep_every_pre_token(text, size):
    """The cut rule behind workers= and encode_iterable: pre-tokens of the pieces = of the whole."""
    import regex

    pieces = bpe_module._cut_every(text, size)
    assert "".join(pieces) == text
    assert [p for piece in pieces for p in regex.findall(GPT2_SPLIT_PATTERN, piece)] == regex.findall(GPT2_SPLIT_PATTERN, text)


@pytest.mark.slow
def test_training_on_a_long_pre_token_is_not_quadratic():
    """A 1 MB pre-token (DNA-like letters): the old trainer rebuilt and recounted the whole word
    at every merge (about 1 MB x merges); now each merge costs its occurrences."""
    dna = "".join(random.Random(0).choices("ACGT", k=1_000_000))
    t0 = time.perf_counter()
    tok = BytePairTokenizer().train(dna, 256 + 100 + 1)
    assert time.perf_counter() - t0 < 60
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 'a' * 1e6 ends as one token after a few dozen merges
        t0 = time.perf_counter()
        run = BytePairTokenizer().train("a" * 1_000_000, 300)
        assert time.perf_counter() - t0 < 60
        assert run.vocab == BytePairTokenizer().train_naive("a" * 1_000_000, 300).vocab
    assert run.encode("a" * 1_000_000) == [run.n_vocab - 2]  # the last merge is the whole run
    small = dna[:20_000]
    assert BytePairTokenizer().train(small, 256 + 60 + 1).vocab == BytePairTokenizer().train_naive(small, 256 + 60 + 1).vocab
    assert len(tok.encode(dna[:10_000])) < 0.4 * 10_000 and tok.decode(tok.encode(dna[:9_999])) == dna[:9_999]


# ---------------------------------------------------------------- streaming encoder (issue 12)
def test_encode_iterable_crosses_line_ends_like_the_joined_text(gpt2_bpe, ref):
    chunks = ["a\n", "\n", "\n", "b"]
    assert list(gpt2_bpe.encode_iterable(chunks)) == [64, 628, 198, 65] == ref.encode_ordinary("".join(chunks))
    assert [gpt2_bpe.encode(c) for c in chunks] != [[64], [628], [198], [65]]  # chunk by chunk is wrong


def _chunked(text: str, cuts: list[int]) -> list[str]:
    bounds = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]


@settings(max_examples=200, deadline=None)
@given(text=st.text() | tricky_text | st.text(alphabet=st.sampled_from(TRICKY_PIECES_CHARS)),
       cuts=st.lists(st.integers(0, 200), max_size=20))
def test_encode_iterable_of_any_chunking_equals_tiktoken(gpt2_bpe, ref, text, cuts):
    chunks = _chunked(text, cuts)
    assert list(gpt2_bpe.encode_iterable(chunks)) == ref.encode_ordinary(text)
    assert list(gpt2_bpe.encode_iterable(iter(chunks), allowed_special="all")) == ref.encode(text, allowed_special="all")
    fast = get_gpt2_tokenizer()  # the same cutting works for the fast tokenizer
    assert [i for piece in stream_pieces(chunks) for i in fast.encode(piece)] == ref.encode_ordinary(text)


@pytest.fixture(scope="module")
def with_spaced_special(ref):
    """GPT-2 plus a special token with spaces in it, ours and tiktoken's."""
    special = {EOT: 50256, "<| sep |>": 50257}
    theirs = tiktoken.Encoding("gpt2-sep", pat_str=ref._pat_str, mergeable_ranks=ref._mergeable_ranks, special_tokens=special)
    return BytePairTokenizer.from_tiktoken(ref, special_tokens=special), theirs


@settings(max_examples=100, deadline=None)
@given(pieces=st.lists(st.sampled_from(["<| sep |>", "<| se", "p |>", " ", "x", "\n", "<|", "|>", "sep"]), max_size=25),
       cuts=st.lists(st.integers(0, 120), max_size=12))
def test_encode_iterable_never_cuts_a_special_token_that_holds_spaces(with_spaced_special, pieces, cuts):
    ours, theirs = with_spaced_special
    text = "".join(pieces)
    assert list(ours.encode_iterable(_chunked(text, cuts), allowed_special="all")) == theirs.encode(text, allowed_special="all")


@pytest.mark.slow
def test_encode_iterable_memory_is_bounded(gpt2_bpe, shakespeare):
    """Issue 12 measured ~89 MB of peak memory for a 5 MB file through the old path; now the
    stream is held only up to the last cut, and ids are yielded one at a time."""
    lines = shakespeare.splitlines(keepends=True)

    def stream():  # ~5 MB, generated line by line, never held whole
        for k in range(5):
            yield from lines
    total = 5 * len(shakespeare)
    gpt2_bpe.clear_cache()
    for _ in gpt2_bpe.encode_iterable(lines[:3000]):  # warm the cache outside the measurement
        pass
    tracemalloc.start()
    n = sum(1 for _ in gpt2_bpe.encode_iterable(stream()))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert total > 5_000_000 and n > 1_000_000
    assert peak < 10_000_000, f"peak {peak / 1e6:.1f} MB for a {total / 1e6:.1f} MB stream"


def test_encode_iterable_checks_its_input(gpt2_bpe):
    with pytest.raises(TypeError, match="chunk 1 is bytes"):
        list(gpt2_bpe.encode_iterable(["ok", b"bytes"]))
    with pytest.raises(ValueError, match="unknown special"):
        gpt2_bpe.encode_iterable(["x"], allowed_special={"<|nope|>"})
    assert list(gpt2_bpe.encode_iterable([])) == [] and list(gpt2_bpe.encode_iterable(["", ""])) == []
    other = BytePairTokenizer(gpt2_bpe.vocab, gpt2_bpe.special_tokens, pattern=r"\S+|\s+")
    assert list(other.encode_iterable(["a\n", "\n", "b c"])) == other.encode("a\n\nb c")  # joined, still right


def test_a_file_in_the_saved_format_keeps_loading(tmp_path):
    """Backward compatibility: a version-1 file as written since the format's start."""
    doc = {"format": "gpt2lib-bpe", "version": 1, "name": "old", "pattern": GPT2_SPLIT_PATTERN,
           "special_tokens": {EOT: 257},
           "vocab": [base64.b64encode(bytes([b])).decode() for b in range(256)] + [base64.b64encode(b"ab").decode()]}
    (tmp_path / "old.json").write_text(json.dumps(doc), encoding="utf-8")
    tok = BytePairTokenizer.load(tmp_path / "old.json")
    assert tok.encode("abab" + EOT, allowed_special="all") == [256, 256, 257] and tok.merges == [(97, 98)]
