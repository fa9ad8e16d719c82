"""The study runner with a fake backend: trial keys, skipping, failure recording, dependencies, outputs."""
import pytest

from c2bridge.experiments.registry import check_overrides, experiment_overrides, load_experiment_config, normalize_names
from c2bridge.experiments.runner import Study
from c2bridge.experiments.trials import StudyInterrupted
from c2bridge.report.results import load_results

from exp_fakes import FakeBackend


def study(tmp_path, backend, *overrides, **kw):
    return Study(tmp_path / "run", preset="tiny", overrides=list(overrides), backend=backend, log=lambda s: None, **kw)


def test_names_and_overrides():
    assert normalize_names(["all"]) == ["e2.1", "e2.2", "e2.3", "e2.4"]
    assert normalize_names(["E2_3", "e2.1"]) == ["e2.1", "e2.3"]
    with pytest.raises(ValueError, match="unknown experiment"):
        normalize_names(["e2.5"])
    common, per = experiment_overrides(["recipe.optim.max_steps=7", "e2_1.seeds=[0, 1]", "e2.2.kinds=[moe]"])
    assert common == {"recipe.optim.max_steps": 7}
    assert per["e2.1"] == {"seeds": [0, 1]} and per["e2.2"] == {"kinds": ["moe"]}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        experiment_overrides(["seeds"])
    # every bad key in one error, before anything runs: unknown experiment keys, recipe keys the trainer rejects
    with pytest.raises(ValueError) as info:
        check_overrides(["e2_1.seedz=[0]", "nokey=1", "recipe.optim.lr=fast", "recipe.optim.nope=1",
                         "e2_1.seeds=[0]", "caches.train.limit=8"], "tiny")
    text = str(info.value)
    assert "e2.1.seedz" in text and "'nokey'" in text and "optim.lr" in text and "optim.nope" in text
    assert "e2.1.seeds:" not in text and "caches" not in text
    check_overrides(["e2_2.adapter_overrides={lora: {n_layers: 1}}"], "tiny")  # a key the module reads with a default
    cfg = load_experiment_config("e2.1", "tiny", ["e2_1.seeds=[3]", "eval.n_samples=2"])
    assert cfg["seeds"] == [3] and cfg["eval"]["n_samples"] == 2 and "caches" in cfg  # merged over common
    with pytest.raises(ValueError, match="no e2.1 config for preset"):
        load_experiment_config("e2.1", "nosuch")


def test_all_experiments_end_to_end_with_fake_trials(tmp_path):
    backend = FakeBackend()
    s = study(tmp_path, backend, "e2_1.budgets=[5m,10m,20m,100m]", "e2_1.seeds=[0,1,2]")
    results = s.run(["all"])
    run = tmp_path / "run"
    on_disk = load_results(run)  # well-formed, schema-valid
    assert set(on_disk["experiments"]) == {"e2.1", "e2.2", "e2.3", "e2.4"}
    e21 = on_disk["experiments"]["e2.1"]
    assert [a["budget"] for a in e21["arms"]] == ["5m", "10m", "20m", "100m"]
    assert e21["arms"][0]["val"]["distance"]["n"] == 3 and e21["arms"][0]["val"]["distance"]["std"] > 0
    assert 0.8 < e21["summary"]["param_efficiency"] < 1.0
    assert e21["verdicts"]["param_efficiency"]["verdict"] in ("target", "acceptable", "fail", "undetermined")
    iv = e21["summary"]["intervals"]["param_efficiency"]  # 95% bootstrap interval over the 3 seeds
    assert iv["low"] <= e21["summary"]["param_efficiency"] <= iv["high"] and iv["n_seeds"] == 3
    assert e21["summary"]["recommended_size"] in ("5m", "10m", "20m", "100m")
    assert e21["summary"]["miniature_checks"]["scaling_separation"] > 3
    # E2.2 reuses E2.1's query trials (same config -> same key): they carry both labels
    e22_query = on_disk["experiments"]["e2.2"]["arms"][0]
    assert e22_query["kind"] == "query"
    for key in e22_query["keys"]:
        assert set(on_disk["trials"][key]["labels"]) >= {"e2.1", "e2.2"}
    assert on_disk["experiments"]["e2.2"]["summary"]["recommended_kind"] == "query"
    # E2.3 ran on E2.2's recommendation; the fake's cosine schedule is better, so the recipe uses it
    e23 = on_disk["experiments"]["e2.3"]["summary"]
    assert e23["arch"] == "query" and e23["best_per_grid"]["schedules"]["arm"] == "cosine"
    assert e23["best_recipe"]["patch"].get("schedule.name") == "cosine"
    e24 = on_disk["experiments"]["e2.4"]["summary"]
    assert e24["recipe"].get("schedule.name") == "cosine"
    assert e24["references"]["zero"]["spatial_iou"] < 0.1
    assert e24["generalization_gap"] == pytest.approx(0.04)  # fake: held-out +0.03, train split -0.01
    assert e24["training_time_ratio"] == pytest.approx(1.0) and e24["memory_reduction"] == pytest.approx(10)
    assert [b["quoted"] for b in e24["quoted_baselines"]] == [True, True]
    assert on_disk["gate2"]["c2"] in ("pass", "investigate", "fail", "undetermined") and "Q3" in on_disk["gate2"]["overall"]
    assert len(on_disk["decisions"]["decision_points"]) == 4
    # files
    for rel in ("results.yaml", "FINDINGS.md", "scaling_curve.png", "figures/learning_curves_e2_1.png",
                "figures/learning_curves_e2_3.png", "figures/ablation_e2_2.png",
                "checkpoints/adapter_5m_best/adapter_config.json", "checkpoints/adapter_100m_best/adapter_config.json",
                "checkpoints/adapter_final/adapter_config.json"):
        assert (run / rel).is_file(), rel
    findings = (run / "FINDINGS.md").read_text()
    assert "Plumbing run on the `tiny` preset" in findings and "one_minus_ssim" in findings
    assert "quoted from the plan" in findings and "Q3" in findings
    # every trial key is the hash of its config, and its record sits in trials/<key>/trial.json
    for key, t in results["trials"].items():
        assert (run / "trials" / key / "trial.json").is_file()

    # a re-run does no trial twice
    n_first = len(backend.calls)
    assert n_first == len(set(backend.calls)) == len(on_disk["trials"])
    study(tmp_path, backend, "e2_1.budgets=[5m,10m,20m,100m]", "e2_1.seeds=[0,1,2]", render=False).run(["all"])
    assert len(backend.calls) == n_first


