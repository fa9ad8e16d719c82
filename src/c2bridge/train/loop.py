"""The training loop: ``train(config, out_dir, resume=False, overwrite=False) -> result dict``.

Read it top to bottom: (1) check everything that can be wrong with the inputs, before touching the run dir or
taking a step; (2) set up (data in memory, latents, optimizer, RNGs, or restore them from the last checkpoint);
(3) the loop: accumulate micro-batches, clip, check for divergence, step, log, validate, checkpoint;
(4) final adapter, sampled metrics, ``result.json``, ``learning_curve.png``.

Determinism (same seed -> same numbers; resume -> bit-identical weights on CPU):
- data order: micro-batch ``m`` of the whole run is slice ``m % M`` of epoch ``m // M``'s permutation, drawn from
  a generator seeded by ``(seed, epoch)`` (M = micro-batches per epoch), so a resumed run recomputes it from the step;
- σ/noise for the objective come from one explicit generator whose state is checkpointed; dropout uses the global
  torch RNG, checkpointed too; feature MixUp draws from a numpy generator, checkpointed as well;
- validation uses its own generator reset to ``eval.noise_seed`` each time and never touches the training RNGs.
"""
from __future__ import annotations

import math
import os
import shutil
import time
import traceback
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from c2bridge._io import atomic_write_json, atomic_write_yaml, read_json, read_yaml, to_plain
from c2bridge.train.config import TrainConfig, config_hash, load_config, resolve_budget, validate_config

RESULT_FILE = "result.json"
CONFIG_FILE = "config.yaml"


class Diverged(Exception):
    """Raised inside the loop to stop a run whose loss went non-finite or blew up."""


def train(config: "TrainConfig | dict | str | os.PathLike", out_dir: "str | os.PathLike", resume: bool = False,
          overwrite: bool = False) -> dict:
    """Train one adapter. Bad input raises ValueError/FileNotFoundError before any step and before anything in
    ``out_dir`` changes. A run that diverges or fails returns (and writes) a result with that status."""
    import torch

    cfg = load_config(config)  # a fresh, validated copy (accepts a TrainConfig, a dict or a YAML path)
    previous_threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, Path(out_dir), resume, overwrite)
    finally:
        torch.set_num_threads(previous_threads)


