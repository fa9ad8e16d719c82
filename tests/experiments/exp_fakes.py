"""A fake study backend: deterministic made-up metrics, no torch, so runner/criteria/report tests run in ms.

Distance falls with the log of the budget (so the scaling curve has a shape), depends a little on the seed and
the architecture, and a trial can be told to fail or diverge.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from c2bridge._io import stable_hash

KIND_OFFSET = {"query": 0.0, "bottleneck": 0.04, "lora": 0.02, "perceiver": 0.01, "moe": 0.03}


class FakeBackend:
    def __init__(self, fail_when=None, diverge_when=None, raise_when=None, interrupt_when=None, cosine_gain=0.01):
        self.cosine_gain = cosine_gain
        self.interrupt_when = interrupt_when or (lambda cfg: False)
        self.calls: list[str] = []  # trial keys actually run
        self.fail_when = fail_when or (lambda cfg: False)
        self.diverge_when = diverge_when or (lambda cfg: False)
        self.raise_when = raise_when or (lambda cfg: False)

    def models(self, preset: str) -> dict:
        return {"decoder": {"model_id": f"fake-{preset}-decoder"}, "dino": {"model_id": "fake-dino"},
                "vlm": {"model_id": "fake-vlm"}}

    def resolve_distance(self, requested: str) -> dict:
        return {"name": "one_minus_ssim", "reason": "fake backend"}

    def prepare_cache(self, preset: str, spec: dict, out: Path) -> dict:
        out.mkdir(parents=True, exist_ok=True)
        return {"key": stable_hash(spec), "n": spec.get("limit", 10)}

    def trial_fn(self, trial: dict) -> dict:
        self.calls.append(trial["key"])
        cfg = trial["config"]
        if self.raise_when(cfg):
            raise RuntimeError("injected crash")
        run_dir = Path(trial["run_dir"])
        run_dir.mkdir(parents=True, exist_ok=True)
        if cfg["kind"] == "reference":
            iou = {"caption": 0.8, "zero": 0.02, "untrained": 0.03}[cfg["reference"]]
            d = {"caption": 0.15, "zero": 0.6, "untrained": 0.58}[cfg["reference"]]
            return {"status": "completed", "metrics": {s: {"distance": d, "spatial_iou": iou} for s in cfg["eval"]["splits"]}}
        if cfg["kind"] == "evaluate":  # more splits for a trained trial: offsets from its val distance
            trained = json.loads((Path(trial["workspace"]) / "trials" / cfg["of"] / "trial.json").read_text())
            d = trained["metrics"]["val"]["distance"]
            return {"status": "completed", "metrics": {s: self._split(d, s) for s in cfg["eval"]["splits"]}}
        tc = cfg["train"]
        if self.interrupt_when(cfg):
            return {"status": "interrupted", "reason": "SIGTERM after step 3; checkpointed"}
        if self.fail_when(cfg):
            return {"status": "failed", "error": "RuntimeError: injected failure"}
        if self.diverge_when(cfg):
            return {"status": "diverged", "reason": "non-finite train loss (nan) at step 3"}
        budget = cfg["budget_params"]
        seed = tc["seed"]
        d = 0.1 + 0.4 / math.log10(budget) + 0.002 * seed + KIND_OFFSET.get(tc["adapter"]["kind"], 0.0)
        if tc["schedule"]["name"] == "cosine":
            d -= self.cosine_gain
        adapter_dir = run_dir / "adapter"
        adapter_dir.mkdir(exist_ok=True)
        (adapter_dir / "adapter_config.json").write_text('{"kind": "%s"}' % tc["adapter"]["kind"])
        workspace = Path(trial["workspace"])
        steps = list(range(1, 11))
        return {
            "status": "completed",
            "params": {"trainable": int(budget * 0.98), "active": int(budget * 0.98)},
            "train": {"time_s": budget ** 0.25, "steps": 10, "loss_variance": 1e-4 * (1 + seed),
                      "steps_to_plateau": 6 if budget < 2e4 else 5, "time_to_plateau_s": budget ** 0.25 / 2},
            "metrics": {s: self._split(d, s) for s in cfg["eval"]["splits"]},
            "perf": {"latency_ms": 0.1 + budget / 1e6, "weights_mb": budget * 4 / 2**20,
                     "forward_peak_memory_mb": budget * 8 / 2**20},
            "curve": {"step": steps, "loss": [1.0 / s + d for s in steps], "val_step": [5, 10],
                      "val_loss": [0.3 + d, 0.2 + d]},
            "artifacts": {"adapter": str(adapter_dir.relative_to(workspace))},
        }

    @staticmethod
    def _split(d: float, split: str) -> dict:
        d = d + (0.03 if split == "heldout" else 0.0) - (0.01 if split == "train" else 0.0)
        return {"distance": d, "spatial_iou": 0.9 - d}
