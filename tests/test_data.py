"""gpt2lib.data: token shards (GPT-2 §2.1) and the deterministic, rank-sharded window loader."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tiktoken
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2lib.data import TokenLoader, TokenShards, dtype_for_vocab, load_tokenizer, prepare, split_documents

DOCS = [
    "First Citizen:\nBefore we proceed any further, hear me speak.",
    "All:\nSpeak, speak.",
    "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich. 🙂",
    "  leading spaces and\ttabs\n\n\nand blank lines",
    "The quick brown fox jumps over the lazy dog." * 5,
    "Second Citizen:\nOne word, good citizens.",
    "x",
    "What authority surfeits on would relieve us.",
]


@pytest.fixture(scope="module")
def gpt2_tok():
    from gpt2lib.tokenizer import get_gpt2_tokenizer

    return get_gpt2_tokenizer()


@pytest.fixture(scope="module")
def ref_enc():
    return tiktoken.get_encoding("gpt2")  # the independent reference


def _docs_of(tokens: np.ndarray, eot: int, enc) -> list[str]:
    """Split a token stream at eot (each document is preceded by eot) and decode each piece."""
    assert tokens[0] == eot
    cuts = np.flatnonzero(tokens == eot).tolist() + [len(tokens)]
    return [enc.decode(tokens[a + 1 : b].tolist()) for a, b in zip(cuts[:-1], cuts[1:])]


def test_prepare_writes_eot_delimited_documents_split_by_document(tmp_path, gpt2_tok, ref_enc):
    """Each split is eot + tiktoken(doc) for its documents in corpus order; the splits partition the corpus."""
    meta = prepare(DOCS, tmp_path, gpt2_tok, val_fraction=0.25, progress=False)
    train = TokenShards.open(tmp_path, "train", gpt2_tok)
    val = TokenShards.open(tmp_path, "val", gpt2_tok)
    assert train.arrays[0].dtype == np.uint16 and meta["dtype"] == "uint16"
    train_docs, val_docs = _docs_of(train.tokens(), 50256, ref_enc), _docs_of(val.tokens(), 50256, ref_enc)
    assert len(val_docs) == 2 and sorted(train_docs + val_docs) == sorted(DOCS)
    assert train_docs == [d for d in DOCS if d in train_docs]  # corpus order kept
    expected = np.concatenate([[50256] + ref_enc.encode(d, disallowed_special=()) for d in train_docs])
    np.testing.assert_array_equal(train.tokens(), expected)
    on_disk = json.loads((tmp_path / "meta.json").read_text())
    assert on_disk["splits"]["val"] == {
        "documents": 2, "tokens": len(val.tokens()), "bytes": sum(len(d.encode()) for d in val_docs),
        "shards": on_disk["splits"]["val"]["shards"]}
    assert (on_disk["n_vocab"], on_disk["eot"]) == (50257, 50256)
    assert load_tokenizer(tmp_path).encode("hello world") == ref_enc.encode("hello world")


def test_split_is_deterministic_for_a_seed(tmp_path, gpt2_tok):
    docs = [f"document number {i}" for i in range(40)]
    a = prepare(docs, tmp_path / "a", gpt2_tok, val_fraction=0.2, seed=3, progress=False)
    b = prepare(docs, tmp_path / "b", gpt2_tok, val_fraction=0.2, seed=3, progress=False)
    prepare(docs, tmp_path / "c", gpt2_tok, val_fraction=0.2, seed=4, progress=False)
    va, vb, vc = (TokenShards.open(tmp_path / x, "val").tokens() for x in "abc")
    assert a == b and np.array_equal(va, vb) and not np.array_equal(va, vc)
    assert a["splits"]["val"]["documents"] == 8


def test_small_shards_and_workers_give_the_same_tokens(tmp_path, gpt2_tok):
    """Shard size and the number of worker processes change the files, never the token stream."""
    docs = DOCS * 6
    prepare(docs, tmp_path / "one", gpt2_tok, val_fraction=0.1, progress=False)
    meta = prepare(docs, tmp_path / "many", gpt2_tok, val_fraction=0.1, shard_size=37, num_workers=2,
                   chunk_docs=5, progress=False)
    assert len(meta["splits"]["train"]["shards"]) > 5
    assert all(s["tokens"] <= 37 for s in meta["splits"]["train"]["shards"])
    for split in ("train", "val"):
        np.testing.assert_array_equal(TokenShards.open(tmp_path / "one", split).tokens(),
                                      TokenShards.open(tmp_path / "many", split).tokens())


def test_serial_prepare_leaves_the_callers_torch_threads_alone(tmp_path, gpt2_tok):
    """num_workers=1 tokenizes in this process; only pool workers are pinned to 1 torch thread, so a
    prepare before training (e.g. in a notebook) does not slow the training that follows."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        prepare(DOCS, tmp_path, gpt2_tok, val_fraction=0.1, num_workers=1, progress=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_prepare_reads_text_files(tmp_path, gpt2_tok, ref_enc):
    paths = []
    for i, d in enumerate(DOCS[:3]):
        paths.append(tmp_path / f"{i}.txt")
        paths[-1].write_text(d, encoding="utf-8")
    prepare(paths, tmp_path / "out", gpt2_tok, val_fraction=0.0, progress=False)
    assert _docs_of(TokenShards.open(tmp_path / "out").tokens(), 50256, ref_enc) == DOCS[:3]


