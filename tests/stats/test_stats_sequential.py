"""The sequential design's next round: who gets which seeds / samples, and why it stops."""
import numpy as np
import pytest
from stats_sim import study

from c2bridge.stats import Component, Interval, efficiency_interval
from c2bridge.stats.sequential import (
    CAP_REACHED, CLEARED, MISSING, NOT_DECIDING, UNSETTLEABLE, ArmState, next_round,
)
from c2bridge.stats.verdicts import confident_verdict

HIGHER = {"target": 0.90, "acceptable": 0.85, "failure": 0.80, "direction": "higher"}
ARMS = {"10m": ArmState((0, 1, 2), 64), "100m": ArmState((0, 1, 2), 64)}
DECIDING = {"e2.1.param_efficiency": ["10m", "100m"]}


def verdict(est, low, high, seeds=3, samples=64, var_seed=4e-4, var_sample=1e-6, **caps):
    comps = (Component("seeds", "seeds", seeds, var_seed), Component("samples", "samples", samples, var_sample))
    return confident_verdict(Interval(est, low, high, 0.95, "t", 1000, seeds, samples, components=comps),
                             HIGHER, **caps)


def test_stops_when_cleared_or_not_deciding():
    certain = {"e2.1.param_efficiency": verdict(0.75, 0.70, 0.78)}
    plan = next_round(certain, DECIDING, ARMS, max_seeds=10, max_eval_samples=256)
    assert plan.stop and plan.reason == CLEARED
    assert next_round(certain, {}, ARMS, max_seeds=10, max_eval_samples=256).reason == NOT_DECIDING
    assert next_round(certain, {"other": ["10m"]}, ARMS, max_seeds=10, max_eval_samples=256).reason == NOT_DECIDING
    nothing = Interval(None, float("nan"), float("nan"), 0.95, "n/a", 0, 0, 1)
    missing = {"e2.1.param_efficiency": confident_verdict(nothing, HIGHER)}
    assert next_round(missing, DECIDING, ARMS, max_seeds=10, max_eval_samples=256).reason == MISSING


def test_adds_the_same_new_seeds_to_every_deciding_arm_with_bounded_growth():
    v = {"e2.1.param_efficiency": verdict(0.80, 0.70, 0.90, var_seed=2e-3, max_seeds=40, max_eval_samples=256)}
    assert v["e2.1.param_efficiency"].settle.seeds_needed > 6
    plan = next_round(v, DECIDING, ARMS, max_seeds=40, max_eval_samples=256)
    assert not plan.stop and plan.reason is None
    assert plan.add_seeds == {"10m": (3, 4, 5), "100m": (3, 4, 5)}  # x2 at most per round, paired
    assert plan.eval_samples == {}
    assert set(plan.to_dict()) == {"stop", "reason", "add_seeds", "eval_samples", "notes"}


def test_prefers_evaluation_samples_when_they_settle_it_cheaply():
    v = {"e2.1.param_efficiency": verdict(0.80, 0.74, 0.86, var_seed=1e-6, var_sample=4e-4,
                                          max_seeds=10, max_eval_samples=4096)}
    needed = v["e2.1.param_efficiency"].settle.samples_needed
    plan = next_round(v, DECIDING, ARMS, max_seeds=10, max_eval_samples=4096)
    assert plan.add_seeds == {} and plan.eval_samples == {"10m": min(needed, 128), "100m": min(needed, 128)}


def test_stops_at_the_cap_or_when_the_cap_cannot_settle_it():
    at_cap = {"10m": ArmState(tuple(range(6)), 256), "100m": ArmState(tuple(range(6)), 256)}
    v = {"e2.1.param_efficiency": verdict(0.80, 0.70, 0.90, seeds=6, samples=256, max_seeds=6, max_eval_samples=256)}
    assert next_round(v, DECIDING, at_cap, max_seeds=6, max_eval_samples=256).reason == CAP_REACHED
    far = {"e2.1.param_efficiency": verdict(0.85001, 0.70, 1.0, max_seeds=5, max_eval_samples=128)}
    plan = next_round(far, DECIDING, ARMS, max_seeds=5, max_eval_samples=128)
    assert plan.stop and plan.reason == UNSETTLEABLE
    forced = next_round(far, DECIDING, ARMS, max_seeds=5, max_eval_samples=128, exhaust_caps=True)
    assert not forced.stop and forced.add_seeds == {"10m": (3, 4), "100m": (3, 4)}
    with pytest.raises(ValueError, match="not in arms"):
        next_round(far, {"e2.1.param_efficiency": ["30m"]}, ARMS, max_seeds=5, max_eval_samples=128)


def test_a_simulated_sequential_study_stops_within_its_caps():
    rng = np.random.default_rng(9)
    kw = dict(mu=(0.29, 0.26), sd_seed=0.012, sd_sample=0.03, sd_resid=0.01)  # true efficiency 0.885
    max_seeds, max_samples = 12, 128
    arms = {"10m": ArmState((0, 1, 2), 32), "100m": ArmState((0, 1, 2), 32)}
    for rounds in range(10):
        s, m = len(arms["10m"].seeds), arms["10m"].n_eval_samples
        v = confident_verdict(efficiency_interval(*study(rng, seeds=s, samples=m, **kw), n_resamples=200),
                              HIGHER, max_seeds=max_seeds, max_eval_samples=max_samples)
        plan = next_round({"eff": v}, {"eff": ["10m", "100m"]}, arms, max_seeds=max_seeds,
                          max_eval_samples=max_samples, exhaust_caps=True)
        if plan.stop:
            break
        arms = {a: ArmState(st.seeds + plan.add_seeds.get(a, ()), plan.eval_samples.get(a, st.n_eval_samples))
                for a, st in arms.items()}
        assert len(arms["10m"].seeds) <= max_seeds and arms["10m"].n_eval_samples <= max_samples
    assert plan.stop and plan.reason in (CLEARED, CAP_REACHED) and rounds < 10
