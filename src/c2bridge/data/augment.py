"""Augmentations from the plan (E2.3 C): colour jitter, random crop (scale 0.8-1.0), MixUp.

Each one transforms a whole dataset item so that targets stay consistent with the image the encoders see:
the crop moves the ``mask`` and ``boxes`` with the pixels; colour jitter leaves them unchanged; MixUp blends the
pixels of two items and takes the union of their masks and boxes.

Encoders are frozen and features are cached, so augmentation happens at extraction time: ``extract(...,
augment=KIND, views=N)`` stores N augmented views of each item. Randomness is drawn from a generator derived from
``(seed, kind, index, view)`` alone, so a view is the same whatever order, batch or shard it is computed in
(resume gives byte-identical shards) and the global torch RNG is never touched.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch

from c2bridge.names import AUGMENTATIONS  # noqa: F401  (the list lives with the other config names)


MASK_FIELDS = ("mask", "shape_masks")  # spatial masks that must follow a geometric transform
GEOMETRY_FIELDS = ("centers", "sizes")  # attributes in pixel/fraction coordinates, dropped after a crop
SHAPE_FIELDS = ("shape_masks", "kinds", "colours", "centers", "sizes", "num_shapes")  # dropped after MixUp


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any printable parts (stable across processes, unlike ``hash()``)."""
    digest = hashlib.sha256(repr(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass(frozen=True)
class AugmentConfig:
    kind: str = "none"  # one of AUGMENTATIONS
    brightness: float = 0.4  # colour jitter: brightness factor ~ U[1-b, 1+b]
    contrast: float = 0.4  # colour jitter: contrast factor ~ U[1-c, 1+c]
    saturation: float = 0.4  # colour jitter: saturation factor ~ U[1-s, 1+s] (no hue shift: colour names stay true)
    crop_scale: tuple[float, float] = (0.8, 1.0)  # random crop: fraction of the image area kept (square crop)
    mixup_alpha: float = 0.4  # MixUp: blend weight lambda ~ Beta(alpha, alpha)

    def __post_init__(self):
        if self.kind not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {self.kind!r}; expected one of {list(AUGMENTATIONS)}")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale}")


class Augmenter:
    """``augmenter(item, index, view, get_item)`` -> a new item (the input is not modified).

    ``get_item(j)`` fetches another item of the same dataset (MixUp's partner).
    """

    def __init__(self, kind: str = "none", seed: int = 0, **params):
        self.config = AugmentConfig(kind=kind, **params)
        self.seed = int(seed)

    def key(self) -> dict:
        """What the cache key records about the augmentation (all parameters)."""
        cfg = asdict(self.config)
        return {"kind": "none"} if self.config.kind == "none" else {**cfg, "seed": self.seed}

    def generator(self, index: int, view: int):
        import numpy as np

        return np.random.default_rng(derive_seed(self.seed, self.config.kind, int(index), int(view)))

    def __call__(self, item: dict, index: int, view: int, get_item: Callable[[int], dict] | None = None,
                 n_items: int | None = None) -> dict:
        kind = self.config.kind
        if kind == "none":
            return dict(item)
        rng = self.generator(index, view)
        if kind == "color_jitter":
            return color_jitter(item, rng, self.config.brightness, self.config.contrast, self.config.saturation)
        if kind == "random_crop":
            return random_crop(item, rng, self.config.crop_scale)
        if get_item is None or not n_items or n_items < 2:
            raise ValueError("MixUp needs a dataset of at least 2 items to draw partners from")
        partner = int(rng.integers(0, n_items - 1))
        partner += partner >= index  # never mix an item with itself
        lam = float(rng.beta(self.config.mixup_alpha, self.config.mixup_alpha))
        return mixup(item, get_item(partner), lam)


# ---------------------------------------------------------------- the transforms (pure functions of their inputs)

def _pixels(item: dict):
    """(key, frames [F,3,H,W]) for an image [3,H,W] or a clip [3,F,H,W] (torchvision wants frames first)."""
    if "clip" in item:
        return "clip", item["clip"].permute(1, 0, 2, 3)
    return "image", item["image"].unsqueeze(0)


def _store(item: dict, key: str, frames) -> dict:
    out = dict(item)
    out[key] = frames.permute(1, 0, 2, 3).contiguous() if key == "clip" else frames[0].contiguous()
    return out


def color_jitter(item: dict, rng, brightness: float, contrast: float, saturation: float) -> dict:
    """Brightness, contrast, saturation (fixed order, factors drawn from ``rng``); masks/boxes unchanged."""
    from torchvision.transforms.v2 import functional as TF

    key, frames = _pixels(item)
    b, c, s = (float(rng.uniform(1 - x, 1 + x)) for x in (brightness, contrast, saturation))
    frames = TF.adjust_brightness(frames, b)
    frames = TF.adjust_contrast(frames, c)
    frames = TF.adjust_saturation(frames, s).clamp(0, 1)
    out = _store(item, key, frames)
    out["augment"] = {"kind": "color_jitter", "brightness": b, "contrast": c, "saturation": s}
    return out


def random_crop(item: dict, rng, scale: tuple[float, float] = (0.8, 1.0)) -> dict:
    """A square crop keeping ``scale`` of the area, resized back to the input size; mask and boxes follow."""
    import math

    from torchvision import tv_tensors
    from torchvision.transforms.v2 import functional as TF

    key, frames = _pixels(item)
    H, W = frames.shape[-2:]
    area = float(rng.uniform(*scale))
    side_h = max(1, min(H, round(H * math.sqrt(area))))
    side_w = max(1, min(W, round(W * math.sqrt(area))))
    top = int(rng.integers(0, H - side_h + 1))
    left = int(rng.integers(0, W - side_w + 1))
    crop = dict(top=top, left=left, height=side_h, width=side_w, size=[H, W])
    frames = TF.resized_crop(tv_tensors.Video(frames), **crop, antialias=True).as_subclass(torch.Tensor).clamp(0, 1)
    out = _store(item, key, frames)
    for field in MASK_FIELDS:  # [H, W], [K, H, W] or clips' [F, (K,) H, W]: same crop, pixel-centred nearest
        if item.get(field) is not None:  # (torch's legacy "nearest", which torchvision uses, shifts by half a pixel)
            m = item[field]
            flat = m.reshape(-1, 1, *m.shape[-2:])[..., top:top + side_h, left:left + side_w].float()
            resized = torch.nn.functional.interpolate(flat, size=(H, W), mode="nearest-exact")
            out[field] = resized.reshape(m.shape) > 0.5
    if item.get("boxes") is not None:
        b = item["boxes"]
        if b.ndim == 3:  # clip boxes [F, K, 4]: keep the per-shape layout (clamped, possibly empty boxes)
            out["boxes"] = _crop_boxes(b.reshape(-1, 4), top, left, side_h, side_w, H, W, drop=False).reshape(b.shape)
        else:
            out["boxes"] = _crop_boxes(b, top, left, side_h, side_w, H, W)
    for field in GEOMETRY_FIELDS:  # attributes in the uncropped frame would now be wrong
        out.pop(field, None)
    out["augment"] = {"kind": "random_crop", "top": top, "left": left, "height": side_h, "width": side_w}
    return out


def _crop_boxes(boxes, top: int, left: int, crop_h: int, crop_w: int, H: int, W: int, drop: bool = True):
    """xyxy pixel boxes ``[K, 4]`` -> the crop's frame rescaled to [H, W]; boxes left with no area are dropped."""
    if boxes.numel() == 0:
        return boxes.reshape(0, 4).float()
    b = boxes.float().clone()
    b[:, [0, 2]] = ((b[:, [0, 2]] - left) * (W / crop_w)).clamp(0, W)
    b[:, [1, 3]] = ((b[:, [1, 3]] - top) * (H / crop_h)).clamp(0, H)
    if not drop:
        return b
    keep = (b[:, 2] - b[:, 0] > 0) & (b[:, 3] - b[:, 1] > 0)
    return b[keep] if keep.any() else torch.zeros(0, 4)


def mixup(item: dict, partner: dict, lam: float) -> dict:
    """``lam * item + (1 - lam) * partner``; mask = union, boxes = both; caption from the dominant item."""
    key, frames = _pixels(item)
    pkey, pframes = _pixels(partner)
    if pkey != key or pframes.shape != frames.shape:
        raise ValueError(f"MixUp needs items of the same shape, got {tuple(frames.shape)} and {tuple(pframes.shape)}")
    out = _store(item, key, lam * frames + (1 - lam) * pframes)
    dominant = item if lam >= 0.5 else partner
    for field in ("caption", "caption_ids"):
        if field in dominant:
            out[field] = dominant[field]
    if item.get("mask") is not None and partner.get("mask") is not None:
        out["mask"] = item["mask"] | partner["mask"]
    if item.get("boxes") is not None and partner.get("boxes") is not None:
        out["boxes"] = torch.cat([item["boxes"], partner["boxes"]], dim=-2).float()  # [K1+K2, 4] (clips [F, K, 4])
    for field in SHAPE_FIELDS:  # per-shape attributes describe one of the two items only
        out.pop(field, None)
    out["augment"] = {"kind": "mixup", "lam": lam, "partner": partner.get("sample_id")}
    return out


# ---------------------------------------------------------------- loading helpers shared by coco.py / ssv2.py

def center_square(width: int, height: int) -> tuple[int, int, int]:
    """(left, top, side) of the largest centred square."""
    side = min(width, height)
    return (width - side) // 2, (height - side) // 2, side


def pil_to_square_tensor(img, size: int):
    """PIL image -> centre square crop -> ``[3, size, size]`` float [0, 1] (bicubic)."""
    import numpy as np
    from PIL import Image

    left, top, side = center_square(*img.size)
    img = img.convert("RGB").crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0


def square_mask(mask, size: int):
    """``[h, w]`` bool/uint8 numpy mask -> centre square crop -> ``[size, size]`` bool tensor (nearest)."""
    import numpy as np
    from PIL import Image

    h, w = mask.shape
    left, top, side = center_square(w, h)
    m = Image.fromarray(np.ascontiguousarray(mask[top:top + side, left:left + side]).astype(np.uint8) * 255)
    return torch.from_numpy(np.asarray(m.resize((size, size), Image.NEAREST)) > 127)


def square_boxes(boxes_xyxy, width: int, height: int, size: int):
    """xyxy boxes in original pixels -> the centre-square crop resized to ``size``; empty boxes dropped."""
    left, top, side = center_square(width, height)
    b = torch.as_tensor(boxes_xyxy, dtype=torch.float32).reshape(-1, 4)
    return _crop_boxes(b, top, left, side, side, size, size) if len(b) else torch.zeros(0, 4)