def _train(cfg: TrainConfig, out_dir: Path, resume: bool, overwrite: bool) -> dict:
    import torch

    # ------------------------------------------------------------------ 1. checks (nothing written, no step taken)
    if resume and overwrite:
        raise ValueError("pass either resume or overwrite, not both")
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"run dir {str(out_dir)!r} exists and is not a directory")
    dir_has_files = out_dir.is_dir() and any(out_dir.iterdir())
    if dir_has_files and not (resume or overwrite):
        raise ValueError(f"run dir {str(out_dir)!r} is not empty; pass --resume to continue that run or "
                         f"--overwrite to replace it")
    ckpt_dir = None
    if resume and dir_has_files:
        _check_same_config(cfg, out_dir)
        previous = out_dir / RESULT_FILE
        if previous.is_file() and read_json(previous).get("status") == "completed":
            return read_json(previous)  # nothing left to do: resuming a finished run is a no-op
        from c2bridge.train.checkpoint import latest_checkpoint

        ckpt_dir = latest_checkpoint(out_dir / "checkpoints")

    from c2bridge.presets import get_preset
    from c2bridge.train.logging import check_integrations

    preset = get_preset(cfg.preset)
    device = _pick_device(cfg.device)
    amp_dtype = _amp_dtype(cfg.amp, device)
    check_integrations(cfg.log)
    _check_sampled_distance(cfg)

    train_cache = _open_cache(cfg.data.train_cache, "data.train_cache", required=True)
    val_cache = _open_cache(cfg.data.val_cache, "data.val_cache", required=False)
    _check_cache(train_cache, "data.train_cache", cfg, preset, augment=cfg.data.augment)
    if val_cache is not None:
        _check_cache(val_cache, "data.val_cache", cfg, preset, augment=None)
    if val_cache is not None:
        _check_same_encoders(train_cache, val_cache)
    train_groups = _view_groups(train_cache, cfg.data.limit_train)  # sample -> its cached views
    val_groups = _view_groups(val_cache, cfg.data.limit_val) if val_cache is not None else []
    n_train, n_val = len(train_groups), len(val_groups)
    B, accum = cfg.optim.batch_size, cfg.optim.grad_accum
    if n_train < B:
        raise ValueError(f"data.train_cache has {n_train} samples, fewer than optim.batch_size={B}; expected at "
                         f"least one full micro-batch")
    micro_per_epoch = n_train // B  # the last partial micro-batch of an epoch is dropped
    if cfg.optim.max_steps is not None:
        total_steps = int(cfg.optim.max_steps)
    else:
        total_steps = max(1, math.ceil(cfg.optim.epochs * micro_per_epoch / accum))
    from c2bridge.train.schedules import check_schedule, lr_at

    check_schedule(cfg, total_steps)

    from c2bridge.adapters import load_adapter
    from c2bridge.decoder import LTXBridge
    from c2bridge.train.losses import combine_losses, distillation_loss, make_loss_spec

    loss_spec = make_loss_spec(cfg) if cfg.distill.recon_weight > 0 else None
    bridge = LTXBridge.from_preset(cfg.preset, device=device)  # frozen; the tiny one seeds its own random init
    torch.manual_seed(cfg.seed)  # the global RNG dropout draws from follows the run's seed
    adapter = build_adapter_from_config(cfg, device)
    teacher = None
    if cfg.distill.teacher is not None:
        if not (Path(cfg.distill.teacher) / "adapter_config.json").is_file():
            raise FileNotFoundError(f"distill.teacher={cfg.distill.teacher!r}: no adapter_config.json there; "
                                    f"expected a directory written by adapter.save_pretrained")
        teacher = load_adapter(cfg.distill.teacher).to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        _check_teacher(teacher, preset, cfg.distill.teacher)
    params = [p for p in adapter.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"adapter {cfg.adapter.kind!r} has no trainable parameters")

    # ------------------------------------------------------------------ 2. setup (from here on the run dir is ours)
    from c2bridge.train import checkpoint as ckpt_io
    from c2bridge.train.logging import RunLogger, plot_learning_curve, truncate_metrics

    train_samples = _Samples(train_cache, train_groups, cfg, bridge, device)
    val_samples = _Samples(val_cache, val_groups, cfg, bridge, device) if n_val else None

    if overwrite and dir_has_files:
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_root = out_dir / "checkpoints"
    ckpt_io.clean_stale(ckpt_root)
    (out_dir / RESULT_FILE).unlink(missing_ok=True)  # a stale failed/diverged result must not outlive a resume
    atomic_write_yaml(out_dir / CONFIG_FILE, to_plain(cfg))

    optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), eps=cfg.optim.eps,
                                  weight_decay=cfg.optim.weight_decay)
    noise_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)  # σ and noise of the objective
    import numpy as np

    mixup_rng = np.random.default_rng(cfg.seed + 2)  # feature MixUp pairs and λ
    state: dict[str, Any] = {
        "best_value": None,  # lowest validation metric so far
        "best_step": None,
        "running_min": None,  # lowest train loss so far (blow-up test)
        "train_time_s": 0.0,  # summed over sessions (resume)
        "last_val": None,
        "initial_val": None,  # validation before the first step (eval.at_start)
    }
    start_step = 0
    if ckpt_dir is not None:
        loaded = ckpt_io.load_checkpoint(ckpt_dir, device=device)
        restored = load_adapter(loaded["adapter_dir"])
        adapter.load_state_dict(restored.state_dict())
        optimizer.load_state_dict(loaded["optimizer"])
        torch.set_rng_state(loaded["rng"]["torch_cpu"])
        if "torch_cuda" in loaded["rng"] and device.type == "cuda":
            torch.cuda.set_rng_state(loaded["rng"]["torch_cuda"], device)
        noise_gen.set_state(loaded["rng"]["noise"].to(noise_gen.get_state().device))
        saved = loaded["state"]
        mixup_rng.bit_generator.state = saved.pop("mixup_rng")
        start_step = int(saved.pop("step"))
        state.update({k: saved[k] for k in state if k in saved})
    truncate_metrics(out_dir, keep_through_step=start_step)

    def rng_states() -> dict:
        rng = {"torch_cpu": torch.get_rng_state(), "noise": noise_gen.get_state().cpu()}
        if device.type == "cuda":
            rng["torch_cuda"] = torch.cuda.get_rng_state(device)
        return rng

    def save_step_checkpoint(step: int) -> None:
        ckpt_io.save_checkpoint(ckpt_root, step, adapter, optimizer,
                                {**state, "mixup_rng": mixup_rng.bit_generator.state,
                                 "micro_batch": step * accum, "config_hash": config_hash(cfg)},
                                rng_states(), keep_last=cfg.checkpoint.keep_last)

    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype is not None else nullcontext
    perm_cache: dict[int, Any] = {}

    def micro_batch(m: int) -> dict:
        """Micro-batch ``m`` of the run: a slice of epoch ``m // M``'s permutation (recomputable on resume)."""
        epoch, j = divmod(m, micro_per_epoch)
        if epoch not in perm_cache:
            perm_cache.clear()
            g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
            perm_cache[epoch] = torch.randperm(n_train, generator=g)
        idx = perm_cache[epoch][j * B:(j + 1) * B].tolist()
        batch = train_samples.batch(idx, epoch=epoch)
        if cfg.data.feature_mixup_alpha > 0:
            batch = _feature_mixup(batch, mixup_rng, cfg.data.feature_mixup_alpha)
        return batch

    def objective(cond, batch, generator) -> tuple:
        """One micro-batch's loss (see losses.py for how terms combine)."""
        recon = recon_parts = distill = None
        cond_mask = torch.ones(cond.shape[:2], dtype=torch.bool, device=cond.device)  # [B, n_tokens]
        if loss_spec is not None:
            recon, recon_parts = bridge.training_loss(cond, cond_mask, batch["latent"], batch["target"],
                                                      loss=loss_spec, generator=generator)
        if teacher is not None and cfg.distill.weight > 0:
            with torch.no_grad():
                target_tokens = teacher(batch["vlm"], batch["dino"], vlm_mask=batch["vlm_mask"])
            distill = distillation_loss(cond, target_tokens, cfg.distill.metric)
        return combine_losses(cfg, recon, recon_parts, getattr(adapter, "aux_loss", None), distill)

    def validate(step: int) -> dict:  # the objective's loss on the val cache (first view, fixed noise)
        adapter.eval()
        g = torch.Generator(device=device).manual_seed(cfg.eval.noise_seed)  # the same noise at every eval
        sums: dict[str, float] = {}
        count = 0
        with torch.no_grad(), autocast():
            for k, idx in enumerate(val_samples.sequential_batches(B)):
                if cfg.eval.max_batches is not None and k >= cfg.eval.max_batches:
                    break
                batch = val_samples.batch(idx)
                cond = adapter(batch["vlm"], batch["dino"], vlm_mask=batch["vlm_mask"])
                total, parts = objective(cond, batch, g)
                n = len(idx)
                for name, v in {"loss": float(total), **parts}.items():
                    sums[name] = sums.get(name, 0.0) + v * n
                count += n
        adapter.train()
        record = {"step": step, **{f"val_{k}": v / count for k, v in sums.items()}}
        logger.val(record)
        return record

    num_params = int(getattr(adapter, "num_params", sum(p.numel() for p in params)))
    param_info = {"trainable": num_params,
                  "active": int(getattr(adapter, "active_params", num_params)),
                  "budget": resolve_budget(cfg.adapter.budget, preset),
                  "teacher": int(getattr(teacher, "num_params", 0)) if teacher is not None else None}
    logger = RunLogger(out_dir, cfg.log, total_steps, start_step, to_plain(cfg))

    # ------------------------------------------------------------------ 3. the loop
    status, reason, error, tb = "completed", None, None, None
    step = start_step
    last_train: dict = {}
    session_start = time.perf_counter()
    session_steps = 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    adapter.train()
    stop = _StopOnSigterm()  # pre-emption: finish the step, checkpoint, leave the run resumable
    try:
        if val_samples is not None and cfg.eval.at_start and start_step == 0:
            state["initial_val"] = validate(0)
        while step < total_steps:
            t0 = time.perf_counter()
            lr = lr_at(step, cfg, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            if cfg.debug.fail_at_step is not None and step == cfg.debug.fail_at_step:
                raise RuntimeError(f"debug.fail_at_step={step}: injected failure")

            loss_sum, parts_sum = 0.0, {}
            for a in range(accum):
                batch = micro_batch(step * accum + a)
                if cfg.debug.nan_at_step is not None and step == cfg.debug.nan_at_step:
                    batch["vlm"] = batch["vlm"] * float("nan")  # poison: the divergence path must catch it
                with autocast():
                    cond = adapter(batch["vlm"], batch["dino"], vlm_mask=batch["vlm_mask"])  # [B, N, cond_dim]
                    loss, parts = objective(cond, batch, noise_gen)
                (loss / accum).backward()
                loss_sum += float(loss.detach()) / accum
                for k, v in parts.items():
                    parts_sum[k] = parts_sum.get(k, 0.0) + v / accum
            max_norm = cfg.optim.grad_clip if cfg.optim.grad_clip else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))

            # divergence: decided before the update, so the weights (and every checkpoint) stay the last good ones
            if not math.isfinite(loss_sum):
                raise Diverged(f"non-finite train loss ({loss_sum}) at step {step + 1}")
            if not math.isfinite(grad_norm):
                raise Diverged(f"non-finite gradient norm ({grad_norm}) at step {step + 1}")
            running_min = state["running_min"]
            if (running_min is not None and step >= cfg.blowup_after and running_min > 0
                    and loss_sum > cfg.blowup_factor * running_min):
                raise Diverged(f"train loss {loss_sum:.4g} > blowup_factor {cfg.blowup_factor:g} x running min "
                               f"{running_min:.4g} at step {step + 1}")
            state["running_min"] = loss_sum if running_min is None else min(running_min, loss_sum)

            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            session_steps += 1
            dt = time.perf_counter() - t0
            state["train_time_s"] += dt
            last_train = {"step": step, "loss": loss_sum, **parts_sum, "lr": lr, "grad_norm": grad_norm,
                          "samples_per_s": B * accum / dt, "steps_per_s": 1.0 / dt,
                          "peak_memory_mb": _peak_memory_mb(device)}
            logger.train(last_train)

            if val_samples is not None and (step == total_steps or
                                             (cfg.eval.every_steps and step % cfg.eval.every_steps == 0)):
                record = validate(step)
                state["last_val"] = record
                value = record[f"val_{cfg.eval.best_metric[len('val_'):]}"]
                if state["best_value"] is None or value < state["best_value"]:
                    state["best_value"], state["best_step"] = value, step
                    if cfg.checkpoint.save_best:
                        ckpt_io.save_best(ckpt_root, adapter, {"step": step, "metric": cfg.eval.best_metric,
                                                               "value": value})
            if (step == total_steps or stop.requested
                    or (cfg.checkpoint.every_steps and step % cfg.checkpoint.every_steps == 0)):
                save_step_checkpoint(step)
            if stop.requested and step < total_steps:
                status, reason = "interrupted", f"SIGTERM after step {step}; checkpointed, resume with --resume"
                break
            if cfg.debug.sleep_per_step:
                time.sleep(cfg.debug.sleep_per_step)
    except Diverged as exc:
        status, reason = "diverged", str(exc)
    except Exception as exc:  # a failure inside a step is a result, not a crash
        status, error, tb = "failed", f"{type(exc).__name__}: {exc}", traceback.format_exc()
    finally:
        stop.restore()
        logger.close()
        session_time = time.perf_counter() - session_start

    # ------------------------------------------------------------------ 4. results
    result: dict[str, Any] = {
        "status": status,
        "step": step,
        "total_steps": total_steps,
        "resumed_from_step": start_step if ckpt_dir is not None else None,
        "final": {"train_loss": last_train.get("loss"), **(state["last_val"] or {})},
        "initial": state["initial_val"],
        "best": {"metric": cfg.eval.best_metric, "value": state["best_value"], "step": state["best_step"]},
        "train_time_s": state["train_time_s"],
        "session_time_s": session_time,
        "steps_per_s": session_steps / session_time if session_time > 0 and session_steps else None,
        "samples_per_s": session_steps * B * accum / session_time if session_time > 0 and session_steps else None,
        "peak_memory_mb": _peak_memory_mb(device),
        "params": param_info,
        "n_train": n_train,
        "n_val": n_val,
        "config_hash": config_hash(cfg),
        "preset": cfg.preset,
        "is_miniature": preset.is_miniature,
        "device": str(device),
    }
    if status == "interrupted":  # no result.json: the run dir stays an unfinished, resumable run
        result["reason"] = reason
        return result
    if status == "diverged":
        result["reason"] = reason
        result["diverged_at_step"] = step + 1
    if status == "failed":
        result["error"] = error
        result["traceback"] = tb
    if status == "completed":
        adapter.save_pretrained(out_dir / "adapter")
        result["adapter_dir"] = str(out_dir / "adapter")
        if state["best_step"] is not None and cfg.checkpoint.save_best:
            result["best_adapter_dir"] = str(ckpt_root / "best" / "adapter")
        if cfg.eval.n_samples and val_cache is not None:
            try:
                result["sampled"] = _sampled_metrics(cfg, adapter, bridge, val_cache, n_val, out_dir)
            except Exception as exc:  # the weights are saved; a sampling failure is recorded, not raised
                result["sampled_error"] = f"{type(exc).__name__}: {exc}"
    last_ckpt = ckpt_io.latest_checkpoint(ckpt_root)
    result["last_checkpoint"] = str(last_ckpt) if last_ckpt is not None else None
    atomic_write_json(out_dir / RESULT_FILE, result)
    try:
        plot_learning_curve(out_dir, title=f"{cfg.preset} {cfg.adapter.kind} {cfg.loss.name} [{status}]")
    except Exception as exc:  # a plot must never turn a finished run into a crash
        result["plot_error"] = f"{type(exc).__name__}: {exc}"
        atomic_write_json(out_dir / RESULT_FILE, result)
    return result


