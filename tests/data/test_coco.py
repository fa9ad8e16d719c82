"""COCO val2017 reader on a generated fixture (COCO-format json + a few PIL images, one of them corrupt)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from c2bridge.data import UnreadableSample
from c2bridge.data.coco import CocoDataset, coco_split_ids
from c2bridge.data.registry import build_dataset
from data_files import CORRUPT_ID, N_IMAGES, make_coco


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    return make_coco(tmp_path_factory.mktemp("coco"))


def test_plan_split_sizes_are_disjoint_and_fixed():
    parts = {s: coco_split_ids(range(1, 5001), s) for s in ("train", "val", "heldout")}
    assert {s: len(v) for s, v in parts.items()} == {"train": 4250, "val": 250, "heldout": 500}
    assert sum(map(len, parts.values())) == len(set().union(*map(set, parts.values()))) == 5000
    assert parts["heldout"] == coco_split_ids(reversed(range(1, 5001)), "heldout")  # order of input irrelevant
    with pytest.raises(ValueError, match="unknown split"):
        coco_split_ids(range(10), "test")


def test_fixture_splits_and_items(coco_root):
    splits = {s: CocoDataset(coco_root, s, image_size=32) for s in ("train", "val", "heldout")}
    ids = {s: set(d.image_ids) for s, d in splits.items()}
    assert [len(ids[s]) for s in ("train", "val", "heldout")] == [10, 1, 1]
    assert set().union(*ids.values()) == set(range(1, N_IMAGES + 1)) and sum(map(len, ids.values())) == N_IMAGES
    assert CocoDataset(coco_root, "train", image_size=32).image_ids == splits["train"].image_ids  # deterministic
    assert len(CocoDataset(coco_root, "train", image_size=32, limit=3)) == 3

    ds = splits["train"]
    for k in range(len(ds)):
        if ds.image_ids[k] == CORRUPT_ID:
            with pytest.raises(UnreadableSample, match=f"coco-0000000000{CORRUPT_ID:02d}"):
                ds[k]
            continue
        item = ds[k]
        image_id = ds.image_ids[k]
        assert item["image"].shape == (3, 32, 32) and 0 <= item["image"].min() and item["image"].max() <= 1
        assert item["sample_id"] == f"coco-{image_id:012d}"
        # the mask (from the polygon via pycocotools) sits on the red rectangle after the same crop + resize
        red = (item["image"][0] > 0.6) & (item["image"][1] < 0.4)
        iou = (red & item["mask"]).sum() / (red | item["mask"]).sum()
        assert iou > 0.8, (image_id, iou)
        # and the box is the mask's extent (xyxy, pixels of the 32 px square)
        ys, xs = torch.nonzero(item["mask"], as_tuple=True)
        assert item["boxes"].shape == (1, 4)
        assert torch.allclose(item["boxes"][0], torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float(),
                              atol=1.01)
        if image_id % 3 == 0:
            assert item["caption"] == f"A red box number {image_id}."
        else:
            assert item["caption"] == "a photo of " + ("cup" if image_id % 2 else "dog")


def test_registry_and_missing_root(coco_root, tmp_path, monkeypatch):
    ds = build_dataset("coco", "heldout", "tiny", root=coco_root)
    assert len(ds) == 1 and ds[0]["image"].shape == (3, 32, 32)  # tiny preset: image_size 32
    monkeypatch.delenv("C2BRIDGE_COCO_ROOT", raising=False)
    monkeypatch.delenv("C2BRIDGE_DATA_ROOT", raising=False)
    with pytest.raises(FileNotFoundError, match="--root"):
        build_dataset("coco", "train", "tiny")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_dataset("coco", "train", "tiny", root=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="instances"):
        build_dataset("coco", "train", "tiny", root=tmp_path / "empty")
    monkeypatch.setenv("C2BRIDGE_COCO_ROOT", str(coco_root))
    assert len(build_dataset("coco", "val", "tiny")) == 1


def test_extract_skips_the_corrupt_image(coco_root, tmp_path):
    from c2bridge.encoders.extraction import extract

    cache = extract("tiny", "coco", "train", tmp_path / "cache", root=coco_root, batch_size=4, shard_size=4,
                    progress=False)
    assert len(cache) == 9 and cache.manifest["skipped"][0]["sample_id"] == f"coco-{CORRUPT_ID:012d}"
    assert cache.fields == ["mask"] and cache[0]["mask"].shape == (32, 32)
