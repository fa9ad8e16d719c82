"""E2.1's ``budget_seeds``: fewer seeds on the budgets outside param_efficiency; the small and reference budgets
keep ``seeds`` (and the sequential design's growth)."""
from __future__ import annotations

import pytest

from c2bridge.experiments import e2_1
from c2bridge.presets import get_preset

CFG = {"kind": "query", "budgets": ["5m", "10m", "20m", "50m", "100m"], "seeds": [0, 1, 2],
       "small_budget": "10m", "reference_budget": "100m", "decide": {"enabled": False}, "pivot": False}


def test_budget_seeds_trains_fewer_seeds_only_where_named():
    p = get_preset("tiny")
    assert [t.label for t in e2_1.trials(CFG, p)] == [f"query-{b}-s{s}" for b in CFG["budgets"] for s in (0, 1, 2)]
    cfg = {**CFG, "budget_seeds": {"5m": [0], "50m": [1]}}
    labels = [t.label for t in e2_1.trials(cfg, p)]
    assert labels == ["query-5m-s0", "query-10m-s0", "query-10m-s1", "query-10m-s2", "query-20m-s0", "query-20m-s1",
                      "query-20m-s2", "query-50m-s1", "query-100m-s0", "query-100m-s1", "query-100m-s2"]
    assert e2_1.protocol(cfg, p)["seeds per budget"] == "5m: 1, 10m: 3, 20m: 3, 50m: 1, 100m: 3"
    assert e2_1.protocol(CFG, p)["seeds per budget"] == "3"


@pytest.mark.parametrize("bad,match", [({"10m": [0]}, "small or reference budget"),
                                       ({"7m": [0]}, "not one of the budgets"),
                                       ({"5m": []}, "non-empty list")])
def test_budget_seeds_bad_input_is_one_clear_error(bad, match):
    with pytest.raises(ValueError, match=match):
        e2_1.trials({**CFG, "budget_seeds": bad}, get_preset("tiny"))
