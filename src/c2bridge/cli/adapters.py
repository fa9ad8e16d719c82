"""`c2bridge adapters`: every kind x budget of a preset with exact params, chosen dims, FLOPs and latency
(the table is built by ``c2bridge.adapters.table``). Only argparse at module level."""
from __future__ import annotations

import argparse

PRESET_NAMES = ("full", "mini", "tiny")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "adapters",
        help="table of adapter kinds x budgets: exact params, chosen dims, FLOPs, latency",
        description=(
            "Size every adapter kind to each of the plan's five scales (5m..100m) of a preset and report the exact "
            "trainable params (total and MoE-active), the dims the budget solver chose, FLOPs per sample "
            "(torch FlopCounterMode, batch of 1, T = --vlm-tokens VLM tokens) and the median forward latency "
            "on this machine. `--preset mini` shows the miniature's mapping of the five plan scales."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--kind", action="append", help="adapter kind (repeatable; default: all kinds)")
    parser.add_argument(
        "--budget", action="append",
        help="a scale name of the preset (5m, 10m, 20m, 50m, 100m; case-insensitive) or a parameter count such as "
             "7.5M or 2e4 (repeatable; default: the preset's five scales)",
    )
    parser.add_argument("--preset", default="full", choices=PRESET_NAMES, help="dims and budgets to use")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    parser.add_argument("--vlm-tokens", type=int, default=None, help="VLM tokens T for FLOPs/latency (default: P)")
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per row (median reported)")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    import json

    from c2bridge.adapters.table import adapter_table, format_table

    rows = adapter_table(
        preset=args.preset, kinds=args.kind, budgets=args.budget, latency=not args.no_latency,
        vlm_tokens=args.vlm_tokens, repeats=args.repeats,
    )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(rows))
    return 0
