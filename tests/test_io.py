"""Atomic writes (gpt2lib._io): a failed write leaves the old file exactly as it was, and no debris; a JSON-object
file that is anything else is one error naming the file and what is wrong."""
from __future__ import annotations

import json

import pytest

from gpt2lib._io import atomic_path, atomic_write_bytes, atomic_write_text, read_json_object


def test_a_write_replaces_the_file_whole(tmp_path):
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")
    atomic_write_text(target, "new é")
    assert target.read_text(encoding="utf-8") == "new é"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_an_error_mid_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half-writ")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


class _Custom(Exception):
    pass


@pytest.mark.parametrize("raw, problem", [(b"{oops", "is not valid JSON"), (b"\xff\xfe{}", "is not valid JSON"),
                                          (b"[1, 2]", "holds a JSON list, not an object"),
                                          (b"null", "holds a JSON NoneType, not an object"),
                                          (b'"text"', "holds a JSON str, not an object")])
def test_read_json_object_names_the_file_and_the_problem(tmp_path, raw, problem):
    path = tmp_path / "f.json"
    path.write_bytes(raw)
    with pytest.raises(ValueError) as info:
        read_json_object(path)
    assert str(info.value).startswith(f"{path} {problem}") and "\n" not in str(info.value)
    with pytest.raises(_Custom, match="; do this$"):
        read_json_object(path, error=_Custom, hint="do this")


def test_read_json_object_returns_the_object_and_a_missing_file_is_the_os_error(tmp_path):
    value = {"a": [1, 2.5, None], "é": {"b": True}}
    (tmp_path / "f.json").write_text(json.dumps(value), encoding="utf-8")
    assert read_json_object(tmp_path / "f.json") == value
    with pytest.raises(FileNotFoundError, match="gone.json"):
        read_json_object(tmp_path / "gone.json")
