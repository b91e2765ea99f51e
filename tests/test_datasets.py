"""gpt2lib.datasets: named files, sha256-checked, from a mirror or an atomic download. Offline only."""
from __future__ import annotations

import csv
import hashlib
import io
import shutil
from pathlib import Path

import pytest

from gpt2lib import datasets
from gpt2lib.datasets import ChecksumError, download, info, list_datasets, read_text


def _manifest(mirror: Path) -> dict[str, dict]:
    with open(mirror / "MANIFEST.tsv", newline="") as f:
        return {r["file"]: r for r in csv.DictReader(f, delimiter="\t")}


def test_registry_matches_the_mirror_manifest(data_mirror):
    """Every registered file has the MANIFEST's size and sha256, and every mirror file (except tiktoken's
    cache entries, which live outside the mirror) is registered exactly once.

    Entries marked ``in_mirror=False`` (Table 3 files too large for the mirror) are the only ones the
    mirror may lack; if a mirror does hold one, it must match too."""
    manifest = _manifest(data_mirror)
    by_path = {d.path: d for d in datasets.DATASETS.values()}
    assert len(by_path) == len(datasets.DATASETS)
    in_mirror = {p for p, d in by_path.items() if d.in_mirror}
    assert in_mirror == {p for p in manifest if not p.startswith("../")}
    for path, d in by_path.items():
        if path in manifest:
            assert (d.size, d.sha256) == (int(manifest[path]["bytes"]), manifest[path]["sha256"]), path
        else:
            assert not d.in_mirror and d.checksum_note, path
        assert d.url.startswith(("https://", "http://")) and d.license


def test_book_datasets_are_registered():
    """The names the chapters use exist, and the 181 HTML pages form one group."""
    names = set(list_datasets())
    for n in ["tiny-shakespeare", "webtext-sample", "webtext-top1000-domains", "wikitext-2-valid",
              "wikitext-2-test", "ptb-test", "lambada-test", "nq-open-dev", "wsc", "wmt14-en-fr-src",
              "wmt14-en-fr-ref", "wmt14-fr-en-src", "wmt14-fr-en-ref", "reddit-links-2005-12",
              "reddit-links-2006-12", "html-extraction-ground-truth", "html-pages", "gpt2-encoder-json",
              "gpt2-vocab-bpe", "r50k-base-tiktoken", "one-billion-word-test", "cnn-dailymail-test-urls",
              "cnn-dailymail-articles"]:
        assert n in names
    assert len(datasets.GROUPS["html-pages"]) == 181
    assert len(datasets.GROUPS["cnn-dailymail-articles"]) == 250


def test_mirror_files_are_used_in_place_and_verified(data_mirror):
    """With GPT2LIB_DATA_MIRROR set, download returns the mirror's own file, whose bytes hash to the registry's."""
    path = download("tiny-shakespeare", progress=False)
    assert path == data_mirror / "tinyshakespeare" / "input.txt"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == info("tiny-shakespeare").sha256


def test_read_text_is_exact_and_decompresses_gzip(data_mirror):
    """read_text gives the file's exact characters (line ends kept) and gunzips .gz files."""
    import gzip

    assert read_text("tiny-shakespeare") == (data_mirror / "tinyshakespeare/input.txt").read_bytes().decode()
    raw = gzip.decompress((data_mirror / "reddit_links/RS_v2_2005-12.urk.json-00.gz").read_bytes()).decode()
    assert read_text("reddit-links-2005-12") == raw


def test_group_download_returns_the_pages_folder(data_mirror):
    """download("html-pages") returns the folder that holds all 181 pages."""
    folder = download("html-pages", progress=False)
    assert folder == data_mirror / "html_extraction" / "html"
    assert len(list(folder.glob("*.html.gz"))) == 181


def _small_mirror(tmp_path: Path, data_mirror: Path, rel: str) -> Path:
    mirror = tmp_path / "mirror"
    (mirror / rel).parent.mkdir(parents=True)
    shutil.copyfile(data_mirror / rel, mirror / rel)
    return mirror


