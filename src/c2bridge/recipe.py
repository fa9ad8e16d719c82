"""The training recipe: a typed, documented config tree, loaded from YAML + dotted ``key=value`` overrides.

Resolution order (later wins):

1. the dataclass defaults below (the plan's full-preset recipe: AdamW lr 1e-4, wd 1e-4, batch 8, accumulation 4,
   50 epochs, LPIPS + 0.1·L2),
2. ``c2bridge/configs/presets/<preset>.yaml`` (the recipe defaults of the preset the config names; ``mini`` if none),
3. the user's YAML file or dict,
4. dotted overrides such as ``optim.lr=3e-4`` or ``adapter.overrides.hidden_dim=64``.

Values are coerced to the field's type (YAML reads ``1e-4`` as a string; here it becomes a float). Unknown keys and
bad values raise one ``ValueError`` that names every offending key and what was expected.

A *step* is one optimizer step = ``optim.grad_accum`` micro-batches of ``optim.batch_size`` samples.
"""
from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

from c2bridge.config import (apply_to_dataclass, coerce, get_dotted, parse_overrides, presets_dir, read_mapping,
                             resolve_budget, set_dataclass_key)
from c2bridge.names import (ADAPTER_KINDS, AUGMENTATIONS, COMPILE_MODES, DISTANCES, FLOW_TERM, LOSS_NAMES, LOSS_TERMS,
                            NAMED_LOSSES, PERCEPTUAL, PIXEL_TERMS, SCHEDULES, SIGMA_DISTRIBUTIONS, X0_WEIGHTINGS)

__all__ = ["TrainConfig", "load_config", "validate_config", "config_hash", "config_to_dict", "resolve_budget",
           "schedule_warmup_steps"]

# what only the training config names (the shared name lists live in c2bridge.names)
DISTILL_METRICS = ("mse", "cosine")
DEVICES = ("auto", "cpu", "cuda")
AMP_MODES = ("auto", "bf16", "none")
BEST_METRICS = ("val_loss",)

PRESET_CONFIG_DIR = presets_dir()
# top-level keys of a preset file that are not recipe keys: the planner's assumptions (`plan:`)
PRESET_FILE_EXTRA_KEYS = ("plan",)


@dataclass
class AdapterSection:
    kind: str = "query"  # adapter architecture: query | bottleneck | lora | perceiver | moe
    # Trainable-parameter target. A number (1e4) is a literal count. A string that names one of the preset's
    # budgets ("5m", "10m", "20m", "50m", "100m") maps through preset.budgets (so "10m" is the plan's 10M scale:
    # 1e7 params in `full`, 1e4 in `mini`). Any other string with a k/m/b suffix ("5k", "2.5m") is a literal count.
    budget: Union[float, str] = "10m"
    dropout: float = 0.0  # dropout on adapter layers (E2.3 regularization: 0.1 / 0.2); passed to build_adapter
    overrides: dict = field(default_factory=dict)  # extra build_adapter kwargs (e.g. n_layers, n_experts, top_k)


@dataclass
class DataSection:
    train_cache: Union[str, None] = None  # FeatureCache directory used for training (required at train time)
    val_cache: Union[str, None] = None  # FeatureCache directory for validation; null = no validation / best ckpt
    encoder_key: Union[str, None] = None  # expected cache key of both caches; null = accept any (dims still checked)
    # Augmentation (E2.3 C): none | color_jitter | random_crop | mixup. Encoders are frozen and features cached,
    # so augmentation happens at extraction (`extract(..., augment=KIND, views=N)`, image-level, targets moved
    # along). This names the augmentation the train cache must have been extracted with (checked against its
    # manifest); when the cache holds several views per sample, each epoch uses one view per sample, picked
    # from (seed, epoch, sample). The val cache is never augmented.
    augment: str = "none"
    # Feature-space MixUp on top (0 = off): blend random pairs within a micro-batch (vlm, dino, target pixels,
    # latents) with λ ~ Beta(α, α) per pair; vlm masks are OR-ed.
    feature_mixup_alpha: float = 0.0
    limit_train: Union[int, None] = None  # use only the first N training samples (null = all)
    limit_val: Union[int, None] = None  # use only the first N validation samples (null = all)
    in_memory_max_mb: float = 2048.0  # load a cache into memory when it is smaller than this (else read per batch)
    # A mixed training set instead of train_cache: entries {cache: DIR, weight: W > 0, name: LABEL (optional; the
    # cache's dataset by default), limit: N (optional)}. Each micro-batch comes from ONE cache, picked with
    # probability W / sum(W) (so images and clips never share a batch); every cache walks its own per-epoch
    # permutation. All caches must share one encoder key. Per-cache train losses are logged as loss/<name>.
    mix: list = field(default_factory=list)
    # A validation mix instead of val_cache: entries {cache: DIR, name: LABEL (optional; the cache's dataset by
    # default), limit: N (optional)}. Each cache is validated on its own (its batches, eval.max_batches per cache,
    # the noise reset to eval.noise_seed for each); val_loss (what early stopping and the best checkpoint read) is
    # the loss pooled over every validation sample, and with two or more caches each one's loss and terms are
    # logged as val_<term>/<name>. End-of-run sampled metrics use the first cache. One encoder key for all caches.
    val_mix: list = field(default_factory=list)


