"""GPT-2 §2.2, fast path: ``get_gpt2_tokenizer()`` gives exactly tiktoken's GPT-2 ids, with a
documented special-token policy, clear errors, and a clear message when it cannot load offline."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import tiktoken
import tiktoken.load
import tiktoken.registry
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2lib.tokenizer import (
    GPT2Tokenizer,
    TokenizerUnavailableError,
    get_gpt2_tokenizer,
    load_gpt2_encoding,
)
from tokenizer_corpus import EDGE_CASES, mirror_documents, tricky_text

EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def ref() -> tiktoken.Encoding:
    """tiktoken's own GPT-2 encoding: the reference."""
    return tiktoken.get_encoding("gpt2")


@pytest.fixture(scope="module")
def tok() -> GPT2Tokenizer:
    return get_gpt2_tokenizer()


@pytest.fixture(scope="module")
def corpus(data_mirror: Path) -> dict[str, list[str]]:
    return mirror_documents(data_mirror)


# ---------------------------------------------------------------- identity with tiktoken
def test_vocabulary_constants_are_gpt2s(tok, ref):
    """50,257 ids, <|endoftext|> = 50256, name "gpt2" (GPT-2 §2.2)."""
    assert (tok.n_vocab, tok.eot, tok.name) == (ref.n_vocab, ref.eot_token, "gpt2") == (50257, 50256, "gpt2")


def test_one_instance_per_process():
    assert get_gpt2_tokenizer() is get_gpt2_tokenizer()


def test_encode_equals_tiktoken_on_every_mirror_document(tok, ref, corpus):
    """Every document of seven real corpora (English, French, web, Wikipedia, questions...)."""
    for name, docs in corpus.items():
        assert len(docs) > 100, name
        assert tok.encode_batch(docs, num_threads=2) == ref.encode_ordinary_batch(docs), name


@pytest.mark.parametrize("text", EDGE_CASES)
def test_encode_equals_tiktoken_on_edge_cases(tok, ref, text):
    assert tok.encode(text) == ref.encode_ordinary(text)
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=200, deadline=None)
@given(st.text() | tricky_text)
def test_encode_equals_tiktoken_and_round_trips_on_any_text(tok, ref, text):
    ids = tok.encode(text)
    assert ids == ref.encode_ordinary(text)
    assert tok.decode(ids) == text


def test_lone_surrogates_are_encoded_like_tiktoken(tok, ref):
    """Text that cannot be UTF-8 (a lone surrogate) is not an error: tiktoken replaces it with U+FFFD."""
    text = "a\ud800b"
    assert tok.encode(text) == ref.encode_ordinary(text)
    assert tok.decode(tok.encode(text)) == "a\ufffdb"


def test_encode_batch_equals_encode_for_any_thread_count(tok, ref):
    texts = ["first doc", "", "second <|endoftext|> doc", "日本"]
    expected = [ref.encode_ordinary(t) for t in texts]
    assert tok.encode_batch(texts, num_threads=1) == expected
    assert tok.encode_batch(texts, num_threads=4) == expected
    special = tok.encode_batch(texts, allowed_special="all")
    assert special == [ref.encode(t, allowed_special="all") for t in texts]


# ---------------------------------------------------------------- special-token policy
def test_special_token_text_is_ordinary_text_by_default(tok, ref):
    """tiktoken's encode() raises here; ours encodes the characters, like encode_ordinary."""
    text = f"end of one doc{EOT}start of next"
    with pytest.raises(ValueError):
        ref.encode(text)
    ids = tok.encode(text)
    assert ids == ref.encode_ordinary(text)
    assert tok.eot not in ids
    assert tok.decode(ids) == text


@pytest.mark.parametrize("allowed", ["all", {EOT}, frozenset({EOT})])
def test_allowed_special_turns_endoftext_into_eot(tok, ref, allowed):
    text = f"end of one doc{EOT}start of next{EOT}"
    ids = tok.encode(text, allowed_special=allowed)
    assert ids == ref.encode(text, allowed_special="all")
    assert ids.count(50256) == 2 and ids[-1] == 50256
    assert tok.decode(ids) == text


@pytest.mark.parametrize("allowed", [[EOT], (EOT,)])
def test_allowed_special_may_be_any_collection_like_the_educational_bpe(tok, ref, allowed):
    """A list or tuple of special tokens works as a set does (as in gpt2lib.bpe), in encode and
    encode_batch, instead of a TypeError from tiktoken's Rust core."""
    text = f"a{EOT}b"
    expected = ref.encode(text, allowed_special={EOT})
    assert tok.encode(text, allowed_special=allowed) == expected
    assert tok.encode_batch([text, text], allowed_special=allowed) == [expected, expected]


def test_unknown_special_token_is_rejected(tok):
    with pytest.raises(ValueError, match="<|fim_prefix|>"):
        tok.encode("x", allowed_special={"<|fim_prefix|>"})
    with pytest.raises(TypeError, match="allowed_special"):
        tok.encode("x", allowed_special=EOT)  # a bare string is a likely slip for {EOT}


