"""Per-step time of the adapter's training objective (LTXBridge.training_loss + backward) on a preset's decoder:
flow matching only vs flow + pixel terms (x0_hat decoded through the VAE), side by side in one run.

    python benchmarks/objective_step.py                       # tiny, batch 2, 32x32 images and 9-frame clips
    python benchmarks/objective_step.py --preset mini --steps 20
    python benchmarks/objective_step.py --perceptual lpips_vgg   # needs torchvision's VGG16 file offline

A "step" = adapter-sized conditioning -> training_loss -> backward (no optimizer), the part the decoder owns.
Printed: median ms per step (min in brackets) and the ratio of medians to flow-only.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", choices=["tiny", "mini", "full"])
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per configuration (after 3 warm-up)")
    parser.add_argument("--perceptual", default="one_minus_ssim", help="distance behind the lpips term")
    parser.add_argument("--frames", type=int, nargs="+", default=[1, 9], help="frame counts to time")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from c2bridge.decoder import LossSpec, LTXBridge

    bridge = LTXBridge.from_preset(args.preset, device=args.device)
    specs = {
        "flow": LossSpec.named("flow"),
        "flow+l2": LossSpec(terms={"flow": 1.0, "l2": 1.0}),
        f"lpips_l2[{args.perceptual}]": LossSpec.named("lpips_l2", perceptual=args.perceptual),
    }
    size = bridge.image_size
    print(f"preset={args.preset} device={args.device} batch={args.batch_size} {size}x{size} "
          f"threads={torch.get_num_threads()} steps={args.steps}")
    for frames in args.frames:
        g = torch.Generator().manual_seed(0)
        shape = (args.batch_size, 3, size, size) if frames == 1 else (args.batch_size, 3, frames, size, size)
        pixels = torch.rand(shape, generator=g).to(args.device)
        latents = bridge.encode_latents(pixels)
        cond = torch.randn(args.batch_size, bridge.n_tokens, bridge.cond_dim, device=args.device, requires_grad=True)
        # configurations interleaved step by step, so load from other processes hits all of them alike
        times: dict[str, list[float]] = {name: [] for name in specs}
        for i in range(3 + args.steps):
            for name, spec in specs.items():
                if args.device == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                loss, _ = bridge.training_loss(cond, None, latents, pixels, loss=spec,
                                               generator=torch.Generator().manual_seed(i))
                loss.backward()
                if args.device == "cuda":
                    torch.cuda.synchronize()
                if i >= 3:
                    times[name].append(time.perf_counter() - t0)
                cond.grad = None
        row = {name: (statistics.median(t) * 1e3, min(t) * 1e3) for name, t in times.items()}
        base = row["flow"][0]
        cells = "  ".join(f"{name}: {med:7.1f} ms (min {low:6.1f}; {med / base:4.1f}x)"
                          for name, (med, low) in row.items())
        print(f"frames={frames:2d}  latents={tuple(latents.shape)}  {cells}")


if __name__ == "__main__":
    main()
