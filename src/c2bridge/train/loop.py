"""The training recipe: ``train(config, out_dir, resume=False, overwrite=False) -> result dict``.

``AdapterTrainingRecipe`` runs one adapter's training in named stages (the torchtune recipe shape); ``run`` reads
top to bottom:

1. ``check``: the run dir and the config against a resumed run's saved one (nothing written, no step taken);
2. ``setup_data``: the feature caches, checked against the preset and each other; the run length;
3. ``setup_model``: the frozen decoder, the adapter (and a distillation teacher), the samples in memory;
4. ``claim_run_dir`` then ``restore``: from here on the run dir is ours; the optimizer, RNGs and loop state, fresh
   or from the last checkpoint;
5. ``fit``: ``train_step`` (accumulate, clip, divergence check, update, log), ``validate`` + best-so-far (and
   early stopping at a plateau, ``stop.*``), ``save_checkpoint``; SIGTERM finishes the step, checkpoints and stops;
6. ``finish``: final adapter, sampled metrics, ``result.json``, ``learning_curve.png``.

Bad input raises ValueError/FileNotFoundError in stages 1-3, before anything in ``out_dir`` changes.

Determinism (same seed -> same numbers; resume -> bit-identical weights on CPU):
- data order: micro-batch ``m`` of the whole run is slice ``m % M`` of epoch ``m // M``'s permutation, drawn from
  a generator seeded by ``(seed, epoch)`` (M = micro-batches per epoch), so a resumed run recomputes it from the step;
- σ/noise for the objective come from one explicit generator whose state is checkpointed; dropout uses the global
  torch RNG, checkpointed too; feature MixUp draws from a numpy generator, checkpointed as well;
- validation uses its own generator reset to ``eval.noise_seed`` each time and never touches the training RNGs;
- the pixel-term schedule (``loss.pixel_*``: which steps, which crop / latent frames) is a pure function of (seed,
  step, micro-batch), and early stopping reads the validation history kept in the checkpointed loop state, so a
  resumed run decodes the same regions and stops at the same step.
"""
from __future__ import annotations

import math
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from c2bridge._io import atomic_write_json, atomic_write_yaml, read_json, read_yaml, to_plain
from c2bridge.device import pick_device
from c2bridge.train import checkpoint as ckpt_io
from c2bridge.data.augment import derive_seed
from c2bridge.metrics.efficiency import detect_plateau
from c2bridge.train.config import TrainConfig, config_hash, load_config, resolve_budget
from c2bridge.train.losses import pixel_start_step, pixel_terms_on
from c2bridge.train.schedules import check_schedule, lr_at, set_lr

RESULT_FILE = "result.json"
DECODER_LORA_DIR = "decoder_lora"  # inside a saved adapter dir: the decoder LoRA trained with it (plan 8.2)
CONFIG_FILE = "config.yaml"


class Diverged(Exception):
    """Raised inside the loop to stop a run whose loss went non-finite or blew up."""


def train(config: "TrainConfig | dict | str | os.PathLike", out_dir: "str | os.PathLike", resume: bool = False,
          overwrite: bool = False, pause_at_step: int | None = None) -> dict:
    """Train one adapter. Bad input raises ValueError/FileNotFoundError before any step and before anything in
    ``out_dir`` changes. A run that diverges or fails returns (and writes) a result with that status.

    ``pause_at_step`` (successive halving's rungs; never part of the config): at that step, checkpoint and return
    status ``paused`` without a ``result.json``, like an interrupted run; ``resume=True`` continues it exactly
    (pause at a validation step, so the continued run validates where an uninterrupted one does)."""
    cfg = load_config(config)  # a fresh, validated copy (accepts a TrainConfig, a dict or a YAML path)
    previous_threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        return AdapterTrainingRecipe(cfg, Path(out_dir), pause_at_step).run(resume=resume, overwrite=overwrite)
    finally:
        torch.set_num_threads(previous_threads)


