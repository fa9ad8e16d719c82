"""The feature cache: sharded safetensors + a manifest, content-keyed, memory-mapped reads.

Directory layout::

    DIR/manifest.json               key, key spec, dims, per-shard {file, n_samples, sha256, bytes, items, skipped}
    DIR/shard-00000.safetensors     samples of dataset items [0, shard_size) x views
    DIR/shard-00001.safetensors     ...

A shard holds ``n`` samples as a few flat tensors (variable-length VLM tokens concatenated with offsets):

    vlm [sum T_i, vlm_dim] + vlm_offsets [n+1]     dino [n, P, dino_dim]     target uint8 [n, 3, H, W]
    mask bool [n, H, W] (opt.)   latent [n, C, F, h, w] (opt.)   caption_ids [sum L_i] + caption_offsets [n+1] (opt.)

and one metadata entry ``c2bridge`` (JSON: sample ids, key, per-sample augmentation info). Clips store
``dino [n, F, P, dino_dim]`` (every frame's patch tokens), ``target [n, 3, F, H, W]`` and, where the dataset has them, ``mask [n, F, H, W]``. Features keep the encoders'
dtype (bf16 for ``full`` on GPU, float32 for mini/tiny).

Shards and the manifest are written atomically (temp + rename), the manifest after each shard, so a crash leaves
finished shards + a manifest that lists exactly them: a partial shard is never visible. Readers check each shard's
sha256 once per process before serving a sample from it (cost: ``benchmarks/cache_read.py``), so a flipped byte
is an error, never a feature.
"""
from __future__ import annotations

import bisect
import json
import os
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from c2bridge._io import read_json, save_safetensors, sha256_file, stable_hash

CACHE_FORMAT = "c2bridge-feature-cache-v1"
MANIFEST = "manifest.json"
META_KEY = "c2bridge"  # the single safetensors metadata entry (one key: safetensors writes a HashMap unordered)


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


# ---------------------------------------------------------------------------------------------------------------
# writing

def pack_samples(samples: list[dict]) -> dict:
    """Per-sample dicts (``vlm [T_i, D]``, ``dino``, ``target`` uint8, opt. ``mask``/``latent``/``caption_ids``)
    -> the flat shard tensors."""
    if not samples:
        raise ValueError("a shard needs at least one sample")
    optional = [k for k in ("mask", "latent", "caption_ids") if samples[0].get(k) is not None]
    for s in samples:
        present = [k for k in ("mask", "latent", "caption_ids") if s.get(k) is not None]
        if present != optional:
            raise ValueError(f"sample {s['sample_id']!r} has fields {present}, but the others in its shard have "
                             f"{optional}: every sample of a cache must carry the same fields")
    out = {
        "vlm": torch.cat([s["vlm"] for s in samples]).contiguous(),  # [sum T_i, D]
        "vlm_offsets": _offsets([len(s["vlm"]) for s in samples]),  # [n+1]
        "dino": torch.stack([s["dino"] for s in samples]).contiguous(),  # [n, P, D]
        "target": torch.stack([s["target"] for s in samples]).contiguous(),  # [n, 3, (F,) H, W] uint8
    }
    if "mask" in optional:
        out["mask"] = torch.stack([s["mask"].bool() for s in samples]).contiguous()
    if "latent" in optional:
        out["latent"] = torch.stack([s["latent"] for s in samples]).contiguous()
    if "caption_ids" in optional:
        ids = [s["caption_ids"].reshape(-1).long() for s in samples]
        out["caption_ids"] = torch.cat(ids).contiguous()
        out["caption_offsets"] = _offsets([len(x) for x in ids])
    return out


def _offsets(lengths: list[int]):
    return torch.tensor([0] + lengths, dtype=torch.int64).cumsum(0)


def check_finite(samples: list[dict]) -> None:
    """Refuse non-finite features, naming the sample (a NaN in the cache would poison every run after it)."""
    for s in samples:
        for k in ("vlm", "dino", "latent"):
            t = s.get(k)
            if t is not None and t.is_floating_point() and not bool(torch.isfinite(t).all()):
                bad = int((~torch.isfinite(t)).sum())
                raise ValueError(f"non-finite {k} features for sample {s['sample_id']!r} ({bad} of {t.numel()} "
                                 f"values are NaN/inf); refusing to write them to the cache")


