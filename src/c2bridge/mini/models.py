"""The mini world's model configs: the real classes (LTX-Video VAE + transformer, DINOv2, Qwen2.5-VL) at small
sizes.

What ``c2bridge mini build`` instantiates and trains; at run time the shipped ``config.json`` files say the same
(``c2bridge.mini.assets`` loads them).
"""
from __future__ import annotations

IMAGE_SIZE = 32
LATENT_CHANNELS = 8
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the mini DINOv2's input normalization, as the real one
IMAGENET_STD = (0.229, 0.224, 0.225)
VLM_DIM = 32  # the mini Qwen2.5-VL's text hidden size (the mini preset's vlm_dim)
VLM_SEED = 1  # the untrained VLM's init seed (the seeded-random VLM the miniature used before it was trained)

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


def build_vlm(seed: int = VLM_SEED):
    """A tiny ``Qwen2_5_VLForConditionalGeneration`` (text hidden ``VLM_DIM``, 2 text + 2 vision layers) matching the
    in-memory mini processor (``c2bridge.encoders.qwen_vl.mini_processor``), initialized under ``seed``."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from c2bridge.encoders.base import seeded_model
    from c2bridge.encoders.qwen_vl import tiny_qwen_config

    return seeded_model(Qwen2_5_VLForConditionalGeneration, tiny_qwen_config(VLM_DIM), seed)
