"""The plan's branches (pivots 8.1-8.4, open questions 1-4) as experiments: names and groups, trial lists that reuse
E2.1's and E2.2's trials, bad input rejected before anything runs, and a tiny study end to end."""
from __future__ import annotations

import pytest

from c2bridge.experiments import registry
from c2bridge.presets import get_preset

BRANCHES = ("p8.1", "p8.2", "p8.3", "p8.4", "q1", "q2", "q3", "q4", "q5")


def test_branches_group_and_all():
    assert registry.normalize_names(["branches"]) == list(BRANCHES)
    assert not set(BRANCHES) & set(registry.normalize_names(["all"]))  # `all` is the study proper
    assert registry.normalize_names(["P8_2", "q1"]) == ["p8.2", "q1"]
    with pytest.raises(ValueError, match="unknown experiment 'p8.9'") as err:
        registry.normalize_names(["p8.9"])
    assert "\n" not in str(err.value) and "branches" in str(err.value)


@pytest.mark.parametrize("preset", ["tiny", "mini", "full"])
def test_baseline_arms_are_the_trials_e2_already_trains(preset):
    """An unpatched arm at E2.1's budget and seed, with the same recipe, resolves to E2.1's trial (same key)."""
    p = get_preset(preset)
    e21 = registry.load_experiment_config("e2.1", preset)
    e21_specs = {(s.adapter, s.budget, s.seed) for s in registry.get("e2.1").trials(e21, p, {})}
    e22 = registry.load_experiment_config("e2.2", preset)
    e22_specs = {(s.adapter, s.budget, s.seed) for s in registry.get("e2.2").trials(e22, p, {}) if not s.patch}
    for name in (b for b in BRANCHES if b != "q5"):  # q5 trains on clips with its own recipe: nothing to reuse
        cfg = registry.load_experiment_config(name, preset)
        assert cfg["recipe"] == e21["recipe"] and cfg["eval"] == e21["eval"], name  # same recipe -> same keys
        specs = registry.get(name).trials(cfg, p, {})
        labels = [s.label for s in specs]
        assert len(labels) == len(set(labels)), name
        plain = {(s.adapter, s.budget, s.seed) for s in specs if not s.patch}
        if not (preset == "tiny" and name == "q1"):  # tiny's E2.2 trains no bottleneck
            assert plain & (e21_specs | e22_specs), f"{name} reuses no E2.1/E2.2 trial"


def test_full_lora_rank_gives_the_plans_parameter_count():
    from c2bridge.experiments import p8_2

    cfg = registry.load_experiment_config("p8.2", "full")
    rank, width = cfg["lora_rank"], p8_2.projection_width(get_preset("full"))
    count = 28 * 2 * 4 * rank * (width + width)  # LTX-Video: 28 blocks x (self + cross attention) x 4 projections
    assert 4e6 <= count <= 8e6
    mini = registry.load_experiment_config("p8.2", "mini")
    assert p8_2.projection_width(get_preset("mini")) == 64
    assert 4e6 / 800 <= 4 * 2 * 4 * mini["lora_rank"] * 128 <= 8e6 / 800 * 1.2


@pytest.mark.parametrize("override, match", [
    ("p8_2.lora_rank=0", "lora_rank=0"),
    ("p8_2.lora_rank=100000", "larger than the tiny decoder"),
    ("p8_3.teacher=/nonexistent/teacher", "p8.3.teacher"),
])
def test_bad_branch_input_is_one_error_before_anything_runs(tmp_path, override, match):
    from c2bridge.experiments.runner import Study

    run = tmp_path / "run"
    study = Study(run, preset="tiny", overrides=[override], log=lambda s: None)
    with pytest.raises(ValueError, match=match) as err:
        study.run(["p8.2", "p8.3"])
    assert "\n" not in str(err.value)
    assert not (run / "trials").exists() and not (run / "cache").exists()


def test_teacher_dir_that_is_a_lora_is_refused(tmp_path):
    from c2bridge.experiments import p8_3

    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 2}')
    (lora / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="names no adapter kind"):
        p8_3.trials({"teacher": str(lora)}, get_preset("tiny"), {})


MICRO = ["e2_1.budgets=[10m, 100m]", "e2_1.seeds=[0]", "e2_2.kinds=[bottleneck]", "e2_2.seeds=[0]",
         "recipe.optim.max_steps=2", "recipe.eval.every_steps=2", "recipe.checkpoint.every_steps=2",
         "eval.n_samples=2", "eval.latency_iters=1"]


def test_tiny_branches_end_to_end(tmp_path):
    from c2bridge.experiments.runner import Study
    from c2bridge.report.results import load_results

    run = tmp_path / "run"
    Study(run, preset="tiny", overrides=MICRO, log=lambda s: None).run(["e2.1", "e2.2", "branches"])
    res = load_results(run)
    exps = res["experiments"]
    for name in BRANCHES:
        assert exps[name]["status"] == "complete", (name, [a.get("errors") for a in exps[name]["arms"]])
        s = exps[name]["summary"]
        assert s["recommendation"] and s["baseline"] in s["arms"]
        other = [a for a in s["arms"] if a != s["baseline"]][0]
        assert s["comparisons"][other]["difference"]["estimate"] is not None
    by_label = {}
    for t in res["trials"].values():
        for exp, label in t["labels"].items():
            by_label[(exp, label)] = t
    shared = by_label[("e2.1", "query-10m-s0")]
    for name in ("p8.1", "p8.2", "p8.3", "p8.4", "q2", "q3", "q4"):
        assert name in shared["labels"], name  # E2.1's 10M trial, reused by the branches (same key)
    assert "q1" in by_label[("e2.2", "bottleneck-10m-s0")]["labels"]
    d3 = exps["p8.3"]["summary"]["details"]
    assert d3["teacher_params"] == by_label[("e2.1", "query-100m-s0")]["params"]["trainable"] > 0
    assert d3["extra_cost_ratio"] > 1
    assert exps["p8.2"]["summary"]["details"]["decoder_lora_params"] == 2 * 8 * 64
    lora_trial = by_label[("p8.2", "query-10m-declora2-s0")]
    assert (run / lora_trial["artifacts"]["adapter"] / "decoder_lora" / "adapter_model.safetensors").is_file()
    assert by_label[("q2", "query-10m-n_tokens=4-s0")]["metrics"]["val"]["n"] == 2  # 4 tokens: trained and sampled
    assert "cannot answer" in exps["q4"]["summary"]["note"]
    findings = (run / "FINDINGS.md").read_text()
    for title in ("Pivot 8.1", "Pivot 8.2", "Pivot 8.3", "Pivot 8.4", "Q1:", "Q2:", "Q3:", "Q4:"):
        assert f"## {title}" in findings, title
    assert "cannot answer the question" in findings and "95% CI" in findings

    rows = Study(run, preset="tiny", overrides=MICRO, log=lambda s: None, dry=True).dry_run(["branches"])
    assert rows and all(r.done for r in rows)  # a re-run trains nothing