@dataclass
class OptimSection:
    lr: float = 1e-4  # peak learning rate of AdamW (must be > 0)
    weight_decay: float = 1e-4  # AdamW decoupled weight decay (E2.3: 1e-4 / 1e-3)
    betas: tuple = (0.9, 0.999)  # AdamW betas
    eps: float = 1e-8  # AdamW epsilon
    batch_size: int = 8  # samples per micro-batch (>= 1)
    grad_accum: int = 4  # micro-batches per optimizer step (>= 1); effective batch = batch_size * grad_accum
    epochs: float = 50.0  # passes over the training set; total steps = ceil(epochs * micro_batches_per_epoch / accum)
    max_steps: Union[int, None] = None  # if set, overrides epochs: exactly this many optimizer steps
    grad_clip: Union[float, None] = 1.0  # max global grad norm; null or 0 = no clipping (the norm is still logged)


@dataclass
class ScheduleSection:
    name: str = "constant"  # constant | cosine | warmup_cosine | cyclic (E2.3 B)
    # Linear warmup from 0 to optim.lr over this many steps, then the schedule. null = 1000 for warmup_cosine
    # (the plan's "1k warmup"), 0 otherwise. Allowed with every schedule.
    warmup_steps: Union[int, None] = None
    min_lr: float = 1e-6  # cosine / warmup_cosine floor at the last step (plan: 1e-4 -> 1e-6)
    cyclic_low: float = 1e-5  # cyclic: lowest lr (plan: 1e-5 <-> 1e-4)
    cyclic_high: Union[float, None] = None  # cyclic: highest lr; null = optim.lr
    cyclic_period: int = 2000  # cyclic: steps per full low -> high -> low triangle


@dataclass
class LossSection:
    # objective = c2bridge.decoder LossSpec.named(name): flow (flow matching in latent space) | lpips_l2 (the
    # plan's LPIPS + 0.1·L2) | lpips | lpips_ssim | ms_lpips
    name: str = "lpips_l2"
    weights: dict = field(default_factory=dict)  # add/override term weights, e.g. {l2: 0.1, flow: 0.5}
    perceptual: str = "lpips_vgg"  # distance behind lpips / ms_lpips terms: lpips_vgg | lpips_alex | one_minus_ssim
    # used instead of `perceptual` when its LPIPS backbone file is missing (offline machines); null = that is an
    # error (raised before any step)
    perceptual_fallback: Union[str, None] = None
    sigma: str = "shifted"  # σ sampling: uniform | logit_normal | shifted (LTXPipeline's shift) | shifted_logit_normal
    # logit-normal location / scale: location > 0 favours high σ, where the conditioning decides most of the target
    # (the mini decoder: flow-loss gap between its captions and zero conditioning 0.06 at σ=0.3, 0.76 at σ=0.8)
    logit_mean: float = 0.0
    logit_std: float = 1.0
    x0_weighting: str = "none"  # per-sample weight of pixel terms: none | one_minus_sigma
    moe_aux_weight: float = 0.01  # weight of adapter.aux_loss (MoE load balancing; 0 for other adapters)
    # Cheaper pixel terms (l2, lpips, ssim, ms_lpips: the VAE decode of the one-step x0 estimate is their cost).
    # The flow term runs on every step; the pixel terms only on the steps scheduled here. Validation always
    # evaluates the whole objective (all terms, whole frames), so val_loss means the same thing all run long.
    pixel_start: float = 0.0  # pixel terms join after this fraction of the total steps (0 = from the first step)
    pixel_every: int = 1  # after pixel_start, pixel terms on every k-th optimizer step only (1 = every step)
    # pixel terms on one random square crop of this side (pixels) per micro-batch, from (seed, micro-batch): the
    # x0 estimate is cropped in latent space (side / the VAE's spatial compression) and only the crop is decoded;
    # null = whole frames. Must be a multiple of the VAE's spatial compression and at most the image size.
    pixel_crop: Union[int, None] = None
    # clips: decode only this many consecutive latent frames (window from (seed, micro-batch)) for the pixel
    # terms, compared with the target frames they decode to; null = all frames. Images have one latent frame.
    pixel_latent_frames: Union[int, None] = None


