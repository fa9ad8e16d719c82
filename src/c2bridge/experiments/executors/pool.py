"""A local process pool: trials in parallel on this machine, one process each (spawn, so CUDA and threads are
safe in the children). ``fn`` and the trials must be picklable (a module-level function).

On a GPU machine every worker is pinned to one GPU (``CUDA_VISIBLE_DEVICES`` set in the worker before it touches
CUDA), so 8 GPUs run 8 trials at once, one per GPU, instead of 8 trials on ``cuda:0``.
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import traceback
from typing import Iterable, Iterator, Sequence

from c2bridge.experiments.executors import TrialFn, run_guarded


def _trial_in_child(fn: TrialFn, trial: dict) -> dict:
    return run_guarded(fn, trial)


def _pin_worker(slots) -> None:
    """Pool initializer: take one GPU id from the queue (None: no GPU) and make it the only visible device."""
    gpu = slots.get()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)


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
    """``get_executor("pool", workers=4, gpus="0,1")``: up to ``workers`` trials at once.

    ``gpus``: ids to pin workers to, round-robin (default: every visible GPU; "none": no pinning). ``workers``
    defaults to the number of GPUs when there are any, else the CPU count (at most 4).
    """

    name = "pool"

    def __init__(self, workers: int | str | None = None, gpus: Sequence[str] | str | None = None) -> None:
        if workers is not None and int(workers) < 1:
            raise ValueError(f"pool executor: workers must be >= 1, got {workers}")
        self.gpus = visible_gpus() if gpus is None else _parse_gpus(gpus)
        default = len(self.gpus) if self.gpus else max(1, min(4, os.cpu_count() or 1))
        self.workers = int(workers) if workers else default

    def run(self, fn: TrialFn, trials: Iterable[dict]) -> Iterator[dict]:
        trials = list(trials)
        if not trials:
            return
        ctx = multiprocessing.get_context("spawn")
        n = min(self.workers, len(trials))
        slots = ctx.Queue()
        for i in range(n):  # one slot per worker process, handed out as each worker starts
            slots.put(self.gpus[i % len(self.gpus)] if self.gpus else None)
        with concurrent.futures.ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_pin_worker,
                                                    initargs=(slots,)) as pool:
            futures = {pool.submit(_trial_in_child, fn, trial): trial for trial in trials}
            for future in concurrent.futures.as_completed(futures):
                trial = futures[future]
                try:
                    yield future.result()
                except Exception as exc:  # the child died (killed, OOM) or the result could not be pickled
                    yield {"key": trial.get("key"), "status": "failed",
                           "error": f"pool worker lost: {type(exc).__name__}: {exc}",
                           "traceback": traceback.format_exc()}
