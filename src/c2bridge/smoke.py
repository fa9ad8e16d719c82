"""Real-width smoke run (`c2bridge smoke --preset full-dims`): the full path at the real models' widths, on CPU.

Every real class is built at its real widths (``c2bridge.full_dims``) with random weights and 1-2 layers:
DINOv2-L (1024 wide, 224 px -> 256 patch tokens), Qwen2.5-VL-7B (text 3584 wide, vocab 152064; its 1280-wide
vision tower with 14 px patches, 2x2 merge to 3584), the LTX-Video transformer (2048 inner, caption_channels 4096,
128 latent channels) and the real LTX-Video VAE (0.9.0 config, all its layers). Then it runs the stages a real
trial runs: extract -> cache -> one training step of a 10M adapter (flow + x0 pixel loss) -> one sampling call
through ``LTXPipeline``, printing each stage's shapes, wall time and peak memory (resident set size).

The Qwen tokenizer is the miniature's word-level one (the real one needs hub files) inside a real
``Qwen2_5_VLProcessor`` with the 7B's image processor sizes; token ids and the vocabulary size (the embedding
table's row count) follow that tokenizer; every width is the 7B's.

The stages are functions (``extract_stage``, ``load_batch``, ``train_step``, ``sample_stage``) that the GPU check
(``benchmarks/gpu_check.py``: the same path in bf16 on CUDA, timed against the planner) shares; so are
``pool_probe`` (where a pool-executor worker runs) and ``read_gpu_check_mfu`` (``c2bridge plan --mfu-from``).
"""
from __future__ import annotations

import os
import resource
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

SMOKE_SEED = 0
ADAPTER_BUDGET = 10e6  # the plan's 10M scale


class _PeakRSS:
    """Samples this process's resident set size in a thread: the peak within a stage (ru_maxrss is lifetime)."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def current() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            self._stop.wait(self.interval)

    def __enter__(self) -> "_PeakRSS":
        self.peak = self.current()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.peak = max(self.peak, self.current())


def _shape(x: Any) -> Any:
    if hasattr(x, "shape"):
        return list(x.shape)
    if isinstance(x, dict):
        return {k: _shape(v) for k, v in x.items() if hasattr(v, "shape")}
    return x


def qwen_processor_7b_sizes():
    """A real ``Qwen2_5_VLProcessor`` with the 7B's image/video sizes (patch 14, merge 2, temporal 2) over the
    miniature's word-level tokenizer (no hub files)."""
    from transformers import Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    from c2bridge.encoders.qwen_vl import MINI_CHAT_TEMPLATE, mini_processor
    from c2bridge.full_dims import QWEN25_VL_7B_VISION as v
    sizes = dict(patch_size=v["patch_size"], merge_size=v["spatial_merge_size"],
                 temporal_patch_size=v["temporal_patch_size"], min_pixels=56 * 56, max_pixels=1024 * 1024)
    return Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(**sizes), tokenizer=mini_processor().tokenizer,
                               video_processor=Qwen2VLVideoProcessor(**sizes), chat_template=MINI_CHAT_TEMPLATE)


def _init_rng(device):
    """A forked RNG scope for seeded random init (CPU, plus the CUDA device the weights are built on)."""
    import torch

    devices = [torch.device(device).index or 0] if device is not None and torch.device(device).type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


