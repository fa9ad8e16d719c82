"""A micro version of the README's main command: the whole study on the `mini` preset (shipped mini decoder and
DINOv2, real backend, real caches), with a few training steps and a handful of samples (~25 s)."""
from c2bridge.cli import main
from c2bridge.report.results import load_results

MICRO = [
    "e2_1.budgets=[5m,10m,100m]", "e2_1.seeds=[0,1]", "e2_4.seeds=[0,1]", "e2_4.reference_seeds=[0,1]",
    "caches.train.limit=64", "caches.val.limit=16", "caches.heldout.limit=16",
    "caches.train_color_jitter.limit=64", "caches.train_random_crop.limit=64", "e2_4.caches.clips_heldout.limit=4",
    "recipe.optim.max_steps=3", "recipe.schedule.warmup_steps=1", "recipe.eval.every_steps=3",
    "recipe.checkpoint.every_steps=3", "eval.n_samples=4", "eval.sample_steps=2", "eval.latency_iters=2",
    "recipe.compute.compile=false",  # compiling pays over 300 steps, not over 3
]


def test_mini_study_micro_end_to_end(tmp_path, capsys):
    out = tmp_path / "mini"
    assert main(["run", "all", "--out", str(out), *MICRO]) == 0
    res = load_results(out)
    assert set(res["experiments"]) == {"e2.1", "e2.2", "e2.3", "e2.4"}
    assert all(t["status"] == "completed" for t in res["trials"].values())
    # the miniature's budgets (the plan's / 800) and the calibrated recipe reach the trials
    trained = {t["labels"].get("e2.1"): t for t in res["trials"].values() if "e2.1" in (t.get("labels") or {})}
    assert trained["query-5m-s0"]["params"]["trainable"] == 6249
    assert trained["query-100m-s0"]["params"]["trainable"] == 125032
    loss = trained["query-10m-s0"]["config"]["train"]["loss"]
    assert (loss["name"], loss["sigma"], loss["logit_mean"]) == ("flow", "logit_normal", 1.0)
    # E2.4's references go through LTXPipeline on the shipped decoder: its own captions draw the shapes, zero
    # conditioning does not
    refs = res["experiments"]["e2.4"]["summary"]["references"]
    assert refs["caption"]["spatial_iou"] > refs["zero"]["spatial_iou"] + 0.3
    # three training steps teach nothing: the miniature's checks say so, and the Gate-2 line carries the caveat
    checks = res["miniature_checks"]
    assert checks["iou_fraction_of_ceiling"]["verdict"] == "fail" and checks["iou_fraction_of_ceiling"]["value"] < 0.5
    assert res["gate2"]["valid"] is False and "not meaningful" in res["gate2"]["caveat"]
    findings = (out / "FINDINGS.md").read_text()
    assert "This is the miniature" in findings and "one_minus_ssim" in findings
    assert (out / "scaling_curve.png").stat().st_size > 0
    # every headline number has its 95% interval (per-sample values stored, 2 seeds x 4 samples), and the verdicts
    # and FINDINGS.md say what it was built with
    for exp in ("e2.1", "e2.4"):
        summary = res["experiments"][exp]["summary"]
        iv = summary["intervals"]["param_efficiency"]
        # 2 seeds to start; the sequential design may add seeds (up to its cap) while the verdict is undetermined
        seeds = {len(v) for v in summary["decide"]["seeds"].values()}
        assert iv["low"] <= summary["param_efficiency"] <= iv["high"] and iv["n_samples"] == 4
        assert 2 <= iv["n_seeds"] <= 5 and iv["n_seeds"] in seeds and (seeds == {2}) == (summary["decide"]["rounds"] == 0)
        assert res["experiments"][exp]["verdicts"]["param_efficiency"]["interval"]["n_resamples"] == 2000
        assert summary["decide"]["enabled"] and summary["decide"]["stopped"]
    assert len(trained["query-10m-s0"]["metrics"]["val"]["per_sample"]["distance"]) == 4
    assert "95% CI, bootstrap-t" in findings and "2000 resamples" in findings and "Sequential design:" in findings
    assert "not meaningful: see FINDINGS.md" in capsys.readouterr().out
