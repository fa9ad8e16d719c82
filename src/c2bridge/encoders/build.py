"""Both frozen encoders for a preset: ``build_encoders(preset, device=None, **options) -> Encoders(dino, vlm)``,
through the preset's factory (``Preset.encoders_factory``: ``hub_encoders``, ``mini_encoders``,
``random_tiny_encoders``). The package docstring (``c2bridge.encoders``) says what each preset gets."""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import torch

from c2bridge.device import pick_device
from c2bridge.encoders.dinov2 import FULL_DINO_ID, DinoPreprocess, DinoV2Encoder
from c2bridge.encoders.hub import weights_revision
from c2bridge.encoders.qwen_vl import FULL_VLM_ID, QwenVLEncoder
from c2bridge.presets import Preset, get_preset

MINI_DINO_DIR = Path(__file__).resolve().parent.parent / "assets" / "mini" / "dinov2"
MINI_VLM_DIR = MINI_DINO_DIR.parent / "qwen_vl"
MINI_IMAGE_SIZE = 32  # the mini VLM's input side (the mini preset's image_size)
TINY_DINO_SEED = 0
RANDOM_QWEN_SEED = 1
TINY_QWEN_IMAGE_SIZE = 16  # 4x4 patches of 4 px, merged 2x2 -> 4 image tokens


class Encoders(NamedTuple):
    dino: DinoV2Encoder
    vlm: QwenVLEncoder


def default_device() -> torch.device:
    return pick_device("auto")


def build_encoders(preset, device=None, **options) -> Encoders:
    """Both frozen encoders for ``preset`` (a name or a ``Preset``), from the preset's factory
    (``Preset.encoders_factory``: ``hub_encoders``, ``mini_encoders`` or ``random_tiny_encoders`` below)."""
    preset = preset if isinstance(preset, Preset) else get_preset(preset)
    device = torch.device(device) if device is not None else default_device()
    dino, vlm = preset.build_encoders(device, **options)
    _check_dims(preset, dino, vlm)
    return Encoders(dino, vlm)


# ---- the presets' encoder factories (``Preset.encoders_factory``): (preset, device, **options) -> Encoders


def hub_encoders(preset, device, *, dino_model: str | None = None, vlm_model: str | None = None,
                 dino_revision: str | None = None, vlm_revision: str | None = None, **qwen_options) -> Encoders:
    """``full``: the real DINOv2 and Qwen2.5-VL via ``from_pretrained`` (bf16 on GPU when the preset says so)."""
    dtype = torch.bfloat16 if device.type == "cuda" and preset.dtype == "bfloat16" else torch.float32
    dino = DinoV2Encoder.from_pretrained(dino_model or os.environ.get("C2BRIDGE_DINO_MODEL") or FULL_DINO_ID,
                                         revision=dino_revision, device=device, dtype=dtype,
                                         image_size=preset.encoder_image_size)
    vlm = QwenVLEncoder.from_pretrained(vlm_model or os.environ.get("C2BRIDGE_VLM_MODEL") or FULL_VLM_ID,
                                        revision=vlm_revision, device=device, dtype=dtype, **qwen_options)
    return Encoders(dino, vlm)


def mini_encoders(preset, device, *, dino_model=None, vlm_model=None, dino_revision=None, vlm_revision=None,
                  **qwen_options) -> Encoders:
    """``mini``: the shipped pre-trained DINOv2 and Qwen2.5-VL (hub ids/revisions unused)."""
    dino = load_mini_dino(preset, device)
    qwen_options.setdefault("image_size", preset.image_size)
    return Encoders(dino, load_mini_vlm(device, **qwen_options))


def random_tiny_encoders(preset, device, *, dino_model=None, vlm_model=None, dino_revision=None, vlm_revision=None,
                         **qwen_options) -> Encoders:
    """``tiny``: both encoders at test-sized configs with seeded random init (hub ids/revisions unused)."""
    dino = DinoV2Encoder.random(preset.dino_dim, preset.n_patches, preset.encoder_image_size,
                                seed=TINY_DINO_SEED, device=device)
    qwen_options.setdefault("image_size", TINY_QWEN_IMAGE_SIZE)
    vlm = QwenVLEncoder.random(preset.vlm_dim, seed=RANDOM_QWEN_SEED, device=device, **qwen_options)
    return Encoders(dino, vlm)


