"""Verdicts that know their own uncertainty: which band of a criterion an interval lies in, or which line it
straddles, and how many more seeds / evaluation samples would settle it.

A criterion is what ``criteria.yaml`` holds (``target`` / ``acceptable`` / ``failure`` and ``direction``); the
band of a single number is :func:`c2bridge.stats.bands.verdict` (the study's rule, strict comparisons, soft/hard
fails; ``c2bridge.experiments.criteria`` re-exports it), used
here on both ends of the interval. The verdict is *certain* when both ends fall in the same verdict
(target / acceptable / fail); a fail whose interval crosses the failure line is a certain fail of uncertain
severity. Otherwise it is *undetermined* between the bands of its two ends.

Settling an undetermined verdict: the interval must shrink until it clears the nearest verdict-changing line on
either side of the estimate, i.e. its half-width must fall below the distance from the estimate to that line.
:meth:`Interval.half_width_at` projects the half-width with more seeds or more samples from the observed
variance components (each shrinks as 1/n; the estimate is assumed to stay where it is). ``settle`` reports the
smallest number of seeds (samples held) and of samples (seeds held) that does it within the caps, and whether
both at their caps would; "cannot settle within cap" otherwise.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from c2bridge.stats.bands import verdict
from c2bridge.stats.bootstrap import Interval

CATEGORIES = ("target", "acceptable", "fail")
_LINES = ("target", "acceptable", "failure")
# how far the projection searches when no cap is given
SEARCH_MAX_SEEDS, SEARCH_MAX_SAMPLES = 1000, 1_000_000


def line_criterion(op: str, threshold: float) -> dict:
    """A decision point / failure rule (``value > 0.85``) as a one-line criterion: "acceptable" when met,
    "fail" when not."""
    if op in (">", ">="):
        return {"acceptable": float(threshold), "direction": "higher"}
    if op in ("<", "<="):
        return {"acceptable": float(threshold), "direction": "lower"}
    raise ValueError(f"only > >= < <= decisions have an interval verdict; got op {op!r}")


@dataclass(frozen=True)
class Settle:
    """What it would take to settle an undetermined verdict (projections from the variance components)."""

    line: float | None          # the verdict-changing line nearest the estimate
    margin: float | None        # |estimate − line| (of their logs on a log-scale interval): the half-width to beat
    seeds_needed: int | None    # seeds per arm (samples as now) that settle it; None: not within the cap
    samples_needed: int | None  # evaluation samples per trial (seeds as now); None: not within the cap
    both_at_cap: bool           # max_seeds and max_eval_samples together would settle it
    extra_seeds: int | None
    extra_samples: int | None
    text: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ConfidentVerdict:
    """The verdict of an interval against a criterion's bands."""

    verdict: str                  # target | acceptable | fail | undetermined | missing
    severity: str | None          # hard | soft (certain fails), "soft or hard" when it straddles the failure line
    certain: bool
    point_verdict: str            # the estimate's own verdict (what a verdict without uncertainty would say)
    between: tuple[str, ...]      # bands of the interval's ends, best first (one when certain)
    lines: tuple[float, ...]      # the threshold lines inside the interval
    interval: Interval
    text: str
    settle: Settle | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict, "severity": self.severity, "certain": self.certain,
            "point_verdict": self.point_verdict, "between": list(self.between), "lines": list(self.lines),
            "interval": self.interval.to_dict(), "text": self.text,
            "settle": self.settle.to_dict() if self.settle else None,
        }


def _band(value: float, criterion: dict) -> tuple[str, str | None]:
    v = verdict(value, criterion)
    return v["verdict"], v["severity"]


def _label(band: tuple[str, str | None]) -> str:
    return f"{band[0]} ({band[1]})" if band[1] else band[0]


def _category_lines(criterion: dict) -> list[float]:
    """Threshold values across which the verdict category (not only the severity) changes."""
    out = []
    for k in _LINES:
        v = criterion.get(k)
        if v is None:
            continue
        eps = 1e-9 * max(1.0, abs(float(v)))
        if _band(float(v) - eps, criterion)[0] != _band(float(v) + eps, criterion)[0]:
            out.append(float(v))
    return sorted(set(out))


