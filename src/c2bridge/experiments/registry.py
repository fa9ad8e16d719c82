"""The experiments a study can run, found by what their modules declare (nothing here names one).

An experiment is a module of ``c2bridge.experiments`` that defines ``EXPERIMENT = ExperimentInfo(...)`` and the
functions of the ``Experiment`` protocol below, plus one YAML per preset (``configs/experiments/<stem>.<preset>.yaml``).
The runner, the planner, ``c2bridge run --dry-run`` and the report all go through ``experiments()``.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, Mapping, Protocol

from c2bridge.experiments.trials import TrialSpec


@dataclass(frozen=True)
class ExperimentInfo:
    id: str  # "e2.1": what users type, results.yaml's key
    order: int  # position in the study (experiments run in this order)
    title: str
    requires: tuple[str, ...] = ()  # experiments whose summaries this one reads (run first when missing)
    gate: str | None = None  # the criterion whose verdict decides Gate 2's C2 part (one experiment declares it)
    group: str | None = None  # a named set run together (``branches``: the plan's pivots and open questions);
    # ``all`` is the study proper: the experiments without a group

    @property
    def stem(self) -> str:
        """File-name form of the id: ``e2_1`` (its YAMLs are ``e2_1.<preset>.yaml``)."""
        return self.id.replace(".", "_")


class Experiment(Protocol):
    """What an experiment module provides (module-level names)."""

    EXPERIMENT: ExperimentInfo

    def trials(self, cfg: dict, preset: Any, upstream: Mapping[str, dict]) -> list[TrialSpec]:
        """Every trial, a pure function of the config, the preset and the upstream experiments' summaries (a
        missing summary -> the documented assumption, recorded in ``TrialSpec.assumption``)."""

    def run(self, ctx: Any) -> dict:
        """Run ``trials`` through ``ctx.run_trials`` and return the experiment record (status, arms, summary...)."""

    def protocol(self, cfg: dict, preset: Any) -> dict:
        """The protocol knobs, for the report's this-preset-vs-full table."""

    def findings(self, results: dict, exp: dict, figs: dict) -> str:
        """This experiment's FINDINGS.md section (markdown)."""

    def figures(self, results: dict, run_dir: Any) -> dict:
        """Draw this experiment's figures; name -> path relative to ``run_dir``."""


_EXCLUDED = {"executors"}  # sub-packages of the engine, never experiments


def _discover() -> dict[str, ModuleType]:
    import c2bridge.experiments as package

    found: dict[str, ModuleType] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.ispkg or info.name.startswith("_") or info.name in _EXCLUDED:
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        meta = getattr(module, "EXPERIMENT", None)
        if isinstance(meta, ExperimentInfo):
            if meta.id in found:
                raise RuntimeError(f"experiment id {meta.id!r} is declared by two modules: "
                                   f"{found[meta.id].__name__} and {module.__name__}")
            found[meta.id] = module
    return dict(sorted(found.items(), key=lambda kv: kv[1].EXPERIMENT.order))


_REGISTRY: dict[str, ModuleType] | None = None


def experiments() -> dict[str, ModuleType]:
    """id -> module, in study order."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _discover()
        for module in _REGISTRY.values():
            for dep in module.EXPERIMENT.requires:
                if dep not in _REGISTRY:
                    raise RuntimeError(f"{module.EXPERIMENT.id} requires unknown experiment {dep!r}")
    return _REGISTRY


def gate_metric() -> str:
    """``<experiment>.<criterion>`` deciding Gate 2 (the one experiment that declares ``gate``), or ""."""
    gates = [f"{m.EXPERIMENT.id}.{m.EXPERIMENT.gate}" for m in experiments().values() if m.EXPERIMENT.gate]
    if len(gates) > 1:
        raise RuntimeError(f"more than one experiment declares the Gate 2 criterion: {gates}")
    return gates[0] if gates else ""


def ids() -> tuple[str, ...]:
    return tuple(experiments())


def get(name: str) -> ModuleType:
    (canonical,) = normalize_names([name])
    return experiments()[canonical]


def groups() -> dict[str, tuple[str, ...]]:
    """Group name -> its experiments' ids (``all``: every experiment without a group; ``branches``: ...)."""
    out: dict[str, list[str]] = {"all": []}
    for name, module in experiments().items():
        out.setdefault(module.EXPERIMENT.group or "all", []).append(name)
    return {k: tuple(v) for k, v in out.items()}


