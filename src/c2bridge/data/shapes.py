"""The synthetic shapes world: 1-3 coloured shapes on a known background, fully described by a caption.

Everything is deterministic from ``(seed, split, index)``: item ``i`` of a split is drawn by its own
``random.Random`` (string-seeded, so independent of PYTHONHASHSEED and of the other items), which makes random
access, batching and resumable caching all give the same images.

Attributes per shape: kind, colour, centre ``(x, y)`` and size ``r`` (continuous, in units of the image side;
``r`` is the half-extent, the shape fits the box ``[x-r, y-r, x+r, y+r]``). Clips move every shape in a straight
line from its start to its end centre over F frames.

Splits are disjoint by construction:
- ``heldout``: every image contains at least one shape whose (colour, kind) pair is in ``HELDOUT_PAIRS``;
  ``train`` and ``val`` never contain those pairs.
- ``train`` / ``val``: an image belongs to ``val`` iff a hash of its quantized content (its ``caption_ids``) falls
  in the val bucket. Two images with the same caption tokens therefore always land in the same split, so no val
  caption (and no val image) can ever appear in train. Each split draws from its own seed stream and rejects
  candidates of the other bucket.

Caption tokens (the mini decoder's own "tokenizer", ``caption_ids``): per shape, in draw order, 5 tokens
``colour, kind, x-bin, y-bin, size-bin`` (+ a motion token for clips), padded with ``PAD_ID`` to ``MAX_SHAPES``
shapes. Bins are in normalized units, so the vocabulary is the same at every image size.
"""
from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch.utils.data import Dataset

# ---------------------------------------------------------------------------------------------------------------
# The world's constants (documented in docs/mini_world.md)

BACKGROUND_RGB = (0.25, 0.25, 0.25)  # known background colour; spatial IoU = pixels differing from it vs the GT mask
FOREGROUND_THRESHOLD = 0.2  # a pixel is foreground when max_c |pixel_c - BACKGROUND_RGB_c| exceeds this
KINDS = ("circle", "square", "triangle")
COLOURS = {  # name -> RGB in [0, 1]; every colour differs from the background by >= 0.55 in some channel
    "red": (0.90, 0.10, 0.10),
    "green": (0.10, 0.80, 0.15),
    "blue": (0.10, 0.20, 0.95),
    "yellow": (0.95, 0.85, 0.10),
    "magenta": (0.85, 0.10, 0.85),
    "cyan": (0.10, 0.85, 0.90),
}
COLOUR_NAMES = tuple(COLOURS)
HELDOUT_PAIRS = frozenset({("green", "triangle"), ("blue", "circle"), ("yellow", "square")})  # (colour, kind)
SPLITS = ("train", "val", "heldout")

MAX_SHAPES = 3
MIN_SHAPES = 1
SIZE_RANGE = (0.15, 0.26)  # half-extent r / image side (4.8-8.3 px at 32 px: large enough for IoU >= 0.8 via the VAE)
MIN_SEPARATION = 0.95  # centres at least this * (r1 + r2) apart, so no shape is hidden
POS_BINS = 32  # x / y bins of the caption (1 px at 32 px)
SIZE_BINS = 8
MOTIONS = ("still", "right", "down-right", "down", "down-left", "left", "up-left", "up", "up-right")
VAL_BUCKETS = 8  # hash(content) % VAL_BUCKETS == 0 -> val (1/8 of the content space)

# Token vocabulary: one id space, field offsets in order.
PAD_ID = 0
_COLOUR_OFFSET = 1
_KIND_OFFSET = _COLOUR_OFFSET + len(COLOURS)
_X_OFFSET = _KIND_OFFSET + len(KINDS)
_Y_OFFSET = _X_OFFSET + POS_BINS
_SIZE_OFFSET = _Y_OFFSET + POS_BINS
_MOTION_OFFSET = _SIZE_OFFSET + SIZE_BINS
VOCAB_SIZE = _MOTION_OFFSET + len(MOTIONS)
TOKENS_PER_SHAPE = 5  # colour, kind, x, y, size (clips add a motion token: 6)
FIELD_OFFSETS = {"colour": _COLOUR_OFFSET, "kind": _KIND_OFFSET, "x": _X_OFFSET, "y": _Y_OFFSET,
                 "size": _SIZE_OFFSET, "motion": _MOTION_OFFSET}


