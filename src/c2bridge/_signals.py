"""How c2bridge stops: SIGTERM and SIGINT (Ctrl-C) end a command with one line and exit 128 + the signal.

- Training handles both itself (``train.loop``): it finishes the step, checkpoints and returns ``interrupted``.
- Anywhere else in a CLI command, :func:`stop_signals_raise` turns SIGTERM into :class:`Terminated` (SIGINT is
  Python's ``KeyboardInterrupt``), which the CLI catches and reports in one line: atomic writes keep whatever
  was written intact.
- :func:`deferred`: a block that must finish once started (a shard and its manifest entry); a stop signal inside it
  takes effect right after it.
- :func:`noted` / :func:`exit_code`: the last stop signal this process received (the CLI's exit status).
- :func:`exit_with_parent`: a worker process (the pool executor's) stops when the process that started it dies,
  instead of living on as an orphan that writes into trial directories.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from typing import Callable, Iterator

_received: int | None = None


class Terminated(BaseException):
    """SIGTERM outside training (like KeyboardInterrupt for SIGINT: not an Exception, so nothing records it as a
    failure on the way up)."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def note(signum: int) -> None:
    """Record that this process was asked to stop by ``signum``."""
    global _received
    _received = int(signum)


def noted() -> int | None:
    return _received


def exit_code(default: int = signal.SIGTERM) -> int:
    """128 + the stop signal received (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + int(_received or default)


def signal_name(signum: int | None) -> str:
    return signal.Signals(signum).name if signum else "a signal"


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """While the block runs in the main thread: SIGTERM raises :class:`Terminated`, SIGINT ``KeyboardInterrupt``
    (both noted). Handlers installed inside the block (the trainer's) take precedence while they are installed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum, frame):
        note(signum)
        raise Terminated(signum)

    def on_int(signum, frame):
        note(signum)
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, h) for s, h in ((signal.SIGTERM, on_term), (signal.SIGINT, on_int))}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A block a stop signal must not cut in two (a shard and the manifest entry that lists it): SIGTERM / SIGINT
    arriving in the main thread inside it are held, and delivered to the handlers in place before it as soon as it
    ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: held.append(signum))
                for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if held:
            signal.raise_signal(held[0])


def exit_with_parent(parent_pid: int, busy: Callable[[], bool] = lambda: True, grace_s: float = 60.0,
                     poll_s: float = 0.5) -> threading.Thread:
    """Watch the parent from a daemon thread. Once it is gone: exit at once if ``busy()`` is false (nothing is being
    written), else SIGTERM this process (a trainer finishes its step, checkpoints and returns; the caller exits
    then) and exit hard if it is still alive ``grace_s`` later."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        if not busy():
            os._exit(128 + signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(128 + signal.SIGTERM)

    thread = threading.Thread(target=watch, name="c2bridge-parent-watch", daemon=True)
    thread.start()
    return thread
