"""One writer per output folder: an advisory lock that ``train``, ``prepare`` and ``webtext`` take first.

Two commands writing into one folder interleave their logs, delete each other's checkpoints or take each
other's unfinished files for leftovers. So each of them holds ``<folder>/.gpt2lib-lock`` while it runs: a
file locked with ``fcntl.flock`` (the kernel releases the lock when its process ends, however it ends) that
holds the owner's PID, host, command and start time. A second writer fails at once with
:class:`FolderLockedError`, one line naming the running process. The file is removed on release; one left
behind by a killed process is *stale* (its flock is gone with the process) and is simply taken over.

A process may take the same folder's lock again (``train`` called by the command line that holds it): the
lock counts its holders. On platforms without ``fcntl`` (Windows) the lock is a no-op.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from gpt2lib.errors import GPT2LibError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_FILE", "FolderLockedError", "FolderLock", "output_lock", "locks_output", "lock_owner"]

LOCK_FILE = ".gpt2lib-lock"


class FolderLockedError(GPT2LibError, RuntimeError):
    """Another process holds the output folder's lock; ``owner`` is what it wrote into the lock file."""

    def __init__(self, folder: Path, command: str, owner: dict[str, Any]):
        who = (f"{owner.get('command', 'a gpt2lib command')} (PID {owner.get('pid', '?')} on "
               f"{owner.get('host', '?')}, since {owner.get('started', '?')})") if owner else "another process"
        super().__init__(f"{folder} is in use by {who}; {command} waits for no one: let that run finish, "
                         f"stop it, or choose another folder")
        self.folder, self.command, self.owner = folder, command, owner

    def __reduce__(self):
        return type(self), (self.folder, self.command, self.owner)


@dataclass
class FolderLock:
    """A held lock: the folder, the lock file, whether the lock created the folder, and what it took over."""

    folder: Path
    path: Path
    fd: int | None
    created: bool
    stale: dict[str, Any] | None = None
    holders: int = field(default=1)


_held: dict[str, FolderLock] = {}  # this process's locks, by resolved folder


def _read(fd: int) -> dict[str, Any]:
    try:
        data = os.pread(fd, 4096, 0)
        value = json.loads(data.decode("utf-8")) if data.strip() else {}
        return value if isinstance(value, dict) else {}
    except (OSError, ValueError):
        return {}


def lock_owner(folder: str | os.PathLike) -> dict[str, Any] | None:
    """What the lock file of ``folder`` says about its owner (None when there is no lock file)."""
    path = Path(folder) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return _read(fd)
    finally:
        os.close(fd)


def _acquire(folder: Path, command: str) -> FolderLock:
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} exists and is not a folder")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    if fcntl is None:
        return FolderLock(folder, path, None, created)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read(fd)
            os.close(fd)
            raise FolderLockedError(folder, command, owner) from None
        try:  # the previous owner may have removed the file between our open and our flock: lock the new one
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    stale = _read(fd) or None  # a file left by a process that was killed: its lock died with it
    record = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    if stale:
        print(f"{folder}: took over a stale lock of {stale.get('command', '?')} (PID {stale.get('pid', '?')} on "
              f"{stale.get('host', '?')}, no longer running)", file=sys.stderr, flush=True)
    return FolderLock(folder, path, fd, created, stale)


def _release(lock: FolderLock) -> None:
    if lock.fd is not None:
        with contextlib.suppress(OSError):
            lock.path.unlink()  # before the unlock, so a waiter that opened it sees a different file and retries
        os.close(lock.fd)
    if lock.created:  # the lock made the folder: leave no empty folder behind
        with contextlib.suppress(OSError):
            lock.folder.rmdir()


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike, command: str) -> Iterator[FolderLock]:
    """Hold ``folder``'s lock (creating the folder if needed) for the ``with`` block.

    Raises :class:`FolderLockedError` at once if another process holds it; ``NotADirectoryError`` if
    ``folder`` is a file. Re-entrant within one process."""
    folder = Path(folder)
    key = str(folder.resolve())
    lock = _held.get(key)
    if lock is not None:
        lock.holders += 1
    else:
        lock = _held[key] = _acquire(folder, command)
    try:
        yield lock
    finally:
        lock.holders -= 1
        if lock.holders == 0:
            del _held[key]
            _release(lock)


def locks_output(command: str, folder_of: str | Callable[..., Any]) -> Callable:
    """Decorator: hold the lock of an output folder while the function runs. ``folder_of`` is the name of the
    function's argument that holds the folder, or a function of the arguments returning it. No lock is taken
    when it gives no usable path (an invalid setting, which the function itself reports) or on a distributed
    rank other than 0 (which writes nothing)."""
    def wrap(fn: Callable) -> Callable:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                if isinstance(folder_of, str):
                    folder = signature.bind(*args, **kwargs).arguments.get(folder_of)
                else:
                    folder = folder_of(*args, **kwargs)
            except (AttributeError, IndexError, KeyError, TypeError):
                folder = None
            if not isinstance(folder, (str, os.PathLike)) or str(folder) == "" or \
                    int(os.environ.get("RANK", "0") or 0) != 0:
                return fn(*args, **kwargs)
            with output_lock(folder, command):
                return fn(*args, **kwargs)
        return run
    return wrap
