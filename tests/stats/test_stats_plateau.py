"""Plateau detection on constructed validation-loss curves."""
import numpy as np
import pytest

from c2bridge.metrics.efficiency import detect_plateau, steps_to_plateau


def test_a_curve_still_falling_did_not_plateau():
    steps = list(range(0, 301, 50))
    falling = [1.0 * 0.9 ** i for i in range(len(steps))]  # 10% better every evaluation
    p = detect_plateau(falling, steps, total_steps=300)
    assert p.step is None and p.reason.startswith("did not plateau within 300 steps")
    assert steps_to_plateau(falling, steps) is None


@pytest.mark.parametrize("k", [3, 10, 25])
@pytest.mark.parametrize("patience", [2, 4])
def test_flat_after_step_k_plateaus_at_k(k, patience):
    steps = [10 * i for i in range(40)]
    curve = [1.0 / (1 + i) if i <= k else 1.0 / (1 + k) for i in range(40)]
    noisy = np.asarray(curve) * (1 + 0.002 * np.random.default_rng(k).standard_normal(40))  # below the 1% bar
    for c in (curve, noisy):
        step = detect_plateau(c, steps, patience=patience).step
        assert step is not None and abs(step - 10 * k) <= 10 * patience


def test_too_short_a_curve_and_bad_arguments():
    p = detect_plateau([1.0, 0.9], [0, 3], total_steps=3)
    assert p.step is None and "too few" in p.reason
    assert detect_plateau([0.5, 0.5, 0.5]).step == 0
    with pytest.raises(ValueError, match="patience"):
        detect_plateau([1.0, 0.9, 0.8], patience=0)
    with pytest.raises(ValueError, match="NaN"):
        detect_plateau([1.0, float("nan")])
    with pytest.raises(ValueError, match="step numbers"):
        detect_plateau([1.0, 0.9], [0])
