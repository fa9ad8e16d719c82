"""The shipped mini world: where its weights live and how the ``mini`` preset loads them at run time.

Layout of an assets directory (diffusers / transformers ``save_pretrained`` layout, fp16 safetensors):
``vae/``, ``transformer/``, ``scheduler/``, ``dinov2/`` (+ ``preprocessor_config.json``), ``captions/``,
``qwen_vl/`` (the mini Qwen2.5-VL; its processor is built in memory), ``build_report.json``, ``samples.png``.
``c2bridge mini build`` (``c2bridge.mini.build``) writes them.
"""
from __future__ import annotations

from pathlib import Path

from c2bridge.presets import MiniPreset


def default_assets_dir() -> Path:
    return MiniPreset.assets_dir


VLM_FILES = ("config.json", "model.safetensors")  # qwen_vl/: the mini Qwen2.5-VL
REQUIRED = {
    "vae": ("config.json", "diffusion_pytorch_model.safetensors"),
    "transformer": ("config.json", "diffusion_pytorch_model.safetensors"),
    "scheduler": ("scheduler_config.json",),
    "dinov2": ("config.json", "model.safetensors"),
    "captions": ("captions_config.json", "model.safetensors"),
    "qwen_vl": VLM_FILES,
}


def check_assets(assets_dir: str | Path | None = None) -> Path:
    assets = Path(assets_dir) if assets_dir is not None else default_assets_dir()
    missing = [f"{part}/{name}" for part, names in REQUIRED.items() for name in names
               if not (assets / part / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"mini world weights missing in {assets} ({', '.join(missing)}); create them with "
            f"`c2bridge mini build --out {assets}`")
    return assets


def load_mini_components(assets_dir: str | Path | None = None) -> dict:
    """The shipped mini world, frozen, eval mode, fp32 on CPU.

    Returns ``dict(vae=AutoencoderKLLTXVideo, transformer=LTXVideoTransformer3DModel,
    scheduler=FlowMatchEulerDiscreteScheduler, dinov2=Dinov2Model, captions=CaptionEmbedder)``.
    """
    import torch
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel
    from transformers import Dinov2Model

    from c2bridge.mini.captions import CaptionEmbedder

    assets = check_assets(assets_dir)
    vae = AutoencoderKLLTXVideo.from_pretrained(assets / "vae", torch_dtype=torch.float32)
    vae.use_framewise_encoding = vae.use_framewise_decoding = False
    components = dict(
        vae=vae,
        transformer=LTXVideoTransformer3DModel.from_pretrained(assets / "transformer", torch_dtype=torch.float32),
        scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(assets / "scheduler"),
        dinov2=_quietly(lambda: Dinov2Model.from_pretrained(assets / "dinov2", dtype=torch.float32)),
        captions=CaptionEmbedder.from_pretrained(assets / "captions"),
    )
    for name, module in components.items():
        if isinstance(module, torch.nn.Module):
            module.eval().requires_grad_(False)
    return components


def load_mini_vlm_model(assets_dir: str | Path | None = None):
    """The shipped mini ``Qwen2_5_VLForConditionalGeneration`` (``qwen_vl/``), frozen, eval mode, fp32 on CPU (the
    ``mini`` preset's encoder wraps it: ``c2bridge.encoders.load_mini_vlm``)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    directory = Path(assets_dir) if assets_dir is not None else default_assets_dir()
    missing = [name for name in VLM_FILES if not (directory / "qwen_vl" / name).is_file()]
    if missing:
        raise FileNotFoundError(f"mini Qwen2.5-VL weights missing in {directory / 'qwen_vl'} ({', '.join(missing)});"
                                f" create them with `c2bridge mini build --stages vlm --out {directory}`")
    model = _quietly(lambda: Qwen2_5_VLForConditionalGeneration.from_pretrained(
        directory / "qwen_vl", dtype=torch.float32, local_files_only=True))
    return model.float().eval().requires_grad_(False)


def _quietly(load):
    """Run ``load()`` without transformers' per-tensor "Loading weights" progress bar (a 200 kB model in every
    study process and pool worker would otherwise print one), restoring the caller's setting."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return load()
    finally:
        if enabled:
            hf_logging.enable_progress_bar()
