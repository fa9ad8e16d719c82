"""The worlds c2bridge runs in, behind one interface.

- ``full``: the real models (facebook/dinov2-large, Qwen/Qwen2.5-VL-7B-Instruct, Lightricks/LTX-Video), GPU, bf16.
- ``mini``: the same classes at small configs; decoder and DINOv2 trained by c2bridge (``c2bridge mini build``)
  and shipped under ``c2bridge/assets/mini``. The default on a fresh machine; every report says it is the miniature.
- ``tiny``: the same classes at test-sized random configs (the diffusers/transformers test-suite sizes).
  Plumbing only: its numbers mean nothing.

A preset fixes the *interfaces* between stages (feature widths, token counts, resolution, budgets) as dataclass
fields (what ``results.yaml`` records), and says what else differs between the worlds as class attributes and
methods of its class (``FullPreset``, ``MiniPreset``, ``TinyPreset``): where the decoder and the encoders come from
(``load_decoder``, ``build_encoders``: factories named ``"module:function"``, imported when called), what the
decoder's numbers depend on (``decoder_identity``), sampling steps, and what reports must say about the world
(``plumbing_only``, ``report_note``, ``budget_scale_note``). Recipes (lr, steps, losses) live in ``configs/``.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar


@dataclass(frozen=True)
class Preset:
    name: str
    dino_dim: int  # width of DINOv2 patch tokens  # [B, P, dino_dim]
    n_patches: int  # P: DINOv2 patch tokens per image (CLS/registers removed)
    vlm_dim: int  # width of Qwen2.5-VL hidden states  # [B, T, vlm_dim]
    cond_dim: int  # LTX caption_channels: the adapter's output width  # [B, n_tokens, cond_dim]
    n_tokens: int  # adapter output tokens (77 in the plan)
    encoder_image_size: int  # pixels fed to DINOv2 (224 for ViT-L/14 -> 16x16 patches)
    image_size: int  # decoder output resolution (multiple of 32 for LTX)
    num_frames: int  # frames for clip datasets (images are 1-frame clips)
    budgets: dict[str, float] = field(default_factory=dict)  # E2.1 scale name -> trainable params
    dtype: str = "float32"  # compute dtype for frozen models ("bfloat16" on GPU for full)
    is_miniature: bool = False  # reports must say so
    description: str = ""

    # ---- what differs beyond the interfaces (class attributes: not part of the preset's record)
    decoder_factory: ClassVar[str] = ""  # "module:function"(preset, seed=, path=, dtype=) -> DecoderParts
    decoder_model_id: ClassVar[str] = ""  # what the decoder is, in records and model cards
    encoders_factory: ClassVar[str] = ""  # "module:function"(preset, device, **options) -> Encoders
    sample_steps: ClassVar[int] = 50  # LTXPipeline steps when a sample call names none
    plumbing_only: ClassVar[bool] = False  # random models: the numbers mean nothing
    report_notes: ClassVar[dict[str, str]] = {}  # "header" / "claims" / "gate2" -> text ({name}, {distance}, ...)

    def replace(self, **kw) -> "Preset":
        return dataclasses.replace(self, **kw)

    def load_decoder(self, *, seed: int = 0, path: Any = None, dtype: Any = None):
        """This world's frozen decoder parts: ``(transformer, vae, scheduler, captions or None)``."""
        return _factory(self.decoder_factory)(self, seed=seed, path=path, dtype=dtype)

    def build_encoders(self, device, **options):
        """This world's two frozen encoders, ``Encoders(dino, vlm)`` (use ``c2bridge.encoders.build_encoders``)."""
        return _factory(self.encoders_factory)(self, device, **options)

    def decoder_identity(self) -> dict:
        """What the decoder's numbers depend on (part of every trial's key)."""
        from importlib import metadata

        return {"preset": self.name, "diffusers": metadata.version("diffusers"), "model_id": self.decoder_model_id,
                **self._decoder_weights()}

    def _decoder_weights(self) -> dict:
        return {}

    def report_note(self, which: str, **values: Any) -> str | None:
        """The text reports show about this world in place ``which`` (header, claims, gate2), or None."""
        text = self.report_notes.get(which)
        return None if text is None else text.format(name=self.name, image_size=self.image_size, **values)

    def budget_scale_note(self) -> str | None:
        """How this world's budget names map onto the plan's scales, when it rescales them (else None)."""
        return None


class FullPreset(Preset):
    decoder_model_id = "Lightricks/LTX-Video"  # the hub id (a local dir may stand in for it)
    decoder_factory = "c2bridge.decoder.ltx:load_hub_decoder"
    encoders_factory = "c2bridge.encoders:hub_encoders"
    sample_steps = 50  # LTXPipeline's default for the real model
    report_notes = {
        "claims": "This run uses the full models: the plan's thresholds apply where the distance is the plan's "
                  "(`{distance}`). Gate 2 also needs Q3 (out of scope here).",
    }