@dataclass(frozen=True)
class Shape:
    kind: str
    colour: str
    x: float  # centre, fraction of width
    y: float  # centre, fraction of height
    r: float  # half-extent, fraction of the side
    x1: float | None = None  # end centre for clips (None = still image)
    y1: float | None = None


@dataclass(frozen=True)
class ShapesConfig:
    min_shapes: int = MIN_SHAPES  # shapes per image, inclusive range
    max_shapes: int = MAX_SHAPES
    size_range: tuple[float, float] = SIZE_RANGE  # half-extent as a fraction of the side
    num_frames: int | None = None  # None: still images; F >= 2: moving-shapes clips
    supersample: int | None = None  # anti-aliasing subsamples per pixel side (None: 4 below 64 px, else 1)

    def __post_init__(self):
        if not (1 <= self.min_shapes <= self.max_shapes <= MAX_SHAPES):
            raise ValueError(f"need 1 <= min_shapes <= max_shapes <= {MAX_SHAPES}, got "
                             f"{self.min_shapes}..{self.max_shapes}")
        lo, hi = self.size_range
        if not (0 < lo <= hi <= 0.3):
            raise ValueError(f"size_range must satisfy 0 < lo <= hi <= 0.3, got {self.size_range}")
        if self.num_frames is not None and self.num_frames < 2:
            raise ValueError(f"num_frames must be None (images) or >= 2 (clips), got {self.num_frames}")

    @property
    def tokens_per_shape(self) -> int:
        return TOKENS_PER_SHAPE + (1 if self.num_frames else 0)

    @property
    def caption_length(self) -> int:
        return MAX_SHAPES * self.tokens_per_shape


# ---------------------------------------------------------------------------------------------------------------
# Attributes -> tokens / caption


def _bin(value: float, lo: float, hi: float, n: int) -> int:
    return min(n - 1, max(0, int((value - lo) / (hi - lo) * n)))


def motion_of(shape: Shape) -> str:
    if shape.x1 is None:
        return "still"
    dx, dy = shape.x1 - shape.x, shape.y1 - shape.y
    if math.hypot(dx, dy) < 0.05:
        return "still"
    octant = int(round(math.atan2(dy, dx) / (math.pi / 4))) % 8  # 0 = right, y grows downward
    return MOTIONS[1 + octant]


def shape_tokens(shape: Shape, config: ShapesConfig) -> list[int]:
    lo, hi = config.size_range
    tokens = [
        _COLOUR_OFFSET + COLOUR_NAMES.index(shape.colour),
        _KIND_OFFSET + KINDS.index(shape.kind),
        _X_OFFSET + _bin(shape.x, 0.0, 1.0, POS_BINS),
        _Y_OFFSET + _bin(shape.y, 0.0, 1.0, POS_BINS),
        _SIZE_OFFSET + _bin(shape.r, lo, hi + 1e-9, SIZE_BINS),
    ]
    if config.num_frames:
        tokens.append(_MOTION_OFFSET + MOTIONS.index(motion_of(shape)))
    return tokens


def caption_ids_of(shapes: Sequence[Shape], config: ShapesConfig) -> list[int]:
    ids: list[int] = []
    for s in shapes:
        ids += shape_tokens(s, config)
    return ids + [PAD_ID] * (config.caption_length - len(ids))


def _size_word(r: float, config: ShapesConfig) -> str:
    lo, hi = config.size_range
    t = (r - lo) / (hi - lo)
    return "small" if t < 1 / 3 else ("medium" if t < 2 / 3 else "large")


def _place_word(x: float, y: float) -> str:
    v = "top" if y < 1 / 3 else ("bottom" if y > 2 / 3 else "middle")
    h = "left" if x < 1 / 3 else ("right" if x > 2 / 3 else "centre")
    return "centre" if (v, h) == ("middle", "centre") else f"{v} {h}"


def caption_of(shapes: Sequence[Shape], config: ShapesConfig) -> str:
    parts = []
    for s in shapes:
        text = (f"a {_size_word(s.r, config)} {s.colour} {s.kind} at the {_place_word(s.x, s.y)} "
                f"(x={s.x:.2f}, y={s.y:.2f}, size={2 * s.r:.2f})")
        if config.num_frames and motion_of(s) != "still":
            text += f" moving {motion_of(s)}"
        parts.append(text)
    return "; ".join(parts)


