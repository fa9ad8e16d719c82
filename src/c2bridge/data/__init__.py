"""Datasets: synthetic shapes images and clips (``shapes.py``), COCO val2017 (``coco.py``), Something-Something v2
(``ssv2.py``), augmentations that transform image and targets together (``augment.py``), and the factory
``build_dataset`` (``registry.py``). What each dataset yields is declared torch-free in ``c2bridge.datasets``
(``DATASET_SPECS``, ``dataset_item_shape``).

Every item is a dict: ``image`` ``[3,H,W]`` float [0, 1] (or ``clip`` ``[3,F,H,W]``), ``sample_id`` (str, unique
within dataset+split), ``caption`` (str) and, where known, ``mask`` ``[H,W]`` bool (clips ``[F,H,W]``), ``boxes``
``[K,4]`` float xyxy pixels, ``caption_ids`` LongTensor.
"""
from __future__ import annotations

from c2bridge.data import augment, coco, registry, shapes, ssv2
from c2bridge.data.augment import AUGMENTATIONS, Augmenter
from c2bridge.data.coco import CocoDataset
from c2bridge.data.common import SPLITS, UnreadableSample, check_split
from c2bridge.data.registry import SHAPES_SPLIT_SIZES, build_dataset
from c2bridge.data.shapes import ShapesDataset
from c2bridge.data.ssv2 import SSv2Dataset
from c2bridge.datasets import DATASET_SPECS, DATASETS, dataset_item_shape

__all__ = ["AUGMENTATIONS", "Augmenter", "CocoDataset", "DATASETS", "DATASET_SPECS", "SHAPES_SPLIT_SIZES", "SPLITS",
           "SSv2Dataset", "ShapesDataset", "UnreadableSample", "augment", "build_dataset", "check_split", "coco",
           "dataset_item_shape", "registry", "shapes", "ssv2"]
