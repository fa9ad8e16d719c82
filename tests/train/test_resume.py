"""Kill-and-resume: a real `c2bridge train` subprocess SIGKILLed mid-run, then --resume, ends with the same
adapter weights, bit for bit, as an uninterrupted run (CPU)."""
import json
import os
import signal
import subprocess
import sys
import time

import torch
import yaml
from safetensors.torch import load_file

from c2bridge.train import train


def _cli(args, **kw):
    env = {**os.environ, "TQDM_DISABLE": "1"}
    return subprocess.Popen([sys.executable, "-m", "c2bridge.cli", "train", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_killed_run_resumes_to_bit_identical_weights(tiny_config, tmp_path):
    total = 6
    # sleep_per_step only slows the run down so the kill lands mid-way; dropout + mixup exercise every RNG
    cfg = tiny_config(**{"optim.max_steps": total, "checkpoint.every_steps": 2, "eval.every_steps": 3,
                         "adapter.dropout": 0.1, "data.feature_mixup_alpha": 0.4, "optim.grad_accum": 2,
                         "debug.sleep_per_step": 0.5})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))

    run = tmp_path / "killed"
    proc = _cli([str(path), "--out", str(run)])
    deadline = time.time() + 120
    while not (run / "checkpoints" / "step_00000002").is_dir():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "result.json").exists()  # really killed mid-run
    killed_at = max(json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines())
    assert killed_at < total

    resumed = _cli([str(path), "--out", str(run), "--resume"])
    out, err = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, err.decode()

    reference = train(cfg, tmp_path / "uninterrupted")  # in-process, never interrupted
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "completed" and result["resumed_from_step"] >= 2
    a = load_file(run / "adapter" / "model.safetensors")
    b = load_file(tmp_path / "uninterrupted" / "adapter" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the log holds each step once, and the validation numbers agree with the uninterrupted run
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == list(range(1, total + 1))
    assert result["best"] == reference["best"]


def test_sigterm_checkpoints_and_resume_matches(tiny_config, tmp_path):
    """Pre-emption: SIGTERM -> finish the step, checkpoint, status `interrupted` (no result.json); resume -> the
    same weights as an uninterrupted run."""
    import threading

    cfg = tiny_config(**{"optim.max_steps": 6, "checkpoint.every_steps": 0, "eval.every_steps": 3,
                         "adapter.dropout": 0.1, "debug.sleep_per_step": 0.3})
    run = tmp_path / "run"

    def send_sigterm_after_first_train_record():
        deadline = time.time() + 60
        while time.time() < deadline:
            log = run / "metrics.jsonl"
            if log.exists() and '"kind": "train"' in log.read_text():
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.02)

    handler_before = signal.getsignal(signal.SIGTERM)  # other libraries (e.g. ray) may have installed one
    sender = threading.Thread(target=send_sigterm_after_first_train_record)
    sender.start()
    result = train(cfg, run)
    sender.join()
    assert result["status"] == "interrupted" and result["step"] < 6 and not (run / "result.json").exists()
    assert (run / "checkpoints" / f"step_{result['step']:08d}").is_dir()  # checkpointed although every_steps=0
    assert signal.getsignal(signal.SIGTERM) is handler_before  # handler restored

    resumed = train(cfg, run, resume=True)
    reference = train(cfg, tmp_path / "reference")
    assert resumed["status"] == "completed" and resumed["resumed_from_step"] == result["step"]
    a = load_file(run / "adapter" / "model.safetensors")
    b = load_file(tmp_path / "reference" / "adapter" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
