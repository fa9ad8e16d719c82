"""Success criteria, verdicts, go/no-go decisions and the Gate 2 assessment -- all from ``criteria.yaml``.

Verdicts: better than ``target`` -> "target"; else better than ``acceptable`` -> "acceptable"; else "fail" with
severity "hard" when worse than ``failure`` and "soft" in the band between (plan §7.2's "investigate before
pivoting"). Comparisons are strict, like the plan's tables. ``None``/NaN -> "missing".
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

VERDICTS = ("target", "acceptable", "fail", "missing")
_THRESHOLDS = ("target", "acceptable", "failure")


def default_criteria_path() -> Path:
    from c2bridge.config import experiments_dir

    return experiments_dir() / "criteria.yaml"


def load_criteria(path: str | Path | None = None) -> dict:
    from c2bridge._io import read_yaml

    path = Path(path) if path else default_criteria_path()
    if not path.is_file():
        raise FileNotFoundError(f"criteria file {path} not found; expected a YAML like configs/experiments/criteria.yaml")
    crit = read_yaml(path) or {}
    validate_criteria(crit, source=str(path))
    return crit


def validate_criteria(crit: dict, source: str = "criteria") -> None:
    """Check every criterion has a direction and monotone thresholds (one clear ValueError otherwise)."""
    groups = dict(crit.get("experiments") or {})
    groups["miniature_checks"] = crit.get("miniature_checks") or {}
    for group, metrics in groups.items():
        for name, c in (metrics or {}).items():
            where = f"{source}: {group}.{name}"
            if c.get("direction") not in ("higher", "lower"):
                raise ValueError(f"{where}: direction must be 'higher' or 'lower', got {c.get('direction')!r}")
            values = [c[k] for k in _THRESHOLDS if c.get(k) is not None]
            if not values:
                raise ValueError(f"{where}: needs at least one of target/acceptable/failure")
            # higher is better -> target >= acceptable >= failure; lower is better -> the reverse
            ordered = sorted(values, reverse=c["direction"] == "higher")
            if values != ordered:
                raise ValueError(
                    f"{where}: thresholds {dict((k, c.get(k)) for k in _THRESHOLDS)} are not ordered for "
                    f"direction={c['direction']} (expected target, acceptable, failure from best to worst)"
                )


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _better(a: float, b: float, direction: str) -> bool:
    return a > b if direction == "higher" else a < b


def verdict(value: Any, criterion: dict) -> dict:
    """Verdict of one measured value against one criterion (thresholds, direction).

    Returns ``{"value", "verdict", "severity"}``: verdict in target/acceptable/fail/missing; severity
    hard/soft for fails (None otherwise).
    """
    direction = criterion.get("direction")
    if direction not in ("higher", "lower"):
        raise ValueError(f"criterion needs direction 'higher' or 'lower', got {direction!r}")
    if _is_missing(value):
        return {"value": None, "verdict": "missing", "severity": None}
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"criterion value must be a number, got {value!r}")
    target, acceptable, failure = (criterion.get(k) for k in _THRESHOLDS)
    if target is not None and _better(value, target, direction):
        return {"value": float(value), "verdict": "target", "severity": None}
    if acceptable is not None and _better(value, acceptable, direction):
        return {"value": float(value), "verdict": "acceptable", "severity": None}
    if target is None and acceptable is None and not _better(failure, value, direction):
        return {"value": float(value), "verdict": "acceptable", "severity": None}  # only a failure line, not crossed
    # worse than failure (or, with no failure line given, simply not good enough) -> hard; the band -> soft
    hard = _better(failure, value, direction) if failure is not None else acceptable is None
    return {"value": float(value), "verdict": "fail", "severity": "hard" if hard else "soft"}


def comparable(criterion: dict, preset: dict, distance: str | None) -> tuple[bool, str | None]:
    """Whether the plan's absolute thresholds apply to this run (preset, distance); a reason when not."""
    if criterion.get("basis", "relative") != "absolute":
        if criterion.get("distance") and distance and criterion["distance"] != distance:
            return False, f"measured with {distance}, the plan's numbers are {criterion['distance']}"
        return True, None
    reasons = []
    if preset.get("is_miniature"):
        reasons.append(f"the {preset.get('name')} preset is a miniature; the plan's absolute numbers are for the full models")
    if criterion.get("distance") and distance != criterion["distance"]:
        reasons.append(f"measured with {distance}, the plan's threshold is for {criterion['distance']}")
    if criterion.get("hardware") and preset.get("is_miniature"):
        reasons.append(f"the plan's threshold is for {criterion['hardware']}")
    return (not reasons), ("; ".join(reasons) or None)


