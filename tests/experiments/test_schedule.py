"""The study engine's scheduling levers: successive halving of sweep arms, the persistent pool, executor-chosen
thread counts, the graph schedule (same results as the staged one)."""
from __future__ import annotations

from pathlib import Path

import pytest

from c2bridge.experiments.halving import Halving, OptunaHalving, decide, rungs
from c2bridge.experiments.runner import Study
from c2bridge.report.results import load_results

from exp_fakes import FakeBackend

HALVING = ["halving.enabled=true", "halving.eta=2", "halving.min_fraction=0.25",
           "recipe.optim.max_steps=8", "recipe.eval.every_steps=2"]


def study(tmp_path, backend, *overrides, name="run", **kw):
    return Study(tmp_path / name, preset="tiny", overrides=list(overrides), backend=backend, log=lambda s: None, **kw)


def test_rungs_sit_on_validation_steps_and_the_policy_keeps_the_top_of_each_group():
    h = Halving(enabled=True, eta=3, min_fraction=0.25)
    assert rungs(300, 50, h) == [50, 200]  # 75 -> 50, 225 -> 200: steps the uninterrupted run validates at
    assert rungs(300, 150, h) == [150] and rungs(8, 2, Halving(True, 2, 0.25)) == [2, 4]
    assert rungs(300, None, h) == []
    policy = OptunaHalving(eta=3)
    # 6 arms, eta 3: the best 2 go on, whatever order they come in (every arm is at the rung before deciding)
    arms = [("a", 1.0), ("b", 0.5), ("c", 2.0), ("d", 0.1), ("e", 0.3), ("f", 0.2)]
    assert sorted(policy.promoted(arms, 50)) == ["d", "f"]
    assert sorted(policy.promoted(arms[::-1], 50)) == ["d", "f"]
    # at least one arm goes on; a protected arm (the baseline) is kept; a failed arm (no value) is not "pruned"
    kept, pruned = decide(policy, [("base", 1.0), ("x", 0.5), ("y", 0.7), ("broken", None)], 50, {"base"})
    assert kept == ["base", "x"] and pruned == ["y"]
    with pytest.raises(ValueError, match=r"halving.eta=1: expected an integer >= 2.*min_fraction=1.5"):
        Halving.from_config({"halving": {"enabled": True, "eta": 1, "min_fraction": 1.5}})


def _e23_records(results):
    return {t["labels"]["e2.3"]: t for t in results["trials"].values() if "e2.3" in (t.get("labels") or {})}


def test_e2_3_halving_prunes_the_arms_behind_and_keeps_them_out_of_the_picks(tmp_path):
    # cosine is worse than constant in this fake (negative gain): with eta 2 the schedules grid drops it at the
    # first rung; the baseline arm always runs to the end
    backend = FakeBackend(val_curves=True, cosine_gain=-0.05)
    s = study(tmp_path, backend, *HALVING)
    s.run(["e2.3"])
    res = load_results(tmp_path / "run")
    recs = _e23_records(res)
    cosine = recs["schedules/cosine-s0"]
    assert cosine["status"] == "pruned" and cosine["pruned_at_step"] == 2 and cosine["rung_value"] is not None
    exp = res["experiments"]["e2.3"]
    rows = {a["label"]: a for a in exp["arms"]}
    assert rows["schedules/constant"]["statuses"] == ["completed"]  # the protected baseline
    assert rows["schedules/cosine"]["statuses"] == ["pruned"] and rows["schedules/cosine"]["n_pruned"] == 1
    assert exp["status"] == "complete"  # a pruned arm is accounted for, not a failure
    assert exp["summary"]["best_per_grid"]["schedules"]["arm"] == "constant"
    assert {p["label"] for p in exp["halving"]["pruned"]} >= {"schedules/cosine-s0"}
    assert exp["halving"]["decisions"][0]["policy"] == "optuna SuccessiveHalvingPruner"
    findings = (tmp_path / "run" / "FINDINGS.md").read_text()
    assert "Successive halving (eta 2" in findings and "schedules/cosine-s0 at step 2" in findings
    # the pruned trial paused once, at its rung; the kept ones paused at every rung and went on
    by_key = {}
    for key, step in backend.pauses:
        by_key.setdefault(key, []).append(step)
    cos_key = next(k for k, t in res["trials"].items() if t is cosine)
    assert by_key[cos_key] == [2]
    # same seed -> same pruned set; a re-run finds the pruned trial done (halving still on)
    again = FakeBackend(val_curves=True, cosine_gain=-0.05)
    study(tmp_path, again, *HALVING, name="run2").run(["e2.3"])
    assert {k for k, t in load_results(tmp_path / "run2")["trials"].items() if t["status"] == "pruned"} == \
        {k for k, t in res["trials"].items() if t["status"] == "pruned"}
    rerun = FakeBackend(val_curves=True, cosine_gain=-0.05)
    study(tmp_path, rerun, *HALVING).run(["e2.3"])
    assert cos_key not in rerun.calls
    # with halving off the same trial key is continued to full length (the rung is not part of the key)
    full = FakeBackend(val_curves=True, cosine_gain=-0.05)
    study(tmp_path, full, *[o for o in HALVING if not o.startswith("halving.")]).run(["e2.3"])
    assert full.calls == [cos_key]
    assert load_results(tmp_path / "run")["trials"][cos_key]["status"] == "completed"