def build_real_width_encoders(layers: int = 1, seed: int = SMOKE_SEED, device=None, dtype=None):
    """DINOv2-L and Qwen2.5-VL-7B at their real widths, ``layers`` deep, random weights -> ``Encoders``.

    ``device``: where the weights are created (initialised there: fast on a GPU); ``dtype``: cast after init
    (e.g. ``torch.bfloat16`` on CUDA, as the full preset loads them)."""
    import torch
    from transformers import Dinov2Config, Dinov2Model, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from c2bridge.encoders import Encoders
    from c2bridge.encoders.dinov2 import DinoPreprocess, DinoV2Encoder
    from c2bridge.encoders.qwen_vl import QwenPreprocess, QwenVLEncoder
    from c2bridge.full_dims import DINOV2_LARGE, QWEN25_VL_7B_TEXT, QWEN25_VL_7B_VISION
    from c2bridge.presets import get_preset

    full = get_preset("full")
    processor = qwen_processor_7b_sizes()  # outside the device scope: the processor works on CPU tensors
    tok = processor.tokenizer
    ids = {name: tok.convert_tokens_to_ids(t) for name, t in [
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")]}
    # vocab: the tokenizer's (the real 152064 only sizes the embedding table and lm_head, never a feature width;
    # keeping it would add 1.1B parameters that no token here can reach)
    special = dict(bos_token_id=tok.convert_tokens_to_ids("<|im_start|>"),
                   eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tok.pad_token_id)
    text = {**QWEN25_VL_7B_TEXT, "num_hidden_layers": layers, "vocab_size": len(tok), **special}
    vision = {**QWEN25_VL_7B_VISION, "depth": layers, "fullatt_block_indexes": [layers - 1]}
    with _init_rng(device), torch.device(device or "cpu"):
        torch.manual_seed(seed)
        dino = Dinov2Model(Dinov2Config(**{**DINOV2_LARGE, "num_hidden_layers": layers}))
        qwen = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids,
                                                                   **special))
    if dtype is not None:
        dino, qwen = dino.to(dtype), qwen.to(dtype)
    dino_enc = DinoV2Encoder(dino, DinoPreprocess(image_size=full.encoder_image_size),
                             model_id=f"random-real-width-dinov2-large-{layers}l", revision=f"seed{seed}")
    # the full preset's Qwen token counts (448 px images, 224 px frames) at any smoke resolution
    vlm_pre = QwenPreprocess(min_pixels=448 * 448, max_pixels=448 * 448, video_min_pixels=224 * 224,
                             video_max_pixels=224 * 224)
    vlm_enc = QwenVLEncoder(qwen, processor, vlm_pre,
                            model_id=f"random-real-width-qwen2.5-vl-7b-{layers}l", revision=f"seed{seed}")
    return Encoders(dino_enc, vlm_enc)


def build_real_width_bridge(layers: int = 1, image_size: int = 512, seed: int = SMOKE_SEED, device=None,
                            dtype=None, autocast_dtype=None):
    """The LTX-Video transformer at real widths (``layers`` deep) + the real VAE config, random weights, built on
    ``device`` and cast to ``dtype`` (``autocast_dtype``: the bridge's own autocast on CUDA, as in training)."""
    import torch
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel

    from c2bridge.decoder import LTXBridge
    from c2bridge.full_dims import LTX_TRANSFORMER, LTX_VAE
    from c2bridge.presets import get_preset

    with _init_rng(device), torch.device(device or "cpu"):
        torch.manual_seed(seed)
        transformer = LTXVideoTransformer3DModel(**{**LTX_TRANSFORMER, "num_layers": layers})
        vae = AutoencoderKLLTXVideo(**LTX_VAE)
    # LTX-Video's scheduler settings (diffusers' convert_ltx_to_diffusers.py)
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05,
                                                base_image_seq_len=1024, max_image_seq_len=4096, shift_terminal=0.1)
    bridge = LTXBridge(transformer, vae, scheduler, n_tokens=get_preset("full").n_tokens, image_size=image_size,
                       default_steps=2, autocast_dtype=autocast_dtype, preset="full")
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # its "modules to keep in float32: []" warning on a cast: none here
    try:
        return bridge.to(dtype=dtype)
    finally:
        diffusers_logging.set_verbosity(level)


# ------------------------------------------------------------------------------------------------ the stages
# Shared by `c2bridge smoke` (below) and the GPU check (benchmarks/gpu_check.py).


def extract_stage(preset, encoders, bridge, out, samples: int, seed: int = SMOKE_SEED, dataset: str | None = None):
    """The shapes world's first ``samples`` train items through both encoders and the VAE (latents cached), at
    ``preset``'s resolution: images, or clips of its frame count (``shapes_clips``) -> the ``FeatureCache`` in
    ``out``. ``dataset`` forces one (``shapes``: images even on a clip preset)."""
    from c2bridge.encoders.extraction import extract

    if dataset is None:
        dataset = "shapes" if preset.num_frames == 1 else "shapes_clips"  # shapes are images on every preset
    return extract(preset, dataset, "train", out, limit=samples, seed=seed, encoders=encoders,
                   latents_fn=bridge.encode_latents, latents_key={"vae": f"random-{bridge.preset}-ltx-vae"},
                   batch_size=samples, progress=False)