def test_a_failed_trial_is_recorded_and_the_rest_go_on(tmp_path):
    is_bad = lambda cfg: cfg["kind"] == "train" and cfg["train"]["adapter"]["budget"] == "20m"  # noqa: E731
    backend = FakeBackend(raise_when=is_bad)
    s = study(tmp_path, backend, "e2_1.budgets=[5m,10m,20m,100m]", "e2_1.seeds=[0]")
    s.run(["e2.1"])
    res = load_results(tmp_path / "run")
    statuses = {t["labels"]["e2.1"]: t["status"] for t in res["trials"].values()}
    assert statuses == {"query-5m-s0": "completed", "query-10m-s0": "completed", "query-20m-s0": "failed",
                        "query-100m-s0": "completed"}
    failed = next(t for t in res["trials"].values() if t["status"] == "failed")
    assert "injected crash" in failed["error"]
    e21 = res["experiments"]["e2.1"]
    assert e21["status"] == "partial" and e21["summary"]["param_efficiency"] is not None
    assert "checkpoints/adapter_20m_best" not in str(e21["checkpoints"])
    # re-run: the failed trial is not retried ...
    n = len(backend.calls)
    study(tmp_path, backend, "e2_1.budgets=[5m,10m,20m,100m]", "e2_1.seeds=[0]").run(["e2.1"])
    assert len(backend.calls) == n
    # ... unless asked (--resume), and then it is the only one that runs
    fixed = FakeBackend()
    study(tmp_path, fixed, "e2_1.budgets=[5m,10m,20m,100m]", "e2_1.seeds=[0]", retry_failed=True).run(["e2.1"])
    assert len(fixed.calls) == 1
    assert load_results(tmp_path / "run")["experiments"]["e2.1"]["status"] == "complete"


def test_diverged_trials_are_outcomes_and_unstable_training_is_flagged(tmp_path):
    backend = FakeBackend(diverge_when=lambda cfg: cfg["kind"] == "train")
    study(tmp_path, backend).run(["e2.3"])  # pulls in e2.2 first (its recommendation picks the architecture)
    res = load_results(tmp_path / "run")
    assert set(res["experiments"]) == {"e2.2", "e2.3"}
    assert res["experiments"]["e2.3"]["summary"]["all_unstable"] is True
    assert res["experiments"]["e2.3"]["summary"]["arch_source"].startswith("fallback")
    assert any(f["id"] == "training_unstable" and f["fired"] for f in res["decisions"]["failures"])
    n = len(backend.calls)
    study(tmp_path, backend).run(["e2.3"])
    assert len(backend.calls) == n  # diverged is a result, never re-run


def test_a_study_dir_of_another_preset_is_refused(tmp_path):
    study(tmp_path, FakeBackend(), "e2_1.seeds=[0]", "e2_1.budgets=[10m,100m]").run(["e2.1"])
    with pytest.raises(ValueError, match="holds a 'tiny' study"):
        Study(tmp_path / "run", preset="mini", backend=FakeBackend(), log=lambda s: None)


