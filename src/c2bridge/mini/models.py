"""The mini world's model configs (the real classes at small sizes) and the loader for the shipped weights.

Layout of an assets directory (diffusers / transformers ``save_pretrained`` layout, fp16 safetensors):
``vae/``, ``transformer/``, ``scheduler/``, ``dinov2/`` (+ ``preprocessor_config.json``), ``captions/``,
``build_report.json``, ``samples.png``.
"""
from __future__ import annotations

from pathlib import Path

IMAGE_SIZE = 32
LATENT_CHANNELS = 8
FRAME_RATE = 25  # LTXPipeline's default; enters rope_interpolation_scale
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the mini DINOv2's input normalization, as the real one
IMAGENET_STD = (0.229, 0.224, 0.225)

# AutoencoderKLLTXVideo: patch 4 (32 px -> 8x8 latents), no spatio-temporal scaling, 64 ch, 1 layer per block.
VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS,
    block_out_channels=(64, 64, 64, 64), decoder_block_out_channels=(64, 64, 64, 64),
    layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1),
    spatio_temporal_scaling=(False, False, False, False), decoder_spatio_temporal_scaling=(False, False, False, False),
    decoder_inject_noise=(False, False, False, False, False), upsample_residual=(False, False, False, False),
    upsample_factor=(1, 1, 1, 1), patch_size=4, patch_size_t=1, timestep_conditioning=False, scaling_factor=1.0,
)

# LTXVideoTransformer3DModel: caption_channels = the mini preset's cond_dim.
TRANSFORMER_CONFIG = dict(
    in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS, patch_size=1, patch_size_t=1,
    num_attention_heads=4, attention_head_dim=16, cross_attention_dim=64, num_layers=4, caption_channels=64,
)

# FlowMatchEulerDiscreteScheduler: no dynamic shifting, so LTXPipeline's sigmas = linspace(1, 1/N, N) exactly.
SCHEDULER_CONFIG = dict(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False)

# Dinov2Model: patch 4 on 32 px -> 64 patch tokens of width 64 (the mini preset's n_patches, dino_dim).
DINOV2_CONFIG = dict(
    image_size=IMAGE_SIZE, patch_size=4, num_channels=3, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
    mlp_ratio=2, layer_norm_eps=1e-6,
)


def default_assets_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "assets" / "mini"


def build_vae():
    from diffusers import AutoencoderKLLTXVideo

    vae = AutoencoderKLLTXVideo(**VAE_CONFIG)
    vae.use_framewise_encoding = vae.use_framewise_decoding = False  # 1-frame clips; no tiling at 32 px
    return vae


def build_transformer(cond_dim: int = 64):
    from diffusers import LTXVideoTransformer3DModel

    return LTXVideoTransformer3DModel(**{**TRANSFORMER_CONFIG, "caption_channels": cond_dim})


def build_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG)


def build_dinov2():
    from transformers import Dinov2Config, Dinov2Model

    return Dinov2Model(Dinov2Config(**DINOV2_CONFIG))


def rope_interpolation_scale(vae) -> tuple[float, float, float]:
    """What LTXPipeline passes to the transformer (pipeline_ltx.py, step 6)."""
    return (vae.temporal_compression_ratio / FRAME_RATE, vae.spatial_compression_ratio, vae.spatial_compression_ratio)


REQUIRED = {
    "vae": ("config.json", "diffusion_pytorch_model.safetensors"),
    "transformer": ("config.json", "diffusion_pytorch_model.safetensors"),
    "scheduler": ("scheduler_config.json",),
    "dinov2": ("config.json", "model.safetensors"),
    "captions": ("captions_config.json", "model.safetensors"),
}


def check_assets(assets_dir: str | Path | None = None) -> Path:
    assets = Path(assets_dir) if assets_dir is not None else default_assets_dir()
    missing = [f"{part}/{name}" for part, names in REQUIRED.items() for name in names
               if not (assets / part / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"mini world weights missing in {assets} ({', '.join(missing)}); create them with "
            f"`c2bridge mini build --out {assets}`")
    return assets


def load_mini_components(assets_dir: str | Path | None = None) -> dict:
    """The shipped mini world, frozen, eval mode, fp32 on CPU.

    Returns ``dict(vae=AutoencoderKLLTXVideo, transformer=LTXVideoTransformer3DModel,
    scheduler=FlowMatchEulerDiscreteScheduler, dinov2=Dinov2Model, captions=CaptionEmbedder)``.
    """
    import torch
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel
    from transformers import Dinov2Model

    from c2bridge.mini.captions import CaptionEmbedder

    assets = check_assets(assets_dir)
    vae = AutoencoderKLLTXVideo.from_pretrained(assets / "vae", torch_dtype=torch.float32)
    vae.use_framewise_encoding = vae.use_framewise_decoding = False
    components = dict(
        vae=vae,
        transformer=LTXVideoTransformer3DModel.from_pretrained(assets / "transformer", torch_dtype=torch.float32),
        scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(assets / "scheduler"),
        dinov2=_quietly(lambda: Dinov2Model.from_pretrained(assets / "dinov2", dtype=torch.float32)),
        captions=CaptionEmbedder.from_pretrained(assets / "captions"),
    )
    for name, module in components.items():
        if isinstance(module, torch.nn.Module):
            module.eval().requires_grad_(False)
    return components


def make_pipeline(components: dict):
    """``LTXPipeline`` over mini components (no text encoder: pass ``prompt_embeds`` + ``prompt_attention_mask``)."""
    from diffusers import LTXPipeline

    pipe = LTXPipeline(transformer=components["transformer"], vae=components["vae"],
                       scheduler=components["scheduler"], text_encoder=None, tokenizer=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _quietly(load):
    """Run ``load()`` without transformers' per-tensor "Loading weights" progress bar (a 200 kB model in every
    study process and pool worker would otherwise print one), restoring the caller's setting."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return load()
    finally:
        if enabled:
            hf_logging.enable_progress_bar()
