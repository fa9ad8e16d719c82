"""Adapter packages: an adapter directory that says what it was trained against, and a model card.

An adapter package is what ``adapter.save_pretrained`` writes plus two files::

    adapter_config.json    the adapter's constructor kwargs (+ "kind")
    model.safetensors      its weights
    provenance.json        the preset and the frozen models it was trained against: decoder (model id, revision,
                           config digest, weight digest), DINOv2 and Qwen2.5-VL (their ``encoder_key()``), the
                           training config and the c2bridge / diffusers / transformers versions
    README.md              a Hugging Face model card: front-matter (license, tags, library_name) + metrics,
                           intervals, preset, how to use it

``write_adapter_package(dir, adapter, provenance, metrics)`` writes them (each file atomically);
``check_compatible(provenance, current)`` refuses a decoder or encoders other than the recorded ones with one
``ValueError``. The directory uploads as it is: ``huggingface_hub.upload_folder(repo_id=..., folder_path=dir)``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from c2bridge._io import atomic_write_json, atomic_write_text, read_json

PROVENANCE_NAME = "provenance.json"
CARD_NAME = "README.md"
PROVENANCE_FORMAT = "c2bridge.adapter-package/v1"
LICENSE = "apache-2.0"  # the adapter weights'; the frozen models keep their own licences (listed in the card)
BASE_LICENSES = {
    "Lightricks/LTX-Video": "LTX-Video open weights licence (ltxv-open-weights)",
    "facebook/dinov2-large": "Apache-2.0",
    "Qwen/Qwen2.5-VL-7B-Instruct": "Apache-2.0",
}
# encoder_key() fields that identify the model (dtype/device are how it runs, not what it is)
ENCODER_FIELDS = ("kind", "model_id", "revision", "class", "config", "preprocessing", "image_processor", "output")
DECODER_FIELDS = ("model_id", "revision", "config", "weights_sha256")


# ------------------------------------------------------------------------------------------------ fingerprints
def _config_digest(config: Any) -> str:
    from c2bridge._io import stable_hash

    d = dict(config)
    for k in list(d):
        if k.startswith("_"):  # _name_or_path, _diffusers_version, _class_name...: where it came from, not what
            d.pop(k)
    return stable_hash(d, 12)


def weights_digest(modules) -> str:
    """sha256 (16 hex) over the parameters and buffers of ``modules`` in state-dict order (name, dtype, shape,
    bytes). Cheap for the tiny and mini worlds; the full decoder is identified by its hub revision instead.
    A decoder carrying a peft LoRA digests as its frozen base: the LoRA matrices are left out and the wrapped
    layers' ``base_layer`` names read as the original ones (a decoder LoRA is recorded on its own)."""
    import torch

    h = hashlib.sha256()
    for module in modules:
        if module is None:
            continue
        for name, tensor in module.state_dict().items():
            if "lora_" in name:
                continue
            name = name.replace(".base_layer", "")
            t = tensor.detach().to("cpu").contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def decoder_fingerprint(bridge) -> dict:
    """What a decoder's outputs depend on: model id, hub revision (when loaded from the hub), a digest of the
    transformer + VAE configs and of their weights (full: of the weight files, via the hub's blob names or
    ``c2bridge.encoders.hub.weights_revision``; tiny/mini: of the tensors in memory)."""
    tcfg, vcfg = bridge.transformer.config, bridge.vae.config
    from c2bridge.presets import get_preset

    source = str(tcfg.get("_name_or_path") or "")
    try:
        preset = get_preset(getattr(bridge, "preset", None) or "")
    except ValueError:
        preset = None
    small = preset is not None and preset.is_miniature
    hub_id = source if source and not small and not Path(source).expanduser().exists() else None  # a local dir
    model_id = hub_id or (preset.decoder_model_id if preset else "") or "unknown"  # stands in for the hub id
    revision = _hub_revision(source) or tcfg.get("_commit_hash")
    if small:  # tiny/mini: the tensors in memory (cheap)
        weights = weights_digest([bridge.transformer, bridge.vae])
    else:  # the real model: the files loaded (hub blob names or a one-off hash of a local dir), not 2B params
        weights = _files_digest(source, ("transformer", "vae"))
    return {
        "model_id": model_id,
        "revision": revision,
        "class": f"{type(bridge.transformer).__name__}+{type(bridge.vae).__name__}",
        "config": _config_digest({"transformer": _config_digest(tcfg), "vae": _config_digest(vcfg)}),
        "weights_sha256": weights,
    }