def test_corrupted_mirror_file_raises_checksum_error(tmp_path, data_mirror, monkeypatch):
    """A mirror file with one flipped byte is refused with ChecksumError, and the mirror is not modified."""
    mirror = _small_mirror(tmp_path, data_mirror, "webtext/gpt2_webtext_top1000_domains.txt")
    f = mirror / "webtext/gpt2_webtext_top1000_domains.txt"
    data = bytearray(f.read_bytes())
    data[100] ^= 1
    f.write_bytes(bytes(data))
    monkeypatch.setenv("GPT2LIB_DATA_MIRROR", str(mirror))
    with pytest.raises(ChecksumError, match="webtext-top1000-domains"):
        download("webtext-top1000-domains", progress=False)
    assert f.read_bytes() == bytes(data)


def test_file_missing_from_mirror_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("GPT2LIB_DATA_MIRROR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="ptb-test"):
        download("ptb-test", progress=False)


class _FakeResponse(io.BytesIO):
    """A urlopen response that serves ``data`` and optionally fails after ``fail_after`` bytes."""

    def __init__(self, data: bytes, fail_after: int | None = None):
        super().__init__(data)
        self.fail_after = fail_after

    def read(self, n=-1):
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise ConnectionResetError("connection dropped mid-stream")
        return super().read(n if self.fail_after is None else min(n, self.fail_after - self.tell()))


def _offline(monkeypatch, tmp_path, response_factory):
    monkeypatch.delenv("GPT2LIB_DATA_MIRROR", raising=False)
    calls = []

    def fake_urlopen(req, timeout=None):
        calls.append(req.full_url)
        return response_factory()

    monkeypatch.setattr(datasets, "urlopen", fake_urlopen)
    monkeypatch.setattr(datasets, "_sleep", lambda seconds: None)
    return tmp_path / "cache", calls


def test_download_from_url_writes_verified_file_then_uses_cache(tmp_path, data_mirror, monkeypatch):
    """Without a mirror the file is fetched from its URL into the cache once; the second call reads the cache."""
    good = (data_mirror / "wsc/WSCollection.xml").read_bytes()
    cache, calls = _offline(monkeypatch, tmp_path, lambda: _FakeResponse(good))
    path = download("wsc", cache_dir=cache, progress=False)
    assert path == cache / "data/wsc/WSCollection.xml" and path.read_bytes() == good
    assert calls == [info("wsc").url]
    assert download("wsc", cache_dir=cache, progress=False) == path and len(calls) == 1
    assert [p.name for p in path.parent.iterdir()] == ["WSCollection.xml"]  # no temporary files left


def test_cache_dir_defaults_to_env(tmp_path, data_mirror, monkeypatch):
    good = (data_mirror / "wsc/WSCollection.xml").read_bytes()
    _offline(monkeypatch, tmp_path, lambda: _FakeResponse(good))
    monkeypatch.setenv("GPT2LIB_CACHE", str(tmp_path / "envcache"))
    assert download("wsc", progress=False) == tmp_path / "envcache/data/wsc/WSCollection.xml"


def test_prefix_entries_keep_only_the_first_bytes(tmp_path, data_mirror, monkeypatch):
    """The WebText sample is the first 3,799,030 bytes of OpenAI's file: extra bytes from the server are not read."""
    good = (data_mirror / "webtext/webtext.train.first1408.jsonl").read_bytes()
    cache, _ = _offline(monkeypatch, tmp_path, lambda: _FakeResponse(good + b'{"id": 1408, "text": "more"}\n'))
    path = download("webtext-sample", cache_dir=cache, progress=False)
    assert path.read_bytes() == good


def test_checksum_mismatch_on_download_leaves_no_file(tmp_path, data_mirror, monkeypatch):
    """Wrong bytes from the server raise ChecksumError and nothing is written into the cache."""
    bad = bytearray((data_mirror / "wsc/WSCollection.xml").read_bytes())
    bad[0] ^= 1
    cache, _ = _offline(monkeypatch, tmp_path, lambda: _FakeResponse(bytes(bad)))
    with pytest.raises(ChecksumError, match="wsc"):
        download("wsc", cache_dir=cache, progress=False)
    assert not any(p.is_file() for p in cache.rglob("*"))


def test_interrupted_download_leaves_no_partial_file(tmp_path, data_mirror, monkeypatch):
    """A connection that drops mid-stream propagates its error and leaves no partial or temporary file."""
    good = (data_mirror / "wsc/WSCollection.xml").read_bytes()
    cache, _ = _offline(monkeypatch, tmp_path, lambda: _FakeResponse(good, fail_after=len(good) // 2))
    with pytest.raises(datasets.DownloadError, match="wsc.*connection dropped") as e:
        download("wsc", cache_dir=cache, progress=False)
    assert isinstance(e.value.__cause__, ConnectionResetError)
    assert not any(p.is_file() for p in cache.rglob("*"))


def test_corrupted_cache_file_is_fetched_again(tmp_path, data_mirror, monkeypatch):
    """A cached file whose hash no longer matches is never returned: it is replaced by a fresh download."""
    good = (data_mirror / "wsc/WSCollection.xml").read_bytes()
    cache, calls = _offline(monkeypatch, tmp_path, lambda: _FakeResponse(good))
    dest = cache / "data/wsc/WSCollection.xml"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"x" * len(good))
    assert download("wsc", cache_dir=cache, progress=False).read_bytes() == good
    assert len(calls) == 1


def test_unknown_name_lists_close_matches():
    """A typo raises KeyError that suggests the registered name."""
    with pytest.raises(KeyError, match="tiny-shakespeare"):
        download("tiny-shakspeare")
    with pytest.raises(KeyError, match="unknown dataset"):
        info("no-such-thing-at-all")


def test_table3_files_outside_the_mirror_are_registered_with_canonical_urls():
    """CBT, WikiText-103, enwik8 and text8: canonical URL, pinned size; sha256 where published (CBTest.tgz)."""
    off = datasets.OFF_MIRROR
    assert set(off) == {"cbt", "wikitext-103", "enwik8", "text8", "coqa-dev"}  # coqa-dev: tests/test_coqa.py
    assert (off["cbt"].size, off["cbt"].sha256) == (
        120_547_669, "932df0cadc1337b2a12b4c696b1041c1d1c6d4b6bd319874c6288f02e4a61e92")
    assert off["enwik8"].url == "http://mattmahoney.net/dc/enwik8.zip" and off["text8"].url.endswith("/dc/text8.zip")
    assert off["wikitext-103"].url.endswith("/wikitext/wikitext-103-v1.zip")
    for d in off.values():
        assert not d.in_mirror and d.size > 0 and ("no sha256" in d.checksum_note) == (not d.sha256)
        assert d.name in list_datasets()


def test_off_mirror_file_comes_from_the_url_even_with_a_mirror_set(tmp_path, monkeypatch):
    """With GPT2LIB_DATA_MIRROR set, an in_mirror=False entry the mirror lacks is fetched into the cache
    (the mirror is not expected to hold it); an entry without sha256 is checked by its pinned size."""
    import dataclasses

    good = b"x" * 1000
    entry = dataclasses.replace(datasets.OFF_MIRROR["text8"], size=len(good))
    monkeypatch.setitem(datasets.DATASETS, "text8", entry)
    cache, calls = _offline(monkeypatch, tmp_path, lambda: _FakeResponse(good))
    monkeypatch.setenv("GPT2LIB_DATA_MIRROR", str(tmp_path / "mirror"))
    path = download("text8", cache_dir=cache, progress=False)
    assert path == cache / "data/text8/text8.zip" and path.read_bytes() == good and len(calls) == 1
    monkeypatch.setitem(datasets.DATASETS, "text8", dataclasses.replace(entry, size=999))
    path.unlink()
    with pytest.raises(ChecksumError, match="999 bytes"):
        download("text8", cache_dir=cache, progress=False)
    assert not path.exists()


def test_read_member_reads_zip_and_tgz_members(tmp_path):
    import tarfile
    import zipfile

    with zipfile.ZipFile(tmp_path / "a.zip", "w") as z:
        z.writestr("wikitext-103/wiki.test.tokens", "hello")
    assert datasets.read_member(tmp_path / "a.zip", "wikitext-103/wiki.test.tokens") == b"hello"
    (tmp_path / "f.txt").write_text("bye")
    with tarfile.open(tmp_path / "b.tgz", "w:gz") as t:
        t.add(tmp_path / "f.txt", arcname="CBTest/data/f.txt")
    assert datasets.read_member(tmp_path / "b.tgz", "CBTest/data/f.txt") == b"bye"
    with pytest.raises(KeyError, match="CBTest/data/f.txt"):
        datasets.read_member(tmp_path / "b.tgz", "CBTest/data/missing.txt")


# --- retries with backoff (issue 23), against a real HTTP server on 127.0.0.1 ---------------------------------
class _FlakyServer:
    """Serves ``data`` at every path after answering the first requests with ``plan`` (HTTP status codes,
    or "drop": send half of the body, then close the connection)."""

    def __init__(self, data: bytes, plan: list):
        import http.server
        import threading

        self.plan, self.requests = list(plan), []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                step = server.plan.pop(0) if server.plan else 200
                if step == "drop":
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.send_response(step)
                if step == 429:
                    self.send_header("Retry-After", "7")
                body = data if step == 200 else b"busy"
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def flaky(tmp_path, data_mirror, monkeypatch):
    """``start(plan)`` points the "wsc" entry at a fresh flaky server; sleeps are recorded, not slept."""
    import dataclasses

    good = (data_mirror / "wsc/WSCollection.xml").read_bytes()
    monkeypatch.delenv("GPT2LIB_DATA_MIRROR", raising=False)
    waits: list[float] = []
    monkeypatch.setattr(datasets, "_sleep", waits.append)
    servers = []

    def start(plan):
        server = _FlakyServer(good, plan)
        servers.append(server)
        monkeypatch.setitem(datasets.DATASETS, "wsc", dataclasses.replace(info("wsc"), url=server.url + "/wsc.xml"))
        return server

    yield start, waits, good, tmp_path / "cache"
    for server in servers:
        server.close()


def test_throttled_and_dropped_downloads_are_retried_with_backoff(flaky, capsys):
    start, waits, good, cache = flaky
    server = start([503, 429, "drop", 502])
    path = download("wsc", cache_dir=cache, progress=False)
    assert path.read_bytes() == good and len(server.requests) == 5
    assert waits == [1, 7, 4, 8]  # doubling, or the server's Retry-After when longer
    err = capsys.readouterr().err
    assert err.count("gpt2lib: wsc: attempt") == 4 and "attempt 1 of 5 failed (HTTPError: HTTP Error 503" in err
    assert [p.name for p in path.parent.iterdir()] == ["WSCollection.xml"]  # no temporary files left


def test_a_missing_file_is_not_retried_and_giving_up_says_how_often(flaky):
    start, waits, _, cache = flaky
    server = start([404])
    with pytest.raises(datasets.DownloadError, match=r"wsc: could not download .*HTTP Error 404"):
        download("wsc", cache_dir=cache, progress=False)
    assert len(server.requests) == 1 and waits == []
    server = start([503] * (datasets.RETRIES + 1))
    with pytest.raises(datasets.DownloadError, match=rf"after {datasets.RETRIES + 1} attempts .*HTTP Error 503"):
        download("wsc", cache_dir=cache, progress=False)
    assert len(server.requests) == datasets.RETRIES + 1 and waits == [1, 2, 4, 8]
    assert not any(p.is_file() for p in cache.rglob("*"))


def test_a_group_says_which_of_its_files_is_being_fetched(flaky, monkeypatch, capsys):
    start, _, good, cache = flaky
    import dataclasses

    start([200, 503])  # the group's second file is throttled once
    copy = dataclasses.replace(info("wsc"), name="wsc-copy", path="wsc/copy.xml")
    monkeypatch.setitem(datasets.DATASETS, "wsc-copy", copy)
    monkeypatch.setitem(datasets.GROUPS, "two-files", ["wsc", "wsc-copy"])
    assert download("two-files", cache_dir=cache, progress=False) == cache / "data/wsc"
    assert "gpt2lib: wsc-copy (file 2 of 2 of two-files): attempt 1 of 5 failed" in capsys.readouterr().err