def test_halving_off_by_default_and_sweeps_compete_too(tmp_path):
    backend = FakeBackend(val_curves=True)
    study(tmp_path, backend, "recipe.optim.max_steps=8", "recipe.eval.every_steps=2").run(["e2.3"])
    assert backend.pauses == []
    # a q-sweep (the shared sweep helper) takes the same key: its values compete, its baseline is kept
    backend = FakeBackend(val_curves=True)
    study(tmp_path, backend, *HALVING, name="q").run(["q2"])
    res = load_results(tmp_path / "q")
    assert backend.pauses, "q2's arms should pause at the first rung"
    base = res["experiments"]["q2"]["summary"]["baseline"]
    assert all(t["status"] in ("completed", "pruned") for t in res["trials"].values())
    assert "halving" in res["experiments"]["q2"] and base


def test_on_the_ray_executor_the_policy_is_ray_tunes_asha_fed_the_whole_group():
    from c2bridge.experiments.halving import AshaHalving, policy_for

    policy = policy_for("ray", 3)  # ray[tune] is part of the test extra
    assert isinstance(policy, AshaHalving) and policy.name == "Ray Tune ASHAScheduler"
    arms = [("a", 1.0), ("b", 0.5), ("c", 2.0), ("d", 0.1), ("e", 0.3), ("f", 0.2)]
    assert sorted(policy.promoted(arms, 50)) == sorted(policy.promoted(arms[::-1], 50)) == ["d", "f"]
    kept, pruned = decide(policy, [("base", 1.0), ("x", 0.5), ("y", 2.0)], 50, {"base"})
    assert kept == ["base", "x"] and pruned == ["y"]
    assert isinstance(policy_for("pool", 3), OptunaHalving)


