"""Shared fixtures for the training tests: tiny feature caches (random tiny encoders on the shapes world), built
once per session through the real extraction code, and a helper for short tiny-preset run configs."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_caches(tmp_path_factory):
    """{"train": dir (32 samples), "val": dir (8 samples)} of the `tiny` preset."""
    import torch

    from c2bridge.encoders.extraction import extract

    root = tmp_path_factory.mktemp("tiny_caches")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a shared CPU: one thread is much faster
    try:
        extract("tiny", "shapes", "train", root / "train", limit=32, progress=False)
        extract("tiny", "shapes", "val", root / "val", limit=8, progress=False)
    finally:
        torch.set_num_threads(threads)
    return {"train": str(root / "train"), "val": str(root / "val")}


@pytest.fixture(scope="session")
def heldout_cache(tiny_caches, tmp_path_factory):
    """A second tiny cache from the same encoders (the shapes world's held-out combinations, 16 samples)."""
    import torch

    from c2bridge.encoders.extraction import extract

    root = tmp_path_factory.mktemp("mix_caches")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        extract("tiny", "shapes", "heldout", root / "heldout", limit=16, progress=False)
    finally:
        torch.set_num_threads(threads)
    return str(root / "heldout")


@pytest.fixture
def tiny_config(tiny_caches):
    """Build a short tiny-preset config dict: ``tiny_config(**{"optim.max_steps": 6, ...})``."""

    def make(**dotted) -> dict:
        cfg = {
            "preset": "tiny",
            "seed": 0,
            "threads": 1,  # tiny ops on a shared CPU: one thread is several times faster
            "data": {"train_cache": tiny_caches["train"], "val_cache": tiny_caches["val"]},
            "optim": {"lr": 3e-3, "batch_size": 4, "grad_accum": 1, "max_steps": 8},
            "eval": {"every_steps": 4},
            "checkpoint": {"every_steps": 4, "keep_last": 2},
            "log": {"progress_bar": False},
        }
        for key, value in dotted.items():
            node = cfg
            *parents, leaf = key.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
        return cfg

    return make
