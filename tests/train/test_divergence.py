"""Divergence is data: NaN / blow-up -> status `diverged` with step and reason; the last good checkpoint stays."""
import json
import math

import torch

from c2bridge.adapters import load_adapter
from c2bridge.train import train


def test_injected_nan_marks_the_run_diverged_and_keeps_the_last_checkpoint(tiny_config, tmp_path):
    run = tmp_path / "run"
    result = train(tiny_config(**{"debug.nan_at_step": 3, "eval.every_steps": 0, "checkpoint.every_steps": 2}), run)
    assert result["status"] == "diverged"
    assert result["diverged_at_step"] == 4 and result["step"] == 3 and "non-finite" in result["reason"]
    assert json.loads((run / "result.json").read_text())["status"] == "diverged"
    assert not (run / "adapter").exists()  # no "final" weights for a diverged run
    ckpt = run / "checkpoints" / "step_00000002"
    assert result["last_checkpoint"] == str(ckpt)
    adapter = load_adapter(ckpt / "adapter")  # intact and loadable
    assert all(torch.isfinite(p).all() for p in adapter.parameters())
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["step"] == 2 and math.isfinite(state["running_min"])
    assert (run / "learning_curve.png").exists()
    # resuming a diverged run replays it deterministically and diverges at the same step again
    before = (ckpt / "adapter/model.safetensors").read_bytes()
    again = train(tiny_config(**{"debug.nan_at_step": 3, "eval.every_steps": 0, "checkpoint.every_steps": 2}), run, resume=True)
    assert again["status"] == "diverged" and again["diverged_at_step"] == 4 and again["resumed_from_step"] == 2
    assert (ckpt / "adapter/model.safetensors").read_bytes() == before


def test_loss_blowup_is_divergence(tiny_config, tmp_path):
    # any rise above the running minimum counts with factor 1.0001: the flow loss is noisy, so it trips early
    result = train(tiny_config(**{"blowup_factor": 1.0001, "blowup_after": 2, "data.val_cache": None}), tmp_path / "r")
    assert result["status"] == "diverged" and "blowup_factor" in result["reason"]
    assert result["diverged_at_step"] >= 3
