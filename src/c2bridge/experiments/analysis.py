"""Turning trial records (``trials.TrialRecord``) into the numbers experiments report: per-arm mean ± spread, best
picks, efficiency.

A trial record (what ``backend.run_trial`` returns, stored under ``results.yaml: trials.<key>``)::

    status: completed | diverged | failed
    params: {trainable, active, budget}
    train: {time_s, steps, total_steps, steps_run, max_steps, stopped_early, stop_step, final_train_loss,
            best_val_loss, loss_variance, steps_to_plateau, time_to_plateau_s, peak_memory_mb}
    metrics: {<split>: {distance, spatial_iou, ssim, psnr, n}}      # sampled through the frozen decoder
    perf: {latency_ms, latency_std_ms, forward_peak_memory_mb, weights_mb}
    curve: {step: [...], loss: [...], val_step: [...], val_loss: [...]}
    artifacts: {adapter: <dir rel. to RUN_DIR>, grids: {<split>: <png rel. to RUN_DIR>}}
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Iterable, Mapping

from c2bridge.experiments.trials import TrialRecord
from c2bridge.report.results import stats

OK = ("completed",)


class Summary:
    """Base of the experiments' summary dataclasses: ``to_dict()`` is results.yaml's ``summary`` mapping (fields in
    ``OPTIONAL`` are left out while None, as they only exist in some runs); ``from_dict`` reads one back (an earlier
    run's, or an upstream experiment's), ignoring keys this version does not know."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: v for k, v in out.items() if not (v is None and k in self.OPTIONAL)}

    @classmethod
    def from_dict(cls, data: Mapping | None):
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in known})
SPLIT_METRICS = ("distance", "spatial_iou", "ssim", "psnr")
TRAIN_METRICS = ("time_s", "steps_to_plateau", "time_to_plateau_s", "loss_variance", "peak_memory_mb", "best_val_loss")
PERF_METRICS = ("latency_ms", "latency_std_ms", "forward_peak_memory_mb", "weights_mb")


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def split_metric(record: "TrialRecord | dict", name: str, split: str = "val") -> float | None:
    return TrialRecord.from_dict(record).metric(name, split)


def section_metric(record: "TrialRecord | dict", section: str, name: str) -> float | None:
    return TrialRecord.from_dict(record).value(section, name)


def group(records: Iterable["TrialRecord | dict"], splits: Iterable[str] = ("val",)) -> dict:
    """Mean ± spread over the seeds of one arm (completed trials only), plus statuses and keys."""
    records = [TrialRecord.from_dict(r) for r in records]
    done = [r for r in records if r.status in OK]
    out: dict[str, Any] = {
        "n": len(records),
        "n_completed": len(done),
        "n_pruned": sum(r.status == "pruned" for r in records),  # stopped by successive halving at a rung
        "statuses": [r.status for r in records],
        "keys": [r.key for r in records],
    }
    params = [r.value("params", "trainable") for r in records]
    params = [p for p in params if p is not None]
    out["params"] = int(params[0]) if params else None
    active = [r.value("params", "active") for r in records]
    active = [a for a in active if a is not None]
    out["active_params"] = int(active[0]) if active else None
    for split in splits:
        out[split] = {m: stats(r.metric(m, split) for r in done) for m in SPLIT_METRICS}
    # "training", not "train": a split may be called train (the generalization gap evaluates on it)
    out["training"] = {m: stats(r.value("train", m) for r in done) for m in TRAIN_METRICS}
    out["perf"] = {m: stats(r.value("perf", m) for r in done) for m in PERF_METRICS}
    errors = [r.error or r.reason for r in records if r.status not in ("completed", "pruned")]
    out["errors"] = [str(e).splitlines()[0][:300] for e in errors if e]
    return out


def mean(g: dict, *path: str) -> float | None:
    node: Any = g
    for p in path:
        node = (node or {}).get(p)
    return (node or {}).get("mean") if isinstance(node, dict) else None


def spread(g: dict, *path: str) -> float | None:
    node: Any = g
    for p in path:
        node = (node or {}).get(p)
    return (node or {}).get("std") if isinstance(node, dict) else None


def best_record(records: Iterable["TrialRecord | dict"], split: str = "val") -> TrialRecord | None:
    """The completed record with the lowest distance on ``split`` (ties: first)."""
    best, best_d = None, None
    for r in map(TrialRecord.from_dict, records):
        d = r.metric("distance", split) if r.status in OK else None
        if d is not None and (best_d is None or d < best_d):
            best, best_d = r, d
    return best


def efficiency(d_small: float | None, d_ref: float | None) -> float | None:
    """The plan's param_efficiency (``c2bridge.metrics.param_efficiency``); None when either side is missing."""
    if not (finite(d_small) and finite(d_ref)) or d_ref <= 0:
        return None
    from c2bridge.metrics.efficiency import param_efficiency

    return float(param_efficiency(d_small, d_ref))


def ratio(a: float | None, b: float | None) -> float | None:
    if not (finite(a) and finite(b)) or b == 0:
        return None
    return float(a) / float(b)


def paired_efficiencies(small: list["TrialRecord | dict"], ref: list["TrialRecord | dict"], split: str = "val") -> dict:
    """Per-seed param_efficiency (seed i small vs seed i reference): its spread says how noisy the mean is."""
    by_seed = {}
    for r in map(TrialRecord.from_dict, ref):
        by_seed[r.seed] = r.metric("distance", split) if r.status in OK else None
    values = []
    for r in map(TrialRecord.from_dict, small):
        if r.status in OK and r.seed in by_seed:
            values.append(efficiency(r.metric("distance", split), by_seed[r.seed]))
    return stats(values)


def experiment_status(groups: Iterable[dict]) -> str:
    groups = list(groups)
    n = sum(g["n"] for g in groups)
    ok = sum(g["n_completed"] for g in groups)
    if n and ok + sum(g.get("n_pruned", 0) for g in groups) == n:  # an arm halving stopped is accounted for
        return "complete"
    return "partial" if ok else "failed"