def write_shard(path: str | os.PathLike, samples: list[dict], key: str) -> dict:
    """Write one shard atomically -> its manifest entry (file, n_samples, sha256, bytes)."""
    check_finite(samples)
    tensors = pack_samples(samples)
    meta = {"format": CACHE_FORMAT, "key": key, "sample_ids": [s["sample_id"] for s in samples],
            "augment": [s.get("augment") for s in samples]}
    path = Path(path)
    save_safetensors(path, tensors, metadata={META_KEY: json.dumps(meta, sort_keys=True)})
    return {"file": path.name, "n_samples": len(samples), "sha256": sha256_file(path), "bytes": path.stat().st_size}


# ---------------------------------------------------------------------------------------------------------------
# reading

_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
           "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


# shards whose sha256 this process has checked: (device, inode, size, mtime_ns) -> sha256. Readers hash each shard
# once per process (and DataLoader workers inherit the parent's checks), not on every open.
_VERIFIED: dict[tuple[int, int, int, int], str] = {}


def _file_identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


class ShardView:
    """A shard memory-mapped once: every tensor is a zero-copy view of the mapped file (pages come from the OS
    page cache on demand), so reading one sample is a few tensor slices, not a file read.

    The header is validated with safetensors' own ``safe_open`` first; the views are then built from the
    safetensors layout (8-byte little-endian header length, JSON header, data) over an ``mmap``. With
    ``sha256`` (the manifest's checksum) the mapped bytes are hashed before any view is handed out, once per
    process; ``n_samples``/``key`` (the manifest's) are checked against what the shard itself holds.
    """

    def __init__(self, path: Path, sha256: str | None = None, n_samples: int | None = None,
                 key: str | None = None):
        import mmap
        import struct

        from safetensors import safe_open

        self.path = path
        verify = f"run `c2bridge cache verify {path.parent}` and re-extract into a fresh directory"
        try:
            with safe_open(str(path), framework="pt") as h:  # rejects a damaged header / short file
                self.meta = json.loads(h.metadata()[META_KEY])
            with open(path, "rb") as fh:
                identity = _file_identity(os.fstat(fh.fileno()))
                self._mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)  # private: views are writable
            (n,) = struct.unpack("<Q", self._mm[:8])
            header = json.loads(bytes(self._mm[8:8 + n]))
        except Exception as exc:  # safetensors raises its own error types
            raise ValueError(f"shard {path} is corrupt ({type(exc).__name__}: {exc}); {verify}") from None
        if sha256 is not None and _VERIFIED.get(identity) != sha256:
            import hashlib

            digest = hashlib.sha256(self._mm).hexdigest()  # one sequential pass; it also warms the page cache
            if digest != sha256:
                raise ValueError(f"shard {path} is corrupted: its sha256 {digest[:12]}... does not match the "
                                 f"manifest's {sha256[:12]}...; {verify}")
            _VERIFIED[identity] = sha256
        base = 8 + n
        self.tensors = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            dtype = getattr(torch, _DTYPES[info["dtype"]])
            start, end = info["data_offsets"]
            count = (end - start) // torch.empty((), dtype=dtype).element_size()
            flat = torch.frombuffer(self._mm, dtype=dtype, count=count, offset=base + start) if count else \
                torch.empty(0, dtype=dtype)
            self.tensors[name] = flat.view(info["shape"])
        self.vlm_offsets = self.tensors["vlm_offsets"].tolist()
        self.caption_offsets = self.tensors["caption_offsets"].tolist() if "caption_offsets" in self.tensors \
            else None
        held = {"dino": int(self.tensors["dino"].shape[0]), "target": int(self.tensors["target"].shape[0]),
                "sample ids": len(self.meta.get("sample_ids", [])), "vlm offsets": len(self.vlm_offsets) - 1}
        if n_samples is not None:
            held["the manifest"] = int(n_samples)
        if len(set(held.values())) != 1:
            counts = ", ".join(f"{k}: {v}" for k, v in held.items())
            raise ValueError(f"shard {path} disagrees about its sample count ({counts}); {verify}")
        if key is not None and self.meta.get("key") != key:
            raise ValueError(f"shard {path} was written for cache key {self.meta.get('key')}, but the manifest's "
                             f"key is {key}; {verify}")

    def item(self, j: int) -> dict:
        t = self.tensors
        a, b = self.vlm_offsets[j], self.vlm_offsets[j + 1]
        out = {"vlm": t["vlm"][a:b], "dino": t["dino"][j], "target": t["target"][j].float().div_(255.0),
               "sample_id": self.meta["sample_ids"][j]}
        for name in ("mask", "latent"):
            if name in t:
                out[name] = t[name][j]
        if self.caption_offsets is not None:
            out["caption_ids"] = t["caption_ids"][self.caption_offsets[j]:self.caption_offsets[j + 1]]
        return out


