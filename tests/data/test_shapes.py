"""The synthetic shapes world: determinism, item contract, split disjointness, rendering vs attributes."""
import pytest
import torch

from c2bridge.data import shapes as S
from c2bridge.data.shapes import ShapesDataset, generate_batch


def test_item_contract():
    item = ShapesDataset("train", 4, image_size=32)[2]
    k = item["num_shapes"]
    assert 1 <= k <= S.MAX_SHAPES
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    assert item["mask"].shape == (32, 32) and item["mask"].dtype == torch.bool
    assert item["boxes"].shape == (k, 4)
    assert item["caption_ids"].dtype == torch.long and item["caption_ids"].shape == (S.MAX_SHAPES * 5,)
    assert isinstance(item["caption"], str) and all(c in item["caption"] for c in item["colours"])
    assert item["sample_id"] == "shapes-train-s0-0000002"


def test_same_seed_same_items_and_seed_changes_them():
    a, b = ShapesDataset("val", 5, seed=3), ShapesDataset("val", 5, seed=3)
    for i in range(5):
        assert torch.equal(a[i]["image"], b[i]["image"]) and a[i]["caption"] == b[i]["caption"]
    c = ShapesDataset("val", 5, seed=4)
    assert not all(torch.equal(a[i]["image"], c[i]["image"]) for i in range(5))


def test_batch_generator_equals_dataset_items():
    ds = ShapesDataset("heldout", 8, image_size=32, seed=1)
    batch = generate_batch("heldout", 3, 5, image_size=32, seed=1)
    for j in range(5):
        item = ds[3 + j]
        assert torch.equal(batch["image"][j], item["image"])
        assert torch.equal(batch["mask"][j], item["mask"])
        assert torch.equal(batch["caption_ids"][j], item["caption_ids"])
        assert batch["sample_id"][j] == item["sample_id"]


def test_splits_disjoint_by_construction():
    n = 1500
    content = {split: {tuple(S.caption_ids_of(ds.shapes(i), ds.config)) for i in range(n)}
               for split, ds in ((s, ShapesDataset(s, n)) for s in S.SPLITS)}
    assert not content["train"] & content["val"]
    assert not content["train"] & content["heldout"] and not content["val"] & content["heldout"]
    # the construction, not luck: val content is exactly bucket 0, train never is
    assert all(S.content_bucket(c) == 0 for c in content["val"])
    assert all(S.content_bucket(c) != 0 for c in content["train"])
    # held-out (colour, kind) pairs: in every heldout image, never in train/val
    for split in S.SPLITS:
        ds = ShapesDataset(split, 300)
        has_pair = [any((s.colour, s.kind) in S.HELDOUT_PAIRS for s in ds.shapes(i)) for i in range(300)]
        assert all(has_pair) if split == "heldout" else not any(has_pair)
    # thousands of distinct images: the task is not a small lookup table
    assert len(content["train"]) > 0.99 * n


def test_mask_boxes_and_colours_match_the_attributes():
    ds = ShapesDataset("train", 40, image_size=32)
    bg = torch.tensor(S.BACKGROUND_RGB).view(3, 1, 1)
    for i in range(40):
        item = ds[i]
        # the GT mask is what spatial IoU sees on the clean picture, and it is the union of the shapes
        assert torch.equal(S.foreground_mask(item["image"]), item["mask"])
        union = item["shape_masks"].any(0)
        assert (union & item["mask"]).sum() / (union | item["mask"]).sum() > 0.85
        for k in range(item["num_shapes"]):
            x0, y0, x1, y1 = item["boxes"][k].tolist()
            cx, cy = item["centers"][k].tolist()
            assert x0 == pytest.approx(cx * 32 - item["sizes"][k].item() * 32, abs=1e-4)
            assert 0 <= x0 < x1 <= 32 and 0 <= y0 < y1 <= 32
            sm = item["shape_masks"][k]
            if sm.sum() > 4:  # visible pixels carry the shape's colour (nearest in the palette)
                mean = item["image"][:, sm].mean(1)
                palette = torch.tensor(list(S.COLOURS.values()))
                assert S.COLOUR_NAMES[(palette - mean).norm(dim=1).argmin()] == item["colours"][k]
            inside_box = torch.zeros(32, 32, dtype=torch.bool)
            inside_box[int(y0):int(y1) + 1, int(x0):int(x1) + 1] = True
            assert not (sm & ~inside_box).any()
        assert ((item["image"] - bg).abs().amax(0)[~item["mask"]] < 0.5).all()


def test_image_size_224_and_clip_variant():
    item = ShapesDataset("train", 1, image_size=224)[0]
    assert item["image"].shape == (3, 224, 224) and item["mask"].shape == (224, 224)
    clip_ds = ShapesDataset("train", 3, image_size=32, num_frames=4)
    clip = clip_ds[1]
    k = clip["num_shapes"]
    assert clip["clip"].shape == (3, 4, 32, 32) and clip["mask"].shape == (4, 32, 32)
    assert clip["boxes"].shape == (4, k, 4) and clip["caption_ids"].shape == (S.MAX_SHAPES * 6,)
    shapes = clip_ds.shapes(1)
    # the shapes move from their start to their end centre
    start = torch.tensor([[s.x, s.y] for s in shapes]) * 32
    end = torch.tensor([[s.x1, s.y1] for s in shapes]) * 32
    centre = lambda b: (b[..., :2] + b[..., 2:]) / 2  # noqa: E731
    assert torch.allclose(centre(clip["boxes"][0]), start, atol=1e-4)
    assert torch.allclose(centre(clip["boxes"][-1]), end, atol=1e-4)


def test_bad_input_is_one_clear_error():
    with pytest.raises(ValueError, match="split"):
        ShapesDataset("test", 3)
    with pytest.raises(ValueError, match="n must be"):
        ShapesDataset("train", -1)
    with pytest.raises(ValueError, match="num_frames"):
        ShapesDataset("train", 2, num_frames=1)
    with pytest.raises(IndexError):
        ShapesDataset("train", 2)[2]
