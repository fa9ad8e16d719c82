"""Mixed training sets (``data.mix``): each micro-batch comes from one cache picked by weight, deterministically
from (seed, micro-batch); a pre-empted mixed run resumes to the same weights; per-cache losses are logged; bad
mixes are one clear error before anything is written."""
import json
import os
import shutil
import signal
import threading
import time

import pytest
import torch
from safetensors.torch import load_file

from c2bridge.train import train


def _mixed(tiny_config, tiny_caches, heldout_cache, **dotted):
    cfg = tiny_config(**dotted)
    cfg["data"]["train_cache"] = None
    cfg["data"]["mix"] = [{"cache": tiny_caches["train"], "weight": 2.0},
                          {"cache": heldout_cache, "weight": 1.0, "name": "heldout"}]
    return cfg


def _weights(run):
    return load_file(run / "adapter" / "model.safetensors")


def test_mixed_sampling_is_deterministic_weighted_and_logged_per_cache(tiny_config, tiny_caches, heldout_cache,
                                                                       tmp_path):
    from c2bridge.train.loop import _MixSchedule

    cfg = _mixed(tiny_config, tiny_caches, heldout_cache, **{"optim.max_steps": 4, "optim.grad_accum": 2})
    a, b = train(cfg, tmp_path / "a"), train(cfg, tmp_path / "b")
    assert a["status"] == b["status"] == "completed" and a["n_train"] == 32 + 16
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    records = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if r["kind"] == "train"]
    logged = {k for r in train_records for k in r if k.startswith("loss/")}
    assert logged == {"loss/shapes", "loss/heldout"}  # the first cache is labelled by its dataset
    for r in train_records:  # each step's loss is the mean of its micro-batches, whatever cache they came from
        per = [r[k] for k in ("loss/shapes", "loss/heldout") if k in r]
        assert min(per) - 1e-6 <= r["loss"] <= max(per) + 1e-6

    # the schedule is a pure function of (seed, weights): recomputed identically, and it follows the weights
    s1, s2 = _MixSchedule(0, [2.0, 1.0], 3000), _MixSchedule(0, [2.0, 1.0], 3000)
    assert [s1.source(m) for m in range(3000)] == [s2.source(m) for m in range(3000)]
    assert abs(s1.counts()[0] / 3000 - 2 / 3) < 0.04
    assert [s1.rank(m) for m in range(3000) if s1.source(m) == 1] == list(range(s1.counts()[1]))
    other = _MixSchedule(1, [2.0, 1.0], 3000)
    assert [other.source(m) for m in range(3000)] != [s1.source(m) for m in range(3000)]



def test_interrupted_mixed_run_resumes_to_identical_weights(tiny_config, tiny_caches, heldout_cache, tmp_path):
    cfg = _mixed(tiny_config, tiny_caches, heldout_cache,
                 **{"optim.max_steps": 6, "optim.grad_accum": 2, "checkpoint.every_steps": 0, "eval.every_steps": 3,
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

    sender = threading.Thread(target=send_sigterm_after_first_train_record)
    sender.start()
    first = train(cfg, run)
    sender.join()
    assert first["status"] == "interrupted" and first["step"] < 6
    resumed = train(cfg, run, resume=True)
    reference = train(cfg, tmp_path / "reference")
    assert resumed["status"] == "completed" and resumed["resumed_from_step"] == first["step"]
    a, b = _weights(run), _weights(tmp_path / "reference")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["best"] == reference["best"]
    logs = [[json.loads(line) for line in (r / "metrics.jsonl").read_text().splitlines()]
            for r in (run, tmp_path / "reference")]
    per_cache = [[{k: v for k, v in rec.items() if k.startswith("loss")} for rec in log if rec["kind"] == "train"]
                 for log in logs]
    assert per_cache[0] == per_cache[1]  # the same cache drawn at every step, with the same losses


def test_bad_mixes_are_one_clear_error_before_anything_is_written(tiny_config, tiny_caches, heldout_cache, tmp_path):
    bad_weight = _mixed(tiny_config, tiny_caches, heldout_cache)
    bad_weight["data"]["mix"][1]["weight"] = 0
    with pytest.raises(ValueError, match=r"data.mix\[1\].weight=0: expected a sampling weight > 0"):
        train(bad_weight, tmp_path / "w")
    both = _mixed(tiny_config, tiny_caches, heldout_cache)
    both["data"]["train_cache"] = tiny_caches["train"]
    with pytest.raises(ValueError, match="data.mix and data.train_cache"):
        train(both, tmp_path / "b")

    # a cache from other encoders: same features on disk, another encoder spec in its manifest
    other = tmp_path / "other_encoders"
    shutil.copytree(heldout_cache, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["spec"]["encoders"] = {"vlm": "some other VLM", "dino": manifest["spec"]["encoders"]}
    (other / "manifest.json").write_text(json.dumps(manifest))
    foreign = _mixed(tiny_config, tiny_caches, heldout_cache)
    foreign["data"]["mix"][1]["cache"] = str(other)
    with pytest.raises(ValueError, match=r"data.mix\[1\].cache=.*different encoders"):
        train(foreign, tmp_path / "e")
    assert not any((tmp_path / d).exists() for d in ("w", "b", "e"))


def test_the_full_study_plans_the_plans_mix_with_clips_as_clips():
    """On `full` every E2.1 trial trains on shapes 10,000 images + COCO 5,000 images + SSv2 5,000 clips; the
    planner costs each dataset's share of the micro-batches by its mix weight, a clip step as a clip step."""
    from c2bridge import planner as P

    src = P.load_sources("full")
    first = src["experiments"]["e2.1"][0]
    assert first["_data"]["train"] == {"shapes": {"n": 10000, "frames": 1, "weight": 10000.0},
                                       "coco": {"n": 5000, "frames": 1, "weight": 5000.0},
                                       "ssv2": {"n": 5000, "frames": 25, "weight": 5000.0}}
    est = P.estimate_trial("e2.1", first, preset="full", recipe=src["recipe"])
    assert {k: round(v["share"], 6) for k, v in est.train_data.items()} == {"shapes": 0.5, "coco": 0.25,
                                                                            "ssv2": 0.25}
    assert P.describe_training_set(est.train_data) == ("shapes 10,000 images + coco 5,000 images + ssv2 5,000 clips "
                                                       "(25 frames); shares 50/25/25%")
    # the weights, not the sizes, set the shares: all-clip weights cost (about) a clip step per micro-batch
    clip_heavy = {**first, "_data": {**first["_data"], "train": {
        k: {**v, "weight": 1e-9 if k != "ssv2" else 1.0} for k, v in first["_data"]["train"].items()}}}
    heavy = P.estimate_trial("e2.1", clip_heavy, preset="full", recipe=src["recipe"])
    per_micro = heavy.flops["train"] / heavy.micro_batches
    assert per_micro == pytest.approx(heavy.step_tflops["ssv2"] * 1e12 / heavy.grad_accum, rel=1e-6)
    assert heavy.flops["train"] > 2 * est.flops["train"]
