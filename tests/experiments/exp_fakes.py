"""A fake study backend: deterministic made-up metrics, no torch, so runner/criteria/report tests run in ms.

Distance falls with the log of the budget (so the scaling curve has a shape), depends a little on the seed and
the architecture, and a trial can be told to fail or diverge. With ``per_sample=True`` every split also gets
per-sample values (what the intervals resample): item ``i`` has a fixed difficulty (the same in every trial: paired
samples), each seed a fixed offset (``seed_sd``), plus noise (``sample_sd``); an evaluation on more samples of a
trained adapter repeats its first samples exactly. ``distance_fn(budget_params, seed)`` replaces the default curve.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from c2bridge._io import stable_hash

KIND_OFFSET = {"query": 0.0, "bottleneck": 0.04, "lora": 0.02, "perceiver": 0.01, "moe": 0.03}


def _never(cfg) -> bool:  # module level: a FakeBackend pickles into pool workers
    return False


class FakeBackend:
    def __init__(self, fail_when=None, diverge_when=None, raise_when=None, interrupt_when=None, cosine_gain=0.01,
                 per_sample=False, seed_sd=0.0, sample_sd=0.0, item_sd=0.02, distance_fn=None, val_curves=False,
                 cache_tasks=False):
        # val_curves: validation losses at every ``eval.every_steps`` of the trial's own steps (falling towards
        # its distance), and ``pause_at_step`` honoured (status paused there): what successive halving reads
        self.val_curves = val_curves
        if cache_tasks:  # extraction as executor tasks (the graph schedule's path)
            self.cache_fn = fake_cache_task
        self.pauses: list[tuple[str, int]] = []  # (trial key, step) of every pause
        self.cosine_gain = cosine_gain
        self.per_sample, self.seed_sd, self.sample_sd, self.item_sd = per_sample, seed_sd, sample_sd, item_sd
        self.distance_fn = distance_fn
        self.interrupt_when = interrupt_when or _never
        self.calls: list[str] = []  # trial keys actually run
        self.fail_when = fail_when or _never
        self.diverge_when = diverge_when or _never
        self.raise_when = raise_when or _never

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
            d, seed = trained.get("fake_distance", trained["metrics"]["val"]["distance"]), trained.get("fake_seed", 0)
            n = cfg["eval"].get("n_samples")
            return {"status": "completed", "metrics": {s: self._split(d, s, seed, n) for s in cfg["eval"]["splits"]}}
        tc = cfg["train"]
        if self.interrupt_when(cfg):
            return {"status": "interrupted", "reason": "SIGTERM after step 3; checkpointed"}
        if self.fail_when(cfg):
            return {"status": "failed", "error": "RuntimeError: injected failure"}
        if self.diverge_when(cfg):
            return {"status": "diverged", "reason": "non-finite train loss (nan) at step 3"}
        budget = cfg["budget_params"]
        seed = tc["seed"]
        curve = self.distance_fn(budget, seed) if self.distance_fn else 0.1 + 0.4 / math.log10(budget) + 0.002 * seed
        d = curve + KIND_OFFSET.get(tc["adapter"]["kind"], 0.0)
        if tc["schedule"]["name"] == "cosine":
            d -= self.cosine_gain
        if self.val_curves:
            max_steps, every = int(tc["optim"]["max_steps"]), int(tc["eval"]["every_steps"])
            val = {s: round(d + 0.5 / s, 9) for s in range(every, max_steps + 1, every)}
            pause = trial.get("pause_at_step")
            if pause is not None:
                self.pauses.append((trial["key"], int(pause)))
                shown = {s: v for s, v in val.items() if s <= pause}
                return {"status": "paused", "step": int(pause), "rung_value": val.get(int(pause)),
                        "train": {"steps": int(pause)},
                        "curve": {"val_step": list(shown), "val_loss": list(shown.values())}}
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
            "metrics": {s: self._split(d, s, seed, cfg["eval"].get("n_samples")) for s in cfg["eval"]["splits"]},
            "fake_distance": d, "fake_seed": seed,
            "perf": {"latency_ms": 0.1 + budget / 1e6, "weights_mb": budget * 4 / 2**20,
                     "forward_peak_memory_mb": budget * 8 / 2**20},
            "curve": {"step": steps, "loss": [1.0 / s + d for s in steps], "val_step": [5, 10],
                      "val_loss": [0.3 + d, 0.2 + d]} if not self.val_curves else
                     {"step": steps, "loss": [1.0 / s + d for s in steps], "val_step": list(val),
                      "val_loss": list(val.values())},
            "artifacts": {"adapter": str(adapter_dir.relative_to(workspace))},
        }

    def _split(self, d: float, split: str, seed: int = 0, n: int | None = None) -> dict:
        d = d + (0.03 if split == "heldout" else 0.0) - (0.01 if split == "train" else 0.0)
        if not self.per_sample:
            return {"distance": d, "spatial_iou": 0.9 - d}
        n = int(n or 4)
        offset = float(np.random.default_rng([7, int(seed)]).normal(0, self.seed_sd))  # this seed's adapter
        salt = sum(map(ord, split))
        items = np.random.default_rng([11, salt]).normal(0, self.item_sd, size=n)  # the same images everywhere
        noise = np.random.default_rng([13, salt, int(seed), int(d * 1e6)]).normal(0, self.sample_sd, size=n)
        dist = np.maximum(d + offset + items + noise, 1e-4)
        iou = np.clip(0.9 - dist, 0.0, 1.0)
        return {"distance": float(dist.mean()), "spatial_iou": float(iou.mean()), "n": n,
                "per_sample": {"distance": dist.tolist(), "spatial_iou": iou.tolist()}}


def pid_trial(trial: dict) -> dict:
    """A trial that reports the process (and its torch thread setting) it ran in: for executor tests."""
    import os

    return {"status": "completed", "pid": os.getpid(), "omp": os.environ.get("OMP_NUM_THREADS")}


def fake_cache_task(task: dict) -> dict:
    """FakeBackend.prepare_cache as an executor task."""
    out = Path(task["out"])
    out.mkdir(parents=True, exist_ok=True)
    spec = task["spec"]
    return {"status": "completed", "info": {"key": stable_hash(spec), "n": spec.get("limit", 10)}, "seconds": 0.0}


def stubborn_trial(trial: dict) -> dict:
    """A trial that does not stop on SIGTERM for a long while (like a sampled evaluation): for stop tests."""
    import signal
    import time

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    Path(trial["run_dir"]).mkdir(parents=True, exist_ok=True)
    (Path(trial["run_dir"]) / "started").write_text("x")
    time.sleep(float(trial.get("sleep", 120)))
    return {"status": "completed"}
