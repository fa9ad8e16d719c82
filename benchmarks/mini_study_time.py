"""Wall time of the whole mini study (`c2bridge run all`, the README's main command) against its budget, and a
same-seed repeat of one trial, side by side in one run.

    python benchmarks/mini_study_time.py                   # the README's command in a fresh temp dir (~8 min)
    python benchmarks/mini_study_time.py --executor local  # one trial at a time (~13 min on 2 cores)
    python benchmarks/mini_study_time.py --out runs/bench  # keep the study dir
    python benchmarks/mini_study_time.py --quick           # 20 steps a trial: checks the script itself (~3 min)

Printed: total wall time and its ratio to the 15-minute target (20 at most); per experiment, its wall time
and trials run; where the time went (cache extraction, training, sampled evaluation, everything else); then the
repeat: E2.1's 10m seed-0 trial trained again from scratch in a second study dir, its metrics next to the first
run's, and whether they are identical (same seed -> same numbers on CPU).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S, MAX_S = 15 * 60, 20 * 60


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="study dir (default: a temp dir, removed after)")
    parser.add_argument("--quick", action="store_true", help="20 training steps per trial (checks the script)")
    parser.add_argument("--executor", default="pool", help="pool (the README's command: one trial per core) | local")
    parser.add_argument("--no-repeat", action="store_true", help="skip the same-seed repeat of one trial")
    args = parser.parse_args()
    extra = ["recipe.optim.max_steps=20", "recipe.schedule.warmup_steps=2"] if args.quick else []

    tmp = Path(tempfile.mkdtemp(prefix="c2bridge-bench-"))
    out = args.out or tmp / "study"
    try:
        wall = run_study(out, args.executor, extra)
        results = load(out)
        trials = results["trials"]
        train_s = sum((t.get("train") or {}).get("time_s") or 0 for t in trials.values())
        trial_s = sum(t.get("wall_s") or 0 for t in trials.values())
        cache_s = sum((c or {}).get("seconds") or 0 for c in (results.get("caches") or {}).values()
                      if isinstance(c, dict))
        print()
        print(f"mini study ({args.executor} executor, {os.cpu_count()} CPUs): {wall:.0f} s wall = {wall / 60:.1f} min; ratio to the 15-min target {wall / TARGET_S:.2f} "
              f"(to the 20-min limit {wall / MAX_S:.2f}){'  [quick: 20 steps a trial]' if args.quick else ''}")
        print(f"{'experiment':<8} {'wall s':>8} {'trials':>7}")
        for name, rec in (results.get("experiments") or {}).items():
            n = sum(name in (t.get("labels") or {}) for t in trials.values())
            print(f"{name:<8} {rec.get('wall_s', 0):>8.0f} {n:>7}")
        busy = max(wall - cache_s, 1e-9)  # the part of the run spent on trials (and the runner between them)
        print(f"trial time summed over workers: training {train_s:.0f} s + sampled eval and process start "
              f"{trial_s - train_s:.0f} s over {len(trials)} trials; cache extraction {cache_s:.0f} s "
              f"({cache_s / wall:.0%} of the wall); trials ran {trial_s / busy:.2f}x in parallel on average")

        if not args.no_repeat:  # the same trial, trained again from nothing in another study dir
            key, first = trial_by_label(results, "query-10m-s0")
            again_dir = tmp / "repeat"
            run_cmd = [sys.executable, "-m", "c2bridge", "run", "e2.1", "--preset", "mini", "--out", str(again_dir),
                       "--no-report", "e2_1.budgets=[10m]", "e2_1.seeds=[0]", "e2_1.reference_budget=10m", *extra]
            print("$", " ".join(run_cmd), flush=True)  # serial: the other executor than the study's, by default
            subprocess.run(run_cmd, check=True, stdout=subprocess.DEVNULL)
            again = load(again_dir)["trials"].get(key)
            if again is None:
                raise SystemExit(f"the repeat did not produce trial {key} (its config resolved differently)")
            a, b = first["metrics"]["val"], again["metrics"]["val"]
            print(f"\nrepeat of query-10m-s0 (trial {key}), same seed, fresh study dir, local (serial) executor:")
            print(f"{'metric':<12} {'first':>12} {'repeat':>12}")
            same = True
            for m in ("distance", "spatial_iou", "ssim", "psnr"):
                print(f"{m:<12} {a.get(m, float('nan')):>12.6f} {b.get(m, float('nan')):>12.6f}")
                same &= a.get(m) == b.get(m)
            fl_a, fl_b = first["train"].get("final_train_loss"), again["train"].get("final_train_loss")
            print(f"{'train loss':<12} {fl_a:>12.6f} {fl_b:>12.6f}")
            print(f"identical: {'yes' if same and fl_a == fl_b else 'NO'}")
    finally:
        if args.out is None:
            shutil.rmtree(tmp, ignore_errors=True)
        elif (tmp / "repeat").exists():
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