def _smallest(lo: int, hi: int, ok) -> int | None:
    """Smallest n in [lo, hi] with ok(n) (ok monotone); None when ok(hi) is false."""
    if hi < lo or not ok(hi):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def settle(interval: Interval, criterion: dict, *, max_seeds: int | None = None,
           max_eval_samples: int | None = None) -> Settle:
    """Seeds / samples needed for the interval to clear the nearest verdict-changing line (see the module doc)."""
    est = interval.estimate
    lines = _category_lines(criterion)
    cap_s = max_seeds or SEARCH_MAX_SEEDS
    cap_m = max_eval_samples or SEARCH_MAX_SAMPLES
    if est is None or not lines:
        return Settle(None, None, None, None, False, None, None,
                      "no estimate to settle" if est is None else "the criterion has no line to clear")
    if interval.scale == "log":  # half-widths are on log(statistic): so is the distance to a line
        lines = [v for v in lines if v > 0]
        if not lines or est <= 0:
            return Settle(None, None, None, None, False, None, None, "no positive line to clear on the log scale")
        line = min(lines, key=lambda v: abs(math.log(v) - math.log(est)))
        margin = abs(math.log(est) - math.log(line))
    else:
        line = min(lines, key=lambda v: abs(v - est))
        margin = abs(est - line)
    s_now, m_now = interval.n_seeds, interval.n_samples
    seeds_known = all(c.variance is not None for c in interval.components if c.kind == "seeds")

    def clears(seeds=None, samples=None) -> bool:
        hw = interval.half_width_at(seeds=seeds, samples=samples)
        return hw is not None and hw < margin

    if margin == 0:
        seeds_needed = samples_needed = None
        both = False
    elif not seeds_known:  # one seed: its spread is unknown; 3 seeds are the fewest that estimate it usefully
        seeds_needed = min(3, cap_s) if cap_s >= 2 else None
        samples_needed, both = None, False
    else:
        seeds_needed = _smallest(s_now + 1, cap_s, lambda n: clears(seeds=n)) if s_now >= 2 else None
        samples_needed = (_smallest(m_now + 1, cap_m, lambda n: clears(samples=n))
                          if m_now > 1 and any(c.kind == "samples" for c in interval.components) else None)
        both = clears(seeds=max(cap_s, s_now), samples=max(cap_m, m_now) if m_now > 1 else None)
    extra_s = seeds_needed - s_now if seeds_needed is not None else None
    extra_m = samples_needed - m_now if samples_needed is not None else None
    caps = f"(caps: {max_seeds or 'no'} seeds, {max_eval_samples or 'no'} samples)"
    if not seeds_known:
        text = f"one seed: train {extra_s} more seed(s) to estimate the seed spread" if extra_s else \
            "one seed and no room under the seed cap: cannot settle within cap"
    elif seeds_needed is None and samples_needed is None:
        text = (f"needs more seeds and more samples together (both at their caps settle it) {caps}" if both
                else f"cannot settle within cap {caps}: CI half-width {interval.half_width_at():.3g} vs margin "
                     f"{margin:.3g} to the line {line:g}")
    else:
        parts = []
        if seeds_needed is not None:
            parts.append(f"{extra_s} more seed(s) ({seeds_needed} per arm)")
        if samples_needed is not None:
            parts.append(f"{extra_m} more evaluation sample(s) ({samples_needed} per trial)")
        text = "estimated to settle with " + " or ".join(parts) + f" (the line {line:g} is {margin:.3g} away)"
    return Settle(line, margin, seeds_needed, samples_needed, bool(both), extra_s, extra_m, text)


def confident_verdict(interval: Interval, criterion: dict, *, max_seeds: int | None = None,
                      max_eval_samples: int | None = None) -> ConfidentVerdict:
    """The verdict of ``interval`` against ``criterion``'s bands (``criteria.yaml`` form, or
    :func:`line_criterion`), with what it would take to settle it when undetermined."""
    level = f"{interval.level:.0%}"
    ci = f"CI [{interval.low:.3g}, {interval.high:.3g}]"
    if math.isnan(interval.low) or math.isnan(interval.high):
        return ConfidentVerdict("missing", None, False, "missing", (), (), interval,
                                f"missing: {interval.note or 'no value'}")
    point = _band(interval.estimate, criterion) if interval.estimate is not None else ("missing", None)
    lo, hi = _band(interval.low, criterion), _band(interval.high, criterion)
    order = {c: i for i, c in enumerate(CATEGORIES)}
    best, worst = sorted((lo, hi), key=lambda b: (order.get(b[0], 9), b[1] == "hard"))
    lines = tuple(sorted(float(criterion[k]) for k in _LINES
                         if criterion.get(k) is not None and interval.low <= float(criterion[k]) <= interval.high))
    caveat = f" ({interval.note})" if interval.note else ""
    if lo[0] == hi[0] and (interval.complete or interval.n_resamples == 0):
        severity = lo[1] if lo[1] == hi[1] else "soft or hard"
        text = f"{lo[0].upper()}{f' ({severity})' if severity else ''}, certain at {level}: {ci}"
        return ConfidentVerdict(lo[0], severity, True, point[0], (lo[0],), lines, interval, text + caveat)
    s = settle(interval, criterion, max_seeds=max_seeds, max_eval_samples=max_eval_samples)
    if lo[0] == hi[0]:  # same band, but the interval misses a component (one seed / no per-sample values)
        text = f"undetermined: {_label(lo)} on this interval, but it is incomplete: {ci}; {s.text}{caveat}"
        return ConfidentVerdict("undetermined", None, False, point[0], (lo[0],), lines, interval, text, s)
    text = f"undetermined between {_label(best)} and {_label(worst)}: {ci}; {s.text}{caveat}"
    return ConfidentVerdict("undetermined", None, False, point[0], (best[0], worst[0]), lines, interval, text, s)


__all__ = ["CATEGORIES", "ConfidentVerdict", "Settle", "confident_verdict", "line_criterion", "settle"]
