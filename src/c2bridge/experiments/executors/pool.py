"""A local process pool: trials in parallel on this machine, one process each (spawn, so CUDA and threads are
safe in the children). ``fn`` and the trials must be picklable (a module-level function).

On a GPU machine every worker is pinned to one GPU (``CUDA_VISIBLE_DEVICES`` set in the worker before it touches
CUDA), so 8 GPUs run 8 trials at once, one per GPU, instead of 8 trials on ``cuda:0``.

Stopping: SIGTERM or SIGINT to the parent (alone, or to the whole process group, as Ctrl-C does) is forwarded to
the workers as SIGTERM; their trainers finish the step, checkpoint and return ``interrupted``; no new trial starts;
once the running ones are back, ``run`` raises :class:`c2bridge._signals.Terminated`. A second signal kills the
workers at once. Workers ignore SIGINT themselves (the parent decides) and exit when the parent dies.
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from typing import Iterable, Iterator, Sequence

from c2bridge import _signals
from c2bridge.experiments.executors import TrialFn, run_guarded

STOP_GRACE_S = 5.0  # after a stop signal: how long a busy worker may take to return before it is killed
_stopping = False  # in a worker: a stop signal arrived; trials not yet started are not started
_running = False  # in a worker: a trial is running (writing into its run dir)
_parent_pid: int | None = None


def _trial_in_child(fn: TrialFn, trial: dict) -> dict:
    global _stopping, _running
    if _stopping:
        return {"key": trial.get("key"), "status": "interrupted", "reason": "the study is stopping; not started"}
    _running = True
    try:
        result = run_guarded(fn, trial)
    finally:
        _running = False
        if _parent_pid is not None and os.getppid() != _parent_pid:  # nobody to report to: the trial has stopped
            os._exit(128 + signal.SIGTERM)
    if result.get("status") == "interrupted":
        _stopping = True
    return result


def _on_stop_in_worker(signum, frame) -> None:  # between trials (a trainer installs its own while it trains)
    global _stopping
    _stopping = True


def _pin_worker(slots, parent_pid: int | None = None, threads: int | None = None) -> None:
    """Pool initializer: take one GPU id from the queue (None: no GPU) and make it the only visible device; set the
    worker's torch intra-op threads (before torch is imported: OpenMP reads them once); stop signals are the
    parent's to decide (SIGINT ignored, SIGTERM = stop after this trial); exit with the parent."""
    global _parent_pid
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        if "torch" in sys.modules:  # imported by the parent's pickled state already: set it directly
            sys.modules["torch"].set_num_threads(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_stop_in_worker)
    if parent_pid is not None:
        _parent_pid = parent_pid
        _signals.exit_with_parent(parent_pid, busy=lambda: _running)
    gpu = slots.get()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)


