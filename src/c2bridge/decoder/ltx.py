"""The frozen LTX-Video decoder, as the adapter sees it.

``LTXBridge`` holds diffusers' ``LTXVideoTransformer3DModel``, ``AutoencoderKLLTXVideo`` and
``FlowMatchEulerDiscreteScheduler``, frozen. The adapter's output goes in as the text-encoder hidden states
(``encoder_hidden_states`` / ``prompt_embeds``, width ``caption_channels`` = ``cond_dim``) with an attention mask;
sequence length is free (77 tokens need no padding to 128: the mask becomes an additive bias).

Training (``training_loss``) and sampling (``sample``) share LTXPipeline's own latent helpers
(``_pack_latents``, ``_unpack_latents``, ``_normalize_latents``, ``_denormalize_latents``), its timestep scale
(σ·1000), its ``rope_interpolation_scale`` and its shift (``calculate_shift``), so what the adapter is trained
against is what ``LTXPipeline`` samples from. Sampling *is* ``LTXPipeline`` (no hand-written sampler).

Worlds: ``from_preset("tiny")`` (random, diffusers-test sizes), ``"mini"`` (the shipped miniature decoder,
``c2bridge mini build``), ``"full"`` (``Lightricks/LTX-Video``, HF cache or a local dir).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from c2bridge.decoder.objective import (FLOW_TERM, LossSpec, PixelRegion, flow_target, noisy_latents, pixel_losses,
                                        random_pixel_region, sample_sigmas, x0_weights)
from c2bridge.presets import FullPreset, get_preset

FULL_MODEL_ID = FullPreset.decoder_model_id  # "Lightricks/LTX-Video"
FULL_FETCH_COMMAND = "hf download {id} --include 'transformer/*' 'vae/*' 'scheduler/*'"
FRAME_RATE = 25  # LTXPipeline's default frame_rate: sets the temporal rope_interpolation_scale


def rope_interpolation_scale(vae: nn.Module, frame_rate: int = FRAME_RATE) -> tuple[float, float, float]:
    """What LTXPipeline passes to the transformer (pipeline_ltx.py, step 6): the VAE's compression over the frame
    rate in time, its spatial compression in height and width."""
    spatial = int(vae.spatial_compression_ratio)
    return (int(vae.temporal_compression_ratio) / frame_rate, spatial, spatial)


def transformer_velocity(transformer: nn.Module, packed_latents: torch.Tensor, sigmas: torch.Tensor,
                         cond: torch.Tensor, cond_mask: torch.Tensor, latent_fhw: tuple[int, int, int],
                         rope_interpolation_scale: tuple[float, float, float],
                         num_train_timesteps: int = 1000) -> torch.Tensor:
    """``LTXVideoTransformer3DModel`` called exactly as ``LTXPipeline`` calls it: packed latents ``[B, S, C]``,
    timestep = σ·num_train_timesteps in float32, sizes in patched latent units, the pipeline's
    ``rope_interpolation_scale``. -> packed velocity ``[B, S, C]``. Shared by ``LTXBridge`` (frozen decoder, the
    adapter's objective) and the mini build (which trains the transformer)."""
    f, h, w = latent_fhw
    return transformer(
        hidden_states=packed_latents,
        encoder_hidden_states=cond,
        # float32 like the pipeline's scheduler timesteps (bf16 would round σ·1000 to steps of 4-8)
        timestep=sigmas.float() * num_train_timesteps,
        encoder_attention_mask=cond_mask,  # 1 = real token; the transformer turns it into an additive bias
        num_frames=f,
        height=h,
        width=w,
        rope_interpolation_scale=rope_interpolation_scale,
        return_dict=False,
    )[0]


def _tiny_components(cond_dim: int, seed: int) -> tuple[nn.Module, nn.Module, Any]:
    """The diffusers test-suite tiny config of the real classes (random weights; plumbing only)."""
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel

    torch.manual_seed(seed)  # diffusers models initialise from the global RNG
    transformer = LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=4,
        attention_head_dim=8, cross_attention_dim=32, num_layers=1, caption_channels=cond_dim,
    )
    vae = AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=8,
        block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False), upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=False, patch_size=1, patch_size_t=1,
        encoder_causal=True, decoder_causal=False,
    )
    vae.use_framewise_encoding = False
    vae.use_framewise_decoding = False
    # LTX-Video's scheduler config (dynamic, resolution-dependent shift), so the shift code path is exercised
    scheduler = FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05, base_image_seq_len=1024, max_image_seq_len=4096,
    )
    return transformer, vae, scheduler


