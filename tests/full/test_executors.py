"""Executors beyond `local`: the process pool, Ray (local cluster, a worker killed mid-trial) and Modal (offline)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from c2bridge._io import read_json
from c2bridge.experiments.executors import EXECUTORS, get_executor

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _trial_fns  # noqa: E402


def _trials(tmp_path: Path, specs: list[dict]) -> list[dict]:
    ws = tmp_path / "ws"
    return [{"key": f"t{i}", "run_dir": str(ws / "trials" / f"t{i}"), "workspace": str(ws), "config": {}, **s}
            for i, s in enumerate(specs)]


def _attempts(trial: dict) -> list[dict]:
    return [json.loads(line) for line in (Path(trial["run_dir"]) / "attempts.jsonl").read_text().splitlines()]


def test_registry_names_and_unknown_executor():
    assert {"local", "pool", "ray", "modal"} <= set(EXECUTORS)
    with pytest.raises(ValueError, match="unknown executor 'slurm'"):
        get_executor("slurm")


def test_pool_runs_trials_in_parallel_and_records_failures(tmp_path):
    trials = _trials(tmp_path, [{"steps": 4, "sleep": 0.25}, {"steps": 4, "sleep": 0.25}, {"fail": True}])
    results = {r["key"]: r for r in get_executor("pool", workers=2).run(_trial_fns.dispatch_trial, trials)}
    assert set(results) == {"t0", "t1", "t2"}
    assert results["t0"]["status"] == results["t1"]["status"] == "completed"
    assert results["t2"]["status"] == "failed" and "boom in trial" in results["t2"]["error"]
    a, b = results["t0"], results["t1"]
    assert a["pid"] != b["pid"] != os.getpid()
    assert a["t_start"] < b["t_end"] and b["t_start"] < a["t_end"], "the two trials should overlap in time"
    with pytest.raises(ValueError, match="workers must be >= 1"):
        get_executor("pool", workers=0)


def test_pool_pins_one_gpu_per_worker_and_executor_options_are_checked(tmp_path):
    # two workers over GPU ids "3" and "5": each worker process sees exactly one of them (round-robin)
    trials = [{"key": f"t{i}", "run_dir": str(tmp_path / f"t{i}"), "sleep": 0.3} for i in range(4)]
    pool = get_executor("pool", gpus="3,5")
    assert pool.workers == 2  # one worker per GPU by default
    results = list(pool.run(_trial_fns.report_pinned_gpu, trials))
    by_pid = {}
    for r in results:
        assert r["status"] == "completed"
        by_pid.setdefault(r["pid"], set()).add(r["gpu"])
    assert sorted(g for gpus in by_pid.values() for g in gpus) == ["3", "5"] and all(len(g) == 1 for g in by_pid.values())
    # without GPUs nothing is pinned (the worker inherits the parent's environment)
    assert get_executor("pool", gpus="none", workers=2).gpus == []
    # options come from the command line as KEY=VALUE; unknown ones are one clear error
    from c2bridge.experiments.executors import parse_executor_options

    assert parse_executor_options(["workers=8", "gpus=0,1"]) == {"workers": 8, "gpus": "0,1"}
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['cores'\]"):
        get_executor("pool", cores=2)
    # one intra-op thread per worker when the workers fill the cores; the local executor takes every core
    assert get_executor("pool", workers=os.cpu_count() or 1).threads == 1
    assert get_executor("pool", workers=1, threads=3).threads == 3
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        parse_executor_options(["workers"])


# ------------------------------------------------------------------------------------------------------------ Ray


@pytest.fixture(scope="module")
def ray_local():
    import ray  # part of the test extra: never skipped
    from c2bridge.experiments.executors.ray import local_init_kwargs

    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    ray.init(**local_init_kwargs(num_cpus=2))
    # start both worker processes now (they start lazily, one at a time, on a loaded 2-core machine)
    warm = ray.remote(num_cpus=1)(lambda: os.getpid())
    ray.get([warm.remote() for _ in range(2)])
    yield ray
    ray.shutdown()


def test_ray_parallel_trials_and_a_killed_worker_resumes_from_its_checkpoint(tmp_path, ray_local):
    trials = _trials(tmp_path, [
        {"steps": 6, "sleep": 0.2, "crash_at": 3},  # its worker dies after step 3, once
        {"steps": 4, "sleep": 0.5},
        {"steps": 4, "sleep": 0.5},
        {"fail": True},  # an exception: recorded, not retried
    ])
    executor = get_executor("ray", max_retries=2)
    results = {r["key"]: r for r in executor.run(_trial_fns.dispatch_trial, trials)}
    assert set(results) == {"t0", "t1", "t2", "t3"}

    crashed = results["t0"]
    assert crashed["status"] == "completed"
    assert crashed["resumed_from"] == 3  # picked up at the checkpoint, not from scratch
    attempts = _attempts(trials[0])
    assert [a.get("start_step", a.get("crash_step")) for a in attempts] == [0, 3, 3]  # start, crash, restart
    assert attempts[0]["pid"] == attempts[1]["pid"] != attempts[2]["pid"]  # the retry ran in a new process
    assert read_json(Path(trials[0]["run_dir"]) / "checkpoint.json") == {"step": 6}

    assert results["t3"]["status"] == "failed" and "boom" in results["t3"]["error"]
    assert len(_attempts(trials[3])) == 1

    spans = [(results[k]["t_start"], results[k]["t_end"]) for k in ("t0", "t1", "t2")]
    spans.append((attempts[0]["t"], attempts[1]["t"]))  # the attempt that was killed
    overlaps = [(a, b) for i, a in enumerate(spans) for b in spans[i + 1:] if a[0] < b[1] and b[0] < a[1]]
    assert overlaps, f"no two trials ran at once on 2 CPUs: {spans}"


def test_tiny_e2_1_through_ray_with_a_killed_worker(tmp_path, ray_local):
    """The study runner -> ray executor -> the real trial function (train + evaluate), trials in parallel; one
    worker is killed right after its trial's step-2 checkpoint, and that trial resumes from it."""
    from c2bridge._io import read_yaml
    from c2bridge.experiments.runner import Study

    logs: list[str] = []
    study = Study(tmp_path / "study", preset="tiny", executor="ray", render=False, log=logs.append,
                  overrides=["recipe.debug.sleep_per_step=0.2"])
    study.backend.trial_fn = _trial_fns.crash_once_mid_training
    study.run(["e2.1"])
    killed = (tmp_path / "study" / "killed-worker.marker").read_text()
    records = {p.parent.name: read_json(p) for p in (tmp_path / "study" / "trials").glob("*/trial.json")}
    assert len(records) == 3 and all(r["status"] == "completed" for r in records.values()), records
    resumed = read_json(tmp_path / "study" / "trials" / killed / "train" / "result.json")
    assert resumed["status"] == "completed" and resumed["resumed_from_step"] == 2
    others = [k for k in records if k != killed]
    assert all(read_json(tmp_path / "study" / "trials" / k / "train" / "result.json")["resumed_from_step"] is None
               for k in others)
    results = read_yaml(tmp_path / "study" / "results.yaml")
    assert "e2.1" in str(results)


