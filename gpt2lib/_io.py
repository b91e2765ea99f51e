"""Atomic file writes, shared by every module that saves something, and the readers of a JSON-object
file and of JSON lines.

A reader, a crash or a ``kill -9`` never sees a half-written file: the data goes to a temporary file
beside the target, which is flushed to disk (fsync) and then renamed over the target in one step
(``os.replace`` is atomic on POSIX and Windows); the folder is fsync'ed so the rename survives a
power loss. On any error the temporary file is removed and the old file is left as it was.

A process killed (``kill -9``, power loss) in the middle of a write cannot remove its temporary file;
the next write of the same target removes such leftovers: only names of the form
``.<target>.<pid>.<8 hex>.tmp`` whose process no longer runs on this machine.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

__all__ = ["read_json_object", "json_lines", "normal_mode", "atomic_path", "atomic_write_bytes", "atomic_write_text",
           "fsync_file", "fsync_dir", "pid_alive", "remove_stale_temporaries"]

_TEMP = re.compile(r"\.(?P<target>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp")


def normal_mode(path: str | os.PathLike) -> None:
    """Give a file the mode an ordinary ``open()`` would (0666 less the umask): safetensors writes 0600, which
    another account (a shared model folder, a web server) cannot read."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a written file's data to disk."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename inside it) to disk; a no-op where folders can't be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (True when that cannot be told, e.g. on Windows)."""
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there
        return True
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike, targets: set[str] | None = None) -> list[Path]:
    """Remove the temporary files that :func:`atomic_path` left in ``folder`` when its process was killed
    (only ``targets``' if given, never one of a process still running). Returns what was removed."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _TEMP.fullmatch(p.name)
        if m and (targets is None or m["target"] in targets) and not pid_alive(int(m["pid"])) and p.is_file():
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; when the block ends without an error it
    is fsync'ed and renamed over ``path``. The name is unique per call, so two processes writing
    the same file never mix their bytes: the last rename wins, with a complete file."""
    path = Path(path)
    remove_stale_temporaries(path.parent, {path.name})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_json_object(path: str | os.PathLike, *, error: type[Exception] = ValueError,
                     not_json: str = "is not valid JSON", hint: str = "") -> dict[str, Any]:
    """The JSON object that the file ``path`` holds; a file that is not UTF-8 JSON, or JSON that is not an
    object, is one ``error`` naming the file and what is wrong (``"<path> <not_json> (why)"`` or ``"<path>
    holds a JSON list, not an object"``, then ``"; <hint>"`` if given). A missing or unreadable file raises
    the ``OSError`` (which names it) unchanged."""
    path = Path(path)
    then = f"; {hint}" if hint else ""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{path} {not_json} ({e}){then}") from None
    if not isinstance(value, dict):
        raise error(f"{path} holds a JSON {type(value).__name__}, not an object{then}")
    return value


def json_lines(lines: Iterable[str], where: str,
               required: Sequence[str] | Mapping[str, type] = ()) -> Iterator[dict[str, Any]]:
    """The JSON objects of the lines of a ``.jsonl`` text, ``where`` naming it in errors. Blank lines are skipped;
    a line that is not a JSON object, lacks a ``required`` key or (``required`` a mapping key -> type) holds a
    value of another type raises ``ValueError`` naming ``where`` and the line number."""
    types = required if isinstance(required, Mapping) else dict.fromkeys(required, object)
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        at = f"{where}, line {lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{at}: not JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{at}: expected a JSON object, got {type(obj).__name__} {line.strip()[:40]!r}")
        missing = [k for k in types if k not in obj]
        if missing:
            raise ValueError(f"{at}: missing key(s) {missing}")
        if not all(isinstance(obj[k], t) for k, t in types.items()):
            want = ", ".join(f"a {t.__name__} {k!r}" for k, t in types.items() if t is not object)
            raise ValueError(f"{at}: expected a JSON object with {want}, got {type(obj).__name__} "
                             f"{line.strip()[:40]!r}")
        yield obj
