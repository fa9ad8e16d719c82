"""``results.yaml``: the machine-readable record of a study, and the only input of the reports.

Schema (``c2bridge.results/v1``)::

    schema: c2bridge.results/v1
    study: {claim, plan, command, started_at, updated_at}
    preset: {name, is_miniature, description, dims..., budgets}
    distance: {name, reason}                   # the distance D used for "LPIPS" in every formula
    environment: {python, platform, packages: {name: version}}
    models: {decoder: {...}, dino: {...}, vlm: {...}}      # ids / revisions / fingerprints
    caches: {name: {key, path, dataset, split, n, augment}}
    criteria: {...}                            # the criteria.yaml the verdicts were computed with
    trials:
      <key>: {status, label, experiments: [...], config, metrics, train, curve, artifacts, error}
    experiments:
      <e2.x>: {status, title, protocol, reduced, arms, summary, verdicts, tables, figures, recommendation}
    decisions: {decision_points: [...], failures: [...]}
    gate2: {c2, reason, overall, ...}

Trial status: completed / diverged / failed (from the trainer or the executor), pruned (successive halving stopped it
at a rung: ``pruned_at_step``), running (started, no result yet).
"""
from __future__ import annotations

import datetime as _dt
import math
import platform
import sys
from pathlib import Path
from typing import Any, Iterable

from c2bridge._io import atomic_write_text, to_plain

SCHEMA = "c2bridge.results/v1"
RESULTS_FILE = "results.yaml"
TRIAL_STATUSES = ("completed", "diverged", "failed", "pruned", "running")
FINISHED = ("completed", "diverged")  # outcomes: a re-run never repeats them
def _experiment_ids() -> tuple[str, ...]:
    """The registered experiments (c2bridge.experiments.registry): the ids results.yaml may hold."""
    from c2bridge.experiments.registry import ids

    return ids()
PACKAGES = ("c2bridge", "torch", "diffusers", "transformers", "lpips", "torchmetrics", "safetensors", "numpy")


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def environment() -> dict:
    """Python, platform and the versions of the packages the numbers depend on (no heavy imports)."""
    from importlib import metadata

    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "packages": packages}


def new_results(preset: dict, claim: str = "c2-adapter-bridging", plan: str | None = None, command: str | None = None) -> dict:
    return {
        "schema": SCHEMA,
        "study": {"claim": claim, "plan": plan, "command": command, "started_at": now(), "updated_at": now()},
        "preset": preset,
        "distance": None,
        "environment": environment(),
        "models": {},
        "caches": {},
        "criteria": None,
        "trials": {},
        "experiments": {},
        "decisions": None,
        "gate2": None,
    }


def results_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / RESULTS_FILE


def load_results(run_dir: str | Path) -> dict:
    path = Path(run_dir)
    path = path if path.suffix in (".yaml", ".yml") else results_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; expected a study directory written by `c2bridge run`")
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: results files get large
    with open(path, encoding="utf-8") as fh:
        try:
            results = yaml.load(fh, Loader=loader)
        except yaml.YAMLError as exc:
            raise ValueError(f"{path} is not valid YAML ({exc.__class__.__name__}); expected a results.yaml") from None
    validate_results(results, source=str(path))
    return results


def write_results(run_dir: str | Path, results: dict) -> Path:
    """Validate, stamp ``updated_at`` and write atomically (a crash leaves the previous file intact)."""
    results["study"]["updated_at"] = now()
    plain = to_plain(results)
    validate_results(plain)
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # written after every trial: keep it fast
    path = results_path(run_dir)
    atomic_write_text(path, yaml.dump(plain, Dumper=dumper, sort_keys=False, allow_unicode=True, width=120))
    return path


def validate_results(results: Any, source: str = "results") -> None:
    """One clear ValueError if ``results`` does not follow the schema."""
    if not isinstance(results, dict):
        raise ValueError(f"{source}: expected a mapping, got {type(results).__name__}")
    if results.get("schema") != SCHEMA:
        raise ValueError(f"{source}: schema is {results.get('schema')!r}, expected {SCHEMA!r}")
    for key in ("study", "preset", "trials", "experiments"):
        if not isinstance(results.get(key), dict):
            raise ValueError(f"{source}: '{key}' must be a mapping")
    for key, trial in results["trials"].items():
        if not isinstance(trial, dict) or trial.get("status") not in TRIAL_STATUSES:
            raise ValueError(
                f"{source}: trial {key} has status {trial.get('status') if isinstance(trial, dict) else trial!r}, "
                f"expected one of {TRIAL_STATUSES}"
            )
        if not isinstance(trial.get("config"), dict):
            raise ValueError(f"{source}: trial {key} has no config")
    for name, exp in results["experiments"].items():
        known = _experiment_ids()
        if name not in known:
            raise ValueError(f"{source}: unknown experiment {name!r}, expected one of {known}")
        for k in ("summary", "verdicts"):
            if not isinstance(exp.get(k, {}), dict):
                raise ValueError(f"{source}: experiments.{name}.{k} must be a mapping")


def current_trials(results: dict) -> dict:
    """The trials run with the frozen models this results.yaml now records (the runner keys every trial config by
    ``stable_hash(results["models"])``); trials of other models stay in the file but are not this study's."""
    from c2bridge._io import stable_hash

    current = stable_hash(results.get("models") or {})
    return {k: t for k, t in (results.get("trials") or {}).items()
            if (t.get("config") or {}).get("models") in (None, current)}


def stats(values: Iterable[Any]) -> dict:
    """Mean ± spread of the finite values: ``{mean, std, min, max, n, values}`` (std: sample std, None for n<2)."""
    vals = [float(v) for v in values if v is not None and isinstance(v, (int, float)) and math.isfinite(v)]
    n = len(vals)
    if n == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0, "values": []}
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else None
    return {"mean": mean, "std": std, "min": min(vals), "max": max(vals), "n": n, "values": vals}
