"""DINOv2 (transformers ``Dinov2Model``) as a frozen patch-token encoder.

``DinoV2Encoder(images)`` takes ``[B, 3, H, W]`` in [0, 1], resizes to the encoder's input size (bicubic,
antialiased), normalizes with the ImageNet mean/std (the DINOv2 processor's), and returns the layer-normed patch
tokens ``[B, P, dino_dim]`` with CLS and any register tokens removed. Clips ``[B, 3, F, H, W]`` are encoded frame
by frame (DINOv2 is an image model) -> ``[B, F, P, dino_dim]``; how the frames become conditioning is the adapter's
``temporal`` option (``c2bridge.adapters``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from c2bridge.encoders.base import FrozenEncoder, pretrained_model, seeded_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FULL_DINO_ID = "facebook/dinov2-large"


@dataclass(frozen=True)
class DinoPreprocess:
    image_size: int  # pixels fed to the ViT (224 for ViT-L/14 -> 16x16 = 256 patches)
    mean: tuple[float, float, float] = IMAGENET_MEAN  # normalization (DINOv2's processor uses ImageNet stats)
    std: tuple[float, float, float] = IMAGENET_STD
    resample: str = "bicubic"  # torch interpolate mode, antialiased
    clip_frames: str = "every"  # clips: every frame encoded on its own -> [B, F, P, D]


def tiny_dinov2_config(dino_dim: int, n_patches: int, image_size: int, num_layers: int = 2, num_heads: int = 4):
    """A test-sized ``Dinov2Config`` giving ``n_patches`` patch tokens of width ``dino_dim`` at ``image_size``."""
    from transformers import Dinov2Config

    side = math.isqrt(n_patches)
    if side * side != n_patches or image_size % side:
        raise ValueError(f"n_patches={n_patches} must be a square whose side divides image_size={image_size}")
    return Dinov2Config(image_size=image_size, patch_size=image_size // side, hidden_size=dino_dim,
                        num_hidden_layers=num_layers, num_attention_heads=num_heads, intermediate_size=37)


class DinoV2Encoder(FrozenEncoder):
    """A frozen ``Dinov2Model`` (or ``Dinov2WithRegistersModel``) -> patch tokens ``[B, P, dino_dim]``."""

    kind = "dinov2"

    def __init__(self, model, preprocess: DinoPreprocess, model_id: str, revision: str = "random",
                 device=None):
        super().__init__(model, model_id, revision, device)
        self.preprocess = preprocess
        self.n_prefix = 1 + int(getattr(model.config, "num_register_tokens", 0) or 0)  # CLS (+ registers)
        self._mean = torch.tensor(preprocess.mean).view(1, 3, 1, 1)
        self._std = torch.tensor(preprocess.std).view(1, 3, 1, 1)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def random(cls, dino_dim: int, n_patches: int, image_size: int, seed: int = 0, device=None,
               model_id: str = "tiny-random-dinov2") -> "DinoV2Encoder":
        """Seeded random init of a tiny config (tests and the tiny preset); the global RNG is left untouched."""
        from transformers import Dinov2Model

        model = seeded_model(Dinov2Model, tiny_dinov2_config(dino_dim, n_patches, image_size), seed)
        return cls(model, DinoPreprocess(image_size=image_size), model_id=model_id, revision=f"seed{seed}",
                   device=device)

    @classmethod
    def from_pretrained(cls, model_id: str = FULL_DINO_ID, revision: str | None = None, device=None, dtype=None,
                        image_size: int = 224) -> "DinoV2Encoder":
        """Real weights (local dir or hub id, ``HF_HUB_OFFLINE`` respected); missing -> one FileNotFoundError."""
        from transformers import AutoModel

        model, revision = pretrained_model(AutoModel.from_pretrained, model_id, revision, dtype=dtype)
        if not hasattr(model, "embeddings") or "dinov2" not in type(model).__name__.lower():
            raise ValueError(f"{model_id} is a {type(model).__name__}, expected a DINOv2 model")
        return cls(model, DinoPreprocess(image_size=image_size), model_id=model_id, revision=revision, device=device)

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def n_patches(self) -> int:
        return (self.preprocess.image_size // int(self.model.config.patch_size)) ** 2

    def key_extras(self) -> dict:
        return {"output": "last_hidden_state[:, 1 + registers:]"}

    # ------------------------------------------------------------------ forward
    def __call__(self, images):
        if images.ndim == 5 and images.shape[1] == 3:  # clip [B, 3, F, H, W]: every frame as an image
            b, _, f = images.shape[:3]
            frames = images.transpose(1, 2).reshape(b * f, 3, *images.shape[-2:])  # [B*F, 3, H, W]
            return self(frames).view(b, f, self.n_patches, self.dim)  # [B, F, P, dino_dim]
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"DinoV2Encoder expects images [B, 3, H, W] (or clips [B, 3, F, H, W]) in [0, 1], got {tuple(images.shape)}")
        size = self.preprocess.image_size
        x = images.to(self.device, torch.float32)
        if tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode=self.preprocess.resample, antialias=True,
                              align_corners=False).clamp(0, 1)
        x = (x - self._mean.to(x.device)) / self._std.to(x.device)
        with torch.inference_mode():
            hidden = self.model(pixel_values=x.to(self.dtype)).last_hidden_state  # [B, prefix + P, D]
        return hidden[:, self.n_prefix:]  # [B, P, dino_dim]

