"""Metric conventions pinned against their references: SSIM as scikit-image computes Wang et al.; spatial IoU with
the threshold the shapes world's ground truth uses (a perfect reconstruction scores exactly 1)."""
import numpy as np
import pytest
import torch

from c2bridge.data import shapes as S
from c2bridge.metrics import background_from_target, get_distance, spatial_iou, ssim
from c2bridge.metrics.image import ssim_frames

from skimage import data as skimage_data  # the reference implementation (the `test` extra)
from skimage.metrics import structural_similarity
from skimage.transform import resize


def reference_ssim(pred: torch.Tensor, target: torch.Tensor) -> list[float]:
    """scikit-image's SSIM per sample of ``[B, 3, H, W]`` (float64, channel first)."""
    return [structural_similarity(p.double().numpy(), t.double().numpy(), gaussian_weights=True, sigma=1.5,
                                  use_sample_covariance=False, data_range=1.0, channel_axis=0)
            for p, t in zip(pred, target)]


def _photos(size: int | None = None) -> torch.Tensor:
    """Real RGB photos from scikit-image's data set, as ``[B, 3, H, W]`` in [0, 1] (one common size)."""
    images = [skimage_data.astronaut(), skimage_data.chelsea(), skimage_data.coffee()]
    side = size or 256
    out = [resize(im, (side, side), anti_aliasing=True) for im in images]  # float64 [0, 1]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float()


def _degraded(x: torch.Tensor) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    return {
        "noise": (x + 0.08 * torch.randn(x.shape, generator=g)).clamp(0, 1),
        "blur": blurred,
        "shift": x.roll(2, dims=-1),
        "contrast": 0.5 + 0.6 * (x - 0.5),
        "unrelated": x.roll(1, dims=0),  # another photo altogether
    }


@pytest.mark.parametrize("size", [None, 32])
def test_ssim_matches_scikit_image_on_real_photos(size):
    x = _photos(size)
    for name, y in _degraded(x).items():
        ours = ssim(y, x)
        ref = torch.tensor(reference_ssim(y, x), dtype=torch.float32)
        torch.testing.assert_close(ours, ref, atol=2e-5, rtol=0, msg=f"{name} at {size or 256} px")
    # perfect reconstruction: exactly 1 (and 1 − SSIM exactly 0), the reference agrees
    assert torch.equal(ssim(x, x), torch.ones(len(x)))
    assert torch.equal(get_distance("one_minus_ssim")(x, x), torch.zeros(len(x)))
    assert reference_ssim(x, x) == [1.0] * len(x)


def test_ssim_averages_the_valid_region_only():
    """The reference's SSIM map averaged over the valid region (5-px border dropped) is our number; the whole-map
    average (torchmetrics' convention) is not, and at 32 px the two differ visibly."""
    x = _photos(32)
    y = _degraded(x)["noise"]
    ours = ssim(y, x)
    for i in range(len(x)):
        _, full_map = structural_similarity(y[i].double().numpy(), x[i].double().numpy(), gaussian_weights=True,
                                            sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=0,
                                            full=True)  # [3, 32, 32]
        assert ours[i].item() == pytest.approx(full_map[:, 5:-5, 5:-5].mean(), abs=2e-5)
        assert abs(ours[i].item() - full_map.mean()) > 1e-3


def test_ssim_clips_batched_and_differentiable():
    x = _photos(32)
    y = _degraded(x)["noise"]
    clip_x, clip_y = torch.stack([x, y], dim=2), torch.stack([y, y], dim=2)  # [B, 3, 2, H, W]
    expected = (torch.tensor(reference_ssim(y, x)) + 1.0) / 2  # frame 0: (y vs x), frame 1: identical
    torch.testing.assert_close(ssim(clip_y, clip_x), expected.float(), atol=2e-5, rtol=0)
    pred = y.clone().requires_grad_(True)  # the 1 − SSIM loss term backpropagates into the prediction
    get_distance("one_minus_ssim")(pred, x).sum().backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim_frames(x[..., :8, :8], x[..., :8, :8])


@pytest.mark.parametrize("split", S.SPLITS)
def test_perfect_reconstruction_scores_iou_exactly_one_on_every_split(split):
    for config in (S.ShapesConfig(), S.ShapesConfig(num_frames=3)):
        batch = S.generate_batch(split, 0, 64, image_size=32, seed=0, config=config)
        pictures = batch["clip"] if config.num_frames else batch["image"]
        masks = batch["mask"]
        # the metric's foreground of the clean picture is the ground-truth mask, pixel for pixel
        assert torch.equal(S.foreground_mask(pictures.movedim(1, -3) if config.num_frames else pictures), masks)
        for background in (S.BACKGROUND_RGB, background_from_target(pictures, masks)):
            scores = spatial_iou(pictures, masks, background)
            assert torch.equal(scores["mask_iou"], torch.ones(64)), (split, config, background)
            assert torch.equal(scores["box_iou"], torch.ones(64))
    # and it is a measurement: a shifted picture scores below 1
    batch = S.generate_batch(split, 0, 16, image_size=32, seed=0)
    assert spatial_iou(batch["image"].roll(4, dims=-1), batch["mask"], S.BACKGROUND_RGB)["mask_iou"].mean() < 0.9


def test_iou_threshold_is_the_ground_truth_threshold():
    import inspect

    from c2bridge.metrics import evaluate, spatial

    assert spatial.FOREGROUND_THRESHOLD == S.FOREGROUND_THRESHOLD
    for fn in (spatial.foreground_mask, spatial.spatial_iou):
        assert inspect.signature(fn).parameters["threshold"].default == S.FOREGROUND_THRESHOLD
    assert inspect.signature(evaluate.evaluate_conditioning).parameters["iou_threshold"].default == \
        S.FOREGROUND_THRESHOLD
