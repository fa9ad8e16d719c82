"""``C2BridgePipeline``: a trained adapter on your own pictures and clips, in the diffusers style.

    from c2bridge.pipeline import C2BridgePipeline

    pipe = C2BridgePipeline.from_pretrained("runs/mini/checkpoints/adapter_final", preset="mini")
    out = pipe(image="photo.png", num_inference_steps=20, seed=0)   # or PIL images / arrays / tensors, lists
    out.images[0].save("reconstruction.png")                          # out.frames: per input, its frames
    out = pipe(video="clip.mp4")                                      # clips: out.frames[0] is a list of frames

It composes the frozen encoders (``c2bridge.encoders.build_encoders``: DINOv2 + Qwen2.5-VL), the adapter
(``c2bridge.adapters.load_adapter``) and ``LTXPipeline``'s components (``c2bridge.decoder.LTXBridge``, whose
``sample`` *is* ``LTXPipeline``): picture -> encoders -> adapter -> ``prompt_embeds`` -> LTXPipeline -> frames.

Inputs: PIL images (any mode: grayscale and palette images become RGB, RGBA is composited over white), numpy arrays
(``[H, W]``, ``[H, W, C]``, uint8 or float in [0, 1]), tensors (``[C, H, W]`` / ``[B, C, H, W]``, C in 1, 3, 4),
file paths (images via PIL, videos via PyAV); clips as ``video=`` (a path, ``[F, H, W, C]`` array, a list of
frames, or a tensor ``[3, F, H, W]``). Any size: each picture is centre-cropped to a square and resized to the
decoder's resolution (the preset's ``image_size``), which is what the adapter was trained on.

Clips are cut into consecutive chunks of the decoder's clip length (the preset's ``num_frames``: 25 on ``full``,
9 on ``mini``/``tiny``), each with the same seed; a tail shorter than that is cut into the longest valid
``1 + k·temporal_ratio`` chunks, down to single frames, so no frame is dropped. How a chunk's frames become
conditioning is the adapter's ``temporal`` option (``c2bridge.adapters``). Output frames play at the
decoder's frame rate (``out.frame_rate``).

An adapter package (``c2bridge.package``) records the frozen models it was trained against; loading it against
others is one ``ValueError``.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from diffusers.utils import BaseOutput

from c2bridge.decoder.ltx import FRAME_RATE

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".gif")
MAX_VIDEO_FRAMES = 250  # frames read from one video (10 s at 25 fps): longer clips are cut, with a warning


@dataclass
class C2BridgePipelineOutput(BaseOutput):
    """``frames``: per input its reconstructed frames (``output_type`` "pil": lists of PIL images; "np": arrays
    ``[F, H, W, 3]`` in [0, 1]; "pt": tensors ``[F, 3, H, W]``; stacked into one ``[B, F, ...]`` array/tensor when
    every input has the same number of frames, as diffusers' video pipelines return them). ``images``: the first
    frame of each. ``inputs``: what the decoder was asked to reconstruct (centre-cropped, resized), same format.
    ``frame_rate``: the decoder's."""

    frames: Any
    images: Any
    inputs: Any
    frame_rate: int = FRAME_RATE


# ------------------------------------------------------------------------------------------------ reading inputs
def read_image(path: str | os.PathLike) -> "Any":
    """A PIL image from a file, with one clear ValueError for empty files, non-images and decompression bombs
    (more pixels than ``PIL.Image.MAX_IMAGE_PIXELS``)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # > MAX_IMAGE_PIXELS: refuse, not warn
            with Image.open(path) as img:
                img.load()
                return img.copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValueError(f"{path}: refusing a possible decompression bomb ({exc}); the limit is "
                         f"PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS} pixels") from None
    except UnidentifiedImageError:
        raise ValueError(f"{path}: not an image PIL can read; expected PNG, JPEG, WebP, ... or a video "
                         f"({', '.join(VIDEO_SUFFIXES)})") from None
    except OSError as exc:  # truncated / corrupt image data
        raise ValueError(f"{path}: broken image file ({exc})") from None


def read_video(path: str | os.PathLike, max_frames: int = MAX_VIDEO_FRAMES) -> tuple[np.ndarray, float]:
    """Frames ``[F, H, W, 3]`` uint8 and the frame rate of a video file (PyAV); one clear ValueError for files
    PyAV cannot decode, videos without frames, and frames larger than ``PIL.Image.MAX_IMAGE_PIXELS``."""
    import av
    from PIL import Image

    path = Path(path)
    _check_file(path)
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a video PyAV can decode ({exc.__class__.__name__}: {exc}); expected an MP4, "
                         "WebM, ... or an image") from None
    frames, rate = [], float(FRAME_RATE)
    with container:
        if not container.streams.video:
            raise ValueError(f"{path}: has no video stream; expected a video or an image")
        stream = container.streams.video[0]
        if stream.average_rate:
            rate = float(stream.average_rate)
        limit = Image.MAX_IMAGE_PIXELS
        if limit and stream.codec_context.width * stream.codec_context.height > limit:
            raise ValueError(f"{path}: frames of {stream.codec_context.width}x{stream.codec_context.height} pixels "
                             f"exceed PIL.Image.MAX_IMAGE_PIXELS = {limit} (refusing a possible decompression bomb)")
        try:
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) >= max_frames:
                    warnings.warn(f"{path}: only the first {max_frames} frames are read", stacklevel=2)
                    break
        except av.error.FFmpegError as exc:
            if not frames:
                raise ValueError(f"{path}: video data could not be decoded ({exc})") from None
    if not frames:
        raise ValueError(f"{path}: the video has no frames")
    return np.stack(frames), rate


def is_video_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES and Path(path).suffix.lower() != ".gif"


def _check_file(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path}: not a file; expected an image or a video")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file (0 bytes); expected an image or a video")


# ------------------------------------------------------------------------------------------------ writing outputs
def save_video(frames: torch.Tensor, path: str | os.PathLike, frame_rate: int = FRAME_RATE) -> Path:
    """Frames ``[F, 3, H, W]`` in [0, 1] -> an MP4 (H.264, yuv420p, ``frame_rate``) or, for an image suffix, the
    first frame as an image. Written atomically."""
    from c2bridge._io import atomic_path

    path = Path(path)
    arr = (frames.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"):
        from PIL import Image

        with atomic_path(path) as tmp:
            Image.fromarray(arr[0]).save(tmp, format=Image.registered_extensions()[path.suffix.lower()])
        return path
    import av

    h, w = arr.shape[1:3]
    arr = np.pad(arr, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")  # yuv420p needs even sizes
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
            stream = container.add_stream(codec, rate=int(frame_rate))
            stream.width, stream.height, stream.pix_fmt = arr.shape[2], arr.shape[1], "yuv420p"
            if codec == "libx264":
                stream.options = {"crf": "18"}
            for frame in arr:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return path


def save_side_by_side_strip(inputs: torch.Tensor, recons: torch.Tensor, path: str | os.PathLike,
                            max_frames: int = 8, min_tile: int = 128) -> Path:
    """PNG: input | reconstruction for an image; for a clip (``[F, 3, H, W]`` each) its inputs (top row) over its
    reconstructions (bottom row), up to ``max_frames`` evenly spaced frames. Tiles are enlarged (nearest) to at
    least ``min_tile`` px for viewing."""
    import torch.nn.functional as F
    from torchvision.utils import make_grid, save_image

    from c2bridge._io import atomic_path

    if inputs.shape != recons.shape:
        raise ValueError(f"inputs {tuple(inputs.shape)} and reconstructions {tuple(recons.shape)} differ in shape")
    n = inputs.shape[0]
    idx = torch.linspace(0, n - 1, min(n, max_frames)).round().long().unique()
    tiles = torch.cat([inputs[idx], recons[idx]]).float().clamp(0, 1).cpu()  # [2k, 3, H, W]
    scale = max(1, -(-min_tile // max(tiles.shape[-2:])))
    if scale > 1:
        tiles = F.interpolate(tiles, scale_factor=scale, mode="nearest")
    grid = make_grid(tiles, nrow=len(idx) if len(idx) > 1 else 2, padding=2, pad_value=1.0)  # an image: one row
    path = Path(path)
    with atomic_path(path) as tmp:
        save_image(grid, tmp, format="png")
    return path


# ------------------------------------------------------------------------------------------------ to pixels
def image_to_tensor(image: Any) -> torch.Tensor:
    """One picture (PIL, array, tensor or path) -> float ``[3, H, W]`` in [0, 1]. Grayscale is repeated to RGB,
    RGBA (or LA, PA) is composited over white, palette/CMYK/16-bit modes are converted."""
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        image = read_image(image)
    if isinstance(image, Image.Image):
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, rgba).convert("RGB")
        elif image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            arr = np.asarray(image, dtype=np.float64)
            peak = 65535.0 if image.mode.startswith("I;16") or arr.max() > 255 else 255.0
            return _chw(torch.from_numpy(np.clip(arr / peak, 0, 1)).float()[None])
        elif image.mode != "RGB":
            image = image.convert("RGB")
        return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = arr[..., None]
        if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
            raise ValueError(f"an image array must be [H, W] or [H, W, C] with C in 1, 3, 4; got {arr.shape}")
        return _chw(_unit(torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)))
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.ndim == 2:
            t = t[None]
        if t.ndim != 3 or t.shape[0] not in (1, 3, 4):
            raise ValueError(f"an image tensor must be [C, H, W] with C in 1, 3, 4; got {tuple(t.shape)}")
        return _chw(_unit(t))
    raise ValueError(f"cannot read an image from {type(image).__name__}; expected a PIL image, a numpy array, "
                     "a tensor or a file path")


def video_to_tensor(video: Any) -> torch.Tensor:
    """One clip (path, ``[F, H, W, C]`` array, list of frames, or tensor ``[3, F, H, W]``) -> ``[3, F, H, W]``."""
    if isinstance(video, (str, os.PathLike)):
        video = read_video(video)[0]
    if isinstance(video, (list, tuple)):
        if not video:
            raise ValueError("a clip needs at least one frame")
        frames = [image_to_tensor(f) for f in video]
        if len({tuple(f.shape) for f in frames}) != 1:
            raise ValueError("all frames of a clip must have the same size")
        return torch.stack(frames, dim=1)  # [3, F, H, W]
    if isinstance(video, np.ndarray):
        if video.ndim == 3:
            video = video[..., None]
        if video.ndim != 4:
            raise ValueError(f"a clip array must be [F, H, W] or [F, H, W, C]; got {video.shape}")
        return torch.stack([image_to_tensor(f) for f in video], dim=1)
    if isinstance(video, torch.Tensor):
        if video.ndim != 4 or video.shape[0] not in (1, 3, 4):
            raise ValueError(f"a clip tensor must be [C, F, H, W] with C in 1, 3, 4; got {tuple(video.shape)}")
        return torch.stack([image_to_tensor(video[:, i]) for i in range(video.shape[1])], dim=1)
    raise ValueError(f"cannot read a clip from {type(video).__name__}; expected a path, an array [F, H, W, C], a "
                     "list of frames or a tensor [3, F, H, W]")


def _unit(t: torch.Tensor) -> torch.Tensor:
    """uint8 -> /255; float must already be in [0, 1]."""
    if t.dtype == torch.uint8:
        return t.float() / 255.0
    if t.dtype in (torch.int16, torch.int32, torch.int64, torch.uint16):
        raise ValueError(f"integer images must be uint8 (0-255); got {t.dtype}")
    t = t.float()
    lo, hi = float(t.min()), float(t.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(f"float images must be in [0, 1]; got values in [{lo:.3f}, {hi:.3f}]")
    return t.clamp(0, 1)


def _chw(t: torch.Tensor) -> torch.Tensor:
    """[1|3|4, H, W] in [0, 1] -> [3, H, W] (gray repeated, alpha composited over white)."""
    if t.shape[0] == 1:
        return t.expand(3, -1, -1).clone()
    if t.shape[0] == 4:
        rgb, alpha = t[:3], t[3:4]
        return rgb * alpha + (1 - alpha)
    return t


def center_square(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """``[3, H, W]`` or ``[3, F, H, W]`` -> the centred square, resized to ``size`` (bilinear, antialiased: the
    resize the feature caches' targets get)."""
    import torch.nn.functional as F

    h, w = pixels.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    x = pixels[..., top:top + s, left:left + s]
    if s == size:
        return x.contiguous()
    flat = x.reshape(-1, *x.shape[-3:]) if x.ndim == 3 else x.permute(1, 0, 2, 3)  # [N, 3, s, s]
    out = F.interpolate(flat.reshape(-1, 3, s, s), size=(size, size), mode="bilinear", antialias=True,
                        align_corners=False).clamp(0, 1)
    return out[0] if x.ndim == 3 else out.permute(1, 0, 2, 3).contiguous()


# ------------------------------------------------------------------------------------------------ the pipeline
def decoder_lora_dir(adapter_dir: str | os.PathLike, provenance: dict | None = None) -> Path | None:
    """The decoder LoRA an adapter package was trained with (``<adapter>/decoder_lora``, peft's files), or None
    when it has none. One ValueError when the provenance records a LoRA but its files are missing or partial."""
    from c2bridge.decoder import lora
    from c2bridge.train.loop import DECODER_LORA_DIR

    path = Path(adapter_dir) / DECODER_LORA_DIR
    recorded = ((provenance or {}).get("training") or {}).get("decoder_lora")
    if not recorded and not path.exists():
        return None
    if not lora.is_lora_dir(path):
        missing = [n for n in (lora.LORA_CONFIG, lora.LORA_WEIGHTS) if not (path / n).is_file()]
        what = f"rank {recorded.get('rank')} " if isinstance(recorded, dict) else ""
        raise ValueError(f"adapter {adapter_dir} was trained with a {what}decoder LoRA, but {path} lacks "
                         f"{', '.join(missing)} (peft's save_pretrained files); on the frozen decoder alone it "
                         f"reconstructs wrongly: copy the run's adapter/{DECODER_LORA_DIR}/ next to it")
    return path


class C2BridgePipeline:
    """Frozen encoders + a trained adapter + LTXPipeline (via ``LTXBridge``): pictures and clips in, their
    reconstructions out."""

    def __init__(self, adapter, bridge, encoders, preset: str, provenance: dict | None = None):
        from c2bridge.presets import get_preset

        self.adapter = adapter.eval()
        self.adapter.requires_grad_(False)
        self.bridge = bridge
        self.encoders = encoders
        self.preset = get_preset(preset) if isinstance(preset, str) else preset
        self.provenance = provenance
        self._progress: dict = {"disable": True}

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_pretrained(cls, adapter_dir: str | os.PathLike, preset: str | None = None, *, device=None,
                        decoder_path: str | None = None, bridge=None, encoders=None) -> "C2BridgePipeline":
        """Load an adapter package and the frozen models of ``preset`` (default: the preset its provenance
        names, else ``mini``). ``device``: default CUDA when available (the full preset then runs in bf16).
        ``bridge`` / ``encoders``: already-built models to use instead. Refuses models other than the ones the
        package records (one ValueError) and widths that do not fit. An adapter trained jointly with a decoder
        LoRA (its ``decoder_lora/``, peft's ``save_pretrained``) gets that LoRA loaded into the decoder with
        ``PeftModel.from_pretrained`` (in place: a ``bridge`` passed in carries it afterwards); a package that
        records such a LoRA but lacks its files is refused, since the frozen decoder alone reconstructs wrongly."""
        from c2bridge import package
        from c2bridge.adapters import load_adapter
        from c2bridge.presets import get_preset

        adapter_dir = Path(adapter_dir)
        if not adapter_dir.is_dir():
            raise FileNotFoundError(f"adapter dir {adapter_dir} does not exist; expected a directory with "
                                    "adapter_config.json + model.safetensors "
                                    "(e.g. runs/mini/checkpoints/adapter_final)")
        provenance = package.read_provenance(adapter_dir)
        recorded = (provenance or {}).get("preset")
        preset = preset or recorded or "mini"
        if recorded and recorded != preset:  # before loading any model: one line, nothing built
            raise ValueError(f"adapter {adapter_dir} was trained on the {recorded!r} preset's models, not {preset!r}; "
                             f"use --preset {recorded}")
        lora_dir = decoder_lora_dir(adapter_dir, provenance)  # a missing LoRA: refused before loading models
        from c2bridge.device import pick_device

        dev = pick_device(device)  # "auto"/None: CUDA when there is one
        adapter = load_adapter(adapter_dir)
        if bridge is None:
            from c2bridge.decoder import LTXBridge

            gpu_bf16 = get_preset(preset).dtype == "bfloat16" and dev.type == "cuda"
            kwargs = {"autocast_dtype": torch.bfloat16} if gpu_bf16 else {}
            dtype = None if dev.type == "cuda" else torch.float32  # bf16 only on GPU
            bridge = LTXBridge.from_preset(preset, path=decoder_path, device=dev, dtype=dtype, **kwargs)
        if encoders is None:
            from c2bridge.encoders import build_encoders

            encoders = build_encoders(preset, device=dev)
        package.check_dims(adapter, bridge, encoders, adapter_dir)
        if provenance is not None:
            package.check_compatible(provenance, package.model_identity(preset, bridge, encoders), adapter_dir)
        else:
            warnings.warn(f"adapter {adapter_dir} has no {package.PROVENANCE_NAME}: the models it was trained "
                          "against cannot be checked (only the widths are)", stacklevel=2)
        if lora_dir is not None:  # the decoder LoRA trained with this adapter, into the decoder (in place)
            from peft import PeftModel

            PeftModel.from_pretrained(bridge.transformer, str(lora_dir), is_trainable=False)
            bridge.transformer.eval().requires_grad_(False)
        return cls(adapter.to(bridge.device), bridge, encoders, preset, provenance)

    @property
    def device(self) -> torch.device:
        return self.bridge.device

    def to(self, device) -> "C2BridgePipeline":
        self.bridge.to(device=device)
        self.adapter.to(device)
        return self

    def set_progress_bar_config(self, **kwargs) -> None:
        """tqdm options of the per-call progress bar (diffusers' convention); disabled by default."""
        self._progress = kwargs

    # ---------------------------------------------------------------- steps
    def prepare_image(self, image: Any) -> torch.Tensor:
        """A picture -> ``[3, S, S]`` at the decoder's resolution (centre square)."""
        return center_square(image_to_tensor(image), self.preset.image_size)

    def prepare_video(self, video: Any) -> torch.Tensor:
        """A clip -> ``[3, F, S, S]``."""
        return center_square(video_to_tensor(video), self.preset.image_size)

    @torch.no_grad()
    def encode_conditioning(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, 3, (F,) S, S]`` -> the adapter's conditioning ``(cond [B, n_tokens, cond_dim], mask [B, n_tokens])``,
        exactly as the study computes it from cached features."""
        dino = self.encoders.dino(pixels)  # [B, (F,) P, dino_dim]: clips frame by frame
        vlm, vlm_mask = self.encoders.vlm(pixels)  # [B, T, vlm_dim], [B, T]
        dev = next(self.adapter.parameters()).device
        cond = self.adapter(vlm.float().to(dev), dino.float().to(dev), vlm_mask=vlm_mask.to(dev))
        return cond, torch.ones(cond.shape[:-1], dtype=torch.long, device=cond.device)  # [B, (F,) n_tokens]

    def chunks(self, num_frames: int) -> list[tuple[int, int]]:
        """(start, length) of the decoder-sized chunks a clip of ``num_frames`` is cut into."""
        n = max(1, int(self.preset.num_frames))
        t = self.bridge.temporal_ratio
        out, start = [], 0
        while start < num_frames:
            length = min(n, num_frames - start)
            length = 1 + ((length - 1) // t) * t  # a valid clip length for the VAE
            out.append((start, length))
            start += length  # a short tail goes on in shorter valid chunks (single frames at the least)
        return out

    # ---------------------------------------------------------------- call
    @torch.no_grad()
    def __call__(self, image: Any = None, video: Any = None, *, num_inference_steps: int | None = None,
                 guidance_scale: float = 1.0, seed: int = 0, output_type: str = "pil",
                 batch_size: int = 8) -> C2BridgePipelineOutput:
        """Reconstruct ``image`` (one picture or a list) or ``video`` (one clip or a list).

        ``num_inference_steps``: default the preset's. ``guidance_scale > 1``: classifier-free guidance against
        zero conditioning. ``seed``: every input (and every chunk of a clip) is sampled from this seed, so a
        reconstruction does not depend on what else is in the call. ``output_type``: "pil", "np" or "pt".
        """
        if (image is None) == (video is None):
            raise ValueError("pass exactly one of image= (a picture or a list of them) or video= (a clip or a list)")
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"output_type must be 'pil', 'np' or 'pt'; got {output_type!r}")
        if image is not None:
            batched = isinstance(image, (torch.Tensor, np.ndarray)) and image.ndim == 4  # [B, C, H, W] / [B, H, W, C]
            items = list(image) if isinstance(image, (list, tuple)) or batched else [image]
            clips = [self.prepare_image(x)[:, None] for x in items]  # each [3, 1, S, S]
        else:
            if isinstance(video, (list, tuple)) and video and not _is_frame(video[0]):
                items = list(video)
            else:
                items = [video]
            clips = [self.prepare_video(v) for v in items]  # each [3, F, S, S]

        # every chunk of every input, grouped by length so equal-length chunks share a batch
        jobs = [(i, start, length) for i, clip in enumerate(clips) for start, length in self.chunks(clip.shape[1])]
        outputs = [torch.zeros_like(clip) for clip in clips]
        kept = [0] * len(clips)
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="reconstruct", unit="chunk", **self._progress)
        for length in sorted({j[2] for j in jobs}):
            group = [j for j in jobs if j[2] == length]
            for b in range(0, len(group), batch_size):
                part = group[b:b + batch_size]
                pixels = torch.stack([clips[i][:, s:s + length] for i, s, _ in part])  # [b, 3, L, S, S]
                pixels = pixels[:, :, 0] if length == 1 else pixels
                cond, mask = self.encode_conditioning(pixels)
                recon = self.bridge.sample(cond, mask, num_frames=length, steps=num_inference_steps,
                                           guidance_scale=guidance_scale, seed=[int(seed)] * len(part),
                                           height=self.preset.image_size, width=self.preset.image_size)
                recon = recon[:, :, None] if recon.ndim == 4 else recon  # [b, 3, L, S, S]
                for (i, s, _), r in zip(part, recon.cpu()):
                    outputs[i][:, s:s + length] = r
                    kept[i] = max(kept[i], s + length)
                bar.update(len(part))
        bar.close()
        inputs = [c[:, :k] for c, k in zip(clips, kept)]
        outputs = [o[:, :k] for o, k in zip(outputs, kept)]
        return C2BridgePipelineOutput(frames=_format(outputs, output_type), images=_format_first(outputs, output_type),
                                      inputs=_format(inputs, output_type), frame_rate=FRAME_RATE)


def _is_frame(x: Any) -> bool:
    """Whether a list element is one frame of a clip (rather than a clip of a list of clips)."""
    from PIL import Image

    if isinstance(x, Image.Image):
        return True
    if isinstance(x, (np.ndarray, torch.Tensor)):
        return x.ndim <= 3 and not (isinstance(x, np.ndarray) and x.ndim == 3 and x.shape[-1] not in (1, 3, 4))
    return False


def _format(clips: Sequence[torch.Tensor], output_type: str):
    """Per input ``[3, F, H, W]`` -> diffusers-style frames (see C2BridgePipelineOutput)."""
    if output_type == "pil":
        return [[_to_pil(c[:, f]) for f in range(c.shape[1])] for c in clips]
    per = [c.permute(1, 0, 2, 3) for c in clips]  # [F, 3, H, W]
    if output_type == "np":
        per = [p.permute(0, 2, 3, 1).numpy() for p in per]  # [F, H, W, 3]
        return np.stack(per) if len({p.shape for p in per}) == 1 else per
    return torch.stack(per) if len({tuple(p.shape) for p in per}) == 1 else per


def _format_first(clips: Sequence[torch.Tensor], output_type: str):
    if output_type == "pil":
        return [_to_pil(c[:, 0]) for c in clips]
    first = torch.stack([c[:, 0] for c in clips])  # [B, 3, H, W]
    return first.permute(0, 2, 3, 1).numpy() if output_type == "np" else first


def _to_pil(frame: torch.Tensor):
    from PIL import Image

    arr = (frame.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(arr)


__all__ = ["C2BridgePipeline", "C2BridgePipelineOutput", "read_image", "read_video", "image_to_tensor",
           "video_to_tensor", "center_square", "save_video", "save_side_by_side_strip", "is_video_path"]
