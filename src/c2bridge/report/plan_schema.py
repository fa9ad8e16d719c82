"""The claim's entry in the research plan's own schema: a ``c2-adapter-bridging`` block in ``results.yaml``.

The C2 plan's §16 quotes the claim's ``research_plan.yaml`` entry (name, type, phase, status, description,
sub_experiments, success_criteria with target / acceptable / failure / direction, dependencies). A validation
system that knows that file, and not c2bridge, reads this block: the same entry with the measured ``value`` and its
``verdict`` added to each success criterion, and ``status`` set from the study. ``plan_block(results)`` builds it
from a results dict; ``validate_plan_block(block)`` checks it against ``configs/plan_schema.json`` (a JSON Schema
written from §16's text).

The §16 bands (acceptable 0.8, failure 0.6) are looser than the plan's own §6.1 table (0.85, 0.80), which decides
c2bridge's verdicts (``experiments.e2.4.verdicts``); this block keeps research_plan.yaml's bands, as its readers
expect them.
"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

CLAIM = "c2-adapter-bridging"
SUB_EXPERIMENTS = ("e2_1", "e2_2", "e2_3", "e2_4")
# §16, verbatim: the research_plan.yaml entry of the claim
PLAN_ENTRY: dict[str, Any] = {
    "name": "C2: Adapter Bridging",
    "type": "claim",
    "phase": 2,
    "status": "not_started",
    "description": "A small adapter (~10-50M params) can effectively bridge VLM to video decoder",
    "sub_experiments": list(SUB_EXPERIMENTS),
    "success_criteria": {
        "param_efficiency": {
            "target": 0.9,
            "acceptable": 0.8,
            "failure": 0.6,
            "direction": "higher",
            "note": "10M params achieves X% of 100M performance",
        },
    },
    "dependencies": ["p2-hybrid-encoder"],
}
# where each success criterion's value is measured: (experiment, summary key)
MEASURED_AT = {"param_efficiency": ("e2.4", "param_efficiency")}
INTERVAL_KEYS = ("{name}_interval", "{name}_ci")  # summary keys that may hold {low, high, level, method}


def schema_path() -> Path:
    from c2bridge.config import config_dir

    return config_dir("plan_schema.json")


def load_schema() -> dict:
    with open(schema_path(), encoding="utf-8") as fh:
        return json.load(fh)


def plan_block(results: dict) -> dict:
    """``{"c2-adapter-bridging": {...}}`` from a results dict (any stage of a study: missing values -> verdict
    "missing", status from the experiments that ran)."""
    from c2bridge.experiments.criteria import verdict

    experiments = results.get("experiments") or {}
    entry = copy.deepcopy(PLAN_ENTRY)
    sub_status = {}
    for sub in SUB_EXPERIMENTS:
        exp = experiments.get(sub.replace("_", ".")) or {}
        if exp.get("summary") is not None and exp.get("status") in ("complete", "completed"):
            sub_status[sub] = "completed"
        elif exp:
            sub_status[sub] = "in_progress"
        else:
            sub_status[sub] = "not_started"
    states = set(sub_status.values())
    entry["status"] = ("completed" if states == {"completed"} else
                       "not_started" if states == {"not_started"} else "in_progress")
    entry["sub_experiment_status"] = sub_status
    for name, criterion in entry["success_criteria"].items():
        experiment, key = MEASURED_AT[name]
        summary = (experiments.get(experiment) or {}).get("summary") or {}
        value = summary.get(key)
        value = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value) else None
        v = verdict(value, criterion)
        criterion.update(value=value, verdict=v["verdict"], severity=v["severity"])
        interval = (summary.get("intervals") or {}).get(key) or next(
            (summary.get(k.format(name=key)) for k in INTERVAL_KEYS if isinstance(summary.get(k.format(name=key)), dict)),
            None)
        if interval and interval.get("low") is not None and interval.get("high") is not None:
            criterion["interval"] = {k: interval[k] for k in ("low", "high", "level", "method") if k in interval}
    preset = results.get("preset") or {}
    entry["preset"] = str(preset.get("name"))
    entry["is_miniature"] = bool(preset.get("is_miniature"))
    gate = results.get("gate2") or {}
    caveat = gate.get("caveat") or gate.get("miniature")
    entry["caveat"] = str(caveat) if caveat else None
    entry["source"] = "C2 plan §16 (research_plan.yaml entry), measured by c2bridge"
    return {CLAIM: entry}


def validate_plan_block(block: dict) -> None:
    """One ValueError (the first schema violation, with its path) unless ``block`` follows the §16 schema."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(block), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ValueError(f"{CLAIM} block does not follow the research-plan schema at {where}: {err.message}")


__all__ = ["CLAIM", "PLAN_ENTRY", "plan_block", "validate_plan_block", "load_schema", "schema_path"]
