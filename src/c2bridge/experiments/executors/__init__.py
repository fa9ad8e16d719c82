"""Where trials run. A trial function is pure: ``fn(trial: dict) -> result: dict`` (config in, result out;
it writes only inside ``trial["run_dir"]``). Executors differ only in *where* ``fn`` runs.

Register new executors in ``EXECUTORS`` (the Ray and Modal ones import their extras lazily).
"""
from __future__ import annotations

import traceback
from typing import Callable, Iterable, Iterator, Protocol

TrialFn = Callable[[dict], dict]


class Executor(Protocol):
    name: str

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


class LocalExecutor:
    """Serial, in this process: the default, and the reference the others must match."""

    name = "local"

    def __init__(self) -> None:  # no options (so --executor-opt with local is an error, not ignored)
        pass

    def run(self, fn: TrialFn, trials: Iterable[dict]) -> Iterator[dict]:
        for trial in trials:
            yield run_guarded(fn, trial)


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
