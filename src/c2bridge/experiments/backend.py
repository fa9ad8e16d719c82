"""The real backend of a study: feature caches (``c2bridge.encoders.extraction``), training (``c2bridge.train``) and
sampled evaluation (``c2bridge.metrics.evaluate_adapter`` / ``evaluate_conditioning``).

``run_trial(trial)`` is the trial function: pure (config in, result dict out; it writes only inside
``trial["run_dir"]``), so any executor can run it. Frozen models are memoized per process (a cache, not state).
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

_BRIDGES: dict[str, Any] = {}
_ENCODERS: dict[str, Any] = {}
CURVE_POINTS = 120  # learning-curve points kept per trial in results.yaml


def _device():
    from c2bridge.device import pick_device

    return pick_device("auto")


def get_bridge(preset: str):
    if preset not in _BRIDGES:
        from c2bridge.decoder import LTXBridge

        _BRIDGES[preset] = LTXBridge.from_preset(preset, device=_device())
    return _BRIDGES[preset]


def get_encoders(preset: str):
    if preset not in _ENCODERS:
        from c2bridge.encoders import build_encoders

        _ENCODERS[preset] = build_encoders(preset, device=_device())
    return _ENCODERS[preset]


def decoder_identity(preset: str) -> dict:
    """What the decoder's numbers depend on (the preset says: for mini, the digest of the shipped weights)."""
    from c2bridge.presets import get_preset

    return get_preset(preset).decoder_identity()


class TorchBackend:
    """Extraction, training and evaluation with the real models of a preset."""

    def __init__(self, extract_threads: int = 1):
        self.trial_fn = run_trial
        self.cache_fn = extract_cache  # extraction as an executor task (the graph schedule)
        self.extract_threads = extract_threads

    def configure(self, cfg: dict) -> None:
        """``threads`` (experiment config): torch intra-op threads of this process's evaluation work and of every
        cache extraction. Extraction keeps one fixed count (the config's, else 1) wherever it runs -- this process
        or an executor task --, because a cache is keyed by what it holds, not by how the work was split: 1 and 2
        threads agree only to float precision."""
        _set_threads(cfg.get("threads"))
        self.extract_threads = int(cfg["threads"]) if cfg.get("threads") else 1

    def models(self, preset: str) -> dict:
        get_bridge(preset)  # fail early, with the loader's clear error, when weights are missing
        enc = get_encoders(preset)
        return {"decoder": decoder_identity(preset), "dino": enc.dino.encoder_key(), "vlm": enc.vlm.encoder_key()}

    def resolve_distance(self, requested: str) -> dict:
        from c2bridge.metrics.distance import lpips_available, lpips_backbone_path

        if requested in (None, "auto"):
            if lpips_available("lpips_alex"):
                return {"name": "lpips_alex", "reason": "the plan's metric (LPIPS, AlexNet backbone)"}
            return {"name": "one_minus_ssim",
                    "reason": f"LPIPS-Alex backbone weights are not on this machine ({lpips_backbone_path('alex')}); "
                              "the named fallback 1 - SSIM is used, so absolute thresholds of the plan do not apply"}
        if not lpips_available(requested):
            from c2bridge.metrics.distance import LPIPS_DISTANCES, check_lpips_backbone

            base = requested[3:] if requested.startswith("ms_") else requested
            if base in LPIPS_DISTANCES:
                check_lpips_backbone(LPIPS_DISTANCES[base])  # the clear FileNotFoundError
            raise ValueError(f"unknown distance {requested!r}; expected auto, lpips_alex, lpips_vgg or one_minus_ssim")
        return {"name": requested, "reason": "named in the experiment config"}

    def prepare_cache(self, preset: str, spec: dict, out: Path) -> dict:
        with _fixed_threads(self.extract_threads):
            return self._prepare_cache(preset, spec, out)

    def _prepare_cache(self, preset: str, spec: dict, out: Path) -> dict:
        from c2bridge.encoders.extraction import extract

        bridge = get_bridge(preset)
        cache = extract(
            preset, spec["dataset"], spec["split"], out, limit=spec.get("limit"), seed=int(spec.get("seed", 0)),
            augment=spec.get("augment", "none"), views=int(spec.get("views", 1)),
            latents_fn=bridge.encode_latents,
            latents_key={"decoder": decoder_identity(preset), "fn": "LTXBridge.encode_latents (posterior mode, normalized)"},
            encoders=get_encoders(preset), progress=False, root=spec.get("root"),
        )
        return {"key": cache.key, "n": len(cache)}


