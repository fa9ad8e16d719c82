"""Trial records -> seeds × samples tables (per-sample values when stored, per-seed means otherwise)."""
import numpy as np
import pytest

from c2bridge.stats import arm_table, efficiency_interval, paired_tables


def record(seed, d, per_sample=None, status="completed", latency=1.0):
    m = {"distance": d, "n": len(per_sample or [0])}
    if per_sample is not None:
        m["per_sample"] = {"distance": per_sample}
    return {"status": status, "config": {"train": {"seed": seed}}, "metrics": {"val": m},
            "perf": {"latency_ms": latency}}


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
