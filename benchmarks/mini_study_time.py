"""Wall time of the whole mini study (`c2bridge run all`, the README's main command) against its budget, with the
compute levers on and off side by side in one run, and a same-seed repeat of one trial.

    python benchmarks/mini_study_time.py                   # levers on (the mini study's defaults), ~7 min
    python benchmarks/mini_study_time.py --levers both     # off, then on, each in a fresh dir: the speed-up
    python benchmarks/mini_study_time.py --levers off      # the study as it ran before the levers
    python benchmarks/mini_study_time.py --executor local  # one trial at a time
    python benchmarks/mini_study_time.py --out runs/bench  # keep the study dir(s) (--levers both: OUT/off, OUT/on)
    python benchmarks/mini_study_time.py --quick           # 20 steps a trial: checks the script itself (~3 min)

Levers on = the mini study's configuration as shipped (configs/experiments/*.mini.yaml, configs/presets/mini.yaml:
each lever there says why it is on). Levers off = the same study with every lever turned off by overrides
(`LEVERS_OFF` below): no early stopping, no successive halving, no torch.compile, `--schedule staged` (one
experiment after the other, caches extracted before the trials that need them) and a fresh worker pool per
experiment (`--executor-opt persistent=false`: torch and diffusers imported again each time). The mini's levers
change no trained trial's numbers (torch.compile in its `exact` mode is bit-identical to eager; halving only stops
trials), which --levers both checks trial by trial next to the verdicts.

Printed: total wall time and its ratio to the 15-minute target (20 at most); per experiment, its wall time and
trials run; where the time went (cache extraction, training, sampled evaluation, everything else); with
--levers both the speed ratio off / on (target >= 1.5) and whether the study's verdicts are the same (every
verdict, §6.4 decision, Gate 2 and recommendation in results.yaml) and how many of the trials both studies
trained have identical numbers; then the repeat: E2.1's 10m seed-0 trial
trained again from scratch in another study dir, its metrics next to the first run's, and whether they are
identical (same seed -> same numbers on CPU).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S, MAX_S, SPEEDUP_TARGET = 15 * 60, 20 * 60, 1.5
# every lever of the mini study off (overrides and `c2bridge run` options); a lever already off is a no-op here
LEVERS_OFF = {
    "overrides": ["recipe.stop.patience=null", "recipe.compute.compile=false",
                  "e2_2.halving.enabled=false", "e2_3.halving.enabled=false"],
    "options": ["--schedule", "staged", "--executor-opt", "persistent=false"],
}


def run_study(out: Path, executor: str, extra: list[str]) -> float:
    cmd = [sys.executable, "-m", "c2bridge", "run", "all", "--preset", "mini", "--executor", executor, "--out", str(out),
           *extra]
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


def load(out: Path) -> dict:
    import yaml

    return yaml.safe_load((out / "results.yaml").read_text())


def trial_by_label(results: dict, label: str) -> tuple[str, dict]:
    for key, t in results["trials"].items():
        if label in (t.get("labels") or {}).values():
            return key, t
    raise SystemExit(f"no trial labelled {label!r} in the study")


def verdicts(results: dict) -> dict[str, str]:
    """Every decision the study reports, flattened: per-experiment verdicts and recommendations, the §6.4
    decisions and failure rules, Gate 2, the miniature's checks."""
    out: dict[str, str] = {}
    for name, exp in (results.get("experiments") or {}).items():
        for metric, v in ((exp or {}).get("verdicts") or {}).items():
            out[f"{name} {metric}"] = str((v or {}).get("verdict"))
        rec = (exp or {}).get("recommendation")
        if rec is not None:  # what is recommended (before the colon), without the numbers in parentheses
            text = str(rec.get("text") if isinstance(rec, dict) else rec).split(":")[0]
            out[f"{name} recommendation"] = re.sub(r"\s*\([^)]*\)", "", text).strip()
    dec = results.get("decisions") or {}
    for d in dec.get("decision_points") or []:
        out[f"decision {d.get('checkpoint')}"] = str(d.get("decision"))
    for f in dec.get("failures") or []:
        out[f"failure {f.get('id')}"] = str(f.get("fired"))
    out["gate2"] = str((results.get("gate2") or {}).get("c2"))
    for name, v in (results.get("miniature_checks") or {}).items():
        out[f"mini check {name}"] = str((v or {}).get("verdict"))
    return out


def report(label: str, wall: float, results: dict, executor: str, quick: bool) -> None:
    trials = results["trials"]
    train_s = sum((t.get("train") or {}).get("time_s") or 0 for t in trials.values())
    trial_s = sum(t.get("wall_s") or 0 for t in trials.values())
    steps = sum((t.get("train") or {}).get("steps") or 0 for t in trials.values())
    max_steps = sum((t.get("train") or {}).get("total_steps") or (t.get("train") or {}).get("steps") or 0
                    for t in trials.values())
    pruned = sum(t.get("status") == "pruned" for t in trials.values())
    cache_s = sum((c or {}).get("seconds") or 0 for c in (results.get("caches") or {}).values()
                  if isinstance(c, dict))
    print()
    print(f"mini study, levers {label} ({executor} executor, {os.cpu_count()} CPUs): {wall:.0f} s wall = "
          f"{wall / 60:.1f} min; ratio to the 15-min target {wall / TARGET_S:.2f} (to the 20-min limit "
          f"{wall / MAX_S:.2f}){'  [quick: 20 steps a trial]' if quick else ''}")
    print(f"{'experiment':<8} {'wall s':>8} {'trials':>7}")
    for name, rec in (results.get("experiments") or {}).items():
        n = sum(name in (t.get("labels") or {}) for t in trials.values())
        print(f"{name:<8} {rec.get('wall_s', 0):>8.0f} {n:>7}")
    print(f"trial time summed over workers: training {train_s:.0f} s + sampled eval and process start "
          f"{trial_s - train_s:.0f} s over {len(trials)} trials ({steps} of {max_steps} max steps trained, "
          f"{pruned} pruned by halving); cache extraction {cache_s:.0f} s; trials ran "
          f"{trial_s / max(wall, 1e-9):.2f}x in parallel on average")


