"""Something-Something v2 from a local directory, decoded with PyAV.

Layout (the official download)::

    ROOT/20bn-something-something-v2/<id>.webm      (``ROOT/videos/`` is accepted too)
    ROOT/labels/train.json                          (``something-something-v2-train.json`` names too)
    ROOT/labels/validation.json

Each labels entry is ``{"id": "78687", "label": "holding potato next to vicks vaporub bottle", "template": ...}``;
the ``label`` (the template with its placeholders filled in) is the caption.

Splits (SSv2's test labels are not public): ``train`` = the train list, shuffled once with a fixed split seed,
at most 5,000 (the plan's budget); the validation list, shuffled the same way, gives ``heldout`` = its first
``min(500, n // 2)`` entries and ``val`` = the next ``min(250, ...)``.

Items are clips ``[3, F, S, S]``: ``F`` frames sampled uniformly (the centre of ``F`` equal segments), each
centre-cropped to a square and resized to ``image_size``. No masks or boxes (SSv2 has none).

A video that does not decode, or has fewer than ``F`` frames, raises ``UnreadableSample`` (extraction lists it as a
skip with the reason).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from c2bridge._io import stable_hash
from c2bridge.data.augment import pil_to_square_tensor
from c2bridge.data.common import UnreadableSample, check_split

SPLIT_SEED = 20182
N_TRAIN_MAX = 5000
N_HELDOUT = 500
N_VAL = 250
TRUNCATION_TOLERANCE = 0.05  # decoded frames ending more than this share (+ one frame) before the declared end

_LABEL_FILES = {
    "train": ["labels/train.json", "labels/something-something-v2-train.json", "train.json"],
    "validation": ["labels/validation.json", "labels/something-something-v2-validation.json", "validation.json"],
}
_VIDEO_DIRS = ["20bn-something-something-v2", "videos"]


def _shuffled(entries: list[dict]) -> list[dict]:
    import numpy as np

    entries = sorted(entries, key=lambda e: str(e["id"]))
    order = np.random.default_rng(SPLIT_SEED).permutation(len(entries))
    return [entries[k] for k in order]


def ssv2_split_entries(root: Path, split: str) -> list[dict]:
    check_split(split)
    which = "train" if split == "train" else "validation"
    for rel in _LABEL_FILES[which]:
        if (root / rel).exists():
            entries = _shuffled(json.loads((root / rel).read_text()))
            break
    else:
        raise FileNotFoundError(f"SSv2 {which} labels not found under {root} (looked for "
                                f"{', '.join(_LABEL_FILES[which])})")
    if split == "train":
        return entries[:N_TRAIN_MAX]
    n_heldout = min(N_HELDOUT, len(entries) // 2)
    held, rest = entries[:n_heldout], entries[n_heldout:]
    return held if split == "heldout" else rest[:N_VAL]


def sample_frame_indices(n_frames: int, num_frames: int) -> list[int]:
    """Centres of ``num_frames`` equal segments of ``[0, n_frames)`` (uniform temporal sampling).

    A video with fewer frames than ``num_frames`` is a ValueError (repeating frames would fake a still scene)."""
    if n_frames < 1:
        raise ValueError("video has no frames")
    if n_frames < num_frames:
        raise ValueError(f"video has {n_frames} frames, fewer than the {num_frames} frames a clip samples")
    return [min(n_frames - 1, int((k + 0.5) * n_frames / num_frames)) for k in range(num_frames)]


def decode_clip(path: str | os.PathLike, num_frames: int, image_size: int):
    """Decode every frame with PyAV, keep ``num_frames`` uniformly sampled -> ``[3, F, S, S]`` float [0, 1]."""
    import av

    with av.open(str(path)) as container:
        decoded = list(container.decode(video=0))
        _check_complete(decoded, container)
        frames = [frame.to_image() for frame in decoded]
    picked = [pil_to_square_tensor(frames[i], image_size) for i in sample_frame_indices(len(frames), num_frames)]
    return torch.stack(picked, dim=1)  # [3, F, S, S]


def _check_complete(frames: list, container) -> None:
    """A truncated file often decodes without an error, just fewer frames: compare the decoded span with the
    duration the container declares (when it declares one) and refuse a video that stops short of it."""
    declared = container.duration / 1e6 if container.duration else None  # seconds (av.time_base units)
    rate = container.streams.video[0].average_rate
    if not frames or declared is None or not rate or frames[-1].time is None:
        return
    decoded = float(frames[-1].time) + 1.0 / float(rate)  # end of the last decoded frame
    if decoded < (1 - TRUNCATION_TOLERANCE) * declared - 1.0 / float(rate):
        raise ValueError(f"truncated: frames end at {decoded:.2f} s of the {declared:.2f} s the container declares")


class SSv2Dataset:
    """Map-style dataset over one split of Something-Something v2 (items carry ``clip`` ``[3,F,S,S]``)."""

    name = "ssv2"

    def __init__(self, root: str | os.PathLike, split: str, image_size: int, num_frames: int,
                 limit: int | None = None):
        self.root = Path(root)
        self.split = check_split(split)
        self.image_size = int(image_size)
        self.num_frames = int(num_frames)
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        if not self.root.is_dir():
            raise FileNotFoundError(f"SSv2 root {self.root} does not exist; expected labels/*.json and "
                                    "20bn-something-something-v2/*.webm")
        for rel in _VIDEO_DIRS:
            if (self.root / rel).is_dir():
                self.video_dir = self.root / rel
                break
        else:
            raise FileNotFoundError(f"SSv2 video directory not found under {self.root} (looked for {_VIDEO_DIRS})")
        entries = ssv2_split_entries(self.root, split)
        self.entries = entries[: int(limit)] if limit is not None else entries

    def dataset_key(self) -> dict:
        return {"name": self.name, "split": self.split, "image_size": self.image_size,
                "num_frames": self.num_frames, "n": len(self.entries), "split_seed": SPLIT_SEED,
                "ids": stable_hash([str(e["id"]) for e in self.entries], 16), "frame_sampling": "segment_centres"}

    def __len__(self) -> int:
        return len(self.entries)

    def _video_path(self, video_id: str) -> Path:
        for ext in (".webm", ".mp4"):
            if (self.video_dir / f"{video_id}{ext}").exists():
                return self.video_dir / f"{video_id}{ext}"
        return self.video_dir / f"{video_id}.webm"

    def __getitem__(self, index: int) -> dict:
        entry = self.entries[index]
        video_id = str(entry["id"])
        sample_id = f"ssv2-{video_id}"
        path = self._video_path(video_id)
        try:
            clip = decode_clip(path, self.num_frames, self.image_size)
        except Exception as exc:  # PyAV raises many error types for broken/missing files
            raise UnreadableSample(sample_id, f"{path}: {type(exc).__name__}: {exc}") from exc
        caption = entry.get("label") or entry.get("template", "").replace("[", "").replace("]", "")
        return {"clip": clip, "sample_id": sample_id, "caption": caption}
