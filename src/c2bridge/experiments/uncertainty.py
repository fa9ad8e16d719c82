"""Uncertainty for the experiment modules: the intervals their summaries carry, and the sequential design's rounds.

Every headline number of a summary has an interval under ``summary["intervals"][<key>]`` (``Interval.to_dict()``
of :mod:`c2bridge.stats`: estimate, low, high, level, method, n_resamples, seeds, samples, variance components),
read back by ``criteria.assess`` to give each criterion a verdict that knows its uncertainty. The interval options
are the experiment config's ``intervals:`` section (``level``, ``n_resamples``, ``seed``).

The sequential design (``decide:`` in the experiment configs): when a deciding verdict is undetermined, the arms
that decide it get more seeds and/or evaluation samples (:func:`c2bridge.stats.next_round` picks which), trial lists
are rebuilt for the grown design and run -- every finished trial is found done by its key -- until the interval
clears the line, a cap is reached or it is projected not to settle within the caps. ``decide.enabled: false``
opts out. :func:`worst_case` lists the trials the caps allow, for ``c2bridge run --dry-run`` and the planner.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from c2bridge.experiments.trials import TrialRecord, TrialSpec
from c2bridge.stats import (ArmState, Interval, bootstrap_interval, difference_interval, mean_interval,
                            next_round, paired_tables, relative_gain_interval)
from c2bridge.stats.bootstrap import DEFAULT_RESAMPLES
from c2bridge.stats.records import arm_table

LEVEL = 0.95


def interval_options(cfg: Mapping) -> dict:
    """``bootstrap_interval`` options from the config's ``intervals:`` section (defaults: 95%, 2000 resamples)."""
    o = dict(cfg.get("intervals") or {})
    return {"level": float(o.get("level", LEVEL)), "n_resamples": int(o.get("n_resamples", DEFAULT_RESAMPLES)),
            "seed": int(o.get("seed", 0))}


def fit_resamples(cfg: Mapping) -> int:
    """Bootstrap replicates of the scaling-law fit (``intervals.fit_resamples``, default 400)."""
    return int((cfg.get("intervals") or {}).get("fit_resamples", 400))


def to_record(iv: Interval | None) -> dict | None:
    """An interval as results.yaml stores it (non-finite ends -> None: an open end, or no interval)."""
    if iv is None:
        return None
    d = iv.to_dict()
    for k in ("estimate", "low", "high", "se", "df"):
        v = d.get(k)
        if isinstance(v, float) and not math.isfinite(v):
            d[k] = None
    return d


def _dicts(records: Iterable[TrialRecord | dict]) -> list[dict]:
    return [TrialRecord.from_dict(r).to_dict() for r in records]


def arm_interval(records: Iterable, metric: str, split: str = "val", *, section: str | None = None,
                 **options: Any) -> Interval | None:
    """Mean of ``metric`` over one arm's seeds (x samples when per-sample values are stored)."""
    table, _ = arm_table(_dicts(records), metric, split, section=section)
    if not table.size:
        return None
    return mean_interval(table, trial_metric=section is not None, **options)


def paired(fn: Callable, a: Iterable, b: Iterable, metric: str = "distance", split: str = "val",
           **options: Any) -> Interval | None:
    """``fn(table_a, table_b, paired_seeds=...)`` on two arms' tables, rows aligned by seed (paired when both arms
    have the same seeds; samples paired: the same evaluation items)."""
    ta, tb, same_seeds = paired_tables(_dicts(a), _dicts(b), metric, split)
    if not ta.size or not tb.size:
        return None
    return fn(ta, tb, paired_seeds=same_seeds, **options)


def difference(a: Iterable, b: Iterable, metric: str = "distance", split: str = "val", **options) -> Interval | None:
    """``mean(a) − mean(b)`` of two arms on the same split."""
    return paired(difference_interval, a, b, metric, split, **options)


def relative_gain(base: Iterable, other: Iterable, split: str = "val", **options) -> Interval | None:
    """``(D_base − D_other) / D_base``."""
    return paired(relative_gain_interval, base, other, "distance", split, **options)