def test_ray_storage_check_and_missing_extra(tmp_path, monkeypatch):
    trials = _trials(tmp_path, [{"steps": 1}])
    with pytest.raises(ValueError, match="not under the shared storage path"):
        list(get_executor("ray", storage=str(tmp_path / "elsewhere")).run(_trial_fns.dispatch_trial, trials))
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(ValueError, match=r"pip install 'c2bridge\[ray\]'"):
        get_executor("ray")


# ---------------------------------------------------------------------------------------------------------- Modal


def _function_info(fn):
    inner = next(v for k, v in vars(fn).items() if k.startswith("_sync_original"))
    return inner._function_info


def test_modal_app_definition_offline():
    import modal

    from c2bridge.experiments.executors import modal as em

    assert isinstance(em.app, modal.App) and em.app.name == "c2bridge"
    settings = em.FUNCTION_SETTINGS
    assert settings["gpu"] == "A100-80GB"
    assert settings["timeout"] == 24 * 3600
    assert settings["retries"].max_retries == 3
    assert settings["volumes"] == {"/vol": em.volume}
    info = _function_info(em.run_trial_remote)  # what Modal recorded for the function
    assert info.gpus == [("A100-80GB", 1)]
    assert info.timeout == 24 * 3600 and info.max_retries == 3
    assert info.volumes["/vol"].name == "c2bridge"
    assert info.single_use_containers is True


def test_modal_settings_come_from_the_environment():
    code = ("from c2bridge.experiments.executors import modal as em\n"
            "inner = next(v for k, v in vars(em.run_trial_remote).items() if k.startswith('_sync_original'))\n"
            "i = inner._function_info\n"
            "print(i.gpus, i.timeout, i.max_retries, i.volumes['/vol'].name)")
    env = {**os.environ, "C2BRIDGE_MODAL_GPU": "H100", "C2BRIDGE_MODAL_TIMEOUT": "3600",
           "C2BRIDGE_MODAL_RETRIES": "5", "C2BRIDGE_MODAL_VOLUME": "c2-test"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[('H100', 1)] 3600 5 c2-test"


def test_modal_trial_body_runs_locally_and_writes_its_result(tmp_path):
    from c2bridge.experiments.executors import modal as em

    (trial,) = _trials(tmp_path, [{"steps": 3}])
    ref = em.fn_reference(_trial_fns.checkpointing_trial)
    assert ref == "_trial_fns:checkpointing_trial"
    result = em.run_trial_remote.local(ref, trial)  # the function body, in this process, no Volume
    assert result["status"] == "completed" and result["key"] == "t0"
    assert read_json(Path(trial["run_dir"]) / em.RESULT_FILE)["steps"] == 3
    # a re-run (Modal retry) resumes from the checkpoint the first run left
    again = em.run_trial_remote.local(ref, {**trial, "steps": 5})
    assert again["resumed_from"] == 3


def test_modal_paths_refs_and_clear_errors(tmp_path, monkeypatch):
    import modal.config

    from c2bridge.experiments.executors import modal as em

    (trial,) = _trials(tmp_path, [{"steps": 1}])
    remote = em.to_volume(trial)
    assert remote["workspace"] == "/vol/ws" and remote["run_dir"] == "/vol/ws/trials/t0"
    with pytest.raises(ValueError, match="module-level function"):
        em.fn_reference(lambda t: t)
    # no credentials -> one clear error before anything is sent
    monkeypatch.delenv("MODAL_TOKEN_ID", raising=False)
    monkeypatch.delenv("MODAL_TOKEN_SECRET", raising=False)
    monkeypatch.setattr(modal.config, "config", {})
    with pytest.raises(ValueError, match="modal token new"):
        list(get_executor("modal").run(_trial_fns.checkpointing_trial, [trial]))
    # missing extra -> the install hint
    monkeypatch.setattr(em, "modal", None)
    with pytest.raises(ValueError, match=r"pip install 'c2bridge\[modal\]'"):
        get_executor("modal")