def extract_cache(task: dict) -> dict:
    """A cache extraction as an executor task (pure like a trial: it writes only its cache dir, ``task["out"]``)."""
    import time

    t0 = time.perf_counter()
    info = TorchBackend(int(task.get("threads") or 1)).prepare_cache(task["preset"], task["spec"], Path(task["out"]))
    return {"status": "completed", "info": info, "seconds": time.perf_counter() - t0}


# ------------------------------------------------------------------------------------------------ the trial function
def run_trial(trial: dict) -> dict:
    """One trial: train (resuming an unfinished run dir) then evaluate, or evaluate a reference conditioning."""
    import time

    t0 = time.perf_counter()
    record = _run_trial(trial)
    record["wall_s"] = time.perf_counter() - t0
    return record


def _run_trial(trial: dict) -> dict:
    config = trial["config"]
    workspace, run_dir = Path(trial["workspace"]), Path(trial["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    if config.get("kind") == "reference":
        return _reference_trial(config, workspace, run_dir)
    if config.get("kind") == "evaluate":  # another trial's trained adapter, on more splits
        from c2bridge.adapters import load_adapter

        adapter = load_adapter(workspace / config["adapter"]).to(_device())
        with _decoder_lora(config["preset"], workspace / config["adapter"]):
            return {"status": "completed", **_evaluate(config, workspace, run_dir, adapter=adapter)}
    train_cfg = copy.deepcopy(config["train"])
    for k in ("train_cache", "val_cache"):
        if train_cfg["data"].get(k):
            train_cfg["data"][k] = str(workspace / train_cfg["data"][k])
    for entry in [*(train_cfg["data"].get("mix") or []), *(train_cfg["data"].get("val_mix") or [])]:
        entry["cache"] = str(workspace / entry["cache"])  # a train / validation mix: every cache relative to RUN_DIR
    teacher = (train_cfg.get("distill") or {}).get("teacher")
    if teacher and not Path(teacher).is_absolute():  # a study's teacher (plan 8.3) is named relative to RUN_DIR
        train_cfg["distill"]["teacher"] = str(workspace / teacher)
    out = run_dir / "train"
    # tracker run names (W&B / TensorBoard): the runner's labels; outside the trial config, so not in its key
    train_cfg.setdefault("log", {})["labels"] = {**(trial.get("labels") or {}), "root": str(workspace)}
    from c2bridge.train.logging import TrialTracker

    with TrialTracker(out, train_cfg["log"], config=config) as tracker:
        return _train_and_evaluate(config, train_cfg, workspace, run_dir, out, tracker, trial.get("pause_at_step"))


def _train_and_evaluate(config: dict, train_cfg: dict, workspace: Path, run_dir: Path, out: Path, tracker,
                        pause: int | None = None) -> dict:
    """Train (to ``pause``, a halving rung, when given: checkpointed, status ``paused``), then evaluate."""
    from c2bridge.train import train

    extra = {"pause_at_step": pause} if pause is not None else {}  # a halving rung: never part of the config
    result = train(train_cfg, out, resume=out.is_dir() and any(out.iterdir()), **extra)
    record: dict[str, Any] = {
        "status": result["status"],
        "params": result.get("params"),
        "train": _train_stats(result, out),
        "curve": _curve(out),
        "artifacts": {},
    }
    if result["status"] == "interrupted":  # SIGTERM: checkpointed, no outcome (the runner stops the study)
        return {"status": "interrupted", "reason": result.get("reason")}
    if result["status"] == "paused":  # at a halving rung, checkpointed: the validation loss logged there
        from c2bridge.experiments.halving import rung_value

        step = int(result.get("step") or pause)
        return {**record, "status": "paused", "step": step, "rung_value": rung_value(record["curve"], step)}
    if result["status"] != "completed":
        record["error"] = result.get("error") or result.get("reason")
        return record
    from c2bridge.adapters import load_adapter

    adapter_dir = Path(result.get("best_adapter_dir") or result["adapter_dir"])
    adapter = load_adapter(adapter_dir).to(_device())
    with _decoder_lora(config["preset"], adapter_dir):  # plan 8.2: the decoder LoRA trained with this adapter
        evaluated = _evaluate(config, workspace, run_dir, adapter=adapter)
    _write_package(adapter_dir, config, record.get("params"), evaluated["metrics"])
    grids = {split: workspace / png for split, png in evaluated["artifacts"]["grids"].items()}
    tracker.log_evaluation(evaluated["metrics"], images=grids, step=result.get("step"), extra=evaluated.get("perf"))
    record.update({k: v for k, v in evaluated.items() if k != "artifacts"})
    record["artifacts"] = {"adapter": _rel(adapter_dir, workspace), **evaluated["artifacts"]}
    return record


def _decoder_lora(preset: str, adapter_dir: Path):
    """The shared decoder with the adapter's decoder LoRA (``<adapter>/decoder_lora``) for a ``with`` block, or
    nothing to do when the adapter was trained against the frozen decoder (every experiment but plan 8.2)."""
    import contextlib

    from c2bridge.decoder import lora
    from c2bridge.train.loop import DECODER_LORA_DIR

    path = Path(adapter_dir) / DECODER_LORA_DIR
    if not lora.is_lora_dir(path):
        return contextlib.nullcontext()
    return lora.loaded(get_bridge(preset).transformer, path)


def _write_package(adapter_dir: Path, config: dict, params: dict | None, metrics: dict) -> None:
    """Make the trained adapter a self-describing package (provenance.json + model card): exports copy it."""
    from c2bridge import package

    preset, tc = config["preset"], config["train"]
    identity = package.model_identity(preset, get_bridge(preset), get_encoders(preset))
    training = {"kind": tc["adapter"]["kind"], "budget": tc["adapter"].get("budget"), "seed": tc.get("seed"),
                "steps": tc["optim"].get("max_steps"), "lr": tc["optim"].get("lr"), "loss": tc["loss"].get("name")}
    package.write_adapter_package(adapter_dir, provenance=package.make_provenance(identity, training=training,
                                                                                  params=params),
                                  metrics=metrics, intervals=_sample_intervals(metrics))
    from c2bridge.train.checkpoint import CHECKSUMS_FILE, write_checksums

    if (adapter_dir.parent / CHECKSUMS_FILE).is_file():  # the trainer's best/adapter: keep that checkpoint whole
        write_checksums(adapter_dir.parent)


def _sample_intervals(metrics: dict) -> dict | None:
    """95% bootstrap intervals of each split's metric means over its evaluation samples (c2bridge.stats), when
    the metrics carry ``per_sample`` values; None otherwise."""
    import numpy as np

    from c2bridge.stats import mean_interval

    out: dict = {}
    for split, m in (metrics or {}).items():
        for name, values in ((m or {}).get("per_sample") or {}).items():
            vals = [float(v) for v in values or () if _finite(v)]
            if len(vals) >= 2:
                iv = mean_interval(np.asarray([vals]))
                out.setdefault(split, {})[name] = {"low": iv.low, "high": iv.high, "level": iv.level,
                                                   "method": f"{iv.method}, {len(vals)} samples"}
    return out or None


def _reference_trial(config: dict, workspace: Path, run_dir: Path) -> dict:
    bridge = get_bridge(config["preset"])
    ref = config["reference"]
    if ref == "untrained":  # the init train() would start from (same builder, same seed; global RNG untouched)
        from c2bridge.train import build_adapter_from_config

        adapter = build_adapter_from_config(config["train"], device=_device())
        record = {"status": "completed", "params": {"trainable": int(adapter.num_params),
                                                     "active": int(getattr(adapter, "active_params", adapter.num_params))}}
        record.update(_evaluate(config, workspace, run_dir, adapter=adapter))
        return record
    if ref == "zero":
        def cond_fn(batch):
            return bridge.null_cond(int(batch["target"].shape[0]))
    elif ref == "caption":
        if getattr(bridge, "captions", None) is None:
            raise ValueError(f"the {config['preset']} decoder has no caption module: no 'caption' reference there")

        def cond_fn(batch):
            if batch.get("caption_ids") is None:
                raise ValueError("the eval cache has no caption_ids: the caption reference needs the mini world's "
                                 "caption tokens in the cache")
            return bridge.caption_cond(batch["caption_ids"])
    else:
        raise ValueError(f"unknown reference {ref!r}; expected caption, zero or untrained")
    record = {"status": "completed", "params": None}
    record.update(_evaluate(config, workspace, run_dir, cond_fn=cond_fn))
    return record


def _evaluate(config: dict, workspace: Path, run_dir: Path, adapter=None, cond_fn=None) -> dict:
    """Sampled metrics on every eval split (+ the adapter's latency and memory) -> record fields."""
    from c2bridge.encoders import FeatureCache
    from c2bridge.metrics import evaluate_adapter, evaluate_conditioning, param_memory, peak_memory

    ev = config["eval"]
    _set_threads(ev.get("threads"))
    bridge = get_bridge(config["preset"])
    kwargs = dict(distance=ev["distance"], n=ev.get("n_samples"), steps=ev.get("sample_steps"),
                  guidance_scale=float(ev.get("guidance", 1.0)), seed=int(ev.get("seed", 0)),
                  batch_size=int(ev.get("batch_size", 32)))
    metrics, grids, perf = {}, {}, {}
    for split, ref in ev["splits"].items():
        cache = FeatureCache(workspace / ref["path"], key=ref["key"])
        png = run_dir / "eval" / f"{split}.png"
        if adapter is not None:
            m = evaluate_adapter(adapter, bridge, cache, out_png=png,
                                 latency_iters=int(ev.get("latency_iters", 20)) if not perf else 1, **kwargs)
            if not perf:
                perf = {"latency_ms": m.get("adapter_latency_ms"),
                        "latency_std_ms": (m.get("adapter_latency") or {}).get("std_ms"),
                        "weights_mb": m.get("param_bytes", 0) / 2**20}
                batch = next(_batches(cache, int(ev.get("batch_size", 32))))
                dev = next(adapter.parameters()).device
                mem = peak_memory(adapter, batch["vlm"].to(dev), batch["dino"].to(dev),
                                  vlm_mask=batch["vlm_mask"].to(dev))
                grown = max(0, mem["peak_bytes"] - mem["baseline_bytes"]) / 2**20
                # CPU resident-set growth cannot resolve a forward smaller than the pages already mapped: None
                perf["forward_peak_memory_mb"] = grown if grown > 0 or mem["method"].startswith("cuda") else None
                perf["memory_method"] = mem["method"]
                perf["weights_mb_check"] = param_memory(adapter) / 2**20
        else:
            m = evaluate_conditioning(cond_fn, bridge, cache, out_png=png, **kwargs)
        metrics[split] = {
            "distance": m.get("distance_mean"),
            "distance_std": m.get("distance_std"),
            "distance_name": m.get("distance"),
            "spatial_iou": m.get("mask_iou"),
            "box_iou": m.get("box_iou"),
            "ssim": m.get("ssim"),
            "psnr": m.get("psnr"),
            "n": m.get("n"),
            # per evaluation sample, in data order (sample i = cache item i, noise seed eval.seed + i): the
            # confidence intervals resample them (c2bridge.stats)
            "per_sample": _per_sample(m),
        }
        if m.get("iou_note"):  # spatial IoU is not reported on this dataset: why (c2bridge.datasets)
            metrics[split]["iou_note"] = m["iou_note"]
        for name in TEMPORAL:  # clips: temporal coherence of the reconstruction (c2bridge.metrics.temporal)
            if m.get(name) is not None:
                metrics[split][name] = m[name]
        if m.get("grid_png"):
            grids[split] = _rel(Path(m["grid_png"]), workspace)
    out = {"metrics": metrics, "artifacts": {"grids": grids}}
    if perf:
        perf.pop("weights_mb_check", None)
        out["perf"] = perf
    return out


TEMPORAL = ("flicker", "warp_error", "mask_iou_std", "mask_iou_delta")  # only on clip splits
PER_SAMPLE = {"distance": "distance", "spatial_iou": "mask_iou", "ssim": "ssim", "psnr": "psnr",
              **{name: name for name in TEMPORAL}}  # ours: theirs


def _per_sample(m: dict) -> dict:
    per = m.get("per_sample") or {}
    return {ours: [float(v) for v in per[theirs]] for ours, theirs in PER_SAMPLE.items() if per.get(theirs)}


def _fixed_threads(threads: int):
    """torch intra-op threads set to ``threads`` for a ``with`` block, then restored."""
    import contextlib

    import torch

    @contextlib.contextmanager
    def block():
        before = torch.get_num_threads()
        torch.set_num_threads(int(threads))
        try:
            yield
        finally:
            torch.set_num_threads(before)

    return block()


def _set_threads(threads) -> None:
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def _batches(cache, batch_size: int):
    from c2bridge.metrics import iter_batches

    return iter_batches(cache, batch_size, batch_size)


def _train_stats(result: dict, out: Path) -> dict:
    from c2bridge.metrics import detect_plateau, loss_variance
    from c2bridge.train.logging import read_metrics

    recs = read_metrics(out)
    losses = [float(r["loss"]) for r in recs if r.get("kind") == "train" and _finite(r.get("loss"))]
    val = [(int(r["step"]), float(r["val_loss"])) for r in recs if r.get("kind") == "val" and _finite(r.get("val_loss"))]
    stats: dict[str, Any] = {
        "time_s": result.get("train_time_s"),
        "steps": result.get("step"),
        "total_steps": result.get("total_steps"),
        # early stopping (stop.*): optimizer steps taken vs the cap; the plan's training-time ratio is their ratio
        "steps_run": result.get("steps_run", result.get("step")),
        "max_steps": result.get("max_steps", result.get("total_steps")),
        "stopped_early": bool(result.get("stopped_early", False)),
        "stop_step": result.get("stop_step"),
        "final_train_loss": (result.get("final") or {}).get("train_loss"),
        "final_val_loss": (result.get("final") or {}).get("val_loss"),
        "best_val_loss": (result.get("best") or {}).get("value"),
        "best_step": (result.get("best") or {}).get("step"),
        "peak_memory_mb": result.get("peak_memory_mb"),
        "device": result.get("device"),
    }
    if len(losses) >= 2:
        stats["loss_variance"] = loss_variance(losses)
    if val:  # on the validation loss (fixed noise): the train flow loss is too noisy (σ draws) to plateau on
        plateau = detect_plateau([v for _, v in val], [s for s, _ in val],
                                 total_steps=stats["total_steps"] or stats["steps"])
        stats["steps_to_plateau"] = plateau.step  # None: did not plateau within the run
        stats["plateau"] = plateau.reason or f"plateaued at step {plateau.step}"
        if plateau.step is not None and _finite(stats["time_s"]) and stats["steps"]:
            stats["time_to_plateau_s"] = stats["time_s"] * plateau.step / stats["steps"]
    return stats


def _curve(out: Path) -> dict:
    """Train loss (bucket means, at most CURVE_POINTS) and every validation loss, for the report's plots."""
    from c2bridge.train.logging import read_metrics

    recs = read_metrics(out)
    train = [(int(r["step"]), float(r["loss"])) for r in recs if r.get("kind") == "train" and _finite(r.get("loss"))]
    val = [(int(r["step"]), float(r["val_loss"])) for r in recs if r.get("kind") == "val" and _finite(r.get("val_loss"))]
    bucket = max(1, math.ceil(len(train) / CURVE_POINTS))
    steps, losses = [], []
    for i in range(0, len(train), bucket):
        chunk = train[i:i + bucket]
        steps.append(chunk[-1][0])
        losses.append(sum(v for _, v in chunk) / len(chunk))
    return {"step": steps, "loss": losses, "val_step": [s for s, _ in val], "val_loss": [v for _, v in val]}


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _rel(path: Path, workspace: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(workspace.resolve()))
    except ValueError:
        return str(path)