class FeatureCache:
    """A finished cache directory as a torch-style map dataset.

    ``FeatureCache(dir, key=None)``: ``key`` (the expected content key) -> ValueError if the directory holds
    another one. ``allow_partial=True`` also opens an interrupted extraction (its finished shards).
    The manifest is checked on open (keys present, shard files inside the directory, sample counts agreeing);
    each shard's sha256 is checked against the manifest the first time this process opens it (``verify=False``
    skips that; ``.verify()`` checks every shard now). Any mismatch is one ValueError naming the shard.
    ``cache[i]`` -> ``vlm [T_i, vlm_dim]``, ``dino [P, dino_dim]``, ``target`` float [0, 1] ``[3, H, W]``
    (clips ``[3, F, H, W]``), and when cached ``mask`` bool, ``latent``, ``caption_ids``; always ``sample_id``.
    """

    def __init__(self, directory: str | os.PathLike, key: str | None = None, allow_partial: bool = False,
                 verify: bool = True):
        self.dir = Path(directory)
        self.verify_checksums = bool(verify)
        manifest_path = self.dir / MANIFEST
        if not manifest_path.exists():
            raise FileNotFoundError(f"{self.dir} is not a feature cache (no {MANIFEST}); create one with "
                                    "`c2bridge extract ... --out DIR`")
        try:
            self.manifest: dict = read_json(manifest_path)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{manifest_path} is unreadable ({exc}); the cache is damaged") from None
        problems = manifest_problems(self.manifest)
        if problems:
            raise ValueError(f"{manifest_path}: {problems[0]}; the manifest is damaged or was edited by hand "
                             f"(re-extract into a fresh directory)")
        if key is not None and self.manifest["key"] != key:
            raise ValueError(f"cache {self.dir} holds key {self.manifest['key']} but key {key} was requested "
                             f"(different encoders/preprocessing/dataset/augmentation); use another directory")
        if not self.manifest.get("complete") and not allow_partial:
            done = sum(s["n_samples"] for s in self.manifest["shards"])
            raise ValueError(f"cache {self.dir} is incomplete ({len(self.manifest['shards'])} shards, {done} samples "
                             "so far); resume it by running the same `c2bridge extract` command again")
        self.shards = [s for s in self.manifest["shards"] if s["n_samples"] > 0]
        for entry in self.shards:  # cheap truncation check up front: sizes against the manifest
            _check_shard_size(self.dir, entry)
        self._starts = [0]
        for entry in self.shards:
            self._starts.append(self._starts[-1] + entry["n_samples"])
        self._views: dict[int, ShardView] = {}

    # ---------------------------------------------------------------- properties
    @property
    def key(self) -> str:
        return self.manifest["key"]

    @property
    def dims(self) -> dict:
        return dict(self.manifest["dims"])

    @property
    def split(self) -> str | None:
        """The dataset split the cache was extracted from (None for caches whose spec does not record one)."""
        return ((self.manifest.get("spec") or {}).get("dataset") or {}).get("split")

    @property
    def fields(self) -> list[str]:
        return list(self.manifest.get("fields", []))

    @property
    def sample_ids(self) -> list[str]:
        ids: list[str] = []
        for k in range(len(self.shards)):
            ids += self._shard_meta(k)["sample_ids"]
        return ids

    @property
    def preset(self) -> str | None:
        """The preset the features were extracted for (None in caches that do not record it)."""
        return self.manifest.get("spec", {}).get("preset")

    @property
    def encoder_key(self) -> str:
        """Hash of the encoders the features come from (both encoders' ``encoder_key()``). Unlike ``key`` it does
        not depend on the dataset, split or augmentation: the train and val caches of one encoder setup share it."""
        return stable_hash(self.manifest.get("spec", {}).get("encoders"))

    @property
    def augmentation(self) -> str:
        """The augmentation kind the cache was extracted with (``none`` when unaugmented)."""
        aug = self.manifest.get("spec", {}).get("augment") or {}
        return str(aug.get("kind", "none")) if isinstance(aug, dict) else str(aug)

    @property
    def stored_bytes(self) -> int:
        """Bytes of the feature shards on disk."""
        return sum(int(s.get("bytes", 0)) for s in self.manifest.get("shards", []))

    def view_groups(self, limit: int | None = None) -> list[list[int]]:
        """Cache indices grouped per dataset sample (its augmented views), in cache order; the first ``limit``."""
        return group_views(self.sample_ids, limit)

    def __len__(self) -> int:
        return self._starts[-1]

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.dir)!r}, n={len(self)}, key={self.key}, dims={self.dims})"

    # ---------------------------------------------------------------- shard access (memory-mapped)
    def _open(self, k: int) -> ShardView:
        if k not in self._views:
            entry = self.shards[k]
            _check_shard_size(self.dir, entry)
            self._views[k] = ShardView(self.dir / entry["file"],
                                       sha256=entry["sha256"] if self.verify_checksums else None,
                                       n_samples=entry["n_samples"], key=self.manifest["key"])
        return self._views[k]

    def verify(self) -> "FeatureCache":
        """Open (and so checksum) every shard now instead of on first read; raises ValueError on damage."""
        for k in range(len(self.shards)):
            self._open(k)
        return self

    def _shard_meta(self, k: int) -> dict:
        return self._open(k).meta

    def locate(self, index: int) -> tuple[int, int]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a cache of {n} samples")
        index %= n
        k = bisect.bisect_right(self._starts, index) - 1
        return k, index - self._starts[k]

    def __getitem__(self, index: int) -> dict:
        """One sample: zero-copy views into the shard's memory map (``target`` converted to float [0, 1])."""
        k, j = self.locate(int(index))
        return self._open(k).item(j)

    def __getstate__(self):  # DataLoader workers reopen the memory maps themselves
        state = dict(self.__dict__)
        state["_views"] = {}
        state["_verified"] = dict(_VERIFIED)  # ...without hashing again what this process already checked
        return state

    def __setstate__(self, state):
        _VERIFIED.update(state.pop("_verified", {}))
        self.__dict__.update(state)

    # ---------------------------------------------------------------- bulk access
    def load_all(self, target_uint8: bool = False) -> dict:
        """Every sample in memory, collated: ``vlm [N, Tmax, D]`` + ``vlm_mask``, ``dino [N, P, D]``,
        ``target [N, 3, H, W]`` (float [0, 1], or uint8 with ``target_uint8=True``), opt. ``mask``, ``latent``,
        ``caption_ids`` (+ ``caption_mask`` when lengths differ); ``sample_ids`` (list)."""
        parts: dict[str, list] = {}
        sample_ids: list[str] = []
        for k in range(len(self.shards)):
            view = self._open(k)
            sample_ids += view.meta["sample_ids"]
            for name, t in view.tensors.items():
                parts.setdefault(name, []).append(t)
        if not parts:
            raise ValueError(f"cache {self.dir} holds no samples")
        vlm_rows = _split_by_offsets(parts["vlm"], parts["vlm_offsets"])
        out = {"vlm": None, "dino": torch.cat(parts["dino"]), "target": torch.cat(parts["target"])}
        out["vlm"], out["vlm_mask"] = pad_sequences(vlm_rows)
        if not target_uint8:
            out["target"] = out["target"].float().div_(255.0)
        for name in ("mask", "latent"):
            if name in parts:
                out[name] = torch.cat(parts[name])
        if "caption_ids" in parts:
            _stack_captions(out, _split_by_offsets(parts["caption_ids"], parts["caption_offsets"]))
        out["sample_ids"] = sample_ids
        return out

    def loader(self, batch_size: int, shuffle: bool = True, seed: int = 0, num_workers: int = 0,
               drop_last: bool = False):
        """A ``torch.utils.data.DataLoader`` over the cache, batches collated by ``collate_features``."""
        gen = torch.Generator().manual_seed(seed)
        return DataLoader(self, batch_size=batch_size, shuffle=shuffle, generator=gen, num_workers=num_workers,
                          drop_last=drop_last, collate_fn=collate_features)


