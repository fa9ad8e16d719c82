"""Trial records -> seeds × samples tables (per-sample values when stored, per-seed means otherwise)."""
import numpy as np
import pytest

from c2bridge.stats import arm_table, efficiency_interval, pair_intervals, paired_tables


def record(seed, d, per_sample=None, status="completed", latency=1.0, plateau=100):
    m = {"distance": d, "n": len(per_sample or [0]), "spatial_iou": 0.8}
    if per_sample is not None:
        m["per_sample"] = {"distance": per_sample}
    return {"status": status, "config": {"train": {"seed": seed}}, "metrics": {"val": m},
            "perf": {"latency_ms": latency}, "train": {"steps_to_plateau": plateau, "total_steps": 300}}


def test_per_sample_tables_and_the_per_seed_fallback():
    recs = [record(0, 0.3, [0.2, 0.4]), record(1, 0.35, [0.3, 0.4]), record(2, None, status="failed")]
    table, seeds = arm_table(recs, "distance")
    assert table.shape == (2, 2) and seeds == [0, 1]
    table, _ = arm_table([record(0, 0.3, [0.2, 0.4]), record(1, 0.35)], "distance")  # one without per-sample
    assert table.tolist() == [0.3, 0.35]
    lat, _ = arm_table(recs, "latency_ms", section="perf")
    assert lat.tolist() == [1.0, 1.0]


def test_paired_tables_align_seeds():
    small = [record(1, 0.35, [0.3, 0.4]), record(0, 0.3, [0.2, 0.4])]
    ref = [record(0, 0.25, [0.2, 0.3]), record(1, 0.27, [0.24, 0.3])]
    a, b, paired = paired_tables(small, ref, "distance")
    assert paired and a[0].tolist() == [0.3, 0.4] and b[0].tolist() == [0.24, 0.3]  # both seed 1
    iv = efficiency_interval(a, b, paired_seeds=paired, n_resamples=100)
    assert iv.estimate == pytest.approx(1 - (np.mean(a) - np.mean(b)) / np.mean(b))
    _, _, paired = paired_tables(small, ref[:1], "distance")
    assert not paired


def test_pair_intervals_of_a_comparison():
    small = [record(s, 0.30 + 0.01 * s, [0.25 + 0.01 * s, 0.35 + 0.01 * s], latency=1.0 + 0.1 * s,
                    plateau=None if s == 2 else 200) for s in range(3)]
    ref = [record(s, 0.26 + 0.01 * s, [0.22 + 0.01 * s, 0.30 + 0.01 * s], latency=2.0, plateau=100) for s in range(3)]
    out = pair_intervals(small, ref, n_resamples=100)
    assert set(out) == {"param_efficiency", "distance_small", "distance_ref", "spatial_iou_small", "latency_ratio",
                        "training_time_ratio"}
    assert out["param_efficiency"].n_samples == 2 and out["latency_ratio"].scale == "log"
    assert out["training_time_ratio"].estimate is None  # seed 2 did not plateau: a lower bound
    assert out["training_time_ratio"].low == pytest.approx((200 + 200 + 300) / 3 / 100)