class _ForwardStop:
    """In the parent's main thread while trials run: the first SIGTERM/SIGINT is forwarded to the workers as
    SIGTERM (they checkpoint and return); a second one kills them and raises Terminated."""

    def __init__(self, pool: concurrent.futures.ProcessPoolExecutor):
        self.pool, self.signum, self._previous = pool, None, {}
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}

    def _workers(self) -> list[int]:
        return [p.pid for p in list((getattr(self.pool, "_processes", None) or {}).values()) if p.is_alive()]

    def _handle(self, signum, frame) -> None:
        _signals.note(signum)
        first = self.signum is None
        self.signum = signum
        for pid in self._workers():
            try:
                os.kill(pid, signal.SIGTERM if first else signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not first:
            raise _signals.Terminated(signum)

    def restore(self) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous = {}


def visible_gpus() -> list[str]:
    """The GPU ids workers can be pinned to: the parent's CUDA_VISIBLE_DEVICES entries if set, else 0..n-1."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    except Exception:  # no usable CUDA runtime: CPU workers
        return []


def _parse_gpus(gpus) -> list[str] | None:
    if gpus is None:
        return None
    if isinstance(gpus, str):
        gpus = [g for g in gpus.replace(" ", "").split(",") if g] if gpus.lower() != "none" else []
    return [str(g) for g in gpus]


class PoolExecutor:
    """``get_executor("pool", workers=4, gpus="0,1", threads=1, persistent=True)``: up to ``workers`` trials at once.

    ``gpus``: ids to pin workers to, round-robin (default: every visible GPU; "none": no pinning). ``workers``
    defaults to the number of GPUs when there are any, else the CPU count (at most 4). ``threads``: torch intra-op
    threads per worker (default: the CPU count / workers, at least 1: one each with two workers on two cores, so
    the workers never oversubscribe the cores). ``persistent``: keep the worker processes (and the models they
    loaded) from one ``run`` to the next until ``close()`` -- one pool for a whole ``c2bridge run``, instead of
    re-importing torch and diffusers in fresh workers for every experiment; ``false`` starts a pool per ``run``.
    """

    name = "pool"
    concurrent = True  # trials run in other processes: the study may schedule them as a graph

    def __init__(self, workers: int | str | None = None, gpus: Sequence[str] | str | None = None,
                 threads: int | None = None, persistent: bool = True) -> None:
        if workers is not None and int(workers) < 1:
            raise ValueError(f"pool executor: workers must be >= 1, got {workers}")
        if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
            raise ValueError(f"pool executor: threads must be >= 1, got {threads}")
        self.gpus = visible_gpus() if gpus is None else _parse_gpus(gpus)
        default = len(self.gpus) if self.gpus else max(1, min(4, os.cpu_count() or 1))
        self.workers = int(workers) if workers else default
        self.threads = int(threads) if threads else max(1, (os.cpu_count() or 1) // self.workers)
        self.persistent = bool(persistent)
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._stop: _ForwardStop | None = None
        self._lock = threading.Lock()  # runs from several threads (a study's graph) share one pool

    # --- the worker processes ------------------------------------------------------------------------------
    def open(self) -> concurrent.futures.ProcessPoolExecutor:
        """Start the worker processes (once; a pool broken by a dead worker is replaced). Called from the main
        thread, it also forwards stop signals to the workers until ``close()``."""
        with self._lock:
            if self._pool is not None and getattr(self._pool, "_broken", False):
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
            if self._pool is None:
                ctx = multiprocessing.get_context("spawn")
                slots = ctx.Queue()
                for i in range(self.workers):  # one slot per worker process, handed out as each worker starts
                    slots.put(self.gpus[i % len(self.gpus)] if self.gpus else None)
                self._pool = concurrent.futures.ProcessPoolExecutor(
                    max_workers=self.workers, mp_context=ctx, initializer=_pin_worker,
                    initargs=(slots, os.getpid(), self.threads))
                if self._stop is None or self._stop.signum is None:
                    if self._stop is not None:
                        self._stop.restore()
                    self._stop = _ForwardStop(self._pool)
                else:
                    self._stop.pool = self._pool
            return self._pool

    def close(self) -> None:
        """Stop the worker processes. Between runs they hold no trial; after a stop signal, a worker still busy
        after ``STOP_GRACE_S`` (a sampled evaluation does not stop mid-way; training checkpoints within a step)
        is killed: its trial has no record yet, so the next run redoes what was left (from its checkpoint)."""
        with self._lock:
            pool, self._pool = self._pool, None
            stopped = self._stop is not None and self._stop.signum is not None
            if self._stop is not None:
                self._stop.restore()
                self._stop = None
        if pool is None:
            return
        if not stopped:
            pool.shutdown(wait=True, cancel_futures=True)
            return
        workers = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in workers:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in workers:
            if proc.is_alive():
                proc.kill()
                proc.join(5.0)

    def __enter__(self) -> "PoolExecutor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- trials ----------------------------------------------------------------------------------------------
    def run(self, fn: TrialFn, trials: Iterable[dict]) -> Iterator[dict]:
        trials = list(trials)
        if not trials:
            return
        pool = self.open()
        stop = self._stop
        n = min(self.workers, len(trials))
        queue = iter(trials)
        try:
            in_flight: dict = {}

            def submit_next() -> None:  # at most one trial per worker in flight: a stop leaves none queued
                trial = next(queue, None) if stop.signum is None else None
                if trial is not None:
                    try:
                        in_flight[pool.submit(_trial_in_child, fn, trial)] = trial
                    except concurrent.futures.process.BrokenProcessPool as exc:  # a worker of this pool died
                        in_flight[_failed_future(exc)] = trial

            for _ in range(n):
                submit_next()
            given_up_at = None  # after a stop: when trials still running are given up (their workers killed)
            while in_flight:
                if stop.signum is not None and given_up_at is None:
                    given_up_at = time.monotonic() + STOP_GRACE_S
                timeout = 0.5 if given_up_at is None else max(0.0, given_up_at - time.monotonic())
                done, _ = concurrent.futures.wait(in_flight, timeout=timeout,  # wakes to notice a stop
                                                  return_when=concurrent.futures.FIRST_COMPLETED)
                if not done and given_up_at is not None and time.monotonic() >= given_up_at:
                    for trial in in_flight.values():  # e.g. a sampled evaluation: close() stops its worker
                        yield {"key": trial.get("key"), "status": "interrupted",
                               "reason": f"{_signals.signal_name(stop.signum)}: still running {STOP_GRACE_S:g} s "
                                         "after the stop; its worker is stopped and the next run redoes it"}
                    in_flight.clear()
                    break
                for future in done:
                    trial = in_flight.pop(future)
                    try:
                        result = future.result()
                    except Exception as exc:  # the child died (killed, OOM) or the result could not be pickled
                        if stop.signum is not None:  # killed by the stop itself: not a failure of the trial
                            result = {"key": trial.get("key"), "status": "interrupted",
                                      "reason": f"{_signals.signal_name(stop.signum)}: worker stopped"}
                        else:
                            result = {"key": trial.get("key"), "status": "failed",
                                      "error": f"pool worker lost: {type(exc).__name__}: {exc}",
                                      "traceback": traceback.format_exc()}
                    yield result
                    if getattr(pool, "_broken", False) and stop.signum is None:  # the next ones get a new pool
                        pool = self.open()
                    submit_next()
            if stop.signum is not None:
                signum = stop.signum
                self.close()  # the study is stopping: no worker outlives it (busy ones are stopped after the grace)
                raise _signals.Terminated(signum)
        finally:
            if not self.persistent:
                self.close()


def _failed_future(exc: Exception) -> concurrent.futures.Future:
    future: concurrent.futures.Future = concurrent.futures.Future()
    future.set_exception(exc)
    return future