# ---------------------------------------------------------------- bad input
def test_empty_string_encodes_to_empty_list(tok):
    assert tok.encode("") == [] and tok.decode([]) == "" and tok.encode_batch([]) == []


@pytest.mark.parametrize("bad", [b"bytes", None, 42, ["a list"]])
def test_encode_of_non_str_is_a_type_error_naming_the_type(tok, bad):
    with pytest.raises(TypeError, match=type(bad).__name__):
        tok.encode(bad)


def test_encode_batch_rejects_a_bare_string_and_non_str_items(tok):
    with pytest.raises(TypeError, match="single str"):
        tok.encode_batch("not a list")
    with pytest.raises(TypeError, match="item 1 is int"):
        tok.encode_batch(["ok", 7])


@pytest.mark.parametrize("bad_id", [50257, 10**6, -1, -50257, 2**70])
def test_decode_of_out_of_range_id_is_a_value_error_naming_it(tok, bad_id):
    with pytest.raises(ValueError, match=str(bad_id)):
        tok.decode([15496, bad_id])


@pytest.mark.parametrize("bad_id", [1.0, "15496", None])
def test_decode_of_non_integer_id_is_a_type_error(tok, bad_id):
    with pytest.raises(TypeError, match=type(bad_id).__name__):
        tok.decode([15496, bad_id])


def test_decoding_part_of_a_character_follows_errors_argument(tok, ref):
    """"😀" is 4 UTF-8 bytes spread over several tokens; its first token alone is not valid UTF-8."""
    ids = tok.encode("😀")
    assert len(ids) > 1
    assert tok.decode_bytes(ids[:1]) == ref.decode_bytes(ids[:1]) == "😀".encode()[: len(ref.decode_bytes(ids[:1]))]
    assert tok.decode(ids[:1]) == "\ufffd"
    assert tok.decode(ids[:1], errors="replace") == ref.decode(ids[:1], errors="replace")
    with pytest.raises(UnicodeDecodeError):
        tok.decode(ids[:1], errors="strict")
    assert tok.decode(ids, errors="strict") == "😀"


def test_decode_accepts_any_iterable_of_ints(tok):
    ids = tok.encode("Hello world")
    assert tok.decode(tuple(ids)) == tok.decode(iter(ids)) == "Hello world"


def test_tokenizer_pickles_to_the_same_process_wide_instance(tok):
    """Worker processes (gpt2lib.data) receive the tokenizer by pickling."""
    assert pickle.loads(pickle.dumps(tok)) is get_gpt2_tokenizer()


# ---------------------------------------------------------------- where the files come from
def test_mirror_encoder_json_and_vocab_bpe_alone_suffice(tmp_path, monkeypatch, data_mirror, ref):
    """With only GPT-2's original files in the mirror, and tiktoken unusable, we still load."""
    (tmp_path / "gpt2").mkdir()
    for name in ("encoder.json", "vocab.bpe"):
        os.symlink(data_mirror / "gpt2" / name, tmp_path / "gpt2" / name)
    monkeypatch.setenv("GPT2LIB_DATA_MIRROR", str(tmp_path))
    monkeypatch.setattr(tiktoken, "get_encoding", lambda name: pytest.fail("must not fall back to tiktoken"))
    enc = load_gpt2_encoding()
    text = "Files from the mirror: <|endoftext|> naïve café 123"
    assert enc.encode_ordinary(text) == ref.encode_ordinary(text)
    assert enc.encode(text, allowed_special="all") == ref.encode(text, allowed_special="all")


def test_corrupt_mirror_file_is_reported_and_not_used(tmp_path, monkeypatch, ref):
    (tmp_path / "gpt2").mkdir()
    (tmp_path / "gpt2" / "r50k_base.tiktoken").write_text("SGVsbG8= 0\n")
    monkeypatch.setenv("GPT2LIB_DATA_MIRROR", str(tmp_path))
    with pytest.warns(UserWarning, match="wrong sha256"):
        enc = load_gpt2_encoding()  # falls back to tiktoken's cache
    assert enc.encode_ordinary("Hello world") == ref.encode_ordinary("Hello world")


def test_no_cache_no_mirror_no_network_gives_one_clear_error(tmp_path, monkeypatch):
    """Offline with nothing to load from: TokenizerUnavailableError explaining the three fixes."""
    fetched = []

    def no_network(url):
        fetched.append(url)
        raise ConnectionError(f"network disabled in tests: {url}")

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # empty cache
    monkeypatch.delenv("GPT2LIB_DATA_MIRROR", raising=False)
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})  # forget encodings loaded earlier
    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    with pytest.raises(TokenizerUnavailableError) as info:
        load_gpt2_encoding()
    message = str(info.value)
    for hint in ("TIKTOKEN_CACHE_DIR", "GPT2LIB_DATA_MIRROR", "network", "r50k_base.tiktoken"):
        assert hint in message
    assert fetched and all(u.startswith("https://openaipublic") for u in fetched)
    assert isinstance(info.value, RuntimeError)


