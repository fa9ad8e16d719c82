"""Frozen encoders (DINOv2, Qwen2.5-VL) and the feature cache they fill.

``build_encoders(preset, device=None, **options) -> Encoders(dino, vlm)`` for the three presets:

- ``tiny``: both at test-sized configs with seeded random init (DINOv2 seed 0, Qwen seed 1). Plumbing only.
- ``mini``: the pre-trained tiny DINOv2 shipped under ``c2bridge/assets/mini/dinov2`` (built by
  ``c2bridge mini build``) + the tiny ``Qwen2_5_VLForConditionalGeneration`` trained by the same build on the
  shapes world's captions (``assets/mini/qwen_vl``; text hidden = the preset's ``vlm_dim``) fed by the in-memory
  mini processor (see ``qwen_vl.py``).
- ``full``: ``facebook/dinov2-large`` and ``Qwen/Qwen2.5-VL-7B-Instruct`` via ``from_pretrained`` (bf16 on GPU,
  float32 on CPU; ``HF_HUB_OFFLINE`` respected). ``dino_model=`` / ``vlm_model=`` (or ``$C2BRIDGE_DINO_MODEL`` /
  ``$C2BRIDGE_VLM_MODEL``) point at other ids or local directories.

Qwen options (``prompt``, ``video_prompt``, ``layer``, ``token_selection``, ``image_size``, ``video_size``) pass
through ``**options``; all of them are in ``encoder_key()`` and so in the cache key.
"""
from c2bridge.encoders.build import (
    MINI_DINO_DIR,
    RANDOM_QWEN_SEED,
    TINY_DINO_SEED,
    TINY_QWEN_IMAGE_SIZE,
    Encoders,
    build_encoders,
    default_device,
    hub_encoders,
    load_mini_dino,
    mini_encoders,
    random_tiny_encoders,
)
from c2bridge.encoders.cache import FeatureCache, collate_features, verify_cache
from c2bridge.encoders.dinov2 import DinoV2Encoder
from c2bridge.encoders.extraction import expected_key, extract
from c2bridge.encoders.qwen_vl import QwenVLEncoder

__all__ = ["Encoders", "build_encoders", "hub_encoders", "mini_encoders", "random_tiny_encoders", "load_mini_dino",
           "default_device", "MINI_DINO_DIR", "TINY_DINO_SEED", "RANDOM_QWEN_SEED", "TINY_QWEN_IMAGE_SIZE",
           "DinoV2Encoder", "QwenVLEncoder", "FeatureCache", "collate_features", "verify_cache", "extract",
           "expected_key"]
