"""``c2bridge mini build``: train the mini world (VAE, text-to-image transformer + caption embedder, DINOv2,
Qwen2.5-VL).

Stages (each seeded; budgets are step counts, so the same command gives the same weights):
1. ``vae``: AutoencoderKLLTXVideo on shapes images in [-1, 1], trained on the posterior mode with a
   foreground-weighted MSE + a tiny KL; then its ``latents_mean/std`` buffers are set from data.
2. ``transformer``: LTXVideoTransformer3DModel + CaptionEmbedder as a 1-frame text-to-image flow-matching model,
   trained with exactly the conventions LTXPipeline samples with (normalized + packed latents, timestep = sigma*1000,
   target noise - x0, the pipeline's rope_interpolation_scale), 10% null conditioning, noised caption embeddings.
3. ``dinov2``: Dinov2Model pre-trained with linear heads (per-patch pixel colour/kind maps from the patch tokens,
   colour/kind presence and shape count from CLS) so its patch tokens carry position and shape.
4. ``vlm``: Qwen2_5_VLForConditionalGeneration trained by caption language modelling: it reads the image (through
   the mini processor and chat template, as ``QwenVLEncoder`` feeds it) and predicts the caption's words (size,
   colour, kind, coarse place of each shape). Then linear probes on held-out images say what its hidden states
   carry, against the untrained VLM and the mini DINOv2.
5. ``eval``: the shipped (fp16) weights reloaded and sampled through ``LTXPipeline`` from caption conditioning on
   val and heldout shapes: spatial IoU and colour accuracy; VAE reconstruction quality; DINOv2 probe accuracy.

``build(out, cfg, stages=("vlm",))`` runs only the named training stages and writes only their weights (the others
in ``out`` are kept; their report sections too): the VLM is used by no other stage, so it can be rebuilt alone.

Everything is written with ``save_pretrained`` layouts under ``out`` plus ``build_report.json`` and ``samples.png``.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from c2bridge._io import atomic_path, atomic_write_json
from c2bridge.data import shapes as S
from c2bridge.decoder.ltx import LTXBridge, rope_interpolation_scale, transformer_velocity
from c2bridge.decoder.objective import flow_target, noisy_latents
from c2bridge.metrics.evaluate import save_image_grid
from c2bridge.metrics.spatial import spatial_iou as _spatial_iou
from c2bridge.mini import models as M
from c2bridge.mini.assets import default_assets_dir, load_mini_components
from c2bridge.mini.captions import CaptionEmbedder
from c2bridge.train.schedules import set_lr, warmup_cosine_lr


@dataclass
class BuildConfig:
    seed: int = 0  # every stage is seeded from this
    threads: int = 1  # torch CPU threads (fixed so results repeat; 1 is robust on a shared, oversubscribed CPU)
    cond_dim: int = 64  # caption embedding width = transformer caption_channels (the mini preset's cond_dim)
    # stage 1: VAE
    vae_steps: int = 700  # optimizer steps
    vae_batch: int = 32
    vae_lr: float = 1e-3
    vae_fg_weight: float = 4.0  # extra MSE weight on foreground pixels (shapes are the small part of the image)
    vae_kl_weight: float = 1e-6
    latent_stats_images: int = 2048  # images used to set latents_mean / latents_std
    # stage 2: transformer + captions
    transformer_steps: int = 3600
    transformer_batch: int = 64
    transformer_lr: float = 1e-3
    transformer_images: int = 16384  # train images encoded once (cached latents) for this stage
    null_prob: float = 0.1  # fraction of null (zero) conditioning
    caption_noise: float = 0.1  # std of Gaussian noise added to caption embeddings (smooth response to cond)
    zero_pad_tokens: int = 13  # half the batches get 1..this many extra unmasked zero tokens (adapters emit 16
    #                            tokens for <= 3 shapes: the decoder learns that zero tokens mean nothing)
    ema_decay: float = 0.998  # EMA of transformer + captions weights; the EMA weights ship
    # stage 3: DINOv2
    dinov2_steps: int = 400
    dinov2_batch: int = 128
    dinov2_lr: float = 2e-3
    # stage 4: Qwen2.5-VL (caption language modelling)
    vlm_steps: int = 1200
    vlm_batch: int = 64
    vlm_lr: float = 3e-3
    vlm_probe_images: int = 2048  # single-shape train images the probes are fitted on (+ a quarter of that held out)
    # eval
    eval_images: int = 256  # val and heldout images sampled through LTXPipeline
    eval_steps: int = 20  # LTXPipeline num_inference_steps
    max_seconds_per_stage: float | None = None  # optional wall-clock cap per training stage (breaks determinism)
    checkpoint_every: int = 200  # steps between resumable stage checkpoints (in OUT/.build-work/, removed at the end)
    log_every: int = 50

    @classmethod
    def quick(cls, **overrides) -> "BuildConfig":
        """Seconds, not minutes: proves the command end to end (weights mean nothing)."""
        base = dict(vae_steps=3, vae_batch=8, latent_stats_images=32, transformer_steps=3, transformer_batch=8,
                    transformer_images=64, dinov2_steps=3, dinov2_batch=8, vlm_steps=3, vlm_batch=8,
                    vlm_probe_images=64, eval_images=8, eval_steps=2, log_every=1)
        return cls(**{**base, **overrides})


# ---------------------------------------------------------------------------------------------------------------
# helpers


def _lr_at(step: int, total: int, base: float, warmup: int = 50) -> float:
    """Warmup (at most a tenth of the stage), then cosine to 5% of ``base``; the last step stays one short of it."""
    return warmup_cosine_lr(step, total, base, min(warmup, max(1, total // 10)), min_fraction=0.05,
                            land_on_last_step=False)


def _train_images(cfg: BuildConfig, start: int, count: int) -> dict:
    return S.generate_batch("train", start, count, image_size=M.IMAGE_SIZE, seed=cfg.seed)


class _Timer:
    def __init__(self, cap, offset: float = 0.0):
        self.t0, self.cap = time.perf_counter() - offset, cap

    def elapsed(self):
        return time.perf_counter() - self.t0

    def over(self):
        return self.cap is not None and self.elapsed() > self.cap


class _Checkpoint:
    """A stage's resumable state (tensors, numbers, lists; loaded with ``weights_only=True``), keyed by the config.

    An interrupted build started again with the same config resumes each stage from its last checkpoint and gives
    the same weights as an uninterrupted one (data is index-based, RNG states are restored).
    """

    def __init__(self, cfg: "BuildConfig", stage: str):
        from c2bridge._io import stable_hash

        skip = {"eval_images", "eval_steps", "log_every", "max_seconds_per_stage", "checkpoint_every"}
        key = stable_hash({k: v for k, v in dataclasses.asdict(cfg).items() if k not in skip})
        self.every = cfg.checkpoint_every
        self.path = _WORK_DIR / f"{stage}-{key}.pt" if _WORK_DIR is not None else None

    def load(self) -> dict | None:
        if self.path is None or not self.path.is_file():
            return None
        state = torch.load(self.path, weights_only=True)
        _log(f"resuming {self.path.name} at step {state['step']}")
        return state

    def due(self, steps_done: int, total: int) -> bool:
        return self.path is not None and self.every > 0 and steps_done % self.every == 0 and steps_done < total

    def save(self, state: dict) -> None:
        if self.path is not None:
            with atomic_path(self.path) as tmp:
                torch.save(state, tmp)


_WORK_DIR: Path | None = None  # set by build(): OUT/.build-work


def _log(msg: str) -> None:
    print(f"[mini build {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _round_fp16_(module: nn.Module) -> None:
    """Round params and buffers to fp16-representable values: later stages see exactly the shipped weights."""
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            if t.is_floating_point():
                t.copy_(t.half().float())


# ---------------------------------------------------------------------------------------------------------------
# stage 1: VAE


def vae_encode(vae, images: torch.Tensor) -> torch.Tensor:
    """``[B,3,H,W]`` in [0,1] -> raw posterior-mode latents ``[B,C,1,h,w]``."""
    return vae.encode(images[:, :, None] * 2 - 1).latent_dist.mode()


def vae_decode(vae, latents: torch.Tensor) -> torch.Tensor:
    """raw latents ``[B,C,1,h,w]`` -> ``[B,3,H,W]`` in [0,1]."""
    return ((vae.decode(latents).sample[:, :, 0] + 1) / 2).clamp(0, 1)


def normalize_latents(vae, raw: torch.Tensor) -> torch.Tensor:
    from diffusers import LTXPipeline

    return LTXPipeline._normalize_latents(raw, vae.latents_mean, vae.latents_std, vae.config.scaling_factor)


def train_vae(cfg: BuildConfig, report: dict):
    torch.manual_seed(cfg.seed)
    vae = M.build_vae().train()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    ckpt, curve, steps_done, offset = _Checkpoint(cfg, "vae"), [], 0, 0.0
    if (state := ckpt.load()) is not None:
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        curve, steps_done, offset = state["curve"], state["step"], state["seconds"]
    timer = _Timer(cfg.max_seconds_per_stage, offset)
    for step in range(steps_done, cfg.vae_steps):
        if timer.over():
            break
        batch = _train_images(cfg, 10_000_000 + step * cfg.vae_batch, cfg.vae_batch)  # own index range
        x = batch["image"][:, :, None] * 2 - 1  # [B, 3, 1, 32, 32] in [-1, 1]
        weight = 1 + cfg.vae_fg_weight * batch["mask"][:, None, None].float()
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.mode()).sample
        mse = (weight * (recon - x) ** 2).mean()
        kl = posterior.kl().mean()
        loss = mse + cfg.vae_kl_weight * kl
        set_lr(opt, _lr_at(step, cfg.vae_steps, cfg.vae_lr))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        steps_done = step + 1
        if step % cfg.log_every == 0 or step == cfg.vae_steps - 1:
            psnr = -10 * math.log10(max(((recon.detach() - x) ** 2).mean().item() / 4, 1e-10))  # [0,1] scale
            curve.append({"step": step, "loss": loss.item(), "psnr": psnr, "seconds": timer.elapsed()})
            _log(f"vae step {step} loss {loss.item():.5f} psnr {psnr:.2f} ({timer.elapsed():.0f}s)")
        if ckpt.due(steps_done, cfg.vae_steps):
            ckpt.save({"step": steps_done, "model": vae.state_dict(), "opt": opt.state_dict(), "curve": curve,
                       "seconds": timer.elapsed()})
    vae.eval().requires_grad_(False)
    _round_fp16_(vae)
    # latents_mean / latents_std from data (per channel), fp16-representable like everything shipped
    with torch.no_grad():
        raw = torch.cat([vae_encode(vae, _train_images(cfg, 20_000_000 + i, 256)["image"])
                         for i in range(0, cfg.latent_stats_images, 256)])  # [N, C, 1, h, w]
        mean = raw.mean(dim=(0, 2, 3, 4))
        std = raw.std(dim=(0, 2, 3, 4)).clamp_min(1e-4)
        vae.latents_mean.copy_(mean.half().float())
        vae.latents_std.copy_(std.half().float())
    report["vae"] = {"steps": steps_done, "seconds": timer.elapsed(), "curve": curve,
                     "latents_mean": vae.latents_mean.tolist(), "latents_std": vae.latents_std.tolist()}
    return vae


# ---------------------------------------------------------------------------------------------------------------
# stage 2: transformer + caption embedder (flow matching, LTXPipeline conventions)


def encode_dataset(vae, cfg: BuildConfig, split: str, start: int, count: int, chunk: int = 512) -> dict:
    """Normalized latents ``[N, C, 1, h, w]`` + caption ids ``[N, L]`` of a range of a split."""
    latents, ids = [], []
    with torch.no_grad():
        for s in range(start, start + count, chunk):
            batch = S.generate_batch(split, s, min(chunk, start + count - s), image_size=M.IMAGE_SIZE, seed=cfg.seed)
            latents.append(normalize_latents(vae, vae_encode(vae, batch["image"])))
            ids.append(batch["caption_ids"])
    return {"latents": torch.cat(latents), "caption_ids": torch.cat(ids)}


def flow_matching_loss(transformer, vae, latents, cond, cond_mask, generator, sigmas=None):
    """The LTX flow-matching loss exactly as LTXPipeline will sample: ``latents`` are normalized ``[B,C,F,h,w]``.

    x_t = (1 - sigma) x0 + sigma * noise, timestep = sigma * 1000, the model predicts noise - x0.
    """
    from diffusers import LTXPipeline

    B, C, Fr, h, w = latents.shape
    x0 = LTXPipeline._pack_latents(latents, 1, 1)  # [B, F*h*w, C] (transformer patch sizes are 1)
    noise = torch.randn(x0.shape, generator=generator)
    if sigmas is None:  # logit-normal shifted to high noise (where the layout is decided), mixed with uniform
        logit = torch.sigmoid(torch.randn(B, generator=generator) + 0.5)
        uniform = torch.rand(B, generator=generator)
        pick = torch.rand(B, generator=generator) < 0.5
        sigmas = torch.where(pick, logit, uniform)
    x_t = noisy_latents(x0, noise, sigmas)
    pred = transformer_velocity(transformer, x_t, sigmas, cond, cond_mask, (Fr, h, w), rope_interpolation_scale(vae))
    return F.mse_loss(pred, flow_target(x0, noise))


class _EMA:
    def __init__(self, modules, decay):
        self.decay = decay
        self.params = [p for m in modules for p in m.parameters()]
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self, step):
        d = min(self.decay, (1 + step) / (10 + step))
        for s, p in zip(self.shadow, self.params):
            s.lerp_(p.detach(), 1 - d)

    @torch.no_grad()
    def copies(self, modules):
        import copy

        clones = [copy.deepcopy(m).eval() for m in modules]
        for s, p in zip(self.shadow, [p for m in clones for p in m.parameters()]):
            p.copy_(s)
        return clones

    @torch.no_grad()
    def copy_to_params(self):
        for s, p in zip(self.shadow, self.params):
            p.copy_(s)


def train_transformer(cfg: BuildConfig, vae, report: dict, callback=None, callback_every: int = 0):
    """``callback(step, transformer, captions)`` (EMA weights, copies) every ``callback_every`` steps, if given."""
    t_enc = time.perf_counter()
    data = encode_dataset(vae, cfg, "train", 0, cfg.transformer_images)
    encode_seconds = time.perf_counter() - t_enc
    _log(f"encoded {len(data['latents'])} train latents in {encode_seconds:.0f}s")
    torch.manual_seed(cfg.seed + 1)
    transformer = M.build_transformer(cfg.cond_dim).train()
    captions = CaptionEmbedder(cond_dim=cfg.cond_dim).train()
    params = list(transformer.parameters()) + list(captions.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.transformer_lr, weight_decay=0.01)
    ema = _EMA([transformer, captions], cfg.ema_decay)
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    ckpt, curve, steps_done, offset = _Checkpoint(cfg, "transformer"), [], 0, 0.0
    if (state := ckpt.load()) is not None:
        transformer.load_state_dict(state["transformer"])
        captions.load_state_dict(state["captions"])
        opt.load_state_dict(state["opt"])
        ema.shadow = [t.clone() for t in state["ema"]]
        gen.set_state(state["gen"])
        curve, steps_done, offset = state["curve"], state["step"], state["seconds"]
    timer = _Timer(cfg.max_seconds_per_stage, offset)
    n = len(data["latents"])
    for step in range(steps_done, cfg.transformer_steps):
        if timer.over():
            break
        idx = torch.randint(0, n, (cfg.transformer_batch,), generator=gen)
        cond, mask = captions(data["caption_ids"][idx])  # [B, K, cond_dim], [B, K]
        cond = cond + cfg.caption_noise * torch.randn(cond.shape, generator=gen) * mask[..., None]
        null = torch.rand(cfg.transformer_batch, generator=gen) < cfg.null_prob
        cond = torch.where(null[:, None, None], torch.zeros_like(cond), cond)
        mask = mask | null[:, None]
        if cfg.zero_pad_tokens and torch.rand(1, generator=gen).item() < 0.5:
            k = int(torch.randint(1, cfg.zero_pad_tokens + 1, (1,), generator=gen))
            cond = torch.cat([cond, cond.new_zeros(len(cond), k, cond.shape[2])], 1)  # [B, 3 + k, cond_dim]
            mask = torch.cat([mask, mask.new_ones(len(mask), k)], 1)
        loss = flow_matching_loss(transformer, vae, data["latents"][idx], cond, mask, gen)
        set_lr(opt, _lr_at(step, cfg.transformer_steps, cfg.transformer_lr, warmup=100))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.update(step)
        steps_done = step + 1
        if callback is not None and callback_every and steps_done % callback_every == 0:
            callback(steps_done, *ema.copies([transformer, captions]))
        if step % cfg.log_every == 0 or step == cfg.transformer_steps - 1:
            curve.append({"step": step, "loss": loss.item(), "seconds": timer.elapsed()})
            _log(f"transformer step {step} loss {loss.item():.4f} ({timer.elapsed():.0f}s)")
        if ckpt.due(steps_done, cfg.transformer_steps):
            ckpt.save({"step": steps_done, "transformer": transformer.state_dict(), "captions": captions.state_dict(),
                       "opt": opt.state_dict(), "ema": list(ema.shadow), "gen": gen.get_state(), "curve": curve,
                       "seconds": timer.elapsed()})
    ema.copy_to_params()
    for m in (transformer, captions):
        m.eval().requires_grad_(False)
        _round_fp16_(m)
    report["transformer"] = {"steps": steps_done, "seconds": timer.elapsed(), "encode_seconds": encode_seconds,
                             "curve": curve, "num_params": sum(p.numel() for p in transformer.parameters()),
                             "caption_params": sum(p.numel() for p in captions.parameters())}
    return transformer, captions


# ---------------------------------------------------------------------------------------------------------------
# stage 3: DINOv2 pre-training with linear heads


def dino_pixels(images: torch.Tensor) -> torch.Tensor:
    """[B,3,32,32] in [0,1] -> the mini DINOv2's input (ImageNet normalization, like the real one)."""
    mean = torch.tensor(M.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(M.IMAGENET_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def _dense_targets(batch: dict, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel colour class (0 = background, 1.. colours) and kind class, grouped per patch: [B, P, patch*patch]."""
    sm = batch["shape_masks"]  # [B, K, H, W]
    colour = torch.zeros(sm.shape[0], *sm.shape[2:], dtype=torch.long)
    kind = torch.zeros_like(colour)
    for k in range(sm.shape[1]):
        c = batch["colour_ids"][:, k].view(-1, 1, 1)
        colour = torch.where(sm[:, k], c + 1, colour)
        kind = torch.where(sm[:, k], batch["kind_ids"][:, k].view(-1, 1, 1) + 1, kind)

    def per_patch(x):  # [B, H, W] -> [B, P, patch*patch] in row-major patch order (as Dinov2 embeds)
        B, H, W = x.shape
        x = x.view(B, H // patch, patch, W // patch, patch).permute(0, 1, 3, 2, 4)
        return x.reshape(B, (H // patch) * (W // patch), patch * patch)

    return per_patch(colour), per_patch(kind)


class DinoHeads(nn.Module):
    """Linear probes used only for pre-training (not shipped)."""

    def __init__(self, hidden: int, patch: int):
        super().__init__()
        self.pp = patch * patch
        self.colour = nn.Linear(hidden, self.pp * (len(S.COLOURS) + 1))
        self.kind = nn.Linear(hidden, self.pp * (len(S.KINDS) + 1))
        self.presence = nn.Linear(hidden, len(S.COLOURS) + len(S.KINDS))
        self.count = nn.Linear(hidden, S.MAX_SHAPES)

    def forward(self, tokens):  # [B, 1+P, hidden]
        cls, patches = tokens[:, 0], tokens[:, 1:]
        B, P, _ = patches.shape
        return (self.colour(patches).view(B, P, self.pp, -1), self.kind(patches).view(B, P, self.pp, -1),
                self.presence(cls), self.count(cls))


def _dino_losses(dinov2, heads, batch):
    out = dinov2(pixel_values=dino_pixels(batch["image"])).last_hidden_state
    colour_logits, kind_logits, presence_logits, count_logits = heads(out)
    colour_t, kind_t = _dense_targets(batch, M.DINOV2_CONFIG["patch_size"])
    valid = batch["colour_ids"] >= 0  # [B, K]
    presence = torch.zeros(len(valid), len(S.COLOURS) + len(S.KINDS))
    for k in range(S.MAX_SHAPES):
        rows = valid[:, k].nonzero().flatten()
        presence[rows, batch["colour_ids"][rows, k]] = 1
        presence[rows, len(S.COLOURS) + batch["kind_ids"][rows, k]] = 1
    count_t = batch["num_shapes"] - 1
    loss = (F.cross_entropy(colour_logits.flatten(0, 2), colour_t.flatten())
            + F.cross_entropy(kind_logits.flatten(0, 2), kind_t.flatten())
            + F.binary_cross_entropy_with_logits(presence_logits, presence)
            + F.cross_entropy(count_logits, count_t))
    acc = {
        "pixel_colour_acc": (colour_logits.argmax(-1) == colour_t).float().mean().item(),
        "pixel_kind_acc": (kind_logits.argmax(-1) == kind_t).float().mean().item(),
        "presence_acc": ((presence_logits > 0).float() == presence).all(1).float().mean().item(),
        "count_acc": (count_logits.argmax(-1) == count_t).float().mean().item(),
    }
    return loss, acc


def train_dinov2(cfg: BuildConfig, report: dict):
    torch.manual_seed(cfg.seed + 3)
    dinov2 = M.build_dinov2().train()
    heads = DinoHeads(M.DINOV2_CONFIG["hidden_size"], M.DINOV2_CONFIG["patch_size"])
    params = list(dinov2.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.dinov2_lr, weight_decay=0.01)
    ckpt, curve, steps_done, offset = _Checkpoint(cfg, "dinov2"), [], 0, 0.0
    if (state := ckpt.load()) is not None:
        dinov2.load_state_dict(state["dinov2"])
        heads.load_state_dict(state["heads"])
        opt.load_state_dict(state["opt"])
        curve, steps_done, offset = state["curve"], state["step"], state["seconds"]
    timer = _Timer(cfg.max_seconds_per_stage, offset)
    for step in range(steps_done, cfg.dinov2_steps):
        if timer.over():
            break
        batch = _train_images(cfg, 30_000_000 + step * cfg.dinov2_batch, cfg.dinov2_batch)
        loss, acc = _dino_losses(dinov2, heads, batch)
        set_lr(opt, _lr_at(step, cfg.dinov2_steps, cfg.dinov2_lr))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        steps_done = step + 1
        if step % cfg.log_every == 0 or step == cfg.dinov2_steps - 1:
            curve.append({"step": step, "loss": loss.item(), "seconds": timer.elapsed(), **acc})
            _log(f"dinov2 step {step} loss {loss.item():.4f} {acc} ({timer.elapsed():.0f}s)")
        if ckpt.due(steps_done, cfg.dinov2_steps):
            ckpt.save({"step": steps_done, "dinov2": dinov2.state_dict(), "heads": heads.state_dict(),
                       "opt": opt.state_dict(), "curve": curve, "seconds": timer.elapsed()})
    dinov2.eval().requires_grad_(False)
    heads.eval()
    _round_fp16_(dinov2)
    with torch.no_grad():
        val = S.generate_batch("val", 0, max(cfg.eval_images, 8), image_size=M.IMAGE_SIZE, seed=cfg.seed)
        _, val_acc = _dino_losses(dinov2, heads, val)
    report["dinov2"] = {"steps": steps_done, "seconds": timer.elapsed(), "curve": curve, "val_probe": val_acc,
                        "num_params": sum(p.numel() for p in dinov2.parameters())}
    _log(f"dinov2 val probe {val_acc}")
    return dinov2


# ---------------------------------------------------------------------------------------------------------------
# stage 4: the mini Qwen2.5-VL, trained by caption language modelling

VLM_DIR = "qwen_vl"  # its save_pretrained directory in the assets dir
VLM_WORDS = {  # the caption words the build scores the VLM on naming (teacher-forced next-word accuracy)
    "colour": set(S.COLOURS), "kind": set(S.KINDS), "size": {"small", "medium", "large"},
    "place": {"top", "bottom", "middle", "left", "right", "centre"},
}


def vlm_encoder(model):
    """``model`` behind the ``QwenVLEncoder`` the mini preset uses (mini processor, 32 px, all tokens, last layer):
    the build trains and probes through exactly the inputs the feature cache will see."""
    from c2bridge.encoders.build import mini_vlm_encoder

    return mini_vlm_encoder(model)


def vlm_lm_batch(encoder, images: torch.Tensor, captions: list[str]) -> dict:
    """Processor inputs for ``prompt + caption words + <|im_end|>`` with ``labels`` on the answer only."""
    from c2bridge.mini.captions import vlm_caption_text

    prompt = encoder.chat_text(False)
    end = encoder.processor.tokenizer.convert_ids_to_tokens(encoder.model.config.text_config.eos_token_id)
    base = encoder.build_inputs(images)  # the prompt as the encoder feeds it (pixels resized, patchified)
    texts = [prompt + vlm_caption_text(c) + end for c in captions]
    n_image = int((base["input_ids"][0] == encoder.model.config.image_token_id).sum())
    expanded = [t.replace("<|image_pad|>", "<|image_pad|>" * n_image, 1) for t in texts]
    text = encoder.processor.tokenizer(expanded, return_tensors="pt", padding=True, add_special_tokens=False)
    prompt_len = base["input_ids"].shape[1]
    if not torch.equal(text["input_ids"][:, :prompt_len], base["input_ids"]):
        raise RuntimeError("the caption-LM inputs do not start with the encoder's prompt tokens")
    labels = text["input_ids"].clone()
    labels[:, :prompt_len] = -100
    labels[text["attention_mask"] == 0] = -100
    out = {**base, "input_ids": text["input_ids"], "attention_mask": text["attention_mask"], "labels": labels}
    for key, value in base.items():  # other per-token inputs (the processor's mm_token_type_ids): text = 0
        if key not in ("input_ids", "attention_mask") and value.ndim == 2 and value.shape[1] == prompt_len:
            out[key] = F.pad(value, (0, labels.shape[1] - prompt_len))
    return out


def train_vlm(cfg: BuildConfig, report: dict):
    from c2bridge.mini.models import build_vlm

    model = build_vlm(cfg.seed + 4)
    encoder = vlm_encoder(model)  # freezes the model: training re-enables it below
    model.train().requires_grad_(True)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.vlm_lr, weight_decay=0.01)
    ckpt, curve, steps_done, offset = _Checkpoint(cfg, "vlm"), [], 0, 0.0
    if (state := ckpt.load()) is not None:
        model.load_state_dict(state["vlm"])
        opt.load_state_dict(state["opt"])
        curve, steps_done, offset = state["curve"], state["step"], state["seconds"]
    timer = _Timer(cfg.max_seconds_per_stage, offset)
    for step in range(steps_done, cfg.vlm_steps):
        if timer.over():
            break
        batch = _train_images(cfg, 40_000_000 + step * cfg.vlm_batch, cfg.vlm_batch)  # own index range
        loss = model(**vlm_lm_batch(encoder, batch["image"], batch["caption"])).loss
        set_lr(opt, _lr_at(step, cfg.vlm_steps, cfg.vlm_lr))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        steps_done = step + 1
        if step % cfg.log_every == 0 or step == cfg.vlm_steps - 1:
            curve.append({"step": step, "loss": loss.item(), "seconds": timer.elapsed()})
            _log(f"vlm step {step} loss {loss.item():.4f} ({timer.elapsed():.0f}s)")
        if ckpt.due(steps_done, cfg.vlm_steps):
            ckpt.save({"step": steps_done, "vlm": model.state_dict(), "opt": opt.state_dict(), "curve": curve,
                       "seconds": timer.elapsed()})
    model.eval().requires_grad_(False)
    _round_fp16_(model)
    report["vlm"] = {"steps": steps_done, "seconds": timer.elapsed(), "curve": curve,
                     "num_params": sum(p.numel() for p in model.parameters())}
    return model


def _single_shape_batch(cfg: BuildConfig, split: str, count: int) -> dict:
    return S.generate_batch(split, 0, count, image_size=M.IMAGE_SIZE, seed=cfg.seed,
                            config=S.ShapesConfig(min_shapes=1, max_shapes=1))


def _features(encode, images: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([encode(images[s:s + chunk]) for s in range(0, len(images), chunk)]).double()


class RidgeProbe:
    """Linear probes in closed form on one set of features: standardized features (train statistics), ridge
    ``lambda`` picked per target on the last quarter of the training rows, refitted on all of them. One SVD per
    fit serves every target and ``lambda``."""

    LAMBDAS = (1.0, 10.0, 100.0, 1000.0)

    def __init__(self, train_x: torch.Tensor):
        self.mu, self.sd = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
        x = (train_x - self.mu) / self.sd
        self.cut = len(x) * 3 // 4
        self.full, self.part = torch.linalg.svd(x, full_matrices=False), torch.linalg.svd(x[:self.cut],
                                                                                             full_matrices=False)
        self.held_out = x[self.cut:]

    @staticmethod
    def _solve(svd, y, lam):  # W = V diag(s / (s^2 + lam)) U^T (y - mean y); bias = mean y (features centred)
        u, s, vh = svd
        return vh.T @ ((s / (s ** 2 + lam))[:, None] * (u.T @ (y - y.mean(0))))

    def predict(self, train_y: torch.Tensor, test_x: torch.Tensor) -> torch.Tensor:
        y_part, y_rest = train_y[:self.cut], train_y[self.cut:]
        errors = [((self.held_out @ self._solve(self.part, y_part, lam) + y_part.mean(0) - y_rest) ** 2).mean().item()
                  for lam in self.LAMBDAS]
        lam = self.LAMBDAS[min(range(len(errors)), key=errors.__getitem__)]
        return ((test_x - self.mu) / self.sd) @ self._solve(self.full, train_y, lam) + train_y.mean(0)


def probe_scores(train_x, test_x, train: dict, test: dict) -> dict:
    """What a linear probe reads from features of single-shape images (held-out ``test``): colour and kind
    (accuracy; chance 1/6, 1/3) and the exact centre (R^2 of x and y; rms error in pixels)."""
    probe, out = RidgeProbe(train_x), {}
    for name, n_classes in (("colour", len(S.COLOURS)), ("kind", len(S.KINDS))):
        target = train[f"{name}_ids"][:, 0]
        pred = probe.predict(F.one_hot(target, n_classes).double(), test_x).argmax(1)
        out[f"{name}_accuracy"] = (pred == test[f"{name}_ids"][:, 0]).double().mean().item()
    pred = probe.predict(train["centers"][:, 0].double(), test_x)  # [N, 2] fractions of the side
    truth = test["centers"][:, 0].double()
    r2 = 1 - ((pred - truth) ** 2).sum(0) / ((truth - truth.mean(0)) ** 2).sum(0)
    out["x_r2"], out["y_r2"] = r2[0].item(), r2[1].item()
    out["centre_rms_px"] = (((pred - truth) ** 2).sum(1).mean().sqrt() * M.IMAGE_SIZE).item()
    return out


def naming_accuracy(encoder, batch: dict) -> dict:
    """Teacher-forced: how often the VLM's most likely next word is the caption's word, per kind of word."""
    inputs = vlm_lm_batch(encoder, batch["image"], batch["caption"])
    labels = inputs.pop("labels")
    with torch.no_grad():
        logits = encoder.model(**inputs).logits[:, :-1]  # position t predicts token t+1
    target, pred = labels[:, 1:], logits.argmax(-1)
    words = encoder.processor.tokenizer.convert_ids_to_tokens(target.clamp_min(0).flatten().tolist())
    words = torch.tensor([[w in group for w in words] for group in VLM_WORDS.values()]).view(
        len(VLM_WORDS), *target.shape)
    return {f"{name}_words": (pred == target)[words[i] & (target >= 0)].double().mean().item()
            for i, name in enumerate(VLM_WORDS)}


def probe_vlm(cfg: BuildConfig, model, dinov2=None) -> dict:
    """Linear probes on single-shape images (fitted on train, scored on val) for the trained VLM, the untrained one
    (same class and config, the seeded init) and, if given, the mini DINOv2; plus the trained VLM's naming."""
    from c2bridge.mini.models import build_vlm

    n_test = max(cfg.vlm_probe_images // 4, 8)
    train, test = _single_shape_batch(cfg, "train", cfg.vlm_probe_images), _single_shape_batch(cfg, "val", n_test)
    encoders = {"vlm": vlm_encoder(model), "untrained_vlm": vlm_encoder(build_vlm())}
    encode = {name: (lambda x, e=e: e(x)[0]) for name, e in encoders.items()}  # [B, T, vlm_dim] (T fixed)
    if dinov2 is not None:
        encode["dinov2"] = lambda x: dinov2(pixel_values=dino_pixels(x)).last_hidden_state  # [B, 65, 64]
    probes = {}
    for name, f in encode.items():
        tokens_train, tokens_test = _features(f, train["image"]), _features(f, test["image"])  # [N, T, D]
        probes[name] = {"tokens": probe_scores(tokens_train.flatten(1), tokens_test.flatten(1), train, test),
                        "mean": probe_scores(tokens_train.mean(1), tokens_test.mean(1), train, test)}
    result = {"train_images": len(train["image"]), "test_images": len(test["image"]), "split": "val",
              "features": {"tokens": "every token the encoder returns, flattened (what an adapter reads)",
                           "mean": "the mean over those tokens (no token layout to read positions from)"},
              "probes": probes,
              "naming": naming_accuracy(encoders["vlm"], _single_shape_batch(cfg, "val", n_test))}
    _log(f"vlm probes {probes}; naming {result['naming']}")
    return result


# ---------------------------------------------------------------------------------------------------------------
# eval


def spatial_iou(pictures: torch.Tensor, gt_masks: torch.Tensor) -> torch.Tensor:
    """Per-image mask IoU against the shapes world's known background (``c2bridge.metrics.spatial``): [B] ."""
    return _spatial_iou(pictures, gt_masks, S.BACKGROUND_RGB)["mask_iou"]


def colour_correct(pictures: torch.Tensor, batch: dict) -> torch.Tensor:
    """Per GT shape: is the mean colour of the picture over the shape's visible pixels nearest its GT colour?

    Returns a flat bool tensor over all shapes with >= 4 visible pixels.
    """
    palette = torch.tensor(list(S.COLOURS.values()))  # [6, 3]
    out = []
    for b in range(len(pictures)):
        for k in range(int(batch["num_shapes"][b])):
            sm = batch["shape_masks"][b, k]
            if sm.sum() < 4:
                continue
            mean = pictures[b][:, sm].mean(1)
            out.append(int((palette - mean).norm(dim=1).argmin()) == int(batch["colour_ids"][b, k]))
    return torch.tensor(out, dtype=torch.bool)


def sample_chunks(bridge: LTXBridge, cond: torch.Tensor, mask: torch.Tensor, steps: int, seed: int,
                  chunk: int = 128) -> torch.Tensor:
    """Images ``[B,3,32,32]`` in [0,1] drawn by ``LTXBridge.sample`` (LTXPipeline), ``chunk`` at a time, chunk ``k``
    from seed ``seed + k * chunk``."""
    return torch.cat([bridge.sample(cond[s:s + chunk], mask[s:s + chunk], steps=steps, seed=seed + s)
                      for s in range(0, len(cond), chunk)])


def evaluate(components: dict, cfg: BuildConfig, report: dict) -> dict:
    vae, captions = components["vae"], components["captions"]
    bridge = LTXBridge(components["transformer"], vae, components["scheduler"], captions, image_size=M.IMAGE_SIZE)
    results, grids = {}, []
    for split in ("val", "heldout"):
        batch = S.generate_batch(split, 0, cfg.eval_images, image_size=M.IMAGE_SIZE, seed=cfg.seed)
        with torch.no_grad():
            recon = vae_decode(vae, vae_encode(vae, batch["image"]))
            cond, mask = captions(batch["caption_ids"])
            null_cond, null_mask = CaptionEmbedder.null(len(cond), cond.shape[1], cond.shape[2])
            sampled = sample_chunks(bridge, cond, mask, cfg.eval_steps, cfg.seed + 7)
            nulls = sample_chunks(bridge, null_cond[:16], null_mask[:16], cfg.eval_steps, cfg.seed + 9)
        iou = spatial_iou(sampled, batch["mask"])
        colour = colour_correct(sampled, batch)
        results[split] = {
            "caption_iou": iou.mean().item(),
            "caption_iou_std": iou.std().item() if len(iou) > 1 else 0.0,
            "colour_accuracy": colour.float().mean().item() if len(colour) else float("nan"),
            "vae_recon_iou": spatial_iou(recon, batch["mask"]).mean().item(),
            "vae_recon_psnr": (-10 * torch.log10(((recon - batch["image"]) ** 2).mean((1, 2, 3)))).mean().item(),
            "vae_recon_colour_accuracy": colour_correct(recon, batch).float().mean().item(),
            "null_iou": spatial_iou(nulls, batch["mask"][:16]).mean().item(),
            "n_images": len(iou),
            "steps": cfg.eval_steps,
        }
        _log(f"eval {split}: {results[split]}")
        n = min(16, len(iou))
        grids += [batch["image"][:n], recon[:n], sampled[:n]]
    report["eval"] = results
    return {"grids": grids}


# ---------------------------------------------------------------------------------------------------------------
# the whole build


STAGES = ("vae", "transformer", "dinov2", "vlm")  # training stages, in build order


def _save_components(out: Path, modules: dict) -> None:
    """fp16 safetensors, save_pretrained layouts, for the parts in ``modules`` (``vae``, ``transformer``,
    ``captions``, ``dinov2``, ``vlm``); written to a temp sibling dir first, then moved into place."""
    from transformers import BitImageProcessor

    out.mkdir(parents=True, exist_ok=True)
    import copy
    import shutil
    import tempfile

    staging = Path(tempfile.mkdtemp(prefix=".mini-build-", dir=out))
    parts = []
    try:
        if "vae" in modules:
            copy.deepcopy(modules["vae"]).half().save_pretrained(staging / "vae", safe_serialization=True)
            parts.append("vae")
        if "transformer" in modules:
            copy.deepcopy(modules["transformer"]).half().save_pretrained(staging / "transformer",
                                                                         safe_serialization=True)
            M.build_scheduler().save_pretrained(staging / "scheduler")
            modules["captions"].save_pretrained(staging / "captions")
            parts += ["transformer", "scheduler", "captions"]
        if "dinov2" in modules:
            copy.deepcopy(modules["dinov2"]).half().save_pretrained(staging / "dinov2", safe_serialization=True)
            BitImageProcessor(do_resize=True, size={"height": M.IMAGE_SIZE, "width": M.IMAGE_SIZE},
                              do_center_crop=False, do_rescale=True, do_normalize=True,
                              image_mean=list(M.IMAGENET_MEAN), image_std=list(M.IMAGENET_STD)
                              ).save_pretrained(staging / "dinov2")
            parts.append("dinov2")
        if "vlm" in modules:
            from transformers.utils import logging as hf_logging

            enabled = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()  # no "Writing model shards" bar for a 130 kB file
            try:
                copy.deepcopy(modules["vlm"]).half().save_pretrained(staging / VLM_DIR, safe_serialization=True)
            finally:
                if enabled:
                    hf_logging.enable_progress_bar()
            parts.append(VLM_DIR)
        for part in parts:
            target = out / part
            if target.exists():
                shutil.rmtree(target)
            (staging / part).rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def build(out: str | Path | None = None, cfg: BuildConfig | None = None, stages=STAGES) -> dict:
    """Train ``stages`` (default: all) and write their weights to ``out`` (default: the package's assets).

    A subset keeps what ``out`` already holds for the other stages (weights and report sections); the decoder
    evaluation runs when any decoder stage is rebuilt. Stages that need an earlier one (the transformer is trained
    on the VAE's latents) need it in ``stages`` too."""
    cfg = cfg or BuildConfig()
    stages = tuple(stages)
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise ValueError(f"unknown mini build stage(s) {unknown or '(none)'}; expected some of {list(STAGES)}")
    if "transformer" in stages and "vae" not in stages:
        raise ValueError("the transformer stage trains on the VAE's latents: build 'vae' with it")
    out = Path(out) if out is not None else default_assets_dir()
    torch.set_num_threads(cfg.threads)
    torch.set_flush_denormal(True)  # tiny weights/activations as denormals are many times slower on CPU
    try:
        return _build(out, cfg, stages)
    finally:
        torch.set_flush_denormal(False)


def _stage(cfg: BuildConfig, name: str, report: dict, run, build_modules) -> dict:
    """``run()`` -> dict of trained modules, or load the finished stage (weights + report) from the work dir."""
    done = _Checkpoint(cfg, f"{name}-done")
    if (state := done.load()) is not None:
        modules = build_modules()
        for key, module in modules.items():
            module.load_state_dict(state[key])
            module.eval().requires_grad_(False)
        report[name] = state["report"]
        return modules
    modules = run()
    done.save({"step": -1, "report": report[name], **{k: m.state_dict() for k, m in modules.items()}})
    return modules


def _previous_report(out: Path) -> dict:
    import json

    try:
        return json.loads((out / "build_report.json").read_text())
    except (OSError, ValueError):
        return {}


def _build(out: Path, cfg: BuildConfig, stages: tuple) -> dict:
    global _WORK_DIR
    import shutil

    from c2bridge.mini.models import build_vlm

    t0 = time.perf_counter()
    everything = set(stages) == set(STAGES)
    report: dict = {} if everything else _previous_report(out)
    config = dataclasses.asdict(cfg)
    if everything:
        report["config"] = config
    else:  # only the rebuilt stages' settings change (a stage's settings are the keys named after it)
        report["config"] = {**report.get("config", {}), "seed": cfg.seed, "threads": cfg.threads,
                            **{k: v for k, v in config.items() if k.split("_")[0] in stages}}
    report["torch"] = torch.__version__
    modules: dict = {}
    _WORK_DIR = out / ".build-work"
    _WORK_DIR.mkdir(parents=True, exist_ok=True)
    try:
        if "vae" in stages:
            modules["vae"] = _stage(cfg, "vae", report, lambda: {"vae": train_vae(cfg, report)},
                                    lambda: {"vae": M.build_vae()})["vae"]
        if "transformer" in stages:
            modules.update(_stage(cfg, "transformer", report,
                                  lambda: dict(zip(("transformer", "captions"),
                                                   train_transformer(cfg, modules["vae"], report))),
                                  lambda: {"transformer": M.build_transformer(cfg.cond_dim),
                                           "captions": CaptionEmbedder(cond_dim=cfg.cond_dim)}))
        if "dinov2" in stages:
            modules["dinov2"] = _stage(cfg, "dinov2", report, lambda: {"dinov2": train_dinov2(cfg, report)},
                                       lambda: {"dinov2": M.build_dinov2()})["dinov2"]
        if "vlm" in stages:
            modules["vlm"] = _stage(cfg, "vlm", report, lambda: {"vlm": train_vlm(cfg, report)},
                                    lambda: {"vlm": build_vlm()})["vlm"]
    finally:
        _WORK_DIR = None
    _save_components(out, modules)
    shutil.rmtree(out / ".build-work", ignore_errors=True)
    if "vlm" in stages:  # what ships, reloaded; the DINOv2 it is compared with is the one next to it
        from c2bridge.mini.assets import load_mini_vlm_model

        dinov2 = modules.get("dinov2")
        for assets in (out, default_assets_dir()):  # else the one in out, else the shipped one
            if dinov2 is None and (assets / "dinov2" / "config.json").is_file():
                from transformers import Dinov2Model

                dinov2 = Dinov2Model.from_pretrained(assets / "dinov2", dtype=torch.float32).eval()
        report["vlm"]["probe"] = probe_vlm(cfg, load_mini_vlm_model(out), dinov2)
    extras = None
    if {"vae", "transformer"} & set(stages):
        extras = evaluate(load_mini_components(out), cfg, report)  # evaluate exactly what ships
    if everything:
        report["seconds_total"] = time.perf_counter() - t0
    else:  # seconds_total stays the full build's
        report["stages_rebuilt"], report["seconds_rebuilt"] = list(stages), time.perf_counter() - t0
    report["shipped_bytes"] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()
                                  and p.name not in ("build_report.json", "samples.png"))
    if extras is not None:
        save_image_grid(extras["grids"], out / "samples.png", scale=3)
    atomic_write_json(out / "build_report.json", report)
    seconds = report["seconds_total"] if everything else report["seconds_rebuilt"]
    _log(f"done in {seconds:.0f}s; shipped {report['shipped_bytes'] / 1e6:.2f} MB -> {out}")
    return report
