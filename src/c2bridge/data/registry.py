"""``build_dataset(name, split, preset, root=None, limit=None, seed=0)``: one factory for every dataset.

What each dataset yields (item kind, frames, whether spatial IoU means anything) is declared in
``c2bridge.datasets`` (torch-free); this module reads it:

- ``shapes`` / ``shapes_clips``: the synthetic world (``c2bridge.data.shapes.ShapesDataset``) as images or clips,
  the plan's 10,000 train / 1,000 val (and 1,000 held-out) items, generated from ``seed``; no root.
- ``coco``: COCO val2017 images under ``root`` (or ``$C2BRIDGE_COCO_ROOT``, or ``$C2BRIDGE_DATA_ROOT/coco``).
- ``ssv2``: Something-Something v2 clips under ``root`` (or ``$C2BRIDGE_SSV2_ROOT``, or
  ``$C2BRIDGE_DATA_ROOT/ssv2``).

Bad items are a listed skip, the same way for every dataset: ``__getitem__`` raises ``UnreadableSample`` for an
image or video that does not decode (or is truncated), a clip with fewer frames than the preset samples, a COCO
image with no annotations; extraction lists it (with the reason) in the cache manifest's ``skipped``. A dataset
with nothing readable is one clear error.

Every dataset has ``dataset_key()`` (what the feature-cache key records about it).
"""
from __future__ import annotations

import os
from pathlib import Path

from c2bridge.data.coco import CocoDataset
from c2bridge.data.common import check_split
from c2bridge.data.shapes import ShapesDataset
from c2bridge.data.ssv2 import SSv2Dataset
from c2bridge.datasets import clip_frames, dataset_spec

SHAPES_SPLIT_SIZES = {"train": 10_000, "val": 1_000, "heldout": 1_000}  # plan section 4.4


def _resolve_root(name: str, root) -> Path:
    if root is not None:
        return Path(root)
    env = os.environ.get(f"C2BRIDGE_{name.upper()}_ROOT")
    if env:
        return Path(env)
    base = os.environ.get("C2BRIDGE_DATA_ROOT")
    if base:
        return Path(base) / name
    raise FileNotFoundError(f"no local directory for dataset {name!r}: pass --root PATH (or set "
                            f"C2BRIDGE_{name.upper()}_ROOT); datasets are never downloaded")


def _module_digest(cls) -> str:
    """sha256 (12 hex) of the source file defining ``cls``."""
    import hashlib
    import sys

    path = getattr(sys.modules.get(cls.__module__), "__file__", None)
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12] if path else "unknown"


class _ShapesKeyed:
    """A ShapesDataset (images or clips) with the ``dataset_key()`` the feature cache records."""

    def __init__(self, inner, name: str, split: str, n: int, image_size: int, seed: int, num_frames: int | None):
        self.inner, self.name, self.split, self.n = inner, name, split, n
        self.image_size, self.seed, self.num_frames = image_size, seed, num_frames

    def dataset_key(self) -> dict:
        key = {"name": self.name, "split": self.split, "n": self.n, "image_size": self.image_size, "seed": self.seed}
        if self.num_frames:
            key["num_frames"] = self.num_frames
        key["generator"] = _module_digest(type(self.inner))  # a changed world must never read as the old one
        return key

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int) -> dict:
        return self.inner[index]


def build_dataset(name: str, split: str, preset, root=None, limit: int | None = None, seed: int = 0):
    """A map-style dataset (``len``, ``[i]`` -> item dict, ``dataset_key()``) for ``name``/``split``."""
    from c2bridge.presets import Preset, get_preset  # presets name their worlds' loaders: imported on use

    spec = dataset_spec(name)
    preset = preset if isinstance(preset, Preset) else get_preset(preset)
    check_split(split)
    if limit is not None and int(limit) < 1:
        raise ValueError(f"limit must be a positive number of samples, got {limit}")
    frames = clip_frames(preset, name)
    if name in ("shapes", "shapes_clips"):
        n = SHAPES_SPLIT_SIZES[split] if limit is None else min(int(limit), SHAPES_SPLIT_SIZES[split])
        inner = ShapesDataset(split, n, image_size=preset.image_size, seed=seed, num_frames=frames)
        return _ShapesKeyed(inner, name, split, n, preset.image_size, seed, frames)
    if name == "coco":
        return CocoDataset(_resolve_root(name, root), split, preset.image_size, limit=limit)
    if name == "ssv2":
        return SSv2Dataset(_resolve_root(name, root), split, preset.image_size, frames, limit=limit)
    raise AssertionError(f"dataset {spec.name!r} is declared in DATASET_SPECS but build_dataset cannot build it")
