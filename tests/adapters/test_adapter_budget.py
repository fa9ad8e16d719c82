"""The budget solver: every kind x budget within ±2% for the full, mini and tiny presets, the rule, the errors."""
import numpy as np
import pytest

from c2bridge.adapters import ADAPTERS, build_adapter, build_adapter_for_preset, minimum_params, parse_budget
from c2bridge.adapters.budget import depth_for, fractional_depth, head_dim_for, solve_config
from c2bridge.presets import get_preset

KINDS = list(ADAPTERS)
PRESETS = {name: get_preset(name) for name in ("full", "mini", "tiny")}


def dims_of(preset):
    return dict(vlm_dim=preset.vlm_dim, dino_dim=preset.dino_dim, out_dim=preset.cond_dim, n_tokens=preset.n_tokens,
                n_patches=preset.n_patches)


def shape(adapter):
    spec = adapter.budget_spec
    return adapter.config[spec.width], adapter.config[spec.depth]


@pytest.mark.parametrize("preset", ["full", "mini", "tiny"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_plan_scale_within_2_percent(kind, preset):
    preset = PRESETS[preset]
    shapes = []
    for name, target in preset.budgets.items():
        adapter = build_adapter_for_preset(kind, name, preset, device="meta")  # shape-only: cheap at 100M
        assert adapter.config["budget"] == target
        assert abs(adapter.num_params - target) <= 0.02 * target, (name, adapter.num_params, target)
        assert abs(adapter.num_params - target) <= 0.005 * target  # the solver aims much tighter
        shapes.append(shape(adapter))
    widths, depths = zip(*shapes)
    # bigger budgets are genuinely bigger models: neither width nor depth shrinks, and both grow overall
    assert list(widths) == sorted(widths) and list(depths) == sorted(depths)
    assert widths[-1] > widths[0] and depths[-1] > depths[0]


@pytest.mark.parametrize("kind", KINDS)
def test_solver_covers_the_mini_range(kind):
    """Mini budgets may be retuned: anything from ~2e3 (the kinds' minima are below it) to 2e5 must work."""
    dims = dims_of(PRESETS["mini"])
    assert minimum_params(kind, dims) < 2e3
    previous = (0, 0)
    for budget in np.geomspace(2e3, 2e5, 9):
        cfg = solve_config(kind, float(budget), dims)
        adapter = build_adapter(kind, float(budget), **dims, device="meta")
        assert abs(adapter.num_params - budget) <= 0.02 * budget
        spec = adapter.budget_spec
        current = (cfg[spec.width], cfg[spec.depth])
        assert current[0] >= previous[0] and current[1] >= previous[1]
        previous = current


def test_depth_rule_reproduces_the_plans_table():
    full = dims_of(PRESETS["full"])
    assert [depth_for(b, full) for b in PRESETS["full"].budgets.values()] == [2, 2, 3, 4, 4]
    assert head_dim_for(full) == 64 and head_dim_for(dims_of(PRESETS["mini"])) == 8
    assert fractional_depth(3 * 10e6, full) == pytest.approx(fractional_depth(10e6, full) + 1)


def test_query_widths_at_full_dims_track_the_plans_table():
    widths = [build_adapter("query", b, device="meta").config["width"] for b in (5e6, 10e6, 20e6, 50e6, 100e6)]
    plan = [256, 384, 512, 768, 1024]
    assert all(abs(w - p) <= 0.25 * p for w, p in zip(widths, plan)), widths
    assert all(w % 64 == 0 for w in widths)


@pytest.mark.parametrize("kind", KINDS)
def test_impossible_budget_names_the_minimum(kind):
    minimum = minimum_params(kind, dims_of(PRESETS["full"]))
    with pytest.raises(ValueError, match=f"minimum of {minimum:,} trainable params for adapter kind '{kind}'"):
        build_adapter(kind, minimum * 0.9)
    assert abs(build_adapter(kind, minimum, device="meta").num_params - minimum) <= 0.02 * minimum


def test_budget_strings():
    assert parse_budget("10M") == parse_budget("10m") == parse_budget(10_000_000) == 10e6
    assert parse_budget("5k") == 5e3 and parse_budget("2.5e4") == 2.5e4 and parse_budget(" 1.5m ") == 1.5e6
    assert parse_budget(None) is None
    for bad in ("ten", "10q", "-5", "0", "", True, float("nan"), [1]):
        with pytest.raises(ValueError, match="budget"):
            parse_budget(bad)
    assert build_adapter("lora", "5M", device="meta").config["budget"] == 5e6


def test_preset_scale_names_map_to_the_preset():
    mini = PRESETS["mini"]
    a = build_adapter_for_preset("query", "10m", "mini", device="meta")
    assert a.config["budget"] == mini.budgets["10m"] == 1.25e4
    assert (a.vlm_dim, a.dino_dim, a.out_dim, a.n_tokens, a.n_patches) == (32, 64, 64, 16, 64)
    b = build_adapter_for_preset("query", "12k", mini, device="meta")  # not a scale name: literal
    assert b.config["budget"] == 12e3
    c = build_adapter_for_preset("query", 3e4, mini, n_tokens=4, device="meta")
    assert c.n_tokens == 4 and abs(c.num_params - 3e4) <= 600
    with pytest.raises(ValueError, match="unknown preset"):
        build_adapter_for_preset("query", "10m", "huge")


def test_fixed_options_constrain_the_solver():
    a = build_adapter("query", 10e6, width=512, device="meta")
    assert a.config["width"] == 512 and abs(a.num_params - 10e6) <= 0.02 * 10e6
    b = build_adapter("perceiver", 10e6, depth=5, device="meta")
    assert b.config["depth"] == 5 and abs(b.num_params - 10e6) <= 0.02 * 10e6
    c = build_adapter("moe", 20e6, n_experts=4, top_k=1, device="meta")
    assert abs(c.num_params - 20e6) <= 0.02 * 20e6 and c.active_params < c.num_params
    with pytest.raises(ValueError, match="cannot size adapter kind 'query'"):
        build_adapter("query", 10e6, width=64, depth=1, ffn_dim=64)
    d = build_adapter("query", 10e6, head_dim=32, device="meta")
    assert d.config["n_heads"] == d.config["width"] // 32


def test_budget_none_uses_the_kinds_defaults():
    a = build_adapter("query", device="meta")
    assert (a.config["width"], a.config["depth"], a.config["ffn_dim"], a.config["n_heads"]) == (384, 2, 1536, 6)
    assert a.config["budget"] is None
    assert build_adapter("moe", device="meta").config["n_experts"] == 8


def test_free_dim_stays_in_a_sane_band():
    """The solved FFN/expert width stays within [1/4, 4] x its nominal ratio at the plan's scales."""
    for kind in KINDS:
        spec = ADAPTERS[kind].budget_spec
        for target in PRESETS["full"].budgets.values():
            cfg = build_adapter(kind, target, device="meta").config
            free = cfg[spec.free]
            mean = sum(free) / len(free) if isinstance(free, list) else free
            nominal = spec.free_ratio * cfg[spec.width]
            assert nominal / 4 <= mean <= 4 * nominal, (kind, target, mean, nominal)
            assert not isinstance(free, list) or max(free) - min(free) <= 1
