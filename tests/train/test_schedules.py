"""Every lr schedule follows its definition (plan E2.3 B)."""
import math

import pytest

from c2bridge.train.config import load_config
from c2bridge.train.schedules import check_schedule, lr_curve


def _cfg(**schedule):
    # the plan's E2.3 B schedules around its lr 1e-4, with no warmup unless a test names one
    schedule = {"warmup_steps": None, **schedule}
    return load_config({"preset": "full", "optim": {"lr": 1e-4}, "schedule": schedule})


def test_constant():
    assert lr_curve(_cfg(name="constant"), 50) == [1e-4] * 50


def test_cosine_1e4_to_1e6():
    total = 101
    curve = lr_curve(_cfg(name="cosine", min_lr=1e-6), total)
    assert curve[0] == pytest.approx(1e-4) and curve[-1] == pytest.approx(1e-6)
    assert curve[50] == pytest.approx(1e-6 + 0.5 * (1e-4 - 1e-6))  # half-way = mid-point of the half cosine
    for s in (10, 33, 77):
        assert curve[s] == pytest.approx(1e-6 + 0.5 * (1e-4 - 1e-6) * (1 + math.cos(math.pi * s / (total - 1))))
    assert all(a >= b for a, b in zip(curve, curve[1:]))


def test_warmup_1k_then_cosine():
    total = 5000
    curve = lr_curve(_cfg(name="warmup_cosine"), total)  # warmup_steps defaults to the plan's 1k
    assert curve[0] == pytest.approx(1e-4 / 1000) and curve[499] == pytest.approx(0.5e-4)
    assert curve[999] == pytest.approx(1e-4) and curve[1000] == pytest.approx(1e-4)
    assert all(a < b for a, b in zip(curve[:999], curve[1:1000]))  # linear ramp
    assert curve[-1] == pytest.approx(1e-6)
    assert all(a >= b for a, b in zip(curve[1000:], curve[1001:]))
    with pytest.raises(ValueError, match="warmup_steps"):
        check_schedule(_cfg(name="warmup_cosine"), 800)  # warmup longer than the run: an error before any step


def test_cyclic_between_1e5_and_1e4():
    curve = lr_curve(_cfg(name="cyclic", cyclic_low=1e-5, cyclic_period=100), 300)
    assert curve[0] == pytest.approx(1e-5) and curve[50] == pytest.approx(1e-4)  # high end = optim.lr
    assert curve[100] == pytest.approx(1e-5) and curve[150] == pytest.approx(1e-4) and curve[25] == pytest.approx(5.5e-5)
    assert min(curve) >= 1e-5 - 1e-15 and max(curve) <= 1e-4 + 1e-15
    assert curve[:100] == curve[100:200]  # periodic