@dataclass
class DistillSection:
    teacher: Union[str, None] = None  # teacher adapter dir (save_pretrained output); null = no distillation (8.3)
    weight: float = 1.0  # weight of the token regression loss ||student(x) - teacher(x)||
    recon_weight: float = 1.0  # weight of the reconstruction objective (loss.*); 0 = pure distillation
    metric: str = "mse"  # token regression: mse | cosine (1 - cosine similarity per token)


@dataclass
class DecoderLoraSection:
    # Joint adapter + decoder LoRA (plan 8.2; c2bridge.decoder.lora): peft LoRA of this rank on the LTX
    # transformer's attention projections, trained with the adapter. null = the decoder stays frozen (every other
    # experiment). Rank 8 on LTX-Video = 7.3M params; rank 2 on the miniature = 8,192.
    rank: Union[int, None] = None
    alpha: Union[float, None] = None  # LoRA scale numerator (scale = alpha / rank); null = rank (scale 1)
    dropout: float = 0.0  # dropout on the LoRA input
    targets: list = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])  # projection names


@dataclass
class EvalSection:
    every_steps: int = 500  # validation loss every N steps (0 = only at the end); needs data.val_cache / val_mix
    at_start: bool = True  # also validate before the first step (the curve's starting point)
    max_batches: Union[int, None] = None  # cap on validation micro-batches per eval and val cache (null = all)
    noise_seed: int = 1234  # validation σ/noise come from a generator reset to this seed at every eval
    best_metric: str = "val_loss"  # what "best" checkpoint means (lower is better)
    n_samples: int = 0  # sampled metrics at the end via c2bridge.metrics.evaluate_adapter (0 = skip)
    sample_steps: int = 20  # denoising steps for those samples
    guidance: float = 1.0  # classifier-free guidance scale for those samples
    distance: str = "lpips_alex"  # distance for sampled metrics (c2bridge.metrics.get_distance name)
    distance_fallback: Union[str, None] = None  # used when `distance`'s LPIPS backbone is missing; null = error


@dataclass
class CheckpointSection:
    every_steps: int = 500  # write a checkpoint every N steps (0 = only at the end)
    keep_last: int = 2  # keep the K most recent step checkpoints (>= 1); best is kept separately
    save_best: bool = True  # keep checkpoints/best/ = the adapter with the lowest eval.best_metric


@dataclass
class StopSection:
    # Early stopping at a plateau of the validation loss (needs data.val_cache/val_mix; counted in validations, every
    # eval.every_steps, plus the one at step 0 with eval.at_start): stop after this many validations in a row
    # without a relative improvement > min_delta over the best so far (c2bridge.metrics.detect_plateau, online).
    # null = off: train to the max steps. The best checkpoint stays what evaluation uses.
    patience: Union[int, None] = None
    min_delta: float = 0.0  # relative val-loss improvement that counts (0.01 = 1 %); 0 = any decrease
    min_fraction: float = 0.0  # never stop before this fraction of the max steps