def normalize_names(names: Iterable[str]) -> list[str]:
    """``all`` / ``branches`` / ``e2.1`` / ``e2_1`` / ``E2.1`` / ``p8.2`` -> study-ordered unique ids; one clear
    error for unknown names."""
    order = ids()
    named = groups()
    wanted = set()
    for raw in names:
        name = raw.strip().lower().replace("_", ".")
        if name in named:
            wanted.update(named[name])
        elif name in order:
            wanted.add(name)
        else:
            raise ValueError(f"unknown experiment {raw!r}; expected one of {', '.join(order)} or a group: "
                             f"{', '.join(named)}")
    return [n for n in order if n in wanted]


def with_requirements(names: Iterable[str], have_summary: Iterable[str] = ()) -> list[str]:
    """``names`` plus what they require (unless its summary exists already), in study order."""
    have = set(have_summary)
    wanted = list(names)
    todo: list[str] = []
    for name in wanted:
        for dep in experiments()[name].EXPERIMENT.requires:
            if dep not in todo and dep not in wanted and dep not in have:
                todo.append(dep)
        todo.append(name)
    return [n for n in ids() if n in todo]


# ------------------------------------------------------------------------------------------------ experiment configs

# keys every experiment config may have, read by the engine (the rest are the experiment module's own)
ENGINE_KEYS = ("caches", "train_cache", "train_mix", "val_cache", "val_mix", "threads", "recipe", "eval",
               "protocol_notes", "halving")


def experiment_overrides(items: Iterable[str] | Mapping[str, Any] | None) -> tuple[dict, dict[str, dict]]:
    """``key=value`` items -> (for every experiment, per experiment id). A key starting with an experiment id
    (``e2_1.seeds=[0]`` or ``e2.1.seeds=[0]``) applies to that one only."""
    from c2bridge.config import parse_overrides, split_scoped

    return split_scoped(parse_overrides(items, example="recipe.optim.max_steps=50 or e2_1.seeds=[0]"), ids())


def config_path(name: str, preset: str, directory: str | Path | None = None) -> Path:
    from c2bridge.config import experiments_dir

    directory = Path(directory) if directory else experiments_dir()
    return directory / f"{get(name).EXPERIMENT.stem}.{preset}.yaml"


def load_experiment_config(name: str, preset: str, overrides: Iterable[str] | Mapping[str, Any] = (),
                           directory: str | Path | None = None) -> dict:
    """``<stem>.<preset>.yaml`` merged over its ``base`` (``common.<preset>.yaml``), then the overrides that apply
    to it; ``_source`` records the file."""
    from c2bridge.config import apply_overrides, load_yaml_config

    path = config_path(name, preset, directory)
    if not path.is_file():
        have = sorted(p.name for p in path.parent.glob(f"{get(name).EXPERIMENT.stem}.*.yaml"))
        raise ValueError(f"no {name} config for preset {preset!r}: expected {path} (found: {', '.join(have) or 'none'})")
    common, per = experiment_overrides(overrides)
    cfg = apply_overrides(load_yaml_config(path), {**common, **per[get(name).EXPERIMENT.id]})
    cfg["_source"] = str(path)
    return cfg


def check_overrides(overrides: Iterable[str] | Mapping[str, Any], preset: str,
                    directory: str | Path | None = None) -> None:
    """One ValueError naming every override that no experiment config has (``e2_1.seedz=[0]``) and every
    ``recipe.*`` key or value the training config rejects -- before anything runs or is written."""
    from c2bridge.config import load_yaml_config, set_dataclass_key
    from c2bridge.recipe import TrainConfig

    common, per = experiment_overrides(overrides)
    keys: dict[str, set[str]] = {}
    for name, module in experiments().items():  # what its YAML has, plus what the module reads with a default
        path = config_path(name, preset, directory)
        keys[name] = (set(load_yaml_config(path)) if path.is_file() else set()) | set(getattr(module, "CONFIG_KEYS", ()))
    errors: list[str] = []
    every = set().union(*keys.values())
    for key in common:
        top = key.split(".")[0]
        if top not in ENGINE_KEYS and top not in every:
            errors.append(f"{key!r}: no experiment config has {top!r}")
    for name, items in per.items():
        for key in items:
            top = key.split(".")[0]
            if top not in ENGINE_KEYS and top not in keys[name]:
                known = sorted(k for k in keys[name] if k not in ENGINE_KEYS)
                errors.append(f"{name}.{key}: {name}'s config has no {top!r} (its keys: {', '.join(known)})")
    recipe_errors: list[str] = []
    for scope in [common, *per.values()]:
        for key, value in scope.items():
            if key.startswith("recipe."):
                set_dataclass_key(TrainConfig(), key[len("recipe."):], value, recipe_errors)
    errors += [f"recipe: {e}" for e in recipe_errors]
    if errors:
        raise ValueError("bad override(s): " + "; ".join(errors))
