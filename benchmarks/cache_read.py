"""Feature-cache read throughput against a raw sequential read of the same shard bytes, in one run.

    python benchmarks/cache_read.py                       # synthetic cache at mini dims (2,000 samples)
    python benchmarks/cache_read.py --dims full --n 200   # full dims: VLM [~340, 3584] bf16, DINO [256, 1024], 512 px
    python benchmarks/cache_read.py --cache DIR           # an existing cache

Both reads come from the page cache (the raw pass runs first and warms it; each reader runs twice and the second
pass is reported), so the ratio measures the reader's overhead (safetensors memory-map + per-sample slicing +
collation), not the disk. Two readers, side by side: the verified one (what ``FeatureCache`` does: each shard's
sha256 checked against the manifest the first time a process opens it; the check is forgotten before each pass
here, so every pass pays it, as a fresh process would) and the unverified one (``verify=False``, the reader before
checksums).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def synthetic_cache(directory: Path, dims: str, n: int, shard_size: int) -> Path:
    """A cache written by the real shard writer, filled with random features of the preset's sizes."""
    import torch

    from c2bridge._io import atomic_write_json
    from c2bridge.encoders.cache import CACHE_FORMAT, MANIFEST, shard_name, write_shard
    from c2bridge.presets import get_preset

    preset = get_preset(dims)
    dtype = torch.bfloat16 if dims == "full" else torch.float32
    t_tokens = 340 if dims == "full" else 31  # full: 324 image tokens at 504 px + text; mini: 16 + 15
    g = torch.Generator().manual_seed(0)
    key = f"bench-{dims}"
    shards = []
    for k, start in enumerate(range(0, n, shard_size)):
        samples = []
        for i in range(start, min(n, start + shard_size)):
            t = t_tokens - (i % 5)  # variable length, as real prompts/images give
            samples.append({
                "sample_id": f"bench-{i:06d}",
                "vlm": torch.randn(t, preset.vlm_dim, generator=g).to(dtype),
                "dino": torch.randn(preset.n_patches, preset.dino_dim, generator=g).to(dtype),
                "target": torch.randint(0, 256, (3, preset.image_size, preset.image_size), generator=g,
                                        dtype=torch.uint8),
                "mask": torch.rand(preset.image_size, preset.image_size, generator=g) > 0.5,
            })
        entry = write_shard(directory / shard_name(k), samples, key)
        entry.update(index=k, items=[start, start + len(samples)], skipped=[])
        shards.append(entry)
    atomic_write_json(directory / MANIFEST, {
        "format": CACHE_FORMAT, "key": key, "spec": {"benchmark": dims}, "shards": shards, "skipped": [],
        "dims": {"vlm_dim": preset.vlm_dim, "dino_dim": preset.dino_dim, "n_patches": preset.n_patches},
        "fields": ["mask"], "n_samples": n, "complete": True, "shard_size": shard_size, "batch_size": 0,
        "n_items": n, "views": 1, "n_shards": len(shards)})
    return directory


def raw_read(paths: list[Path], chunk: int = 8 << 20) -> tuple[int, float]:
    t0 = time.perf_counter()
    total = 0
    for p in paths:
        with open(p, "rb", buffering=0) as fh:
            while block := fh.read(chunk):
                total += len(block)
    return total, time.perf_counter() - t0


def reader_pass(cache, batch_size: int, verify: bool) -> float:
    """Every sample through ``cache[i]`` in order, collated into batches (what a training epoch does), as a fresh
    process sees the cache (new memory maps; with ``verify`` every shard hashed once)."""
    from c2bridge.encoders import cache as cache_mod
    from c2bridge.encoders.cache import FeatureCache, collate_features

    cache_mod._VERIFIED.clear()  # forget this process's checks: each pass pays them
    t0 = time.perf_counter()
    fresh = FeatureCache(cache.dir, verify=verify)
    for start in range(0, len(fresh), batch_size):
        collate_features([fresh[i] for i in range(start, min(len(fresh), start + batch_size))])
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=None, help="existing cache dir (default: a synthetic one)")
    ap.add_argument("--dims", default="mini", choices=["mini", "full", "tiny"])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--shard-size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()

    import torch

    from c2bridge.encoders.cache import FeatureCache

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(args.cache) if args.cache else synthetic_cache(Path(tmp), args.dims, args.n, args.shard_size)
        cache = FeatureCache(directory)
        paths = [directory / s["file"] for s in cache.shards]
        n = len(cache)
        raw_read(paths)  # warm the page cache
        nbytes, raw_s = raw_read(paths)
        times = {}
        for verify in (False, True):
            reader_pass(cache, args.batch_size, verify)  # warm-up
            times[verify] = reader_pass(cache, args.batch_size, verify)
        t0 = time.perf_counter()
        cache.load_all()
        all_s = time.perf_counter() - t0
        mb = nbytes / 1e6
        print(f"cache: {directory} ({n} samples, {len(paths)} shards, {mb:.1f} MB, dims {cache.dims})")
        print(f"raw sequential read : {n / raw_s:10.0f} samples/s {mb / raw_s:9.1f} MB/s")
        for verify, label in ((False, "unverified"), (True, "verified  ")):
            read_s = times[verify]
            print(f"reader {label} cache[i]+collate (batch {args.batch_size}): {n / read_s:10.0f} samples/s "
                  f"{mb / read_s:9.1f} MB/s")
        print(f"reader load_all()   : {n / all_s:10.0f} samples/s {mb / all_s:9.1f} MB/s")
        print(f"ratio reader/raw    : unverified {raw_s / times[False]:.3f}, verified {raw_s / times[True]:.3f} "
              f"(verified/unverified time {times[True] / times[False]:.2f}x; load_all/raw: {raw_s / all_s:.3f})")


if __name__ == "__main__":
    main()
