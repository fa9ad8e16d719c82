"""The band one number falls in for a criterion (``criteria.yaml`` form): the study's verdict rule.

Better than ``target`` -> "target"; else better than ``acceptable`` -> "acceptable"; else "fail" with severity
"hard" when worse than ``failure`` and "soft" in the band between (plan §7.2's "investigate before pivoting").
Comparisons are strict, like the plan's tables. ``None``/NaN -> "missing". ``c2bridge.experiments.criteria``
re-exports :func:`verdict`; :mod:`c2bridge.stats.verdicts` applies it to both ends of an interval.
"""
from __future__ import annotations

import math
from typing import Any

VERDICTS = ("target", "acceptable", "fail", "missing")
THRESHOLDS = ("target", "acceptable", "failure")


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def better(a: float, b: float, direction: str) -> bool:
    return a > b if direction == "higher" else a < b


def verdict(value: Any, criterion: dict) -> dict:
    """Verdict of one measured value against one criterion (thresholds, direction).

    Returns ``{"value", "verdict", "severity"}``: verdict in target/acceptable/fail/missing; severity
    hard/soft for fails (None otherwise).
    """
    direction = criterion.get("direction")
    if direction not in ("higher", "lower"):
        raise ValueError(f"criterion needs direction 'higher' or 'lower', got {direction!r}")
    if is_missing(value):
        return {"value": None, "verdict": "missing", "severity": None}
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"criterion value must be a number, got {value!r}")
    target, acceptable, failure = (criterion.get(k) for k in THRESHOLDS)
    if target is not None and better(value, target, direction):
        return {"value": float(value), "verdict": "target", "severity": None}
    if acceptable is not None and better(value, acceptable, direction):
        return {"value": float(value), "verdict": "acceptable", "severity": None}
    if target is None and acceptable is None and not better(failure, value, direction):
        return {"value": float(value), "verdict": "acceptable", "severity": None}  # only a failure line, not crossed
    # worse than failure (or, with no failure line given, simply not good enough) -> hard; the band -> soft
    hard = better(failure, value, direction) if failure is not None else acceptable is None
    return {"value": float(value), "verdict": "fail", "severity": "hard" if hard else "soft"}


__all__ = ["THRESHOLDS", "VERDICTS", "better", "is_missing", "verdict"]