def content_bucket(caption_ids: Sequence[int]) -> int:
    """Stable hash of the quantized content -> bucket in [0, VAL_BUCKETS). Bucket 0 is val."""
    digest = hashlib.blake2b(bytes(str(list(caption_ids)), "ascii"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % VAL_BUCKETS


# ---------------------------------------------------------------------------------------------------------------
# Sampling attributes (per item, its own RNG)

_ALLOWED_PAIRS = tuple((c, k) for c in COLOUR_NAMES for k in KINDS if (c, k) not in HELDOUT_PAIRS)
_HELDOUT_LIST = tuple(sorted(HELDOUT_PAIRS))
_ALL_PAIRS = tuple((c, k) for c in COLOUR_NAMES for k in KINDS)


def _item_rng(seed: int, split: str, index: int) -> random.Random:
    return random.Random(f"c2bridge.shapes/{seed}/{split}/{index}")


def _sample_geometry(rng: random.Random, config: ShapesConfig, placed: list[Shape]) -> tuple[float, float, float]:
    lo, hi = config.size_range
    for _ in range(100):
        r = rng.uniform(lo, hi)
        x, y = rng.uniform(r, 1 - r), rng.uniform(r, 1 - r)
        if all(math.hypot(x - p.x, y - p.y) >= MIN_SEPARATION * (r + p.r) for p in placed):
            return x, y, r
    raise RuntimeError("could not place a shape")  # caller retries the whole image


def sample_shapes(split: str, index: int, seed: int = 0, config: ShapesConfig = ShapesConfig()) -> list[Shape]:
    """The shapes of item `index` of `split` (deterministic)."""
    if split not in SPLITS:
        raise ValueError(f"unknown shapes split {split!r}; expected one of {SPLITS}")
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    rng = _item_rng(seed, split, index)
    while True:  # rejection: each attempt is a fresh candidate image from this item's stream
        n = rng.randint(config.min_shapes, config.max_shapes)
        forced = rng.randrange(n) if split == "heldout" else -1  # this shape gets a held-out pair
        shapes: list[Shape] = []
        try:
            for j in range(n):
                if j == forced:
                    pairs = _HELDOUT_LIST
                elif split == "heldout":  # the other shapes of a held-out image may be anything
                    pairs = _ALL_PAIRS
                else:
                    pairs = _ALLOWED_PAIRS
                colour, kind = rng.choice(pairs)
                x, y, r = _sample_geometry(rng, config, shapes)
                x1 = y1 = None
                if config.num_frames:
                    x1, y1 = rng.uniform(r, 1 - r), rng.uniform(r, 1 - r)
                shapes.append(Shape(kind, colour, x, y, r, x1, y1))
        except RuntimeError:
            continue
        if split == "heldout":
            return shapes
        in_val = content_bucket(caption_ids_of(shapes, config)) == 0
        if in_val == (split == "val"):
            return shapes


# ---------------------------------------------------------------------------------------------------------------
# Rendering (batched, vectorized over items)


def _inside(kind_idx: torch.Tensor, cx, cy, r, u, v) -> torch.Tensor:
    """Point-in-shape for [B] shapes on a [S] x [S] grid of points -> [B, S, S] bool. Units: pixels."""
    dx = u[None, None, :] - cx[:, None, None]  # [B, 1, S]
    dy = v[None, :, None] - cy[:, None, None]  # [B, S, 1]
    rr = r[:, None, None]
    circle = dx * dx + dy * dy <= rr * rr
    square = (dx.abs() <= rr) & (dy.abs() <= rr)
    # upward triangle: apex (cx, cy - r), base y = cy + r from cx - r to cx + r
    triangle = (dy <= rr) & (dy >= -rr) & (dx.abs() * 2 <= (dy + rr))
    k = kind_idx[:, None, None]
    return torch.where(k == 0, circle, torch.where(k == 1, square, triangle))


def render(shapes_batch: Sequence[Sequence[Shape]], image_size: int, supersample: int | None = None,
           t: float = 0.0) -> dict[str, torch.Tensor]:
    """Render items (lists of shapes, painted in order) at time t in [0, 1] (clips interpolate start -> end).

    Returns ``image [B,3,H,W]`` float [0,1], ``mask [B,H,W]`` bool (union), ``shape_masks [B,MAX_SHAPES,H,W]`` bool
    (visible part of each shape), ``boxes [B,MAX_SHAPES,4]`` xyxy pixels (zeros for absent shapes),
    ``num_shapes [B]``.
    """
    H = W = int(image_size)
    ss = supersample or (4 if image_size < 64 else 1)
    B = len(shapes_batch)
    M = MAX_SHAPES
    cx = torch.zeros(B, M); cy = torch.zeros(B, M); rad = torch.zeros(B, M)
    kind = torch.zeros(B, M, dtype=torch.long); rgb = torch.zeros(B, M, 3)
    valid = torch.zeros(B, M, dtype=torch.bool)
    for b, shapes in enumerate(shapes_batch):
        for m, s in enumerate(shapes):
            x = s.x if s.x1 is None else s.x + t * (s.x1 - s.x)
            y = s.y if s.y1 is None else s.y + t * (s.y1 - s.y)
            cx[b, m], cy[b, m], rad[b, m] = x * W, y * H, s.r * W
            kind[b, m] = KINDS.index(s.kind)
            rgb[b, m] = torch.tensor(COLOURS[s.colour])
            valid[b, m] = True
    grid = (torch.arange(H * ss, dtype=torch.float32) + 0.5) / ss  # subpixel centres, pixel units
    image = torch.tensor(BACKGROUND_RGB).view(1, 3, 1, 1).expand(B, 3, H, W).clone()
    coverages = []
    for m in range(M):
        inside = _inside(kind[:, m], cx[:, m], cy[:, m], rad[:, m], grid, grid).float()  # [B, Hs, Ws]
        cov = torch.nn.functional.avg_pool2d(inside[:, None], ss)[:, 0] * valid[:, m, None, None]  # [B, H, W]
        image = image * (1 - cov[:, None]) + rgb[:, m, :, None, None] * cov[:, None]
        coverages.append(cov)
    cov = torch.stack(coverages, 1)  # [B, M, H, W]
    # visible coverage: shape m is hidden by every later shape
    later = torch.ones(B, H, W)
    visible = torch.zeros_like(cov)
    for m in reversed(range(M)):
        visible[:, m] = cov[:, m] * later
        later = later * (1 - cov[:, m])
    # The GT mask is defined exactly as spatial IoU sees a picture: pixels differing from the background by more
    # than FOREGROUND_THRESHOLD (so the clean render scores IoU 1; anti-aliased edge pixels count by contrast).
    mask = foreground_mask(image)
    boxes = torch.stack([cx - rad, cy - rad, cx + rad, cy + rad], -1) * valid[..., None]
    return {"image": image.clamp(0, 1), "mask": mask, "shape_masks": visible >= 0.5, "boxes": boxes,
            "num_shapes": valid.sum(1)}


# ---------------------------------------------------------------------------------------------------------------
# Datasets


def _check(split: str, n: int, image_size: int) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown shapes split {split!r}; expected one of {SPLITS}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8 pixels, got {image_size}")


def generate_batch(split: str, start: int, count: int, image_size: int = 32, seed: int = 0,
                   config: ShapesConfig = ShapesConfig()) -> dict:
    """Items ``start .. start+count-1`` of a split as stacked tensors (the fast path for training).

    Returns ``image [B,3,H,W]`` (clips: ``clip [B,3,F,H,W]``, masks/boxes get an F axis after B),
    ``mask``, ``shape_masks``, ``boxes [B,MAX_SHAPES,4]``, ``num_shapes [B]``, ``caption_ids [B,L]``,
    ``colour_ids``/``kind_ids [B,MAX_SHAPES]`` (-1 = absent), ``sample_id``/``caption`` lists.
    Identical to stacking ``ShapesDataset`` items.
    """
    _check(split, count, image_size)
    shapes_batch = [sample_shapes(split, start + i, seed, config) for i in range(count)]
    return batch_from_shapes(shapes_batch, split, start, image_size, seed, config)


def batch_from_shapes(shapes_batch, split, start, image_size, seed, config) -> dict:
    count = len(shapes_batch)
    if config.num_frames:
        F = config.num_frames
        frames = [render(shapes_batch, image_size, config.supersample, t=f / (F - 1)) for f in range(F)]
        out = {"clip": torch.stack([fr["image"] for fr in frames], 2)}  # [B, 3, F, H, W]
        for key in ("mask", "shape_masks", "boxes"):
            out[key] = torch.stack([fr[key] for fr in frames], 1)  # [B, F, ...]
        out["num_shapes"] = frames[0]["num_shapes"]
    else:
        out = render(shapes_batch, image_size, config.supersample)
    out["caption_ids"] = torch.tensor([caption_ids_of(s, config) for s in shapes_batch], dtype=torch.long)
    pad = [-1] * MAX_SHAPES
    out["colour_ids"] = torch.tensor([([COLOUR_NAMES.index(x.colour) for x in s] + pad)[:MAX_SHAPES]
                                      for s in shapes_batch], dtype=torch.long)
    out["kind_ids"] = torch.tensor([([KINDS.index(x.kind) for x in s] + pad)[:MAX_SHAPES]
                                    for s in shapes_batch], dtype=torch.long)
    out["centers"] = torch.tensor([([[x.x, x.y] for x in s] + [[0.0, 0.0]] * MAX_SHAPES)[:MAX_SHAPES]
                                   for s in shapes_batch])  # [B, MAX_SHAPES, 2] fractions
    out["sizes"] = torch.tensor([([x.r for x in s] + [0.0] * MAX_SHAPES)[:MAX_SHAPES] for s in shapes_batch])
    out["sample_id"] = [f"shapes-{split}-s{seed}-{start + i:07d}" for i in range(count)]
    out["caption"] = [caption_of(s, config) for s in shapes_batch]
    return out


class ShapesDataset(Dataset):
    """``ShapesDataset(split, n, image_size=32, seed=0)``: n deterministic items of a split (torch Dataset).

    Item: ``image [3,H,W]`` float [0,1] (``clip [3,F,H,W]`` when ``num_frames`` is set), ``sample_id``,
    ``caption``, ``caption_ids [L]`` long, ``mask [H,W]`` bool (clips ``[F,H,W]``), ``boxes [K,4]`` xyxy pixels
    (clips ``[F,K,4]``), ``shape_masks [K,H,W]``, and the attributes ``kinds``, ``colours``, ``centers [K,2]``,
    ``sizes [K]`` (fractions of the side), ``num_shapes``.
    """

    def __init__(self, split: str, n: int, image_size: int = 32, seed: int = 0, *,
                 min_shapes: int = MIN_SHAPES, max_shapes: int = MAX_SHAPES,
                 size_range: tuple[float, float] = SIZE_RANGE, num_frames: int | None = None,
                 supersample: int | None = None):
        _check(split, n, image_size)
        self.split, self.n, self.image_size, self.seed = split, int(n), int(image_size), int(seed)
        self.config = ShapesConfig(min_shapes, max_shapes, tuple(size_range), num_frames, supersample)

    def __len__(self) -> int:
        return self.n

    def shapes(self, index: int) -> list[Shape]:
        return sample_shapes(self.split, index, self.seed, self.config)

    def __getitem__(self, index: int) -> dict:
        if not -self.n <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} items")
        index %= self.n
        shapes = self.shapes(index)
        batch = batch_from_shapes([shapes], self.split, index, self.image_size, self.seed, self.config)
        k = len(shapes)
        item = {
            "sample_id": batch["sample_id"][0],
            "caption": batch["caption"][0],
            "caption_ids": batch["caption_ids"][0],
            "num_shapes": k,
            "kinds": [s.kind for s in shapes],
            "colours": [s.colour for s in shapes],
            "centers": batch["centers"][0, :k],
            "sizes": batch["sizes"][0, :k],
        }
        if self.config.num_frames:
            item["clip"] = batch["clip"][0]
            item["mask"] = batch["mask"][0]  # [F, H, W]
            item["shape_masks"] = batch["shape_masks"][0, :, :k]  # [F, K, H, W]
            item["boxes"] = batch["boxes"][0, :, :k]  # [F, K, 4]
        else:
            item["image"] = batch["image"][0]
            item["mask"] = batch["mask"][0]
            item["shape_masks"] = batch["shape_masks"][0, :k]
            item["boxes"] = batch["boxes"][0, :k]
        return item


def foreground_mask(images: torch.Tensor, threshold: float = FOREGROUND_THRESHOLD) -> torch.Tensor:
    """Pixels that differ from the known background: ``[..., 3, H, W]`` -> ``[..., H, W]`` bool."""
    bg = torch.tensor(BACKGROUND_RGB, dtype=images.dtype, device=images.device).view(3, 1, 1)
    return (images - bg).abs().amax(-3) > threshold
