"""`c2bridge reconstruct INPUT... --adapter DIR`: a trained adapter on your own pictures and clips.

Only argparse at import time; torch/diffusers are imported inside the handler.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

METRICS_FILE = "metrics.json"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "reconstruct",
        help="reconstruct images and videos through a trained adapter + the frozen decoder",
        description="Encode each INPUT (an image of any size, grayscale or RGBA included, or a video PyAV can "
        "decode) with the frozen DINOv2 + Qwen2.5-VL, map the features through the adapter, and sample the "
        "reconstruction with LTXPipeline. Writes OUT/<name>.recon.png (videos: .recon.mp4 at the decoder's frame "
        "rate), OUT/<name>.side_by_side.png (input | reconstruction) and OUT/metrics.json (distance, SSIM, PSNR "
        "against the input at the decoder's resolution; for videos also flicker and warp error). A bad input is "
        "one error line; the others still run. "
        "Exit status: 0 all done, 2 bad input (any input failed, or a bad --adapter).",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image or video files")
    p.add_argument("--adapter", required=True, metavar="DIR",
                   help="adapter package (adapter_config.json + model.safetensors [+ provenance.json]), e.g. "
                        "runs/mini/checkpoints/adapter_final")
    p.add_argument("--preset", default=None, choices=["tiny", "mini", "full"],
                   help="world of the frozen models (default: the one the adapter records, else mini)")
    p.add_argument("--out", default="reconstructions", metavar="DIR", help="output dir (default ./reconstructions)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the preset's)")
    p.add_argument("--guidance", type=float, default=1.0, help="CFG scale vs zero conditioning (default 1: off)")
    p.add_argument("--seed", type=int, default=0, help="noise seed of every reconstruction (default 0)")
    p.add_argument("--distance", default="auto",
                   help="auto (lpips_alex when its backbone is on disk, else one_minus_ssim) | lpips_alex | "
                        "lpips_vgg | one_minus_ssim")
    p.add_argument("--device", default=None,
                   help="cuda | cpu (default: cuda for the full preset when available, bf16; cpu for mini/tiny)")
    p.add_argument("--decoder-path", default=None, help="full preset: LTX-Video hub id or local dir")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    adapter_dir = Path(args.adapter)
    if not adapter_dir.is_dir():  # before loading any model
        raise FileNotFoundError(f"adapter dir {adapter_dir} does not exist; expected an adapter package "
                                "(adapter_config.json + model.safetensors), e.g. runs/mini/checkpoints/adapter_final")
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be >= 1; got {args.steps}")
    import warnings

    import torch
    from tqdm.auto import tqdm

    warnings.formatwarning = lambda message, *_a, **_k: f"c2bridge reconstruct: warning: {message}\n"

    from c2bridge._io import atomic_write_json
    from c2bridge.package import read_provenance
    from c2bridge.pipeline import C2BridgePipeline

    from c2bridge.presets import get_preset

    preset = args.preset or (read_provenance(adapter_dir) or {}).get("preset") or "mini"
    gpu_world = get_preset(preset).dtype == "bfloat16"  # the real models: GPU in bf16; the small worlds: CPU
    device = args.device or ("cuda" if gpu_world and torch.cuda.is_available() else "cpu")
    pipe = C2BridgePipeline.from_pretrained(adapter_dir, preset=preset, device=device,
                                            decoder_path=args.decoder_path)
    distance = _distance(args.distance)
    out = Path(args.out)
    names = _output_names(args.inputs)
    results, failed = {}, 0
    bar = tqdm(list(zip(args.inputs, names)), desc="reconstruct", unit="input", file=sys.stderr)
    for source, name in bar:
        try:
            results[source] = reconstruct_one(pipe, Path(source), out, name, distance, args)
        except (ValueError, FileNotFoundError, OSError) as exc:  # one line per bad input; the others still run
            failed += 1
            line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            tqdm.write(f"c2bridge reconstruct: error: {line}", file=sys.stderr)
            results[source] = {"status": "failed", "error": line}
    bar.close()
    summary = {
        "adapter": str(adapter_dir), "preset": preset, "is_miniature": pipe.preset.is_miniature,
        "device": str(pipe.device), "steps": args.steps or pipe.bridge.default_steps, "guidance": args.guidance,
        "seed": args.seed, "distance": distance.name, "resolution": pipe.preset.image_size,
        "frame_rate": _frame_rate(), "inputs": results,
    }
    if any(r.get("status") == "completed" for r in results.values()):
        atomic_write_json(out / METRICS_FILE, summary)
        print(f"{len(results) - failed}/{len(results)} reconstructed -> {out}/ ({METRICS_FILE})")
    return 2 if failed else 0


def reconstruct_one(pipe, source: Path, out: Path, name: str, distance, args) -> dict:
    """Read, reconstruct, score and write one input -> its metrics record. Nothing is written for a bad input."""
    import torch

    from c2bridge.metrics import psnr, ssim
    from c2bridge.pipeline import is_video_path, read_image, read_video, save_side_by_side_strip, save_video

    video = is_video_path(source)
    data = read_video(source)[0] if video else read_image(source)  # bad input raises here, before any write
    kwargs = dict(num_inference_steps=args.steps, guidance_scale=args.guidance, seed=args.seed, output_type="pt")
    result = pipe(video=data, **kwargs) if video else pipe(image=data, **kwargs)
    recon, target = result.frames[0], result.inputs[0]  # [F, 3, S, S]
    clip_r, clip_t = recon.permute(1, 0, 2, 3)[None], target.permute(1, 0, 2, 3)[None]  # [1, 3, F, S, S]
    with torch.no_grad():
        metrics = {distance.name: float(distance(clip_r, clip_t)[0]), "ssim": float(ssim(clip_r, clip_t)[0]),
                   "psnr": float(psnr(clip_r, clip_t)[0])}
        temporal = {}
        if recon.shape[0] >= 2:  # clips: does the reconstruction change over time the way the input does
            from c2bridge.metrics.temporal import flicker, warp_error

            temporal = {"flicker": float(flicker(clip_r, clip_t)[0]),
                        "warp_error": float(warp_error(clip_r, clip_t)[0])}
    out.mkdir(parents=True, exist_ok=True)
    if video:
        recon_path = out / f"{name}.recon.mp4"
        save_video(recon, recon_path, result.frame_rate)
        save_video(torch.cat([target, recon], dim=-1), out / f"{name}.side_by_side.mp4", result.frame_rate)
    else:
        recon_path = out / f"{name}.recon.png"
        save_video(recon, recon_path)
    side = save_side_by_side_strip(target, recon, out / f"{name}.side_by_side.png")
    return {"status": "completed", "kind": "video" if video else "image", "frames": int(recon.shape[0]),
            "distance": metrics[distance.name], "distance_name": distance.name, "ssim": metrics["ssim"],
            "psnr": metrics["psnr"], **temporal, "reconstruction": str(recon_path), "side_by_side": str(side)}


def _distance(name: str):
    from c2bridge.metrics import get_distance

    if name == "auto":
        return get_distance("lpips_alex", fallback="one_minus_ssim")
    return get_distance(name)


def _frame_rate() -> int:
    from c2bridge.decoder.ltx import FRAME_RATE

    return FRAME_RATE


def _output_names(inputs: list[str]) -> list[str]:
    """File stems, made unique (a.png and a.mp4 -> a, a-2)."""
    seen: dict[str, int] = {}
    names = []
    for item in inputs:
        stem = Path(item).stem or "input"
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return names