def test_prepare_with_a_trained_bpe(tmp_path):
    """A small BytePairTokenizer works too (here in 2 worker processes); each document round-trips."""
    from gpt2lib.bpe import BytePairTokenizer

    tok = BytePairTokenizer()
    tok.train(" ".join(DOCS) * 3, 300)
    meta = prepare(DOCS, tmp_path, tok, val_fraction=0.25, progress=False, num_workers=2, chunk_docs=2)
    toks = TokenShards.open(tmp_path, "train", tok).tokens()
    assert meta["n_vocab"] == tok.n_vocab and toks.max() < tok.n_vocab
    docs = _docs_of(toks, tok.eot, tok)
    assert len(docs) == 6 and docs == [d for d in DOCS if d in docs]
    again = load_tokenizer(tmp_path)  # the trained BPE is saved beside its shards
    assert again.encode(DOCS[2]) == tok.encode(DOCS[2]) and again.n_vocab == tok.n_vocab


def test_bad_corpus_is_refused_before_work(tmp_path, gpt2_tok):
    with pytest.raises(ValueError, match="empty corpus"):
        prepare([], tmp_path, gpt2_tok, progress=False)
    with pytest.raises(ValueError, match="empty corpus"):
        prepare(["", ""], tmp_path, gpt2_tok, progress=False)
    with pytest.raises(ValueError, match="cannot split 1 document"):
        prepare(["only one document"], tmp_path, gpt2_tok, val_fraction=0.1, progress=False)
    with pytest.raises(ValueError, match="cannot hold"):
        prepare(DOCS, tmp_path, gpt2_tok, dtype="uint8", progress=False)
    assert not (tmp_path / "meta.json").exists()


def test_dtype_for_vocab():
    """uint16 holds ids up to 65535, i.e. vocabularies of up to 65,536 tokens; larger ones need uint32."""
    assert dtype_for_vocab(50257) == np.uint16 and dtype_for_vocab(65536) == np.uint16
    assert dtype_for_vocab(65537) == np.uint32 and dtype_for_vocab(100277) == np.uint32


def test_shards_from_another_tokenizer_are_refused(tmp_path, gpt2_tok):
    """Opening shards with a tokenizer whose vocabulary differs (size, eot or merges) is an error."""
    from gpt2lib.bpe import BytePairTokenizer

    prepare(DOCS, tmp_path, gpt2_tok, val_fraction=0.25, progress=False)
    tok = BytePairTokenizer()
    tok.train(" ".join(DOCS), 300)
    with pytest.raises(ValueError, match="another tokenizer"):
        TokenShards.open(tmp_path, "train", tok)


def test_unfinished_or_damaged_folders_are_refused(tmp_path, gpt2_tok):
    with pytest.raises(FileNotFoundError, match="not a finished"):
        TokenShards.open(tmp_path)
    meta = prepare(DOCS, tmp_path, gpt2_tok, val_fraction=0.25, progress=False)
    shard = tmp_path / meta["splits"]["train"]["shards"][0]["file"]
    shard.write_bytes(shard.read_bytes()[:-2])
    with pytest.raises(ValueError, match="not .* bytes"):
        TokenShards.open(tmp_path, "train")
    with pytest.raises(ValueError, match="no 'test' split"):
        TokenShards.open(tmp_path, "test")


def test_split_documents():
    assert split_documents("a\n\nb\n\n\n\nc\n") == ["a", "b", "c\n"]


# --- the loader --------------------------------------------------------------------------------------------
def _shards(*lengths: int, seed: int = 0) -> TokenShards:
    """Shards whose tokens are distinct (a shuffled range), so a window's content identifies it."""
    perm = np.random.default_rng(seed).permutation(sum(lengths)).astype(np.uint16)
    arrays = np.split(perm, np.cumsum(lengths)[:-1])
    meta = {"n_vocab": 1 << 16, "splits": {"train": {"bytes": 0}}}
    return TokenShards(Path("."), "train", meta, arrays)


