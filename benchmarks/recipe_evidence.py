"""Which training recipe learns in the miniature: the plan's recipe scaled to the mini preset against the mini
recipe and flow matching with the plan's pixel term added late or on a subset of steps, side by side in one run.

    python benchmarks/recipe_evidence.py                          # every arm, 3 seeds, 64 val + 64 held-out images
    python benchmarks/recipe_evidence.py --arms plan,mini         # some arms only
    python benchmarks/recipe_evidence.py --out runs/recipe        # keep (and re-use) the trials there
    python benchmarks/recipe_evidence.py --quick                  # 20 steps, 1 seed, 16 samples: checks the script

Every arm trains E2.1's small adapter (query, budget 10m) on the mini study's caches with the mini preset's steps
and batch (configs/presets/mini.yaml), changing only what the arm names, and is evaluated like every study trial
(`eval:` of configs/experiments/common.mini.yaml: 1 - SSIM in scikit-image's convention, spatial IoU, LTXPipeline
at 10 steps) on the val and held-out splits. References on the same samples: an untrained adapter (same seeds),
zero conditioning, and the decoder's own captions (the ceiling). Intervals: 95% bootstrap-t over seeds x samples
(c2bridge.stats); "vs mini" is the paired difference to the mini recipe (same seeds, same samples).

The plan's LPIPS needs torchvision's VGG weights; on a machine without them the arms that use the perceptual term
fall back to 1 - SSIM (`loss.perceptual_fallback`), and the table says so.

Trials live in a study directory (the runner's layout: cache/, trials/<key>/, results.yaml), keyed by their
config, so a second run with the same --out re-uses every finished trial and only prints.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _mini_trials import add_study_arguments, build_context, fmt, fmt_diff, pick_names  # noqa: E402

# arm -> (what it is, TrainConfig patch on top of the mini preset's recipe)
PLAN = {"loss.name": "lpips_l2", "loss.perceptual": "lpips_vgg", "loss.perceptual_fallback": "one_minus_ssim",
        "loss.sigma": "shifted", "loss.logit_mean": 0.0, "optim.lr": 1.0e-4, "schedule.name": "constant",
        "schedule.warmup_steps": 0}
PIXEL = {"loss.name": "lpips_l2", "loss.weights": {"flow": 1.0}, "loss.perceptual": "lpips_vgg",
         "loss.perceptual_fallback": "one_minus_ssim"}  # the mini recipe's flow term + the plan's LPIPS + 0.1 L2
ARMS: dict[str, tuple[str, dict]] = {
    "plan": ("plan's recipe: LPIPS+0.1 L2 on x0, shifted sigma, lr 1e-4 constant, no warmup", PLAN),
    "plan_lr": ("plan's loss and sigma, the mini lr 3e-3 + warmup 25", {**PLAN, "optim.lr": 3.0e-3,
                                                                          "schedule.warmup_steps": 25}),
    "plan_lr_sigma": ("plan's loss, the mini lr + warmup + logit-normal sigma (mean 1)",
                      {**PLAN, "optim.lr": 3.0e-3, "schedule.warmup_steps": 25, "loss.sigma": "logit_normal",
                       "loss.logit_mean": 1.0}),
    "mini": ("mini recipe: flow, logit-normal sigma (mean 1), lr 3e-3, warmup 25", {}),
    "pixel_late": ("mini recipe + LPIPS+0.1 L2 from 70% of the steps", {**PIXEL, "loss.pixel_start": 0.7}),
    "pixel_every4": ("mini recipe + LPIPS+0.1 L2 on every 4th step", {**PIXEL, "loss.pixel_every": 4}),
    # the full preset's default (configs/presets/full.yaml) at the miniature's scale: the 256 px crop of a 512 px
    # frame is a 16 px crop of the 32 px one
    "full_default": ("mini recipe + LPIPS+0.1 L2 from 15% of the steps, every 4th step, on a 16 px crop",
                     {**PIXEL, "loss.pixel_start": 0.15, "loss.pixel_every": 4, "loss.pixel_crop": 16}),
}
# every arm is trained without the compute levers the mini study turns on by default (the protocol measured here)
OFF = {"compute.compile": False, "stop.patience": None, "stop.min_delta": 0.0, "stop.min_fraction": 0.0}
ARMS = {name: (what, {**OFF, **patch}) for name, (what, patch) in ARMS.items()}
BASELINE = "mini"
REFERENCES = ("untrained", "zero", "caption")
SPLITS = ("val", "heldout")
METRICS = (("distance", "1-SSIM"), ("spatial_iou", "IoU"))


def available_arms() -> dict[str, str]:
    """arm -> why it cannot run with this code (TrainConfig keys it lacks), for the arms that cannot."""
    from c2bridge.recipe import LossSection

    missing = {}
    for name, (_, patch) in ARMS.items():
        lacking = [k for k in patch if k.startswith("loss.") and not hasattr(LossSection(), k.split(".", 1)[1])]
        if lacking:
            missing[name] = f"this code has no {', '.join(lacking)}"
    return missing


def trial_specs(arms: list[str], seeds: list[int], quick: bool = False) -> list:
    from c2bridge.experiments.trials import TrialSpec

    def patch(arm: str) -> dict:
        p = dict(ARMS[arm][1])
        if quick and p.get("schedule.warmup_steps"):  # a 20-step run cannot warm up for 25
            p["schedule.warmup_steps"] = 2
        return p

    specs = [TrialSpec(f"{arm}-s{seed}", adapter="query", budget="10m", seed=seed, patch=patch(arm))
             for arm in arms for seed in seeds]
    specs += [TrialSpec(f"untrained-s{seed}", kind="reference", reference="untrained", adapter="query",
                        budget="10m", seed=seed) for seed in seeds]
    specs += [TrialSpec(ref, kind="reference", reference=ref) for ref in REFERENCES if ref != "untrained"]
    return specs


def summarize(records: dict, arms: list[str], seeds: list[int], n_resamples: int) -> dict:
    """Per arm and reference: mean and 95% interval of each metric on each split; for the arms, the paired
    difference to the baseline arm and to the untrained adapter; training steps and seconds."""
    import numpy as np

    from c2bridge.stats import difference_interval, mean_interval
    from c2bridge.stats.records import arm_table, paired_tables

    def recs(name: str) -> list[dict]:
        if name in ("zero", "caption"):
            return [records[name].to_dict()] if name in records else []
        prefix = name
        return [records[f"{prefix}-s{s}"].to_dict() for s in seeds if f"{prefix}-s{s}" in records]

    kw = {"n_resamples": n_resamples, "seed": 0}
    out: dict = {}
    for name in [*arms, *REFERENCES]:
        rows = [r for r in recs(name) if r.get("status") == "completed"]
        entry: dict = {"trials": len(rows), "failed": [r.get("error") or r.get("reason") for r in recs(name)
                                                       if r.get("status") != "completed"]}
        for split in SPLITS:
            for metric, _ in METRICS:
                table, _seeds = arm_table(rows, metric, split)
                entry[f"{split}/{metric}"] = mean_interval(table, **kw) if table.size else None
                for other in (BASELINE, "untrained"):
                    if name in arms and name != other and recs(other):
                        a, b, paired = paired_tables(rows, [r for r in recs(other) if r.get("status") == "completed"],
                                                     metric, split)
                        if a.size and b.size:
                            entry[f"{split}/{metric}/vs_{other}"] = difference_interval(
                                a, b, paired_seeds=paired, **kw)
        train = [r.get("train") or {} for r in rows]
        entry["steps"] = sorted({t.get("steps") for t in train if t.get("steps") is not None})
        times = [t.get("time_s") for t in train if isinstance(t.get("time_s"), (int, float))]
        entry["train_s"] = float(np.mean(times)) if times else None
        entry["final_val_loss"] = [t.get("final_val_loss") for t in train]
        out[name] = entry
    return out


def print_table(summary: dict, arms: list[str], perceptual: str) -> None:
    print(f"\nperceptual term of the pixel arms: {perceptual}")
    for split in SPLITS:
        print(f"\n{split} split (95% intervals over seeds x samples; 'vs {BASELINE}' paired):")
        head = (f"{'arm':<15} {'trials':>6} {'train s':>8} {'1-SSIM':<22} {'IoU':<22} {'IoU vs ' + BASELINE:<24} "
                f"{'IoU vs untrained':<24}")
        print(head)
        print("-" * len(head))
        for name in [*arms, *REFERENCES]:
            e = summary[name]
            t = f"{e['train_s']:.1f}" if e.get("train_s") is not None else "-"
            print(f"{name:<15} {e['trials']:>6} {t:>8} {fmt(e.get(f'{split}/distance')):<22} "
                  f"{fmt(e.get(f'{split}/spatial_iou')):<22} "
                  f"{fmt_diff(e.get(f'{split}/spatial_iou/vs_{BASELINE}')):<24} "
                  f"{fmt_diff(e.get(f'{split}/spatial_iou/vs_untrained')):<24}")
    print()
    for name in arms:
        e = summary[name]
        if e["failed"]:
            print(f"{name}: {len(e['failed'])} trial(s) did not complete: {e['failed'][0]}")
        print(f"{name:<15} {ARMS[name][0]}; steps {e['steps']}; final val loss "
              f"{', '.join('-' if v is None else f'{v:.4f}' for v in e['final_val_loss'])}")


def to_json(summary: dict) -> dict:
    return {name: {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in e.items()}
            for name, e in summary.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, from {', '.join(ARMS)}")
    parser.add_argument("--samples", type=int, default=64, help="evaluation samples per split")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples per interval")
    add_study_arguments(parser, "20 steps, seed 0, 16 samples (checks the script)", "also write the summary here")
    args = parser.parse_args()

    from c2bridge.metrics.distance import lpips_available

    arms = pick_names(args.arms, ARMS, "--arms")
    for arm, why in available_arms().items():
        if arm in arms:
            print(f"note: arm {arm!r} left out ({why})")
            arms.remove(arm)
    if BASELINE not in arms:
        arms.append(BASELINE)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    overrides = list(args.overrides)
    samples = args.samples
    if args.quick:
        seeds, samples = seeds[:1], min(samples, 16)
        overrides += ["recipe.optim.max_steps=20", "recipe.schedule.warmup_steps=2", "recipe.eval.every_steps=10"]
    perceptual = "lpips_vgg" if lpips_available("lpips_vgg") else "one_minus_ssim (LPIPS-VGG weights not on disk)"

    tmp = Path(tempfile.mkdtemp(prefix="c2bridge-recipe-")) if args.out is None else None
    out = args.out or tmp / "study"
    try:
        t0 = time.perf_counter()
        study, ctx = build_context(out, args.executor, overrides, samples, SPLITS, "recipe")
        records = ctx.run_trials(trial_specs(arms, seeds, args.quick))
        study.save()
        wall = time.perf_counter() - t0
        summary = summarize(records, arms, seeds, args.resamples if not args.quick else 200)
        print(f"\nrecipe evidence on the mini preset: query 10m, seeds {seeds}, {samples} samples per split, "
              f"{study.n_run} trial(s) run and {study.n_reused} re-used in {wall:.0f} s ({args.executor} executor)")
        print_table(summary, arms, perceptual)
        if args.json:
            args.json.write_text(json.dumps({"arms": {a: ARMS[a][0] for a in arms}, "seeds": seeds,
                                             "samples": samples, "perceptual": perceptual,
                                             "summary": to_json(summary)}, indent=1))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
