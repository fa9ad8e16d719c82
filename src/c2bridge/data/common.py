"""What every dataset module shares: the split names, the check, and the error an unreadable item raises."""
from __future__ import annotations

SPLITS = ("train", "val", "heldout")


class UnreadableSample(Exception):
    """Raised by a dataset's ``__getitem__`` for an item that cannot be used: an image or video that does not
    decode (or is truncated), a clip shorter than the frames it must give, a COCO image without annotations.

    Extraction skips such items and lists them (with the reason) in the cache manifest instead of failing the run.
    """

    def __init__(self, sample_id: str, reason: str):
        super().__init__(f"sample {sample_id!r} is unreadable: {reason}")
        self.sample_id = sample_id
        self.reason = reason


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    return split
