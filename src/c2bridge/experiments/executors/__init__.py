"""Where trials run. A trial function is pure: ``fn(trial: dict) -> result: dict`` (config in, result out;
it writes only inside ``trial["run_dir"]``). Executors differ only in *where* ``fn`` runs.

Register new executors in ``EXECUTORS`` (the Ray and Modal ones import their extras lazily).
"""
from __future__ import annotations

import os
import traceback
from typing import Callable, Iterable, Iterator, Protocol

TrialFn = Callable[[dict], dict]


class Executor(Protocol):
    name: str
    threads: int | None  # torch intra-op threads of each trial (None: torch's default); in the trial key
    concurrent: bool  # True: trials run elsewhere, several at once (the study may schedule them as a graph)

    def run(self, fn: TrialFn, trials: list[dict]) -> Iterator[dict]:
        """Yield one result dict per trial (any order); each carries the trial's ``key``.

        A trial that raises yields ``{"key": ..., "status": "failed", "error": ...}``: one failure never stops the rest.
        """
        ...


def run_guarded(fn: TrialFn, trial: dict) -> dict:
    try:
        result = dict(fn(trial))
    except Exception as exc:  # recorded as data, the study goes on
        result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    result.setdefault("key", trial.get("key"))
    return result


def default_threads() -> int:
    """Intra-op threads of one trial that has the machine to itself: this process's torch setting if torch is
    loaded (every core by default), else ``OMP_NUM_THREADS`` or the CPU count. With OpenMP's passive wait policy
    (set by ``c2bridge run`` before torch loads) idle threads sleep instead of spinning, which is what made two
    threads look many times slower than one next to other busy processes."""
    import sys

    if "torch" in sys.modules:
        return int(sys.modules["torch"].get_num_threads())
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) >= 1 else max(1, os.cpu_count() or 1)


class LocalExecutor:
    """Serial, in this process: the default, and the reference the others must match. ``threads``: torch
    intra-op threads (default: every core, see ``default_threads``)."""

    name = "local"
    concurrent = False

    def __init__(self, threads: int | None = None) -> None:
        if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
            raise ValueError(f"local executor: threads must be >= 1, got {threads}")
        self.threads = int(threads) if threads else default_threads()

    def run(self, fn: TrialFn, trials: Iterable[dict]) -> Iterator[dict]:
        trials = list(trials)
        if trials:
            set_threads(self.threads)
        for trial in trials:
            yield run_guarded(fn, trial)


def set_threads(threads: int) -> None:
    """torch intra-op threads of this process (a no-op while torch is not imported: it then reads
    OMP_NUM_THREADS, set here too)."""
    import sys

    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))


def _lazy(module: str, attr: str) -> Callable[..., Executor]:
    """A factory that imports ``module`` only when the executor is chosen (its extra may not be installed)."""

    def factory(**options) -> Executor:
        import importlib

        return _construct(getattr(importlib.import_module(module), attr), options)

    factory.__name__ = attr
    return factory


EXECUTORS: dict[str, Callable[..., Executor]] = {
    "local": LocalExecutor,
    "pool": _lazy("c2bridge.experiments.executors.pool", "PoolExecutor"),  # local process pool
    "ray": _lazy("c2bridge.experiments.executors.ray", "RayExecutor"),  # Ray tasks, 1 GPU each (extra: ray)
    "modal": _lazy("c2bridge.experiments.executors.modal", "ModalExecutor"),  # Modal GPU functions (extra: modal)
}


def _construct(cls, options: dict) -> Executor:
    """``cls(**options)``, or one clear error naming the options the executor does not take."""
    import inspect

    allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"executor {cls.name}: unknown option(s) {unknown}; expected any of {allowed}")
    return cls(**options)


def executor_threads(name: str, options: dict, executor: Executor | None = None) -> int | None:
    """The intra-op threads trials of executor ``name`` run with (None: torch's default, e.g. on GPU workers),
    without starting anything when ``executor`` is not given (a dry run)."""
    if executor is None and name in ("local", "pool"):
        executor = get_executor(name, **options)  # cheap: neither starts a process
    return getattr(executor, "threads", None)


def get_executor(name: str = "local", **options) -> Executor:
    """The executor ``name`` with constructor ``options`` (``c2bridge run --executor-opt KEY=VALUE``)."""
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; expected one of {sorted(EXECUTORS)}")
    factory = EXECUTORS[name]
    return _construct(factory, options) if isinstance(factory, type) else factory(**options)


def parse_executor_options(pairs: Iterable[str]) -> dict:
    """["workers=8", "gpus=0,1"] -> {"workers": 8, "gpus": "0,1"} (values read as YAML scalars)."""
    import yaml

    options = {}
    for pair in pairs or ():
        key, sep, value = str(pair).partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--executor-opt {pair!r}: expected KEY=VALUE, e.g. workers=8 or gpus=0,1")
        options[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return options