def load_batch(cache, device=None) -> dict:
    """Every sample of ``cache`` as one training batch (``collate_features``), tensors moved to ``device``."""
    import torch

    from c2bridge.encoders.cache import collate_features

    batch = collate_features([cache[i] for i in range(len(cache))])
    return {k: (v.to(device) if device is not None and torch.is_tensor(v) else v) for k, v in batch.items()}


def train_step(adapter, bridge, batch: "dict | list[dict]", loss, optimizer, generator=None, autocast_dtype=None,
               max_norm: float = 1.0) -> dict:
    """One optimizer step of the adapter's objective, as the trainer takes it (autocast over the adapter and the
    frozen decoder, backward, gradient clipping, AdamW) -> ``{"loss": {term: value}, "grad_norm"}``. A list of
    micro-batches is one accumulated step, as a mixed training set takes it (one dataset per micro-batch: an image
    batch and a clip batch); ``loss`` is then the mean over them. Raises when the step did not train (non-finite
    loss, zero gradient)."""
    import contextlib
    import math

    import torch

    device = next(adapter.parameters()).device
    batches = batch if isinstance(batch, (list, tuple)) else [batch]
    parts: dict[str, float] = {}
    for micro in batches:
        autocast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
                    else contextlib.nullcontext())
        with autocast:
            cond = adapter(micro["vlm"], micro["dino"], vlm_mask=micro["vlm_mask"])  # [B, 77, 4096]
            total, micro_parts = bridge.training_loss(cond, None, micro["latent"], micro.get("target"), loss=loss,
                                                      generator=generator)
        (total / len(batches)).backward()
        for k, v in micro_parts.items():
            parts[k] = parts.get(k, 0.0) + v / len(batches)
    grad_norm = float(torch.nn.utils.clip_grad_norm_(adapter.parameters(), max_norm))
    if not (math.isfinite(parts["total"]) and math.isfinite(grad_norm) and grad_norm > 0):
        raise RuntimeError(f"training step did not train: loss {parts}, grad norm {grad_norm}")
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {"loss": {k: round(v, 4) for k, v in parts.items()}, "grad_norm": round(grad_norm, 4),
            "cond": list(cond.shape)}


def sample_stage(bridge, cond, num_frames: int, image_size: int, steps: int, seed: int = SMOKE_SEED):
    """One ``LTXPipeline`` call from the adapter's conditioning -> pixels, checked finite and in [0, 1]."""
    import torch

    with torch.no_grad():
        pixels = bridge.sample(cond.detach(), None, num_frames=num_frames, height=image_size, width=image_size,
                               steps=steps, seed=seed)
    if not (torch.isfinite(pixels).all() and 0 <= float(pixels.min()) and float(pixels.max()) <= 1):
        raise RuntimeError("sampling returned non-finite or out-of-range pixels")
    return pixels


