"""``c2bridge mini build``: (re)train the mini world's decoder, caption embedder, DINOv2 and Qwen2.5-VL (argparse
only here)."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    mini = subparsers.add_parser("mini",
                                 help="the mini world (small LTX decoder, DINOv2, Qwen2.5-VL trained on shapes)")
    mini_sub = mini.add_subparsers(dest="mini_command", metavar="SUBCOMMAND")
    p = mini_sub.add_parser("build", help="train the mini world and write its weights (~20-25 min on 2 CPU cores)",
                            description="Train the mini VAE, text-to-image transformer + caption embedder, DINOv2 "
                                        "and Qwen2.5-VL on synthetic shapes; write save_pretrained layouts, "
                                        "build_report.json and samples.png. Budgets are step counts, so the same "
                                        "command gives the same weights.")
    p.add_argument("--out", default=None, help="output directory (default: the package's assets/mini)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (fixed for repeatable numbers)")
    p.add_argument("--vae-steps", type=int, default=None)
    p.add_argument("--transformer-steps", type=int, default=None)
    p.add_argument("--dinov2-steps", type=int, default=None)
    p.add_argument("--vlm-steps", type=int, default=None)
    p.add_argument("--stages", default=None,
                   help="comma-separated training stages to (re)build, keeping the others in --out "
                        "(vae,transformer,dinov2,vlm; default: all)")
    p.add_argument("--eval-images", type=int, default=None)
    p.add_argument("--seconds-per-stage", type=float, default=None,
                   help="optional wall-clock cap per training stage (the build is then no longer repeatable)")
    p.add_argument("--quick", action="store_true", help="a few steps per stage (seconds): proves the command runs")
    p.set_defaults(func=_build)
    mini.set_defaults(func=lambda args: (mini.print_help(), 2)[1])


def _build(args: argparse.Namespace) -> int:
    from c2bridge.mini.build import STAGES, BuildConfig, build

    overrides = {"seed": args.seed, "threads": args.threads, "max_seconds_per_stage": args.seconds_per_stage}
    for key in ("vae_steps", "transformer_steps", "dinov2_steps", "vlm_steps", "eval_images"):
        value = getattr(args, key)
        if value is not None:
            if value < 1:
                raise ValueError(f"--{key.replace('_', '-')} must be >= 1, got {value}")
            overrides[key] = value
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    stages = STAGES if args.stages is None else tuple(s.strip() for s in args.stages.split(",") if s.strip())
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not stages:
        raise ValueError(f"--stages: unknown stage(s) {unknown or '(none)'}; expected some of {','.join(STAGES)}")
    cfg = BuildConfig.quick(**overrides) if args.quick else BuildConfig(**overrides)
    report = build(args.out, cfg, stages)
    parts = []
    if "eval" in report:
        ev = report["eval"]["val"]
        parts.append(f"val caption IoU {ev['caption_iou']:.3f}, colour accuracy {ev['colour_accuracy']:.3f}, "
                     f"VAE recon IoU {ev['vae_recon_iou']:.3f}")
    if "vlm" in stages:
        probe = report["vlm"]["probe"]["probes"]["vlm"]["tokens"]
        parts.append(f"VLM probe colour {probe['colour_accuracy']:.3f}, kind {probe['kind_accuracy']:.3f}, "
                     f"centre rms {probe['centre_rms_px']:.1f} px")
    seconds = report.get("seconds_rebuilt", report.get("seconds_total", 0.0))
    print(f"mini build: {'; '.join(parts)}; {seconds:.0f}s; {report['shipped_bytes'] / 1e6:.2f} MB")
    return 0
