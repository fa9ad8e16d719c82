"""Trials as Ray tasks: one GPU each when the cluster has GPUs, retried after a worker crash.

``get_executor("ray", address="auto", num_gpus=None, max_retries=3, storage="/mnt/shared/c2bridge")``.

Crash recovery: a task whose worker dies (killed, OOM, node lost) is re-run by Ray with the same trial, which
carries ``resume=True``; the trial function resumes from the last checkpoint in ``run_dir`` (the trainer does when
one exists). An exception inside the trial is not retried: it becomes a ``failed`` result like everywhere else.
Every node must see ``run_dir`` at the same path: pass ``storage`` (a shared filesystem mounted on all nodes) to
have that checked before anything is submitted.
"""
from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import Iterable, Iterator

from c2bridge.experiments.executors import TrialFn, run_guarded


def import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError("the ray executor needs Ray: pip install 'c2bridge[ray]' (ray[default]>=2.9)") from None
    return ray


def _ray_trial(fn: TrialFn, trial: dict) -> dict:
    return run_guarded(fn, trial)


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, num_gpus: float | None = None, num_cpus: float = 1,
                 max_retries: int = 3, storage: str | None = None, init_kwargs: dict | None = None) -> None:
        """``address``: an existing cluster ("auto", "ray://host:10001"); None starts a local Ray.
        ``num_gpus``: GPUs per trial; None = 1 if the cluster has any GPU, else 0.
        ``max_retries``: re-runs of a trial whose worker crashed. ``storage``: shared path every node mounts
        (default ``$C2BRIDGE_RAY_STORAGE``). Ray itself reads ``$RAY_ADDRESS`` when ``address`` is None."""
        import_ray()  # fail here, once, with the install hint
        if int(max_retries) < 0:
            raise ValueError(f"ray executor: max_retries must be >= 0, got {max_retries}")
        self.address = address
        self.num_gpus = num_gpus
        self.num_cpus = num_cpus
        self.max_retries = int(max_retries)
        storage = storage or os.environ.get("C2BRIDGE_RAY_STORAGE")  # `c2bridge run --executor ray` passes no options
        self.storage = Path(storage).resolve() if storage else None
        self.init_kwargs = dict(init_kwargs or {})

    def _check_storage(self, trials: list[dict]) -> None:
        if self.storage is None:
            return
        for trial in trials:
            run_dir = Path(trial["run_dir"]).resolve()
            if self.storage not in run_dir.parents and run_dir != self.storage:
                raise ValueError(f"ray executor: trial run_dir {run_dir} is not under the shared storage path "
                                 f"{self.storage}; expected the study's --out under {self.storage}")

    def run(self, fn: TrialFn, trials: Iterable[dict]) -> Iterator[dict]:
        ray = import_ray()
        trials = list(trials)
        self._check_storage(trials)
        if not trials:
            return
        started_here = False
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, **self.init_kwargs)
            except ConnectionError as exc:
                raise ValueError(f"ray executor: cannot connect to the Ray cluster at {self.address!r}: {exc}") from None
            started_here = True
        try:
            gpus = self.num_gpus
            if gpus is None:
                gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
            task = ray.remote(num_cpus=self.num_cpus, num_gpus=gpus, max_retries=self.max_retries,
                              retry_exceptions=False)(_ray_trial)
            pending = {task.remote(fn, {**trial, "resume": True}): trial for trial in trials}
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    trial = pending.pop(ref)
                    try:
                        yield ray.get(ref)
                    except Exception as exc:  # worker crashed more than max_retries times, or the task errored
                        yield {"key": trial.get("key"), "status": "failed",
                               "error": f"ray task failed after {self.max_retries} retries: {type(exc).__name__}: "
                                        f"{str(exc).splitlines()[0] if str(exc) else ''}",
                               "traceback": traceback.format_exc()}
        finally:
            if started_here:
                ray.shutdown()


def local_init_kwargs(num_cpus: int = 2) -> dict:
    """Settings for a small local Ray (tests, laptops): no dashboard, workers see this process's PYTHONPATH."""
    return {"num_cpus": num_cpus, "include_dashboard": False, "log_to_driver": False,
            "runtime_env": {"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}}}