# --------------------------------------------------------------------------------------------------------- helpers


def build_adapter_from_config(cfg: "TrainConfig | dict", device=None):
    """The adapter a run starts from (before step 0): kind, budget, dims of the preset, dropout, overrides, and
    ``seed=cfg.seed`` for the init (which leaves the global RNG alone). Use it for "untrained" references."""
    from c2bridge.adapters import build_adapter
    from c2bridge.presets import get_preset

    cfg = cfg if isinstance(cfg, TrainConfig) else load_config(cfg)
    preset = get_preset(cfg.preset)
    adapter = build_adapter(
        cfg.adapter.kind, budget=resolve_budget(cfg.adapter.budget, preset), vlm_dim=preset.vlm_dim,
        dino_dim=preset.dino_dim, out_dim=preset.cond_dim, n_tokens=preset.n_tokens, n_patches=preset.n_patches,
        **{"dropout": cfg.adapter.dropout, "seed": cfg.seed, **cfg.adapter.overrides},
    )
    return adapter.to(device) if device is not None else adapter



def _check_same_config(cfg: TrainConfig, out_dir: Path) -> None:
    saved_path = out_dir / CONFIG_FILE
    if not saved_path.is_file():
        return
    saved = load_config(read_yaml(saved_path))
    if config_hash(saved) != config_hash(cfg):
        a, b = _flat(to_plain(saved)), _flat(to_plain(cfg))
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and not k.startswith("log."))
        raise ValueError(f"cannot resume {str(out_dir)!r}: the config differs from the saved {CONFIG_FILE} in "
                         f"{diff}; expected the same config (or use --overwrite / a new run dir)")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class _StopOnSigterm:
    """While training, SIGTERM (spot pre-emption, a scheduler's stop) only sets a flag: the loop finishes the step,
    writes a checkpoint and returns status ``interrupted``. Only installed from the main thread."""

    def __init__(self):
        import signal
        import threading

        self.requested = False
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def restore(self) -> None:
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


