"""Latency and memory of one module (the adapter alone, per the plan: "adapter contribution only").

- ``measure_latency``: warm-up calls excluded; CUDA events (after a synchronize) on GPU, ``time.perf_counter`` on
  CPU; run under ``torch.inference_mode``.
- ``peak_memory``: on CUDA, ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (bytes the
  caching allocator handed out, peak, minus what was allocated before the call). On CPU, the process's peak
  resident set size (Linux ``VmHWM``), reset first by writing ``5`` to ``/proc/self/clear_refs`` so the peak is
  this call's; where that is not possible, ``resource.getrusage`` ``ru_maxrss`` (the whole process's lifetime
  peak, not resettable). The result says which method was used. CPU RSS counts every allocation in the process
  (Python objects, libraries), so it is coarser than the CUDA figure.
- ``param_memory``: bytes of parameters (+ buffers), from numel × element size.
"""
from __future__ import annotations

import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn


def _infer_device(fn: Any, args: tuple, kwargs: dict) -> torch.device:
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value.device
    if isinstance(fn, nn.Module):
        for p in fn.parameters():
            return p.device
    return torch.device("cpu")


def measure_latency(
    fn: Callable | nn.Module,
    *args: Any,
    warmup: int = 3,
    iters: int = 20,
    device: torch.device | str | None = None,
    **kwargs: Any,
) -> dict[str, float | int | str]:
    """Time ``fn(*args, **kwargs)``: ``{"mean_ms", "median_ms", "std_ms", "min_ms", "iters", "warmup", "timer"}``."""
    if iters < 1 or warmup < 0:
        raise ValueError(f"measure_latency needs iters >= 1 and warmup >= 0; got iters={iters}, warmup={warmup}")
    device = torch.device(device) if device is not None else _infer_device(fn, args, kwargs)
    use_cuda = device.type == "cuda"
    times_ms: list[float] = []
    with torch.inference_mode():
        for _ in range(warmup):
            fn(*args, **kwargs)
        if use_cuda:
            torch.cuda.synchronize(device)
        for _ in range(iters):
            if use_cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn(*args, **kwargs)
                end.record()
                torch.cuda.synchronize(device)
                times_ms.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                fn(*args, **kwargs)
                times_ms.append((time.perf_counter() - t0) * 1e3)
    return {
        "mean_ms": statistics.fmean(times_ms),
        "median_ms": statistics.median(times_ms),
        "std_ms": statistics.pstdev(times_ms),
        "min_ms": min(times_ms),
        "iters": iters,
        "warmup": warmup,
        "timer": "cuda_events" if use_cuda else "perf_counter",
    }


def _read_status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def peak_memory(
    fn: Callable, *args: Any, device: torch.device | str | None = None, **kwargs: Any
) -> dict[str, int | str]:
    """Run ``fn`` once (inference mode) and report ``{"peak_bytes", "baseline_bytes", "method"}``.

    ``peak_bytes - baseline_bytes`` is what the call itself added at its peak.
    """
    device = torch.device(device) if device is not None else _infer_device(fn, args, kwargs)
    with torch.inference_mode():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            baseline = torch.cuda.memory_allocated(device)
            fn(*args, **kwargs)
            torch.cuda.synchronize(device)
            return {"peak_bytes": int(torch.cuda.max_memory_allocated(device)), "baseline_bytes": int(baseline),
                    "method": "cuda_max_memory_allocated"}
        if _reset_peak_rss() and (baseline_kb := _read_status_kb("VmRSS")) is not None:
            fn(*args, **kwargs)
            peak_kb = _read_status_kb("VmHWM") or baseline_kb
            return {"peak_bytes": peak_kb * 1024, "baseline_bytes": baseline_kb * 1024, "method": "cpu_vmhwm"}
        # ru_maxrss: kilobytes on Linux, bytes on macOS; lifetime peak of the process
        scale = 1 if sys.platform == "darwin" else 1024
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
        fn(*args, **kwargs)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
        return {"peak_bytes": int(peak), "baseline_bytes": int(baseline), "method": "cpu_ru_maxrss"}


def param_memory(module: nn.Module, trainable_only: bool = False, include_buffers: bool = True) -> int:
    """Bytes held by the module's parameters (and buffers, unless ``include_buffers=False``)."""
    total = sum(p.numel() * p.element_size() for p in module.parameters() if p.requires_grad or not trainable_only)
    if include_buffers and not trainable_only:
        total += sum(b.numel() * b.element_size() for b in module.buffers())
    return int(total)


__all__ = ["measure_latency", "param_memory", "peak_memory"]