def compare(off: dict, on: dict, wall_off: float, wall_on: float) -> None:
    ratio = wall_off / wall_on
    print(f"\nlevers off {wall_off:.0f} s vs on {wall_on:.0f} s: {ratio:.2f}x faster with the levers on "
          f"(target >= {SPEEDUP_TARGET}: {'met' if ratio >= SPEEDUP_TARGET else 'NOT met'})")
    a, b = verdicts(off), verdicts(on)
    differ = {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
    print(f"verdicts: {len(a)} compared; {'all the same' if not differ else f'{len(differ)} differ:'}")
    for k, (x, y) in differ.items():
        print(f"  {k}: off {x!r} -> on {y!r}")
    both, same, moved = same_numbers(off, on)
    print(f"trials both studies trained to the end: {both}; with identical numbers (every metric of every split, "
          f"final train loss): {same}" + (f"; differ: {', '.join(moved[:8])}" if moved else ""))


def same_numbers(off: dict, on: dict) -> tuple[int, int, list[str]]:
    """Trials (by label) completed in both studies: how many, how many with bit-identical metrics and final train
    loss, and the labels of those that differ."""
    def by_label(results: dict) -> dict[str, dict]:
        return {label: t for t in results["trials"].values() if t.get("status") == "completed"
                for label in (t.get("labels") or {}).values()}

    a, b = by_label(off), by_label(on)
    both = sorted(set(a) & set(b))
    moved = [label for label in both
             if a[label].get("metrics") != b[label].get("metrics")
             or (a[label].get("train") or {}).get("final_train_loss") != (b[label].get("train") or {}).get(
                 "final_train_loss")]
    return len(both), len(both) - len(moved), moved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="study dir (default: a temp dir, removed after)")
    parser.add_argument("--levers", default="on", choices=("on", "off", "both"),
                        help="on: the mini study as shipped; off: every lever off; both: off then on, compared")
    parser.add_argument("--quick", action="store_true", help="20 training steps per trial (checks the script)")
    parser.add_argument("--executor", default="pool", help="pool (the README's command: one trial per core) | local")
    parser.add_argument("--no-repeat", action="store_true", help="skip the same-seed repeat of one trial")
    args = parser.parse_args()
    extra = ["recipe.optim.max_steps=20", "recipe.schedule.warmup_steps=2"] if args.quick else []

    tmp = Path(tempfile.mkdtemp(prefix="c2bridge-bench-"))
    root = args.out or tmp
    modes = ["off", "on"] if args.levers == "both" else [args.levers]
    try:
        done: dict[str, tuple[float, dict, Path]] = {}
        for mode in modes:
            out = root / mode if (args.levers == "both" or args.out is None) else root
            lever_args = [*LEVERS_OFF["overrides"], *LEVERS_OFF["options"]] if mode == "off" else []
            wall = run_study(out, args.executor, [*extra, *lever_args])
            done[mode] = (wall, load(out), out)
            report(mode, wall, done[mode][1], args.executor, args.quick)
        if args.levers == "both":
            compare(done["off"][1], done["on"][1], done["off"][0], done["on"][0])

        if not args.no_repeat:  # the same trial, trained again from nothing in another study dir
            mode = modes[-1]
            results = done[mode][1]
            key, first = trial_by_label(results, "query-10m-s0")
            again_dir = tmp / "repeat"
            # the study's thread count too (1 per pool worker; the local executor would use every core): threads
            # are part of the trial key, since another split of the work over cores changes the last digits
            threads = ["--executor-opt", "threads=1"] if args.executor == "pool" else []
            run_cmd = [sys.executable, "-m", "c2bridge", "run", "e2.1", "--preset", "mini", "--out", str(again_dir),
                       "--no-report", "e2_1.budgets=[10m]", "e2_1.seeds=[0]", "e2_1.reference_budget=10m", *extra,
                       *threads, *(LEVERS_OFF["overrides"][:2] if mode == "off" else [])]
            print("$", " ".join(run_cmd), flush=True)  # serial: the other executor than the study's, by default
            subprocess.run(run_cmd, check=True, stdout=subprocess.DEVNULL)
            again = load(again_dir)["trials"].get(key)
            if again is None:
                raise SystemExit(f"the repeat did not produce trial {key} (its config resolved differently)")
            a, b = first["metrics"]["val"], again["metrics"]["val"]
            print(f"\nrepeat of query-10m-s0 (trial {key}, levers {mode}), same seed, fresh study dir, local "
                  "(serial) executor:")
            print(f"{'metric':<12} {'first':>12} {'repeat':>12}")
            same = True
            for m in ("distance", "spatial_iou", "ssim", "psnr"):
                print(f"{m:<12} {a.get(m, float('nan')):>12.6f} {b.get(m, float('nan')):>12.6f}")
                same &= a.get(m) == b.get(m)
            fl_a, fl_b = first["train"].get("final_train_loss"), again["train"].get("final_train_loss")
            print(f"{'train loss':<12} {fl_a:>12.6f} {fl_b:>12.6f}")
            print(f"identical: {'yes' if same and fl_a == fl_b else 'NO'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
