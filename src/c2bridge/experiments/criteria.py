"""Success criteria, verdicts, go/no-go decisions and the Gate 2 assessment -- all from ``criteria.yaml``.

Verdicts (the rule is ``c2bridge.stats.bands.verdict``, re-exported here): better than ``target`` -> "target"; else
better than ``acceptable`` -> "acceptable"; else "fail" with severity "hard" when worse than ``failure`` and "soft"
in the band between (plan §7.2's "investigate before pivoting"). Comparisons are strict, like the plan's tables.
``None``/NaN -> "missing".

With uncertainty: when an experiment's summary carries an interval for a criterion (``summary.intervals.<name>``),
the verdict is the interval's (``c2bridge.stats.confident_verdict``): "certain" when both ends fall in one band,
else "undetermined" between the bands of its ends, with the seeds / samples estimated to settle it. The decision
points, the failure rules and Gate 2 use the same intervals: a decision whose interval straddles its line is
"undetermined", never a guess.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from c2bridge.stats import Interval, confident_verdict, line_criterion
from c2bridge.stats.bands import VERDICTS, verdict  # noqa: F401 (the study's verdict rule, re-exported)

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


def interval_record(iv: Interval) -> dict:
    """The short form of an interval a verdict carries (non-finite ends -> None)."""
    out = {"low": iv.low, "high": iv.high, "estimate": iv.estimate, "level": iv.level, "method": iv.method,
           "n_resamples": iv.n_resamples, "n_seeds": iv.n_seeds, "n_samples": iv.n_samples, "note": iv.note}
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def _interval(intervals: dict | None, name: str) -> Interval | None:
    d = (intervals or {}).get(name)
    return Interval.from_dict(d) if isinstance(d, dict) and d.get("low") is not None else None


def _caps(caps: dict | None) -> dict:
    caps = caps or {}
    return {"max_seeds": caps.get("max_seeds"), "max_eval_samples": caps.get("max_eval_samples")}


def with_confidence(v: dict, iv: Interval | None, criterion: dict, caps: dict | None = None) -> dict:
    """A point verdict ``v`` (``verdict()``'s dict) -> the interval's verdict: ``verdict`` becomes target /
    acceptable / fail when the whole interval lies in that band, else "undetermined"; ``point_verdict`` keeps the
    estimate's own band, ``confidence`` says which (with the CI and the settle estimate). No interval: ``certain``
    None (a point verdict, e.g. an exact number such as weight memory)."""
    if iv is None:
        v["certain"] = None
        return v
    cv = confident_verdict(iv, criterion, **_caps(caps))
    if cv.verdict == "missing" and v.get("verdict") != "missing":
        v["certain"] = None
        v["confidence"] = f"no interval: {cv.text}"
        return v
    v.update(point_verdict=v.get("verdict"), verdict=cv.verdict,
             severity=cv.severity if cv.verdict == "fail" else None, certain=cv.certain, between=list(cv.between),
             interval=interval_record(iv), confidence=cv.text, settle=cv.settle.text if cv.settle else None)
    if v.get("value") is None and iv.estimate is not None:
        v["value"] = iv.estimate
    return v


def assess(values: dict, criteria: dict, preset: dict, distance: str | None, intervals: dict | None = None,
           caps: dict | None = None) -> dict:
    """Verdict for every criterion in ``criteria`` (name -> criterion) given ``values`` (name -> number) and, where
    ``intervals`` (name -> ``Interval.to_dict()``) has one, its interval (see ``with_confidence``; ``caps``: the
    sequential design's ``max_seeds`` / ``max_eval_samples`` for the settle estimates)."""
    out = {}
    for name, crit in (criteria or {}).items():
        iv = _interval(intervals, name)
        v = with_confidence(verdict(values.get(name), crit), iv, crit, caps)
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
                **with_confidence(verdict(values.get(name), alt), iv, alt, caps),
                "source": crit["alternative"].get("source"),
                **{k: alt.get(k) for k in _THRESHOLDS},
            }
        out[name] = v
    return out


def line_decision(iv: Interval | None, op: str, threshold: Any, caps: dict | None = None) -> dict | None:
    """Whether ``value <op> threshold`` holds for the whole interval: ``{"met": True/False/None, "text",
    "interval", "settle"}`` (None: the interval straddles the line, i.e. undetermined); None without an interval
    or for ops other than > >= < <= between."""
    if iv is None or op not in (">", ">=", "<", "<=", "between"):
        return None
    if math.isnan(iv.low) or math.isnan(iv.high):
        return None
    ci = f"CI [{iv.low:.3g}, {iv.high:.3g}]"
    if op == "between":
        lo, hi = threshold
        met = True if lo <= iv.low and iv.high <= hi else False if iv.high < lo or iv.low > hi else None
        text = {True: f"inside [{lo:g}, {hi:g}]", False: f"outside [{lo:g}, {hi:g}]",
                None: f"straddles [{lo:g}, {hi:g}]"}[met]
        return {"met": met, "text": f"{text}, certain at {iv.level:.0%}: {ci}" if met is not None else f"undetermined: "
                f"{ci} {text}", "interval": interval_record(iv), "settle": None}
    cv = confident_verdict(iv, line_criterion(op, float(threshold)), **_caps(caps))
    met = (cv.verdict == "acceptable") if cv.certain else None
    settle = cv.settle.text if cv.settle else ""
    if met is not None:
        text = f"{'met' if met else 'not met'} (value {op} {threshold:g}), certain at {iv.level:.0%}: {ci}"
    elif len(cv.between) == 1:  # one side of the line, but the interval misses a variance component (one seed)
        side = "meets" if cv.between[0] == "acceptable" else "misses"
        text = (f"undetermined: {ci} {side} value {op} {threshold:g}, but the interval is incomplete "
                f"({iv.note or 'a variance component is missing'}); {settle}")
    else:
        text = f"undetermined: {ci} straddles {threshold:g}; {settle}"
    return {"met": met, "text": text, "interval": interval_record(iv), "settle": cv.settle.text if cv.settle else None}


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


def _lookup_interval(summaries: dict, metric: str) -> tuple[Interval | None, dict]:
    experiment, _, key = metric.rpartition(".")
    summary = summaries.get(experiment) or {}
    return _interval(summary.get("intervals"), key), (summary.get("decide") or {}).get("caps") or {}


def decide_point(dp: dict, summaries: dict) -> dict:
    """One §6.4 decision point given the summaries: ``{..., "value", "met", "decision", "confidence"}``; with an
    interval the decision is taken on the whole interval ("undetermined" when it straddles the line)."""
    ran = dp["experiment"] in summaries
    value = _lookup(summaries, dp["metric"]) if ran else None
    out = {k: dp.get(k) for k in ("experiment", "checkpoint", "timing", "criterion", "metric")}
    if not ran:
        return {**out, "value": None, "met": None, "decision": "not run"}
    iv, caps = _lookup_interval(summaries, dp["metric"])
    confident = line_decision(iv, dp["op"], dp["threshold"], caps)
    if confident is None:
        met = _compare(value, dp["op"], dp["threshold"])
        return {**out, "value": value, "met": met,
                "decision": "undetermined" if met is None else dp["go"] if met else dp["no_go"]}
    met = confident["met"]
    decision = dp["go"] if met else dp["no_go"] if met is False else "undetermined"
    return {**out, "value": value if value is not None else iv.estimate, "met": met, "decision": decision,
            "between": [dp["go"], dp["no_go"]] if met is None else None, "confidence": confident["text"],
            "interval": confident["interval"], "settle": confident["settle"]}


def decisions(summaries: dict, criteria: dict, preset: dict, distance: str | None) -> dict:
    """Plan §6.4 decision points and §7 failure rules, given every experiment's summary (experiment -> dict).

    Returns ``{"decision_points": [...], "failures": [...]}``; a decision point whose experiment did not run has
    ``met: None`` and ``decision: "not run"``; one whose interval straddles its line ``decision: "undetermined"``.
    A failure rule ``fired`` True / False, or None when its interval straddles the line.
    """
    points = [decide_point(dp, summaries) for dp in criteria.get("decision_points") or []]
    failures = []
    for rule in criteria.get("failure_rules") or []:
        if rule["experiment"] not in summaries:
            continue
        value = _lookup(summaries, rule["metric"])
        iv, caps = _lookup_interval(summaries, rule["metric"])
        confident = line_decision(iv, rule["op"], rule["threshold"], caps)
        fired = confident["met"] if confident is not None else _compare(value, rule["op"], rule["threshold"])
        ok, why = comparable(rule, preset, distance)
        failures.append(
            {
                **{k: rule.get(k) for k in ("id", "kind", "experiment", "description", "metric", "action")},
                "value": value,
                "fired": fired,
                "comparable": ok,
                "note": why,
                **({"confidence": confident["text"], "interval": confident["interval"]} if confident else {}),
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
    open_hard = [f for f in decisions_.get("failures", [])
                 if f["kind"] == "hard" and f["fired"] is None and f.get("confidence") and f["comparable"]]
    value = primary.get("value")
    shown = f"{value:.3f}" if isinstance(value, (int, float)) else "n/a"
    ci = primary.get("interval") or {}
    ci_text = f" (95% CI [{ci['low']:.3g}, {ci['high']:.3g}])" if ci.get("low") is not None and ci.get("high") is not None else ""
    if experiment not in summaries or primary.get("verdict") in (None, "missing"):
        c2 = "not assessed"
        reason = f"{experiment.upper() or 'the primary experiment'} has not produced {metric or 'its primary metric'}"
    elif hard:
        c2 = "fail"
        reason = "hard failure: " + "; ".join(f["description"] for f in hard)
    elif primary["verdict"] == "undetermined" and "target" in (primary.get("between") or []):
        c2 = "undetermined"
        reason = f"{metric} {shown}: {primary.get('confidence')}"
    elif primary["verdict"] == "target" and open_hard:
        c2 = "undetermined"
        reason = (f"{metric} {shown}{ci_text} is 'target', but a hard failure is undetermined: "
                  + "; ".join(f"{f['description']} ({f['confidence']})" for f in open_hard))
    elif primary["verdict"] == "target":
        c2 = "pass"
        reason = (f"{metric} {shown}{ci_text} > {primary.get('target')}"
                  + (", certain at 95%" if primary.get("certain") else "") + " and no hard failure")
    else:
        c2 = "investigate"
        band = (" / ".join(primary.get("between") or []) if primary["verdict"] == "undetermined"
                else primary["verdict"])
        reason = (f"{metric} {shown}{ci_text} is '{band}' (target > {primary.get('target')})"
                  + (", certain at 95%" if primary.get("certain") else ""))
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
        v = assess(summary, (criteria.get("experiments") or {}).get(name) or {}, preset, distance,
                   intervals=summary.get("intervals"), caps=(summary.get("decide") or {}).get("caps"))
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