class AdapterTrainingRecipe:
    """One adapter's training run in ``out_dir``: the stages above as methods, the run's objects as attributes."""

    def __init__(self, cfg: TrainConfig, out_dir: Path, pause_at_step: int | None = None):
        self.cfg = cfg
        self.pause_at = pause_at_step
        self.out_dir = Path(out_dir)
        self.ckpt_root = self.out_dir / "checkpoints"
        self.resume = False

    def run(self, resume: bool = False, overwrite: bool = False) -> dict:
        finished = self.check(resume, overwrite)
        if finished is not None:
            return finished  # resuming a finished run is a no-op
        self.setup_data()
        self.setup_model()
        self.claim_run_dir(overwrite)
        self.restore()
        status, detail = self.fit()
        return self.finish(status, detail)

    # ------------------------------------------------------------------ 1. check (nothing written, no step taken)
    def check(self, resume: bool, overwrite: bool) -> dict | None:
        """Refuse a run dir we may not use; for a resume, the config must be the saved one. -> the saved result
        when the run being resumed already completed, else None."""
        from c2bridge.presets import get_preset
        from c2bridge.train.logging import check_integrations

        cfg, out_dir = self.cfg, self.out_dir
        if resume and overwrite:
            raise ValueError("pass either resume or overwrite, not both")
        if out_dir.exists() and not out_dir.is_dir():
            raise ValueError(f"run dir {str(out_dir)!r} exists and is not a directory")
        self.dir_has_files = out_dir.is_dir() and any(out_dir.iterdir())
        if self.dir_has_files and not (resume or overwrite):
            raise ValueError(f"run dir {str(out_dir)!r} is not empty; pass --resume to continue that run or "
                             f"--overwrite to replace it")
        self.resume = resume and self.dir_has_files
        if self.resume:
            _check_same_config(cfg, out_dir)
            previous = out_dir / RESULT_FILE
            if previous.is_file() and read_json(previous).get("status") == "completed":
                return read_json(previous)
        self.preset = get_preset(cfg.preset)
        self.device = pick_device(cfg.device)
        self.amp_dtype = _amp_dtype(cfg.amp, self.device)
        check_integrations(cfg.log)
        _check_sampled_distance(cfg)
        return None

    # ------------------------------------------------------------------ 2. data
    def setup_data(self) -> None:
        """The caches (checked against the preset, the config and each other), their samples, the run length."""
        cfg = self.cfg
        self.batch_size, self.accum = cfg.optim.batch_size, cfg.optim.grad_accum
        self.sources = _train_sources(cfg, self.preset, self.batch_size)  # one per train cache (data.mix or one)
        self.train_cache = self.sources[0].cache
        self.val_sets = _val_sets(cfg, self.preset, self.sources[0])  # one per val cache (data.val_mix, one or none)
        self.train_groups = self.sources[0].groups  # sample -> its cached views
        self.n_train, self.n_val = sum(len(s.groups) for s in self.sources), sum(len(v.groups) for v in self.val_sets)
        # the last partial micro-batch of each cache's epoch is dropped
        self.micro_per_epoch = sum(s.micro_per_epoch for s in self.sources)
        if cfg.optim.max_steps is not None:
            self.total_steps = int(cfg.optim.max_steps)
        else:
            self.total_steps = max(1, math.ceil(cfg.optim.epochs * self.micro_per_epoch / self.accum))
        self.mix = _MixSchedule(cfg.seed, [s.weight for s in self.sources], self.total_steps * self.accum)
        check_schedule(cfg, self.total_steps)
        if cfg.stop.patience is not None and not self.n_val:
            raise ValueError(f"stop.patience={cfg.stop.patience}: early stopping watches the validation loss; "
                             f"expected a non-empty data.val_cache or data.val_mix")
        self.earliest_stop = math.ceil(round(cfg.stop.min_fraction * self.total_steps, 9))  # stop.min_fraction
        self.pixel_start = pixel_start_step(cfg, self.total_steps)

    # ------------------------------------------------------------------ 3. model
    def setup_model(self) -> None:
        """The frozen decoder, the adapter at its step-0 init, the optional teacher; then the samples in memory
        (latents the cache lacks are encoded once by the decoder's VAE)."""
        from c2bridge.decoder import LTXBridge
        from c2bridge.train.losses import make_loss_spec

        cfg, device = self.cfg, self.device
        self.loss_spec = make_loss_spec(cfg) if cfg.distill.recon_weight > 0 else None
        # the steps without pixel terms (loss.pixel_start / pixel_every): the flow term alone, no VAE decode
        self.flow_spec = (self.loss_spec.flow_only() if self.loss_spec is not None and self.loss_spec.needs_pixels
                          and (cfg.loss.pixel_start > 0 or cfg.loss.pixel_every > 1) else None)
        if cfg.compute.compile:  # before any model loads: loading one makes torch fill in its own cache dir
            from c2bridge.train.compute import use_compile_cache

            use_compile_cache()
        self.bridge = LTXBridge.from_preset(cfg.preset, device=device,  # frozen; the tiny one seeds its own init
                                            gradient_checkpointing=cfg.memory.gradient_checkpointing)
        _check_pixel_region(cfg, self.bridge, self.preset)
        torch.manual_seed(cfg.seed)  # the global RNG dropout draws from follows the run's seed
        self.adapter = build_adapter_from_config(cfg, device)
        self.teacher = (_load_teacher(cfg.distill.teacher, self.preset, device)
                        if cfg.distill.teacher is not None else None)
        self.params = [p for p in self.adapter.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError(f"adapter {cfg.adapter.kind!r} has no trainable parameters")
        self.decoder_lora = None  # plan 8.2 only: every other run leaves the decoder frozen and untouched
        if cfg.decoder_lora.rank is not None:
            from c2bridge.decoder import lora

            self.decoder_lora = lora.attach(self.bridge.transformer, cfg.decoder_lora.rank, cfg.decoder_lora.alpha,
                                            cfg.decoder_lora.dropout, tuple(cfg.decoder_lora.targets), seed=cfg.seed)
            self.params += lora.trainable(self.decoder_lora)
        if cfg.compute.compile:  # before anything is written: a machine where it fails is one clear error
            compile_decoder(self.bridge, cfg.compute.compile, self.batch_size, self.preset, self.sources[0].cache,
                            self.amp_dtype)
        self.trained = _TrainedWeights(self.adapter, self.decoder_lora)  # what checkpoints and the final save write
        per_frame = getattr(self.adapter, "temporal", None) == "frame"  # clips: one conditioning per frame
        for source in self.sources:
            source.samples = _Samples(source.cache, source.groups, cfg, self.bridge, device, per_frame)
        self.train_samples = self.sources[0].samples
        for val_set in self.val_sets:
            val_set.samples = _Samples(val_set.cache, val_set.groups, cfg, self.bridge, device, per_frame)

    # ------------------------------------------------------------------ 4. run dir + restore
    def claim_run_dir(self, overwrite: bool) -> None:
        """From here on the run dir is ours: replaced (overwrite), half-written leftovers removed, config saved."""
        if overwrite and self.dir_has_files:
            shutil.rmtree(self.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        ckpt_io.clean_stale(self.ckpt_root)
        (self.out_dir / RESULT_FILE).unlink(missing_ok=True)  # a stale failed/diverged result must not outlive a resume
        atomic_write_yaml(self.out_dir / CONFIG_FILE, to_plain(self.cfg))

    def restore(self) -> None:
        """Optimizer, RNGs and loop state: fresh, or (resume) from the latest checkpoint; then the logger."""
        from c2bridge.train.logging import RunLogger, truncate_metrics

        cfg, device = self.cfg, self.device
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                                           eps=cfg.optim.eps, weight_decay=cfg.optim.weight_decay)
        self.noise_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)  # σ and noise of the objective
        self.mixup_rng = np.random.default_rng(cfg.seed + 2)  # feature MixUp pairs and λ
        self.state: dict[str, Any] = {
            "best_value": None,  # lowest validation metric so far
            "best_step": None,
            "running_min": None,  # lowest train loss so far (blow-up test)
            "train_time_s": 0.0,  # summed over sessions (resume)
            "last_val": None,
            "initial_val": None,  # validation before the first step (eval.at_start)
            "val_history": [],  # [step, eval.best_metric] of every validation (early stopping reads it)
            "stop_step": None,  # the step early stopping ended the run at (None: it ran to the max steps)
        }
        self.step = self.start_step = 0
        self.restored_from, self.skipped_checkpoints = None, []
        if self.resume:  # the newest checkpoint whose checksums match; damaged newer ones are named and passed over
            self.restored_from, self.skipped_checkpoints = ckpt_io.latest_intact_checkpoint(self.ckpt_root,
                                                                                           device=self.device)
            for line in self.skipped_checkpoints:
                print(f"c2bridge train: {line}; resuming from "
                      f"{self.restored_from.name if self.restored_from is not None else 'step 0'} instead",
                      file=sys.stderr, flush=True)
        if self.restored_from is not None:
            self.load_checkpoint(self.restored_from)
        truncate_metrics(self.out_dir, keep_through_step=self.start_step)
        self.logger = RunLogger(self.out_dir, cfg.log, self.total_steps, self.start_step, to_plain(cfg))

    def load_checkpoint(self, ckpt_dir: Path) -> None:
        """Adapter weights, optimizer, every RNG and the loop state of a step checkpoint."""
        from c2bridge.adapters import load_adapter

        loaded = ckpt_io.load_checkpoint(ckpt_dir, device=self.device)
        self.adapter.load_state_dict(load_adapter(loaded["adapter_dir"]).state_dict())
        self.trained.load_decoder_lora(loaded["adapter_dir"])
        self.optimizer.load_state_dict(loaded["optimizer"])
        rng = loaded["rng"]
        torch.set_rng_state(rng["torch_cpu"])
        if "torch_cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["torch_cuda"], self.device)
        self.noise_gen.set_state(rng["noise"].to(self.noise_gen.get_state().device))
        saved = loaded["state"]
        self.mixup_rng.bit_generator.state = saved.pop("mixup_rng")
        self.step = self.start_step = int(saved.pop("step"))
        self.state.update({k: saved[k] for k in self.state if k in saved})

    # ------------------------------------------------------------------ 5. the loop
    def fit(self) -> tuple[str, dict]:
        """Train to ``total_steps`` -> (status, detail): completed / interrupted / diverged / failed."""
        cfg = self.cfg
        status, detail = "completed", {}
        self.last_train: dict = {}
        self.session_steps = 0
        session_start = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.adapter.train()
        stop = _StopOnSigterm()  # pre-emption: finish the step, checkpoint, leave the run resumable
        try:
            if self.val_sets and cfg.eval.at_start and self.start_step == 0:
                self.state["initial_val"] = self.validate()
                self._note_val(self.state["initial_val"])
            while self.step < self.total_steps and self.state["stop_step"] is None:
                if self.pause_at is not None and self.step >= self.pause_at:
                    status, detail = "paused", {"reason": f"paused at step {self.step}; resume with --resume"}
                    break
                self.train_step()
                if self._due(cfg.eval.every_steps) and self.val_sets:
                    self.validate_and_keep_best()
                    if self.plateaued():
                        self.state["stop_step"] = self.step
                if (self._due(cfg.checkpoint.every_steps) or stop.requested or self.state["stop_step"] is not None
                        or self.step == self.pause_at):
                    self.save_checkpoint()
                if stop.requested and self.step < self.total_steps and self.state["stop_step"] is None:
                    status = "interrupted"
                    detail = {"reason": f"{stop.name} after step {self.step}; checkpointed, resume with --resume"}
                    break
                if cfg.debug.sleep_per_step:
                    time.sleep(cfg.debug.sleep_per_step)
        except Diverged as exc:
            status, detail = "diverged", {"reason": str(exc), "diverged_at_step": self.step + 1}
        except Exception as exc:  # a failure inside a step is a result, not a crash
            status, detail = "failed", {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        finally:
            stop.restore()
            self.logger.close()
            self.session_time = time.perf_counter() - session_start
        return status, detail

    def plateaued(self) -> bool:
        """Early stopping (``stop.*``): the validation curve so far ends on a plateau (``detect_plateau``,
        online mode) and the run is past ``stop.min_fraction`` of its max steps."""
        cfg = self.cfg
        if cfg.stop.patience is None or self.step >= self.total_steps or self.step < self.earliest_stop:
            return False
        steps, values = zip(*self.state["val_history"])
        return detect_plateau(values, steps, patience=cfg.stop.patience, min_rel_improvement=cfg.stop.min_delta,
                              mode="current").step is not None

    def _note_val(self, record: dict) -> None:
        self.state["val_history"].append([record["step"], record[f"val_{self.cfg.eval.best_metric[len('val_'):]}"]])

    def _due(self, every: int | None) -> bool:
        """At the last step, and every ``every`` steps (0/None: only the last)."""
        return self.step == self.total_steps or bool(every and self.step % every == 0)

    def train_step(self) -> None:
        """One optimizer step: lr, ``grad_accum`` micro-batches, clip, divergence check, update, log."""
        cfg, step = self.cfg, self.step
        t0 = time.perf_counter()
        lr = lr_at(step, cfg, self.total_steps)
        set_lr(self.optimizer, lr)
        if cfg.debug.fail_at_step is not None and step == cfg.debug.fail_at_step:
            raise RuntimeError(f"debug.fail_at_step={step}: injected failure")
        loss, parts = self._accumulate_gradients(step)
        max_norm = cfg.optim.grad_clip if cfg.optim.grad_clip else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, max_norm))
        self._check_divergence(loss, grad_norm)  # before the update: weights and checkpoints stay the last good ones
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.session_steps += 1
        dt = time.perf_counter() - t0
        self.state["train_time_s"] += dt
        samples = self.batch_size * self.accum
        self.last_train = {"step": self.step, "loss": loss, **parts, "lr": lr, "grad_norm": grad_norm,
                           "samples_per_s": samples / dt, "steps_per_s": 1.0 / dt,
                           "peak_memory_mb": _peak_memory_mb(self.device)}
        self.logger.train(self.last_train)

    def _accumulate_gradients(self, step: int) -> tuple[float, dict]:
        """Backward over the step's micro-batches -> (mean loss, mean loss terms)."""
        cfg, accum = self.cfg, self.accum
        loss_sum, parts_sum = 0.0, {}
        per_source: dict[str, list[float]] = {}  # a mixed set: each cache's micro-batch losses of this step
        for a in range(accum):
            batch = self.micro_batch(step * accum + a)
            if cfg.debug.nan_at_step is not None and step == cfg.debug.nan_at_step:
                batch["vlm"] = batch["vlm"] * float("nan")  # poison: the divergence path must catch it
            with self._autocast():
                cond = self.adapter(batch["vlm"], batch["dino"], vlm_mask=batch["vlm_mask"])  # [B, N, cond_dim]
                loss, parts = self.objective(cond, batch, self.noise_gen, micro=(step, step * accum + a))
            (loss / accum).backward()
            loss_sum += float(loss.detach()) / accum
            for k, v in parts.items():
                parts_sum[k] = parts_sum.get(k, 0.0) + v / accum
            if len(self.sources) > 1:
                per_source.setdefault(self.sources[self.mix.source(step * accum + a)].name, []).append(
                    float(loss.detach()))
        for name, values in per_source.items():  # only the caches this step drew from
            parts_sum[f"loss/{name}"] = sum(values) / len(values)
        return loss_sum, parts_sum

    def _check_divergence(self, loss: float, grad_norm: float) -> None:
        cfg, step = self.cfg, self.step
        if not math.isfinite(loss):
            raise Diverged(f"non-finite train loss ({loss}) at step {step + 1}")
        if not math.isfinite(grad_norm):
            raise Diverged(f"non-finite gradient norm ({grad_norm}) at step {step + 1}")
        running_min = self.state["running_min"]
        if (running_min is not None and step >= cfg.blowup_after and running_min > 0
                and loss > cfg.blowup_factor * running_min):
            raise Diverged(f"train loss {loss:.4g} > blowup_factor {cfg.blowup_factor:g} x running min "
                           f"{running_min:.4g} at step {step + 1}")
        self.state["running_min"] = loss if running_min is None else min(running_min, loss)

    def micro_batch(self, m: int) -> dict:
        """Micro-batch ``m`` of the run, recomputable from (seed, m) on resume: the mix picks its cache and that
        cache's own count ``k`` of micro-batches so far; the batch is slice ``k % M`` of the cache's epoch
        ``k // M`` permutation (M = the cache's micro-batches per epoch). One cache: ``k = m``."""
        source = self.sources[self.mix.source(m)]
        epoch, j = divmod(self.mix.rank(m), source.micro_per_epoch)
        B = self.batch_size
        batch = source.samples.batch(source.permutation(self.cfg.seed, epoch)[j * B:(j + 1) * B].tolist(),
                                     epoch=epoch)
        if self.cfg.data.feature_mixup_alpha > 0:
            batch = _feature_mixup(batch, self.mixup_rng, self.cfg.data.feature_mixup_alpha)
        return batch

    def objective(self, cond, batch: dict, generator, micro: tuple[int, int] | None = None) -> tuple:
        """One micro-batch's loss (see losses.py for how terms combine). ``micro`` = (optimizer step, micro-batch
        index) in training: the pixel-term schedule (``loss.pixel_*``) applies; None (validation): the whole
        objective, whole frames."""
        from c2bridge.train.losses import combine_losses, distillation_loss

        cfg = self.cfg
        recon = recon_parts = distill = None
        cond_mask = torch.ones(cond.shape[:-1], dtype=torch.bool, device=cond.device)  # [B, (F,) n_tokens]
        if self.loss_spec is not None:
            spec, region = self.loss_spec, None
            if micro is not None and spec.needs_pixels:
                step, m = micro
                if self.flow_spec is not None and not pixel_terms_on(cfg, step, self.pixel_start):
                    spec = self.flow_spec
                else:
                    region = self.bridge.pixel_region(
                        tuple(batch["latent"].shape[2:]), crop=cfg.loss.pixel_crop,
                        latent_frames=cfg.loss.pixel_latent_frames, seed=derive_seed(cfg.seed, "pixel_region", m))
            recon, recon_parts = self.bridge.training_loss(cond, cond_mask, batch["latent"], batch["target"],
                                                           loss=spec, generator=generator, region=region)
        if self.teacher is not None and cfg.distill.weight > 0:
            with torch.no_grad():
                target_tokens = self.teacher(batch["vlm"], batch["dino"], vlm_mask=batch["vlm_mask"])
            distill = distillation_loss(cond, target_tokens, cfg.distill.metric)
        return combine_losses(cfg, recon, recon_parts, getattr(self.adapter, "aux_loss", None), distill)

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def validate(self) -> dict:
        """The objective's loss on every val cache (first view, the same noise at every eval), logged: ``val_<term>``
        pooled over all validation samples, and with two or more caches ``val_<term>/<name>`` per cache."""
        cfg = self.cfg
        self.adapter.eval()
        per_set: list[tuple[str, dict[str, float], int]] = []  # (name, term -> sample-weighted sum, samples)
        with torch.no_grad(), self._autocast():
            for val_set in self.val_sets:
                # reset per cache: a cache's numbers do not depend on the caches validated before it
                g = torch.Generator(device=self.device).manual_seed(cfg.eval.noise_seed)
                sums: dict[str, float] = {}
                count = 0
                for k, idx in enumerate(val_set.samples.sequential_batches(self.batch_size)):
                    if cfg.eval.max_batches is not None and k >= cfg.eval.max_batches:
                        break
                    batch = val_set.samples.batch(idx)
                    cond = self.adapter(batch["vlm"], batch["dino"], vlm_mask=batch["vlm_mask"])
                    total, parts = self.objective(cond, batch, g)
                    for name, v in {"loss": float(total), **parts}.items():
                        sums[name] = sums.get(name, 0.0) + v * len(idx)
                    count += len(idx)
                per_set.append((val_set.name, sums, count))
        self.adapter.train()
        pooled: dict[str, list[float]] = {}  # term -> [sum, samples] over the caches that have it
        for _, sums, count in per_set:
            for name, v in sums.items():
                acc = pooled.setdefault(name, [0.0, 0])
                acc[0], acc[1] = acc[0] + v, acc[1] + count
        record = {"step": self.step, **{f"val_{k}": v / n for k, (v, n) in pooled.items()}}
        if len(per_set) > 1:
            for set_name, sums, count in per_set:
                record.update({f"val_{k}/{set_name}": v / count for k, v in sums.items()})
        self.logger.val(record)
        return record

    def validate_and_keep_best(self) -> None:
        cfg, state = self.cfg, self.state
        record = self.validate()
        self._note_val(record)
        state["last_val"] = record
        value = record[f"val_{cfg.eval.best_metric[len('val_'):]}"]
        if state["best_value"] is None or value < state["best_value"]:
            state["best_value"], state["best_step"] = value, self.step
            if cfg.checkpoint.save_best:
                ckpt_io.save_best(self.ckpt_root, self.trained,
                                  {"step": self.step, "metric": cfg.eval.best_metric, "value": value})

    def save_checkpoint(self) -> None:
        """Adapter, optimizer, loop state and every RNG at the current step (what ``load_checkpoint`` reads)."""
        rng = {"torch_cpu": torch.get_rng_state(), "noise": self.noise_gen.get_state().cpu()}
        if self.device.type == "cuda":
            rng["torch_cuda"] = torch.cuda.get_rng_state(self.device)
        state = {**self.state, "mixup_rng": self.mixup_rng.bit_generator.state,
                 "micro_batch": self.step * self.accum, "config_hash": config_hash(self.cfg)}
        ckpt_io.save_checkpoint(self.ckpt_root, self.step, self.trained, self.optimizer, state, rng,
                                keep_last=self.cfg.checkpoint.keep_last)

    # ------------------------------------------------------------------ 6. finish
    def finish(self, status: str, detail: dict) -> dict:
        """The result dict; for every status but ``interrupted`` also ``result.json`` and the learning curve."""
        from c2bridge.train.logging import plot_learning_curve

        cfg = self.cfg
        result = {**self._summary(status), **detail}
        if status in ("interrupted", "paused"):  # no result.json: the run dir stays an unfinished, resumable run
            return result
        if status == "completed":
            result.update(self._save_final())
        last_ckpt = ckpt_io.latest_checkpoint(self.ckpt_root)
        result["last_checkpoint"] = str(last_ckpt) if last_ckpt is not None else None
        atomic_write_json(self.out_dir / RESULT_FILE, result)
        try:
            plot_learning_curve(self.out_dir, title=f"{cfg.preset} {cfg.adapter.kind} {cfg.loss.name} [{status}]")
        except Exception as exc:  # a plot must never turn a finished run into a crash
            result["plot_error"] = f"{type(exc).__name__}: {exc}"
            atomic_write_json(self.out_dir / RESULT_FILE, result)
        return result

    def _summary(self, status: str) -> dict:
        cfg, state, t, n = self.cfg, self.state, self.session_time, self.session_steps
        num_params = int(getattr(self.adapter, "num_params", sum(p.numel() for p in self.params)))
        teacher = self.teacher
        return {
            "status": status,
            "step": self.step,
            "total_steps": self.total_steps,
            "steps_run": self.step,  # optimizer steps actually taken (early stopping: fewer than max_steps)
            "max_steps": self.total_steps,
            "stopped_early": state["stop_step"] is not None,
            "stop_step": state["stop_step"],
            "resumed_from_step": self.start_step if self.restored_from is not None else None,
            "skipped_checkpoints": self.skipped_checkpoints,  # damaged checkpoints a resume passed over
            "final": {"train_loss": self.last_train.get("loss"), **(state["last_val"] or {})},
            "initial": state["initial_val"],
            "best": {"metric": cfg.eval.best_metric, "value": state["best_value"], "step": state["best_step"]},
            "train_time_s": state["train_time_s"],
            "session_time_s": t,
            "steps_per_s": n / t if t > 0 and n else None,
            "samples_per_s": n * self.batch_size * self.accum / t if t > 0 and n else None,
            "peak_memory_mb": _peak_memory_mb(self.device),
            "params": {"trainable": num_params,
                       "active": int(getattr(self.adapter, "active_params", num_params)),
                       "budget": resolve_budget(cfg.adapter.budget, self.preset),
                       # every weight of the frozen teacher (num_params counts trainable ones: 0 once frozen)
                       "teacher": sum(p.numel() for p in teacher.parameters()) if teacher is not None else None,
                       "decoder_lora": (sum(p.numel() for p in lora_params(self.decoder_lora))
                                        if self.decoder_lora is not None else None)},
            "n_train": self.n_train,
            "n_val": self.n_val,
            "config_hash": config_hash(cfg),
            "preset": cfg.preset,
            "is_miniature": self.preset.is_miniature,
            "device": str(self.device),
        }

    def _save_final(self) -> dict:
        """The final adapter (and where the best one is) and the sampled metrics of a completed run."""
        cfg, out_dir = self.cfg, self.out_dir
        self.trained.save_pretrained(out_dir / "adapter")
        out: dict[str, Any] = {"adapter_dir": str(out_dir / "adapter")}
        if self.state["best_step"] is not None and cfg.checkpoint.save_best:
            out["best_adapter_dir"] = str(self.ckpt_root / "best" / "adapter")
        if cfg.eval.n_samples and self.val_sets:  # on the first val cache
            first = self.val_sets[0]
            try:
                out["sampled"] = _sampled_metrics(cfg, self.adapter, self.bridge, first.cache, len(first.groups),
                                                  out_dir)
            except Exception as exc:  # the weights are saved; a sampling failure is recorded, not raised
                out["sampled_error"] = f"{type(exc).__name__}: {exc}"
        from c2bridge.package import package_trained_adapter

        params = {"trainable": int(self.adapter.num_params)}
        package_trained_adapter(out["adapter_dir"], cfg, self.bridge, self.train_cache, params, out.get("sampled"))
        if out.get("best_adapter_dir"):  # self-describing packages: provenance.json + model card
            package_trained_adapter(out["best_adapter_dir"], cfg, self.bridge, self.train_cache, params)
            ckpt_io.write_checksums(self.ckpt_root / "best")  # the package's files are part of the checkpoint
        return out