def _files_digest(source: str, subfolders: tuple[str, ...]) -> str | None:
    """``c2bridge.encoders.hub.weights_revision`` of each subfolder of a diffusers model dir (local, or its hub
    snapshot in the local cache), joined; None when the files cannot be found."""
    from c2bridge.encoders.hub import weights_revision

    if not source:
        return None
    parts = []
    for sub in subfolders:
        directory = Path(source).expanduser() / sub
        if not directory.is_dir():
            try:
                from huggingface_hub import try_to_load_from_cache

                found = try_to_load_from_cache(source, f"{sub}/config.json")
            except Exception:  # not a repo id: nothing cached to point at
                return None
            if not isinstance(found, (str, os.PathLike)):
                return None
            directory = Path(found).parent
        try:
            parts.append(f"{sub}={weights_revision(directory)}")
        except FileNotFoundError:
            return None
    return ";".join(parts)


def _hub_revision(source: str) -> str | None:
    """The commit of a Hugging Face cache snapshot (``.../snapshots/<commit>/...``), else None."""
    parts = Path(source).parts
    if "snapshots" in parts:
        i = parts.index("snapshots")
        if i + 1 < len(parts):
            return parts[i + 1]
    return None


def model_identity(preset: str, bridge, encoders) -> dict:
    """The frozen models an adapter runs against: ``{"preset", "decoder", "dino", "vlm"}``. ``encoders``: the
    ``Encoders`` pair, or their keys ``{"dino": encoder_key(), "vlm": encoder_key()}`` (a feature cache's
    ``manifest["spec"]["encoders"]`` when only the cache is at hand)."""
    if isinstance(encoders, dict):
        dino, vlm = encoders.get("dino"), encoders.get("vlm")
    else:
        dino, vlm = encoders.dino.encoder_key(), encoders.vlm.encoder_key()
    return {"preset": preset, "decoder": decoder_fingerprint(bridge), "dino": dino, "vlm": vlm}


def make_provenance(identity: dict, training: dict | None = None, **extra: Any) -> dict:
    """provenance.json content: the model identity + what trained the adapter + package versions."""
    from importlib import metadata

    versions = {}
    for name in ("c2bridge", "torch", "diffusers", "transformers"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"format": PROVENANCE_FORMAT, **identity, "training": training, "versions": versions, **extra}


# ------------------------------------------------------------------------------------------------ reading / checks
def read_provenance(directory: str | Path) -> dict | None:
    """The package's provenance.json, or None for a bare ``save_pretrained`` directory."""
    path = Path(directory) / PROVENANCE_NAME
    if not path.is_file():
        return None
    try:
        prov = read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); expected the provenance written with the adapter") \
            from None
    if not isinstance(prov, dict) or prov.get("format") != PROVENANCE_FORMAT:
        raise ValueError(f"{path}: format is {prov.get('format') if isinstance(prov, dict) else prov!r}, "
                         f"expected {PROVENANCE_FORMAT!r}")
    return prov


def identity_differences(recorded: dict, current: dict) -> list[str]:
    """Human-readable differences between two model identities (only fields both sides record)."""
    recorded, current = _plain(recorded), _plain(current)  # JSON round trip: tuples read back as lists
    diffs = []
    if recorded.get("preset") and current.get("preset") and recorded["preset"] != current["preset"]:
        diffs.append(f"preset {recorded['preset']!r} vs {current['preset']!r}")
    for part, fields in (("decoder", DECODER_FIELDS), ("dino", ENCODER_FIELDS), ("vlm", ENCODER_FIELDS)):
        a, b = recorded.get(part) or {}, current.get(part) or {}
        for f in fields:
            if a.get(f) is not None and b.get(f) is not None and a[f] != b[f]:
                if isinstance(a[f], dict) and isinstance(b[f], dict):
                    diffs += [f"{part}.{f}.{k} {_short(a[f].get(k))} vs {_short(b[f].get(k))}"
                              for k in sorted(set(a[f]) | set(b[f])) if a[f].get(k) != b[f].get(k)]
                else:
                    diffs.append(f"{part}.{f} {_short(a[f])} vs {_short(b[f])}")
    return diffs