def group_views(sample_ids: list[str], limit: int | None = None) -> list[list[int]]:
    """Indices grouped per dataset sample (augmented views are stored as ``ID#vK``), in order; the first ``limit``
    samples (a limit counts samples, not views)."""
    import re

    groups: dict[str, list[int]] = {}
    for i, sid in enumerate(sample_ids):
        groups.setdefault(re.sub(r"#v\d+$", "", str(sid)), []).append(i)
    out = list(groups.values())
    return out if limit is None else out[:limit]


_MANIFEST_FIELDS = {"format": str, "key": str, "shards": list}
_SHARD_FIELDS = {"file": str, "n_samples": int}
_WRITTEN_SHARD_FIELDS = {"bytes": int, "sha256": str}  # shards holding samples


def manifest_problems(manifest) -> list[str]:
    """What is structurally wrong with a manifest: missing or mistyped keys, a shard ``file`` that is not a plain
    file name inside the cache directory, sample counts that disagree. Empty list = fine."""
    if not isinstance(manifest, dict):
        return [f"the manifest is a JSON {type(manifest).__name__}, expected an object"]
    problems = []
    for name, kind in _MANIFEST_FIELDS.items():
        if not isinstance(manifest.get(name), kind):
            problems.append(f"key {name!r} is missing or not a {kind.__name__}")
    if manifest.get("format", CACHE_FORMAT) != CACHE_FORMAT:
        problems.append(f"format {manifest.get('format')!r}, expected {CACHE_FORMAT!r}")
    if problems:
        return problems
    total = 0
    for i, entry in enumerate(manifest["shards"]):
        where = f"shard entry {i}"
        if not isinstance(entry, dict):
            problems.append(f"{where} is not an object")
            continue
        fields = dict(_SHARD_FIELDS, **(_WRITTEN_SHARD_FIELDS if entry.get("n_samples") else {}))
        bad = [f"{name!r} ({kind.__name__})" for name, kind in fields.items()
               if not isinstance(entry.get(name), kind) or isinstance(entry.get(name), bool)]
        if bad:
            problems.append(f"{where} lacks {', '.join(bad)}")
            continue
        name = entry["file"]
        if not name or name in {".", ".."} or "/" in name or "\\" in name or Path(name).name != name \
                or name.startswith("."):
            problems.append(f"{where} names file {name!r}, expected a plain file name inside the cache directory "
                            "(no separators, no '..')")
        if entry["n_samples"] < 0:
            problems.append(f"{where} has n_samples {entry['n_samples']}")
        total += entry["n_samples"]
    if not problems and isinstance(manifest.get("n_samples"), int) and manifest["n_samples"] != total:
        problems.append(f"n_samples is {manifest['n_samples']} but its shards hold {total}")
    return problems


