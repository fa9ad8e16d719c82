"""One writer per directory: ``with DirectoryLock(run_dir, "c2bridge run"): ...``.

An advisory ``flock`` on ``DIR/.c2bridge.lock``, which also records the holder (pid, host, command, start time).
The kernel drops the lock when its holder dies however it dies, so a lock left by a killed run is simply taken
over (with a note naming the dead holder); a live holder makes the second writer fail at once, naming it.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Callable

LOCK_FILE = ".c2bridge.lock"


class DirectoryBusy(ValueError):
    """Another live process holds the directory's lock."""


def _holder_line(info: dict) -> str:
    if not info:
        return "another process"
    started = info.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    return (f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started {when}"
            + (f": {info['command']}" if info.get("command") else ""))


class DirectoryLock:
    """Exclusive lock on ``directory`` for the life of the ``with`` block (created if missing).

    ``DirectoryBusy`` (a ValueError: the CLI prints it as one line) when a live process holds it; ``note``
    receives one line when a stale lock of a dead holder is taken over."""

    def __init__(self, directory: str | os.PathLike, what: str = "c2bridge", note: Callable[[str], None] | None = None):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self.what = what
        self.note = note or (lambda line: print(line, file=sys.stderr, flush=True))
        self._fd: int | None = None
        self._created = False

    def read_holder(self) -> dict:
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    def acquire(self) -> "DirectoryLock":
        import fcntl

        if self.directory.exists() and not self.directory.is_dir():
            raise ValueError(f"{self.directory} exists and is not a directory")
        self._created = not self.directory.exists()
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DirectoryBusy(f"{self.directory} is in use by another {self.what} ({_holder_line(self.read_holder())}); "
                                "wait for it to finish, stop it, or use another directory") from None
        except BaseException:
            os.close(fd)
            raise
        previous = self.read_holder()
        if previous.get("pid"):  # a clean release empties the file: this holder died holding it
            self.note(f"{self.what}: taking over the lock of {self.directory} left by a run that is no longer running "
                      f"({_holder_line(previous)})")
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                "command": " ".join(sys.argv) if sys.argv and sys.argv[0] else None}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info, sort_keys=True) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # empty = released cleanly (the file stays: unlinking races other openers)
        finally:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> "DirectoryLock":
        return self.acquire()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.release()
        if exc_type is not None and self._created:  # refused before writing anything: leave no half-made dir
            try:
                self.path.unlink(missing_ok=True)
                self.directory.rmdir()  # only if nothing else was written
            except OSError:
                pass
