"""The GPU check: the full path on one CUDA GPU in a few minutes, before a study (random weights, nothing
downloaded, no network).

On CUDA (bf16, the real widths: DINOv2-L, Qwen2.5-VL-7B, the LTX-Video transformer at its full 28 blocks and the
real VAE; the encoders 2 layers deep, which only the one-off extraction feels):

1. the smoke stages: encoders -> feature cache -> 10M-adapter training steps -> ``LTXPipeline`` sampling at
   512 x 512, 1 frame; and one 25-frame clip training step;
2. training-step time, achieved TFLOP/s and MFU against the planner's FLOP count of the same step
   (``c2bridge.planner.estimate_trial``), for the 10M and 100M query adapters, flow and pixel losses;
3. peak CUDA memory per stage against the planner's estimate;
4. adapter-only inference latency (batch 1, bf16 autocast) against the plan's 150 ms target;
5. two pool-executor workers pinned to the visible GPU(s) (``CUDA_VISIBLE_DEVICES`` per worker).

Writes ``gpu_check.json`` and ``gpu_check.md`` to ``--out`` (default ``$OUT`` via ``benchmarks/gpu_check.sh``),
prints each stage with the elapsed time, and stops at the first failure with a non-zero exit naming the stage
(1: a stage failed, 3: the time guard stopped it); the JSON then holds what completed.

Without CUDA the same stages run at the tiny preset's widths in fp32 (seconds): a plumbing check, reported as
``device: cpu`` with no MFU (``c2bridge plan --mfu-from`` refuses it).

    bash benchmarks/gpu_check.sh                     # on the GPU machine, in the repo root
    python benchmarks/gpu_check.py --out /tmp/check  # same; options: --help
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
try:  # run from a checkout without installing the package (the GPU machine has no venv)
    import c2bridge  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO / "src"))

LATENCY_TARGET_MS = 150.0  # the plan's inference-latency target (adapter contribution only)
FULL_DEPTH = 28  # LTX-Video transformer blocks (c2bridge.full_dims.LTX_TRANSFORMER["num_layers"])
REQUIRED = ("torch", "diffusers", "transformers", "tokenizers", "safetensors", "yaml", "numpy", "PIL", "tqdm")
STAGES = ("env", "build", "extract", "cache", "train_10m", "sample", "step_10m_flow", "step_10m_pixel",
          "step_100m_flow", "step_100m_pixel", "latency", "clip_step", "pool")
STEP_CONFIGS = {  # stage -> (budget name, loss)
    "step_10m_flow": ("10m", "flow"), "step_10m_pixel": ("10m", "pixel"),
    "step_100m_flow": ("100m", "flow"), "step_100m_pixel": ("100m", "pixel"),
}
# loss -> the recipe's loss section (named loss + extra term weights), read by both LossSpec.named and the planner;
# "pixel" adds 0.1·L2 on the decoded one-step estimate (the VAE decode and its backward; no perceptual network)
LOSSES = {"flow": {"name": "flow"}, "pixel": {"name": "flow", "weights": {"l2": 0.1}}}
MFU_STAGE = "step_10m_pixel"  # the plan's recipe: a 10M adapter, pixel losses, batch 8 -> the planner's MFU

PROFILES = {
    # real widths, bf16, on CUDA: ~2-3 minutes on an H100/H200/A100
    "gpu": dict(preset="full", dtype="bfloat16", layers=FULL_DEPTH, encoder_layers=2, image_size=512, batch=8,
                clip_frames=25, clip_batch=1, train_steps=3, sample_batch=2, sample_steps=4, warmup=2, iters=10,
                step_budget_s=20.0, latency_warmup=10, latency_iters=50, matmul_size=8192, time_limit=360.0),
    # the tiny preset's widths, fp32, on CPU: seconds (CI)
    "cpu": dict(preset="tiny", dtype="float32", layers=1, encoder_layers=2, image_size=32, batch=2,
                clip_frames=25, clip_batch=1, train_steps=2, sample_batch=1, sample_steps=2, warmup=1, iters=2,
                step_budget_s=5.0, latency_warmup=2, latency_iters=5, matmul_size=256, time_limit=300.0),
}


class StageFailed(Exception):
    pass


class TimeGuard(Exception):
    pass


# --------------------------------------------------------------------------------------------------- hardware

# dense bf16 tensor-core peak (TFLOP/s, no sparsity) by device name; the planner's GPUS carry the same figures
PEAKS = (("H100 PCIE", 756.0, "h100"), ("H100", 989.0, "h100"), ("H200", 989.0, "h100"), ("GH200", 989.0, "h100"),
         ("A100", 312.0, None), ("L40S", 362.0, None), ("A10G", 70.0, None))


def gpu_peak(name: str, memory_gib: float) -> tuple[float | None, str | None, str]:
    """Device name -> (dense bf16 peak TFLOP/s, the planner's GPU key closest to it, where the peak came from)."""
    from c2bridge import planner

    upper = name.upper()
    for pattern, peak, key in PEAKS:
        if pattern in upper:
            if pattern == "A100":
                key = "a100-80" if memory_gib > 45 else "a100-40"
            if key in planner.GPUS and pattern in ("H100", "A100"):
                peak = planner.GPUS[key].peak_tflops
            note = f"datasheet dense bf16 peak of {pattern} ({peak:g} TFLOP/s)"
            if pattern in ("H200", "GH200"):
                note += ": the H100's compute (the planner's h100 figure)"
            return peak, key, note
    return None, None, f"unknown GPU {name!r}: pass --peak-tflops to get an MFU"


# --------------------------------------------------------------------------------------------------- the check


class Check:
    """Runs the stages in order, recording each (time, memory, what it measured) into one result dict."""

    def __init__(self, args: argparse.Namespace, settings: dict, out: Path, work: Path):
        import torch

        self.args, self.s, self.out, self.work = args, settings, out, work
        self.torch = torch
        self.cuda = settings["device"] == "cuda"
        self.device = torch.device(settings["device"])
        self.dtype = getattr(torch, settings["dtype"])
        self.amp = self.dtype if self.dtype != torch.float32 else None  # autocast dtype (None: plain fp32)
        self.t0 = time.perf_counter()
        self.state: dict = {}
        self.result: dict = {
            "schema": None, "ok": False, "device": settings["device"], "profile": settings["profile"],
            "failed_stage": None, "error": None, "exit_code": None,
            "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "wall_s": None,
            "time_limit_s": settings["time_limit"], "settings": settings, "environment": {}, "depth": {},
            "stages": [], "steps": [], "latency": [], "pool": None, "summary": {},
        }
        from c2bridge.smoke import GPU_CHECK_SCHEMA

        self.result["schema"] = GPU_CHECK_SCHEMA

    # ------------------------------------------------------------------ plumbing
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def log(self, text: str) -> None:
        print(f"[gpu_check {self.elapsed():6.1f}s] {text}", flush=True)

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize(self.device)

    def free(self) -> None:
        gc.collect()
        if self.cuda:
            self.torch.cuda.empty_cache()

    def write(self) -> None:
        from c2bridge._io import atomic_write_json, atomic_write_text

        self.result["wall_s"] = round(self.elapsed(), 2)
        atomic_write_json(self.out / "gpu_check.json", self.result)
        atomic_write_text(self.out / "gpu_check.md", format_table(self.result))

    @contextlib.contextmanager
    def memory(self, record: dict):
        """Peak memory of the block into ``record``: CUDA allocator peaks (GiB), or the process's peak RSS on CPU."""
        if self.cuda:
            self.sync()
            self.torch.cuda.reset_peak_memory_stats(self.device)
            yield
            self.sync()
            record["peak_allocated_gib"] = round(self.torch.cuda.max_memory_allocated(self.device) / 2**30, 3)
            record["peak_reserved_gib"] = round(self.torch.cuda.max_memory_reserved(self.device) / 2**30, 3)
        else:
            from c2bridge.smoke import _PeakRSS

            with _PeakRSS() as rss:
                yield
            record["peak_rss_gib"] = round(rss.peak / 2**30, 3)

    def run_stage(self, name: str, fn) -> None:
        if self.elapsed() > self.s["time_limit"]:
            raise TimeGuard(f"time guard: {self.elapsed():.0f} s elapsed > --time-limit {self.s['time_limit']:g} s "
                            f"before stage {name}")
        record: dict = {"name": name, "ok": False, "started_s": round(self.elapsed(), 2)}
        self.result["stages"].append(record)
        self.log(f"{name} ...")
        t = time.perf_counter()
        try:
            if self.args.fail_stage == name:
                raise RuntimeError(f"forced failure (--fail-stage {name})")
            with self.memory(record):
                record["info"] = fn() or {}
        except TimeGuard:
            raise
        except BaseException as exc:
            record["seconds"] = round(time.perf_counter() - t, 2)
            record["error"] = f"{type(exc).__name__}: {exc}".strip()
            record["traceback"] = traceback.format_exc(limit=12)
            raise StageFailed(name) from exc
        record["seconds"] = round(time.perf_counter() - t, 2)
        record["ok"] = True
        mem = ", ".join(f"{k.replace('_gib', '')} {v:.2f} GiB" for k, v in record.items() if k.endswith("_gib"))
        self.log(f"{name} ok in {record['seconds']:.1f} s ({mem})")
        self.write()

    # ------------------------------------------------------------------ builders
    def preset(self, num_frames: int = 1):
        from c2bridge.presets import get_preset

        return get_preset(self.s["preset"]).replace(image_size=self.s["image_size"], num_frames=num_frames,
                                                    dtype=self.s["dtype"])

    def adapter(self, budget: str, seed: int = 0):
        from c2bridge.adapters import build_adapter

        p = self.preset()
        self.torch.manual_seed(seed)
        adapter = build_adapter("query", budget=p.budgets[budget], vlm_dim=p.vlm_dim, dino_dim=p.dino_dim,
                                out_dim=p.cond_dim, n_tokens=p.n_tokens, n_patches=p.n_patches)
        return adapter.to(self.device)  # fp32 master weights, bf16 autocast (as the trainer runs)

    def planner_dims(self, layers: int | None = None) -> dict:
        """The configs of the models actually built (depth ``layers`` if given), in the planner's format."""
        from c2bridge.full_dims import full_dims

        bridge = self.state["bridge"]
        dims = full_dims()
        dims["ltx_transformer"] = dict(bridge.transformer.config)
        dims["ltx_vae"] = dict(bridge.vae.config)
        if layers is not None:
            dims["ltx_transformer"]["num_layers"] = layers
        return dims

    def planned_step(self, adapter_params: float, loss: str, batch: int, frames: int, vlm_tokens: int,
                     layers: int | None = None) -> dict | None:
        """The planner's FLOPs and peak memory for one optimizer step of exactly this configuration (None when
        the resolution is not the preset's: the planner plans at the preset's resolution)."""
        from c2bridge import planner
        from c2bridge.presets import get_preset

        if self.s["image_size"] != get_preset(self.s["preset"]).image_size:
            return None
        recipe = {"adapter": {"kind": "query", "budget": float(adapter_params)},
                  "optim": {"batch_size": batch, "grad_accum": 1, "epochs": 1, "max_steps": 1},
                  "loss": dict(LOSSES[loss]), "eval": {"every_steps": 0, "n_samples": 0}}
        est = planner.estimate_trial(
            "gpu_check", {}, preset=self.s["preset"], gpu=self.state.get("planner_gpu") or "a100-80",
            recipe=recipe, data={"train": {"check": {"n": batch, "frames": frames}}, "val": {}},
            encoding={**planner.PLAN_ENCODING, "vlm_tokens": int(vlm_tokens)}, dims=self.planner_dims(layers))
        return {"tflop": est.step_tflops["check"], "peak_gib": est.peak_gib,
                "memory_gib": {k: round(v, 3) for k, v in est.memory_gib.items()}}

    # ------------------------------------------------------------------ stages
    def env(self) -> dict:
        import importlib
        import importlib.util
        import platform

        torch = self.torch
        missing = [m for m in REQUIRED if importlib.util.find_spec(m) is None]
        if missing:
            raise RuntimeError(f"missing Python package(s): {', '.join(missing)}; install them, or put their wheels "
                               f"in .whl/ and run bash benchmarks/gpu_check.sh (see docs/running_full.md)")
        for module in ("c2bridge.smoke", "c2bridge.planner", "c2bridge.decoder.ltx", "c2bridge.encoders.extraction",
                       "c2bridge.adapters", "c2bridge.metrics.perf", "c2bridge.experiments.executors.pool"):
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise RuntimeError(f"importing {module} failed: {exc} (a package c2bridge needs is missing here; "
                                   f"carry its wheel in .whl/, see docs/running_full.md)") from exc
        env = {"python": platform.python_version(), "torch": torch.__version__,
               "cuda_runtime": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
               "visible_gpus": torch.cuda.device_count() if torch.cuda.is_available() else 0,
               "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"), "cpu_threads": torch.get_num_threads()}
        for pkg in ("diffusers", "transformers", "tokenizers", "safetensors", "numpy"):
            env[pkg] = getattr(importlib.import_module(pkg), "__version__", "?")
        peak = self.args.peak_tflops
        if self.cuda:
            props = torch.cuda.get_device_properties(self.device)
            memory_gib = props.total_memory / 2**30
            env.update(gpu_name=props.name, gpu_memory_gib=round(memory_gib, 2),
                       compute_capability=f"{props.major}.{props.minor}", multiprocessors=props.multi_processor_count,
                       bf16_supported=torch.cuda.is_bf16_supported())
            found, key, note = gpu_peak(props.name, memory_gib)
            self.state["planner_gpu"] = key
            if peak is None:
                peak = found
            else:
                note = f"--peak-tflops {peak:g}"
            env.update(peak_tflops=peak, peak_source=note, planner_gpu=key)
        else:
            env.update(gpu_name=None, peak_tflops=None,
                       peak_source="no GPU: the CPU has no tensor-core peak, so no MFU is computed")
        # the matmul ceiling this device reaches right now (a reference for the MFU: what plain GEMMs achieve)
        n = int(self.s["matmul_size"]) if self.cuda else min(int(self.s["matmul_size"]), 512)
        a = torch.randn(n, n, device=self.device, dtype=self.dtype)
        b = torch.randn(n, n, device=self.device, dtype=self.dtype)
        for _ in range(3):
            a @ b
        self.sync()
        t, reps = time.perf_counter(), 10
        for _ in range(reps):
            a @ b
        self.sync()
        env["matmul_tflops"] = _sig(2 * n**3 * reps / (time.perf_counter() - t) / 1e12)
        env["matmul_size"] = n
        del a, b
        self.state["peak_tflops"] = peak
        self.result["environment"] = env
        layers = self.s["layers"] if self.s["preset"] == "full" else None
        self.result["depth"] = {
            "transformer_layers": layers, "full_depth_layers": FULL_DEPTH if layers else None,
            "encoder_layers": self.s["encoder_layers"] if layers else None,
            "timed_at_full_depth": layers == FULL_DEPTH if layers else None,
            "note": ("real widths; the LTX transformer at the depth above (full_depth_steps scale a reduced depth "
                     "per block by the planner's FLOPs at the measured MFU); the encoders only run the one-off "
                     "extraction, so they are built shallow" if layers else
                     "tiny preset widths (plumbing only: no figure here describes a GPU)"),
        }
        self.log(f"device {self.device} ({env.get('gpu_name') or 'CPU'}), {self.s['dtype']}, torch {torch.__version__}, "
                 f"matmul {env['matmul_tflops']:.3g} TFLOP/s, peak {peak or '-'} TFLOP/s")
        return {k: env[k] for k in ("torch", "diffusers", "transformers", "gpu_name", "matmul_tflops")}

    def build(self) -> dict:
        torch = self.torch
        s = self.s
        with torch.no_grad():
            if s["preset"] == "full":
                from c2bridge.smoke import build_real_width_bridge, build_real_width_encoders

                encoders = build_real_width_encoders(s["encoder_layers"], seed=0, device=self.device, dtype=self.dtype)
                bridge = build_real_width_bridge(s["layers"], s["image_size"], seed=0, device=self.device,
                                                 dtype=self.dtype, autocast_dtype=self.amp if self.cuda else None)
            else:
                from c2bridge.decoder import LTXBridge
                from c2bridge.encoders import build_encoders

                encoders = build_encoders(s["preset"], device=self.device)
                bridge = LTXBridge.from_preset(s["preset"], device=self.device, dtype=self.dtype, image_size=s["image_size"],
                                               autocast_dtype=self.amp if self.cuda else None)
        self.state.update(encoders=encoders, bridge=bridge)
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        return {"dinov2_params": count(encoders.dino.model), "qwen_params": count(encoders.vlm.model),
                "ltx_transformer_params": count(bridge.transformer), "ltx_vae_params": count(bridge.vae),
                "ltx_transformer_layers": int(bridge.transformer.config.num_layers),
                "bridge": repr(bridge)}

    def extract(self) -> dict:
        from c2bridge.smoke import extract_stage

        encoders, bridge, s = self.state["encoders"], self.state["bridge"], self.s
        image = extract_stage(self.preset(1), encoders, bridge, self.work / "cache_image", s["batch"])
        clip = extract_stage(self.preset(s["clip_frames"]), encoders, bridge, self.work / "cache_clip", s["clip_batch"])
        self.state.update(image_cache=image, clip_cache=clip)
        del self.state["encoders"], encoders  # the caches are all training needs
        self.free()
        return {"image_samples": len(image), "clip_samples": len(clip), "image_key": image.key, "clip_key": clip.key}

    def cache(self) -> dict:
        from c2bridge.smoke import _shape, load_batch

        image = load_batch(self.state["image_cache"], self.device)
        clip = load_batch(self.state["clip_cache"], self.device)
        self.state.update(image_batch=image, clip_batch=clip)
        return {"image": {k: _shape(v) for k, v in image.items() if hasattr(v, "shape")},
                "clip": {k: _shape(v) for k, v in clip.items() if hasattr(v, "shape")}}

    def _train(self, adapter, optimizer, batch, loss: str, steps: int) -> tuple[list[dict], float]:
        """``steps`` optimizer steps -> (their reports, seconds per step measured after a device sync)."""
        from c2bridge.decoder import LossSpec
        from c2bridge.smoke import train_step

        spec = LossSpec.named(LOSSES[loss]["name"], weights=LOSSES[loss].get("weights"))
        self.sync()
        t = time.perf_counter()
        reports = [train_step(adapter, self.state["bridge"], batch, spec, optimizer, generator=self.state["generator"],
                              autocast_dtype=self.amp) for _ in range(steps)]
        self.sync()
        return reports, (time.perf_counter() - t) / max(1, steps)

    def fresh(self, budget: str):
        """A new adapter + its AdamW (the recipe's lr and weight decay) + a fresh noise generator."""
        adapter = self.adapter(budget)
        self.state["generator"] = self.torch.Generator(device=self.device).manual_seed(1)
        return adapter, self.torch.optim.AdamW(adapter.parameters(), lr=1e-4, weight_decay=1e-4)

    def train_10m(self) -> dict:
        torch = self.torch
        adapter, optimizer = self.fresh("10m")
        before = [p.detach().clone() for p in adapter.parameters()]
        reports, per_step = self._train(adapter, optimizer, self.state["image_batch"], "pixel", self.s["train_steps"])
        if all(torch.equal(a, p.detach()) for a, p in zip(before, adapter.parameters())):
            raise RuntimeError("the training steps did not change the adapter's weights")
        self.state["trained_10m"] = adapter
        return {"steps": len(reports), "loss_first": reports[0]["loss"], "loss_last": reports[-1]["loss"],
                "grad_norm_last": reports[-1]["grad_norm"], "cond": reports[-1]["cond"],
                "seconds_per_step_incl_first": round(per_step, 4)}

    def sample(self) -> dict:
        from c2bridge.smoke import sample_stage

        torch = self.torch
        adapter, batch, s = self.state["trained_10m"], self.state["image_batch"], self.s
        n = min(s["sample_batch"], batch["vlm"].shape[0])
        with torch.no_grad(), self.autocast():
            cond = adapter(batch["vlm"][:n], batch["dino"][:n], vlm_mask=batch["vlm_mask"][:n])  # [n, 77, 4096]
        t = time.perf_counter()
        pixels = sample_stage(self.state["bridge"], cond.float(), 1, s["image_size"], s["sample_steps"])
        self.sync()
        seconds = time.perf_counter() - t
        del self.state["trained_10m"]
        self.free()
        return {"pixels": list(pixels.shape), "steps": s["sample_steps"], "batch": n,
                "seconds_per_denoising_step": round(seconds / s["sample_steps"], 4),
                "pixel_mean": round(float(pixels.mean()), 4)}

    def autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return self.torch.autocast(self.device.type, dtype=self.amp)

    def time_step(self, name: str, budget: str, loss: str, batch: dict, frames: int, warmup: int, iters: int,
                  budget_s: float) -> dict:
        """Warm up, then time optimizer steps (at least 2, at most ``iters``, within ``budget_s``)."""
        adapter, optimizer = self.fresh(budget)
        record: dict = {"name": name.removeprefix("step_"), "adapter": budget, "adapter_params": adapter.num_params,
                        "loss": loss, "loss_section": LOSSES[loss], "batch": int(batch["vlm"].shape[0]),
                        "frames": frames, "dtype": self.s["dtype"], "device": self.s["device"]}
        with self.memory(record):
            if warmup:
                self._train(adapter, optimizer, batch, loss, warmup)
            times: list[float] = []
            start = time.perf_counter()
            while len(times) < iters and (len(times) < 2 or time.perf_counter() - start < budget_s):
                times.append(self._train(adapter, optimizer, batch, loss, 1)[1])
        times.sort()
        step_s = times[len(times) // 2]  # median
        layers = int(self.state["bridge"].transformer.config.num_layers)
        vlm_tokens = int(batch["vlm"].shape[1])
        planned = self.planned_step(adapter.num_params, loss, record["batch"], frames, vlm_tokens)
        peak = self.state.get("peak_tflops")
        record.update(iters=len(times), warmup=warmup, step_ms=round(step_s * 1e3, 3),
                      step_ms_min=round(times[0] * 1e3, 3), step_ms_max=round(times[-1] * 1e3, 3),
                      transformer_layers=layers, vlm_tokens=vlm_tokens, planned_tflop=None, achieved_tflops=None,
                      mfu=None, planned_peak_gib=None, planned_memory_gib=None)
        if planned is None:
            record["mfu_reason"] = "resolution differs from the preset's: no planner figures"
        else:
            achieved = planned["tflop"] / step_s
            record.update(planned_tflop=_sig(planned["tflop"]), achieved_tflops=_sig(achieved),
                          planned_peak_gib=round(planned["peak_gib"], 3), planned_memory_gib=planned["memory_gib"])
            if self.cuda and peak:
                record.update(mfu=round(achieved / peak, 4), mfu_reason=None)
            else:
                record["mfu_reason"] = "measured on CPU: MFU is a GPU figure" if not self.cuda else "unknown GPU peak"
            if self.cuda:
                # the allocator sees all but the CUDA context/workspaces that the planner's runtime_overhead covers
                comparable = planned["peak_gib"] - planned["memory_gib"].get("runtime_overhead", 0.0)
                record["planned_allocator_gib"] = round(comparable, 3)
                record["memory_ratio"] = round(record["peak_reserved_gib"] / comparable, 3) if comparable > 0 else None
            if self.s["preset"] == "full" and layers != FULL_DEPTH:
                full = self.planned_step(adapter.num_params, loss, record["batch"], frames, vlm_tokens,
                                         layers=FULL_DEPTH)
                record["full_depth_step_ms"] = round(full["tflop"] / achieved * 1e3, 3)  # same MFU, 28 blocks
                record["full_depth_planned_peak_gib"] = round(full["peak_gib"], 3)
        self.result["steps"].append(record)
        del adapter, optimizer
        self.free()
        text = f"  {record['name']}: {record['step_ms']:.1f} ms/step"
        if record["achieved_tflops"] is not None:
            text += f", {record['achieved_tflops']:.3g} TFLOP/s (planner's count)"
        if record["mfu"] is not None:
            text += f", MFU {record['mfu']:.3f}"
        if record.get("planned_allocator_gib") is not None:
            text += f", peak {record['peak_reserved_gib']:.2f} GiB vs planned {record['planned_allocator_gib']:.2f}"
        self.log(text)
        return {k: record[k] for k in ("step_ms", "achieved_tflops", "mfu", "planned_peak_gib")}

    def latency(self) -> dict:
        from c2bridge.metrics.perf import measure_latency

        batch, s = self.state["image_batch"], self.s
        vlm, dino, mask = batch["vlm"][:1], batch["dino"][:1], batch["vlm_mask"][:1]
        modes = [("bf16_autocast", self.autocast)] if self.amp is not None else []
        modes.append(("fp32", contextlib.nullcontext))
        out = {}
        for budget in ("10m", "100m"):
            adapter = self.adapter(budget).eval()
            for mode, ctx in modes:
                def call():
                    with ctx():
                        return adapter(vlm, dino, vlm_mask=mask)

                lat = measure_latency(call, warmup=s["latency_warmup"], iters=s["latency_iters"], device=self.device)
                rec = {"adapter": budget, "adapter_params": adapter.num_params, "mode": mode, "batch": 1,
                       "vlm_tokens": int(vlm.shape[1]), "median_ms": round(lat["median_ms"], 4),
                       "mean_ms": round(lat["mean_ms"], 4), "min_ms": round(lat["min_ms"], 4), "iters": lat["iters"],
                       "timer": lat["timer"], "target_ms": LATENCY_TARGET_MS,
                       "meets_target": lat["median_ms"] < LATENCY_TARGET_MS, "device": s["device"]}
                self.result["latency"].append(rec)
                out[f"{budget}_{mode}_ms"] = rec["median_ms"]
            del adapter
            self.free()
        return out

    def clip_step(self) -> dict:
        s = self.s
        info = self.time_step("step_clip_10m_pixel", "10m", "pixel", self.state["clip_batch"], s["clip_frames"],
                              warmup=1, iters=1, budget_s=0.0)
        return {**info, "frames": s["clip_frames"], "batch": s["clip_batch"]}

    def pool(self) -> dict:
        from c2bridge.experiments.executors import get_executor
        from c2bridge.experiments.executors.pool import visible_gpus

        gpus = visible_gpus() if self.cuda else []
        placeholder = not gpus
        ids = gpus or ["0", "1"]  # CPU: placeholder ids still show the pinning (each worker gets its own)
        rendezvous = self.work / "pool"
        rendezvous.mkdir(exist_ok=True)
        executor = get_executor("pool", workers=2, gpus=",".join(ids))
        from c2bridge.smoke import pool_probe

        trials = [{"key": f"worker{i}", "run_dir": str(rendezvous), "expect": 2, "wait_s": 90} for i in range(2)]
        results = sorted(executor.run(pool_probe, trials), key=lambda r: str(r.get("key")))
        failed = [r for r in results if r.get("status") != "completed"]
        if failed:
            raise RuntimeError(f"pool worker failed: {failed[0].get('error')}")
        expected = sorted(ids[i % len(ids)] for i in range(2))
        got = sorted(str(r["cuda_visible_devices"]) for r in results)
        problems = []
        if len({r["pid"] for r in results}) != 2:
            problems.append("both trials ran in one worker process")
        if got != expected:
            problems.append(f"workers pinned to {got}, expected {expected}")
        if self.cuda:
            torch = self.torch
            env = os.environ.get("CUDA_VISIBLE_DEVICES")
            order = [g.strip() for g in env.split(",")] if env is not None else None
            for r in results:
                if r.get("device_count") != 1:
                    problems.append(f"worker {r['pid']} sees {r.get('device_count')} GPUs, expected exactly 1")
                    continue
                gid = str(r["cuda_visible_devices"])
                index = order.index(gid) if order is not None else int(gid)
                parent = torch.cuda.get_device_properties(index)
                if str(getattr(parent, "uuid", "")) != r.get("uuid") or parent.name != r.get("name"):
                    problems.append(f"worker pinned to {gid} sees {r.get('name')} {r.get('uuid')}, not the parent's "
                                    f"GPU {index} ({parent.name} {getattr(parent, 'uuid', '')})")
                if not r.get("matmul_ok"):
                    problems.append(f"worker {r['pid']}: matmul on its GPU was not finite")
        self.result["pool"] = {"workers": results, "gpus": ids, "placeholder_ids": placeholder,
                               "expected_pins": expected, "ok": not problems, "problems": problems}
        if problems:
            raise RuntimeError("; ".join(problems))
        return {"pins": got, "placeholder_ids": placeholder}

    # ------------------------------------------------------------------ all of it
    def run(self) -> int:
        stages = {name: getattr(self, name) for name in STAGES if name not in STEP_CONFIGS}
        s = self.s
        for name in STAGES:
            if name in STEP_CONFIGS:
                budget, loss = STEP_CONFIGS[name]
                fn = (lambda n=name, b=budget, lo=loss: self.time_step(n, b, lo, self.state["image_batch"], 1,
                                                                       s["warmup"], s["iters"], s["step_budget_s"]))
            else:
                fn = stages[name]
            self.run_stage(name, fn)
        self.result["ok"] = True
        return 0

    def summarize(self) -> None:
        steps = {r["name"]: r for r in self.result["steps"]}
        env = self.result["environment"]
        summary: dict = {"device": self.result["device"], "gpu_name": env.get("gpu_name"),
                         "peak_tflops": env.get("peak_tflops"), "matmul_tflops": env.get("matmul_tflops")}
        main = steps.get(MFU_STAGE.removeprefix("step_"))
        if main is not None and main["mfu"] is not None:
            summary.update(mfu_for_planner=main["mfu"], mfu_reason=None,
                           mfu_source=f"{main['adapter']} query adapter, {main['loss']} loss (flow + 0.1 L2 through "
                                      f"the VAE decoder), batch {main['batch']}, {main['frames']} frame, "
                                      f"{main['transformer_layers']} transformer blocks, {main['dtype']}")
        else:
            summary.update(mfu_for_planner=None, mfu_source=None, mfu_reason=(
                "not measured on a GPU (device: cpu)" if not self.cuda else
                "the 10M pixel-loss step did not complete" if main is None else main["mfu_reason"]))
        summary["mfu"] = {name: r["mfu"] for name, r in steps.items()}
        summary["step_ms"] = {name: r["step_ms"] for name, r in steps.items()}
        if self.cuda:
            summary["peak_gib_vs_planned"] = {name: [r["peak_reserved_gib"], r.get("planned_allocator_gib")]
                                              for name, r in steps.items()}
        lat = [r for r in self.result["latency"] if r["mode"] == ("bf16_autocast" if self.amp is not None else "fp32")]
        summary["latency_ms"] = {r["adapter"]: r["median_ms"] for r in lat}
        summary["latency_target_ms"] = LATENCY_TARGET_MS
        summary["latency_meets_target"] = all(r["meets_target"] for r in lat) if lat else None
        summary["pool_ok"] = (self.result["pool"] or {}).get("ok")
        summary["stage_seconds"] = {r["name"]: r.get("seconds") for r in self.result["stages"]}
        self.result["summary"] = summary


# --------------------------------------------------------------------------------------------------- report


def _sig(value: float, digits: int = 5) -> float:
    """``value`` to ``digits`` significant digits (FLOP counts span 1e-5 to 1e2 TFLOP between CPU and GPU)."""
    return float(f"{value:.{digits}g}")


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(result: dict) -> str:
    """The short human-readable report (markdown) written next to the JSON."""
    env, s = result.get("environment") or {}, result.get("settings") or {}
    status = "ok" if result.get("ok") else f"FAILED at stage {result.get('failed_stage')}: {result.get('error')}"
    lines = [f"# GPU check: {env.get('gpu_name') or 'CPU (no GPU: plumbing check only, no GPU figures)'}", "",
             f"- device {result.get('device')}, {s.get('dtype')}, profile {result.get('profile')}, "
             f"torch {env.get('torch')}, diffusers {env.get('diffusers')}, transformers {env.get('transformers')}",
             f"- status: {status}; wall {result.get('wall_s')} s (time limit {result.get('time_limit_s')} s)",
             f"- matmul ceiling {env.get('matmul_tflops')} TFLOP/s; MFU against peak {env.get('peak_tflops')} "
             f"TFLOP/s ({env.get('peak_source')})"]
    depth = result.get("depth") or {}
    if depth.get("note"):
        lines.append(f"- depth: transformer {depth.get('transformer_layers')} of {depth.get('full_depth_layers')} "
                     f"blocks, encoders {depth.get('encoder_layers')} layers; {depth['note']}")
    lines += ["", "| stage | ok | s | peak GiB |", "|---|---|---:|---:|"]
    for r in result.get("stages", []):
        mem = r.get("peak_reserved_gib", r.get("peak_rss_gib"))
        lines.append(f"| {r['name']} | {'yes' if r.get('ok') else 'NO'} | {r.get('seconds', '')} | "
                     f"{'' if mem is None else f'{mem:.2f}'} |")
    if result.get("steps"):
        lines += ["", "| training step | params | batch x frames | ms/step | planned TFLOP | TFLOP/s | MFU | "
                      "peak GiB | planned GiB |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in result["steps"]:
            peak = r.get("peak_reserved_gib", r.get("peak_rss_gib"))
            planned = r.get("planned_allocator_gib", r.get("planned_peak_gib"))
            cells = [_fmt(r.get("planned_tflop"), ".3g"), _fmt(r.get("achieved_tflops"), ".3g"),
                     _fmt(r.get("mfu"), ".3f"), _fmt(peak, ".2f"), _fmt(planned, ".2f")]
            lines.append(f"| {r['name']} | {r['adapter_params'] / 1e6:.2f}M | {r['batch']} x {r['frames']} | "
                         f"{r['step_ms']:.1f} | " + " | ".join(cells) + " |")
    if result.get("latency"):
        lines += ["", f"| adapter latency (batch 1) | mode | median ms | target ms |", "|---|---|---:|---:|"]
        for r in result["latency"]:
            lines.append(f"| {r['adapter']} | {r['mode']} | {r['median_ms']:.3f} | {r['target_ms']:g} |")
    pool = result.get("pool")
    if pool:
        pins = ", ".join(f"pid {w['pid']} -> CUDA_VISIBLE_DEVICES={w['cuda_visible_devices']}" for w in pool["workers"])
        lines += ["", f"- pool executor: {'ok' if pool['ok'] else 'NOT ok'} ({pins})"
                      + (" [placeholder ids: no GPU]" if pool.get("placeholder_ids") else "")]
    summary = result.get("summary") or {}
    if summary.get("mfu_for_planner") is not None:
        lines += ["", f"MFU for the planner: {summary['mfu_for_planner']:.3f} ({summary.get('mfu_source')}): "
                      f"`c2bridge plan --mfu-from gpu_check.json`"]
    elif summary:
        lines += ["", f"No MFU for the planner: {summary.get('mfu_reason')}."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------- main


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.environ.get("OUT") or "gpu_check_out",
                   help="where gpu_check.json and gpu_check.md go (default: $OUT, else ./gpu_check_out)")
    p.add_argument("--layers", type=int, default=None,
                   help=f"LTX transformer blocks on the GPU (default {FULL_DEPTH}, the real depth; fewer: the JSON "
                        f"scales the step time per block to {FULL_DEPTH})")
    p.add_argument("--encoder-layers", type=int, default=None, help="DINOv2/Qwen layers (default 2)")
    p.add_argument("--batch", type=int, default=None, help="training micro-batch (default 8, the plan's)")
    p.add_argument("--image-size", type=int, default=None, help="decoder resolution (default 512)")
    p.add_argument("--clip-frames", type=int, default=None, help="frames of the clip step (default 25)")
    p.add_argument("--iters", type=int, default=None, help="timed steps per configuration (default 10)")
    p.add_argument("--time-limit", type=float, default=None,
                   help="global time guard in seconds: no stage starts after it (default 360 on GPU)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="the GPU's dense bf16 peak for the MFU (default: from the device name)")
    p.add_argument("--profile", choices=("auto", "gpu", "cpu"), default="auto", help=argparse.SUPPRESS)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default=None, help=argparse.SUPPRESS)
    p.add_argument("--fail-stage", choices=STAGES, default=None, help=argparse.SUPPRESS)  # tests: forced failure
    args = p.parse_args(argv)
    for name in ("layers", "encoder_layers", "batch", "image_size", "iters"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.image_size is not None and args.image_size % 32:
        p.error(f"--image-size must be a multiple of 32 (the LTX VAE compresses 32x), got {args.image_size}")
    if args.clip_frames is not None and (args.clip_frames < 9 or (args.clip_frames - 1) % 8):
        p.error(f"--clip-frames must be 8k+1 and >= 9 (9, 17, 25, ...), got {args.clip_frames}")
    return args


def resolve_settings(args: argparse.Namespace, cuda: bool) -> dict:
    profile = args.profile if args.profile != "auto" else ("gpu" if cuda else "cpu")
    s = dict(PROFILES[profile])
    for key in ("layers", "encoder_layers", "batch", "image_size", "clip_frames", "iters", "time_limit", "dtype"):
        if getattr(args, key) is not None:
            s[key] = getattr(args, key)
    s["device"] = "cuda" if cuda else "cpu"
    if not cuda and args.dtype is None:
        s["dtype"] = "float32"  # real widths forced onto a CPU (developer runs): fp32 unless asked
    s["profile"] = profile
    s["clip_batch"] = min(s["clip_batch"], s["batch"])
    return s


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import torch

    cuda = torch.cuda.is_available()
    settings = resolve_settings(args, cuda)
    work = Path(tempfile.mkdtemp(prefix="c2bridge-gpu-check-"))  # caches, pool rendezvous: never under --out
    check = Check(args, settings, out, work)
    check.log(f"GPU check, profile {settings['profile']} on {settings['device']} ({settings['dtype']}), "
              f"results -> {out}/gpu_check.json; time guard {settings['time_limit']:g} s")

    def alarm(signum, frame):  # a stage that hangs past the guard (plus a minute of grace)
        raise TimeGuard(f"time guard: still running {settings['time_limit'] + 60:g} s after the start")

    if hasattr(signal, "SIGALRM"):
        signal.signal(signal.SIGALRM, alarm)
        signal.alarm(int(settings["time_limit"] + 60))
    code = 0
    try:
        code = check.run()
    except StageFailed as exc:
        stage = str(exc)
        record = next(r for r in check.result["stages"] if r["name"] == stage)
        check.result.update(failed_stage=stage, error=record.get("error"))
        print(record.get("traceback", ""), file=sys.stderr)
        code = 1
    except TimeGuard as exc:
        running = [r["name"] for r in check.result["stages"] if not r.get("ok")]
        stage = running[-1] if running else next((n for n in STAGES if n not in
                                                  {r["name"] for r in check.result["stages"]}), "?")
        check.result.update(failed_stage=stage, error=str(exc))
        code = 3
    finally:
        if hasattr(signal, "SIGALRM"):
            signal.alarm(0)
        check.result["exit_code"] = code
        check.summarize()
        check.write()
        shutil.rmtree(work, ignore_errors=True)
    if code:
        print(f"[gpu_check] FAILED at stage {check.result['failed_stage']}: {check.result['error']} "
              f"(partial results: {out / 'gpu_check.json'})", file=sys.stderr, flush=True)
    else:
        check.log(f"all stages ok; {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")
    print(format_table(check.result), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
