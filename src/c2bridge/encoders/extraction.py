"""``extract(...)``: run the frozen encoders over a dataset once and store the features as a resumable cache.

Shard ``k`` holds dataset items ``[k*shard_size, (k+1)*shard_size)`` (x ``views``), encoded in batches that never
cross a shard boundary, so a resumed run computes exactly the batches an uninterrupted run would (byte-identical
shards on CPU). Finished shards are never recomputed or rewritten; resuming (or re-running a finished extraction)
checks them against the manifest first, so a damaged shard is one clear error, not a silent part of the cache.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from c2bridge._io import atomic_write_json, read_json, stable_hash
from c2bridge._signals import deferred
from c2bridge.data import UnreadableSample, check_split
from c2bridge.data.augment import Augmenter
from c2bridge.data.registry import build_dataset
from c2bridge.encoders.build import build_encoders
from c2bridge.encoders.cache import CACHE_FORMAT, MANIFEST, FeatureCache, shard_name, write_shard
from c2bridge.presets import Preset, get_preset

DEFAULT_BATCH_SIZE = 16
DEFAULT_SHARD_SIZE = 256
LOCK = ".lock"
RESUME_FIELDS = ("shard_size", "batch_size", "n_items", "n_shards", "views")  # what a resume continues with


def cache_spec(encoders, dataset_key: dict, split: str, preset, seed: int, limit: int | None, augment_key: dict,
               views: int, latents_key: dict | None) -> dict:
    """Everything the cached content depends on (its hash is the cache key)."""
    return {
        "format": CACHE_FORMAT,
        "preset": preset.name,
        "encoders": {"dino": encoders.dino.encoder_key(), "vlm": encoders.vlm.encoder_key()},
        "target": {"image_size": preset.image_size, "storage": "uint8", "resize": "bilinear-antialias"},
        "dataset": {**dataset_key, "split": split, "seed": seed, "limit": limit},
        "augment": {**augment_key, "views": views},
        "latents": latents_key,
    }


def extract(preset, dataset, split: str, out: str | os.PathLike, limit: int | None = None, seed: int = 0,
            augment: str = "none", views: int = 1, latents_fn: Callable | None = None,
            latents_key: dict | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
            shard_size: int = DEFAULT_SHARD_SIZE, progress: bool = True, root=None, encoders=None, device=None,
            num_workers: int = 0, **encoder_options) -> FeatureCache:
    """Build (or resume, or just open) the feature cache of ``dataset``/``split`` under ``out``.

    ``preset``: name or Preset. ``dataset``: a name for ``build_dataset`` or a map-style dataset with
    ``dataset_key()``. ``augment``/``views``: store ``views`` augmented views per item (``augment.py``).
    ``latents_fn(pixels [B,3,H,W] in [0,1]) -> latents [B,C,F,h,w]`` caches decoder target latents; then
    ``latents_key`` (a dict identifying that function, e.g. the VAE id and normalization) is required.
    ``encoders``: prebuilt ``Encoders`` (default: ``build_encoders(preset, device, **encoder_options)``).
    """
    preset = preset if isinstance(preset, Preset) else get_preset(preset)
    check_split(split)
    views, batch_size, shard_size = int(views), int(batch_size), int(shard_size)
    if views < 1:
        raise ValueError(f"views must be >= 1, got {views}")
    if views > 1 and augment == "none":
        raise ValueError(f"views={views} with augment='none' would store identical copies; pick an augmentation "
                         "(color_jitter, random_crop, mixup) or views=1")
    if batch_size < 1 or shard_size < 1:
        raise ValueError(f"batch_size and shard_size must be >= 1, got {batch_size} and {shard_size}")
    if (latents_fn is None) != (latents_key is None):
        raise ValueError("latents_fn and latents_key go together: the cache key must identify the latent encoder "
                         "(pass latents_key={'model': ..., ...} with latents_fn)")
    augmenter = Augmenter(augment, seed=seed)
    ds = _dataset(dataset, split, preset, root, limit, seed)
    if encoders is None:
        encoders = build_encoders(preset, device=device, **encoder_options)
    spec = cache_spec(encoders, ds.dataset_key(), split, preset, seed, limit, augmenter.key(), views, latents_key)
    key = stable_hash(spec, 16)

    out = Path(out)
    manifest_path = out / MANIFEST
    if out.exists() and not manifest_path.exists() and any(p.name != LOCK for p in out.iterdir()):
        raise ValueError(f"{out} exists, is not empty and holds no {MANIFEST}: refusing to write a cache into it")
    if manifest_path.exists():
        _check_key(out, key)  # before taking the lock: a wrong-key call must not even touch the lock file
    out.mkdir(parents=True, exist_ok=True)
    with _exclusive(out):  # everything below sees a manifest no other writer is changing
        if manifest_path.exists():
            manifest = _check_key(out, key)
            # finished shards are checked (sha256, counts, key) before they are served or built upon
            finished = FeatureCache(out, key=key, allow_partial=True).verify()
            if manifest.get("complete"):
                return finished
            missing = [k for k in RESUME_FIELDS if not isinstance(manifest.get(k), int) or manifest[k] < 0]
            if missing:
                raise ValueError(f"{manifest_path} lacks {missing} (positive integers the interrupted extraction "
                                 "recorded); the manifest is damaged: extract into a fresh directory")
            shard_size, batch_size = manifest["shard_size"], manifest["batch_size"]  # resume exactly as started
        else:
            n_items = len(ds)
            manifest = {"format": CACHE_FORMAT, "key": key, "spec": spec, "dims": None, "fields": None,
                        "shard_size": shard_size, "batch_size": batch_size, "n_items": n_items, "views": views,
                        "n_shards": -(-n_items // shard_size), "shards": [], "skipped": [], "n_samples": 0,
                        "complete": False}
            atomic_write_json(manifest_path, manifest)
        _remove_stale_temps(out)
        _run(manifest, out, ds, encoders, augmenter, preset, latents_fn, progress, num_workers)
    return FeatureCache(out, key=key)


def _check_key(out: Path, key: str) -> dict:
    try:
        manifest = read_json(out / MANIFEST)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{out / MANIFEST} is unreadable ({exc}); the cache is damaged: extract into a fresh "
                         "directory") from None
    if not isinstance(manifest, dict) or manifest.get("key") != key:
        held = manifest.get("key") if isinstance(manifest, dict) else None
        raise ValueError(f"{out} already holds a feature cache with key {held}, not {key} "
                         "(different encoders/preprocessing/dataset/augmentation); refusing to touch it: "
                         "extract into another directory")
    return manifest


def expected_key(preset, dataset, split: str, limit: int | None = None, seed: int = 0, augment: str = "none",
                 views: int = 1, latents_key: dict | None = None, root=None, encoders=None, device=None,
                 **encoder_options) -> str:
    """The key ``extract`` with these arguments produces, without extracting (for ``FeatureCache(dir, key=...)``).
    Builds the encoders unless given (their ``encoder_key`` is part of it)."""
    preset = preset if isinstance(preset, Preset) else get_preset(preset)
    ds = _dataset(dataset, split, preset, root, limit, seed)
    if encoders is None:
        encoders = build_encoders(preset, device=device, **encoder_options)
    augment_key = Augmenter(augment, seed=seed).key()
    return stable_hash(cache_spec(encoders, ds.dataset_key(), split, preset, seed, limit, augment_key, int(views),
                                  latents_key), 16)


# ---------------------------------------------------------------------------------------------------------------

def _dataset(dataset, split: str, preset, root, limit, seed):
    if isinstance(dataset, str):
        ds = build_dataset(dataset, split, preset, root=root, limit=limit, seed=seed)
    else:
        ds = dataset
        if not hasattr(ds, "dataset_key"):
            raise ValueError("a dataset object passed to extract needs dataset_key() (what the cache key records)")
        if limit is not None and len(ds) > limit:
            raise ValueError("pass limit to build_dataset for dataset objects (their dataset_key must record it)")
    if len(ds) == 0:
        raise ValueError(f"dataset {ds.dataset_key().get('name')!r} split {split!r} is empty")
    return ds


@contextlib.contextmanager
def _exclusive(out: Path):
    """One writer per cache directory (a second concurrent extract fails fast instead of racing)."""
    import fcntl

    with open(out / LOCK, "a") as fh:  # append mode: taking the lock never modifies the file
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"another extraction is writing {out}; wait for it or use another directory") from None
        yield


def _remove_stale_temps(out: Path) -> None:
    """Temp files a killed writer left behind (never visible to readers: they are not listed anywhere)."""
    for tmp in out.glob(".*.tmp"):
        if tmp.name.startswith((".shard-", f".{MANIFEST}.")):
            tmp.unlink(missing_ok=True)


class _SafeItems:
    """Dataset view for a DataLoader: ``(index, view, item | None, skip_reason)``; unreadable items are reported,
    not raised, and augmentation happens here (in the workers when ``num_workers > 0``)."""

    def __init__(self, ds, augmenter, views: int, start: int, stop: int):
        self.ds, self.augmenter, self.views, self.start, self.stop = ds, augmenter, views, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def _partner(self, j: int, index: int) -> dict:
        n = len(self.ds)
        for attempt in range(n):  # an unreadable partner: take the next one (deterministic), never the item itself
            idx = (j + attempt) % n
            if idx == index:
                continue
            try:
                return self.ds[idx]
            except UnreadableSample:
                continue
        raise ValueError("MixUp found no readable partner item")

    def __getitem__(self, offset: int):
        index = self.start + offset
        try:
            item = self.ds[index]
        except UnreadableSample as exc:
            return index, [], {"index": index, "sample_id": exc.sample_id, "reason": exc.reason}
        if self.augmenter.config.kind == "none":
            return index, [item], None
        views = [self.augmenter(item, index, v, get_item=lambda j: self._partner(j, index), n_items=len(self.ds))
                 for v in range(self.views)]
        for v, view in enumerate(views):
            view["sample_id"] = f"{item['sample_id']}#v{v}"
        return index, views, None


def _run(manifest: dict, out: Path, ds, encoders, augmenter, preset, latents_fn, progress: bool,
         num_workers: int) -> None:
    from tqdm.auto import tqdm

    shard_size, batch_size, views = manifest["shard_size"], manifest["batch_size"], manifest["views"]
    n_items, n_shards = manifest["n_items"], manifest["n_shards"]
    if len(ds) != n_items:
        raise ValueError(f"the dataset now has {len(ds)} items, the interrupted extraction had {n_items}")
    done_items = min(n_items, len(manifest["shards"]) * shard_size)
    bar = tqdm(total=n_items * views, initial=done_items * views, unit="sample", desc=f"extract {out.name}",
               disable=not progress, dynamic_ncols=True, smoothing=0.1)
    try:
        for k in range(len(manifest["shards"]), n_shards):
            start, stop = k * shard_size, min(n_items, (k + 1) * shard_size)
            loader = DataLoader(_SafeItems(ds, augmenter, views, start, stop), batch_size=None, shuffle=False,
                                num_workers=num_workers, collate_fn=_identity)
            samples, skipped, pending = [], [], []
            for index, item_views, skip in loader:
                if skip is not None:
                    skipped.append(skip)
                    bar.update(views)
                    continue
                pending += item_views
                while len(pending) >= batch_size:
                    samples += _encode(pending[:batch_size], encoders, preset, latents_fn)
                    bar.update(batch_size)
                    pending = pending[batch_size:]
            if pending:
                samples += _encode(pending, encoders, preset, latents_fn)
                bar.update(len(pending))
            entry = {"file": shard_name(k), "n_samples": 0, "sha256": None, "bytes": 0}
            if samples:
                _check_layout(manifest, samples)
            with deferred():  # a Ctrl-C here lands after the manifest lists the shard just written
                if samples:
                    entry = write_shard(out / shard_name(k), samples, manifest["key"])
                entry.update(index=k, items=[start, stop], skipped=skipped)
                manifest["shards"].append(entry)
                manifest["skipped"] = [s for e in manifest["shards"] for s in e["skipped"]]
                manifest["n_samples"] = sum(e["n_samples"] for e in manifest["shards"])
                manifest["complete"] = len(manifest["shards"]) == n_shards
                if manifest["complete"] and manifest["n_samples"] == 0:
                    raise ValueError(f"every item of the dataset was unreadable ({len(manifest['skipped'])} "
                                     f"skipped, e.g. {manifest['skipped'][0]['reason']}); check the data directory")
                atomic_write_json(out / MANIFEST, manifest)  # the shard becomes visible to readers here
            bar.set_postfix(shard=f"{k + 1}/{n_shards}", skipped=len(manifest["skipped"]))
    finally:
        bar.close()


def _check_layout(manifest: dict, samples: list[dict]) -> None:
    """Dims and fields are fixed by the first shard; later shards (and resumed runs) must match."""
    s = samples[0]
    dims = {"vlm_dim": int(s["vlm"].shape[-1]), "dino_dim": int(s["dino"].shape[-1]),
            "n_patches": int(s["dino"].shape[-2])}  # dino [P, D], or [F, P, D] for a clip
    fields = sorted(k for k in ("mask", "latent", "caption_ids") if s.get(k) is not None)
    if manifest["dims"] is None:
        manifest["dims"], manifest["fields"] = dims, fields
    elif manifest["dims"] != dims or manifest["fields"] != fields:
        raise ValueError(f"shard layout changed mid-cache: dims {dims} fields {fields}, the cache has "
                         f"{manifest['dims']} {manifest['fields']}")


def _to_uint8(pixels):
    return (pixels.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8)


def _identity(x):
    return x


def _resize_target(item: dict, size: int) -> tuple:
    """Item pixels/mask at the decoder resolution (datasets already deliver it; resize only if not)."""
    pix = item["clip"] if "clip" in item else item["image"]
    mask = item.get("mask")
    if tuple(pix.shape[-2:]) == (size, size):
        return pix, mask
    if pix.ndim == 4:  # [3, F, H, W]
        pix = F.interpolate(pix.permute(1, 0, 2, 3), size=(size, size), mode="bilinear", antialias=True,
                            align_corners=False).permute(1, 0, 2, 3)
    else:
        pix = F.interpolate(pix[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    if mask is not None:
        flat = mask.reshape(-1, 1, *mask.shape[-2:]).float()
        mask = F.interpolate(flat, size=(size, size), mode="nearest-exact").reshape(*mask.shape[:-2], size, size).bool()
    return pix.clamp(0, 1), mask


def _encode(batch: list[dict], encoders, preset, latents_fn) -> list[dict]:
    """One batch of (augmented) items -> per-sample feature dicts (CPU tensors)."""
    kinds = {"clip" if "clip" in it else "image" for it in batch}
    if len(kinds) != 1:
        raise ValueError("a dataset must yield only images or only clips")
    pix = torch.stack([(it["clip"] if "clip" in it else it["image"]).float() for it in batch])  # [B, 3, (F,) H, W]
    dino = encoders.dino(pix).cpu()  # [B, P, dino_dim]
    vlm, vlm_mask = encoders.vlm(pix)  # [B, T, vlm_dim], [B, T]
    vlm, vlm_mask = vlm.cpu(), vlm_mask.cpu()
    targets = [_resize_target(it, preset.image_size) for it in batch]
    target_u8 = torch.stack([_to_uint8(t) for t, _ in targets])  # [B, 3, (F,) S, S]
    latents = None
    if latents_fn is not None:
        with torch.inference_mode():
            latents = latents_fn(target_u8.float() / 255.0)
        latents = latents.detach().cpu()
        if latents.shape[0] != len(batch):
            raise ValueError(f"latents_fn returned {latents.shape[0]} latents for a batch of {len(batch)}")
    out = []
    for i, it in enumerate(batch):
        sample = {"sample_id": it["sample_id"], "vlm": vlm[i, vlm_mask[i]].clone(), "dino": dino[i].clone(),
                  "target": target_u8[i]}
        if targets[i][1] is not None:
            sample["mask"] = targets[i][1].bool()
        if latents is not None:
            sample["latent"] = latents[i].clone()
        if it.get("caption_ids") is not None:
            sample["caption_ids"] = it["caption_ids"]
        if it.get("augment") is not None:
            sample["augment"] = it["augment"]
        out.append(sample)
    return out