def _unpack_mini(components: Any) -> tuple[Any, Any, Any, Any]:
    """``load_mini_components()`` result (a dict or an object with attributes) -> (transformer, vae, scheduler,
    captions)."""
    get = (lambda k: components.get(k)) if isinstance(components, dict) else (lambda k: getattr(components, k, None))
    transformer, vae, scheduler = get("transformer"), get("vae"), get("scheduler")
    if transformer is None or vae is None or scheduler is None:
        raise ValueError("c2bridge.mini.load_mini_components() must provide transformer, vae and scheduler")
    return transformer, vae, scheduler, get("captions")


# ---- the presets' decoder factories (``Preset.decoder_factory``): preset -> (transformer, vae, scheduler, captions)


def random_tiny_decoder(preset, *, seed: int = 0, path=None, dtype=None) -> tuple:
    """``tiny``: the diffusers test-suite config with random weights (``seed``)."""
    return (*_tiny_components(preset.cond_dim, seed), None)


def load_mini_decoder(preset, *, seed: int = 0, path=None, dtype=None) -> tuple:
    """``mini``: the shipped miniature decoder and its caption embedder (``c2bridge mini build``)."""
    return _unpack_mini(_load_mini())


def load_hub_decoder(preset, *, seed: int = 0, path=None, dtype=None) -> tuple:
    """``full``: LTX-Video from ``path`` (a hub id or local dir; default ``Lightricks/LTX-Video``)."""
    return (*_load_full(path or FULL_MODEL_ID, dtype), None)


