"""The §2.1 pipeline on an engine (gpt2lib.engine): the same documents, reports and shard bytes as the serial
run, for any partitioning, on a Dask cluster of 2 worker processes, and after a worker is killed mid-run."""
from __future__ import annotations

import json
import os
import signal
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt2lib.bpe import ENDOFTEXT, GPT2_SPLIT_PATTERN, BytePairTokenizer, count_pretokens
from gpt2lib.dedup import plant_near_duplicates
from gpt2lib.engine import (ProcessEngine, SerialEngine, count_pretokens_on_engine, get_engine, prepare_on_engine,
                            run_engine, split_evenly, train_bpe_on_engine)
from gpt2lib.pipeline import Drop, GroupStage, Stage, run_pipeline
from gpt2lib.webtext import (Document, clean_stages, dedup_stages, link_stages, read_lines, read_webtext_sample,
                             write_shards)

# --------------------------------------------------------------------- helpers (top level: they travel to workers)


def drop_multiples_of_5(x: int):
    return Drop("multiple of 5") if x % 5 == 0 else x


@dataclass(frozen=True)
class SameResidue(GroupStage):
    """Exact-style group stage on ints: one survivor per residue mod ``m``."""

    m: int = 7
    name: str = "residue"
    reason: str = "same residue"

    def keys(self, x: int):
        return [str(x % self.m).encode()]


def kill_worker_once(marker: str, doc: Document):
    """Kill the process running this task (SIGKILL, as the OOM killer would) the first time it sees the
    victim document; the marker file makes the retry pass."""
    if doc.id == "victim" and not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return doc


def fail_once(marker: str, doc: Document):
    if doc.id == "victim" and not os.path.exists(marker):
        Path(marker).write_text("failed")
        raise RuntimeError("injected failure")
    return doc


def reports(run) -> list[dict]:
    return [vars(r) for r in run.reports]


@pytest.fixture(scope="module")
def corpus(data_mirror) -> list[Document]:
    """120 WebText documents, 20 planted near copies, 6 exact copies (re-spaced), one document the
    cleaning drops, and the "victim" the failure tests aim at."""
    texts = [d.text for d in read_webtext_sample(limit=120)]
    planted = plant_near_duplicates(texts, n_copies=20, rates=(0.02, 0.05), seed=0)
    docs = [Document(f"d{i}", t) for i, t in enumerate(planted.texts)]
    docs += [Document(f"x{i}", "  " + texts[i].replace(" ", "\n")) for i in range(0, 60, 10)]
    docs.insert(50, Document("victim", texts[7] + " and then some more words at the end of it"))
    docs.insert(3, Document("short", "too short to keep"))
    return docs


@pytest.fixture(scope="module")
def serial(corpus):
    run = run_pipeline(clean_stages() + dedup_stages(), corpus)
    return list(run), reports(run)


@pytest.fixture(scope="module")
def dask_engine():
    pytest.importorskip("distributed")
    with get_engine("dask", workers=2) as engine:
        yield engine


# --------------------------------------------------------------------- the serial engine, property-based


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 60), max_size=60), st.integers(1, 9))
def test_any_partitioning_gives_the_serial_output_and_reports(items, partitions):
    stages = [Stage("not 5k", drop_multiples_of_5), SameResidue()]
    ref = run_pipeline(stages, items)
    ref_items = list(ref)
    # the independent reference: the first of each residue among the non-multiples of 5
    expected, residues = [], set()
    for x in items:
        if x % 5 and x % 7 not in residues:
            residues.add(x % 7)
            expected.append(x)
    assert ref_items == expected
    got = run_engine(stages, items, partitions=partitions)
    assert got.items == ref_items and reports(got) == reports(ref)


