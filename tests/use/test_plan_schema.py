"""The research-plan block of results.yaml validates against the JSON Schema written from the plan's §16, and the
schema catches what a reader of research_plan.yaml relies on."""
from __future__ import annotations

import copy

import pytest

from c2bridge.report.plan_schema import CLAIM, plan_block, validate_plan_block


def _results(param_efficiency=0.93, status="complete", experiments=("e2.1", "e2.2", "e2.3", "e2.4")):
    exps = {name: {"status": status, "summary": {}} for name in experiments}
    if "e2.4" in exps:
        exps["e2.4"]["summary"] = {"param_efficiency": param_efficiency,
                                   "param_efficiency_interval": {"low": 0.88, "high": 0.97, "level": 0.95,
                                                                 "method": "bootstrap"}}
    return {"preset": {"name": "mini", "is_miniature": True}, "experiments": exps,
            "gate2": {"caveat": "computed on the miniature"}}


@pytest.mark.parametrize("value, verdict, severity", [(0.93, "target", None), (0.85, "acceptable", None),
                                                      (0.7, "fail", "soft"), (0.5, "fail", "hard"),
                                                      (None, "missing", None)])
def test_block_validates_with_the_plans_bands(value, verdict, severity):
    block = plan_block(_results(value))
    validate_plan_block(block)
    crit = block[CLAIM]["success_criteria"]["param_efficiency"]
    assert (crit["target"], crit["acceptable"], crit["failure"], crit["direction"]) == (0.9, 0.8, 0.6, "higher")
    assert crit["value"] == value and crit["verdict"] == verdict and crit["severity"] == severity
    assert block[CLAIM]["sub_experiments"] == ["e2_1", "e2_2", "e2_3", "e2_4"]


def test_status_follows_the_study():
    assert plan_block(_results())[CLAIM]["status"] == "completed"
    partial = plan_block(_results(experiments=("e2.1",)))
    assert partial[CLAIM]["status"] == "in_progress"
    assert partial[CLAIM]["sub_experiment_status"] == {"e2_1": "completed", "e2_2": "not_started",
                                                      "e2_3": "not_started", "e2_4": "not_started"}
    fresh = plan_block({"experiments": {}, "preset": {"name": "mini"}})
    validate_plan_block(fresh)
    assert fresh[CLAIM]["status"] == "not_started"


def test_interval_is_carried_when_the_study_has_one():
    crit = plan_block(_results())[CLAIM]["success_criteria"]["param_efficiency"]
    assert crit["interval"] == {"low": 0.88, "high": 0.97, "level": 0.95, "method": "bootstrap"}


@pytest.mark.parametrize("path, bad", [
    (("success_criteria", "param_efficiency", "target"), 0.85),  # not the plan's band
    (("success_criteria", "param_efficiency", "verdict"), "pass"),  # not a verdict
    (("success_criteria", "param_efficiency", "direction"), "up"),
    (("status",), "done"),
    (("phase",), 3),
    (("sub_experiments",), ["e2_1", "e2_5"]),
])
def test_schema_rejects_what_the_plan_does_not_say(path, bad):
    block = copy.deepcopy(plan_block(_results()))
    node = block[CLAIM]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = bad
    with pytest.raises(ValueError, match="research-plan schema at " + CLAIM + "/" + "/".join(path)):
        validate_plan_block(block)


def test_missing_value_field_is_refused():
    block = plan_block(_results())
    del block[CLAIM]["success_criteria"]["param_efficiency"]["value"]
    with pytest.raises(ValueError, match="'value' is a required property"):
        validate_plan_block(block)


def test_a_study_writes_the_block_into_results_yaml(tmp_path):
    """What a validation system reads: results.yaml as the study writes it (fake trials, all four experiments)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    from exp_fakes import FakeBackend

    from c2bridge.experiments.runner import Study
    from c2bridge.report.results import load_results

    study = Study(tmp_path / "run", preset="tiny", backend=FakeBackend(), log=lambda s: None, render=False)
    study.run(["all"])
    on_disk = load_results(tmp_path / "run")
    block = {CLAIM: on_disk[CLAIM]}
    validate_plan_block(block)
    crit = block[CLAIM]["success_criteria"]["param_efficiency"]
    assert crit["value"] == pytest.approx(on_disk["experiments"]["e2.4"]["summary"]["param_efficiency"])
    assert block[CLAIM]["status"] == "completed" and crit["verdict"] in ("target", "acceptable", "fail")
