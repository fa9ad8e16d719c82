"""Trial records -> the ``[seeds, samples]`` tables the intervals take.

A trial record's split metrics (``results.yaml: trials.<key>.metrics.<split>``) hold the mean over the
evaluation samples (``distance``, ``spatial_iou``, ...) and, for the full design, the per-sample values in data
order (sample ``i`` = eval-cache item ``i``, noise seed ``eval.seed + i``, the same in every trial)::

    metrics: {<split>: {distance: 0.21, ..., n: 64, per_sample: {distance: [64 floats], spatial_iou: [...], ...}}}

Without ``per_sample`` the table is ``[S]`` (per-seed means) and the interval says the samples were not resampled.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

OK = ("completed",)


def _seed(record: dict) -> Any:
    return (((record or {}).get("config") or {}).get("train") or {}).get("seed")


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def arm_table(records: Iterable[dict], metric: str, split: str = "val", *,
              section: str | None = None) -> tuple[np.ndarray, list]:
    """``(values, seeds)`` of the completed trials of one arm: ``[S, M]`` per-sample values when every trial
    stores ``metrics.<split>.per_sample.<metric>`` (same length), else ``[S]`` per-trial values. ``section``
    (``"perf"``, ``"train"``) reads a trial-level value ``record[section][metric]`` instead (latency, steps)."""
    rows, per_sample, seeds = [], [], []
    for r in records:
        if (r or {}).get("status") not in OK:
            continue
        if section is not None:
            v = ((r.get(section) or {}).get(metric))
            if _finite(v):
                rows.append(float(v))
                seeds.append(_seed(r))
            continue
        m = ((r.get("metrics") or {}).get(split) or {})
        v = m.get(metric)
        if not _finite(v):
            continue
        rows.append(float(v))
        seeds.append(_seed(r))
        ps = (m.get("per_sample") or {}).get(metric)
        per_sample.append(ps if isinstance(ps, list) and ps and all(_finite(x) for x in ps) else None)
    if section is None and per_sample and all(p is not None for p in per_sample) \
            and len({len(p) for p in per_sample}) == 1:
        return np.asarray(per_sample, dtype=np.float64), seeds
    return np.asarray(rows, dtype=np.float64), seeds


def paired_tables(small: Iterable[dict], ref: Iterable[dict], metric: str, split: str = "val", *,
                  section: str | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """The two arms' tables with rows aligned by seed when both arms have the same seeds (``paired_seeds``
    True), else as they come (``paired_seeds`` False). Both are per-sample only when both can be."""
    a, seeds_a = arm_table(small, metric, split, section=section)
    b, seeds_b = arm_table(ref, metric, split, section=section)
    if a.ndim != b.ndim or (a.ndim == 2 and a.shape[1] != b.shape[1]):  # mixed storage: fall back to per-seed
        a = a.mean(axis=1) if a.ndim == 2 else a
        b = b.mean(axis=1) if b.ndim == 2 else b
    if seeds_a and sorted(seeds_a, key=str) == sorted(seeds_b, key=str) and len(set(map(str, seeds_a))) == len(seeds_a):
        order = [seeds_b.index(s) for s in seeds_a]
        return a, b[order], True
    return a, b, False


def pair_intervals(small: Iterable[dict], ref: Iterable[dict], split: str = "val", **kwargs: Any) -> dict:
    """The headline intervals of a small-vs-reference comparison (E2.1, E2.4) from the two arms' trial records:
    ``param_efficiency``, ``distance_small`` / ``distance_ref``, ``spatial_iou_small``, ``latency_ratio``
    (small / reference) and ``training_time_ratio`` (steps to plateau, censored when a trial did not plateau).
    Missing metrics are left out. kwargs: those of ``bootstrap_interval`` (level, n_resamples, seed, method)."""
    from c2bridge.stats.bootstrap import efficiency_interval, mean_interval, plateau_ratio, ratio_interval

    small, ref = [r for r in small if (r or {}).get("status") in OK], [r for r in ref if (r or {}).get("status") in OK]
    out: dict = {}
    a, b, paired = paired_tables(small, ref, "distance", split)
    if a.size and b.size:
        out["param_efficiency"] = efficiency_interval(a, b, paired_seeds=paired, **kwargs)
        out["distance_small"] = mean_interval(a, **kwargs)
        out["distance_ref"] = mean_interval(b, **kwargs)
    iou, _ = arm_table(small, "spatial_iou", split)
    if iou.size:
        out["spatial_iou_small"] = mean_interval(iou, **kwargs)
    la, lb, paired = paired_tables(small, ref, "latency_ms", section="perf")
    if la.size and lb.size:
        out["latency_ratio"] = ratio_interval(la, lb, paired_seeds=paired, trial_metric=True, **kwargs)
    steps = lambda recs: [(r.get("train") or {}).get("steps_to_plateau") for r in recs]  # noqa: E731
    totals = [(r.get("train") or {}).get("total_steps") or (r.get("train") or {}).get("steps") for r in small]
    if small and ref and all(t is not None for t in totals):
        by_seed = {_seed(r): r for r in ref}
        paired = sorted(map(str, by_seed)) == sorted(str(_seed(r)) for r in small) and len(by_seed) == len(small)
        ref_sorted = [by_seed[_seed(r)] for r in small] if paired else ref
        out["training_time_ratio"] = plateau_ratio(steps(small), steps(ref_sorted), total_steps=totals,
                                                   paired_seeds=paired, **kwargs)
    return out


__all__ = ["arm_table", "pair_intervals", "paired_tables"]