def assess(values: dict, criteria: dict, preset: dict, distance: str | None) -> dict:
    """Verdict for every criterion in ``criteria`` (name -> criterion) given ``values`` (name -> number)."""
    out = {}
    for name, crit in (criteria or {}).items():
        v = verdict(values.get(name), crit)
        ok, why = comparable(crit, preset, distance)
        v.update(
            {
                "plan_metric": crit.get("plan_metric", name),
                "direction": crit["direction"],
                **{k: crit.get(k) for k in _THRESHOLDS},
                "basis": crit.get("basis", "relative"),
                "comparable": ok,
                "note": why,
                "source": crit.get("source"),
            }
        )
        if crit.get("alternative"):
            alt = {**crit, **{k: crit["alternative"].get(k) for k in _THRESHOLDS}}
            v["alternative"] = {
                **verdict(values.get(name), alt),
                "source": crit["alternative"].get("source"),
                **{k: alt.get(k) for k in _THRESHOLDS},
            }
        out[name] = v
    return out


def _compare(value: Any, op: str, threshold: Any) -> bool | None:
    if _is_missing(value):
        return None
    if op == "==":
        return value == threshold
    if op == "between":
        lo, hi = threshold
        return lo <= value <= hi
    if op not in (">", ">=", "<", "<="):
        raise ValueError(f"unknown op {op!r}; expected one of >, >=, <, <=, ==, between")
    return {">": value > threshold, ">=": value >= threshold, "<": value < threshold, "<=": value <= threshold}[op]


def _lookup(summaries: dict, metric: str) -> Any:
    experiment, _, key = metric.rpartition(".")  # "e2.1.param_efficiency" -> ("e2.1", "param_efficiency")
    return (summaries.get(experiment) or {}).get(key)


def decisions(summaries: dict, criteria: dict, preset: dict, distance: str | None) -> dict:
    """Plan §6.4 decision points and §7 failure rules, given every experiment's summary (experiment -> dict).

    Returns ``{"decision_points": [...], "failures": [...]}``; a decision point whose experiment did not run has
    ``met: None`` and ``decision: "not run"``.
    """
    points = []
    for dp in criteria.get("decision_points") or []:
        ran = dp["experiment"] in summaries
        value = _lookup(summaries, dp["metric"]) if ran else None
        met = _compare(value, dp["op"], dp["threshold"]) if ran else None
        points.append(
            {
                **{k: dp.get(k) for k in ("experiment", "checkpoint", "timing", "criterion", "metric")},
                "value": value,
                "met": met,
                "decision": "not run" if not ran else ("undetermined" if met is None else dp["go"] if met else dp["no_go"]),
            }
        )
    failures = []
    for rule in criteria.get("failure_rules") or []:
        if rule["experiment"] not in summaries:
            continue
        value = _lookup(summaries, rule["metric"])
        fired = _compare(value, rule["op"], rule["threshold"])
        ok, why = comparable(rule, preset, distance)
        failures.append(
            {
                **{k: rule.get(k) for k in ("id", "kind", "experiment", "description", "metric", "action")},
                "value": value,
                "fired": fired,
                "comparable": ok,
                "note": why,
            }
        )
    return {"decision_points": points, "failures": failures}