class LTXBridge:
    """Frozen LTX-Video decoder: encode targets, the adapter's training loss, and sampling via LTXPipeline."""

    def __init__(
        self,
        transformer: nn.Module,
        vae: nn.Module,
        scheduler: Any,
        captions: nn.Module | None = None,
        *,
        n_tokens: int = 77,  # conditioning tokens of null_cond (the adapter's output length)
        image_size: int | None = None,  # default sample height/width (None -> 16 latent pixels)
        default_steps: int = 50,  # sampling steps when sample(steps=None)
        decode_timestep: float = 0.0,  # VAE timestep for timestep-conditioned VAEs (LTXPipeline's default 0.0)
        autocast_dtype: torch.dtype | None = None,  # e.g. torch.bfloat16: autocast forward passes on CUDA
        gradient_checkpointing: bool = False,  # recompute transformer/VAE activations in backward (GPU memory)
        preset: str | None = None,  # the world it came from (for reports)
    ):
        self.transformer = transformer
        self.vae = vae
        self.scheduler = scheduler
        self.captions = captions
        for module in (transformer, vae, captions):
            if module is not None:
                module.eval()
                module.requires_grad_(False)  # frozen: gradients reach only the conditioning
        self.n_tokens = int(n_tokens)
        self.default_steps = int(default_steps)
        self.decode_timestep = float(decode_timestep)
        self.autocast_dtype = autocast_dtype
        self.preset = preset
        self.spatial_ratio = int(vae.spatial_compression_ratio)
        self.temporal_ratio = int(vae.temporal_compression_ratio)
        self.patch_size = int(transformer.config.patch_size)
        self.patch_size_t = int(transformer.config.patch_size_t)
        self.image_size = int(image_size) if image_size else 16 * self.spatial_ratio
        if self.transformer.config.in_channels != self.latent_channels * self.patch_size**2 * self.patch_size_t:
            raise ValueError(
                f"transformer in_channels {self.transformer.config.in_channels} does not match VAE latent_channels "
                f"{self.latent_channels} × patch {self.patch_size}²×{self.patch_size_t}"
            )
        self._pipeline = None
        self._compiled_transformer = None  # compile_transformer(): the training forward's compiled module
        if gradient_checkpointing:
            self.enable_gradient_checkpointing()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_preset(
        cls,
        name: str,
        *,
        seed: int = 0,
        path: str | os.PathLike | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        **kwargs: Any,
    ) -> "LTXBridge":
        """The preset's decoder (``Preset.load_decoder``): ``tiny`` (random test config, ``seed``), ``mini`` (shipped
        miniature), ``full`` (``path``: hub id or local dir, default ``Lightricks/LTX-Video``). ``dtype`` defaults to
        the preset's; kwargs go to __init__."""
        preset = get_preset(name)
        dtype = dtype or getattr(torch, preset.dtype)
        transformer, vae, scheduler, captions = preset.load_decoder(seed=seed, path=path, dtype=dtype)
        defaults = dict(n_tokens=preset.n_tokens, image_size=preset.image_size, default_steps=preset.sample_steps,
                        preset=name)
        bridge = cls(transformer, vae, scheduler, captions, **{**defaults, **kwargs})
        if bridge.cond_dim != preset.cond_dim:
            raise ValueError(f"{name} decoder has caption_channels {bridge.cond_dim}, but preset {name!r} says "
                             f"cond_dim {preset.cond_dim}")
        return bridge.to(device=device, dtype=dtype)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "LTXBridge":
        for module in (self.transformer, self.vae, self.captions):
            if module is None:
                continue
            current = next(module.parameters(), None)
            same_dtype = dtype is None or current is None or current.dtype == dtype
            kwargs = {"device": device} if device is not None else {}
            if not same_dtype:  # skip no-op casts: diffusers warns on any dtype= it is given
                kwargs["dtype"] = dtype
            if kwargs:
                module.to(**kwargs)
        return self

    def enable_gradient_checkpointing(self) -> None:
        """Recompute activations during backward (transformer and VAE decoder): less GPU memory, more time."""
        self.transformer.enable_gradient_checkpointing()
        if getattr(self.vae, "_supports_gradient_checkpointing", False):
            self.vae.enable_gradient_checkpointing()

    def compile_transformer(self, **options: Any) -> None:
        """``torch.compile`` the transformer for the training objective (``predict_velocity``); sampling through
        ``LTXPipeline`` keeps the eager module. The compile itself happens at the first call (lazy): call
        ``predict_velocity`` once to surface a machine where it fails."""
        self._compiled_transformer = torch.compile(self.transformer, **options)

    @property
    def compiled(self) -> bool:
        return self._compiled_transformer is not None

    # ------------------------------------------------------------------ properties
    @property
    def cond_dim(self) -> int:
        return int(self.transformer.config.caption_channels)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.transformer.parameters()).dtype

    def parameters(self):
        """All frozen decoder parameters (transformer, VAE, captions) — for checks, never for an optimizer."""
        for module in (self.transformer, self.vae, self.captions):
            if module is not None:
                yield from module.parameters()

    def _autocast(self):
        if self.autocast_dtype is not None and self.device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=self.autocast_dtype)
        return contextlib.nullcontext()

    def latent_frames(self, num_frames: int) -> int:
        if num_frames < 1 or (num_frames - 1) % self.temporal_ratio:
            raise ValueError(f"num_frames must be 1 + k·{self.temporal_ratio} (the VAE's temporal compression); "
                             f"got {num_frames}")
        return (num_frames - 1) // self.temporal_ratio + 1

    # ------------------------------------------------------------------ conditioning
    def _check_cond(self, cond: torch.Tensor, cond_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if cond.ndim != 3 or cond.shape[-1] != self.cond_dim:
            raise ValueError(f"cond must be [B, L, {self.cond_dim}] (the decoder's caption_channels); "
                             f"got {tuple(cond.shape)}")
        if cond_mask is None:
            cond_mask = torch.ones(cond.shape[:2], dtype=torch.long, device=cond.device)
        if cond_mask.shape != cond.shape[:2]:
            raise ValueError(f"cond_mask must be [B, L] = {tuple(cond.shape[:2])}; got {tuple(cond_mask.shape)}")
        return cond, cond_mask.to(torch.long)  # 1 = real token (the transformer turns it into an additive bias)

    def null_cond(self, batch_size: int, n_tokens: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero conditioning: (zeros [B, n_tokens, cond_dim], ones [B, n_tokens]). The CFG negative and the
        "zero conditioning" baseline. (A zero mask would give the same output: a uniform attention bias.)"""
        n = int(n_tokens or self.n_tokens)
        cond = torch.zeros(batch_size, n, self.cond_dim, device=self.device, dtype=self.dtype)
        return cond, torch.ones(batch_size, n, dtype=torch.long, device=self.device)

    def caption_cond(self, caption_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mini decoder's own caption conditioning (the reference 'ceiling' an adapter is compared with)."""
        if self.captions is None:
            raise ValueError("caption_cond needs a decoder with its own caption module (the 'mini' preset); "
                             "this bridge has none")
        with torch.no_grad():
            out = self.captions(caption_ids.to(self.device))
        cond, mask = out if isinstance(out, (tuple, list)) else (out, None)
        return self._check_cond(cond, mask)

    # ------------------------------------------------------------------ latents
    def encode_latents(self, pixels: torch.Tensor, per_frame: bool = False) -> torch.Tensor:
        """[B, 3, H, W] or [B, 3, F, H, W] in [0, 1] -> normalized LTX latents [B, C, F', h, w] (posterior mode).
        ``per_frame``: each frame of a clip encoded as an image -> [B, C, F, h, w] (the latents of one conditioning
        per frame: see ``training_loss``)."""
        from diffusers import LTXPipeline

        if per_frame and pixels.ndim == 5:
            b, _, f = pixels.shape[:3]
            z = self.encode_latents(pixels.transpose(1, 2).flatten(0, 1))  # [B*F, C, 1, h, w]
            return z.view(b, f, *z.shape[1:2], *z.shape[3:]).transpose(1, 2)  # [B, C, F, h, w]
        video = self._as_video(pixels, "pixels")
        with torch.no_grad(), self._autocast():
            posterior = self.vae.encode(video.to(self.device, self.vae.dtype) * 2 - 1).latent_dist
            latents = posterior.mode()
        return LTXPipeline._normalize_latents(
            latents.float(), self.vae.latents_mean, self.vae.latents_std, self.vae.config.scaling_factor
        )

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalized latents [B, C, F', h, w] -> pixels [B, 3, F, H, W] (differentiable; not clamped)."""
        from diffusers import LTXPipeline

        z = LTXPipeline._denormalize_latents(
            latents, self.vae.latents_mean, self.vae.latents_std, self.vae.config.scaling_factor
        ).to(self.vae.dtype)
        temb = None
        if self.vae.config.timestep_conditioning:  # LTX >= 0.9.1 VAEs crash on temb=None
            temb = torch.full((z.shape[0],), self.decode_timestep, device=z.device, dtype=z.dtype)
        with self._autocast():
            video = self.vae.decode(z, temb, return_dict=False)[0]
        return (video.float() + 1) / 2

    def _as_video(self, pixels: torch.Tensor, what: str) -> torch.Tensor:
        if pixels.ndim == 4:
            pixels = pixels.unsqueeze(2)  # images are 1-frame clips
        if pixels.ndim != 5 or pixels.shape[1] != 3:
            raise ValueError(f"{what} must be [B, 3, H, W] or [B, 3, F, H, W]; got {tuple(pixels.shape)}")
        self.latent_frames(pixels.shape[2])
        step = self.spatial_ratio * self.patch_size
        if pixels.shape[-1] % step or pixels.shape[-2] % step:
            raise ValueError(f"{what} height/width must be multiples of {step}; got {tuple(pixels.shape[-2:])}")
        lo, hi = float(pixels.min()), float(pixels.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(f"{what} must be in [0, 1]; got values in [{lo:.3f}, {hi:.3f}]")
        return pixels

    # ------------------------------------------------------------------ training objective
    def rope_interpolation_scale(self, frame_rate: int = FRAME_RATE) -> tuple[float, float, float]:
        """As LTXPipeline computes it: (temporal_ratio / frame_rate, spatial_ratio, spatial_ratio)."""
        return rope_interpolation_scale(self.vae, frame_rate)

    def sigma_shift(self, latent_frames: int, latent_height: int, latent_width: int):
        """u -> σ with the shift LTXPipeline's schedule uses at this latent size."""
        from diffusers.pipelines.ltx.pipeline_ltx import calculate_shift

        config = self.scheduler.config
        if config.get("use_dynamic_shifting", False):
            mu = calculate_shift(
                latent_frames * latent_height * latent_width,
                config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096),
                config.get("base_shift", 0.5), config.get("max_shift", 1.15),
            )
            return lambda u: self.scheduler.time_shift(mu, 1.0, u)
        shift = float(config.get("shift", 1.0))
        return lambda u: shift * u / (1 + (shift - 1) * u)

    def predict_velocity(self, x_t: torch.Tensor, sigmas: torch.Tensor, cond: torch.Tensor,
                         cond_mask: torch.Tensor, frame_rate: int = FRAME_RATE) -> torch.Tensor:
        """The transformer's velocity for noisy latents x_t [B, C, F', h, w] at σ [B] -> [B, C, F', h, w]."""
        from diffusers import LTXPipeline

        b, _, f, h, w = x_t.shape
        forward = self.transformer if self._compiled_transformer is None else self._compiled_transformer
        packed = LTXPipeline._pack_latents(x_t.to(self.dtype), self.patch_size, self.patch_size_t)  # [B, S, C·p²·pt]
        latent_fhw = (f // self.patch_size_t, h // self.patch_size, w // self.patch_size)
        with self._autocast():
            v_packed = transformer_velocity(
                forward, packed, sigmas.to(self.device), cond.to(self.device, self.dtype),
                cond_mask.to(self.device), latent_fhw, self.rope_interpolation_scale(frame_rate),
                num_train_timesteps=self.scheduler.config.num_train_timesteps,
            )
        return LTXPipeline._unpack_latents(v_packed.float(), *latent_fhw, self.patch_size, self.patch_size_t)

    def training_loss(
        self,
        cond: torch.Tensor,
        cond_mask: torch.Tensor | None,
        latents: torch.Tensor | None,
        target_pixels: torch.Tensor | None = None,
        loss: LossSpec | None = None,
        generator: torch.Generator | None = None,
        region: PixelRegion | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """One batch of the adapter's objective -> (scalar loss, {term: unweighted value, "total": ...}).

        ``cond [B, L, cond_dim]`` (the adapter output; the only thing gradients reach), ``latents`` normalized
        ``[B, C, F', h, w]`` (``encode_latents``, or cached; None -> encoded from ``target_pixels``),
        ``target_pixels`` ``[B, 3, H, W]``/``[B, 3, F, H, W]`` in [0, 1] (needed for pixel terms). ``generator``
        draws σ and the noise (pass one for reproducible losses). ``parts["flow"]`` is always reported (free).
        ``cond [B, F, L, cond_dim]`` (an adapter with ``temporal="frame"``): one conditioning per frame of a clip;
        each frame is then a 1-frame sample of its own, with per-frame latents ``[B, C, F, h, w]``
        (``encode_latents(clips, per_frame=True)``), as ``sample`` reconstructs it.
        ``region`` (``pixel_region``): the pixel terms see only that part of x0_hat, and only it is decoded.
        """
        if cond.ndim == 4:  # one conditioning per frame: each frame is its own 1-frame sample
            if region is not None:  # each frame is its own 1-frame sample: the spatial crop applies, no frame window
                import dataclasses

                region = dataclasses.replace(region, frame=0, frames=None)
            return self.training_loss(*self._frames_as_images(cond, cond_mask, latents, target_pixels),
                                      loss=loss, generator=generator, region=region)
        spec = (loss or LossSpec()).resolve()
        cond, cond_mask = self._check_cond(cond, cond_mask)
        target_video = None
        if target_pixels is not None:
            target_video = self._as_video(target_pixels, "target_pixels").to(self.device)
        if latents is None:
            if target_video is None:
                raise ValueError("training_loss needs latents or target_pixels")
            latents = self.encode_latents(target_video)
        if latents.ndim != 5 or latents.shape[1] != self.latent_channels or latents.shape[0] != cond.shape[0]:
            raise ValueError(f"latents must be [B={cond.shape[0]}, {self.latent_channels}, F', h, w]; "
                             f"got {tuple(latents.shape)}")
        if spec.needs_pixels and target_video is None:
            raise ValueError(f"loss {spec.describe()} has pixel terms: pass target_pixels")
        x0 = latents.to(self.device, torch.float32)
        b, _, f, h, w = x0.shape

        gen_device = generator.device if generator is not None else torch.device("cpu")
        sigmas = sample_sigmas(spec, b, shift=self.sigma_shift(f, h, w), generator=generator).to(self.device)
        noise = torch.randn(x0.shape, generator=generator, device=gen_device).to(self.device)
        s = sigmas.view(b, 1, 1, 1, 1)
        x_t = noisy_latents(x0, noise, sigmas)
        v = self.predict_velocity(x_t, sigmas, cond, cond_mask)

        flow = (v - flow_target(x0, noise)).pow(2).mean()
        parts: dict[str, float] = {FLOW_TERM: float(flow.detach())}
        total = spec.terms.get(FLOW_TERM, 0.0) * flow if spec.terms.get(FLOW_TERM, 0.0) > 0 else 0.0
        if spec.needs_pixels:
            x0_hat = x_t - s * v  # one-step estimate of the clean latents
            if region is not None:  # decode only the part the pixel terms see
                region.check_fits((f, h, w))
                x0_hat = region.latents(x0_hat)
                target_video = region.pixels(target_video, self.spatial_ratio, self.temporal_ratio)
            pred_pixels = self.decode_latents(x0_hat)  # [B, 3, F, H, W], gradients flow to v -> cond
            if pred_pixels.shape != target_video.shape:
                raise ValueError(f"decoded frames {tuple(pred_pixels.shape)} do not match target_pixels "
                                 f"{tuple(target_video.shape)}: latents and targets must come from the same clips")
            weights = x0_weights(spec, sigmas)  # [B]
            for term, per_sample in pixel_losses(pred_pixels, target_video, spec).items():
                value = (weights * per_sample).mean()
                parts[term] = float(value.detach())
                total = total + spec.terms[term] * value
        parts["total"] = float(total.detach())
        return total, parts

    def pixel_region(self, latent_fhw: tuple[int, int, int], *, crop: int | None = None,
                     latent_frames: int | None = None, seed: int = 0) -> PixelRegion | None:
        """The part of a ``latent_fhw`` latent the pixel terms see: a ``crop`` × ``crop`` pixel square (a multiple
        of the VAE's spatial compression) and a window of ``latent_frames`` latent frames, placed from ``seed``.
        None = the whole latent."""
        size = None
        if crop is not None:
            if crop % self.spatial_ratio:
                raise ValueError(f"pixel crop {crop} px is not a multiple of the VAE's spatial compression "
                                 f"{self.spatial_ratio}; expected a multiple of {self.spatial_ratio}")
            size = crop // self.spatial_ratio
        return random_pixel_region(latent_fhw, size=size, frames=latent_frames, seed=seed)

    def _frames_as_images(self, cond, cond_mask, latents, target_pixels):
        """Per-frame conditioning [B, F, L, D] of clips -> a batch of B*F frames: cond [B*F, L, D], mask, latents
        [B*F, C, 1, h, w] (per-frame latents; encoded from the targets when not given), targets [B*F, 3, H, W]."""
        b, f = cond.shape[:2]
        if target_pixels is not None and (target_pixels.ndim != 5 or tuple(target_pixels.shape[:3]) != (b, 3, f)):
            raise ValueError(f"per-frame cond {tuple(cond.shape)} needs target clips [B={b}, 3, F={f}, H, W]; got "
                             f"{tuple(target_pixels.shape)}")
        if latents is None:
            if target_pixels is None:
                raise ValueError("training_loss needs latents or target_pixels")
            latents = self.encode_latents(target_pixels, per_frame=True)
        if latents.ndim != 5 or latents.shape[0] != b or latents.shape[2] != f:
            raise ValueError(f"per-frame cond {tuple(cond.shape)} needs per-frame latents [B={b}, C, F={f}, h, w] "
                             f"(encode_latents(clips, per_frame=True)); got {tuple(latents.shape)}")
        mask = None if cond_mask is None else cond_mask.reshape(b * f, -1)
        frames = latents.transpose(1, 2).flatten(0, 1).unsqueeze(2)  # [B*F, C, 1, h, w]
        target = None if target_pixels is None else target_pixels.transpose(1, 2).flatten(0, 1)  # [B*F, 3, H, W]
        return cond.flatten(0, 1), mask, frames, target

    # ------------------------------------------------------------------ sampling
    @property
    def pipeline(self):
        """diffusers ``LTXPipeline`` over these components (no text encoder: conditioning comes as embeds)."""
        if self._pipeline is None:
            from diffusers import FlowMatchEulerDiscreteScheduler, LTXPipeline

            self._pipeline = LTXPipeline(
                scheduler=FlowMatchEulerDiscreteScheduler.from_config(self.scheduler.config),  # own timestep state
                vae=self.vae, text_encoder=None, tokenizer=None, transformer=self.transformer,
            )
            self._pipeline.set_progress_bar_config(disable=True)
        return self._pipeline

    def sample(
        self,
        cond: torch.Tensor,
        cond_mask: torch.Tensor | None,
        num_frames: int = 1,
        height: int | None = None,
        width: int | None = None,
        steps: int | None = None,
        guidance_scale: float = 1.0,
        seed: int | Sequence[int] = 0,
        frame_rate: int = FRAME_RATE,
        decode_noise_scale: float | None = None,
    ) -> torch.Tensor:
        """Generate from conditioning with ``LTXPipeline`` -> [B, 3, H, W] (1 frame) or [B, 3, F, H, W], in [0, 1].

        ``guidance_scale > 1`` runs classifier-free guidance against ``null_cond``. ``seed``: an int (one CPU
        generator for the batch) or one seed per sample (each sample's noise then depends only on its seed).

        ``cond [B, F, L, cond_dim]`` (one conditioning per frame, ``num_frames = F``): every frame is sampled as a
        1-frame image with its own conditioning, all frames of a clip from the same initial noise (the clip's seed),
        and stacked -> [B, 3, F, H, W].
        """
        if cond.ndim == 4:
            b, f = cond.shape[:2]
            if num_frames != f:
                raise ValueError(f"per-frame cond {tuple(cond.shape)} has {f} frames, but num_frames={num_frames}")
            seeds = [seed + i for i in range(b)] if isinstance(seed, int) else list(seed)
            if len(seeds) != b:
                raise ValueError(f"got {len(seeds)} seeds for a batch of {b}")
            frames = self.sample(cond.flatten(0, 1), None if cond_mask is None else cond_mask.reshape(b * f, -1),
                                 num_frames=1, height=height, width=width, steps=steps, guidance_scale=guidance_scale,
                                 seed=[s for s in seeds for _ in range(f)], frame_rate=frame_rate,
                                 decode_noise_scale=decode_noise_scale)  # [B*F, 3, H, W]
            return frames.view(b, f, *frames.shape[1:]).transpose(1, 2)  # [B, 3, F, H, W]
        cond, cond_mask = self._check_cond(cond, cond_mask)
        height, width = int(height or self.image_size), int(width or self.image_size)
        if height % 32 or width % 32:
            raise ValueError(f"LTXPipeline needs height and width divisible by 32; got {height}×{width}")
        self.latent_frames(num_frames)
        batch = cond.shape[0]
        if isinstance(seed, int):
            generator: Any = torch.Generator("cpu").manual_seed(seed)
        else:
            seeds = list(seed)
            if len(seeds) != batch:
                raise ValueError(f"got {len(seeds)} seeds for a batch of {batch}")
            generator = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        embeds = cond.to(self.device, self.dtype)
        mask = cond_mask.to(self.device)
        negative = {}
        if guidance_scale > 1:
            neg, neg_mask = self.null_cond(batch, n_tokens=embeds.shape[1])
            negative = dict(negative_prompt_embeds=neg, negative_prompt_attention_mask=neg_mask)
        with torch.no_grad(), self._autocast():
            frames = self.pipeline(
                prompt_embeds=embeds, prompt_attention_mask=mask, **negative,
                height=height, width=width, num_frames=num_frames, frame_rate=frame_rate,
                num_inference_steps=int(steps or self.default_steps), guidance_scale=float(guidance_scale),
                generator=generator, decode_timestep=self.decode_timestep, decode_noise_scale=decode_noise_scale,
                output_type="pt", max_sequence_length=embeds.shape[1],
            ).frames  # [B, F, 3, H, W] in [0, 1]
        video = frames.float().permute(0, 2, 1, 3, 4).clamp(0, 1)  # [B, 3, F, H, W]
        return video[:, :, 0] if num_frames == 1 else video

    def __repr__(self) -> str:
        return (f"LTXBridge(preset={self.preset!r}, cond_dim={self.cond_dim}, latent_channels={self.latent_channels}, "
                f"compression={self.spatial_ratio}x/{self.temporal_ratio}t, device={self.device}, dtype={self.dtype})")


def _load_mini():
    """The shipped miniature decoder's components, or one clear FileNotFoundError naming `c2bridge mini build`."""
    hint = "build it with `c2bridge mini build` (it writes src/c2bridge/assets/mini/)"
    try:
        from c2bridge.mini import load_mini_components
    except ImportError as exc:
        raise FileNotFoundError(f"the mini decoder is not available ({exc}); {hint}") from None
    try:
        return load_mini_components()
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"the mini decoder's weights are missing ({exc}); {hint}") from None


def _load_full(path: str | os.PathLike, dtype: torch.dtype):
    """transformer / vae / scheduler subfolders of LTX-Video from a local dir or the HF cache (HF_HUB_OFFLINE is
    respected by huggingface_hub). Missing weights -> one FileNotFoundError naming the id and the fetch command."""
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel

    source = str(path)
    fetch = FULL_FETCH_COMMAND.format(id=FULL_MODEL_ID if Path(source).exists() else source)
    local = Path(source).is_dir()
    if local:
        missing = [s for s in ("transformer", "vae", "scheduler") if not (Path(source) / s).is_dir()]
        if missing:
            raise FileNotFoundError(f"LTX-Video dir {source} lacks subfolder(s) {missing}; expected the diffusers "
                                    f"layout of {FULL_MODEL_ID} (fetch with: {fetch} --local-dir {source})")
    try:
        transformer = LTXVideoTransformer3DModel.from_pretrained(source, subfolder="transformer", torch_dtype=dtype)
        vae = AutoencoderKLLTXVideo.from_pretrained(source, subfolder="vae", torch_dtype=dtype)
        scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(source, subfolder="scheduler")
    except (OSError, ValueError) as exc:  # OSError covers hub errors (not cached, offline, gated) and missing files
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        first_line = str(exc).splitlines()[0].rstrip(".") if str(exc) else ""
        raise FileNotFoundError(
            f"could not load LTX-Video weights from {source!r}{' (HF_HUB_OFFLINE is set)' if offline else ''}: "
            f"{type(exc).__name__}: {first_line}. Fetch them with: {fetch}"
        ) from None
    return transformer, vae, scheduler


__all__ = ["LTXBridge", "FULL_MODEL_ID", "rope_interpolation_scale", "transformer_velocity"]
