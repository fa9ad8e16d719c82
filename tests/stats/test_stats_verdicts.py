"""Verdicts with confidence: certain bands, straddled lines, soft/hard severity, and what would settle them."""
import math

import numpy as np
import pytest
from stats_sim import study

from c2bridge.stats import Component, Interval, efficiency_interval, plateau_ratio
from c2bridge.stats.verdicts import confident_verdict, line_criterion, settle

HIGHER = {"target": 0.90, "acceptable": 0.85, "failure": 0.80, "direction": "higher"}
LOWER = {"target": 1.2, "acceptable": 1.5, "failure": 2.0, "direction": "lower"}


def iv(est, low, high, seeds=3, samples=64, var_seed=1e-4, var_sample=1e-5):
    comps = (Component("seeds", "seeds", seeds, var_seed), Component("samples", "samples", samples, var_sample))
    return Interval(est, low, high, 0.95, "bootstrap-t", 1000, seeds, samples, components=comps)


@pytest.mark.parametrize("interval, verdict, severity, certain, between", [
    (iv(0.95, 0.92, 0.97), "target", None, True, ("target",)),
    (iv(0.87, 0.86, 0.89), "acceptable", None, True, ("acceptable",)),
    (iv(0.75, 0.70, 0.78), "fail", "hard", True, ("fail",)),
    (iv(0.82, 0.81, 0.84), "fail", "soft", True, ("fail",)),
    (iv(0.80, 0.77, 0.84), "fail", "soft or hard", True, ("fail",)),   # straddles only the severity line
    (iv(0.80, 0.70, 0.87), "undetermined", None, False, ("acceptable", "fail")),
    (iv(0.85, 0.70, 0.95), "undetermined", None, False, ("target", "fail")),
    (iv(0.88, 0.84, 0.90), "undetermined", None, False, ("acceptable", "fail")),  # 0.90 itself is not > 0.90
])
def test_band_logic(interval, verdict, severity, certain, between):
    v = confident_verdict(interval, HIGHER)
    assert (v.verdict, v.severity, v.certain, v.between) == (verdict, severity, certain, between)
    assert (v.settle is None) == certain
    assert set(v.to_dict()) >= {"verdict", "certain", "interval", "text", "settle", "lines"}


def test_texts_say_certain_or_undetermined_with_the_interval():
    text = confident_verdict(iv(0.75, 0.70, 0.78), HIGHER).text
    assert text.startswith("FAIL (hard), certain at 95%: CI [0.7, 0.78]")
    t = confident_verdict(iv(0.80, 0.70, 0.87), HIGHER).text
    assert t.startswith("undetermined between acceptable and fail (hard): CI [0.7, 0.87]")
    v = confident_verdict(iv(0.80, 0.70, 0.87), HIGHER)
    assert v.lines == (0.80, 0.85) and v.point_verdict == "fail"


def test_lower_is_better_and_a_censored_ratio():
    assert confident_verdict(iv(1.1, 1.0, 1.15), LOWER).verdict == "target"
    assert confident_verdict(iv(1.6, 1.3, 1.8), LOWER).between == ("acceptable", "fail")
    at_least = plateau_ratio([None, None, 200], [100, 100, 100], total_steps=300)  # ratio >= 2.67
    v = confident_verdict(at_least, LOWER)
    assert v.certain and v.verdict == "fail" and v.severity == "hard"
    slow = plateau_ratio([150, 180, 160], [100, 90, 120], total_steps=300, n_resamples=200)  # ~1.58, log scale
    v = confident_verdict(slow, LOWER, max_seeds=400)
    assert not v.certain and v.settle.line == 1.5 and v.settle.margin == pytest.approx(math.log(slow.estimate / 1.5))
    assert slow.half_width_at(seeds=v.settle.seeds_needed) < v.settle.margin
    na = plateau_ratio([100], [None], total_steps=300)
    assert confident_verdict(na, LOWER).verdict == "missing"


def test_a_decision_point_as_a_line():
    crit = line_criterion(">", 0.85)
    assert confident_verdict(iv(0.9, 0.87, 0.93), crit).verdict == "acceptable"   # met, certainly
    assert confident_verdict(iv(0.8, 0.75, 0.84), crit).verdict == "fail"
    assert not confident_verdict(iv(0.86, 0.8, 0.9), crit).certain
    with pytest.raises(ValueError, match="between"):
        line_criterion("between", [0.8, 0.85])


def test_settle_estimates_seeds_and_samples_and_caps():
    # seed variance dominates: samples alone cannot settle, seeds can
    interval = iv(0.80, 0.70, 0.90, var_seed=4e-4, var_sample=1e-6)
    s = settle(interval, HIGHER, max_seeds=40, max_eval_samples=256)
    assert s.line == 0.85 and s.margin == pytest.approx(0.05)
    assert s.samples_needed is None and s.seeds_needed is not None and 3 < s.seeds_needed <= 40
    assert interval.half_width_at(seeds=s.seeds_needed) < 0.05 <= interval.half_width_at(seeds=s.seeds_needed - 1)
    assert s.extra_seeds == s.seeds_needed - 3
    capped = settle(interval, HIGHER, max_seeds=4, max_eval_samples=256)
    assert capped.seeds_needed is None and "cannot settle within cap" in capped.text
    v = confident_verdict(interval, HIGHER, max_seeds=4, max_eval_samples=256)
    assert not v.certain and "cannot settle within cap" in v.text
    # sample variance dominates: more evaluation samples settle it
    s2 = settle(iv(0.80, 0.74, 0.86, var_seed=1e-6, var_sample=4e-4), HIGHER, max_seeds=10, max_eval_samples=4096)
    assert s2.samples_needed is not None and s2.samples_needed > 64


def test_one_seed_is_never_certain():
    small, ref = study(np.random.default_rng(0), seeds=1, mu=(0.40, 0.26))  # clearly a hard fail on its samples
    v = confident_verdict(efficiency_interval(small, ref, n_resamples=200), HIGHER)
    assert not v.certain and v.between == ("fail",) and v.settle.seeds_needed == 3
    assert "one seed" in v.text


def test_on_real_intervals_more_seeds_settle_an_undetermined_verdict():
    rng = np.random.default_rng(5)
    kw = dict(mu=(0.285, 0.26), sd_seed=0.01, sd_sample=0.03, sd_resid=0.01)  # true efficiency 0.904
    pilot = confident_verdict(efficiency_interval(*study(rng, **kw), n_resamples=300), HIGHER, max_seeds=64)
    assert not pilot.certain and pilot.settle.seeds_needed is not None
    big = efficiency_interval(*study(rng, seeds=max(pilot.settle.seeds_needed, 24), **kw), n_resamples=300)
    assert big.half_width < pilot.interval.half_width / 2
    assert not math.isnan(big.low)