def test_split_evenly_is_contiguous_and_balanced():
    assert split_evenly(list(range(7)), 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert split_evenly([1], 3) == [[1], [], []]
    with pytest.raises(ValueError, match="partitions"):
        split_evenly([1], 0)


def test_stateful_stage_is_refused_on_an_engine_with_a_clear_message():
    with pytest.raises(ValueError, match="stateful.*GroupStage"):
        run_engine([Stage("counter", lambda x: x, pure=False)], [1, 2])
    with pytest.raises(ValueError, match="unknown engine 'spark'"):
        get_engine("spark")


def test_link_files_as_partitions_read_on_the_workers(tmp_path):
    """Sources (one file per partition, one empty) read by read_lines: same links and reports as one stream."""
    lines = [json.dumps({"u": f"http{'s' * (i % 2)}://www.site{i % 9}.com/a/{i % 4}?utm_source=x", "r": "s",
                         "k": 1 if i % 10 == 0 else 3 + i % 3}) for i in range(200)] + ["not json", '{"u": "https://en.wikipedia.org/wiki/X", "k": 9}']
    files = []
    for k, chunk in enumerate([lines[:90], [], lines[90:]]):
        files.append(tmp_path / f"links-{k}.ndjson")
        files[-1].write_text("".join(x + "\n" for x in chunk))
    ref = run_pipeline(link_stages(), (x for f in files for x in read_lines(f)))
    ref_links = list(ref)
    with ProcessEngine(2) as engine:
        got = run_engine(link_stages(), sources=[str(f) for f in files], reader=read_lines, engine=engine)
    assert got.items == ref_links and reports(got) == reports(ref) and got.partitions == 3
    assert ref.reports[3].dropped["duplicate url"] > 0


# --------------------------------------------------------------------- Dask: 2 worker processes


@pytest.mark.slow
@pytest.mark.parametrize("partitions", [1, 2, 7])
def test_dask_run_equals_the_serial_run(dask_engine, corpus, serial, partitions):
    got = run_engine(clean_stages() + dedup_stages(), corpus, engine=dask_engine, partitions=partitions)
    assert got.items == serial[0]
    assert reports(got) == serial[1]
    copied = [d for d in corpus if d.id in {f"d{i}" for i in range(0, 60, 10)}]
    n_exact = len(list(run_pipeline(clean_stages(), copied)))  # the copies whose original survives cleaning
    assert dict(serial[1][-1]["dropped"]) == {"near duplicate": 20}
    assert dict(serial[1][-2]["dropped"]) == {"exact duplicate": n_exact} and n_exact >= 4


@pytest.mark.slow
def test_dask_shards_and_pretoken_counts_equal_the_serial_ones(dask_engine, serial, tmp_path):
    from gpt2lib.tokenizer import get_gpt2_tokenizer

    tok = get_gpt2_tokenizer()
    docs = serial[0]
    ref = write_shards(docs, tmp_path / "serial", tok, val_fraction=0.1)
    got = prepare_on_engine(dask_engine, [d.text for d in docs], tmp_path / "dask", tok, val_fraction=0.1,
                            partitions=5)
    assert got == ref
    for split in ref["splits"].values():
        for shard in split["shards"]:
            assert (tmp_path / "dask" / shard["file"]).read_bytes() == (tmp_path / "serial" / shard["file"]).read_bytes()
    texts = [d.text for d in docs]
    counted = count_pretokens_on_engine(dask_engine, texts, partial(count_pretokens, special_tokens=()), partitions=3)
    assert counted == Counter(p.encode() for t in texts for p in regex.findall(GPT2_SPLIT_PATTERN, t))


@pytest.mark.slow
def test_dask_bpe_training_equals_the_serial_trainer(dask_engine, serial):
    """Pre-token counting on the engine, merges in the driver: the same vocabulary and ids as the serial
    trainer on the documents joined by <|endoftext|> (which is cut out before counting), for both tie rules."""
    texts = [d.text for d in serial[0][:40]]
    for tie_break in ("smallest-ids", "lexicographic"):
        ref = BytePairTokenizer().train(ENDOFTEXT.join(texts), 400, tie_break=tie_break)
        got = train_bpe_on_engine(dask_engine, texts, 400, partitions=4, tie_break=tie_break)
        assert got.vocab == ref.vocab and got.special_tokens == ref.special_tokens
        assert got.encode(texts[0]) == ref.encode(texts[0])


@pytest.mark.slow
def test_dask_worker_killed_mid_run_is_retried_nothing_lost_or_duplicated(dask_engine, corpus, serial, tmp_path):
    marker = tmp_path / "killed"
    stages = [Stage("chaos", partial(kill_worker_once, str(marker)))] + clean_stages() + dedup_stages()
    got = run_engine(stages, corpus, engine=dask_engine, partitions=4)
    assert marker.exists()  # a worker really died
    assert got.items == serial[0] and reports(got)[1:] == serial[1]
    assert reports(got)[0]["seen"] == len(corpus)  # the victim's partition counted once, not twice


@pytest.mark.slow
def test_injected_task_failure_is_retried(dask_engine, corpus, serial, tmp_path):
    marker = tmp_path / "failed"
    stages = [Stage("flaky", partial(fail_once, str(marker)))] + clean_stages() + dedup_stages()
    got = run_engine(stages, corpus, engine=dask_engine, partitions=3)
    assert marker.exists() and got.items == serial[0] and reports(got)[1:] == serial[1]


def test_process_pool_worker_killed_is_rebuilt_and_resubmitted(corpus, serial, tmp_path):
    marker = tmp_path / "killed"
    stages = [Stage("chaos", partial(kill_worker_once, str(marker)))] + clean_stages() + dedup_stages()
    with ProcessEngine(2) as engine:
        got = run_engine(stages, corpus, engine=engine, partitions=7)
    assert marker.exists() and got.items == serial[0] and reports(got)[1:] == serial[1]
    assert reports(got)[0]["seen"] == len(corpus)


def test_serial_engine_is_the_default():
    assert run_engine([Stage("not 5k", drop_multiples_of_5)], range(12), partitions=3).items == [
        1, 2, 3, 4, 6, 7, 8, 9, 11]
    assert SerialEngine().workers == 1


# --------------------------------------------------------------------- python -m gpt2lib webtext


@pytest.fixture(scope="module")
def crawl(tmp_path_factory, corpus) -> Path:
    """A folder as a crawl leaves it: a link file and HTML pages (3 of them exact copies)."""
    root = tmp_path_factory.mktemp("crawl")
    (root / "pages").mkdir()
    for i, d in enumerate(corpus[:30] + corpus[:3]):
        body = "".join(f"<p>{para}</p>\n" for para in d.text.split("\n") if para.strip())
        (root / "pages" / f"p{i:03d}.html").write_text(
            f"<html><body><nav>Home | Login</nav><article>{body}</article></body></html>", encoding="utf-8")
    (root / "links.ndjson").write_text("".join(
        json.dumps({"u": f"http://www.ex{i % 7}.com/{i % 5}", "r": "x", "k": i % 6}) + "\n" for i in range(50))
        + "broken\n")
    return root


def test_cli_webtext_serial_and_process_pool_write_the_same_files(crawl, tmp_path, capsys):
    from gpt2lib.cli import main

    assert main(["webtext", str(crawl), "--out", str(tmp_path / "a")]) == 0
    assert main(["webtext", str(crawl), "--out", str(tmp_path / "b"), "--engine", "process", "--workers", "2",
                 "--partitions", "3"]) == 0
    err = capsys.readouterr().err
    assert "(dropped exact duplicate: 3)" in err and "parse: kept 50/51 (dropped malformed: not json: 1)" in err
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert Path("links.ndjson") in files and any(p.suffix == ".bin" for p in files)
    for f in files:
        a, b = (tmp_path / "a" / f).read_bytes(), (tmp_path / "b" / f).read_bytes()
        if f.name == "webtext-report.json":  # the engine's name and workers differ, nothing else
            a, b = (json.loads(x) for x in (a, b))
            assert {k: v for k, v in a.items() if k not in ("engine", "workers")} == \
                   {k: v for k, v in b.items() if k not in ("engine", "workers")}
        else:
            assert a == b, f
    links = [json.loads(x) for x in (tmp_path / "a" / "links.ndjson").read_text().splitlines()]
    assert len(links) == len({x["u"].split("://")[1] for x in links}) and all(x["k"] >= 3 for x in links)


def test_cli_webtext_refuses_a_foreign_folder_and_bad_options(crawl, tmp_path, capsys):
    from gpt2lib.cli import main

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's")
    with pytest.raises(SystemExit) as e:
        main(["webtext", str(crawl), "--out", str(mine)])
    assert e.value.code == 1 and "not empty" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "the user's"
    with pytest.raises(SystemExit) as e:
        main(["webtext", str(crawl), "--out", str(tmp_path / "x"), "--address", "tcp://h:8786"])
    assert e.value.code == 2 and "--address needs --engine dask" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["webtext", str(tmp_path / "missing"), "--out", str(tmp_path / "y")])
    assert e.value.code == 1 and "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