def _all_windows(shards: TokenShards, T: int) -> set[tuple[int, ...]]:
    return {tuple(a[i : i + T + 1].tolist()) for a in shards.arrays for i in range(0, len(a) - T, T)}


def test_x_y_are_shifted_windows_of_the_stream():
    """y is x shifted by one token, and every row is tokens[i : i + T + 1] of one shard."""
    shards = _shards(500)
    x, y = TokenLoader(shards, 16, 4, seed=1).next_batch()
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    windows = _all_windows(shards, 16)
    for row_x, row_y in zip(x.tolist(), y.tolist()):
        assert tuple(row_x + row_y[-1:]) in windows


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(2, 300), min_size=1, max_size=4), T=st.integers(1, 40),
       world=st.integers(1, 4), seed=st.integers(0, 5))
def test_ranks_get_disjoint_windows_covering_an_epoch(lengths, T, world, seed):
    """In one epoch each rank sees windows_per_rank distinct windows, no window is on two ranks, and
    together they cover every window except at most world_size - 1."""
    shards = _shards(*lengths, seed=seed)
    n = sum((L - 1) // T for L in lengths)
    if n < world:
        with pytest.raises(ValueError, match="more ranks than data|fewer than one window"):
            TokenLoader(shards, T, 1, seed=seed, world_size=world)
        return
    seen = []
    for r in range(world):
        loader = TokenLoader(shards, T, 1, seed=seed, rank=r, world_size=world)
        seen.append([tuple(torch.cat([x[0], y[0, -1:]]).tolist()) for x, y in loader])
    flat = [w for s in seen for w in s]
    assert all(len(s) == n // world for s in seen)
    assert len(set(flat)) == len(flat) == world * (n // world)  # no window twice, on one rank or across ranks
    assert set(flat) <= _all_windows(shards, T) and len(_all_windows(shards, T)) == n


def test_world_size_ranks_see_what_one_rank_sees_with_a_bigger_batch():
    """Per step, W ranks with batch B read the same windows as one rank with batch W * B (the DDP identity)."""
    shards = _shards(3000)
    one = TokenLoader(shards, 8, 6, seed=2)
    ranks = [TokenLoader(shards, 8, 3, seed=2, rank=r, world_size=2) for r in range(2)]
    for _ in range(5):
        x1, _ = one.next_batch()
        xr = torch.cat([r.next_batch()[0] for r in ranks])
        assert sorted(map(tuple, x1.tolist())) == sorted(map(tuple, xr.tolist()))


def test_loader_is_deterministic_and_resumes_exactly():
    """The same seed gives the same batches; a new loader given state_dict() continues the sequence exactly,
    across an epoch boundary."""
    shards = _shards(400, 300)
    a = TokenLoader(shards, 10, 4, seed=7)
    ref = [a.next_batch()[0] for _ in range(30)]  # ~4 epochs of 69 windows
    b = TokenLoader(shards, 10, 4, seed=7)
    for i in range(11):
        assert torch.equal(b.next_batch()[0], ref[i])
    state = b.state_dict()
    c = TokenLoader(shards, 10, 4, seed=7)
    c.load_state_dict(json.loads(json.dumps(state)))  # survives JSON
    for i in range(11, 30):
        assert torch.equal(c.next_batch()[0], ref[i])
    assert not torch.equal(TokenLoader(shards, 10, 4, seed=8).next_batch()[0], ref[0])


def test_loader_state_from_another_setup_is_refused():
    state = TokenLoader(_shards(400), 10, 4, seed=7).state_dict()
    with pytest.raises(ValueError, match="block_size"):
        TokenLoader(_shards(400), 12, 4, seed=7).load_state_dict(state)
    with pytest.raises(ValueError, match="seed"):
        TokenLoader(_shards(400), 10, 4, seed=1).load_state_dict(state)


def test_unshuffled_loader_reads_in_corpus_order():
    shards = _shards(100)
    x, y = TokenLoader(shards, 10, 3, shuffle=False).next_batch()
    toks = torch.from_numpy(shards.arrays[0].astype(np.int64))
    assert torch.equal(x, toks[:30].view(3, 10)) and torch.equal(y, toks[1:31].view(3, 10))


def test_loader_bad_input():
    with pytest.raises(ValueError, match="larger than the model's context"):
        TokenLoader(_shards(5000), 1025, 1, model_block_size=1024)
    with pytest.raises(ValueError, match="more ranks than data"):
        TokenLoader(_shards(35), 10, 1, world_size=4)
    with pytest.raises(ValueError, match="fewer than one window"):
        TokenLoader(_shards(10), 10, 1)
