"""The `c2bridge` command. One module per area registers its subcommands (``register(subparsers)``); these modules
import only argparse at top level, so `c2bridge --help` stays fast, and import the library inside their handlers.

    adapters     `c2bridge adapters`          (adapter kinds x budgets table)
    encoders     `c2bridge extract`, `cache`  (feature caches)
    decoder      `c2bridge eval`              (reconstruction metrics of a trained adapter)
    reconstruct  `c2bridge reconstruct`       (a trained adapter on your own images and videos)
    mini         `c2bridge mini build`        (the mini world's weights)
    train        `c2bridge train`             (one adapter from a YAML config)
    experiments  `c2bridge run`, `report`     (the study)
    planner      `c2bridge plan`, `smoke`     (the full-scale path)
"""
from __future__ import annotations

import argparse
import sys

from c2bridge.cli import adapters, decoder, encoders, experiments, mini, planner, reconstruct, train

COMMAND_MODULES = (adapters, encoders, decoder, reconstruct, mini, train, experiments, planner)  # order of `--help`


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="c2bridge",
        description="C2 adapter bridging: DINOv2 + Qwen2.5-VL features -> LTX-Video conditioning.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:  # bad input: one clear line, no traceback
        print(f"c2bridge {args.command}: error: {exc}", file=sys.stderr)
        return 2
