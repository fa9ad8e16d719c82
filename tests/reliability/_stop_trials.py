"""A trial function that stops like the trainer does (importable by name from spawned pool workers): it counts
steps, writes its progress after each, and on SIGTERM finishes the step and returns ``interrupted``."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from c2bridge._io import append_jsonl


def stoppable_trial(trial: dict) -> dict:
    run_dir = Path(trial["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    stop = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))
    try:
        for step in range(int(trial["steps"])):
            time.sleep(float(trial.get("sleep", 0.1)))
            append_jsonl(run_dir / "progress.jsonl", {"pid": os.getpid(), "step": step + 1, "t": time.time()})
            if stop:
                return {"status": "interrupted", "reason": f"SIGTERM after step {step + 1}", "pid": os.getpid()}
    finally:
        signal.signal(signal.SIGTERM, previous)
    return {"status": "completed", "pid": os.getpid()}
