"""Each compute lever on the mini preset against the full-length protocol, side by side in one run: its cost ratio
and its quality difference with a 95% interval.

    python benchmarks/compute_levers.py                    # every lever, 3 seeds (~15-25 min on 2 busy cores)
    python benchmarks/compute_levers.py --levers compile,early_stop
    python benchmarks/compute_levers.py --out runs/levers  # keep (and re-use) the trials there
    python benchmarks/compute_levers.py --quick            # 20 steps, 1 seed, 8 samples: checks the script (< 3 min)

The protocol: E2.1's small adapter (query, budget 10m) on the mini study's caches with the mini recipe
(configs/presets/mini.yaml: 300 steps, batch 32), evaluated like every study trial (1 - SSIM in scikit-image's
convention and spatial IoU on 64 val images). A lever changes only its keys; its baseline is the same recipe
without them, trained with the same seeds and evaluated on the same samples, so "quality" is the paired
difference lever - baseline (95% bootstrap-t over seeds x samples, c2bridge.stats; > 0 in 1-SSIM is worse, > 0 in
IoU is better). Cost ratio = lever / baseline of:

- steps: optimizer steps trained (early stopping; halving) -- machine-independent;
- step time: the median seconds per optimizer step of each trial (compile, gradient checkpointing), robust to
  the first (compiling) step and to other jobs on the machine;
- train time: training seconds (pixel-term levers, whose steps are not alike);
- memory: peak resident memory of a short training process with the lever on vs off (gradient checkpointing).

Halving is replayed on E2.3's grid (trained to full length here, with halving's rungs from e2_3.mini.yaml): the
rung values are validation losses the full-length trials log (a trial continued past a rung is bit-identical to
one that never paused), so which arms would be pruned, and the steps saved, follow exactly. The persistent pool
and the graph schedule change no trial's numbers (same configs, same keys); their wall-clock gain is a whole-study
figure: benchmarks/mini_study_time.py --levers both.

The pixel-term levers compare against the mini recipe plus the plan's LPIPS + 0.1 L2 on the x0 estimate at every
step on the whole frame (LPIPS falls back to 1 - SSIM without torchvision's VGG weights).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _mini_trials import (add_study_arguments, build_context, completed, fmt, fmt_diff, median_step_s,  # noqa: E402
                          pick_names)

PIXEL = {"loss.name": "lpips_l2", "loss.weights": {"flow": 1.0}, "loss.perceptual": "lpips_vgg",
         "loss.perceptual_fallback": "one_minus_ssim"}
# early stopping as the full preset sets it, in validations of the mini protocol (every 50 steps)
STOP = {"stop.patience": 2, "stop.min_delta": 0.01, "stop.min_fraction": 0.2}
LONG_STEPS = 1500  # a cap well past the mini recipe's plateau: where early stopping has something to stop

# the full-length protocol: the mini recipe with every lever off (the mini study turns some on by default)
OFF = {"compute.compile": False, "stop.patience": None, "stop.min_delta": 0.0, "stop.min_fraction": 0.0,
       "memory.gradient_checkpointing": False}
ARMS: dict[str, dict] = {name: {**OFF, **patch} for name, patch in {
    "base": {},
    "early_stop": STOP,
    "base_long": {"optim.max_steps": LONG_STEPS},
    "early_stop_long": {"optim.max_steps": LONG_STEPS, **STOP},
    "compile": {"compute.compile": "exact"},
    "compile_fast": {"compute.compile": "fast"},
    "pixel": PIXEL,
    "pixel_crop16": {**PIXEL, "loss.pixel_crop": 16},
    "pixel_every4": {**PIXEL, "loss.pixel_every": 4},
    "pixel_late0.7": {**PIXEL, "loss.pixel_start": 0.7},
    "pixel_levers": {**PIXEL, "loss.pixel_start": 0.15, "loss.pixel_every": 4, "loss.pixel_crop": 16},
    "grad_ckpt": {**PIXEL, "memory.gradient_checkpointing": True},
}.items()}
# lever row -> (what it is, lever arm, baseline arm, cost measure)
LEVERS: dict[str, tuple[str, str, str, str]] = {
    "early_stop": ("early stop (patience 2 x 50 steps, 1%, >= 20%) at the mini's 300 steps", "early_stop", "base",
                   "steps"),
    "early_stop_long": (f"early stop, same rule, under a {LONG_STEPS}-step cap", "early_stop_long", "base_long",
                        "steps"),
    "compile": ("torch.compile of the frozen transformer, exact (bit-identical to eager)", "compile", "base",
                "step time"),
    "compile_fast": ("torch.compile of the frozen transformer, fast (all of inductor)", "compile_fast", "base",
                     "step time"),
    "pixel_crop16": ("pixel terms on one 16 px crop (of 32 px)", "pixel_crop16", "pixel", "train time"),
    "pixel_every4": ("pixel terms on every 4th step", "pixel_every4", "pixel", "train time"),
    "pixel_late0.7": ("pixel terms from 70% of the steps", "pixel_late0.7", "pixel", "train time"),
    "pixel_levers": ("pixel terms from 15%, every 4th step, 16 px crop (the full preset's)", "pixel_levers",
                     "pixel", "train time"),
    "grad_ckpt": ("gradient checkpointing (transformer + VAE decoder), pixel recipe", "grad_ckpt", "pixel",
                  "step time"),
    "halving": ("successive halving on E2.3's grid (replayed on full-length trials)", "", "", "steps"),
}
DEFAULT_LEVERS = [name for name in LEVERS if name != "early_stop_long"]
SPLIT = "val"


def missing_keys() -> dict[str, str]:
    """lever arm -> the TrainConfig keys this code lacks (that lever is left out)."""
    from c2bridge.recipe import TrainConfig

    cfg, out = TrainConfig(), {}
    for arm, patch in ARMS.items():
        lacking = []
        for key in patch:
            node = cfg
            for part in key.split("."):
                if not hasattr(node, part):
                    lacking.append(key)
                    break
                node = getattr(node, part)
        if lacking:
            out[arm] = ", ".join(lacking)
    return out


def train_specs(arms: list[str], seeds: list[int], quick: bool) -> list:
    from c2bridge.experiments.trials import TrialSpec

    def patch(arm: str) -> dict:
        p = dict(ARMS[arm])
        if quick and "optim.max_steps" in p:
            p["optim.max_steps"] = 40
        return p

    return [TrialSpec(f"{arm}-s{s}", adapter="query", budget="10m", seed=s, patch=patch(arm))
            for arm in arms for s in seeds]


# ------------------------------------------------------------------------------------------------------ halving
def halving_replay(study, samples: int, log) -> dict:
    """E2.3's stage-1 grid trained to full length, then successive halving replayed on its validation curves:
    which arms the policy prunes at which rung, steps trained vs full length, and each grid's pick with and
    without halving (the arm with the lowest val distance among those trained to the end)."""
    import copy

    from c2bridge.experiments import halving as hv
    from c2bridge.experiments import registry
    from c2bridge.experiments.context import StudyContext

    cfg = study.experiment_config("e2.3")
    cfg["eval"] = {**cfg["eval"], "n_samples": samples, "splits": {SPLIT: SPLIT}}  # as the other rows (shared base)
    module = registry.get("e2.3")
    ctx = StudyContext(study, "e2.3", cfg)
    specs = [s for s in module.trials(cfg, study.preset, {}) if s.stage == 1 and s.kind == "train"]
    h = hv.Halving.from_config(cfg, "e2_3")
    h = hv.Halving(True, h.eta, h.min_fraction)  # the config's rungs, on (the replay is what halving would do)
    recipe = copy.deepcopy(cfg.get("recipe") or {})  # the full-length protocol, as the other rows (shared base)
    recipe.setdefault("compute", {})["compile"] = False
    recipe["stop"] = {**recipe.get("stop", {}), "patience": None, "min_delta": 0.0, "min_fraction": 0.0}
    cfg_off = {**cfg, "recipe": recipe, "halving": {**h.to_dict(), "enabled": False}}
    ctx.cfg = cfg_off  # trained to full length (a finished trial is never pruned: it just ranks)
    records = ctx.run_trials(specs)
    groups = hv.plan_groups({**cfg, "halving": h.to_dict()}, specs, "e2_3")
    policy = hv.policy_for("pool", h.eta)
    full_steps = halved_steps = 0
    out_groups = []
    for g in groups:
        arm_recs = {arm: [records[lbl].to_dict() for lbl in labels if lbl in records]
                    for arm, labels in g["arms"].items()}
        any_rec = next(r for recs in arm_recs.values() for r in recs)
        total = int((any_rec.get("train") or {}).get("total_steps") or 0)
        every = int((any_rec.get("config") or {}).get("train", {}).get("eval", {}).get("every_steps") or 0)
        alive, pruned_at = list(g["arms"]), {}
        for rung in hv.rungs(total, every, h):
            values = []
            for arm in alive:
                vs = [hv.rung_value(r.get("curve"), rung) for r in arm_recs[arm] if r.get("status") == "completed"]
                vs = [v for v in vs if v is not None]
                values.append((arm, sum(vs) / len(vs) if vs else None))
            kept, pruned = hv.decide(policy, values, rung, set(g["protected"]))
            for arm in pruned:
                pruned_at[arm] = rung
            alive = [a for a in alive if a not in pruned]
        for arm, recs in arm_recs.items():
            n = len(recs)
            full_steps += total * n
            halved_steps += pruned_at.get(arm, total) * n

        def dist(arm):
            ds = [r["metrics"][SPLIT]["distance"] for r in completed(arm_recs[arm])]
            return sum(ds) / len(ds) if ds else float("inf")

        best_full = min(arm_recs, key=dist)
        best_halved = min((a for a in arm_recs if a not in pruned_at), key=dist)
        out_groups.append({"group": g["group"], "arms": list(arm_recs), "pruned_at": pruned_at,
                           "pick_full": best_full, "pick_halving": best_halved,
                           "distance_gap": dist(best_halved) - dist(best_full)})
        log(f"halving replay {g['group']}: rungs {hv.rungs(total, every, h)}; pruned {pruned_at or 'none'}; pick "
            f"{best_full} -> {best_halved}")
    return {"eta": h.eta, "min_fraction": h.min_fraction, "policy": policy.name, "groups": out_groups,
            "steps_ratio": halved_steps / full_steps if full_steps else None,
            "same_picks": all(g["pick_full"] == g["pick_halving"] for g in out_groups)}


# ------------------------------------------------------------------------------------------------------- memory
MEMORY_SCRIPT = r"""
import json, resource, sys, tempfile
from c2bridge.recipe import load_config
from c2bridge.train import train
cfg = load_config(json.loads(sys.argv[1]))
out = tempfile.mkdtemp(prefix="c2bridge-mem-")
train(cfg, out)
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def peak_memory(study, ctx, patch: dict, steps: int = 6) -> float | None:
    """Peak resident memory (MiB) of a fresh process that trains ``steps`` steps of the pixel recipe + ``patch``
    on the study's caches (one thread, no validation)."""
    import copy

    config = ctx.train_config("query", "10m", 0, patch={**ARMS["pixel"], **patch})
    train = copy.deepcopy(config["train"])
    for k in ("train_cache", "val_cache"):
        train["data"][k] = str(study.run_dir / train["data"][k])
    train["data"]["val_cache"] = None
    train["optim"]["max_steps"] = steps
    train["schedule"]["warmup_steps"] = 0
    train["eval"]["every_steps"] = 0
    train["eval"]["at_start"] = False
    train["checkpoint"]["every_steps"] = 0
    train["stop"] = {**train.get("stop", {}), "patience": None}
    train["threads"] = 1
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, json.dumps(train)], capture_output=True,
                          text=True, env=env)
    if proc.returncode != 0:
        print(f"memory probe failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else '?'}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss_mb"]


