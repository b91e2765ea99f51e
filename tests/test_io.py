"""Atomic writes (gpt2lib._io): a failed write leaves the old file exactly as it was, and no debris."""
from __future__ import annotations

import pytest

from gpt2lib._io import atomic_path, atomic_write_bytes, atomic_write_text


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
