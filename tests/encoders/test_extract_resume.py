"""Kill a real extraction process mid-run, resume it, and check nothing finished was recomputed or rewritten."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from enc_fakes import FakeImages

from c2bridge.encoders import build_encoders
from c2bridge.encoders.cache import FeatureCache, verify_cache
from c2bridge.encoders.extraction import extract

HERE = Path(__file__).resolve().parent
N_ITEMS = 24  # 6 shards of 4


def _finished(out: Path) -> list[dict]:
    try:
        return json.loads((out / "manifest.json").read_text())["shards"]
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def _stats(out: Path, shards: list[dict]) -> dict:
    from c2bridge._io import sha256_file

    return {s["file"]: (os.stat(out / s["file"]).st_ino, os.stat(out / s["file"]).st_mtime_ns,
                        sha256_file(out / s["file"])) for s in shards}


def test_kill_and_resume(tmp_path):
    out = tmp_path / "cache"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    proc = subprocess.Popen([sys.executable, str(HERE / "enc_resume_worker.py"), str(out), str(N_ITEMS), "0.3"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while len(_finished(out)) < 2:
            assert proc.poll() is None, f"worker exited early: {proc.stdout.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "worker made no progress"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # no cleanup handlers run: a real crash
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    done = _finished(out)
    assert 2 <= len(done) < N_ITEMS // 4, "the kill came too late to interrupt the extraction"
    before = _stats(out, done)
    partial = FeatureCache(out, allow_partial=True)  # only finished shards are visible
    assert len(partial) == 4 * len(done) and verify_cache(out)["ok"]

    torch.set_num_threads(1)
    enc = build_encoders("tiny", device="cpu")
    resumed = extract("tiny", FakeImages(n=N_ITEMS), "train", out, batch_size=4, shard_size=4, progress=False,
                      encoders=enc)
    assert len(resumed) == N_ITEMS and resumed.manifest["complete"] and verify_cache(out)["ok"]
    assert _stats(out, done) == before  # finished shards untouched: same inode, mtime and bytes
    assert not list(out.glob(".*.tmp"))  # no temp file left from the killed write

    fresh = extract("tiny", FakeImages(n=N_ITEMS), "train", tmp_path / "fresh", batch_size=4, shard_size=4,
                    progress=False, encoders=enc)
    assert fresh.key == resumed.key
    assert [s["sha256"] for s in fresh.manifest["shards"]] == [s["sha256"] for s in resumed.manifest["shards"]]
    for i in (0, 9, N_ITEMS - 1):
        a, b = fresh[i], resumed[i]
        assert a["sample_id"] == b["sample_id"]
        assert torch.equal(a["vlm"], b["vlm"]) and torch.equal(a["dino"], b["dino"])