def _plain(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def check_compatible(provenance: dict, current: dict, directory: str | Path = "adapter") -> None:
    """One ValueError when the adapter was trained against other frozen models than ``current``."""
    diffs = identity_differences(provenance, current)
    if diffs:
        raise ValueError(
            f"adapter {directory} was trained against other frozen models than the ones loaded "
            f"(trained with vs loaded: {'; '.join(diffs)}); load it with the preset and models it names in "
            f"{PROVENANCE_NAME} (preset {provenance.get('preset')!r}), or train an adapter for these")


def check_dims(adapter, bridge, encoders, directory: str | Path = "adapter") -> None:
    """The adapter's widths must match the decoder's and the encoders' (one ValueError naming them)."""
    want = {"out_dim": bridge.cond_dim, "vlm_dim": encoders.vlm.dim, "dino_dim": encoders.dino.dim,
            "n_patches": encoders.dino.n_patches}
    got = {k: getattr(adapter, k) for k in want}
    if got != want:
        bad = ", ".join(f"{k} {got[k]} (models give {want[k]})" for k in want if got[k] != want[k])
        raise ValueError(f"adapter {directory} does not fit these models: {bad}")


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ------------------------------------------------------------------------------------------------ writing
def write_adapter_package(directory: str | Path, adapter=None, provenance: dict | None = None,
                          metrics: dict | None = None, intervals: dict | None = None, title: str | None = None) -> Path:
    """Write (or complete) an adapter package in ``directory``.

    ``adapter``: saved with ``save_pretrained`` first (None: the directory already holds it). ``provenance``:
    ``make_provenance(model_identity(...), training=...)``. ``metrics``: ``{split: {distance, distance_name,
    ssim, psnr, spatial_iou, n, ...}}`` (a results.yaml trial's ``metrics``). ``intervals``: ``{split: {metric:
    {low, high, level, method}}}`` when known. Files are written atomically; the card last.
    """
    from c2bridge.adapters.base import CONFIG_NAME

    directory = Path(directory)
    if adapter is not None:
        adapter.save_pretrained(directory)
    config_path = directory / CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(f"no adapter at {directory}: missing {CONFIG_NAME} (save the adapter first)")
    if provenance is None or provenance.get("format") != PROVENANCE_FORMAT:
        raise ValueError("write_adapter_package needs provenance from make_provenance(model_identity(...))")
    provenance = {**provenance, "metrics": metrics or None, "intervals": intervals or None}
    atomic_write_json(directory / PROVENANCE_NAME, provenance)
    atomic_write_text(directory / CARD_NAME, model_card(read_json(config_path), provenance, title=title))
    return directory  # inside a checkpoint (best/adapter) the caller rewrites its checksums (train.checkpoint)


def package_trained_adapter(directory: str | Path, cfg, bridge, cache, params: dict | None = None,
                            sampled: dict | None = None) -> Path:
    """Provenance + model card for an adapter a training run saved: the models are the run's decoder and the
    encoders its feature cache was extracted with (``cache.manifest["spec"]["encoders"]``); ``sampled``: the run's
    ``evaluate_adapter`` result on the val split, if any."""
    encoders = ((getattr(cache, "manifest", None) or {}).get("spec") or {}).get("encoders") or {}
    training = {"kind": cfg.adapter.kind, "budget": cfg.adapter.budget, "seed": cfg.seed,
                "steps": cfg.optim.max_steps, "lr": cfg.optim.lr, "loss": cfg.loss.name}
    lora = getattr(cfg, "decoder_lora", None)
    if lora is not None and lora.rank is not None:  # the adapter works only with the LoRA saved next to it
        training["decoder_lora"] = {"rank": lora.rank, "alpha": lora.alpha, "targets": list(lora.targets)}
    metrics = None
    if sampled:
        metrics = {"val": {"distance": sampled.get("distance_mean"), "distance_name": sampled.get("distance"),
                           "ssim": sampled.get("ssim"), "psnr": sampled.get("psnr"),
                           "spatial_iou": sampled.get("mask_iou"), "n": sampled.get("n")}}
    provenance = make_provenance(model_identity(cfg.preset, bridge, encoders), training=training, params=params)
    return write_adapter_package(directory, provenance=provenance, metrics=metrics)


def model_card(config: dict, provenance: dict, title: str | None = None) -> str:
    """The README.md of an adapter package (Hugging Face model card: YAML front-matter + markdown)."""
    import yaml

    from c2bridge.presets import get_preset

    preset_name = provenance.get("preset") or "unknown"
    try:
        preset = get_preset(preset_name)
    except ValueError:
        preset = None
    kind = config.get("kind", "adapter")
    decoder = provenance.get("decoder") or {}
    dino, vlm = provenance.get("dino") or {}, provenance.get("vlm") or {}
    metrics = provenance.get("metrics") or {}
    intervals = provenance.get("intervals") or {}
    params = provenance.get("params") or {}
    base_models = [m for m in (decoder.get("model_id"), dino.get("model_id"), vlm.get("model_id"))
                   if m in BASE_LICENSES]
    front = {
        "license": LICENSE,
        "library_name": "c2bridge",
        "tags": ["c2bridge", "adapter", "ltx-video", "dinov2", "qwen2.5-vl", f"adapter-{kind}",
                 f"preset-{preset_name}", *(["miniature"] if preset is not None and preset.is_miniature else [])],
        "pipeline_tag": "image-to-video",
    }
    if base_models:
        front["base_model"] = base_models
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", ""]
    lines.append(f"# {title or f'c2bridge {kind} adapter ({preset_name} preset)'}")
    lines.append("")
    lines.append(f"A **{kind}** adapter that maps DINOv2 patch tokens + Qwen2.5-VL hidden states to LTX-Video "
                 f"conditioning (`prompt_embeds`), trained with c2bridge against the frozen "
                 f"models below.")
    if preset is not None and preset.is_miniature:
        lines += ["", f"> **Miniature world** (`{preset_name}` preset): {preset.description} Its numbers are not "
                      "the real models'."]
    lines += ["", "## Use it", "", "```python", "from c2bridge.pipeline import C2BridgePipeline", "",
              f'pipe = C2BridgePipeline.from_pretrained("path/to/this/dir", preset="{preset_name}")',
              'out = pipe(image="photo.png", num_inference_steps=20, seed=0)',
              'out.images[0].save("reconstruction.png")', "```", "",
              "or from the command line:", "", "```bash",
              f"c2bridge reconstruct photo.png clip.mp4 --adapter path/to/this/dir --preset {preset_name} --out recon/",
              "```", ""]
    lines += ["## Trained against", "", "| part | model | revision | config | weights |", "|---|---|---|---|---|"]
    for part, ident in (("decoder", decoder), ("DINOv2", dino), ("Qwen2.5-VL", vlm)):
        lines.append(f"| {part} | `{ident.get('model_id')}` | `{ident.get('revision')}` | `{ident.get('config')}` | "
                     f"`{ident.get('weights_sha256') or '–'}` |")
    lines += ["", f"Loading this adapter against other models is refused (`{PROVENANCE_NAME}` records them)."]
    lines += ["", "## Adapter", "", f"- kind: `{kind}`"]
    if params:
        lines.append(f"- trainable parameters: {params.get('trainable'):,}" if params.get("trainable") is not None
                     else "- trainable parameters: –")
    dims = {k: config[k] for k in ("vlm_dim", "dino_dim", "n_patches", "out_dim", "n_tokens") if k in config}
    lines.append("- dims: " + ", ".join(f"{k}={v}" for k, v in dims.items()))
    training = provenance.get("training") or {}
    if training:
        lines.append("- training: " + ", ".join(f"{k}={_fmt(v)}" for k, v in training.items()
                                                if not isinstance(v, (dict, list))))
    lora = training.get("decoder_lora")
    if lora:
        lines.append(f"- decoder LoRA: trained jointly (rank {lora.get('rank')} on "
                     f"{', '.join(f'`{t}`' for t in lora.get('targets') or [])}), saved with peft in `decoder_lora/`; "
                     "the pipeline loads it into the decoder. Without it the adapter reconstructs wrongly.")
    lines += ["", "## Metrics", ""]
    if metrics:
        names = ("distance", "ssim", "psnr", "spatial_iou")
        lines += ["| split | n | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        for split, m in metrics.items():
            cells = []
            for name in names:
                cell = _fmt(m.get(name))
                iv = (intervals.get(split) or {}).get(name)
                if isinstance(iv, dict) and iv.get("low") is not None:
                    cell += f" [{_fmt(iv['low'])}, {_fmt(iv['high'])}]"
                cells.append(cell)
            lines.append(f"| {split} | {m.get('n', '–')} | " + " | ".join(cells) + " |")
        dist_name = next((m.get("distance_name") for m in metrics.values() if m.get("distance_name")), None)
        lines += ["", f"distance = `{dist_name or 'the study distance'}` (lower is better); SSIM (Wang et al., "
                      "higher is better); PSNR in dB. Reconstructions sampled through LTXPipeline from each split's "
                      "cached features."]
        if intervals:
            iv = next(iter(next(iter(intervals.values())).values()), {})
            level = f"{iv['level']:.0%} " if isinstance(iv.get("level"), (int, float)) else ""
            lines.append(f"Intervals [low, high]: {level}confidence intervals of the means ({iv.get('method', '')}).")
        else:
            lines.append("Intervals: not computed for this adapter.")
    else:
        lines.append("Not evaluated yet.")
    lines += ["", "## Licence", "", f"The adapter weights: {LICENSE}. The frozen models keep their own licences"
              + (": " + "; ".join(f"`{m}` {BASE_LICENSES[m]}" for m in base_models) if base_models else "") + ".", ""]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


__all__ = ["PROVENANCE_NAME", "CARD_NAME", "write_adapter_package", "package_trained_adapter", "make_provenance", "model_identity",
           "decoder_fingerprint", "read_provenance", "check_compatible", "check_dims", "model_card"]
