"""``c2bridge mini build``: (re)train the mini world's decoder, caption embedder and DINOv2 (argparse only here)."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    mini = subparsers.add_parser("mini", help="the mini world (small LTX decoder + DINOv2 trained on shapes)")
    mini_sub = mini.add_subparsers(dest="mini_command", metavar="SUBCOMMAND")
    p = mini_sub.add_parser("build", help="train the mini world and write its weights (~15-20 min on 2 CPU cores)",
                            description="Train the mini VAE, text-to-image transformer + caption embedder and DINOv2 "
                                        "on synthetic shapes; write save_pretrained layouts, build_report.json and "
                                        "samples.png. Budgets are step counts, so the same command gives the same "
                                        "weights.")
    p.add_argument("--out", default=None, help="output directory (default: the package's assets/mini)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (fixed for repeatable numbers)")
    p.add_argument("--vae-steps", type=int, default=None)
    p.add_argument("--transformer-steps", type=int, default=None)
    p.add_argument("--dinov2-steps", type=int, default=None)
    p.add_argument("--eval-images", type=int, default=None)
    p.add_argument("--seconds-per-stage", type=float, default=None,
                   help="optional wall-clock cap per training stage (the build is then no longer repeatable)")
    p.add_argument("--quick", action="store_true", help="a few steps per stage (seconds): proves the command runs")
    p.set_defaults(func=_build)
    mini.set_defaults(func=lambda args: (mini.print_help(), 2)[1])


def _build(args: argparse.Namespace) -> int:
    from c2bridge.mini.build import BuildConfig, build

    overrides = {"seed": args.seed, "threads": args.threads, "max_seconds_per_stage": args.seconds_per_stage}
    for key in ("vae_steps", "transformer_steps", "dinov2_steps", "eval_images"):
        value = getattr(args, key)
        if value is not None:
            if value < 1:
                raise ValueError(f"--{key.replace('_', '-')} must be >= 1, got {value}")
            overrides[key] = value
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    cfg = BuildConfig.quick(**overrides) if args.quick else BuildConfig(**overrides)
    report = build(args.out, cfg)
    ev = report["eval"]["val"]
    print(f"mini build: val caption IoU {ev['caption_iou']:.3f}, colour accuracy {ev['colour_accuracy']:.3f}, "
          f"VAE recon IoU {ev['vae_recon_iou']:.3f}; {report['seconds_total']:.0f}s; "
          f"{report['shipped_bytes'] / 1e6:.2f} MB")
    return 0