class MiniPreset(Preset):
    assets_dir: ClassVar[Path] = Path(__file__).resolve().parent / "assets" / "mini"  # ``c2bridge mini build``
    decoder_model_id = "c2bridge-mini (c2bridge/assets/mini)"
    decoder_factory = "c2bridge.decoder.ltx:load_mini_decoder"
    encoders_factory = "c2bridge.encoders:mini_encoders"
    sample_steps = 20
    report_notes = {
        "header": "> **This is the miniature.** The `{name}` preset runs the study with the real model classes at "
                  "small configs (an LTX-Video-class decoder, a DINOv2 and a tiny Qwen2.5-VL trained by c2bridge on "
                  "synthetic shapes) on a CPU. Its numbers show that the pipeline works and which way "
                  "the effects go; they are not measurements of DINOv2-ViT-L, Qwen2.5-VL-7B or LTX-Video, and the "
                  "plan's absolute thresholds do not apply to them.",
        "claims": "It **can** claim, within this miniature: the shape of the scaling curve and whether the small "
                  "budget keeps most of the large one's quality (param_efficiency is a ratio of two measurements "
                  "with the same distance), the ranking of the architectures and training strategies under an "
                  "identical protocol, training stability, and that every stage of the pipeline (features → adapter "
                  "→ frozen decoder → sampled metrics → verdicts → report) works end to end.\n\n"
                  "It **cannot** claim: any absolute number for the real models; LPIPS values comparable to the "
                  "plan's thresholds (this run's distance is `{distance}` at {image_size} px); GPU latency or memory "
                  "(measured here on a CPU at miniature widths); temporal coherence of real video (its clips are 9 "
                  "frames of shapes moving in straight lines at {image_size} px); Gate 2 (which "
                  "also needs Q3). The plan's quoted baselines (P2, C1) are quotes, not measurements.",
        "gate2": "computed on the {name} preset: it shows the decision procedure and the direction of the effects; "
                 "it is not a Gate 2 decision about the real models",
    }

    def _decoder_weights(self) -> dict:
        import hashlib

        root = self.assets_dir
        h = hashlib.sha256()
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".json", ".safetensors"))
        for p in files:
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
        return {"weights_sha256": h.hexdigest()[:16], "files": len(files)}

    def budget_scale_note(self) -> str | None:
        ratios = {round(PLAN_BUDGETS[k] / v) for k, v in self.budgets.items() if k in PLAN_BUDGETS}
        if len(ratios) != 1:
            return None
        return (f"the plan's scales / {ratios.pop():,} (a miniature's mapping of the plan's budgets; "
                "docs/mini_world.md says how it was chosen)")


class TinyPreset(Preset):
    decoder_model_id = "random tiny LTX config (diffusers test sizes)"
    decoder_factory = "c2bridge.decoder.ltx:random_tiny_decoder"
    encoders_factory = "c2bridge.encoders:random_tiny_encoders"
    sample_steps = 4
    plumbing_only = True
    report_notes = {
        "header": "> **Plumbing run on the `{name}` preset: random test-sized models. Every number below is "
                  "meaningless; this file only shows that the pipeline runs end to end.**",
        "claims": "Nothing about adapters: the `{name}` preset's models are random. It shows that every stage runs "
                  "(features → adapter → frozen decoder → sampled metrics → verdicts → report) and that the "
                  "bookkeeping (trial keys, re-runs, failures) works.",
        "gate2": "computed on the {name} preset (random models): it only exercises the decision procedure",
        "stream_weighting": "**This sweep cannot answer the question on the `{name}` preset**: both encoders are "
                            "random.",
    }

    def _decoder_weights(self) -> dict:
        return {"seed": 0}


def _factory(ref: str):
    """``"package.module:function"`` -> the function (imported on first use: presets import nothing heavy)."""
    if ":" not in ref:
        raise ValueError(f"preset factory {ref!r}; expected 'package.module:function' (a FullPreset, MiniPreset or "
                         f"TinyPreset names its decoder and encoder factories)")
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


PLAN_BUDGETS = {"5m": 5e6, "10m": 10e6, "20m": 20e6, "50m": 50e6, "100m": 100e6}

PRESETS: dict[str, Preset] = {
    "full": FullPreset(
        name="full",
        dino_dim=1024,
        n_patches=256,
        vlm_dim=3584,
        cond_dim=4096,
        n_tokens=77,
        encoder_image_size=224,
        image_size=512,
        num_frames=25,
        budgets=dict(PLAN_BUDGETS),
        dtype="bfloat16",
        description="Real models: DINOv2-ViT-L/14, Qwen2.5-VL-7B-Instruct, LTX-Video (GPU, bf16).",
    ),
    "mini": MiniPreset(
        name="mini",
        dino_dim=64,
        n_patches=64,
        vlm_dim=32,
        cond_dim=64,
        n_tokens=16,
        encoder_image_size=32,
        image_size=32,
        num_frames=9,  # shapes_clips: 9-frame moving-shapes clips (8k+1, as the LTX VAE takes them)
        # The plan's five scales mapped onto the miniature (see docs/mini_world.md for how they were chosen).
        budgets={"5m": 6.25e3, "10m": 1.25e4, "20m": 2.5e4, "50m": 6.25e4, "100m": 1.25e5},  # = full / 800
        is_miniature=True,
        description="Miniature: the same classes at small configs, trained by c2bridge, synthetic shapes, CPU.",
    ),
    "tiny": TinyPreset(
        name="tiny",
        dino_dim=32,
        n_patches=16,
        vlm_dim=32,
        cond_dim=32,
        n_tokens=8,
        encoder_image_size=8,
        image_size=32,
        num_frames=9,  # 8k+1 like the LTX VAE (the planner costs the real one); the tiny VAE takes 4k+1
        budgets={"5m": 2e4, "10m": 4e4, "20m": 8e4, "50m": 2e5, "100m": 4e5},
        is_miniature=True,
        description="Test-sized random models: plumbing only, numbers mean nothing.",
    ),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}") from None
