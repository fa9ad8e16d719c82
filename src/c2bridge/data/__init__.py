"""Datasets: synthetic shapes images and clips (``shapes.py``), COCO val2017 (``coco.py``), Something-Something v2
(``ssv2.py``), augmentations that transform image and targets together (``augment.py``), and the factory
``build_dataset`` with each dataset's item kind (``registry.py``: ``DATASET_SPECS``, ``dataset_item_shape``).

Every item is a dict: ``image`` ``[3,H,W]`` float [0, 1] (or ``clip`` ``[3,F,H,W]``), ``sample_id`` (str, unique
within dataset+split), ``caption`` (str) and, where known, ``mask`` ``[H,W]`` bool, ``boxes`` ``[K,4]`` float xyxy
pixels, ``caption_ids`` LongTensor.

This module stays import-light (no torch at import time); the heavy parts load on first use.
"""
from __future__ import annotations

SPLITS = ("train", "val", "heldout")


class UnreadableSample(Exception):
    """Raised by a dataset's ``__getitem__`` for an item that cannot be decoded (corrupt/missing image or video).

    Extraction skips such items and lists them in the cache manifest instead of failing the whole run.
    """

    def __init__(self, sample_id: str, reason: str):
        super().__init__(f"sample {sample_id!r} is unreadable: {reason}")
        self.sample_id = sample_id
        self.reason = reason


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    return split


_LAZY = {
    "build_dataset": "c2bridge.data.registry",
    "DATASETS": "c2bridge.data.registry",
    "DATASET_SPECS": "c2bridge.data.registry",
    "dataset_item_shape": "c2bridge.data.registry",
    "CocoDataset": "c2bridge.data.coco",
    "SSv2Dataset": "c2bridge.data.ssv2",
    "Augmenter": "c2bridge.data.augment",
    "AUGMENTATIONS": "c2bridge.data.augment",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'c2bridge.data' has no attribute {name!r}")


__all__ = ["SPLITS", "UnreadableSample", "check_split", *_LAZY]
