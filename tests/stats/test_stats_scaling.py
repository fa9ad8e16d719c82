"""The scaling-law fit recovers known parameters; its band and the smallest passing size."""
import numpy as np
import pytest

from c2bridge.stats.scaling import fit_scaling, power_law, scaling_band, smallest_passing_size

BUDGETS = np.array([5e6, 10e6, 20e6, 50e6, 100e6])
TRUE = (0.12, 30.0, 0.3)  # D∞, a, α


def data(rng, budgets=BUDGETS, seeds=4, noise=0.002):
    return [power_law(n, *TRUE) + rng.normal(0.0, noise, seeds) for n in budgets]


def test_fit_recovers_known_parameters_from_noisy_data():
    fit = fit_scaling(BUDGETS, data(np.random.default_rng(0)), n_resamples=100)
    assert fit.d_inf == pytest.approx(TRUE[0], abs=0.03)
    assert fit.alpha == pytest.approx(TRUE[2], rel=0.25)
    assert fit.a * 50e6 ** -fit.alpha == pytest.approx(TRUE[1] * 50e6 ** -TRUE[2], rel=0.1)  # a where it is seen
    assert np.allclose(fit.predict(BUDGETS), power_law(BUDGETS, *TRUE), atol=0.004)
    d = fit.to_dict()
    assert d["n_resamples"] == 100 and d["n_failed"] == 0 and d["d_inf_interval"][0] <= TRUE[0] + 0.03
    assert fit == fit_scaling(BUDGETS, data(np.random.default_rng(0)), n_resamples=100)  # same seed, same fit


def test_three_budgets_and_per_sample_inputs_work():
    rng = np.random.default_rng(1)
    three = BUDGETS[[0, 1, 4]]
    fit = fit_scaling(three, data(rng, three, seeds=3), n_resamples=60)
    assert np.allclose(fit.predict(three), power_law(three, *TRUE), atol=0.006)
    per_sample = [power_law(n, *TRUE) + rng.normal(0, 0.002, (3, 1)) + rng.normal(0, 0.01, (3, 16)) for n in three]
    fit2 = fit_scaling(three, per_sample, n_resamples=60)
    assert "evaluation samples" in fit2.method and fit2.n_samples == 16
    with pytest.raises(ValueError, match=">= 3 distinct"):
        fit_scaling(three[:2], per_sample[:2])


def test_band_contains_the_true_curve_and_is_ordered():
    fit = fit_scaling(BUDGETS, data(np.random.default_rng(2)), n_resamples=150)
    band = scaling_band(fit, num=25)
    low, mid, high = (np.array(band[k]) for k in ("low", "mid", "high"))
    assert len(band["n"]) == 25 and np.all(low <= mid + 1e-12) and np.all(mid <= high + 1e-12)
    n = np.array(band["n"])
    truth = power_law(n, *TRUE)
    inside = (low - 0.002 <= truth) & (truth <= high + 0.002)
    assert inside[(n >= BUDGETS.min()) & (n <= BUDGETS.max())].all()


def test_smallest_passing_size_matches_the_analytic_answer():
    fit = fit_scaling(BUDGETS, data(np.random.default_rng(3)), n_resamples=150)
    d_ref = power_law(100e6, *TRUE)
    for e in (0.90, 0.85):
        truth = (TRUE[1] / ((2 - e) * d_ref - TRUE[0])) ** (1 / TRUE[2])
        p = smallest_passing_size(fit, e)
        assert p.reference == "fitted" and p.n_params == pytest.approx(truth, rel=0.15)
        assert p.low <= p.n_params <= p.high and p.low <= truth * 1.1 and truth * 0.9 <= p.high
        assert not p.extrapolated and p.status == "predicted" and "smallest N" in p.text
    measured = smallest_passing_size(fit, 0.90, reference="measured")
    assert measured.reference == "measured" and measured.reference_distance == pytest.approx(fit.mean_distance[-1])


def test_not_reached_within_the_range():
    fit = fit_scaling(BUDGETS, data(np.random.default_rng(4)), n_resamples=60)
    # efficiency 1.3 needs a distance below the curve's floor
    p = smallest_passing_size(fit, 1.3, max_factor=10)
    assert p.n_params is None and p.high is None and "not reached within [5M, 1B]" in p.text
    assert p.status == "not reached"
    flat = fit_scaling(BUDGETS[:3], [np.array([0.30, 0.31]), np.array([0.31, 0.30]), np.array([0.32, 0.31])],
                       n_resamples=30)  # distance grows with N (noise, too few steps): no prediction
    q = smallest_passing_size(flat, 0.9)
    assert q.status == "flat" and q.n_params is None and "flat" in q.text
    with pytest.raises(ValueError, match="fitted"):
        smallest_passing_size(fit, 0.9, reference="guess")
