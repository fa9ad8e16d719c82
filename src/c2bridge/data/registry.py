"""What each dataset yields, and ``build_dataset(name, split, preset, root=None, limit=None, seed=0)`` to read it.

Every dataset declares its item kind in ``DATASET_SPECS`` (importable without torch, so the planner, the smoke
run and the caches ask the same question as training does):

- ``shapes``: synthetic shapes images (``c2bridge.data.shapes.ShapesDataset``), the plan's 10,000 train / 1,000 val
  (and 1,000 held-out) items, generated from ``seed``; no root.
- ``shapes_clips``: the same world as clips, every shape moving in a straight line over the preset's clip frames.
- ``coco``: COCO val2017 images under ``root`` (or ``$C2BRIDGE_COCO_ROOT``, or ``$C2BRIDGE_DATA_ROOT/coco``).
- ``ssv2``: Something-Something v2 clips under ``root`` (or ``$C2BRIDGE_SSV2_ROOT``, or
  ``$C2BRIDGE_DATA_ROOT/ssv2``).

Images stay images on every preset: ``image [3, S, S]``. Clips have ``preset.num_frames`` frames:
``clip [3, F, S, S]``. ``S`` is ``preset.image_size`` (the decoder's resolution; the encoders resize to their own
input sizes). ``dataset_item_shape(preset, name) -> (frames, S, S)`` (frames 1 for images) is the one answer.

Bad items are a listed skip, the same way for every dataset: ``__getitem__`` raises ``UnreadableSample`` for an
image or video that does not decode, a clip with fewer frames than the preset samples, a COCO image with no
annotations; extraction lists it (with the reason) in the cache manifest's ``skipped``. A dataset with nothing
readable is one clear error.

Every dataset has ``dataset_key()`` (what the feature-cache key records about it).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ITEM_KINDS = ("image", "clip")
SHAPES_SPLIT_SIZES = {"train": 10_000, "val": 1_000, "heldout": 1_000}  # plan section 4.4


@dataclass(frozen=True)
class DatasetSpec:
    """What one dataset yields: its item kind and whether a reconstruction's spatial IoU means anything on it."""

    name: str
    kind: str  # "image" (item["image"] [3, S, S]) or "clip" (item["clip"] [3, F, S, S], F = preset.num_frames)
    needs_root: bool  # read from a local directory (never downloaded)
    iou_protocol: str | None  # how spatial IoU reads a mask off a reconstruction; None: IoU is not reported
    iou_note: str  # what the protocol is, or why there is none


_BACKGROUND_IOU = ("foreground = pixels differing from the world's one background colour, against the rendered "
                   "ground-truth mask (a perfect reconstruction scores 1)")
DATASET_SPECS: dict[str, DatasetSpec] = {
    "shapes": DatasetSpec("shapes", "image", False, "background_colour", _BACKGROUND_IOU),
    "shapes_clips": DatasetSpec("shapes_clips", "clip", False, "background_colour",
                                _BACKGROUND_IOU + "; per frame, averaged over frames"),
    "coco": DatasetSpec("coco", "image", True, None,
                        "photos have no single background colour, so the foreground read off a reconstruction by its "
                        "distance to one colour is not the objects' mask (a perfect reconstruction would not score 1)"),
    "ssv2": DatasetSpec("ssv2", "clip", True, None, "Something-Something v2 has no masks"),
}
DATASETS = tuple(DATASET_SPECS)


def dataset_spec(name: str) -> DatasetSpec:
    try:
        return DATASET_SPECS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; expected one of {list(DATASETS)}") from None


def _preset(preset):
    from c2bridge.presets import Preset, get_preset

    return preset if isinstance(preset, Preset) else get_preset(preset)


def clip_frames(preset, name: str) -> int | None:
    """Frames per item of dataset ``name`` on ``preset``: None for image datasets; ValueError where the preset
    cannot make that dataset's clips (the shapes world moves its shapes over >= 2 frames)."""
    spec, preset = dataset_spec(name), _preset(preset)
    if spec.kind == "image":
        return None
    frames = int(preset.num_frames)
    if name == "shapes_clips" and frames < 2:
        raise ValueError(f"dataset 'shapes_clips' needs a preset with num_frames >= 2; preset {preset.name!r} has "
                         f"num_frames={frames} (use 'shapes' for images, or a preset with clip frames)")
    return frames


def dataset_item_shape(preset, name: str) -> tuple[int, int, int]:
    """``(frames, height, width)`` of one item of dataset ``name`` on ``preset`` (frames 1 for images; a clip item
    is ``[3, frames, height, width]``, an image ``[3, height, width]``)."""
    frames = clip_frames(preset, name)
    size = int(_preset(preset).image_size)
    return (1 if frames is None else frames), size, size


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
    from c2bridge.data import check_split

    spec, preset = dataset_spec(name), _preset(preset)
    check_split(split)
    if limit is not None and int(limit) < 1:
        raise ValueError(f"limit must be a positive number of samples, got {limit}")
    frames = clip_frames(preset, name)
    if name in ("shapes", "shapes_clips"):
        from c2bridge.data.shapes import ShapesDataset

        n = SHAPES_SPLIT_SIZES[split] if limit is None else min(int(limit), SHAPES_SPLIT_SIZES[split])
        inner = ShapesDataset(split, n, image_size=preset.image_size, seed=seed, num_frames=frames)
        return _ShapesKeyed(inner, name, split, n, preset.image_size, seed, frames)
    if name == "coco":
        from c2bridge.data.coco import CocoDataset

        return CocoDataset(_resolve_root(name, root), split, preset.image_size, limit=limit)
    if name == "ssv2":
        from c2bridge.data.ssv2 import SSv2Dataset

        return SSv2Dataset(_resolve_root(name, root), split, preset.image_size, frames, limit=limit)
    raise AssertionError(f"dataset {spec.name!r} is declared in DATASET_SPECS but build_dataset cannot build it")
