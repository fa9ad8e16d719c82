"""Augmentations move targets with the pixels, are seeded per (seed, index, view), and leave the global RNG alone."""
from __future__ import annotations

import pytest
import torch

from c2bridge.data.augment import Augmenter
from c2bridge.data.shapes import ShapesDataset, foreground_mask


@pytest.fixture(scope="module")
def shapes():
    return ShapesDataset("train", 8, image_size=32, seed=0)


def iou(a, b):
    return float((a & b).sum()) / max(1, float((a | b).sum()))


def test_seeded_per_item_and_view(shapes):
    aug = Augmenter("color_jitter", seed=3)
    state = torch.random.get_rng_state()
    a = aug(shapes[2], 2, 0)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a["image"], Augmenter("color_jitter", seed=3)(shapes[2], 2, 0)["image"])
    assert not torch.equal(a["image"], aug(shapes[2], 2, 1)["image"])  # another view
    assert not torch.equal(a["image"], Augmenter("color_jitter", seed=4)(shapes[2], 2, 0)["image"])  # another seed
    assert Augmenter("none").key() == {"kind": "none"} and aug.key()["seed"] == 3
    with pytest.raises(ValueError, match="unknown augmentation"):
        Augmenter("cutmix")
    with pytest.raises(ValueError, match="crop_scale"):
        Augmenter("random_crop", crop_scale=(0.5, 1.2))


def test_color_jitter_changes_pixels_not_targets(shapes):
    item = shapes[1]
    out = Augmenter("color_jitter", seed=0)(item, 1, 0)
    assert not torch.allclose(out["image"], item["image"]) and 0 <= out["image"].min() and out["image"].max() <= 1
    assert torch.equal(out["mask"], item["mask"]) and torch.equal(out["boxes"], item["boxes"])
    assert item["image"] is not out["image"]  # input left untouched


def test_random_crop_moves_mask_and_boxes_with_the_pixels(shapes):
    aug = Augmenter("random_crop", seed=0)
    for index in range(6):
        item = shapes[index]
        out = aug(item, index, 0)
        info = out["augment"]
        assert 0.8 - 0.07 <= info["height"] * info["width"] / 32 ** 2 <= 1.0  # scale 0.8-1.0 (integer sides)
        # the cropped mask still marks exactly what the cropped picture shows as foreground
        assert iou(out["mask"], foreground_mask(out["image"])) > 0.75  # resampling blurs edges of small shapes
        if info["height"] < 32:  # a real crop moved things: the uncropped mask no longer fits as well
            assert iou(item["mask"], foreground_mask(out["image"])) < iou(out["mask"], foreground_mask(out["image"]))
        ys, xs = torch.nonzero(out["mask"], as_tuple=True)
        lo = out["boxes"][:, :2].min(0).values
        hi = out["boxes"][:, 2:].max(0).values
        assert xs.min() >= lo[0] - 1 and ys.min() >= lo[1] - 1 and xs.max() < hi[0] + 1 and ys.max() < hi[1] + 1
        assert "centers" not in out  # attributes in the old frame are dropped, not left wrong


def test_mixup_blends_pixels_and_unites_targets(shapes):
    aug = Augmenter("mixup", seed=0)
    out = aug(shapes[3], 3, 0, get_item=shapes.__getitem__, n_items=len(shapes))
    lam, partner_id = out["augment"]["lam"], out["augment"]["partner"]
    partner = next(shapes[j] for j in range(len(shapes)) if shapes[j]["sample_id"] == partner_id)
    assert partner_id != shapes[3]["sample_id"] and 0 < lam < 1
    assert torch.allclose(out["image"], lam * shapes[3]["image"] + (1 - lam) * partner["image"], atol=1e-6)
    assert torch.equal(out["mask"], shapes[3]["mask"] | partner["mask"])
    assert len(out["boxes"]) == len(shapes[3]["boxes"]) + len(partner["boxes"])
    dominant = shapes[3] if lam >= 0.5 else partner
    assert torch.equal(out["caption_ids"], dominant["caption_ids"])
    with pytest.raises(ValueError, match="at least 2"):
        aug(shapes[0], 0, 0)


def test_clip_crop_is_the_same_for_every_frame():
    clips = ShapesDataset("train", 2, image_size=32, seed=0, num_frames=3)
    item = clips[0]
    out = Augmenter("random_crop", seed=1)(item, 0, 0)
    assert out["clip"].shape == item["clip"].shape and out["mask"].shape == item["mask"].shape
    assert out["boxes"].shape == item["boxes"].shape
    for f in range(3):
        assert iou(out["mask"][f], foreground_mask(out["clip"][:, f])) > 0.85
