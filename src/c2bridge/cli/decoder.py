"""`c2bridge eval`: reconstruction metrics of a trained adapter through the frozen decoder.

Only argparse at import time; torch/diffusers are imported inside the handler.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate an adapter: sample through the frozen LTX decoder, write metrics JSON + a side-by-side PNG",
        description="Load ADAPTER_DIR (adapter_config.json + model.safetensors), read a feature cache split, "
        "sample reconstructions with LTXPipeline and report the distance (LPIPS or the named fallback), SSIM, "
        "PSNR, spatial IoU (when the cache has masks), adapter latency and parameter memory.",
    )
    p.add_argument("adapter_dir", help="directory written by adapter.save_pretrained")
    p.add_argument("--preset", default="mini", choices=["tiny", "mini", "full"], help="decoder world (default mini)")
    p.add_argument("--cache", required=True, help="feature cache dir (CACHE/SPLIT is used when it exists)")
    p.add_argument("--split", default="val", help="split to evaluate (default val)")
    p.add_argument("--out", default=None, help="output dir (default ADAPTER_DIR/eval_SPLIT)")
    p.add_argument("--n", type=int, default=None, help="evaluate the first N samples (default all)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the preset's)")
    p.add_argument("--guidance-scale", type=float, default=1.0, help="CFG scale vs zero conditioning (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--distance", default="lpips_alex",
                   help="lpips_alex | lpips_vgg | one_minus_ssim | ms_<name> (default lpips_alex)")
    p.add_argument("--distance-fallback", default="one_minus_ssim",
                   help="used when the LPIPS backbone weights are not on disk ('none' to fail instead)")
    p.add_argument("--model-path", default=None, help="full preset: LTX-Video hub id or local dir")
    p.add_argument("--device", default=None, help="cuda | cpu (default: cuda when available)")
    p.set_defaults(func=_run_eval)


def _summary_lines(result: dict) -> list[str]:
    keys = ["n", "distance", "distance_mean", "ssim", "psnr", "mask_iou", "box_iou", "adapter_latency_ms",
            "num_params", "param_bytes", "metrics_json", "grid_png"]
    lines = []
    for key in keys:
        if key in result:
            value = result[key]
            lines.append(f"{key:>20}: {value:.4f}" if isinstance(value, float) else f"{key:>20}: {value}")
    return lines


def _run_eval(args: argparse.Namespace) -> int:
    import torch

    from c2bridge._io import atomic_write_json, check_plain_name
    from c2bridge.adapters import load_adapter
    from c2bridge.decoder import LTXBridge
    from c2bridge.encoders import FeatureCache
    from c2bridge.metrics import evaluate_adapter
    from c2bridge.presets import get_preset

    from c2bridge.metrics.distance import check_distance_name

    if args.steps is not None and args.steps < 1:  # argument checks first: nothing is read or written before them
        raise ValueError(f"--steps {args.steps}: expected an integer >= 1 (sampling steps)")
    check_distance_name(args.distance)
    if str(args.distance_fallback).lower() != "none":
        check_distance_name(args.distance_fallback)
    adapter_dir = Path(args.adapter_dir)
    if not adapter_dir.is_dir():
        raise FileNotFoundError(f"adapter dir {adapter_dir} does not exist (expected adapter.save_pretrained output)")
    cache_dir = Path(args.cache)
    check_plain_name(args.split, "--split")  # it names a subdirectory of the cache dir
    if (cache_dir / args.split).is_dir():
        cache_dir = cache_dir / args.split
    if not cache_dir.is_dir():
        raise FileNotFoundError(f"feature cache {cache_dir} does not exist (build it with `c2bridge extract`)")
    cache = FeatureCache(cache_dir)
    cached_split = cache.split  # what the cache's key spec records
    if cached_split is not None and cached_split != args.split:
        raise ValueError(f"cache {cache_dir} holds split {cached_split!r}, not --split {args.split!r}")

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    preset = get_preset(args.preset)
    bridge = LTXBridge.from_preset(args.preset, path=args.model_path, device=device)
    adapter = load_adapter(adapter_dir).to(device)
    out_dir = Path(args.out) if args.out else adapter_dir / f"eval_{args.split}"
    fallback = None if str(args.distance_fallback).lower() == "none" else args.distance_fallback
    result = evaluate_adapter(
        adapter, bridge, cache,
        distance=args.distance, distance_fallback=fallback, n=args.n, batch_size=args.batch_size,
        steps=args.steps, guidance_scale=args.guidance_scale, seed=args.seed, out_png=out_dir / "grid.png",
    )
    result.update(
        adapter_dir=str(adapter_dir), cache=str(cache_dir), split=args.split, preset=args.preset,
        is_miniature=preset.is_miniature, device=str(device), metrics_json=str(out_dir / "metrics.json"),
    )
    atomic_write_json(out_dir / "metrics.json", result)
    if preset.is_miniature:
        print(f"[{args.preset} preset: a miniature world; numbers are not the real models']")
    print("\n".join(_summary_lines(result)))
    return 0
