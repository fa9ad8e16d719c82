"""COCO val2017 from a local directory, read with pycocotools.

Layout (the official download, unzipped into one ROOT)::

    ROOT/val2017/000000000139.jpg ...
    ROOT/annotations/instances_val2017.json
    ROOT/annotations/captions_val2017.json      (optional: captions; else one built from the category names)

Splits (the plan trains on 5,000 COCO images and holds 500 out, but val2017 has only 5,000 images, so they cannot
be disjoint; held-out evaluation must never see training images, so the held-out set is carved out first):
the image ids are sorted and shuffled once with a fixed split seed (``SPLIT_SEED``, independent of the
extraction seed, so the held-out set never moves), then

- ``heldout``: the first ``min(500, n // 10)`` images (the plan's 500 held-out, for final evaluation only);
- ``val``: the next ``min(250, n // 20)`` images (model selection / early stopping during training);
- ``train``: the rest, at most 5,000 (4,250 with the real val2017).

Every image is centre-cropped to a square and resized to ``image_size``; the mask is the union of all instance masks
(crowd regions included), the boxes are every instance's box (xyxy, pixels of the resized square, boxes cut away by
the crop dropped).

An image that does not decode, or has no annotations (val2017 has 48), raises ``UnreadableSample``: extraction lists
it as a skip with the reason. The split stays the same either way (it is drawn over every image id).
"""
from __future__ import annotations

import os
from pathlib import Path

from c2bridge._io import stable_hash
from c2bridge.data.augment import pil_to_square_tensor, square_boxes, square_mask
from c2bridge.data.common import UnreadableSample, check_split

SPLIT_SEED = 20170  # fixed: the held-out set must not depend on any run's seed
N_HELDOUT = 500
N_VAL = 250
N_TRAIN_MAX = 5000


def coco_split_ids(image_ids, split: str) -> list[int]:
    """The deterministic train/val/heldout partition of ``image_ids`` (see module docstring)."""
    import numpy as np

    check_split(split)
    ids = sorted(int(i) for i in image_ids)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(ids))
    shuffled = [ids[k] for k in order]
    n = len(shuffled)
    n_heldout = min(N_HELDOUT, max(1, n // 10)) if n >= 3 else 0
    n_val = min(N_VAL, max(1, n // 20)) if n >= 3 else 0
    parts = {
        "heldout": shuffled[:n_heldout],
        "val": shuffled[n_heldout:n_heldout + n_val],
        "train": shuffled[n_heldout + n_val:][:N_TRAIN_MAX],
    }
    return parts[split]


def _find(root: Path, candidates: list[str], what: str) -> Path:
    for rel in candidates:
        if (root / rel).exists():
            return root / rel
    raise FileNotFoundError(
        f"COCO {what} not found under {root} (looked for {', '.join(candidates)}); expected the val2017 layout "
        "ROOT/val2017/*.jpg + ROOT/annotations/instances_val2017.json")


class CocoDataset:
    """Map-style dataset over one split of COCO val2017 (items per ``c2bridge.data``)."""

    name = "coco"

    def __init__(self, root: str | os.PathLike, split: str, image_size: int, limit: int | None = None):
        from pycocotools.coco import COCO

        self.root = Path(root)
        self.split = check_split(split)
        self.image_size = int(image_size)
        if not self.root.is_dir():
            raise FileNotFoundError(f"COCO root {self.root} does not exist; expected a directory holding "
                                    "val2017/ and annotations/instances_val2017.json")
        self.instances_path = _find(self.root, ["annotations/instances_val2017.json", "instances_val2017.json"],
                                    "instances annotation file")
        self.image_dir = _find(self.root, ["val2017", "images"], "image directory")
        with open(os.devnull, "w") as devnull:  # pycocotools prints progress to stdout
            import contextlib

            with contextlib.redirect_stdout(devnull):
                self.coco = COCO(str(self.instances_path))
        self.captions: dict[int, str] = {}
        cap_path = self.instances_path.with_name("captions_val2017.json")
        if cap_path.exists():
            import json

            for ann in sorted(json.loads(cap_path.read_text())["annotations"], key=lambda a: a["id"]):
                self.captions.setdefault(int(ann["image_id"]), ann["caption"].strip())
        ids = coco_split_ids(self.coco.getImgIds(), split)
        if limit is not None:
            ids = ids[: int(limit)]
        self.image_ids = ids

    def dataset_key(self) -> dict:
        """What the cache key records: the selection and a fingerprint of the annotation file."""
        return {"name": self.name, "split": self.split, "image_size": self.image_size, "n": len(self.image_ids),
                "split_seed": SPLIT_SEED, "ids": stable_hash(self.image_ids, 16),
                "annotations_bytes": self.instances_path.stat().st_size, "captions": bool(self.captions)}

    def __len__(self) -> int:
        return len(self.image_ids)

    def _caption(self, image_id: int, anns: list[dict]) -> str:
        if image_id in self.captions:
            return self.captions[image_id]
        names: list[str] = []
        for ann in sorted(anns, key=lambda a: -a.get("area", 0)):
            name = self.coco.cats[ann["category_id"]]["name"]
            if name not in names:
                names.append(name)
        if not names:
            return "a photo"
        names = names[:5]
        return "a photo of " + (names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1])

    def __getitem__(self, index: int) -> dict:
        import numpy as np
        from PIL import Image

        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        sample_id = f"coco-{image_id:012d}"
        path = self.image_dir / info["file_name"]
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=[image_id]))
        if not anns:  # no objects to describe or mask: skipped (and listed), like an image that does not decode
            raise UnreadableSample(sample_id, f"{path}: no annotations in {self.instances_path.name}")
        try:
            with Image.open(path) as img:
                img.load()
                width, height = img.size
                image = pil_to_square_tensor(img, self.image_size)  # [3, S, S]
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise UnreadableSample(sample_id, f"{path}: {type(exc).__name__}: {exc}") from exc
        union = np.zeros((height, width), dtype=bool)
        boxes = []
        for ann in anns:
            if ann.get("segmentation"):
                m = self.coco.annToMask(ann)
                if m.shape == union.shape:
                    union |= m.astype(bool)
            x, y, w, h = ann["bbox"]
            boxes.append([x, y, x + w, y + h])
        return {
            "image": image,
            "sample_id": sample_id,
            "caption": self._caption(image_id, anns),
            "mask": square_mask(union, self.image_size),  # [S, S] bool
            "boxes": square_boxes(boxes, width, height, self.image_size),  # [K, 4] xyxy
        }