# ------------------------------------------------------------------------------------------------------ the table
def lever_row(records: dict, workspace: Path, lever: str, seeds: list[int], n_resamples: int) -> dict:
    import numpy as np

    from c2bridge.stats import difference_interval, mean_interval, ratio_interval
    from c2bridge.stats.records import paired_tables

    _, arm, base, cost = LEVERS[lever]
    a = completed([records[f"{arm}-s{s}"].to_dict() for s in seeds if f"{arm}-s{s}" in records])
    b = completed([records[f"{base}-s{s}"].to_dict() for s in seeds if f"{base}-s{s}" in records])
    row: dict = {"lever": lever, "cost": cost, "n": (len(a), len(b))}
    kw = {"n_resamples": n_resamples, "seed": 0}
    if not a or not b:
        row["note"] = "trials did not complete"
        return row
    by_seed = {r["config"]["train"]["seed"]: r for r in b}
    pairs = [(r, by_seed[r["config"]["train"]["seed"]]) for r in a if r["config"]["train"]["seed"] in by_seed]
    if cost == "steps":
        x = np.array([float(r["train"]["steps"]) for r, _ in pairs])
        y = np.array([float(q["train"].get("total_steps") or q["train"]["steps"]) for _, q in pairs])
        row["stopped"] = sum(bool(r["train"].get("steps") < (r["train"].get("total_steps") or 0)) for r, _ in pairs)
        row["steps"] = [int(v) for v in x]
    elif cost == "step time":
        x = np.array([median_step_s(r, workspace) or np.nan for r, _ in pairs])
        y = np.array([median_step_s(q, workspace) or np.nan for _, q in pairs])
    else:
        x = np.array([float(r["train"]["time_s"]) for r, _ in pairs])
        y = np.array([float(q["train"]["time_s"]) for _, q in pairs])
    ok = np.isfinite(x) & np.isfinite(y) & (y > 0)
    if ok.any():
        row["cost_ratio"] = ratio_interval(x[ok], y[ok], paired_seeds=True, trial_metric=True, **kw)
        row["cost_values"] = (float(np.mean(x[ok])), float(np.mean(y[ok])))
    for metric in ("distance", "spatial_iou"):
        ta, tb, paired = paired_tables([r for r, _ in pairs], [q for _, q in pairs], metric, SPLIT)
        if ta.size and tb.size:
            row[metric] = difference_interval(ta, tb, paired_seeds=paired, **kw)
            row[f"{metric}_base"] = mean_interval(tb, **kw)
    la = [r["train"].get("final_train_loss") for r, _ in pairs]
    lb = [q["train"].get("final_train_loss") for _, q in pairs]
    row["same_train_loss"] = all(x == y for x, y in zip(la, lb))
    return row


