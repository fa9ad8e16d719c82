"""A local process pool: trials in parallel on this machine, one process each (spawn, so CUDA and threads are
safe in the children). ``fn`` and the trials must be picklable (a module-level function)."""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import traceback
from typing import Iterable, Iterator

from c2bridge.experiments.executors import TrialFn, run_guarded


def _trial_in_child(fn: TrialFn, trial: dict) -> dict:
    return run_guarded(fn, trial)


class PoolExecutor:
    """``get_executor("pool", workers=4)``: up to ``workers`` trials at once (default: CPU count, at most 4)."""

    name = "pool"

    def __init__(self, workers: int | None = None) -> None:
        if workers is not None and int(workers) < 1:
            raise ValueError(f"pool executor: workers must be >= 1, got {workers}")
        self.workers = int(workers) if workers else max(1, min(4, os.cpu_count() or 1))

    def run(self, fn: TrialFn, trials: Iterable[dict]) -> Iterator[dict]:
        trials = list(trials)
        if not trials:
            return
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=min(self.workers, len(trials)), mp_context=ctx) as pool:
            futures = {pool.submit(_trial_in_child, fn, trial): trial for trial in trials}
            for future in concurrent.futures.as_completed(futures):
                trial = futures[future]
                try:
                    yield future.result()
                except Exception as exc:  # the child died (killed, OOM) or the result could not be pickled
                    yield {"key": trial.get("key"), "status": "failed",
                           "error": f"pool worker lost: {type(exc).__name__}: {exc}",
                           "traceback": traceback.format_exc()}
