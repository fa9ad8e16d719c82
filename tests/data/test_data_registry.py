"""build_dataset: names, split sizes, limits, keys."""
from __future__ import annotations

import pytest

from c2bridge.data.registry import SHAPES_SPLIT_SIZES, build_dataset


def test_shapes_sizes_limits_and_keys():
    assert SHAPES_SPLIT_SIZES == {"train": 10_000, "val": 1_000, "heldout": 1_000}  # plan section 4.4
    assert len(build_dataset("shapes", "train", "mini")) == 10_000
    ds = build_dataset("shapes", "val", "mini", limit=5, seed=2)
    assert len(ds) == 5 and ds[0]["image"].shape == (3, 32, 32) and ds[4]["sample_id"] != ds[0]["sample_id"]
    keys = {str(build_dataset("shapes", s, "mini", limit=5, seed=seed).dataset_key())
            for s in ("train", "val") for seed in (0, 1)}
    assert len(keys) == 4  # split and seed are part of the key
    assert "generator" in ds.dataset_key()  # a changed shapes world changes every shapes cache key


def test_bad_names():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        build_dataset("imagenet", "train", "mini")
    with pytest.raises(ValueError, match="unknown split 'test'"):
        build_dataset("shapes", "test", "mini")
    with pytest.raises(ValueError, match="limit"):
        build_dataset("shapes", "train", "mini", limit=0)
    with pytest.raises(ValueError, match="unknown preset"):
        build_dataset("shapes", "train", "large")