def print_table(rows: list[dict], halving: dict | None, memory: dict | None) -> None:
    head = (f"{'lever':<16} {'cost':<10} {'cost ratio [95% CI]':<24} {'d 1-SSIM [95% CI]':<26} "
            f"{'d IoU [95% CI]':<26} note")
    print(head)
    print("-" * len(head))
    for r in rows:
        if r["lever"] == "halving":
            continue
        note = r.get("note", "")
        if "stopped" in r:
            note = f"{r['stopped']}/{len(r['steps'])} stopped; steps {r['steps']}"
        elif r.get("same_train_loss"):
            note = "final train loss identical to the baseline's"
        if "cost_values" in r and r["cost"] != "steps":
            note = (note + "; " if note else "") + f"{r['cost_values'][0]:.3g} vs {r['cost_values'][1]:.3g}"
        print(f"{r['lever']:<16} {r['cost']:<10} {fmt(r.get('cost_ratio')):<24} {fmt_diff(r.get('distance')):<26} "
              f"{fmt_diff(r.get('spatial_iou')):<26} {note}")
    if memory:
        print(f"{'grad_ckpt':<16} {'memory':<10} {memory['ratio']:<24.3f} {'(same trials as above)':<26} "
              f"{'':<26} peak RSS {memory['on']:.0f} vs {memory['off']:.0f} MiB ({memory['steps']} steps)")
    if halving:
        print(f"{'halving':<16} {'steps':<10} {halving['steps_ratio']:<24.3f} "
              f"{'picks ' + ('unchanged' if halving['same_picks'] else 'CHANGED'):<26} {'':<26} "
              f"eta {halving['eta']}, first rung {halving['min_fraction']:.0%}, {halving['policy']}")
        for g in halving["groups"]:
            print(f"{'':<16} {g['group']}: pruned {g['pruned_at'] or 'none'}; pick {g['pick_full']} -> "
                  f"{g['pick_halving']} (1-SSIM gap {g['distance_gap']:+.4f})")
    print(f"{'pool / graph':<16} {'wall':<10} {'(study-level)':<24} {'0 (same trials)':<26} {'0 (same trials)':<26} "
          "benchmarks/mini_study_time.py --levers both")
    base = next((r for r in rows if r.get("lever") == "compile" and r.get("distance_base")), None)
    if base:
        print(f"\nbaseline (mini recipe, full length): val 1-SSIM {fmt(base['distance_base'])}, IoU "
              f"{fmt(base['spatial_iou_base'])}")


