"""Spatial IoU, param_efficiency and curve summaries, latency/memory."""
import math

import pytest
import torch

from c2bridge.metrics import (
    background_from_target, distance_for_efficiency, generalization_gap, loss_variance, measure_latency,
    param_efficiency, param_memory, peak_memory, spatial_iou, steps_to_plateau,
)

BG = (0.9, 0.9, 0.85)


def _scene(boxes, size=32):
    """Images with filled rectangles (dark red) on the BG colour, and their union masks."""
    images = torch.tensor(BG).view(1, 3, 1, 1).repeat(len(boxes), 1, size, size)
    masks = torch.zeros(len(boxes), size, size, dtype=torch.bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        images[i, :, y0:y1, x0:x1] = torch.tensor([0.6, 0.1, 0.1]).view(3, 1, 1)
        masks[i, y0:y1, x0:x1] = True
    return images, masks


def test_spatial_iou_perfect_empty_and_partial():
    images, masks = _scene([(4, 4, 12, 12), (10, 2, 30, 20)])
    perfect = spatial_iou(images, masks, BG)
    assert torch.equal(perfect["mask_iou"], torch.ones(2)) and torch.equal(perfect["box_iou"], torch.ones(2))
    empty = spatial_iou(torch.tensor(BG).view(1, 3, 1, 1).expand(2, 3, 32, 32), masks, BG)
    assert torch.equal(empty["mask_iou"], torch.zeros(2)) and torch.equal(empty["box_iou"], torch.zeros(2))
    shifted, _ = _scene([(8, 4, 16, 12), (10, 2, 30, 20)])  # first square moved 4 px: overlap 4x8 of 8x8 squares
    partial = spatial_iou(shifted, masks, BG)
    assert partial["mask_iou"][0].item() == pytest.approx(32 / 96)
    assert partial["box_iou"][0].item() == pytest.approx(32 / 96)
    # small noise below the threshold does not count as foreground
    noisy = spatial_iou(images + 0.05 * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
                        .clamp(-0.1, 0.1), masks, BG)
    assert torch.equal(noisy["mask_iou"], torch.ones(2))


def test_spatial_iou_clips_and_background_estimate():
    images, masks = _scene([(4, 4, 12, 12), (10, 2, 30, 20)])
    clip = torch.stack([images, images], dim=2)  # [B, 3, 2, H, W]
    out = spatial_iou(clip, torch.stack([masks, masks], dim=1), BG)
    assert torch.equal(out["mask_iou"], torch.ones(2))
    torch.testing.assert_close(background_from_target(images, masks), torch.tensor([BG, BG]))
    with pytest.raises(ValueError, match="gt_mask"):
        spatial_iou(clip, masks, BG)


def test_param_efficiency_is_the_plans_formula():
    assert param_efficiency(0.176, 0.16) == pytest.approx(0.9, abs=1e-12)
    assert param_efficiency(0.178, 0.16) == pytest.approx(0.8875, abs=1e-12)  # the plan's prose threshold
    assert param_efficiency(0.16, 0.16) == 1.0
    assert param_efficiency(0.12, 0.16) == pytest.approx(1.25)  # beating the reference scores > 1
    assert distance_for_efficiency(0.16, 0.9) == pytest.approx(0.176)
    with pytest.raises(ValueError):
        param_efficiency(0.2, 0.0)


def test_curve_summaries():
    assert loss_variance([5, 5, 1, 3]) == pytest.approx(1.0)  # tail half [1, 3]
    assert loss_variance([2.0] * 10) == 0.0
    decay = [math.exp(-i / 10) for i in range(200)]
    # a steady exponential decay improves by 1 - e^(-1/10) ≈ 9.5% per evaluation: it never plateaus at 1%
    assert steps_to_plateau(decay) is None
    floor = [max(v, 0.25) for v in decay]  # flat from i = 14 (e^(-1.4) ≈ 0.247) on; i = 13 is 0.273
    assert steps_to_plateau(floor, patience=3) == 14
    assert steps_to_plateau(floor, steps=[10 * i for i in range(200)], patience=3) == 140
    assert steps_to_plateau([1.0] * 5) == 0
    assert generalization_gap([0.10, 0.12], [0.15, 0.17]) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="NaN"):
        loss_variance([1.0, float("nan")])


def test_latency_memory_and_param_bytes():
    calls = []
    layer = torch.nn.Linear(10, 5)
    x = torch.randn(4, 10)
    result = measure_latency(lambda t: calls.append(1) or layer(t), x, warmup=2, iters=5)
    assert len(calls) == 7 and result["iters"] == 5 and result["timer"] == "perf_counter"
    assert 0 < result["min_ms"] <= result["median_ms"]
    assert param_memory(layer) == 55 * 4
    # In a fresh process (this one may hold freed-but-resident pages from earlier tests that a new block reuses):
    # 128 MB is large enough that the allocator maps fresh pages.
    import json
    import subprocess
    import sys

    code = ("import json, torch; from c2bridge.metrics.perf import peak_memory; "
            "print(json.dumps(peak_memory(lambda: torch.ones(32_000_000))))")
    mem = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
                     .stdout.strip().splitlines()[-1])
    assert mem["method"].startswith("cpu_") and mem["peak_bytes"] >= mem["baseline_bytes"]
    if mem["method"] == "cpu_vmhwm":
        assert mem["peak_bytes"] - mem["baseline_bytes"] >= 100_000_000
