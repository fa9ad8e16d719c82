"""Temporal coherence metrics on constructed clips: moving shapes from the synthetic world, still clips, shuffled
frames, constant offsets, known translations."""
from __future__ import annotations

import pytest
import torch

from c2bridge.data.shapes import BACKGROUND_RGB, ShapesDataset
from c2bridge.metrics.temporal import (block_matching_flow, flicker, mask_iou_per_frame, temporal_coherence,
                                       warp_error)
from c2bridge.metrics.temporal import _warp

FRAMES = 9
ORDER_SHUFFLED = [3, 0, 7, 1, 5, 8, 2, 6, 4]


@pytest.fixture(scope="module")
def moving():
    """Four moving-shapes clips [4, 3, 9, 32, 32] with their per-frame masks [4, 9, 32, 32]."""
    ds = ShapesDataset("val", 4, image_size=32, num_frames=FRAMES)
    items = [ds[i] for i in range(len(ds))]
    return torch.stack([it["clip"] for it in items]), torch.stack([it["mask"] for it in items])


def _scores(recon, target, masks):
    return temporal_coherence(recon, target, gt_mask=masks, background=BACKGROUND_RGB)


def test_static_clip_reconstructed_perfectly_has_zero_flicker(moving):
    clips, _ = moving
    still = clips[:, :, :1].expand_as(clips).contiguous()
    scores = temporal_coherence(still, still)
    assert torch.equal(scores["flicker"], torch.zeros(4)) and torch.equal(scores["warp_error"], torch.zeros(4))


def test_perfect_reconstruction_scores_perfectly(moving):
    clips, masks = moving
    assert not torch.equal(masks[:, 0], masks[:, -1])  # the shapes do move
    scores = _scores(clips, clips, masks)
    for name in ("flicker", "warp_error", "distance", "mask_iou_std", "mask_iou_delta"):
        assert torch.allclose(scores[name], torch.zeros(4), atol=1e-6), (name, scores[name])
    assert torch.equal(scores["mask_iou_mean"], torch.ones(4))


def test_shuffled_frames_score_clearly_worse_than_ordered(moving):
    clips, masks = moving
    noise = 0.03 * torch.randn(clips.shape, generator=torch.Generator().manual_seed(0))
    ordered = _scores((clips + noise).clamp(0, 1), clips, masks)
    shuffled = _scores((clips[:, :, ORDER_SHUFFLED] + noise).clamp(0, 1), clips, masks)
    for name in ("flicker", "warp_error", "mask_iou_delta", "mask_iou_std"):
        assert (shuffled[name] > 2 * ordered[name]).all(), (name, shuffled[name], ordered[name])
    assert (shuffled["mask_iou_mean"] < ordered["mask_iou_mean"] - 0.2).all()


def test_constant_offset_is_not_flicker_but_is_distance(moving):
    clips, _ = moving
    offset = clips + 0.04  # stays inside [0, 1]: the brightest shape colour is 0.95
    assert offset.max() <= 1
    scores = temporal_coherence(offset, clips)
    assert (scores["flicker"] < 1e-6).all() and (scores["warp_error"] < 1e-6).all()
    assert (scores["distance"] > 1e-3).all()


def test_a_frozen_reconstruction_of_motion_flickers(moving):
    """Freezing the first frame is not temporal coherence: the target moves, the reconstruction does not."""
    clips, _ = moving
    frozen = clips[:, :, :1].expand_as(clips).contiguous()
    assert (flicker(frozen, clips) > 0.005).all() and (warp_error(frozen, clips) > 0.001).all()


def test_block_matching_recovers_a_known_translation():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 1, 40, 40, generator=g)
    b = torch.roll(a, shifts=(2, -3), dims=(2, 3))  # a(p) = b(p + (2, -3))
    flow = block_matching_flow(a, b, radius=4)
    inner = (slice(None), slice(None), slice(6, 34), slice(6, 34))  # away from the rolled-over border
    assert torch.equal(flow[inner][:, 0], torch.full((2, 28, 28), 2))
    assert torch.equal(flow[inner][:, 1], torch.full((2, 28, 28), -3))
    assert torch.equal(_warp(b, flow)[inner], a[inner])
    flat = torch.full((1, 1, 16, 16), 0.5)
    assert torch.equal(block_matching_flow(flat, flat), torch.zeros(1, 2, 16, 16, dtype=torch.long))  # ties -> 0


def test_flow_is_estimated_at_low_resolution_and_scaled(moving):
    """A 128 px clip (flow at 64 px, scale 2): a perfect reconstruction is still exactly 0, a shuffle is not."""
    clips, _ = moving
    big = torch.nn.functional.interpolate(clips.flatten(1, 2), scale_factor=4, mode="nearest").view(
        4, 3, FRAMES, 128, 128)
    assert torch.equal(warp_error(big, big), torch.zeros(4))
    assert (warp_error(big[:, :, ORDER_SHUFFLED], big) > 0.01).all()


def test_per_frame_iou_and_bad_inputs(moving):
    clips, masks = moving
    per_frame = mask_iou_per_frame(clips, masks, BACKGROUND_RGB)
    assert per_frame.shape == (4, FRAMES) and torch.equal(per_frame, torch.ones(4, FRAMES))
    with pytest.raises(ValueError, match="F >= 2"):
        flicker(clips[:, :, :1], clips[:, :, :1])
    with pytest.raises(ValueError, match="clips"):
        temporal_coherence(clips[:, :, 0], clips[:, :, 0])
    with pytest.raises(ValueError, match="differ in shape"):
        flicker(clips, clips[:, :, :5])
    with pytest.raises(ValueError, match="background"):
        temporal_coherence(clips, clips, gt_mask=masks)