def split_gap(records: Iterable, split_a: str, split_b: str, metric: str = "distance",
              **options: Any) -> Interval | None:
    """``mean(split_a) − mean(split_b)`` of the same trials on two splits (the generalization gap): seeds paired,
    samples not (different images)."""
    recs = _dicts(records)
    ta, seeds_a = arm_table(recs, metric, split_a)
    tb, seeds_b = arm_table(recs, metric, split_b)
    if not ta.size or not tb.size or seeds_a != seeds_b:
        return None
    if ta.ndim != tb.ndim:
        ta = ta.mean(axis=1) if ta.ndim == 2 else ta
        tb = tb.mean(axis=1) if tb.ndim == 2 else tb
    return bootstrap_interval([ta, tb], lambda m: m[0] - m[1], paired_seeds=True, paired_samples=False, **options)


def arm_intervals(records: Iterable, splits: Iterable[str], **options: Any) -> dict:
    """Per-arm intervals for the tables and plots: ``{split: {distance, spatial_iou, flicker, warp_error}, "perf":
    {latency_ms}}`` (a metric a split does not report, e.g. IoU on COCO or flicker on images, is left out)."""
    records = list(records)
    out: dict = {}
    for split in splits:
        for metric in ("distance", "spatial_iou", "flicker", "warp_error"):
            iv = arm_interval(records, metric, split, **options)
            if iv is not None:
                out.setdefault(split, {})[metric] = to_record(iv)
    iv = arm_interval(records, "latency_ms", section="perf", **options)
    if iv is not None:
        out["perf"] = {"latency_ms": to_record(iv)}
    return out


# ------------------------------------------------------------------------------------------- the sequential design


@dataclass(frozen=True)
class DecideSettings:
    """``decide:`` of an experiment config."""

    enabled: bool
    max_seeds: int
    max_eval_samples: int
    max_rounds: int
    exhaust_caps: bool = False
    note: str | None = None  # e.g. the sample cap lowered to the evaluation cache's size

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def decide_settings(cfg: Mapping, eval_caches: Iterable[str] = ("val",)) -> DecideSettings:
    """The caps, with ``max_eval_samples`` lowered to the smallest evaluation cache the deciding split reads (its
    ``limit`` in ``caches``: there are no more items to sample)."""
    d = dict(cfg.get("decide") or {})
    base_samples = int((cfg.get("eval") or {}).get("n_samples") or 0)
    max_seeds = int(d.get("max_seeds", 5))
    max_samples = int(d.get("max_eval_samples", base_samples or 1))
    note = None
    limits = [((cfg.get("caches") or {}).get(c) or {}).get("limit") for c in eval_caches]
    limits = [int(x) for x in limits if x]
    if limits and max_samples > min(limits):
        note = f"max_eval_samples {max_samples} lowered to the evaluation cache's {min(limits)} items"
        max_samples = min(limits)
    if max_seeds < 1 or max_samples < 1:
        raise ValueError(f"decide: max_seeds and max_eval_samples must be >= 1; got {max_seeds}, {max_samples}")
    return DecideSettings(enabled=bool(d.get("enabled", True)), max_seeds=max_seeds,
                          max_eval_samples=max(max_samples, base_samples),
                          max_rounds=int(d.get("max_rounds", 4)), exhaust_caps=bool(d.get("exhaust_caps", False)),
                          note=note)


@dataclass
class Design:
    """The deciding arms as they stand: arm -> seeds trained, arm -> evaluation samples per trial."""

    seeds: dict[str, list[int]]
    samples: dict[str, int]

    def at_caps(self, settings: DecideSettings) -> "Design":
        """The design the caps allow (the worst case a dry run lists)."""
        seeds = {}
        top = max((s for v in self.seeds.values() for s in v), default=-1)
        for arm, have in self.seeds.items():
            extra = max(0, settings.max_seeds - len(have))
            seeds[arm] = list(have) + list(range(top + 1, top + 1 + extra))
        return Design(seeds, {a: max(m, settings.max_eval_samples) for a, m in self.samples.items()})


