"""The GPU check (benchmarks/gpu_check.py) on its CPU path: the tiny preset's widths in fp32, every stage, run as
a subprocess the way a GPU machine runs it. Checks the result file's fields, that a CPU run never claims GPU
figures, the failure and time-guard exits, and `c2bridge plan --mfu-from`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
STAGES = ["env", "build", "extract", "cache", "train_10m", "sample", "step_10m_flow", "step_10m_pixel",
          "step_100m_flow", "step_100m_pixel", "latency", "clip_step", "pool"]


def _run(args: list[str], timeout: int = 600, script: list[str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("OUT", None)
    return subprocess.run(script or [sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO)


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    proc = _run(["--out", str(out)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc, json.loads((out / "gpu_check.json").read_text())


@pytest.mark.slow
def test_cpu_path_result_file(cpu_run):
    out, proc, result = cpu_run
    assert result["schema"] == "c2bridge.gpu_check/1"
    assert result["ok"] is True and result["exit_code"] == 0 and result["failed_stage"] is None
    assert result["device"] == "cpu" and result["profile"] == "cpu" and result["settings"]["dtype"] == "float32"
    assert [s["name"] for s in result["stages"]] == STAGES
    assert all(s["ok"] and s["seconds"] >= 0 and s["peak_rss_gib"] > 0 for s in result["stages"])
    assert 0 < result["wall_s"] < result["time_limit_s"]
    # progress: every stage printed with the elapsed time
    for name in STAGES:
        assert f"] {name} ok in" in proc.stdout

    env = result["environment"]
    assert env["gpu_name"] is None and env["peak_tflops"] is None and env["matmul_tflops"] > 0
    cache = next(s for s in result["stages"] if s["name"] == "cache")["info"]
    assert cache["image"]["latent"][0] == 2 and cache["clip"]["target"][2] == 25  # [B, 3, F, H, W]

    steps = {r["name"]: r for r in result["steps"]}
    assert list(steps) == ["10m_flow", "10m_pixel", "100m_flow", "100m_pixel", "clip_10m_pixel"]
    for r in steps.values():
        assert r["step_ms"] > 0 and r["iters"] >= 1 and r["planned_tflop"] > 0
        assert r["achieved_tflops"] == pytest.approx(r["planned_tflop"] / (r["step_ms"] / 1e3), rel=1e-2)
        assert r["mfu"] is None and "CPU" in r["mfu_reason"]  # never a GPU figure from a CPU
        assert r["planned_peak_gib"] > 0 and "memory_ratio" not in r
    assert steps["100m_flow"]["adapter_params"] > 5 * steps["10m_flow"]["adapter_params"]
    # the planner counts the VAE decode only for pixel losses, and 25 frames cost more than 1
    assert steps["10m_pixel"]["planned_tflop"] > steps["10m_flow"]["planned_tflop"]
    assert steps["clip_10m_pixel"]["planned_tflop"] > steps["10m_pixel"]["planned_tflop"] / 2
    assert steps["clip_10m_pixel"]["frames"] == 25

    latency = {(r["adapter"], r["mode"]): r for r in result["latency"]}
    assert set(latency) == {("10m", "fp32"), ("100m", "fp32")}
    assert all(r["median_ms"] > 0 and r["batch"] == 1 and r["target_ms"] == 150.0 for r in latency.values())

    pool = result["pool"]
    assert pool["ok"] and pool["placeholder_ids"] and pool["problems"] == []
    assert len({w["pid"] for w in pool["workers"]}) == 2
    assert sorted(w["cuda_visible_devices"] for w in pool["workers"]) == ["0", "1"]

    summary = result["summary"]
    assert summary["mfu_for_planner"] is None and "cpu" in summary["mfu_reason"]
    assert set(summary["latency_ms"]) == {"10m", "100m"} and summary["pool_ok"] is True
    table = (out / "gpu_check.md").read_text()
    assert "CPU" in table and "| 10m_pixel |" in table and "No MFU for the planner" in table


@pytest.mark.slow
def test_forced_failure_names_the_stage_and_keeps_what_completed(tmp_path):
    proc = _run(["--out", str(tmp_path), "--fail-stage", "build"])
    assert proc.returncode == 1
    assert "FAILED at stage build" in proc.stderr and "forced failure" in proc.stderr
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["ok"] is False and result["failed_stage"] == "build" and result["exit_code"] == 1
    assert [(s["name"], s["ok"]) for s in result["stages"]] == [("env", True), ("build", False)]
    assert "FAILED at stage build" in (tmp_path / "gpu_check.md").read_text()


def test_time_guard_stops_before_a_stage(tmp_path):
    proc = _run(["--out", str(tmp_path), "--time-limit", "0"])
    assert proc.returncode == 3
    assert "FAILED at stage env: time guard" in proc.stderr
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["failed_stage"] == "env" and result["stages"] == [] and result["exit_code"] == 3


def test_wrapper_passes_out_and_options(tmp_path):
    env_python = {"PYTHON": sys.executable, "OUT": str(tmp_path)}
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--time-limit", "0"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, **env_python, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert json.loads((tmp_path / "gpu_check.json").read_text())["time_limit_s"] == 0


@pytest.mark.slow
def test_plan_mfu_from(cpu_run, tmp_path, capsys):
    from c2bridge.cli import main

    out, _, result = cpu_run
    # a CPU result is refused with one line
    assert main(["plan", "--summary", "--mfu-from", str(out / "gpu_check.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a GPU" in err[0]
    # a malformed file, and a file that is not a check result
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["plan", "--summary", "--mfu-from", str(bad)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    bad.write_text(json.dumps({"device": "cuda"}))
    assert main(["plan", "--summary", "--mfu-from", str(bad)]) == 2
    assert "not a GPU-check result" in capsys.readouterr().err
    assert main(["plan", "--mfu-from", str(tmp_path / "missing.json")]) == 2
    assert "no such file" in capsys.readouterr().err

    # a GPU result's MFU is what the plan uses: the same plan as --mfu with that number
    gpu = dict(result, device="cuda", summary={**result["summary"], "mfu_for_planner": 0.42, "mfu_source": "x"})
    gpu["environment"] = {**result["environment"], "gpu_name": "NVIDIA H200"}
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps(gpu))
    assert main(["plan", "--summary", "--mfu-from", str(path)]) == 0
    from_file = capsys.readouterr().out
    assert main(["plan", "--summary", "--mfu", "0.42"]) == 0
    direct = capsys.readouterr().out
    assert "MFU 0.42" in from_file and "NVIDIA H200" in from_file
    assert direct.strip() in from_file  # same tables, plus the line naming where the MFU came from
    assert main(["plan", "--mfu", "0.3", "--mfu-from", str(path)]) == 2
    assert "not both" in capsys.readouterr().err
    path.write_text(json.dumps({**gpu, "summary": {**gpu["summary"], "mfu_for_planner": 1.7}}))
    assert main(["plan", "--mfu-from", str(path)]) == 2
    assert "no usable MFU" in capsys.readouterr().err


def test_gpu_peak_by_device_name():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    from c2bridge import planner

    assert gpu_check.gpu_peak("NVIDIA H200", 139.8)[:2] == (planner.GPUS["h100"].peak_tflops, "h100")
    assert gpu_check.gpu_peak("NVIDIA H100 80GB HBM3", 79.6)[:2] == (planner.GPUS["h100"].peak_tflops, "h100")
    assert gpu_check.gpu_peak("NVIDIA H100 PCIe", 79.6)[0] == 756.0  # the PCIe card's lower clocks
    assert gpu_check.gpu_peak("NVIDIA A100-SXM4-40GB", 39.4)[:2] == (planner.GPUS["a100-40"].peak_tflops, "a100-40")
    assert gpu_check.gpu_peak("NVIDIA A100-SXM4-80GB", 79.2)[1] == "a100-80"
    peak, key, note = gpu_check.gpu_peak("Some Future GPU", 100.0)
    assert peak is None and key is None and "--peak-tflops" in note