def _check_dims(preset, dino, vlm) -> None:
    got = {"dino_dim": dino.dim, "n_patches": dino.n_patches, "vlm_dim": vlm.dim}
    want = {"dino_dim": preset.dino_dim, "n_patches": preset.n_patches, "vlm_dim": preset.vlm_dim}
    if got != want:
        raise ValueError(f"encoders for preset {preset.name!r} give {got}, but the preset fixes {want}")


def mini_vlm_encoder(model, device=None, revision: str = "untrained", **qwen_options) -> QwenVLEncoder:
    """A mini ``Qwen2_5_VLForConditionalGeneration`` behind the encoder the ``mini`` preset uses: the in-memory mini
    processor, the mini image size (``qwen_options`` as ``QwenVLEncoder.random`` takes them)."""
    from c2bridge.encoders.qwen_vl import mini_processor, qwen_preprocess

    qwen_options.setdefault("image_size", MINI_IMAGE_SIZE)
    image_size = qwen_options.pop("image_size")
    pre = qwen_preprocess(image_size, qwen_options.pop("video_size", None) or image_size, qwen_options)
    return QwenVLEncoder(model, mini_processor(), pre, model_id="c2bridge-mini-qwen2.5-vl", revision=revision,
                         device=device)


def load_mini_vlm(device=None, **qwen_options) -> QwenVLEncoder:
    """The mini world's Qwen2.5-VL (trained by ``c2bridge mini build`` on shape captions), fp32; missing ->
    FileNotFoundError naming the build command. Its revision is a hash of the weight files."""
    if not (MINI_VLM_DIR / "config.json").exists():
        raise FileNotFoundError(f"the mini world's Qwen2.5-VL is not built (no {MINI_VLM_DIR}/config.json); "
                                f"build it with: c2bridge mini build --stages vlm --out {MINI_VLM_DIR.parent}")
    from c2bridge.mini.assets import load_mini_vlm_model

    return mini_vlm_encoder(load_mini_vlm_model(MINI_VLM_DIR.parent), device=device,
                            revision=weights_revision(MINI_VLM_DIR), **qwen_options)


def load_mini_dino(preset, device=None):
    """The mini world's pre-trained tiny DINOv2, fp32: via ``c2bridge.mini.load_mini_components()`` when the mini
    world is complete, else straight from its ``dinov2/`` save_pretrained directory; missing -> FileNotFoundError
    naming ``c2bridge mini build``. The key's revision is a hash of the weight files (a rebuilt DINOv2 never
    reads as the old one)."""
    if not (MINI_DINO_DIR / "config.json").exists():
        raise FileNotFoundError(f"the mini world's DINOv2 is not built (no {MINI_DINO_DIR}/config.json); "
                                f"build it with: c2bridge mini build --out {MINI_DINO_DIR.parent}")
    model = None
    try:
        from c2bridge.mini import check_assets, load_mini_components

        check_assets(MINI_DINO_DIR.parent)
    except (ImportError, FileNotFoundError):  # no loader, or a partial world: the DINOv2 part is enough here
        pass
    else:
        model = load_mini_components(MINI_DINO_DIR.parent)["dinov2"]
    if model is None:
        from transformers import Dinov2Model

        model = Dinov2Model.from_pretrained(str(MINI_DINO_DIR), dtype=torch.float32, local_files_only=True)
    model = model.float()  # shipped as fp16 safetensors; features are computed (and keyed) in fp32
    return DinoV2Encoder(model, DinoPreprocess(image_size=preset.encoder_image_size), model_id="c2bridge-mini-dinov2",
                         revision=weights_revision(MINI_DINO_DIR), device=device)
