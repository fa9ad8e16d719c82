"""Something-Something v2 reader on generated fixtures: short webm videos written with PyAV (libvpx)."""
from __future__ import annotations

import pytest
import torch

from c2bridge.data import UnreadableSample
from c2bridge.data.registry import build_dataset
from c2bridge.data.ssv2 import SSv2Dataset, sample_frame_indices
from data_files import make_ssv2


@pytest.fixture(scope="module")
def ssv2_root(tmp_path_factory):
    return make_ssv2(tmp_path_factory.mktemp("ssv2"))


def test_uniform_frame_sampling():
    assert sample_frame_indices(10, 3) == [1, 5, 8]
    assert sample_frame_indices(10, 1) == [5]
    with pytest.raises(ValueError, match="2 frames, fewer than the 4"):  # never repeat frames into a still
        sample_frame_indices(2, 4)
    with pytest.raises(ValueError):
        sample_frame_indices(0, 3)


def test_clips_splits_and_broken_video(ssv2_root):
    train = SSv2Dataset(ssv2_root, "train", image_size=16, num_frames=3)
    assert len(train) == 4
    clips = {}
    for k in range(len(train)):
        entry_id = train.entries[k]["id"]
        if entry_id == "101":
            with pytest.raises(UnreadableSample, match="ssv2-101"):
                train[k]
            continue
        item = train[k]
        clips[entry_id] = item
        assert item["clip"].shape == (3, 3, 16, 16) and item["sample_id"] == f"ssv2-{entry_id}"
        assert item["caption"] == f"pushing cup {int(entry_id) - 100} left"
        levels = item["clip"].mean(dim=(0, 2, 3)) * 255  # per sampled frame
        expected = torch.tensor([20.0 * k + 10 for k in (1, 5, 8)])
        assert torch.allclose(levels, expected, atol=6), levels  # lossy codec: within a few grey levels
    assert len(clips) == 3

    held = SSv2Dataset(ssv2_root, "heldout", image_size=16, num_frames=2)
    val = SSv2Dataset(ssv2_root, "val", image_size=16, num_frames=2)
    held_ids, val_ids = {e["id"] for e in held.entries}, {e["id"] for e in val.entries}
    assert len(held_ids) == 2 and len(val_ids) == 2 and not held_ids & val_ids
    assert held_ids | val_ids == {"200", "201", "202", "203"}
    assert [e["id"] for e in SSv2Dataset(ssv2_root, "heldout", 16, 2).entries] == [e["id"] for e in held.entries]


def test_registry_uses_preset_frames(ssv2_root, tmp_path):
    full_frames = build_dataset("ssv2", "val", "tiny", root=ssv2_root, limit=1)
    assert full_frames[0]["clip"].shape == (3, 9, 32, 32)  # tiny preset: 9 frames (8k+1) at 32 px
    assert full_frames.dataset_key()["num_frames"] == 9
    with pytest.raises(FileNotFoundError, match="video directory"):
        (tmp_path / "labels").mkdir()
        SSv2Dataset(tmp_path, "train", 16, 2)
