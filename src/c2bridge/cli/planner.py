"""`c2bridge plan` (resource planner) and `c2bridge smoke` (real-width smoke run). Only argparse at import time."""
from __future__ import annotations

import argparse

GPU_CHOICES = ("a100-40", "a100-80", "h100")  # c2bridge.planner.GPUS (kept here so --help needs no import)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plan",
        help="estimate FLOPs, VRAM and GPU-hours of the real study per trial and experiment",
        description="Resource planner: per trial FLOPs per step, activation memory, VRAM peak and wall time from "
                    "the real model configs and the run recipe (early stopping, successive halving, the pixel "
                    "schedule, gradient checkpointing, decoder LoRA, distillation); the largest micro-batch that "
                    "fits; GPU-hours per experiment against the plan's 220 GPU-h (expected and worst case), the "
                    "branches on their own line, and the wall-clock on --gpus GPUs. Formulas: docs/planner.md.",
    )
    p.add_argument("experiments", nargs="*", metavar="EXPERIMENT", help="experiment ids or groups: all (E2.1-E2.4), branches (p8.1-p8.4, q1-q4); default: every "
                        "registered experiment, the study and the branches on separate total lines")
    p.add_argument("--preset", default="full", help="preset whose recipe and resolution to plan (default: full)")
    p.add_argument("--gpu", default="a100-80", choices=GPU_CHOICES, help="GPU to plan for (default: a100-80)")
    p.add_argument("--mfu", type=float, default=None, help="model FLOPs utilisation to assume (default 0.35)")
    p.add_argument("--mfu-from", default=None, metavar="RESULT.json",
                   help="take the MFU measured by the GPU check (benchmarks/gpu_check.sh writes gpu_check.json)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted recipe override for every trial, e.g. optim.batch_size=2 (repeatable)")
    p.add_argument("--gpus", type=int, default=8, help="GPUs of the wall-clock estimate (trial graph; default 8)")
    p.add_argument("--stop-fraction", type=float, default=None, metavar="F",
                   help="expected share of the max steps an early-stopped trial trains (default: the preset's "
                        "plan.expected_stop_fraction; 1 = no early stopping)")
    p.add_argument("--json", action="store_true", help="print the full estimate as JSON")
    p.add_argument("--summary", action="store_true", help="only the per-experiment table")
    p.set_defaults(func=_plan)

    s = subparsers.add_parser(
        "smoke",
        help="real-width smoke run on CPU: every real class at its real widths, random weights, few layers",
        description="Builds DINOv2-L, Qwen2.5-VL-7B, the LTX-Video transformer and VAE at their real widths with "
                    "random weights and 1-2 layers, then runs extract -> cache -> one training step of a 10M "
                    "adapter -> one LTXPipeline sampling call, printing shapes, time and peak memory per stage.",
    )
    s.add_argument("--preset", default="full-dims", choices=("full-dims",), help="the real widths (only choice)")
    s.add_argument("--out", default=None, help="work directory for the cache (default: a temporary directory)")
    s.add_argument("--image-size", type=int, default=None, help="decoder resolution (default: the full preset's)")
    s.add_argument("--frames", type=int, default=None, help="frames per clip (default: the full preset's)")
    s.add_argument("--layers", type=int, default=1, help="layers per model (1 or 2; default 1)")
    s.add_argument("--samples", type=int, default=2, help="samples to extract (= the batch; default 2)")
    s.add_argument("--steps", type=int, default=2, help="denoising steps of the sampling call (default 2)")
    s.add_argument("--json", action="store_true", help="print the stage report as JSON")
    s.set_defaults(func=_smoke)


def _plan(args: argparse.Namespace) -> int:
    import json

    from c2bridge import planner
    from c2bridge.config import parse_overrides
    from c2bridge.experiments.registry import normalize_names

    experiments = normalize_names(args.experiments) if args.experiments else None  # ids or groups (branches)
    mfu = args.mfu if args.mfu is not None else planner.DEFAULT_MFU
    measured = None
    if args.mfu_from is not None:
        if args.mfu is not None:
            raise ValueError("pass either --mfu or --mfu-from, not both")
        from c2bridge.smoke import read_gpu_check_mfu

        measured = read_gpu_check_mfu(args.mfu_from)
        mfu = measured["mfu"]
    assumptions = {"expected_stop_fraction": args.stop_fraction} if args.stop_fraction is not None else None
    result = planner.plan(preset=args.preset, experiments=experiments, gpu=args.gpu, mfu=mfu,
                          overrides=parse_overrides(args.overrides, example="optim.batch_size=2"), gpus=args.gpus,
                          assumptions=assumptions)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    else:
        if measured is not None:
            print(f"MFU {mfu:.3f} measured by the GPU check on {measured['gpu'] or 'a GPU'} ({measured['path']}"
                  + (f"; {measured['what']}" if measured["what"] else "") + ")")
        print(planner.format_plan(result, per_trial=not args.summary))
    return 0


def _smoke(args: argparse.Namespace) -> int:
    import json

    from c2bridge import smoke

    report = smoke.run_smoke(out=args.out, image_size=args.image_size, num_frames=args.frames, layers=args.layers,
                             samples=args.samples, sample_steps=args.steps, echo=not args.json)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    return 0 if report["ok"] else 1
