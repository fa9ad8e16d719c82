"""One training step (forward + backward) of our 10M query adapter vs the plan's ScalableQueryAdapter.

The reference is written from the plan's description (nn.TransformerDecoderLayer stack, post-norm, no padding
mask; c2bridge.adapters.plan_reference) and sized to the same parameter count: same width, depth and head count
as the solver chose for our adapter, with its dim_feedforward solved so the totals match. Both run in the same
process on the same inputs, interleaved (ref, ours, ref, ours, ...) so machine load hits both alike; the median
of --steps timed steps after --warmup is reported, and the ratio ours / reference (< 1: ours is faster). Both train
with dropout 0.1 (the reference's nn.TransformerDecoderLayer default).

    python benchmarks/adapter_step.py                      # full dims, batch 2, CPU
    python benchmarks/adapter_step.py --preset mini --batch-size 32
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from c2bridge.adapters import build_adapter_for_preset
from c2bridge.adapters.plan_reference import ScalableQueryAdapter, count
from c2bridge.presets import get_preset


def reference_like(adapter, preset) -> ScalableQueryAdapter:
    """The plan's module at our adapter's width/depth, dim_feedforward solved to match the parameter count."""
    cfg = adapter.config

    def build(ffn):
        with torch.device("meta"):
            return ScalableQueryAdapter(preset.vlm_dim, preset.dino_dim, preset.cond_dim, cfg["width"], cfg["depth"],
                                        preset.n_tokens, dim_feedforward=ffn)

    base = count(build(1))
    per_unit = count(build(2)) - base  # params per unit of dim_feedforward (all layers)
    ffn = max(1, 1 + round((adapter.num_params - base) / per_unit))
    return ScalableQueryAdapter(preset.vlm_dim, preset.dino_dim, preset.cond_dim, cfg["width"], cfg["depth"],
                                preset.n_tokens, dim_feedforward=ffn)


def step(module, inputs) -> float:
    start = time.perf_counter()
    out = module(*inputs)  # [B, n_tokens, out_dim]
    out.float().square().mean().backward()
    module.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) * 1e3


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--preset", default="full", choices=["full", "mini", "tiny"])
    parser.add_argument("--budget", default="10m", help="scale name of the preset or a parameter count")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--vlm-tokens", type=int, default=None, help="padded VLM length T (default: P / 2)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    preset = get_preset(args.preset)
    torch.manual_seed(0)
    # dropout 0.1 on both sides: nn.TransformerDecoderLayer's default, which the plan's module keeps
    ours = build_adapter_for_preset("query", args.budget, preset, seed=0, dropout=0.1).train()
    ref = reference_like(ours, preset).train()

    B, T, P = args.batch_size, args.vlm_tokens or preset.n_patches // 2, preset.n_patches
    gen = torch.Generator().manual_seed(0)
    vlm = torch.randn(B, T, preset.vlm_dim, generator=gen)  # [B, T, vlm_dim]
    dino = torch.randn(B, P, preset.dino_dim, generator=gen)  # [B, P, dino_dim]
    lengths = torch.randint(T // 2, T + 1, (B,), generator=gen)
    mask = torch.arange(T)[None] < lengths[:, None]  # [B, T] padded batch (the reference cannot use it)

    cases = {
        "reference (plan ScalableQueryAdapter)": (ref, (vlm, dino)),
        "ours (query, no mask)": (ours, (vlm, dino, None)),
        "ours (query, key-padding mask)": (ours, (vlm, dino, mask)),
    }
    times = {name: [] for name in cases}
    for i in range(args.warmup + args.steps):
        for name, (module, inputs) in cases.items():  # interleaved
            t = step(module, inputs)
            if i >= args.warmup:
                times[name].append(t)

    print(f"preset {preset.name}, budget {args.budget}: batch {B}, T={T} VLM tokens, P={P}, "
          f"threads {torch.get_num_threads()}, dropout 0.1 on both, median of {args.steps} forward+backward steps "
          f"after {args.warmup} warmup")
    print(f"params: ours {ours.num_params:,} (width {ours.config['width']}, depth {ours.config['depth']}, "
          f"ffn {ours.config['ffn_dim']}); reference {count(ref):,} (same width/depth, dim_feedforward "
          f"{ref.layers[0].linear1.out_features})")
    medians = {name: statistics.median(v) for name, v in times.items()}
    for name, ms in medians.items():
        print(f"  {name:40s} {ms:9.1f} ms   (min {min(times[name]):.1f}, max {max(times[name]):.1f})")
    ref_ms = medians["reference (plan ScalableQueryAdapter)"]
    print(f"ratio ours/reference: no mask {medians['ours (query, no mask)'] / ref_ms:.3f}, "
          f"with mask {medians['ours (query, key-padding mask)'] / ref_ms:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
