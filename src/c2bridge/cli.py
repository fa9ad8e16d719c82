"""The `c2bridge` command. Each area registers its own subcommands (``register(subparsers)``) from a module
that imports only argparse at top level, so `c2bridge --help` stays fast; heavy imports happen in handlers."""
from __future__ import annotations

import argparse
import importlib
import sys

# module path -> each exposes register(subparsers); the handler is set via parser.set_defaults(func=...)
COMMAND_MODULES = [
    "c2bridge.adapters.commands",  # adapters
    "c2bridge.encoders.commands",  # extract, cache verify
    "c2bridge.decoder.commands",  # eval
    "c2bridge.mini.commands",  # mini build
    "c2bridge.train.commands",  # train
    "c2bridge.experiments.commands",  # run, report
    "c2bridge.planner_commands",  # plan, smoke (full-scale path)
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="c2bridge",
        description="C2 adapter bridging: DINOv2 + Qwen2.5-VL features -> LTX-Video conditioning.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # area not built yet
                continue
            raise
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


if __name__ == "__main__":
    sys.exit(main())
