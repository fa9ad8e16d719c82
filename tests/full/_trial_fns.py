"""Pure trial functions for the executor tests (importable by name from spawned / Ray / Modal workers)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from c2bridge._io import append_jsonl, atomic_write_json, read_json


def checkpointing_trial(trial: dict) -> dict:
    """Counts to trial["steps"], checkpointing after every step; resumes from the checkpoint when the executor
    says resume=True. With trial["crash_at"] = k it kills its own process after step k, once (a marker file
    remembers), like a worker lost mid-trial."""
    run_dir = Path(trial["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = run_dir / "checkpoint.json"
    start = read_json(ckpt)["step"] if (trial.get("resume") and ckpt.is_file()) else 0
    t0 = time.time()
    append_jsonl(run_dir / "attempts.jsonl", {"pid": os.getpid(), "start_step": start, "t": t0})
    for step in range(start, int(trial["steps"])):
        time.sleep(float(trial.get("sleep", 0.0)))
        atomic_write_json(ckpt, {"step": step + 1})
        marker = run_dir / "crashed.marker"
        if trial.get("crash_at") == step + 1 and not marker.exists():
            marker.write_text("x")
            append_jsonl(run_dir / "attempts.jsonl", {"pid": os.getpid(), "crash_step": step + 1, "t": time.time()})
            os._exit(17)  # the worker process dies mid-trial
    return {"status": "completed", "resumed_from": start, "steps": int(trial["steps"]), "pid": os.getpid(),
            "t_start": t0, "t_end": time.time()}


def failing_trial(trial: dict) -> dict:
    run_dir = Path(trial["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    append_jsonl(run_dir / "attempts.jsonl", {"pid": os.getpid()})
    raise RuntimeError("boom in trial " + json.dumps(trial["key"]))


def dispatch_trial(trial: dict) -> dict:
    return failing_trial(trial) if trial.get("fail") else checkpointing_trial(trial)


def crash_once_mid_training(trial: dict) -> dict:
    """The study's real trial function, except that the first trial of the workspace to write its step-2
    checkpoint has its worker process killed right then (once: an O_EXCL marker in the workspace)."""
    import threading

    from c2bridge.experiments.backend import run_trial

    run_dir, workspace = Path(trial["run_dir"]), Path(trial["workspace"])
    marker = workspace / "killed-worker.marker"
    if not marker.exists():
        def watch() -> None:
            ckpt = run_dir / "train" / "checkpoints" / "step_00000002"
            while not ckpt.is_dir():
                time.sleep(0.02)
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:  # another trial was killed already
                return
            os.write(fd, trial["key"].encode())
            os.close(fd)
            os._exit(17)

        threading.Thread(target=watch, daemon=True).start()
    return run_trial(trial)


def report_pinned_gpu(trial: dict) -> dict:
    """Which GPU the pool pinned this worker to (its CUDA_VISIBLE_DEVICES), and the worker's pid."""
    time.sleep(float(trial.get("sleep", 0.0)))
    return {"status": "completed", "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"), "pid": os.getpid()}
