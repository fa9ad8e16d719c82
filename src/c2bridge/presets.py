"""The worlds c2bridge runs in, behind one interface.

- ``full``: the real models (facebook/dinov2-large, Qwen/Qwen2.5-VL-7B-Instruct, Lightricks/LTX-Video), GPU, bf16.
- ``mini``: the same classes at small configs; decoder and DINOv2 trained by c2bridge (``c2bridge mini build``)
  and shipped under ``c2bridge/assets/mini``. The default on a fresh machine; every report says it is the miniature.
- ``tiny``: the same classes at test-sized random configs (the diffusers/transformers test-suite sizes).
  Plumbing only: its numbers mean nothing.

A preset fixes the *interfaces* between stages (feature widths, token counts, resolution, budgets);
recipes (lr, steps, losses) live in ``configs/``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Preset:
    name: str
    dino_dim: int  # width of DINOv2 patch tokens  # [B, P, dino_dim]
    n_patches: int  # P: DINOv2 patch tokens per image (CLS/registers removed)
    vlm_dim: int  # width of Qwen2.5-VL hidden states  # [B, T, vlm_dim]
    cond_dim: int  # LTX caption_channels: the adapter's output width  # [B, n_tokens, cond_dim]
    n_tokens: int  # adapter output tokens (77 in the plan)
    encoder_image_size: int  # pixels fed to DINOv2 (224 for ViT-L/14 -> 16x16 patches)
    image_size: int  # decoder output resolution (multiple of 32 for LTX)
    num_frames: int  # frames for clip datasets (images are 1-frame clips)
    budgets: dict[str, float] = field(default_factory=dict)  # E2.1 scale name -> trainable params
    dtype: str = "float32"  # compute dtype for frozen models ("bfloat16" on GPU for full)
    is_miniature: bool = False  # reports must say so
    description: str = ""

    def replace(self, **kw) -> "Preset":
        return dataclasses.replace(self, **kw)


PLAN_BUDGETS = {"5m": 5e6, "10m": 10e6, "20m": 20e6, "50m": 50e6, "100m": 100e6}

PRESETS: dict[str, Preset] = {
    "full": Preset(
        name="full",
        dino_dim=1024,
        n_patches=256,
        vlm_dim=3584,
        cond_dim=4096,
        n_tokens=77,
        encoder_image_size=224,
        image_size=512,
        num_frames=25,
        budgets=dict(PLAN_BUDGETS),
        dtype="bfloat16",
        description="Real models: DINOv2-ViT-L/14, Qwen2.5-VL-7B-Instruct, LTX-Video (GPU, bf16).",
    ),
    "mini": Preset(
        name="mini",
        dino_dim=64,
        n_patches=64,
        vlm_dim=32,
        cond_dim=64,
        n_tokens=16,
        encoder_image_size=32,
        image_size=32,
        num_frames=1,
        # The plan's five scales mapped onto the miniature (see docs/mini_world.md for how they were chosen).
        budgets={"5m": 6.25e3, "10m": 1.25e4, "20m": 2.5e4, "50m": 6.25e4, "100m": 1.25e5},  # = full / 800
        is_miniature=True,
        description="Miniature: the same classes at small configs, trained by c2bridge, synthetic shapes, CPU.",
    ),
    "tiny": Preset(
        name="tiny",
        dino_dim=32,
        n_patches=16,
        vlm_dim=32,
        cond_dim=32,
        n_tokens=8,
        encoder_image_size=8,
        image_size=32,
        num_frames=1,
        budgets={"5m": 2e4, "10m": 4e4, "20m": 8e4, "50m": 2e5, "100m": 4e5},
        is_miniature=True,
        description="Test-sized random models: plumbing only, numbers mean nothing.",
    ),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}") from None
