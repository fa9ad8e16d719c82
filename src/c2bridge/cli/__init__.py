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


def expected_error(exc: BaseException) -> str | None:
    """The one line for an error a user can cause and fix (bad input, a missing or unwritable file, a full or
    read-only disk, a damaged YAML or safetensors file); None for anything else (a bug: its traceback is shown)."""
    import errno

    if isinstance(exc, OSError):
        hints = {errno.ENOSPC: "the disk is full: free space or use another --out",
                 errno.EROFS: "the file system is read-only: use another --out",
                 errno.EACCES: "permission denied", errno.EDQUOT: "disk quota exceeded"}
        where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        if exc.errno in hints or (exc.strerror and where and not isinstance(exc, FileNotFoundError)):
            line = f"{where}: {exc.strerror or exc}" if where else str(exc.strerror or exc)
            return line + (f" ({hints[exc.errno]})" if exc.errno in hints else "")
        return str(exc)
    if isinstance(exc, ValueError):
        return str(exc)
    yaml = sys.modules.get("yaml")  # only imported if a YAML file was read: then its errors are possible
    if yaml is not None and isinstance(exc, yaml.YAMLError):
        where = getattr(exc, "problem_mark", None)
        return f"malformed YAML{f' at line {where.line + 1}' if where is not None else ''}: " + \
            " ".join(str(exc).split())
    safetensors = sys.modules.get("safetensors")
    if safetensors is not None and isinstance(exc, getattr(safetensors, "SafetensorError", ())):
        return f"damaged safetensors file: {exc}"
    return None


def main(argv: list[str] | None = None) -> int:
    from c2bridge import _signals

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with _signals.stop_signals_raise():  # SIGTERM/Ctrl-C outside training: one line below, never a traceback
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"c2bridge {args.command}: interrupted (Ctrl-C); what was written is intact, run the same command "
              "to resume", file=sys.stderr)
        return 128 + 2
    except _signals.Terminated as exc:
        print(f"c2bridge {args.command}: {exc}; what was written is intact, run the same command to resume",
              file=sys.stderr)
        return 128 + exc.signum
    except Exception as exc:
        line = expected_error(exc)
        if line is None:
            raise
        print(f"c2bridge {args.command}: error: {line}", file=sys.stderr)  # bad input: one clear line, no traceback
        return 2
