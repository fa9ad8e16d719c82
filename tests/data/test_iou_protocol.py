"""Spatial IoU only where a dataset declares it meaningful: a perfect reconstruction scores IoU 1 wherever IoU is
reported (the shapes world, images and clips); COCO photos report n/a with the reason."""
from __future__ import annotations

import pytest
import torch

from c2bridge.data.registry import build_dataset
from c2bridge.datasets import DATASET_SPECS
from c2bridge.metrics.evaluate import evaluate_conditioning
from c2bridge.presets import get_preset
from data_files import make_coco


class OracleBridge:
    """A decoder stand-in whose 'sample' is the conditioning itself: with ``perfect`` below, the reconstruction is
    exactly the target."""

    default_steps = 1

    def sample(self, cond, mask, **kwargs):
        return cond


def perfect(batch):
    return batch["target"].float(), None


def _batch(ds, n: int) -> dict:
    items = []
    for i in range(len(ds)):
        try:
            items.append(ds[i])
        except Exception:  # the fixture's corrupt image
            continue
        if len(items) == n:
            break
    pixels = "clip" if "clip" in items[0] else "image"
    return {"target": torch.stack([it[pixels] for it in items]), "mask": torch.stack([it["mask"] for it in items])}


@pytest.mark.parametrize("name", ["shapes", "shapes_clips"])
def test_perfect_reconstruction_scores_iou_one_where_reported(name):
    assert DATASET_SPECS[name].iou_protocol is not None
    preset = get_preset("tiny").replace(num_frames=5)
    batch = _batch(build_dataset(name, "val", preset, limit=4), 4)
    out = evaluate_conditioning(perfect, OracleBridge(), batch, dataset=name, batch_size=2)
    assert out["mask_iou"] == 1.0 and out["box_iou"] == 1.0 and "iou_note" not in out
    assert out["per_sample"]["mask_iou"] == [1.0] * 4
    if name == "shapes_clips":
        assert out["flicker"] == 0.0 and out["warp_error"] == 0.0
        assert out["mask_iou_std"] == 0.0 and out["mask_iou_delta"] == 0.0
    else:
        assert "flicker" not in out  # images have no temporal scores


def test_coco_reports_iou_as_na_with_the_reason(tmp_path):
    assert DATASET_SPECS["coco"].iou_protocol is None and DATASET_SPECS["ssv2"].iou_protocol is None
    ds = build_dataset("coco", "train", "tiny", root=make_coco(tmp_path / "coco"))
    batch = _batch(ds, 3)
    out = evaluate_conditioning(perfect, OracleBridge(), batch, dataset="coco")
    assert out["mask_iou"] is None and out["box_iou"] is None
    assert out["iou_note"].startswith("coco: ") and "background colour" in out["iou_note"]
    assert "mask_iou" not in out["per_sample"]
    # the same photos scored the shapes world's way would fail a perfect reconstruction: why it is n/a
    naive = evaluate_conditioning(perfect, OracleBridge(), batch)
    assert naive["mask_iou"] < 0.99


def test_the_dataset_comes_from_the_cache_key(tmp_path):
    """A FeatureCache records its dataset: evaluation on a COCO cache reports n/a without being told."""
    from c2bridge.encoders.extraction import extract

    coco = extract("tiny", "coco", "train", tmp_path / "coco_cache", root=make_coco(tmp_path / "coco"),
                   limit=4, progress=False)
    out = evaluate_conditioning(perfect, OracleBridge(), coco)
    assert out["mask_iou"] is None and out["iou_note"].startswith("coco: ")
    shapes = extract("tiny", "shapes", "val", tmp_path / "shapes_cache", limit=4, progress=False)
    out = evaluate_conditioning(perfect, OracleBridge(), shapes)
    assert out["mask_iou"] == pytest.approx(1.0) and out["n"] == 4


def test_clip_cache_through_the_tiny_decoder_reports_temporal_scores(tmp_path):
    """A shapes_clips cache sampled by the real (tiny) LTX pipeline: IoU and the temporal scores are reported."""
    from c2bridge.decoder import LTXBridge
    from c2bridge.encoders.extraction import extract

    preset = get_preset("tiny").replace(num_frames=5)  # 4k+1 frames for the tiny VAE
    cache = extract(preset, "shapes_clips", "val", tmp_path / "clips", limit=2, batch_size=2, progress=False)
    bridge = LTXBridge.from_preset("tiny", seed=0)
    out = evaluate_conditioning(lambda b: bridge.null_cond(len(b["target"])), bridge, cache, steps=2)
    assert out["n"] == 2 and 0 <= out["mask_iou"] <= 1 and "iou_note" not in out
    for name in ("flicker", "warp_error", "mask_iou_std", "mask_iou_delta"):
        assert len(out["per_sample"][name]) == 2 and out[name] >= 0
    assert out["flicker"] > 0  # random decoder, zero conditioning: not the target's motion