def to_json(obj):
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    return obj


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levers", default=",".join(DEFAULT_LEVERS), help=f"comma-separated, from {', '.join(LEVERS)}")
    parser.add_argument("--samples", type=int, default=64, help="evaluation samples (val split)")
    add_study_arguments(parser, "20 steps, seed 0, 8 samples (checks the script)", "also write the rows here")
    args = parser.parse_args()

    levers = pick_names(args.levers, LEVERS, "--levers")
    lacking = missing_keys()
    for lever in list(levers):
        arm = LEVERS[lever][1]
        if arm in lacking:
            print(f"note: lever {lever!r} left out (this code has no {lacking[arm]})")
            levers.remove(lever)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    overrides, samples = list(args.overrides), args.samples
    if args.quick:
        seeds, samples = seeds[:1], min(samples, 8)
        overrides += ["recipe.optim.max_steps=20", "recipe.schedule.warmup_steps=2", "recipe.eval.every_steps=5",
                      "e2_3.grids.augmentations.arms={none: {}}"]  # no augmented-cache extraction when checking
    tmp = Path(tempfile.mkdtemp(prefix="c2bridge-levers-")) if args.out is None else None
    out = args.out or tmp / "study"
    try:
        t0 = time.perf_counter()
        study, ctx = build_context(out, args.executor, overrides, samples, (SPLIT,), "levers")
        arms: list[str] = []
        for lever in levers:
            for arm in LEVERS[lever][1:3]:
                if arm and arm not in arms:
                    arms.append(arm)
        records = ctx.run_trials(train_specs(arms, seeds, args.quick)) if arms else {}
        halving = halving_replay(study, samples, print) if "halving" in levers else None
        memory = None
        if "grad_ckpt" in levers:
            steps = 3 if args.quick else 6
            off, on = peak_memory(study, ctx, {}, steps), peak_memory(study, ctx, {"memory.gradient_checkpointing": True},
                                                                     steps)
            if off and on:
                memory = {"off": off, "on": on, "ratio": on / off, "steps": steps}
        study.save()
        rows = [lever_row(records, study.run_dir, lever, seeds, 200 if args.quick else 2000)
                for lever in levers if lever != "halving"]
        wall = time.perf_counter() - t0
        print(f"\ncompute levers on the mini preset: query 10m, seeds {seeds}, {samples} val samples; "
              f"{study.n_run} trial(s) run, {study.n_reused} re-used, {wall:.0f} s ({args.executor} executor, "
              f"{os.cpu_count()} CPUs){'  [quick: 20 steps]' if args.quick else ''}")
        print("cost ratio = lever / full-length baseline; d = lever - baseline, paired (same seeds, same samples)\n")
        print_table(rows, halving, memory)
        if args.json:
            args.json.write_text(json.dumps(to_json({"seeds": seeds, "samples": samples, "rows": rows,
                                                     "halving": halving, "memory": memory}), indent=1))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