@dataclass
class MemorySection:
    # recompute the frozen LTX transformer's blocks (and the VAE decoder's, where it supports it) in backward
    # instead of keeping their activations: less GPU memory, ~1 more transformer forward per step
    gradient_checkpointing: bool = False


@dataclass
class ComputeSection:
    # torch.compile the frozen LTX transformer's training forward (sampling stays eager): false (eager) | exact
    # (inductor with the ops that round differently left to ATen: bit-identical to eager on CPU in float32) | fast
    # (= true: every inductor lowering; the last digits differ, and training moves by about the seed spread).
    # c2bridge.train.compute says more. The compile happens in setup, before the run dir is touched: a machine where
    # torch.compile fails is one clear error. Part of the trial key. Compiled graphs are cached across runs in
    # C2BRIDGE_COMPILE_CACHE / TORCHINDUCTOR_CACHE_DIR (default: ~/.cache/c2bridge/inductor).
    compile: Union[bool, str] = False


@dataclass
class LogSection:
    progress_bar: bool = True  # tqdm progress bar on stderr
    every_steps: int = 1  # train records in metrics.jsonl every N steps
    tensorboard: bool = False  # also write TensorBoard events to RUN_DIR/tensorboard (needs `tensorboard`)
    wandb: bool = False  # also log to Weights & Biases (needs `wandb`)
    wandb_project: str = "c2bridge"  # W&B project name
    # Tracker run labels (not part of the config hash): study / experiment / arm name the W&B and TensorBoard run
    # ("experiment/arm", grouped by study); name / group override. The study runner sets them for every trial.
    labels: dict = field(default_factory=dict)


@dataclass
class DebugSection:
    nan_at_step: Union[int, None] = None  # poison the inputs of this step with NaN (tests the divergence path)
    fail_at_step: Union[int, None] = None  # raise an error at this step (tests the failure path)
    sleep_per_step: float = 0.0  # seconds to sleep after each step (lets tests kill a run mid-way)


