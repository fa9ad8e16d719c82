"""`c2bridge train CONFIG.yaml [key=value ...] --out RUN_DIR [--resume | --overwrite]` (argparse only at top level)."""
from __future__ import annotations

import argparse

EXIT_CODES = {"completed": 0, "failed": 1, "diverged": 3, "interrupted": 143}  # 2 = bad input (c2bridge.cli.main);
# interrupted: 128 + the signal (130 Ctrl-C, 143 SIGTERM)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train one adapter from a YAML config",
        description="Train one adapter. The config is YAML (see docs/training.md); key=value pairs override "
        "dotted keys, e.g. optim.lr=3e-4 adapter.kind=moe. Exit status: 0 completed, 1 failed, 2 bad input, "
        "3 diverged, 143 stopped by SIGTERM (checkpointed; continue with --resume); RUN_DIR/result.json holds the "
        "details.",
    )
    p.add_argument("config", help="training config YAML (keys not given come from the preset's recipe)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. optim.lr=3e-4")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory (must be empty unless --resume)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue from RUN_DIR's last checkpoint")
    mode.add_argument("--overwrite", action="store_true", help="replace whatever RUN_DIR holds")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import sys

    from c2bridge.train.config import load_config
    from c2bridge.train.loop import train

    cfg = load_config(args.config, args.overrides)
    result = train(cfg, args.out, resume=args.resume, overwrite=args.overwrite)
    line = f"{result['status']}: step {result['step']}/{result['total_steps']}"
    if result.get("best", {}).get("value") is not None:
        line += f", best {result['best']['metric']} {result['best']['value']:.5g} at step {result['best']['step']}"
    if result.get("steps_per_s"):
        line += f", {result['steps_per_s']:.2f} steps/s"
    if result.get("reason") or result.get("error"):
        line += f" ({result.get('reason') or result.get('error')})"
    where = f"{args.out}/result.json" if result["status"] != "interrupted" else args.out
    print(f"{line} -> {where}", file=sys.stderr if result["status"] != "completed" else sys.stdout)
    if result["status"] == "interrupted":  # 130 after Ctrl-C, 143 after SIGTERM
        from c2bridge import _signals

        return _signals.exit_code()
    return EXIT_CODES.get(result["status"], 1)
