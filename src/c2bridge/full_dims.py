"""The real models' shapes, as constructor configs of the classes c2bridge uses (no weights, no hub).

Used by the resource planner (its formulas read these numbers) and by the real-width smoke run (it builds the
same classes at these widths with random weights and only a few layers). Sources, checked against the classes
installed here (diffusers 0.42, transformers 5.23):

- LTX-Video transformer: the class defaults of ``diffusers.LTXVideoTransformer3DModel`` (= Lightricks/LTX-Video:
  28 layers, 32 heads x 64 = 2048 inner, caption_channels 4096 (T5-XXL) projected to 2048, 128 latent channels).
- LTX-Video VAE: ``get_vae_config("0.9.0")`` of diffusers' ``scripts/convert_ltx_to_diffusers.py`` (equal to the
  class defaults of ``AutoencoderKLLTXVideo``): 4x4 patchify + three 2x space-time stages = 32x space, 8x time.
  ``LTX_VAE_091`` is the 0.9.1 decoder (wider, timestep-conditioned) from the same script.
- DINOv2-ViT-L/14 (facebook/dinov2-large): 1024 wide, 24 layers, 16 heads, MLP x4, patch 14.
- Qwen2.5-VL-7B-Instruct: text 3584 wide, 28 layers, 28 query / 4 KV heads (head 128), MLP 18944, vocab 152064;
  vision tower 32 blocks of 1280 (16 heads, MLP 3420), patch 14, temporal patch 2, 2x2 merge to 3584, window
  attention (112 px) except blocks 7/15/23/31. The transformers class defaults are the 72B's, hence the explicit
  numbers here.
"""
from __future__ import annotations

import copy

LTX_TRANSFORMER = dict(
    in_channels=128,  # latent channels (patch_size 1 -> one token per latent voxel)
    out_channels=128,
    patch_size=1,
    patch_size_t=1,
    num_attention_heads=32,
    attention_head_dim=64,  # inner width = 32 * 64 = 2048
    cross_attention_dim=2048,  # captions are projected 4096 -> 2048 before cross-attention
    num_layers=28,
    caption_channels=4096,  # the adapter's output width (T5-XXL's)
)

LTX_VAE = dict(  # 0.9.0
    in_channels=3,
    out_channels=3,
    latent_channels=128,
    block_out_channels=(128, 256, 512, 512),
    decoder_block_out_channels=(128, 256, 512, 512),
    layers_per_block=(4, 3, 3, 3, 4),
    decoder_layers_per_block=(4, 3, 3, 3, 4),
    spatio_temporal_scaling=(True, True, True, False),
    decoder_spatio_temporal_scaling=(True, True, True, False),
    decoder_inject_noise=(False, False, False, False, False),
    upsample_residual=(False, False, False, False),
    upsample_factor=(1, 1, 1, 1),
    patch_size=4,
    patch_size_t=1,
    timestep_conditioning=False,
    encoder_causal=True,
    decoder_causal=False,
)

LTX_VAE_091 = dict(
    LTX_VAE,
    decoder_block_out_channels=(256, 512, 1024),
    decoder_layers_per_block=(5, 6, 7, 8),
    decoder_spatio_temporal_scaling=(True, True, True),
    decoder_inject_noise=(False, True, True, True),
    upsample_residual=(True, True, True),
    upsample_factor=(2, 2, 2),
    timestep_conditioning=True,
)

VAE_SPATIAL_RATIO = 32  # pixels per latent cell (patch 4 x 2^3)
VAE_TEMPORAL_RATIO = 8  # frames per latent frame after the first (F = 8 * (T - 1) + 1)

DINOV2_LARGE = dict(
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    mlp_ratio=4,
    patch_size=14,
    image_size=518,  # pretraining size; position embeddings are interpolated to 224 px (16 x 16 patches)
    layerscale_value=1.0,
    use_swiglu_ffn=False,
)

QWEN25_VL_7B_TEXT = dict(
    vocab_size=152064,
    hidden_size=3584,
    intermediate_size=18944,
    num_hidden_layers=28,
    num_attention_heads=28,
    num_key_value_heads=4,
    rms_norm_eps=1e-6,
    max_position_embeddings=128000,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
)

QWEN25_VL_7B_VISION = dict(
    depth=32,
    hidden_size=1280,
    intermediate_size=3420,
    num_heads=16,
    in_channels=3,
    patch_size=14,
    spatial_merge_size=2,
    temporal_patch_size=2,
    window_size=112,
    fullatt_block_indexes=[7, 15, 23, 31],
    out_hidden_size=3584,
    tokens_per_second=2,
)

QWEN25_VL_TOKENS = dict(image_token_id=151655, video_token_id=151656, vision_start_token_id=151652,
                        vision_end_token_id=151653)


def full_dims() -> dict:
    """A fresh copy of every real config: ``{"ltx_transformer", "ltx_vae", "dinov2", "qwen_text", "qwen_vision"}``."""
    return copy.deepcopy(dict(
        ltx_transformer=LTX_TRANSFORMER,
        ltx_vae=LTX_VAE,
        dinov2=DINOV2_LARGE,
        qwen_text=QWEN25_VL_7B_TEXT,
        qwen_vision=QWEN25_VL_7B_VISION,
    ))


def latent_geometry(num_frames: int, height: int, width: int) -> tuple[int, int, int]:
    """Pixel clip size -> latent (frames, height, width) of the real VAE; rejects sizes the VAE cannot take."""
    if height % VAE_SPATIAL_RATIO or width % VAE_SPATIAL_RATIO:
        raise ValueError(f"height/width {height}x{width} must be multiples of {VAE_SPATIAL_RATIO} for the LTX VAE")
    if num_frames < 1 or (num_frames - 1) % VAE_TEMPORAL_RATIO:
        raise ValueError(f"num_frames {num_frames} must be 8k+1 (1, 9, 17, 25, ...) for the LTX VAE")
    return (num_frames - 1) // VAE_TEMPORAL_RATIO + 1, height // VAE_SPATIAL_RATIO, width // VAE_SPATIAL_RATIO
