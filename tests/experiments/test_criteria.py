"""Verdict logic, criteria.yaml, §6.4 decisions and the Gate 2 assessment."""
import pytest

from c2bridge.experiments import criteria as crit
from c2bridge.experiments.registry import gate_metric

HIGHER = {"target": 0.90, "acceptable": 0.85, "failure": 0.80, "direction": "higher"}
LOWER = {"target": 0.18, "acceptable": 0.20, "failure": 0.25, "direction": "lower"}
MINI = {"name": "mini", "is_miniature": True}
FULL = {"name": "full", "is_miniature": False}


@pytest.mark.parametrize("value, verdict, severity", [
    (0.95, "target", None),
    (0.87, "acceptable", None),
    (0.82, "fail", "soft"),      # between acceptable and failure: plan §7.2 soft failure
    (0.70, "fail", "hard"),      # beyond the failure line
    (0.90, "acceptable", None),  # strict: "> 0.90" is not met by 0.90 exactly
    (0.80, "fail", "soft"),      # "< 0.80" is the failure line: 0.80 itself is not past it
])
def test_verdict_higher_is_better(value, verdict, severity):
    v = crit.verdict(value, HIGHER)
    assert (v["verdict"], v["severity"]) == (verdict, severity)


@pytest.mark.parametrize("value, verdict, severity", [
    (0.17, "target", None),
    (0.19, "acceptable", None),
    (0.22, "fail", "soft"),
    (0.30, "fail", "hard"),
    (0.18, "acceptable", None),
])
def test_verdict_lower_is_better(value, verdict, severity):
    v = crit.verdict(value, LOWER)
    assert (v["verdict"], v["severity"]) == (verdict, severity)


def test_a_plain_bad_value_fails_and_directions_are_not_mixed_up():
    # 0.30 is great for a higher-is-better metric with these numbers, terrible for a lower-is-better one
    assert crit.verdict(0.30, LOWER)["verdict"] == "fail"
    assert crit.verdict(0.30, {**LOWER, "direction": "higher"})["verdict"] == "target"


def test_target_only_criterion_and_missing_values():
    only_target = {"target": 0.5, "direction": "lower"}
    assert crit.verdict(0.4, only_target)["verdict"] == "target"
    assert crit.verdict(0.6, only_target) == {"value": 0.6, "verdict": "fail", "severity": "hard"}
    only_failure = {"failure": 0.25, "direction": "lower"}  # plan §7.1.2: just a hard-failure line
    assert crit.verdict(0.2, only_failure)["verdict"] == "acceptable"
    assert crit.verdict(0.3, only_failure) == {"value": 0.3, "verdict": "fail", "severity": "hard"}
    assert crit.verdict(None, HIGHER)["verdict"] == "missing"
    assert crit.verdict(float("nan"), HIGHER)["verdict"] == "missing"
    with pytest.raises(ValueError, match="direction"):
        crit.verdict(0.5, {"target": 1})
    with pytest.raises(ValueError, match="number"):
        crit.verdict("0.5", HIGHER)


def test_validate_rejects_bad_criteria():
    with pytest.raises(ValueError, match="not ordered"):
        crit.validate_criteria({"experiments": {"e2.1": {"x": {"target": 0.8, "acceptable": 0.9, "direction": "higher"}}}})
    with pytest.raises(ValueError, match="direction"):
        crit.validate_criteria({"experiments": {"e2.1": {"x": {"target": 0.8, "direction": "up"}}}})
    with pytest.raises(ValueError, match="at least one"):
        crit.validate_criteria({"experiments": {"e2.1": {"x": {"direction": "up" and "lower"}}}})


def test_shipped_criteria_follow_the_plan():
    c = crit.load_criteria()
    pe = c["experiments"]["e2.4"]["param_efficiency"]
    assert (pe["target"], pe["acceptable"], pe["failure"], pe["direction"]) == (0.90, 0.85, 0.80, "higher")  # §6.1
    assert pe["alternative"]["failure"] == 0.6  # §16's looser bands, reported alongside
    d = c["experiments"]["e2.4"]["distance_10m"]
    assert (d["target"], d["acceptable"], d["failure"], d["direction"]) == (0.18, 0.20, 0.25, "lower")
    assert [p["experiment"] for p in c["decision_points"]] == ["e2.1", "e2.2", "e2.3", "e2.4"]
    assert {b["name"]: b["lpips"] for b in c["quoted_baselines"]} == {"P2 fusion module": 0.162, "C1 VLM-only": 0.264}


def test_absolute_thresholds_are_marked_not_comparable_on_a_miniature():
    c = crit.load_criteria()["experiments"]["e2.4"]
    out = crit.assess({"param_efficiency": 0.93, "distance_10m": 0.3, "spatial_iou": 0.8}, c, MINI, "one_minus_ssim")
    assert out["param_efficiency"]["comparable"] and out["param_efficiency"]["verdict"] == "target"
    assert out["distance_10m"]["verdict"] == "fail" and not out["distance_10m"]["comparable"]
    assert "one_minus_ssim" in out["distance_10m"]["note"]
    assert out["latency_ms"]["verdict"] == "missing"
    assert out["param_efficiency"]["alternative"]["verdict"] == "target"
    full = crit.assess({"distance_10m": 0.3}, c, FULL, "lpips_alex")
    assert full["distance_10m"]["comparable"]


def _decide(e21_eff, e24_eff, best_identified=True, recipe=True, unstable=False):
    c = crit.load_criteria()
    summaries = {"e2.1": {"param_efficiency": e21_eff}, "e2.2": {"best_arch_identified": best_identified},
                 "e2.3": {"recipe_found": recipe, "all_unstable": unstable},
                 "e2.4": {"param_efficiency": e24_eff}}
    verdicts = {n: crit.assess(s, c["experiments"].get(n, {}), FULL, "lpips_alex") for n, s in summaries.items()}
    d = crit.decisions(summaries, c, FULL, "lpips_alex")
    return d, crit.gate2(summaries, verdicts, d, c, FULL, gate_metric())


def test_decisions_and_gate_pass():
    d, g = _decide(0.95, 0.93)
    assert [p["decision"] for p in d["decision_points"]] == ["Continue", "Continue", "Continue", "Pass Gate"]
    assert g["c2"] == "pass"
    assert "Q3" in g["overall"]  # Gate 2 also needs Q3: never decided here


def test_decisions_no_go_and_hard_failure_fail_the_gate():
    d, g = _decide(0.65, 0.95)
    assert d["decision_points"][0]["decision"] == "Increase min size (pivot §8.1)"
    assert any(f["id"] == "no_efficiency_gain" and f["fired"] for f in d["failures"])
    assert g["c2"] == "fail"


def test_marginal_efficiency_is_investigate_with_a_soft_failure():
    d, g = _decide(0.9, 0.82)
    assert d["decision_points"][3]["decision"] == "Investigate"
    assert g["c2"] == "investigate" and "marginal_efficiency" in g["soft_failures"]


def test_decision_points_of_experiments_not_run():
    c = crit.load_criteria()
    d = crit.decisions({"e2.1": {"param_efficiency": 0.9}}, c, MINI, "one_minus_ssim")
    assert [p["decision"] for p in d["decision_points"]][1:] == ["not run"] * 3
    g = crit.gate2({"e2.1": {}}, {}, d, c, MINI, gate_metric())
    assert g["c2"] == "not assessed" and "miniature" in g and "E2.4" in g["reason"]
