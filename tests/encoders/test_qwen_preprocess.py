"""Qwen2.5-VL input sizes follow the processor's smart_resize: sides multiples of patch*merge, aspect ratio kept
within that rounding, pixel count within [min_pixels, max_pixels]; the bounds are in the encoder (cache) key."""
from __future__ import annotations

import pytest
import torch

from c2bridge.encoders.qwen_vl import QwenPreprocess, QwenVLEncoder

SIZES = [(512, 512), (480, 640), (640, 480), (1080, 1920), (300, 2000), (20, 20), (33, 97)]


@pytest.fixture(scope="module")
def mini():
    return QwenVLEncoder.random(32, seed=1, image_size=32)  # the mini preset's Qwen (patch 4 x merge 2 = 8 px)


@pytest.fixture(scope="module")
def full_sized(mini):
    """The real model's processor sizes (patch 14 x merge 2 = 28 px) on the tiny language model: for input sizes
    and processor grids only (the vision tower is never run here)."""
    from c2bridge.smoke import qwen_processor_7b_sizes

    return QwenVLEncoder(mini.model, qwen_processor_7b_sizes(), QwenPreprocess(max_pixels=448 * 448,
                                                                               video_max_pixels=224 * 224),
                         model_id="qwen-7b-sized-processor")


@pytest.mark.parametrize("height,width", SIZES)
def test_full_sized_input_keeps_aspect_ratio_within_28px(full_sized, height, width):
    h, w = full_sized.input_size(height, width)
    assert h % 28 == 0 and w % 28 == 0
    assert 56 * 56 <= h * w <= 448 * 448  # the processor's min (one merged patch: 28^2 here) and our budget
    # each side is the scaled side rounded to a 28 px multiple: the ratio moves by at most that rounding
    assert abs(h / w - height / width) <= (height / width) * (28 / h + 28 / w) + 1e-9


def test_square_inputs_keep_the_old_sizes(full_sized, mini):
    assert full_sized.input_size(512, 512) == (448, 448)  # the full preset's 512 px images: 256 image tokens
    assert full_sized.input_size(512, 512, video=True) == (224, 224)
    assert mini.input_size(32, 32) == (32, 32)  # mini: 4 x 4 merged patches = 16 image tokens, as before


def test_processor_grid_follows_the_resize(full_sized, mini):
    batch = full_sized.build_inputs(torch.rand(2, 3, 480, 640))
    h, w = full_sized.input_size(480, 640)
    assert (h, w) == (364, 504)  # 3:4 kept within the 28 px rounding (0.72), 183,456 <= 448^2 pixels
    assert batch["image_grid_thw"].tolist() == [[1, h // 14, w // 14]] * 2
    image_token = mini.model.config.image_token_id
    assert mini.input_size(16, 40) == (16, 40)  # within the budget: kept as it is, not squashed to a square
    wide = mini.build_inputs(torch.rand(1, 3, 16, 40))
    assert (wide["input_ids"] == image_token).sum() == (16 // 8) * (40 // 8)
    _, mask = mini(torch.rand(2, 3, 16, 40))
    _, square_mask = mini(torch.rand(2, 3, 32, 32))
    assert mask.sum(1).tolist() == [10 + 13] * 2 and square_mask.sum(1).tolist() == [16 + 13] * 2  # + prompt


def test_pixel_bounds_are_in_the_encoder_key(mini):
    key = mini.encoder_key()
    assert key["preprocessing"]["max_pixels"] == 32 * 32 and key["preprocessing"]["min_pixels"] == 8 * 8
    assert QwenVLEncoder.random(32, seed=1, image_size=32).encoder_key() == key
    for options in ({"max_pixels": 24 * 24}, {"min_pixels": 16 * 16}, {"video_max_pixels": 16 * 16},
                    {"video_min_pixels": 128}):
        assert QwenVLEncoder.random(32, seed=1, image_size=32, **options).encoder_key() != key, options


def test_bad_pixel_bounds_are_one_clear_error():
    with pytest.raises(ValueError, match=r"\(patch\*merge\)\^2=64 <= min_pixels <= max_pixels"):
        QwenVLEncoder.random(32, max_pixels=32)
    with pytest.raises(ValueError, match="video_min_pixels"):
        QwenVLEncoder.random(32, image_size=32, video_min_pixels=4096)


def test_clips_reach_the_model_as_a_video_with_their_aspect_ratio(full_sized, mini):
    """A clip goes through the processor's video path (pixel_values_videos / video_grid_thw, frames merged in
    temporal patches of 2), each frame resized by smart_resize within the video pixel bounds."""
    h, w = full_sized.input_size(480, 640, video=True)
    assert h % 28 == 0 and w % 28 == 0 and h * w <= 224 * 224
    assert abs(h / w - 480 / 640) <= (480 / 640) * (28 / h + 28 / w)
    batch = full_sized.build_inputs(torch.rand(1, 3, 4, 480, 640))  # [B, 3, F, H, W]
    assert "pixel_values_videos" in batch and "pixel_values" not in batch
    assert batch["video_grid_thw"].tolist() == [[4 // 2, h // 14, w // 14]]
    video_token = mini.model.config.video_token_id
    wide = mini.build_inputs(torch.rand(1, 3, 4, 16, 40))
    assert (wide["input_ids"] == video_token).sum() == (4 // 2) * (16 // 8) * (40 // 8)  # not squashed to a square
    hidden, mask = mini(torch.rand(2, 3, 4, 16, 40))
    assert hidden.shape[0] == 2 and bool(mask.all(1).any())