def run_smoke(out: str | os.PathLike | None = None, image_size: int | None = None, num_frames: int | None = None,
              layers: int = 1, samples: int = 2, sample_steps: int = 2, echo: bool = True,
              seed: int = SMOKE_SEED) -> dict:
    """Run every stage; returns ``{"ok", "stages": [{name, seconds, peak_rss_gib, shapes}], "peak_rss_gib",
    "settings"}``. Defaults: the full preset's resolution (512 px) and one frame (the study trains on images;
    pass ``num_frames=25`` for the clip path, ~10x the compute: its training step is then one mixed step, an
    image micro-batch and a clip micro-batch accumulated, as a mixed training set trains)."""
    import torch

    from c2bridge.presets import get_preset

    if layers not in (1, 2):
        raise ValueError(f"layers must be 1 or 2 (a smoke run, not the model), got {layers}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if sample_steps < 2:  # LTX's scheduler (shift_terminal=0.1) divides by zero for a single step -> NaN
        raise ValueError(f"steps must be >= 2 with LTX-Video's scheduler, got {sample_steps}")
    full = get_preset("full")
    image_size = int(image_size or full.image_size)
    num_frames = int(num_frames or 1)
    if image_size % 32:
        raise ValueError(f"image size {image_size} must be a multiple of 32 (the LTX VAE compresses 32x)")
    if num_frames != 1 and (num_frames - 1) % 8:
        raise ValueError(f"frames {num_frames} must be 1 or 8k+1 (9, 17, 25, ...) for the LTX VAE")
    preset = full.replace(image_size=image_size, num_frames=num_frames, dtype="float32")
    settings = {"image_size": image_size, "num_frames": num_frames, "layers": layers, "samples": samples,
                "sample_steps": sample_steps, "device": "cpu", "dtype": "float32", "torch_threads": torch.get_num_threads()}
    stages: list[dict] = []
    report: dict = {"ok": False, "settings": settings, "stages": stages}

    def log(text: str) -> None:
        if echo:
            print(text, flush=True)

    @contextmanager
    def stage(name: str):
        info: dict = {"name": name, "shapes": {}}
        t0 = time.perf_counter()
        with _PeakRSS() as rss:
            yield info
        info["seconds"] = round(time.perf_counter() - t0, 2)
        info["peak_rss_gib"] = round(rss.peak / 2**30, 2)
        stages.append(info)
        shapes = "; ".join(f"{k} {v}" for k, v in info["shapes"].items())
        log(f"[smoke] {name:<10} {info['seconds']:>7.1f} s  peak RSS {info['peak_rss_gib']:>6.2f} GiB  {shapes}")

    log(f"[smoke] real widths, random weights, {layers} layer(s), CPU float32: {image_size}x{image_size} px, "
        f"{num_frames} frame(s), batch {samples}")
    tmp = None
    if out is None:
        tmp = tempfile.TemporaryDirectory(prefix="c2bridge-smoke-")
        out = tmp.name
    out = Path(out)
    try:
        with torch.no_grad(), stage("build") as info:
            encoders = build_real_width_encoders(layers, seed)
            bridge = build_real_width_bridge(layers, image_size, seed)
            from c2bridge.adapters import build_adapter

            torch.manual_seed(seed)
            adapter = build_adapter("query", budget=ADAPTER_BUDGET, vlm_dim=full.vlm_dim, dino_dim=full.dino_dim,
                                    out_dim=full.cond_dim, n_tokens=full.n_tokens, n_patches=full.n_patches)
            count: Callable = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
            info["shapes"] = {
                "dinov2": f"{count(encoders.dino.model) / 1e6:.0f}M params, hidden {encoders.dino.dim}",
                "qwen": f"{count(encoders.vlm.model) / 1e6:.0f}M params, hidden {encoders.vlm.dim}",
                "ltx_transformer": f"{count(bridge.transformer) / 1e6:.0f}M params, caption {bridge.cond_dim}",
                "ltx_vae": f"{count(bridge.vae) / 1e6:.0f}M params",
                "adapter": f"{adapter.num_params / 1e6:.2f}M trainable",
            }

        from c2bridge.encoders.cache import FeatureCache

        mixed = num_frames > 1  # clips: the mixed training set's step, one image micro-batch + one clip one
        with stage("extract") as info:
            cache = extract_stage(preset, encoders, bridge, out / "cache", samples, seed)
            info["shapes"] = {"samples": len(cache), "key": cache.key}
            if mixed:
                images = extract_stage(preset, encoders, bridge, out / "cache_images", samples, seed, "shapes")
                info["shapes"]["image_samples"] = len(images)
        del encoders  # the cache is all training needs

        with stage("cache") as info:
            batch = load_batch(FeatureCache(out / "cache"))
            info["shapes"] = {k: _shape(v) for k, v in batch.items() if hasattr(v, "shape")}
            micro_batches = [batch]
            if mixed:
                image_batch = load_batch(FeatureCache(out / "cache_images"))
                micro_batches = [image_batch, batch]
                info["shapes"].update({f"image_{k}": _shape(v) for k, v in image_batch.items()
                                       if k in ("target", "latent")})

        from c2bridge.decoder import LossSpec

        with stage("train_step") as info:
            optimizer = torch.optim.AdamW(adapter.parameters(), lr=1e-4, weight_decay=1e-4)
            before = [p.detach().clone() for p in adapter.parameters()]
            step = train_step(adapter, bridge, micro_batches, LossSpec(terms={"flow": 1.0, "l2": 0.1}), optimizer,
                              generator=torch.Generator().manual_seed(seed))
            if all(torch.equal(a, p.detach()) for a, p in zip(before, adapter.parameters())):
                raise RuntimeError("training step did not change the adapter's weights")
            with torch.no_grad():
                cond = adapter(batch["vlm"], batch["dino"], vlm_mask=batch["vlm_mask"])  # [B, 77, 4096]
            info["shapes"] = {"cond": _shape(cond), "latent": _shape(batch["latent"]), "loss": step["loss"],
                              "grad_norm": step["grad_norm"], "micro_batches": len(micro_batches)}

        with stage("sample") as info:
            pixels = sample_stage(bridge, cond, num_frames, image_size, sample_steps, seed)
            info["shapes"] = {"pixels": _shape(pixels)}
        report["ok"] = True
    finally:
        report["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
        if tmp is not None:
            tmp.cleanup()
    log(f"[smoke] {'ok' if report['ok'] else 'FAILED'}: process peak RSS {report['peak_rss_gib']:.2f} GiB, "
        f"total {sum(s['seconds'] for s in stages):.1f} s")
    return report


# ---------------------------------------------------------------------------------------------- GPU check helpers

GPU_CHECK_SCHEMA = "c2bridge.gpu_check/1"  # the result file benchmarks/gpu_check.py writes


def pool_probe(trial: dict) -> dict:
    """A pool-executor trial that reports where it ran: its pid, ``CUDA_VISIBLE_DEVICES`` and the GPU it sees.

    Every probe waits (up to ``trial["wait_s"]``) until ``trial["expect"]`` probes have checked in under
    ``trial["run_dir"]``, so each of the pool's workers takes one trial (a fast worker cannot take them all)."""
    import torch

    rendezvous = Path(trial["run_dir"])
    (rendezvous / f"{os.getpid()}.pid").write_text(str(trial["key"]))
    deadline = time.monotonic() + float(trial.get("wait_s", 60))
    while len(list(rendezvous.glob("*.pid"))) < int(trial["expect"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    info = {"key": trial["key"], "status": "completed", "pid": os.getpid(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "cuda_available": torch.cuda.is_available(), "device_count": torch.cuda.device_count(),
            "peers": len(list(rendezvous.glob("*.pid")))}
    if info["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        info.update(name=props.name, uuid=str(getattr(props, "uuid", "")))
        x = torch.randn(256, 256, device="cuda")
        info["matmul_ok"] = bool(torch.isfinite(x @ x).all())
    return info


def read_gpu_check_mfu(path: str | os.PathLike) -> dict:
    """The measured MFU in a GPU-check result file -> ``{"mfu", "gpu", "what", "path"}``.

    One clear ``ValueError`` for a file that is not a GPU-check result, a failed or CPU run, or a missing MFU."""
    import json

    path = Path(path)
    what = f"--mfu-from {path}"
    if not path.is_file():
        raise ValueError(f"{what}: no such file; expected the gpu_check.json that benchmarks/gpu_check.py wrote")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{what}: not valid JSON ({exc.__class__.__name__}); expected gpu_check.json") from None
    if not isinstance(data, dict) or data.get("schema") != GPU_CHECK_SCHEMA:
        raise ValueError(f"{what}: not a GPU-check result (schema {GPU_CHECK_SCHEMA!r} expected)")
    if data.get("device") != "cuda":
        raise ValueError(f"{what}: the check ran on {data.get('device')!r}, not a GPU; its MFU means nothing for "
                         f"GPU planning (rerun `bash benchmarks/gpu_check.sh` on the GPU)")
    summary = data.get("summary") if isinstance(data.get("summary"), dict) else {}
    mfu = summary.get("mfu_for_planner")
    if isinstance(mfu, bool) or not isinstance(mfu, (int, float)) or not 0 < mfu <= 1:
        reason = summary.get("mfu_reason") or "no measured MFU in it"
        raise ValueError(f"{what}: no usable MFU ({reason}); expected summary.mfu_for_planner in (0, 1]")
    return {"mfu": float(mfu), "gpu": (data.get("environment") or {}).get("gpu_name"),
            "what": summary.get("mfu_source", ""), "path": str(path)}