def worst_case(listed: list[TrialSpec], grown: list[TrialSpec], why: str) -> list[TrialSpec]:
    """The trials of the grown design that are not in ``listed``, marked as decided at run time (stage 2)."""
    have = {s.label for s in listed}
    return [dataclasses.replace(s, stage=2, assumption=why) for s in grown if s.label not in have]


def run_rounds(ctx, settings: DecideSettings, design: Design, *,
               specs: Callable[[Design], list[TrialSpec]],
               verdicts: Callable[[dict], dict],
               deciding: Mapping[str, list[str]],
               records: dict) -> dict:
    """Grow ``design`` round by round (see the module doc) and return what happened: ``{"enabled", "rounds",
    "history", "stopped", "final", "caps"}``. ``records`` (label -> TrialRecord) is updated in place;
    ``verdicts(records)`` -> name -> ConfidentVerdict; ``specs(design)`` -> every trial of the design."""
    caps = {"max_seeds": settings.max_seeds, "max_eval_samples": settings.max_eval_samples,
            "max_rounds": settings.max_rounds, **({"note": settings.note} if settings.note else {})}
    if not settings.enabled:
        cvs = verdicts(records)
        return {"enabled": False, "rounds": 0, "history": [], "stopped": "opted out (decide.enabled: false)",
                "final": {n: v.text for n, v in cvs.items()}, "caps": caps}
    history = []
    while True:
        cvs = verdicts(records)
        states = {a: ArmState(tuple(design.seeds[a]), int(design.samples[a])) for a in design.seeds}
        plan = next_round(cvs, deciding, states, max_seeds=settings.max_seeds,
                          max_eval_samples=settings.max_eval_samples, exhaust_caps=settings.exhaust_caps,
                          rounds_done=len(history), max_rounds=settings.max_rounds)
        if plan.stop:
            break
        for arm, new in plan.add_seeds.items():
            design.seeds[arm] = list(design.seeds[arm]) + [s for s in new if s not in design.seeds[arm]]
        for arm, m in plan.eval_samples.items():
            design.samples[arm] = max(design.samples[arm], int(m))
        ctx.log(f"[{ctx.name}] sequential design, round {len(history) + 1}: "
                + "; ".join(plan.notes.values()))
        records.update(ctx.run_trials(specs(design)))
        history.append({"round": len(history) + 1, "add_seeds": {a: list(v) for a, v in plan.add_seeds.items()},
                        "eval_samples": dict(plan.eval_samples), "why": dict(plan.notes)})
    return {"enabled": True, "rounds": len(history), "history": history, "stopped": plan.reason,
            "final": {n: v.text for n, v in cvs.items()}, "caps": caps,
            "seeds": {a: list(v) for a, v in design.seeds.items()}, "samples": dict(design.samples)}


def rounds_text(decide: Mapping | None) -> str:
    """One line for FINDINGS.md: how many rounds ran and why they stopped."""
    if not decide:
        return "Sequential design: not run."
    if not decide.get("enabled"):
        return f"Sequential design: {decide.get('stopped')}."
    caps = decide.get("caps") or {}
    grown = ", ".join(f"{a}: {len(s)} seeds" for a, s in (decide.get("seeds") or {}).items())
    samples = sorted(set((decide.get("samples") or {}).values()))
    return (f"Sequential design: {decide.get('rounds', 0)} extra round(s); stopped: **{decide.get('stopped')}** "
            f"(caps {caps.get('max_seeds')} seeds, {caps.get('max_eval_samples')} evaluation samples, "
            f"{caps.get('max_rounds')} rounds{'; ' + caps['note'] if caps.get('note') else ''})"
            + (f"; deciding arms now {grown}, {'/'.join(map(str, samples))} samples per trial" if grown else "") + ".")


def as_dicts(records: Iterable) -> list[dict]:
    """Trial records as ``c2bridge.stats.records`` reads them (the on-disk shape)."""
    return _dicts(records)
