"""q5's recommendation rule and its FINDINGS table, on constructed arms (no training)."""
from c2bridge.experiments import q5


def group(label, distance):
    return {"label": label, "val": {"distance": {"mean": distance, "n": 1}}}


def iv(estimate, low, high):
    return {"estimate": estimate, "low": low, "high": high, "level": 0.95}


def test_an_arm_replaces_pool_only_when_better_and_not_less_stable():
    groups = [group("frame", 0.60), group("pool", 0.70), group("spacetime", 0.65)]
    better_but_warps = {"frame": {"better": True, "temporal": {"warp_error": iv(0.01, 0.005, 0.02)}},
                        "spacetime": {"better": False, "temporal": {"warp_error": iv(-0.01, -0.02, 0.0)}}}
    pick, text = q5.decide(groups, better_but_warps, "pool")
    assert pick == "pool" and "keep pool" in text  # frame is closer but its warp error is higher with confidence
    ok = {"frame": {"better": True, "temporal": {"warp_error": iv(0.0, -0.004, 0.004)}},
          "spacetime": {"better": True, "temporal": {"warp_error": iv(-0.01, -0.02, -0.001)}}}
    pick, text = q5.decide(groups, ok, "pool")
    assert pick == "frame" and "lower per-frame distance than pool" in text  # the lowest distance among the eligible
    assert q5.decide([], {}, "pool")[0] is None


def test_the_clip_table_lists_every_metric_with_its_interval():
    rows = {"frame": {"distance": iv(0.6, 0.55, 0.65), "flicker": iv(0.03, 0.02, 0.04)},
            "pool": {"distance": iv(0.7, 0.65, 0.75)}, "zero": {"distance": iv(0.8, 0.78, 0.82)}}
    exp = {"summary": {"baseline": "pool", "arms": ["frame", "pool"],
                       "details": {"rows": rows, "clip_cache": "clips_val",
                                   "vs_reference": {"zero": {"frame": {"flicker": iv(-0.01, -0.02, -0.005)}}}}}}
    text = "\n".join(q5.temporal_lines(exp))
    assert "| frame | 0.6000 [0.55, 0.65] | 0.0300 [0.02, 0.04] | n/a |" in text
    assert "| pool (baseline) |" in text and "| zero | 0.8000 [0.78, 0.82] |" in text
    assert "Each arm minus zero conditioning" in text and "-0.0100 [-0.0200, -0.0050]" in text