def test_halving_on_the_ray_executor_without_ray_tune_is_one_clear_error(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray.tune", None)  # as on a machine with ray but not ray[tune]
    monkeypatch.setitem(sys.modules, "ray.tune.schedulers", None)
    with pytest.raises(ValueError, match=r"halving on the ray executor uses Ray Tune's ASHAScheduler.*"
                                         r"pip install 'ray\[tune\]'"):
        Study(tmp_path / "r", preset="tiny", overrides=HALVING, backend=FakeBackend(), executor="ray",
              log=lambda s: None).run(["e2.3"])
    assert not (tmp_path / "r" / "trials").exists()  # refused before anything ran


# --------------------------------------------------------------------------------------- pool and thread counts
def test_the_pool_keeps_its_workers_across_runs_unless_told_not_to(tmp_path):
    from c2bridge.experiments.executors import get_executor
    from exp_fakes import pid_trial

    trials = [{"key": f"t{i}", "run_dir": str(tmp_path / f"t{i}")} for i in range(2)]
    with get_executor("pool", workers=2, gpus="none") as pool:
        first = {r["pid"] for r in pool.run(pid_trial, trials)}
        second = {r["pid"] for r in pool.run(pid_trial, trials)}
        assert second <= first  # the same worker processes (torch and the models loaded once per run)
        assert {r["omp"] for r in pool.run(pid_trial, trials)} == {"1"}  # one intra-op thread each: 2 workers
    fresh = get_executor("pool", workers=2, gpus="none", persistent=False)
    a = {r["pid"] for r in fresh.run(pid_trial, trials)}
    b = {r["pid"] for r in fresh.run(pid_trial, trials)}
    assert not a & b  # a new pool per run


def test_the_executor_chooses_the_threads_and_they_are_part_of_the_trial_key(tmp_path):
    from c2bridge.encoders.extraction import extract
    from c2bridge.experiments.executors import executor_threads
    from c2bridge.train import train

    extract("tiny", "shapes", "train", tmp_path / "train", limit=8, progress=False)
    extract("tiny", "shapes", "val", tmp_path / "val", limit=4, progress=False)
    results = {}
    for threads in (1, 2):
        cfg = {"preset": "tiny", "seed": 0, "threads": threads,
               "data": {"train_cache": str(tmp_path / "train"), "val_cache": str(tmp_path / "val")},
               "optim": {"batch_size": 4, "max_steps": 3}, "eval": {"every_steps": 3},
               "log": {"progress_bar": False}}
        results[threads] = train(cfg, tmp_path / f"t{threads}")
    # the same run on 1 or 2 threads agrees to float precision, not necessarily bit for bit (the weights were
    # 1e-8..1e-6 apart here): so the count is in the key (resolved from the executor when the recipe leaves it null)
    a, b = (results[t]["final"]["val_loss"] for t in (1, 2))
    assert abs(a - b) <= 1e-4 * abs(a)
    assert executor_threads("pool", {"workers": 2, "threads": 1}) == 1
    assert executor_threads("local", {"threads": 2}) == 2 and executor_threads("ray", {}) is None
    one = study(tmp_path, FakeBackend(), executor_options={"threads": 1}, name="one")
    two = study(tmp_path, FakeBackend(), executor_options={"threads": 2}, name="two")
    keys = []
    for s in (one, two):
        s.run(["e2.1"])
        t = next(iter(load_results(s.run_dir)["trials"].values()))
        assert t["config"]["train"]["threads"] == t["config"]["eval"]["threads"] == s.trial_threads
        keys.append(set(load_results(s.run_dir)["trials"]))
    assert not keys[0] & keys[1]


# ---------------------------------------------------------------------------------------------- graph schedule
def _comparable(results: dict) -> dict:
    """What a study concluded: every trial's outcome and metrics, every experiment's summary and verdicts."""
    trials = {k: (t["status"], t.get("metrics"), t.get("pruned_at_step"), sorted(t.get("labels") or {}))
              for k, t in results["trials"].items()}
    exps = {n: (e.get("status"), e.get("summary"), e.get("verdicts")) for n, e in results["experiments"].items()}
    return {"trials": trials, "experiments": exps, "decisions": results.get("decisions"),
            "gate2": results.get("gate2")}


def test_graph_and_staged_schedules_give_the_same_study(tmp_path):
    overrides = ("e2_1.budgets=[5m,10m,100m]", "e2_1.seeds=[0,1]", *HALVING)
    out = {}
    for schedule in ("staged", "graph"):
        s = study(tmp_path, FakeBackend(val_curves=True, cosine_gain=-0.05, cache_tasks=True), *overrides,
                  name=schedule, executor="pool", executor_options={"workers": 2, "gpus": "none"}, schedule=schedule)
        s.run(["all"])
        out[schedule] = load_results(tmp_path / schedule)
    assert out["graph"]["study"]["last_run"]["schedule"] == "graph"
    assert list(out["graph"]["experiments"]) == list(out["staged"]["experiments"]) == ["e2.1", "e2.2", "e2.3", "e2.4"]
    a, b = _comparable(out["staged"]), _comparable(out["graph"])
    assert a["trials"] == b["trials"]
    assert a == b
    assert any(t["status"] == "pruned" for t in out["graph"]["trials"].values())
    # the graph extracted its caches as executor tasks; the same ones as the staged run
    assert {c["path"] for c in out["graph"]["caches"].values()} == {c["path"] for c in out["staged"]["caches"].values()}
    with pytest.raises(ValueError, match="schedule 'fast': expected one of graph, staged"):
        study(tmp_path, FakeBackend(), schedule="fast")


def test_a_trial_paused_at_a_rung_and_continued_equals_an_uninterrupted_one(tmp_path):
    """The real trial function: trained to a rung (pause_at_step: not in the key), then continued from the
    trainer's checkpoint, it ends bit-identical to the same trial trained in one go."""
    import torch
    from safetensors.torch import load_file

    from c2bridge.experiments.backend import run_trial
    from c2bridge.experiments.trials import make_trial

    from c2bridge.encoders.extraction import extract

    extract("tiny", "shapes", "train", tmp_path / "ws" / "cache" / "train", limit=8, progress=False)
    extract("tiny", "shapes", "val", tmp_path / "ws" / "cache" / "val", limit=4, progress=False)
    config = {"kind": "train", "preset": "tiny", "models": "m",
              "train": {"preset": "tiny", "seed": 0, "threads": 1,
                        "data": {"train_cache": "cache/train", "val_cache": "cache/val"},
                        "optim": {"batch_size": 4, "max_steps": 6}, "eval": {"every_steps": 2, "n_samples": 0},
                        "checkpoint": {"every_steps": 6}, "log": {"progress_bar": False}},
              "eval": {"distance": "one_minus_ssim", "splits": {}, "n_samples": 2, "sample_steps": 1,
                       "latency_iters": 1, "batch_size": 2}}
    from c2bridge.recipe import config_to_dict, load_config

    config["train"] = config_to_dict(load_config(config["train"]))
    trials = {}
    for name in ("paused", "straight"):
        trials[name] = make_trial(config, tmp_path / "ws")
        trials[name]["run_dir"] = str(tmp_path / "ws" / "trials" / name)
    first = run_trial({**trials["paused"], "pause_at_step": 2})
    assert first["status"] == "paused" and first["step"] == 2 and first["rung_value"] is not None
    assert first["curve"]["val_step"][-1] == 2  # (and the validation before the first step)
    cont = run_trial(trials["paused"])  # no pause: continues from the step-2 checkpoint to the end
    ref = run_trial(trials["straight"])
    assert cont["status"] == ref["status"] == "completed"
    assert cont["curve"]["val_loss"] == ref["curve"]["val_loss"]
    assert dict(zip(ref["curve"]["val_step"], ref["curve"]["val_loss"]))[2] == first["rung_value"]
    assert cont["train"]["final_train_loss"] == ref["train"]["final_train_loss"]
    wa, wb = (load_file(tmp_path / "ws" / t / "train" / "adapter" / "model.safetensors")
              for t in ("trials/paused", "trials/straight"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_sigterm_under_the_graph_schedule_checkpoints_stops_in_one_line_and_resumes(tmp_path):
    """Two experiments at once on the pool (the graph schedule): SIGTERM to the parent checkpoints the running
    trials, prints one line, exits 143; the same command then finishes every trial."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "c2bridge.cli", "run", "e2.1", "e2.2", "--preset", "tiny", "--no-report",
           "--executor", "pool", "--executor-opt", "workers=2", "--out", str(out),
           "e2_1.budgets=[5m,10m]", "e2_1.reference_budget=10m", "e2_1.small_budget=5m", "e2_2.kinds=[query,lora]",
           "recipe.optim.max_steps=6", "recipe.checkpoint.every_steps=2", "recipe.debug.sleep_per_step=0.4"]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    t0 = time.time()
    while not any(out.glob("trials/*/train/checkpoints/step_*")):
        assert first.poll() is None, first.communicate()[1].decode()[-2000:]
        assert time.time() - t0 < 300, "no trial checkpoint within 300 s"
        time.sleep(0.2)
    os.kill(first.pid, signal.SIGTERM)
    t_stop = time.time()
    _, err = first.communicate(timeout=300)
    took = time.time() - t_stop
    err = err.decode()
    assert first.returncode == 143 and "Traceback" not in err, err[-3000:]
    assert took < 60, f"the stopped run took {took:.0f}s to exit"
    time.sleep(2.0)
    left = []
    for stat in Path("/proc").glob("[0-9]*/stat"):  # no process of its session outlives it (the workers)
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == first.pid and fields[0] != "Z":
            left.append(int(stat.parent.name))
    assert not left, f"processes outlived the stopped run: {left}"
    assert len([ln for ln in err.splitlines() if "stopped by SIGTERM" in ln]) == 1, err
    again = subprocess.run(cmd, env=env, capture_output=True, timeout=600)
    assert again.returncode == 0, again.stderr.decode()[-3000:]
    res = load_results(out)
    assert set(res["experiments"]) == {"e2.1", "e2.2"} and res["study"]["last_run"]["schedule"] == "graph"
    assert all(t["status"] == "completed" for t in res["trials"].values())


def test_after_a_stop_a_worker_that_does_not_return_is_stopped_within_the_grace(tmp_path):
    """SIGTERM to a process running the pool while a trial ignores it (a sampled evaluation does not stop
    mid-way): the run gives it up after the grace, stops the worker and exits; nothing is left running."""
    import os
    import signal
    import subprocess
    import sys
    import time

    here = Path(__file__).resolve().parent
    driver = ("import sys; from c2bridge.experiments.executors import get_executor; import exp_fakes; "
              "trials = [{'key': 't0', 'run_dir': sys.argv[1] + '/t0'}]; "
              "pool = get_executor('pool', workers=1, gpus='none'); "
              "[print(r['status'], flush=True) for r in pool.run(exp_fakes.stubborn_trial, trials)]")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", driver, str(tmp_path)], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t0 = time.time()
    while not (tmp_path / "t0" / "started").exists():
        assert proc.poll() is None and time.time() - t0 < 120, proc.communicate()[1].decode()[-2000:]
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGTERM)
    t_stop = time.time()
    out, err = proc.communicate(timeout=60)
    assert time.time() - t_stop < 30, "the stop waited for the stubborn trial"
    assert b"interrupted" in out and b"Terminated" in err  # its result, then the stop raised to the caller
    time.sleep(1.0)
    left = [int(st.parent.name) for st in Path("/proc").glob("[0-9]*/stat")
            if _session_of(st) == proc.pid]
    assert not left, f"processes outlived the stop: {left}"


def _session_of(stat: Path) -> int | None:
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[3]) if fields[0] != "Z" else None