def _check_shard_size(directory: Path, entry: dict) -> None:
    path = directory / entry["file"]
    if not path.exists():
        raise FileNotFoundError(f"shard {path} listed in the manifest is missing; "
                                f"run `c2bridge cache verify {directory}`")
    size = path.stat().st_size
    if size != entry["bytes"]:
        raise ValueError(f"shard {path} is truncated or damaged ({size} bytes, the manifest says {entry['bytes']}); "
                         f"run `c2bridge cache verify {directory}` and re-extract into a fresh directory")


def _split_by_offsets(flat_parts: list, offset_parts: list) -> list:
    rows = []
    for flat, off in zip(flat_parts, offset_parts):
        off = off.tolist()
        rows += [flat[off[i]:off[i + 1]] for i in range(len(off) - 1)]
    return rows


def pad_sequences(rows: list):
    """``[T_i, D]`` rows -> ``(padded [B, Tmax, D] zeros, mask [B, Tmax] bool)``."""
    lengths = [len(r) for r in rows]
    T = max(lengths)
    first = rows[0]
    out = first.new_empty((len(rows), T, *first.shape[1:]))
    for i, (r, n) in enumerate(zip(rows, lengths)):
        out[i, :n] = r
        out[i, n:] = 0  # only the padding is zeroed
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # [B, T]
    return out, mask