class _FailingTokenizer:
    """GPT-2's tokenizer whose batch encoding raises (a crash or Ctrl-C while the shards are made)."""

    def __init__(self, error: BaseException):
        from gpt2lib.tokenizer import get_gpt2_tokenizer

        self.tok, self.error = get_gpt2_tokenizer(), error

    def __getattr__(self, name):
        return getattr(self.tok, name)

    def encode_batch(self, texts):
        raise self.error


@pytest.mark.parametrize("option", [["--threshold", "1.5"], ["--val-fraction", "1.0"], ["--partitions", "-2"]])
def test_cli_webtext_checks_its_options_before_writing_anything(crawl, tmp_path, capsys, option):
    """Before, --threshold 1.5 or --partitions -2 failed only after links.ndjson was written (and
    --val-fraction 1.0 only in prepare, at the very end); the rerun was then refused for a folder "holding files
    this command did not write". Now the error names the option and nothing is written."""
    from gpt2lib.cli import main

    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        main(["webtext", str(crawl), "--out", str(out), *option])
    assert e.value.code == 2 and option[0] in capsys.readouterr().err  # a bad command line: exit status 2
    assert not out.exists()


@pytest.mark.parametrize("error", [KeyboardInterrupt(), RuntimeError("disk on fire")], ids=["ctrl-c", "exception"])
def test_interrupted_webtext_takes_back_its_files_and_the_same_command_reruns(crawl, tmp_path, error):
    from gpt2lib.webtext import build_webtext

    out = tmp_path / "out"
    with pytest.raises(type(error)):  # links.ndjson is written, then the tokenizer fails
        build_webtext(crawl, out, tokenizer=_FailingTokenizer(error), log=lambda m: None)
    assert not out.exists()
    out.mkdir()  # an empty folder the user made stays after a failure
    with pytest.raises(type(error)):
        build_webtext(crawl, out, tokenizer=_FailingTokenizer(error), log=lambda m: None)
    assert out.is_dir() and list(out.iterdir()) == []
    result = build_webtext(crawl, out, log=lambda m: None)
    assert (out / "links.ndjson").is_file() and result["shards"]["train"]["documents"] > 0