# --------------------------------------------------------------------------------------------------------- helpers


def build_adapter_from_config(cfg: "TrainConfig | dict", device=None):
    """The adapter a run starts from (before step 0): kind, budget, dims of the preset, dropout, overrides, and
    ``seed=cfg.seed`` for the init (which leaves the global RNG alone). Use it for "untrained" references."""
    from c2bridge.adapters import build_adapter
    from c2bridge.presets import get_preset

    cfg = cfg if isinstance(cfg, TrainConfig) else load_config(cfg)
    preset = get_preset(cfg.preset)
    # the preset's dims, then the overrides (n_tokens: fewer output tokens are legal, the decoder takes a mask)
    options = {"vlm_dim": preset.vlm_dim, "dino_dim": preset.dino_dim, "out_dim": preset.cond_dim,
               "n_tokens": preset.n_tokens, "n_patches": preset.n_patches, "dropout": cfg.adapter.dropout,
               "seed": cfg.seed, **cfg.adapter.overrides}
    adapter = build_adapter(cfg.adapter.kind, budget=resolve_budget(cfg.adapter.budget, preset), **options)
    return adapter.to(device) if device is not None else adapter



class _TrainedWeights:
    """What a run trains, saved as one directory: the adapter (``save_pretrained``) plus, with a decoder LoRA, the
    LoRA in its ``decoder_lora/`` subdirectory (peft's ``save_pretrained``). Checkpoints, the best copy and the
    final adapter are written through it, so their checksums cover both."""

    def __init__(self, adapter, decoder_lora=None):
        self.adapter, self.decoder_lora = adapter, decoder_lora

    def save_pretrained(self, directory) -> Path:
        directory = self.adapter.save_pretrained(directory)
        if self.decoder_lora is not None:
            from c2bridge.decoder import lora

            lora.save(self.decoder_lora, Path(directory) / DECODER_LORA_DIR)
        return directory

    def load_decoder_lora(self, directory) -> None:
        if self.decoder_lora is None:
            return
        from c2bridge.decoder import lora

        path = Path(directory) / DECODER_LORA_DIR
        if not lora.is_lora_dir(path):
            raise ValueError(f"checkpoint {directory} has no {DECODER_LORA_DIR}/ but the run trains a decoder LoRA")
        lora.load_into(self.decoder_lora, path)