def gate2(summaries: dict, verdicts: dict, decisions_: dict, criteria: dict, preset: dict,
          primary_metric: str = "") -> dict:
    """Gate 2 assessment (C2's part) from the primary verdict (``primary_metric`` = ``<experiment>.<criterion>``,
    declared by the experiment whose ``ExperimentInfo.gate`` names it), the decision points and the hard failures."""
    g = criteria.get("gate2") or {}
    experiment, _, metric = primary_metric.rpartition(".")
    primary = (verdicts.get(experiment) or {}).get(metric) or {}
    hard = [f for f in decisions_.get("failures", []) if f["kind"] == "hard" and f["fired"] and f["comparable"]]
    soft = [f for f in decisions_.get("failures", []) if f["kind"] == "soft" and f["fired"] and f["comparable"]]
    if experiment not in summaries or primary.get("verdict") in (None, "missing"):
        c2 = "not assessed"
        reason = f"{experiment.upper() or 'the primary experiment'} has not produced {metric or 'its primary metric'}"
    elif hard:
        c2 = "fail"
        reason = "hard failure: " + "; ".join(f["description"] for f in hard)
    elif primary["verdict"] == "target":
        c2 = "pass"
        reason = f"{metric} {primary['value']:.3f} > {primary.get('target')} and no hard failure"
    else:
        c2 = "investigate"
        reason = f"{metric} {primary['value']:.3f} is '{primary['verdict']}' (target > {primary.get('target')})"
    out = {
        "name": g.get("name", "Gate 2"),
        "c2": c2,
        "reason": reason,
        "soft_failures": [f["id"] for f in soft],
        "also_requires": g.get("also_requires", []),
        "overall": "not decidable here: Gate 2 also requires "
        + ", ".join(r["name"] for r in g.get("also_requires", []))
        + " (out of scope for c2bridge)",
    }
    from c2bridge.presets import get_preset

    note = get_preset(preset.get("name")).report_note("gate2")  # a miniature's Gate 2 is not a decision
    if note:
        out["miniature"] = note
    return out


def assess_study(results: dict, criteria: dict, primary_metric: str = "") -> None:
    """Verdicts for every summarized experiment, the §6.4 decisions, failure rules, Gate 2 (on ``primary_metric``,
    see ``gate2``) and the miniature's own checks, written into ``results`` (experiments.<id>.verdicts,
    decisions, gate2, miniature_checks)."""
    preset = results["preset"]
    distance = (results.get("distance") or {}).get("name")
    summaries = {n: e["summary"] for n, e in results["experiments"].items() if e.get("summary") is not None}
    verdicts = {}
    for name, summary in summaries.items():
        v = assess(summary, (criteria.get("experiments") or {}).get(name) or {}, preset, distance)
        results["experiments"][name]["verdicts"] = v
        verdicts[name] = v
    decided = decisions(summaries, criteria, preset, distance)
    results["decisions"] = decided
    results["gate2"] = gate2(summaries, verdicts, decided, criteria, preset, primary_metric)
    if preset.get("is_miniature"):
        values = {}
        for summary in summaries.values():
            values.update(summary.get("miniature_checks") or {})
        checks = {k: c for k, c in (criteria.get("miniature_checks") or {}).items() if k in values}
        results["miniature_checks"] = assess(values, checks, preset, distance)
        failed = [k for k, v in results["miniature_checks"].items() if v["verdict"] == "fail"]
        if failed:  # ratios of numbers that do not respond to the adapter say nothing
            results["gate2"]["valid"] = False
            results["gate2"]["caveat"] = (
                "not meaningful: the miniature's own checks failed (" + ", ".join(failed) + "), i.e. its "
                "adapters do not clearly beat an untrained adapter / zero conditioning or its scaling curve is "
                "flat, so param_efficiency compares numbers that barely respond to the adapter")