@dataclass
class TrainConfig:
    preset: str = "mini"  # world: full | mini | tiny (fixes dims, resolution, budget names)
    seed: int = 0  # seeds adapter init, data order, σ/noise, mixup, dropout
    device: str = "auto"  # auto (cuda if available) | cpu | cuda
    amp: str = "auto"  # bf16 autocast: auto (bf16 on cuda, off on cpu) | bf16 | none
    # CPU threads for this run (torch.set_num_threads, restored afterwards); null = torch's default. Small models
    # on a shared CPU often run several times faster with 1 (less contention); part of the hash (sums may differ).
    threads: Union[int, None] = None
    blowup_factor: float = 100.0  # diverged if train loss > blowup_factor * running min (after blowup_after steps)
    blowup_after: int = 10  # steps before the blow-up test starts (NaN/inf is checked from step 0)
    adapter: AdapterSection = field(default_factory=AdapterSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    loss: LossSection = field(default_factory=LossSection)
    distill: DistillSection = field(default_factory=DistillSection)
    decoder_lora: DecoderLoraSection = field(default_factory=DecoderLoraSection)
    eval: EvalSection = field(default_factory=EvalSection)
    stop: StopSection = field(default_factory=StopSection)
    memory: MemorySection = field(default_factory=MemorySection)
    compute: ComputeSection = field(default_factory=ComputeSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    log: LogSection = field(default_factory=LogSection)
    debug: DebugSection = field(default_factory=DebugSection)


# ----------------------------------------------------------------------------------------------------------- loading


def load_config(
    source: "str | os.PathLike | Mapping | TrainConfig | None" = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
) -> TrainConfig:
    """YAML path / dict / TrainConfig (+ dotted overrides) -> validated TrainConfig (a new object).

    ``overrides``: ``["optim.lr=3e-4", "adapter.kind=moe"]`` or ``{"optim.lr": 3e-4}``.
    """
    from c2bridge._io import to_plain

    if source is None:
        user: dict = {}
    elif isinstance(source, TrainConfig):
        user = to_plain(source)
    elif isinstance(source, Mapping):
        user = copy.deepcopy(dict(source))
    else:
        user = read_mapping(source)
    override_items = parse_overrides(overrides)

    # the preset picks the recipe defaults, so find it first (override > user file > default)
    preset = override_items.get("preset", user.get("preset", TrainConfig.preset))
    from c2bridge.presets import PRESETS

    if preset not in PRESETS:
        raise ValueError(f"config key 'preset': unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    errors: list[str] = []
    cfg = TrainConfig()
    preset_file = PRESET_CONFIG_DIR / f"{preset}.yaml"
    if preset_file.is_file():
        recipe = {k: v for k, v in read_mapping(preset_file).items() if k not in PRESET_FILE_EXTRA_KEYS}
        apply_to_dataclass(cfg, recipe, errors, origin=f"{preset_file.name}: ")
    apply_to_dataclass(cfg, user, errors)
    for dotted, raw in override_items.items():
        set_dataclass_key(cfg, dotted, raw, errors)
    for term, w in list(cfg.loss.weights.items()):  # YAML reads 1e-1 as a string
        try:
            cfg.loss.weights[term] = coerce(w, float, f"loss.weights.{term}")
        except ValueError as exc:
            errors.append(str(exc))
    if errors:
        raise ValueError("invalid training config: " + "; ".join(errors))
    if cfg.compute.compile == "fast":  # one spelling per behaviour, so one trial key
        cfg.compute.compile = True
    validate_config(cfg)
    return cfg


def validate_config(cfg: TrainConfig) -> None:
    """Value checks that need no files: one ValueError listing every bad key and what it accepts."""
    errors: list[str] = []

    def need(ok: bool, key: str, msg: str) -> None:
        if not ok:
            errors.append(f"{key}={_show(get_dotted(cfg, key))}: {msg}")

    from c2bridge.presets import PRESETS

    need(cfg.preset in PRESETS, "preset", f"expected one of {sorted(PRESETS)}")
    need(cfg.seed >= 0, "seed", "expected an integer >= 0")
    need(cfg.device in DEVICES, "device", f"expected one of {list(DEVICES)}")
    need(cfg.amp in AMP_MODES, "amp", f"expected one of {list(AMP_MODES)}")
    need(cfg.threads is None or cfg.threads >= 1, "threads", "expected null or an integer >= 1")
    need(cfg.blowup_factor > 1, "blowup_factor", "expected a number > 1")
    need(cfg.blowup_after >= 0, "blowup_after", "expected an integer >= 0")
    # adapter
    need(cfg.adapter.kind in ADAPTER_KINDS, "adapter.kind", f"expected one of {list(ADAPTER_KINDS)}")
    if cfg.preset in PRESETS:
        try:
            resolve_budget(cfg.adapter.budget, PRESETS[cfg.preset])
        except ValueError as exc:
            errors.append(f"adapter.budget={_show(cfg.adapter.budget)}: {exc}")
    need(0.0 <= cfg.adapter.dropout < 1.0, "adapter.dropout", "expected 0 <= dropout < 1")
    # data
    need(cfg.data.augment in AUGMENTATIONS, "data.augment", f"expected one of {list(AUGMENTATIONS)}")
    need(cfg.data.feature_mixup_alpha >= 0, "data.feature_mixup_alpha", "expected a number >= 0 (0 = off)")
    need(cfg.data.limit_train is None or cfg.data.limit_train >= 1, "data.limit_train", "expected null or >= 1")
    need(cfg.data.limit_val is None or cfg.data.limit_val >= 1, "data.limit_val", "expected null or >= 1")
    need(cfg.data.in_memory_max_mb >= 0, "data.in_memory_max_mb", "expected a number >= 0")
    errors += mix_errors(cfg.data)
    # optim
    o = cfg.optim
    need(math.isfinite(o.lr) and o.lr > 0, "optim.lr", "expected a learning rate > 0")
    need(o.weight_decay >= 0, "optim.weight_decay", "expected a number >= 0")
    need(len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas), "optim.betas", "expected two numbers in [0, 1)")
    need(o.eps > 0, "optim.eps", "expected a number > 0")
    need(o.batch_size >= 1, "optim.batch_size", "expected an integer >= 1")
    need(o.grad_accum >= 1, "optim.grad_accum", "expected an integer >= 1")
    need(o.epochs > 0, "optim.epochs", "expected a number > 0")
    need(o.max_steps is None or o.max_steps >= 1, "optim.max_steps", "expected null or an integer >= 1")
    need(o.grad_clip is None or o.grad_clip >= 0, "optim.grad_clip", "expected null or a number >= 0")
    # schedule
    s = cfg.schedule
    need(s.name in SCHEDULES, "schedule.name", f"expected one of {list(SCHEDULES)}")
    need(s.warmup_steps is None or s.warmup_steps >= 0, "schedule.warmup_steps", "expected null or an integer >= 0")
    lr_ok = math.isfinite(o.lr) and o.lr > 0
    need(s.min_lr >= 0 and (not lr_ok or s.min_lr <= o.lr), "schedule.min_lr",
         f"expected 0 <= min_lr <= optim.lr ({o.lr:g})")
    need(s.cyclic_low > 0, "schedule.cyclic_low", "expected a number > 0")
    high = s.cyclic_high if s.cyclic_high is not None else o.lr
    need(not lr_ok or high >= s.cyclic_low, "schedule.cyclic_high",
         f"expected >= schedule.cyclic_low ({s.cyclic_low:g}); null means optim.lr")
    need(s.cyclic_period >= 2, "schedule.cyclic_period", "expected an integer >= 2")
    # loss
    need(cfg.loss.name in LOSS_NAMES, "loss.name", f"expected one of {list(LOSS_NAMES)}")
    need(cfg.loss.perceptual in PERCEPTUAL, "loss.perceptual", f"expected one of {list(PERCEPTUAL)}")
    need(cfg.loss.perceptual_fallback is None or cfg.loss.perceptual_fallback in PERCEPTUAL,
         "loss.perceptual_fallback", f"expected null or one of {list(PERCEPTUAL)}")
    need(cfg.loss.sigma in SIGMA_DISTRIBUTIONS, "loss.sigma", f"expected one of {list(SIGMA_DISTRIBUTIONS)}")
    need(cfg.loss.x0_weighting in X0_WEIGHTINGS, "loss.x0_weighting", f"expected one of {list(X0_WEIGHTINGS)}")
    need(cfg.loss.logit_std > 0, "loss.logit_std", "expected a number > 0")
    need(cfg.loss.moe_aux_weight >= 0, "loss.moe_aux_weight", "expected a number >= 0")
    L = cfg.loss
    need(0.0 <= L.pixel_start < 1.0, "loss.pixel_start", "expected a fraction of the total steps in [0, 1)")
    need(not isinstance(L.pixel_every, bool) and L.pixel_every >= 1, "loss.pixel_every", "expected an integer >= 1")
    need(L.pixel_crop is None or (not isinstance(L.pixel_crop, bool) and L.pixel_crop >= 1), "loss.pixel_crop",
         "expected null (whole frames) or a crop side in pixels >= 1")
    need(L.pixel_latent_frames is None or (not isinstance(L.pixel_latent_frames, bool) and L.pixel_latent_frames >= 1),
         "loss.pixel_latent_frames", "expected null (all frames) or a number of latent frames >= 1")
    if (L.pixel_start > 0 or L.pixel_every > 1) and L.name in LOSS_NAMES:
        terms = {k: v for k, v in {**NAMED_LOSSES[L.name], **L.weights}.items() if isinstance(v, (int, float))}
        if not terms.get(FLOW_TERM, 0) > 0:
            errors.append(f"loss.pixel_start={L.pixel_start:g} / loss.pixel_every={L.pixel_every}: the steps without "
                          f"pixel terms train on the flow term alone, but loss {L.name!r} has no flow weight; expected "
                          f"loss.name=flow (e.g. with loss.weights.lpips) or loss.weights.flow > 0")
        if not any(terms.get(t, 0) > 0 for t in PIXEL_TERMS):
            errors.append(f"loss.pixel_start={L.pixel_start:g} / loss.pixel_every={L.pixel_every}: loss {L.name!r} has "
                          f"no pixel term to schedule; expected a pixel weight (loss.weights.lpips, l2, ssim, "
                          f"ms_lpips) or the defaults pixel_start=0, pixel_every=1")
    for term, w in cfg.loss.weights.items():
        if term not in LOSS_TERMS:
            errors.append(f"loss.weights.{term}: unknown loss term; expected any of {list(LOSS_TERMS)}")
        elif not isinstance(w, (int, float)) or isinstance(w, bool) or not (w >= 0 and math.isfinite(w)):
            errors.append(f"loss.weights.{term}={_show(w)}: expected a number >= 0")
    # distill
    d = cfg.distill
    need(d.metric in DISTILL_METRICS, "distill.metric", f"expected one of {list(DISTILL_METRICS)}")
    need(d.weight >= 0, "distill.weight", "expected a number >= 0")
    need(d.recon_weight >= 0, "distill.recon_weight", "expected a number >= 0")
    if d.teacher is None:
        need(d.recon_weight > 0, "distill.recon_weight", "expected > 0 without a distill.teacher (nothing to train on)")
    else:
        need(d.weight > 0 or d.recon_weight > 0, "distill.weight", "distill.weight and recon_weight cannot both be 0")
    # decoder LoRA (the rank's upper bound is the decoder's projection width: checked when the decoder is loaded)
    lo = cfg.decoder_lora
    need(lo.rank is None or (not isinstance(lo.rank, bool) and lo.rank >= 1), "decoder_lora.rank",
         "expected null (no decoder LoRA) or an integer >= 1")
    need(lo.alpha is None or lo.alpha > 0, "decoder_lora.alpha", "expected null (= rank) or a number > 0")
    need(0.0 <= lo.dropout < 1.0, "decoder_lora.dropout", "expected 0 <= dropout < 1")
    need(bool(lo.targets) and all(isinstance(t, str) and t for t in lo.targets), "decoder_lora.targets",
         "expected a non-empty list of projection names, e.g. [to_q, to_k, to_v, to_out.0]")
    # eval / checkpoint / log / debug
    e = cfg.eval
    need(e.every_steps >= 0, "eval.every_steps", "expected an integer >= 0 (0 = only at the end)")
    need(e.max_batches is None or e.max_batches >= 1, "eval.max_batches", "expected null or an integer >= 1")
    need(e.best_metric in BEST_METRICS, "eval.best_metric", f"expected one of {list(BEST_METRICS)}")
    need(e.n_samples >= 0, "eval.n_samples", "expected an integer >= 0")
    need(e.sample_steps >= 1, "eval.sample_steps", "expected an integer >= 1")
    need(e.guidance >= 1.0, "eval.guidance", "expected a guidance scale >= 1")
    need(e.distance in DISTANCES, "eval.distance", f"expected one of {list(DISTANCES)}")
    need(e.distance_fallback is None or e.distance_fallback in DISTANCES, "eval.distance_fallback",
         f"expected null or one of {list(DISTANCES)}")
    st = cfg.stop
    need(st.patience is None or (not isinstance(st.patience, bool) and st.patience >= 1), "stop.patience",
         "expected null (no early stopping) or a number of validations >= 1")
    need(0.0 <= st.min_delta < 1.0, "stop.min_delta", "expected a relative improvement in [0, 1)")
    need(0.0 <= st.min_fraction <= 1.0, "stop.min_fraction", "expected a fraction of the max steps in [0, 1]")
    need(isinstance(cfg.compute.compile, bool) or cfg.compute.compile in COMPILE_MODES, "compute.compile",
         f"expected false, true or one of {list(COMPILE_MODES)}")
    need(cfg.checkpoint.every_steps >= 0, "checkpoint.every_steps", "expected an integer >= 0 (0 = only at the end)")
    need(cfg.checkpoint.keep_last >= 1, "checkpoint.keep_last", "expected an integer >= 1")
    need(cfg.log.every_steps >= 1, "log.every_steps", "expected an integer >= 1")
    need(cfg.debug.sleep_per_step >= 0, "debug.sleep_per_step", "expected a number >= 0")
    if errors:
        raise ValueError("invalid training config: " + "; ".join(errors))


MIX_KEYS = ("cache", "weight", "name", "limit")
VAL_MIX_KEYS = ("cache", "name", "limit")


def mix_errors(data: DataSection) -> list[str]:
    """What is wrong with ``data.mix`` and ``data.val_mix`` (empty lists: nothing): entries, weights > 0 (train
    mix), unique names, not together with the single cache they replace."""
    errors = _cache_list_errors(data.mix, "data.mix", data.train_cache, "data.train_cache", MIX_KEYS,
                                "a mixed training set lists every train cache in data.mix")
    errors += _cache_list_errors(data.val_mix, "data.val_mix", data.val_cache, "data.val_cache", VAL_MIX_KEYS,
                                 "a validation mix lists every val cache in data.val_mix")
    if data.val_mix and data.limit_val is not None:
        errors.append(f"data.limit_val={_show(data.limit_val)}: limits data.val_cache; with data.val_mix expected "
                      f"a limit per entry (data.val_mix[i].limit)")
    return errors


def _cache_list_errors(entries: list, key: str, single: Any, single_key: str, allowed: tuple, why: str) -> list[str]:
    """``data.mix`` / ``data.val_mix``: a list of cache entries (``weight`` required where ``allowed`` has it)."""
    if not entries:
        return []
    errors = []
    if single is not None:
        errors.append(f"{key} and {single_key}={_show(single)} are both set; expected one of them ({why})")
    weighted = "weight" in allowed
    required = ("cache", "weight") if weighted else ("cache",)
    shape = "{cache: DIR, weight: W}" if weighted else "{cache: DIR}"
    names = []
    for i, entry in enumerate(entries):
        where = f"{key}[{i}]"
        if not isinstance(entry, Mapping) or any(k not in entry for k in required):
            errors.append(f"{where}={_show(entry)}: expected a mapping {shape} (name, limit optional)")
            continue
        unknown = sorted(set(entry) - set(allowed))
        if unknown:
            errors.append(f"{where}: unknown keys {unknown}; expected any of {list(allowed)}")
        if weighted:
            w = entry["weight"]
            try:
                w = float(w)
            except (TypeError, ValueError):
                w = float("nan")
            if isinstance(entry["weight"], bool) or not (math.isfinite(w) and w > 0):
                errors.append(f"{where}.weight={_show(entry['weight'])}: expected a sampling weight > 0")
        limit = entry.get("limit")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            errors.append(f"{where}.limit={_show(limit)}: expected null or an integer >= 1")
        if entry.get("name") is not None:
            names.append(str(entry["name"]))
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        errors.append(f"{key} names {dupes} repeat; expected one name per cache")
    return errors


def config_hash(cfg: TrainConfig) -> str:
    """Stable hash of everything that can change the numbers (the `log` section is left out)."""
    from c2bridge._io import stable_hash, to_plain

    plain = config_to_dict(cfg)
    plain.pop("log", None)
    return stable_hash(plain)


def config_to_dict(cfg: TrainConfig) -> dict:
    """The plain form of a config (what trial keys hash). An unused decoder LoRA section is left out, so the keys
    of configs that never name it stay what they were before the section existed; so are the compute levers
    (stop, memory, compute, the loss's pixel schedule) while at their defaults."""
    from c2bridge._io import to_plain

    plain = to_plain(cfg)
    if cfg.decoder_lora.rank is None:
        plain.pop("decoder_lora", None)
    for key in ("mix", "val_mix"):  # likewise a single-cache run's data section
        if not getattr(cfg.data, key):
            plain.get("data", {}).pop(key, None)
    # likewise the compute levers, while off (their defaults change no number)
    for section, defaults in ((plain, {"stop": _plain(StopSection()), "memory": _plain(MemorySection()),
                                       "compute": _plain(ComputeSection())}),
                              (plain.get("loss", {}), PIXEL_SCHEDULE_DEFAULTS)):
        for key, default in defaults.items():
            if section.get(key) == default:
                section.pop(key, None)
    return plain


PIXEL_SCHEDULE_DEFAULTS = {"pixel_start": 0.0, "pixel_every": 1, "pixel_crop": None, "pixel_latent_frames": None}


def _plain(section) -> dict:
    from c2bridge._io import to_plain

    return to_plain(section)


def schedule_warmup_steps(cfg: TrainConfig) -> int:
    """The effective warmup length (null -> 1000 for warmup_cosine, else 0)."""
    w = cfg.schedule.warmup_steps
    if w is None:
        return 1000 if cfg.schedule.name == "warmup_cosine" else 0
    return int(w)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