def lora_params(model) -> list:
    from c2bridge.decoder import lora

    return lora.trainable(model)


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
    """While training, SIGTERM (spot pre-emption, a scheduler's stop) and SIGINT (Ctrl-C) only set a flag: the loop
    finishes the step, writes a checkpoint and returns status ``interrupted``. A second Ctrl-C stops at once
    (KeyboardInterrupt). Only installed from the main thread."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested = False
        self.signum: int | None = None
        self._previous: dict = {}
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else "SIGTERM"

    def _handle(self, signum, frame) -> None:
        from c2bridge import _signals

        _signals.note(signum)
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested, self.signum = True, signum

    def restore(self) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous = {}


def _check_pixel_region(cfg: TrainConfig, bridge, preset) -> None:
    """``loss.pixel_crop`` fits the decoder: a multiple of the VAE's spatial compression, at most the image."""
    crop = cfg.loss.pixel_crop
    if crop is None:
        return
    ratio = bridge.spatial_ratio
    if crop % ratio or crop > preset.image_size:
        raise ValueError(f"loss.pixel_crop={crop}: expected a multiple of the VAE's spatial compression ({ratio}) "
                         f"of at most the {cfg.preset} image size ({preset.image_size} px)")


def compile_decoder(bridge, setting, batch_size: int, preset, cache, amp_dtype) -> None:
    """``compute.compile`` (``setting``: true, exact or fast; c2bridge.train.compute): torch.compile the frozen
    transformer's training forward and compile it now, on one zero batch of the training shapes (forward + backward
    to the conditioning, which touches no RNG), so a machine where torch.compile fails is one clear error before
    anything is written, and the first step runs compiled. Compiled graphs go to the persistent inductor cache
    (``use_compile_cache``)."""
    from c2bridge.train.compute import compile_options, use_compile_cache

    use_compile_cache()
    item = cache[0]
    latent = item.get("latent")
    if latent is None:
        latent = bridge.encode_latents(item["target"].unsqueeze(0))[0]
    x_t = torch.zeros((batch_size, *latent.shape), device=bridge.device)  # [B, C, F', h, w]
    cond = torch.zeros(batch_size, preset.n_tokens, bridge.cond_dim, device=bridge.device, requires_grad=True)
    mask = torch.ones(batch_size, preset.n_tokens, dtype=torch.bool, device=bridge.device)
    sigmas = torch.full((batch_size,), 0.5, device=bridge.device)
    autocast = torch.autocast(bridge.device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    try:
        # torch.compile itself may refuse (an unsupported Python, no backend)
        bridge.compile_transformer(**compile_options(setting))
        with autocast:
            v = bridge.predict_velocity(x_t, sigmas, cond, mask)
        v.float().sum().backward()
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ValueError(f"compute.compile={str(setting).lower()}: torch.compile of the LTX transformer failed on "
                         f"this machine ({type(exc).__name__}: {first}); expected a working torch.compile (a C++ "
                         f"compiler on CPU, triton on CUDA), or set compute.compile=false") from None


def _amp_dtype(amp: str, device):
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
    if cache.preset not in (None, cfg.preset):
        raise ValueError(f"{where}: cache extracted for preset {cache.preset!r}, but preset={cfg.preset!r}")
    dims = dict(cache.dims)
    want = {"vlm_dim": preset.vlm_dim, "dino_dim": preset.dino_dim, "n_patches": preset.n_patches}
    bad = {k: (dims.get(k), v) for k, v in want.items() if dims.get(k) != v}
    if bad:
        detail = ", ".join(f"{k}={got} (expected {exp})" for k, (got, exp) in bad.items())
        raise ValueError(f"{where}: feature dims do not match the {cfg.adapter.kind!r} adapter of preset "
                         f"{cfg.preset!r}: {detail}")
    if cfg.data.encoder_key is not None and cache.encoder_key != str(cfg.data.encoder_key):
        raise ValueError(f"{where}: cache encoder key {cache.encoder_key!r} differs from "
                         f"data.encoder_key={cfg.data.encoder_key!r}; expected a cache extracted with the "
                         f"configured encoders")
    if augment is not None and cache.augmentation != augment:
        raise ValueError(f"{where}: the cache was extracted with augment={cache.augmentation!r} but "
                         f"data.augment={augment!r}; expected a train cache extracted with augment={augment!r}")


class _TrainSource:
    """One train cache of the run: its samples' views, its sampling weight, and its label in ``loss/<name>``."""

    def __init__(self, index: int, name: str, cache, groups: list, weight: float, batch_size: int):
        self.index, self.name, self.cache, self.groups, self.weight = index, name, cache, groups, weight
        self.micro_per_epoch = len(groups) // batch_size
        self.samples = None  # _Samples, once the decoder exists (setup_model)
        self._perm_epoch, self._perm = None, None

    def permutation(self, seed: int, epoch: int):
        """This cache's sample order in ``epoch``: the first cache keeps the single-cache order (seed, epoch), so a
        one-cache run is unchanged; the others draw from (seed, cache index, epoch)."""
        if self._perm_epoch != epoch:
            if self.index == 0:
                g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            else:
                from c2bridge.data.augment import derive_seed

                g = torch.Generator().manual_seed(derive_seed(seed, "mix", self.index, epoch))
            self._perm_epoch, self._perm = epoch, torch.randperm(len(self.groups), generator=g)
        return self._perm


class _MixSchedule:
    """Which train cache each micro-batch of the run comes from: a pure function of (seed, weights, micro-batch),
    so a resumed run recomputes it. ``source(m)`` = the cache index, ``rank(m)`` = how many earlier micro-batches
    that cache gave. One cache: ``source(m) = 0``, ``rank(m) = m``."""

    def __init__(self, seed: int, weights: list[float], n_micro: int):
        self.single = len(weights) == 1
        if self.single:
            return
        from c2bridge.data.augment import derive_seed

        p = np.asarray(weights, dtype=np.float64)
        rng = np.random.default_rng(derive_seed(seed, "mix-order"))
        self.sources = rng.choice(len(p), size=max(1, n_micro), p=p / p.sum())  # [n_micro]
        self.ranks = np.zeros(len(self.sources), dtype=np.int64)
        for d in range(len(p)):  # the k-th micro-batch drawn from cache d has rank k
            hit = self.sources == d
            self.ranks[hit] = np.arange(int(hit.sum()))

    def source(self, m: int) -> int:
        return 0 if self.single else int(self.sources[m])

    def rank(self, m: int) -> int:
        return m if self.single else int(self.ranks[m])

    def counts(self) -> list[int]:
        return [] if self.single else np.bincount(self.sources).tolist()


def _train_sources(cfg: TrainConfig, preset, batch_size: int) -> list[_TrainSource]:
    """The run's train caches, each checked (dims, preset, augmentation, >= one micro-batch), all from the same
    encoders: ``data.mix`` entries, or ``data.train_cache`` alone. One clear error before anything is written."""
    if not cfg.data.mix:
        entries = [{"cache": cfg.data.train_cache, "weight": 1.0, "limit": cfg.data.limit_train}]
        keys = ["data.train_cache"]
    else:
        entries = list(cfg.data.mix)
        keys = [f"data.mix[{i}].cache" for i in range(len(entries))]
    sources: list[_TrainSource] = []
    for i, (entry, key) in enumerate(zip(entries, keys)):
        cache = _open_cache(entry["cache"], key, required=True)
        _check_cache(cache, key, cfg, preset, augment=cfg.data.augment)
        groups = cache.view_groups(entry.get("limit"))
        if len(groups) < batch_size:
            raise ValueError(f"{key}={str(cache.dir)!r} has {len(groups)} samples, fewer than optim.batch_size="
                             f"{batch_size}; expected at least one full micro-batch")
        name = entry.get("name") or _dataset_name(cache) or f"cache{i}"
        sources.append(_TrainSource(i, str(name), cache, groups, float(entry["weight"]), batch_size))
    for source, key in zip(sources[1:], keys[1:]):
        _check_same_encoders(sources[0].cache, keys[0], source.cache, key)
    _distinct_names(sources)
    return sources


class _ValSet:
    """One val cache of the run: its samples (first view each) and its label in ``val_loss/<name>``."""

    def __init__(self, name: str, cache, groups: list):
        self.name, self.cache, self.groups = name, cache, groups
        self.samples = None  # _Samples, once the decoder exists (setup_model)


def _val_sets(cfg: TrainConfig, preset, train: _TrainSource) -> list[_ValSet]:
    """The run's val caches, each checked (dims, preset) and from the train caches' encoders: ``data.val_mix``
    entries, or ``data.val_cache`` alone, or none. One clear error before anything is written."""
    if cfg.data.val_mix:
        entries = list(cfg.data.val_mix)
        keys = [f"data.val_mix[{i}].cache" for i in range(len(entries))]
    elif cfg.data.val_cache is not None:
        entries, keys = [{"cache": cfg.data.val_cache, "limit": cfg.data.limit_val}], ["data.val_cache"]
    else:
        return []
    train_key = "data.train_cache" if not cfg.data.mix else "data.mix[0].cache"
    sets: list[_ValSet] = []
    for i, (entry, key) in enumerate(zip(entries, keys)):
        cache = _open_cache(entry["cache"], key, required=True)
        _check_cache(cache, key, cfg, preset, augment=None)
        _check_same_encoders(train.cache, train_key, cache, key)
        sets.append(_ValSet(str(entry.get("name") or _dataset_name(cache) or f"val{i}"), cache,
                            cache.view_groups(entry.get("limit"))))
    _distinct_names(sets)
    return sets


def _dataset_name(cache) -> str | None:
    return ((cache.manifest.get("spec") or {}).get("dataset") or {}).get("name")


def _distinct_names(items: list) -> None:
    """Two caches of one dataset (e.g. shapes + its augmented views) get distinct labels: name + position."""
    names = [s.name for s in items]
    for i, s in enumerate(items):
        if names.count(s.name) > 1:
            s.name = f"{s.name}{i}"


def _check_same_encoders(first, first_key: str, cache, key: str) -> None:
    a, b = first.encoder_key, cache.encoder_key
    if a != b:
        raise ValueError(f"{key}={str(cache.dir)!r} comes from different encoders than {first_key} (encoder keys {b} "
                         f"vs {a}); expected every train and val cache of a run extracted with the same encoders")


def _load_teacher(path: str, preset, device):
    """A frozen distillation teacher (an adapter directory), checked against the student's dims."""
    from c2bridge.adapters import load_adapter

    check_teacher_dir(path)
    teacher = load_adapter(path).to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    _check_teacher(teacher, preset, path)
    return teacher


def check_teacher_dir(path) -> None:
    """One clear error unless ``path`` is an adapter directory (``save_pretrained``: adapter_config.json with a
    known kind + model.safetensors). Reads one small JSON file; loads no weights."""
    from c2bridge._io import read_json
    from c2bridge.adapters.base import CONFIG_NAME, WEIGHTS_NAME
    from c2bridge.names import ADAPTER_KINDS

    where = f"distill.teacher={str(path)!r}"
    expected = f"expected an adapter directory written by save_pretrained ({CONFIG_NAME} + {WEIGHTS_NAME})"
    directory = Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(f"{where}: no such directory; {expected}")
    missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (directory / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{where}: {', '.join(missing)} missing; {expected}")
    try:
        kind = read_json(directory / CONFIG_NAME).get("kind")
    except (ValueError, AttributeError):
        kind = None
    if kind not in ADAPTER_KINDS:
        raise ValueError(f"{where}: {CONFIG_NAME} names no adapter kind ({kind!r}; e.g. a decoder LoRA is not a "
                         f"teacher); {expected}")


def _check_teacher(teacher, preset, path: str) -> None:
    conf = getattr(teacher, "config", {}) or {}
    want = {"vlm_dim": preset.vlm_dim, "dino_dim": preset.dino_dim, "out_dim": preset.cond_dim,
            "n_tokens": preset.n_tokens}
    bad = {k: (conf.get(k), v) for k, v in want.items() if k in conf and conf[k] != v}
    if bad:
        detail = ", ".join(f"{k}={got} (expected {exp})" for k, (got, exp) in bad.items())
        raise ValueError(f"distill.teacher={path!r}: teacher dims do not match the student: {detail}")


def _peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB (process peak RSS)


def _feature_mixup(batch: dict, rng, alpha: float) -> dict:
    """Blend each sample with a random partner of the same micro-batch (λ ~ Beta(α, α) per sample)."""
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

    def __init__(self, cache, groups: list[list[int]], cfg: TrainConfig, bridge, device, per_frame: bool = False):
        from c2bridge.encoders import collate_features

        self.per_frame = per_frame  # clips get each frame's own latents (one conditioning per frame), never the cache's

        self.cache, self.groups, self.bridge, self.device = cache, groups, bridge, device
        self.seed = cfg.seed
        self.collate = collate_features
        self.data = None
        size_mb = 4 * cache.stored_bytes / 2**20  # uint8 -> float
        if size_mb <= cfg.data.in_memory_max_mb:
            data = cache.load_all()
            if data.get("latent") is None or self._own_latents(data["target"]):
                data["latent"] = torch.cat([self._encode(data["target"][i:i + 32])
                                            for i in range(0, len(data["target"]), 32)]).cpu()
            self.data = data

    def __len__(self) -> int:
        return len(self.groups)

    def _own_latents(self, target) -> bool:
        return self.per_frame and target.ndim == 5

    def _encode(self, target):
        with torch.no_grad():
            return self.bridge.encode_latents(target.to(self.device), per_frame=self.per_frame)

    def batch(self, ids: list[int], epoch: int = 0) -> dict:
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
            if batch.get("latent") is None or self._own_latents(batch["target"]):
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
