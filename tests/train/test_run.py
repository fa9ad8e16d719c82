"""Short real runs on the tiny preset: learning, logging, checkpoints, strategies, result file."""
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from c2bridge.adapters import load_adapter
from c2bridge.train import load_config, train
from c2bridge.train.schedules import lr_at


def test_short_run_lowers_validation_loss_and_writes_its_record(tiny_config, tmp_path):
    cfg = tiny_config(**{"optim.max_steps": 12, "eval.every_steps": 6, "schedule.name": "cosine",
                         "schedule.min_lr": 1e-4})
    run = tmp_path / "run"
    result = train(cfg, run)
    assert result["status"] == "completed" and result["step"] == 12
    assert result["final"]["val_loss"] < result["initial"]["val_loss"]  # it learned something
    assert json.loads((run / "result.json").read_text()) == json.loads(json.dumps(result))
    assert (run / "learning_curve.png").stat().st_size > 1000
    assert result["params"]["trainable"] == load_adapter(run / "adapter").num_params
    # metrics.jsonl: one train record per step with the scheduled lr, val records at 0, 6, 12
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train_records] == list(range(1, 13))
    resolved = load_config(cfg)
    assert [r["lr"] for r in train_records] == [lr_at(s, resolved, 12) for s in range(12)]
    assert all(math.isfinite(r["grad_norm"]) and r["samples_per_s"] > 0 for r in train_records)
    assert [r["step"] for r in records if r["kind"] == "val"] == [0, 6, 12]
    # checkpoints: keep_last=2 step dirs + best (the lowest val loss)
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ckpts == ["best", "step_00000008", "step_00000012"]
    best = json.loads((run / "checkpoints/best/best.json").read_text())
    val_losses = {r["step"]: r["val_loss"] for r in records if r["kind"] == "val" and r["step"] > 0}
    assert best["value"] == min(val_losses.values()) and best["step"] == min(val_losses, key=val_losses.get)
    # the saved resolved config reproduces the hash
    assert load_config(run / "config.yaml") and result["config_hash"] == __import__(
        "c2bridge.train", fromlist=["config_hash"]).config_hash(load_config(run / "config.yaml"))


def test_same_seed_same_weights_and_resume_of_a_finished_run_is_a_noop(tiny_config, tmp_path):
    cfg = tiny_config(**{"optim.max_steps": 3, "eval.every_steps": 0, "data.val_cache": None})
    a, b = train(cfg, tmp_path / "a"), train(cfg, tmp_path / "b")
    wa, wb = load_file(tmp_path / "a/adapter/model.safetensors"), load_file(tmp_path / "b/adapter/model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    again = train(cfg, tmp_path / "a", resume=True)
    assert again["status"] == "completed" and again["train_time_s"] == a["train_time_s"]


def test_strategies_moe_mixup_distill_dropout_accum_cyclic(tiny_config, tmp_path):
    teacher_run = train(tiny_config(**{"optim.max_steps": 2, "data.val_cache": None}), tmp_path / "teacher")
    cfg = tiny_config(**{
        "adapter.kind": "moe", "adapter.budget": "5k", "adapter.dropout": 0.1,
        "data.feature_mixup_alpha": 0.4, "distill.teacher": teacher_run["adapter_dir"], "distill.weight": 0.5,
        "optim.grad_accum": 2, "optim.max_steps": 3, "schedule.name": "cyclic", "schedule.cyclic_period": 2,
        "eval.every_steps": 0, "checkpoint.every_steps": 0,
    })
    result = train(cfg, tmp_path / "student")
    assert result["status"] == "completed", result.get("error")
    records = [json.loads(line) for line in (tmp_path / "student/metrics.jsonl").read_text().splitlines()]
    first = next(r for r in records if r["kind"] == "train")
    assert {"recon", "distill", "moe_aux"} <= set(first)
    assert first["moe_aux"] > 0  # the MoE load-balancing loss is computed and logged
    assert first["loss"] == pytest.approx(first["recon"] + 0.5 * first["distill"] + 0.01 * first["moe_aux"], rel=1e-5)
    assert result["params"]["active"] < result["params"]["trainable"]
    # pure distillation: the decoder is never run (no recon term)
    pure = train(tiny_config(**{"distill.teacher": teacher_run["adapter_dir"], "distill.recon_weight": 0,
                                "optim.max_steps": 2, "eval.every_steps": 0}), tmp_path / "pure")
    assert pure["status"] == "completed" and "val_recon" not in pure["final"] and "val_distill" in pure["final"]


def test_failure_inside_a_step_is_a_result(tiny_config, tmp_path):
    result = train(tiny_config(**{"debug.fail_at_step": 5, "eval.every_steps": 0}), tmp_path / "run")
    assert result["status"] == "failed" and "injected failure" in result["error"] and result["step"] == 5
    assert json.loads((tmp_path / "run/result.json").read_text())["status"] == "failed"
    assert load_adapter(tmp_path / "run/checkpoints/step_00000004/adapter").num_params > 0
