"""Small deterministic datasets for cache tests (importable by the kill-and-resume subprocess too)."""
from __future__ import annotations

import time

import torch

from c2bridge.data import UnreadableSample


class FakeImages:
    """``n`` images ``[3, S, S]`` with a bright square whose position depends on the index (mask = the square).

    ``unreadable``: indices raising UnreadableSample; ``nan_at``: indices whose image holds a NaN;
    ``delay``: seconds of sleep per item (to make extraction slow enough to interrupt).
    """

    name = "fake"

    def __init__(self, n: int = 10, size: int = 32, unreadable=(), nan_at=(), delay: float = 0.0, tag: str = "a",
                 with_captions: bool = True):
        self.n, self.size, self.unreadable, self.nan_at = n, size, set(unreadable), set(nan_at)
        self.delay, self.tag, self.with_captions = delay, tag, with_captions

    def dataset_key(self) -> dict:
        return {"name": self.name, "n": self.n, "size": self.size, "tag": self.tag,
                "unreadable": sorted(self.unreadable), "nan_at": sorted(self.nan_at)}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        if self.delay:
            time.sleep(self.delay)
        sid = f"fake-{self.tag}-{i:04d}"
        if i in self.unreadable:
            raise UnreadableSample(sid, "corrupt JPEG (test fixture)")
        g = torch.Generator().manual_seed(1000 + i)
        S = self.size
        image = torch.rand(3, S, S, generator=g) * 0.3
        side = S // 4
        top, left = (i * 3) % (S - side), (i * 5) % (S - side)
        mask = torch.zeros(S, S, dtype=torch.bool)
        mask[top:top + side, left:left + side] = True
        image[:, mask] = torch.tensor([0.9, 0.5, 0.1]).view(3, 1)
        if i in self.nan_at:
            image[0, 0, 0] = float("nan")
        item = {"image": image, "sample_id": sid, "caption": f"square {i}", "mask": mask,
                "boxes": torch.tensor([[left, top, left + side, top + side]], dtype=torch.float32)}
        if self.with_captions:
            item["caption_ids"] = torch.tensor([1 + i % 7, 2, 3 + i % 5], dtype=torch.long)
        return item
