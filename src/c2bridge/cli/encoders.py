"""CLI: ``c2bridge extract`` and ``c2bridge cache verify|info`` (heavy imports inside the handlers)."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from c2bridge.datasets import DATASETS  # torch-free

    p = subparsers.add_parser("extract", help="run the frozen encoders over a dataset into a feature cache",
                              description="Extract DINOv2 + Qwen2.5-VL features into a sharded, content-keyed, "
                                          "resumable cache (re-run the same command to resume).")
    p.add_argument("--preset", required=True, choices=["full", "mini", "tiny"])
    p.add_argument("--dataset", required=True, choices=list(DATASETS))
    p.add_argument("--split", required=True, choices=["train", "val", "heldout"])
    p.add_argument("--out", required=True, help="cache directory (created; an existing cache is resumed)")
    p.add_argument("--limit", type=int, default=None, help="first N items of the split")
    p.add_argument("--seed", type=int, default=0, help="dataset generation (shapes) and augmentation seed")
    p.add_argument("--augment", default="none", choices=["none", "color_jitter", "random_crop", "mixup"])
    p.add_argument("--views", type=int, default=1, help="augmented views stored per item")
    p.add_argument("--root", default=None, help="local dataset directory (coco, ssv2)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--shard-size", type=int, default=256, help="dataset items per shard")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers decoding/augmenting items")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.add_argument("--prompt", default=None, help="Qwen2.5-VL user prompt after the image")
    p.add_argument("--vlm-layer", type=int, default=None, help="hidden-state index (-1: last layer)")
    p.add_argument("--vlm-tokens", choices=["all", "image"], default=None, help="which VLM tokens are kept")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_extract)

    c = subparsers.add_parser("cache", help="inspect or verify a feature cache")
    csub = c.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    v = csub.add_parser("verify", help="check every shard against the manifest (sha256, size, sample counts)")
    v.add_argument("dir")
    v.set_defaults(func=_verify)
    i = csub.add_parser("info", help="print a cache's key, dims, sizes and skipped samples")
    i.add_argument("dir")
    i.set_defaults(func=_info)


def _extract(args: argparse.Namespace) -> int:
    from c2bridge.encoders.extraction import extract

    options = {}
    if args.prompt is not None:
        options["prompt"] = args.prompt
    if args.vlm_layer is not None:
        options["layer"] = args.vlm_layer
    if args.vlm_tokens is not None:
        options["token_selection"] = args.vlm_tokens
    cache = extract(args.preset, args.dataset, args.split, args.out, limit=args.limit, seed=args.seed,
                    augment=args.augment, views=args.views, batch_size=args.batch_size, shard_size=args.shard_size,
                    progress=not args.no_progress, root=args.root, device=args.device, num_workers=args.workers,
                    **options)
    skipped = cache.manifest.get("skipped", [])
    print(f"cache {cache.dir}: {len(cache)} samples, key {cache.key}, dims {cache.dims}"
          + (f", {len(skipped)} unreadable items skipped (listed in manifest.json)" if skipped else ""))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from c2bridge.encoders.cache import verify_cache

    report = verify_cache(args.dir)
    for note in report["notes"]:
        print(f"note: {note}")
    for problem in report["problems"]:
        print(f"PROBLEM: {problem}")
    status = "OK" if report["ok"] else "DAMAGED"
    print(f"{status}: {report['shards']} shards, {report['samples']} samples checked"
          + ("" if report["complete"] else " (incomplete)"))
    return 0 if report["ok"] else 1


def _info(args: argparse.Namespace) -> int:
    import json

    from c2bridge.encoders.cache import FeatureCache

    cache = FeatureCache(args.dir, allow_partial=True)
    m = cache.manifest
    size = sum(s["bytes"] for s in m["shards"])
    print(json.dumps({"key": cache.key, "complete": m["complete"], "samples": len(cache), "dims": cache.dims,
                      "fields": cache.fields, "shards": len(m["shards"]), "bytes": size,
                      "skipped": m["skipped"], "dataset": m["spec"]["dataset"], "augment": m["spec"]["augment"],
                      "encoders": {k: v["model_id"] for k, v in m["spec"]["encoders"].items()}}, indent=2))
    return 0
