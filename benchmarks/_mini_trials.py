"""Shared by the mini-preset benchmarks (recipe_evidence.py, compute_levers.py): a study directory in the runner's
layout (cache/, trials/<key>/, results.yaml) whose trials are E2.1-style adapters on the mini study's caches,
evaluated like every study trial, and the interval formatting of their tables."""
from __future__ import annotations

import math
import statistics
from pathlib import Path


def build_context(out: Path, executor: str, overrides: list[str], samples: int, splits: tuple[str, ...],
                  name: str, experiment: str = "e2.1"):
    """A study in ``out`` (the mini study's caches, recipe and evaluation, from ``experiment``'s config) and a
    context that runs trials in it. ``samples`` evaluation samples on each of ``splits``."""
    from c2bridge.experiments.context import StudyContext
    from c2bridge.experiments.runner import Study

    study = Study(out, "mini", overrides=overrides, executor=executor, render=False)
    cfg = study.experiment_config(experiment)
    cfg["eval"] = {**cfg["eval"], "n_samples": samples, "splits": {s: s for s in splits}}
    study._setup(cfg)  # models and distance: what every trial is keyed by
    return study, StudyContext(study, name, cfg)


def completed(records: list) -> list[dict]:
    return [r for r in records if r.get("status") == "completed"]


def median_step_s(record: dict, workspace: Path) -> float | None:
    """Median seconds per optimizer step of a trial (its ``metrics.jsonl``): robust to a slow first step (a
    compile, a cold cache) and to other jobs on the machine for a few steps."""
    from c2bridge.train.logging import read_metrics

    run_dir = record.get("run_dir")
    if not run_dir:
        return None
    recs = read_metrics(Path(workspace) / run_dir / "train")
    rates = [float(r["steps_per_s"]) for r in recs if r.get("kind") == "train"
             and isinstance(r.get("steps_per_s"), (int, float)) and r["steps_per_s"] > 0]
    return 1.0 / statistics.median(rates) if rates else None


def fmt(iv, digits: int = 3) -> str:
    if iv is None or iv.estimate is None:
        return "n/a"
    lo = "?" if not math.isfinite(iv.low) else f"{iv.low:.{digits}f}"
    hi = "?" if not math.isfinite(iv.high) else f"{iv.high:.{digits}f}"
    return f"{iv.estimate:.{digits}f} [{lo}, {hi}]"


def fmt_diff(iv, digits: int = 3) -> str:
    if iv is None or iv.estimate is None:
        return "n/a"
    return f"{iv.estimate:+.{digits}f} [{iv.low:+.{digits}f}, {iv.high:+.{digits}f}]"


def add_study_arguments(parser, quick_help: str, json_help: str) -> None:
    """The arguments every mini-trial benchmark takes: where, which seeds, which executor, JSON out, --quick, overrides."""
    from pathlib import Path as _Path

    parser.add_argument("--out", type=_Path, default=None, help="study dir (default: a temp dir, removed after)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    parser.add_argument("--executor", default="pool", help="pool (two trials at a time) | local (one at a time)")
    parser.add_argument("--json", type=_Path, default=None, help=json_help)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("overrides", nargs="*", help="study overrides, e.g. recipe.optim.max_steps=150")


def pick_names(raw: str, known, flag: str) -> list[str]:
    """``"a,b"`` -> ["a", "b"], each one of ``known``; else one line naming the unknown ones and what is allowed."""
    names = [x.strip() for x in raw.split(",") if x.strip()]
    unknown = [x for x in names if x not in known]
    if unknown:
        raise SystemExit(f"{flag}: unknown {unknown}; expected some of {list(known)}")
    return names