# ---------------------------------------------------------------- split patterns of tokenizer files
def test_gpt2s_split_patterns_pass_the_pattern_check():
    from gpt2lib.bpe import GPT2_SPLIT_PATTERN
    from gpt2lib.tokenizer import _TIKTOKEN_GPT2_PATTERN, check_split_pattern

    check_split_pattern(GPT2_SPLIT_PATTERN)
    check_split_pattern(_TIKTOKEN_GPT2_PATTERN)
    check_split_pattern(tiktoken.get_encoding("gpt2")._pat_str)  # tiktoken's own, the reference


@pytest.mark.parametrize("pattern, why", [
    ("", "non-empty"), (None, "non-empty"), ("(", "does not compile"), (r"\p{L}+", "drops text"),
    (r"\w*", "matches the empty string"), (r"[a-z]+|\s", "drops text"),
])
def test_bad_split_patterns_are_refused_naming_the_source(pattern, why):
    from gpt2lib.tokenizer import check_split_pattern

    with pytest.raises(ValueError, match=why) as info:
        check_split_pattern(pattern, "my/tokenizer.json")
    assert str(info.value).startswith("my/tokenizer.json: ")


def _bpe_file_with_pattern(tmp_path: Path, pattern: str) -> Path:
    """A saved BytePairTokenizer file whose split pattern was edited (as the issue's probe did)."""
    import json

    from gpt2lib.bpe import BytePairTokenizer

    path = tmp_path / "bpe.json"
    BytePairTokenizer().save(path)
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["pattern"] = pattern
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_a_tokenizer_file_with_an_empty_pattern_is_refused_by_prepare_and_the_cli(tmp_path, capsys):
    """Before, pattern "" made encode return [] and prepare wrote only end-of-text tokens, exit 0."""
    from gpt2lib.bpe import BytePairTokenizer
    from gpt2lib.cli import main
    from gpt2lib.data import prepare

    path = _bpe_file_with_pattern(tmp_path, "")
    text = tmp_path / "in.txt"
    text.write_text("First Citizen:\nSpeak.\n\nAll:\nSpeak, speak.\n\nMore text here.", encoding="utf-8")
    with pytest.raises(SystemExit) as info:
        main(["prepare", "--input", str(text), "--tokenizer", str(path), "--out", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert info.value.code == 1 and str(path) in err and "split pattern" in err
    assert not (tmp_path / "d" / "meta.json").exists()
    with pytest.raises(ValueError, match="split pattern is ''"):
        prepare(["a b", "c d"], tmp_path / "d2", BytePairTokenizer.load(path), val_fraction=0, progress=False)


def test_a_data_folder_whose_tokenizer_file_was_damaged_is_refused_naming_it(tmp_path):
    import json

    from gpt2lib.bpe import BytePairTokenizer
    from gpt2lib.data import load_tokenizer, prepare

    meta = prepare(["one document", "another one"], tmp_path, BytePairTokenizer(), val_fraction=0, progress=False)
    tok_file = tmp_path / meta["tokenizer_file"]
    doc = json.loads(tok_file.read_text(encoding="utf-8"))
    doc["pattern"] = ""
    tok_file.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ValueError, match="split pattern") as info:
        load_tokenizer(tmp_path)
    assert str(tok_file) in str(info.value)


def test_prepare_refuses_a_tokenizer_that_does_not_round_trip():
    from gpt2lib.data import prepare
    from gpt2lib.tokenizer import get_gpt2_tokenizer

    class Lossy:
        name, n_vocab, eot = "lossy", 50257, 50256

        def encode(self, text):
            return get_gpt2_tokenizer().encode(text.lower())

        def decode(self, ids):
            return get_gpt2_tokenizer().decode(ids)

    with pytest.raises(ValueError, match="'lossy' does not round-trip"):
        prepare(["A b", "C d"], "/nonexistent/never-created", Lossy(), val_fraction=0, progress=False)


def test_fast_encode_iterable_equals_tiktoken_on_the_joined_text():
    """Streaming through the fast tokenizer gives tiktoken's ids of the whole text, whatever the chunking."""
    import random

    import tiktoken

    from gpt2lib.tokenizer import get_gpt2_tokenizer

    tok, enc = get_gpt2_tokenizer(), tiktoken.get_encoding("gpt2")
    assert list(tok.encode_iterable(["a\n", "\n", "\n", "b"])) == [64, 628, 198, 65]
    text = "Hello  world!\n\n  It's 2019 <|endoftext|> café\t\tTL;DR:   done \n" * 20
    rng = random.Random(0)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(text)), 15))
        chunks = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)])]
        assert list(tok.encode_iterable(chunks)) == enc.encode_ordinary(text)
        assert list(tok.encode_iterable(chunks, allowed_special="all")) == enc.encode(text, allowed_special="all")