def _pick_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but no CUDA device is available; expected device=cpu or auto")
    return torch.device(name)


def _amp_dtype(amp: str, device):
    import torch

    if amp == "bf16" or (amp == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def _open_cache(path, key: str, required: bool):
    if path is None:
        if required:
            raise ValueError(f"{key} is not set; expected the directory of a feature cache (c2bridge extract)")
        return None
    if not Path(path).is_dir():
        raise FileNotFoundError(f"{key}={str(path)!r}: no such directory; expected a feature cache (c2bridge extract)")
    from c2bridge.encoders import FeatureCache

    return FeatureCache(path)


def _check_cache(cache, key: str, cfg: TrainConfig, preset, augment: str | None) -> None:
    where = f"{key}={str(cache.dir)!r}"
    if len(cache) == 0:
        raise ValueError(f"{where}: the cache is empty; expected at least one sample")
    spec = cache.manifest.get("spec", {})
    if spec.get("preset") not in (None, cfg.preset):
        raise ValueError(f"{where}: cache extracted for preset {spec.get('preset')!r}, but preset={cfg.preset!r}")
    dims = dict(cache.dims)
    want = {"vlm_dim": preset.vlm_dim, "dino_dim": preset.dino_dim, "n_patches": preset.n_patches}
    bad = {k: (dims.get(k), v) for k, v in want.items() if dims.get(k) != v}
    if bad:
        detail = ", ".join(f"{k}={got} (expected {exp})" for k, (got, exp) in bad.items())
        raise ValueError(f"{where}: feature dims do not match the {cfg.adapter.kind!r} adapter of preset "
                         f"{cfg.preset!r}: {detail}")
    if cfg.data.encoder_key is not None and cache_encoder_key(cache) != str(cfg.data.encoder_key):
        raise ValueError(f"{where}: cache encoder key {cache_encoder_key(cache)!r} differs from "
                         f"data.encoder_key={cfg.data.encoder_key!r}; expected a cache extracted with the "
                         f"configured encoders")
    if augment is not None:
        cached = _cache_augment(cache)
        if cached != augment:
            raise ValueError(f"{where}: the cache was extracted with augment={cached!r} but data.augment={augment!r}; "
                             f"expected a train cache extracted with augment={augment!r}")


def cache_encoder_key(cache) -> str:
    """Hash of the encoders a cache was extracted with (both encoders' ``encoder_key()``): what
    ``data.encoder_key`` names. Unlike ``cache.key`` it does not depend on the dataset, split or augmentation, so
    the train and val caches of one encoder setup share it."""
    from c2bridge._io import stable_hash

    return stable_hash(cache.manifest.get("spec", {}).get("encoders"))


def _check_same_encoders(train_cache, val_cache) -> None:
    a, b = cache_encoder_key(train_cache), cache_encoder_key(val_cache)
    if a != b:
        raise ValueError(f"data.train_cache and data.val_cache come from different encoders (encoder keys {a} vs "
                         f"{b}); expected both extracted with the same encoders")


def _cache_augment(cache) -> str:
    aug = cache.manifest.get("spec", {}).get("augment") or {}
    return str(aug.get("kind", "none")) if isinstance(aug, dict) else str(aug)


def _view_groups(cache, limit: int | None) -> list[list[int]]:
    """Cache indices grouped per dataset sample (augmented views are stored as ``ID#vK``), in cache order."""
    import re

    groups: dict[str, list[int]] = {}
    for i, sid in enumerate(cache.sample_ids):
        groups.setdefault(re.sub(r"#v\d+$", "", str(sid)), []).append(i)
    out = list(groups.values())
    return out if limit is None else out[:limit]


def _check_teacher(teacher, preset, path: str) -> None:
    conf = getattr(teacher, "config", {}) or {}
    want = {"vlm_dim": preset.vlm_dim, "dino_dim": preset.dino_dim, "out_dim": preset.cond_dim,
            "n_tokens": preset.n_tokens}
    bad = {k: (conf.get(k), v) for k, v in want.items() if k in conf and conf[k] != v}
    if bad:
        detail = ", ".join(f"{k}={got} (expected {exp})" for k, (got, exp) in bad.items())
        raise ValueError(f"distill.teacher={path!r}: teacher dims do not match the student: {detail}")


def _peak_memory_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB (process peak RSS)


def _feature_mixup(batch: dict, rng, alpha: float) -> dict:
    """Blend each sample with a random partner of the same micro-batch (λ ~ Beta(α, α) per sample)."""
    import torch

    n = batch["vlm"].shape[0]
    partner = torch.as_tensor(rng.permutation(n))
    lam = torch.as_tensor(rng.beta(alpha, alpha, size=n), dtype=torch.float32)
    out = dict(batch)
    for name in ("vlm", "dino", "target", "latent"):
        x = batch.get(name)
        if torch.is_tensor(x) and x.is_floating_point():
            w = lam.to(x.device, x.dtype).view(-1, *([1] * (x.dim() - 1)))
            out[name] = w * x + (1 - w) * x[partner.to(x.device)]
    out["vlm_mask"] = batch["vlm_mask"] | batch["vlm_mask"][partner.to(batch["vlm_mask"].device)]
    return out


class _Samples:
    """Random access to a cache's samples as collated, on-device batches.

    ``groups[i]`` lists the cache indices of sample ``i``'s views; ``batch(ids, epoch)`` takes one view per sample,
    fixed by (seed, epoch, sample). Small caches are loaded into memory once (``FeatureCache.load_all``); latents
    missing from the cache are computed once with ``bridge.encode_latents`` (in memory) or per batch (streaming).
    Either way a batch equals ``collate_features`` of its items (vlm padded to the batch's longest sequence).
    """

    def __init__(self, cache, groups: list[list[int]], cfg: TrainConfig, bridge, device):
        import torch

        from c2bridge.encoders import collate_features

        self.cache, self.groups, self.bridge, self.device = cache, groups, bridge, device
        self.seed = cfg.seed
        self.collate = collate_features
        self.data = None
        size_mb = 4 * sum(int(s.get("bytes", 0)) for s in cache.manifest.get("shards", [])) / 2**20  # uint8 -> float
        if size_mb <= cfg.data.in_memory_max_mb:
            data = cache.load_all()
            if data.get("latent") is None:
                data["latent"] = torch.cat([self._encode(data["target"][i:i + 32])
                                            for i in range(0, len(data["target"]), 32)]).cpu()
            self.data = data

    def __len__(self) -> int:
        return len(self.groups)

    def _encode(self, target):
        import torch

        with torch.no_grad():
            return self.bridge.encode_latents(target.to(self.device))

    def batch(self, ids: list[int], epoch: int = 0) -> dict:
        import torch

        from c2bridge.data.augment import derive_seed

        rows = []
        for i in ids:
            views = self.groups[i]
            rows.append(views[0] if len(views) == 1 else views[derive_seed(self.seed, "view", epoch, i) % len(views)])
        if self.data is not None:
            index = torch.tensor(rows)
            length = int(self.data["vlm_mask"][index].sum(1).max())  # as collate_features pads: to the batch max
            batch = {k: v[index] for k, v in self.data.items() if torch.is_tensor(v)}
            batch["vlm"], batch["vlm_mask"] = batch["vlm"][:, :length], batch["vlm_mask"][:, :length]
        else:
            batch = self.collate([self.cache[r] for r in rows])
            if batch.get("latent") is None:
                batch["latent"] = self._encode(batch["target"])
        return {k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in batch.items()}

    def sequential_batches(self, size: int):
        for start in range(0, len(self.groups), size):
            yield list(range(start, min(len(self.groups), start + size)))


def _check_sampled_distance(cfg: TrainConfig) -> None:
    """The end-of-run sampled metrics need their distance offline: fail now, not after training."""
    if not cfg.eval.n_samples:
        return
    from c2bridge.metrics.distance import lpips_available

    if not lpips_available(cfg.eval.distance) and not (
            cfg.eval.distance_fallback and lpips_available(cfg.eval.distance_fallback)):
        from c2bridge.metrics import get_distance

        get_distance(cfg.eval.distance)  # raises the clear FileNotFoundError naming the missing backbone file


def _sampled_metrics(cfg: TrainConfig, adapter, bridge, val_cache, n_val: int, out_dir: Path) -> dict:
    """Sampled metrics on the val cache via c2bridge.metrics.evaluate_adapter (LTXPipeline sampling)."""
    from c2bridge.metrics import evaluate_adapter

    metrics = evaluate_adapter(adapter, bridge, val_cache, distance=cfg.eval.distance,
                               distance_fallback=cfg.eval.distance_fallback, n=min(cfg.eval.n_samples, n_val),
                               batch_size=cfg.optim.batch_size, steps=cfg.eval.sample_steps,
                               guidance_scale=cfg.eval.guidance, seed=cfg.seed, out_png=out_dir / "samples.png")
    return to_plain(metrics)