def _stack_captions(out: dict, rows: list) -> None:
    if len({len(r) for r in rows}) == 1:
        out["caption_ids"] = torch.stack(rows)
    else:
        out["caption_ids"], out["caption_mask"] = pad_sequences(rows)


def collate_features(items: list[dict]) -> dict:
    """Cache items -> a batch: ``vlm [B, Tmax, vlm_dim]`` zero-padded + ``vlm_mask [B, Tmax]`` bool, stacked
    ``dino``, ``target``, and ``mask``/``latent``/``caption_ids`` when present (``caption_ids`` padded with 0 +
    ``caption_mask`` if lengths differ); ``sample_id`` as a list."""
    if not items:
        raise ValueError("collate_features needs at least one item")
    batch: dict = {}
    batch["vlm"], batch["vlm_mask"] = pad_sequences([it["vlm"] for it in items])
    for name in ("dino", "target", "mask", "latent"):
        if items[0].get(name) is not None:
            batch[name] = torch.stack([it[name] for it in items])
    if items[0].get("caption_ids") is not None:
        _stack_captions(batch, [it["caption_ids"] for it in items])
    batch["sample_id"] = [it["sample_id"] for it in items]
    return batch


# ---------------------------------------------------------------------------------------------------------------
# verification

def verify_cache(directory: str | os.PathLike) -> dict:
    """Check every shard against the manifest: present, size, sha256, readable header, sample count, key.

    -> ``{"ok", "problems" (damage: list of str), "notes" (harmless: stray files, incomplete), "complete",
    "shards", "samples"}``."""
    from safetensors import safe_open

    directory = Path(directory)
    report = {"ok": False, "problems": [], "notes": [], "complete": False, "shards": 0, "samples": 0}
    problems, notes = report["problems"], report["notes"]
    manifest_path = directory / MANIFEST
    if not manifest_path.exists():
        problems.append(f"{manifest_path} is missing: not a feature cache")
        return report
    try:
        manifest = read_json(manifest_path)
    except (OSError, ValueError) as exc:
        problems.append(f"{manifest_path} is unreadable: {exc}")
        return report
    structural = manifest_problems(manifest)
    if structural:
        problems += [f"{manifest_path}: {p}" for p in structural]
        return report
    listed = set()
    for entry in manifest.get("shards", []):
        if entry["n_samples"] == 0:
            continue
        path = directory / entry["file"]
        listed.add(entry["file"])
        report["shards"] += 1
        report["samples"] += entry["n_samples"]
        if not path.exists():
            problems.append(f"shard {path}: missing")
            continue
        size = path.stat().st_size
        if size != entry["bytes"]:
            problems.append(f"shard {path}: truncated or damaged ({size} bytes, manifest says {entry['bytes']})")
            continue
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            problems.append(f"shard {path}: sha256 {digest[:12]}... does not match the manifest's "
                            f"{entry['sha256'][:12]}... (corrupted)")
            continue
        try:
            with safe_open(str(path), framework="pt") as h:
                meta = json.loads(h.metadata()[META_KEY])
                n = h.get_slice("dino").get_shape()[0]
        except Exception as exc:
            problems.append(f"shard {path}: unreadable ({type(exc).__name__}: {exc})")
            continue
        if n != entry["n_samples"] or len(meta["sample_ids"]) != n:
            problems.append(f"shard {path}: holds {n} samples, manifest says {entry['n_samples']}")
        if meta.get("key") != manifest.get("key"):
            problems.append(f"shard {path}: written for key {meta.get('key')}, the manifest's key is "
                            f"{manifest.get('key')}")
    for stray in sorted(directory.glob("shard-*.safetensors")):
        if stray.name not in listed:
            notes.append(f"{stray.name} is not listed in the manifest (an interrupted write; ignored by readers, "
                         "replaced on resume)")
    report["complete"] = bool(manifest.get("complete"))
    if not report["complete"]:
        notes.append(f"the extraction is incomplete ({report['shards']} shards finished); run the same "
                     "`c2bridge extract` command again to resume")
    report["ok"] = not problems
    return report
