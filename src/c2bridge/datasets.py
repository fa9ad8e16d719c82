"""What each dataset yields, importable without torch: the planner, the smoke run, the caches and training ask
this module the same question.

- ``shapes``: synthetic shapes images; ``shapes_clips``: the same world as clips, every shape moving in a straight
  line; ``coco``: COCO val2017 photos; ``ssv2``: Something-Something v2 clips.
- Images stay images on every preset: ``image [3, S, S]``. Clips have ``preset.num_frames`` frames:
  ``clip [3, F, S, S]``. ``S`` is ``preset.image_size`` (the decoder's resolution).
- ``dataset_item_shape(preset, name) -> (frames, S, S)`` (frames 1 for images) is the one answer;
  ``DATASET_SPECS[name].iou_protocol`` says whether spatial IoU of a reconstruction means anything on it.

The readers live in ``c2bridge.data`` (``build_dataset``).
"""
from __future__ import annotations

from dataclasses import dataclass

from c2bridge.presets import Preset, get_preset

ITEM_KINDS = ("image", "clip")


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