def test_changing_the_recipe_changes_the_trial_key(tmp_path):
    backend = FakeBackend()
    study(tmp_path, backend, "e2_1.seeds=[0]", "e2_1.budgets=[10m,100m]").run(["e2.1"])
    n = len(backend.calls)
    study(tmp_path, backend, "e2_1.seeds=[0]", "e2_1.budgets=[10m,100m]", "recipe.optim.lr=0.001").run(["e2.1"])
    assert len(backend.calls) == n + 2


def test_turning_tracking_on_reuses_every_finished_trial(tmp_path):
    backend = FakeBackend()
    study(tmp_path, backend, "e2_1.seeds=[0]", "e2_1.budgets=[10m,100m]").run(["e2.1"])
    n = len(backend.calls)
    study(tmp_path, backend, "e2_1.seeds=[0]", "e2_1.budgets=[10m,100m]", "recipe.log.tensorboard=true",
          "recipe.log.every_steps=7").run(["e2.1"])
    assert len(backend.calls) == n  # the log section changes no number, so it is not part of the trial key


def test_cli_accepts_overrides_after_options():
    from c2bridge.cli import build_parser
    from c2bridge.cli.experiments import _split_args

    args = build_parser().parse_args(["run", "e2.1", "--preset", "tiny", "--out", "X", "e2_1.seeds=[0]", "--resume"])
    assert (args.preset, args.out, args.resume) == ("tiny", "X", True)
    assert _split_args(args) == (["e2.1"], ["e2_1.seeds=[0]"])
    with pytest.raises(ValueError, match="name an experiment"):
        _split_args(build_parser().parse_args(["run", "seeds=[0]"]))


def test_an_interrupted_trial_stops_the_study_and_is_resumed_next_time(tmp_path):
    args = ("e2_1.budgets=[5m,10m,100m]", "e2_1.seeds=[0]")
    hit = lambda cfg: cfg["kind"] == "train" and cfg["train"]["adapter"]["budget"] == "10m"  # noqa: E731
    first = FakeBackend(interrupt_when=hit)
    with pytest.raises(StudyInterrupted, match="query-10m-s0"):
        study(tmp_path, first, *args).run(["e2.1"])
    assert len(first.calls) == 2  # 5m done, 10m interrupted, 100m never dispatched
    res = load_results(tmp_path / "run")
    assert [t["labels"]["e2.1"] for t in res["trials"].values()] == ["query-5m-s0"]  # no outcome stored for 10m
    second = FakeBackend()
    study(tmp_path, second, *args).run(["e2.1"])
    assert len(second.calls) == 2  # 10m (resumed) and 100m; 5m not repeated
    assert load_results(tmp_path / "run")["experiments"]["e2.1"]["status"] == "complete"


def test_a_recipe_change_within_the_seed_spread_is_not_adopted(tmp_path):
    backend = FakeBackend(cosine_gain=0.001)  # E2.1's 10M seed spread is 0.002
    study(tmp_path, backend, "e2_1.budgets=[10m,100m]", "e2_1.seeds=[0,1,2]", "e2_2.seeds=[0,1,2]",
          render=False).run(["all"])
    res = load_results(tmp_path / "run")
    e23 = res["experiments"]["e2.3"]["summary"]
    assert e23["kept_baseline"] and e23["gain_exceeds_seed_spread"] is False
    assert e23["best_recipe"]["patch"] == {} and "not adopted" in e23["recommendation"]
    assert e23["recipe_gain"] == 0 and res["experiments"]["e2.3"]["verdicts"]["recipe_gain"]["verdict"] == "acceptable"
    # so E2.4 trains nothing new: its 10M and 100M trials are E2.1's (same kind, recipe, seeds)
    trained_in_e24 = [t for t in res["trials"].values() if "e2.4" in t["labels"] and t["config"]["kind"] == "train"]
    assert trained_in_e24 and all("e2.1" in t["labels"] for t in trained_in_e24)


def test_among_recipes_within_the_seed_spread_the_one_with_fewest_changes_wins(tmp_path):
    # cosine beats the base recipe by far more than the seed spread; colour jitter changes nothing (equal distance)
    backend = FakeBackend(cosine_gain=0.05)
    study(tmp_path, backend, "e2_1.budgets=[10m,100m]", "e2_1.seeds=[0,1,2]", "e2_2.seeds=[0]",
          render=False).run(["e2.1", "e2.2", "e2.3"])
    res = load_results(tmp_path / "run")
    e23 = res["experiments"]["e2.3"]
    s = e23["summary"]
    assert s["best_per_grid"]["augmentations"]["patch"] == {}  # jitter's tie is no gain: the grid keeps its base
    assert s["best_recipe"]["patch"] == {"schedule.name": "cosine", "schedule.min_lr": 1.0e-5}
    assert s["gain_exceeds_seed_spread"] is True and not s["kept_baseline"]
    # only one grid found a real change, so there is nothing to combine and no combined trial is trained
    assert "combined" not in [a["label"] for a in e23["arms"]]
