"""Checkpoints: adapter-only weights + trainer state, each written atomically as a whole directory.

Layout under ``RUN_DIR/checkpoints/``::

    step_00000100/
        adapter/               adapter.save_pretrained(): adapter_config.json + model.safetensors
        optimizer.pt           optimizer.state_dict() (torch.save; read back with weights_only=True)
        rng.safetensors        RNG states as uint8 tensors (torch CPU/CUDA global RNG, the σ/noise generator)
        trainer_state.json     step, data position, best metric, running-min loss, train time, numpy mixup RNG
    best/
        adapter/               the adapter with the lowest validation metric so far
        best.json              {step, metric, value}

A step directory is built under a temporary name and renamed into place, so it either exists completely or not at
all; a kill at any moment leaves every earlier checkpoint intact. ``keep_last`` step dirs are kept.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from c2bridge._io import atomic_write_json, read_json

STEP_PREFIX = "step_"
STATE_FILE = "trainer_state.json"


def step_dir_name(step: int) -> str:
    return f"{STEP_PREFIX}{step:08d}"


def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Complete step checkpoints, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        if p.is_dir() and p.name.startswith(STEP_PREFIX) and (p / STATE_FILE).is_file():
            try:
                found.append((int(p.name[len(STEP_PREFIX):]), p))
            except ValueError:
                continue
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    ckpts = list_checkpoints(root)
    return ckpts[-1] if ckpts else None


def save_checkpoint(
    root: str | os.PathLike,
    step: int,
    adapter,
    optimizer,
    state: dict,
    rng: dict,
    keep_last: int,
) -> Path:
    """Write ``root/step_XXXXXXXX`` atomically, then prune to the ``keep_last`` newest step checkpoints."""
    import torch
    from safetensors.torch import save_file

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=root))
    try:
        adapter.save_pretrained(tmp / "adapter")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        save_file({k: v.contiguous() for k, v in rng.items()}, str(tmp / "rng.safetensors"))
        atomic_write_json(tmp / STATE_FILE, {"step": step, **state})
        _fsync_tree(tmp)
        if final.exists():  # same step written again (e.g. a resumed run re-reaching it): replace it
            _replace_dir(tmp, final)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    for old in list_checkpoints(root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: str | os.PathLike, device: Any = "cpu") -> dict:
    """-> {"adapter_dir", "optimizer" (state dict), "rng" (name -> uint8 tensor), "state" (dict)}"""
    import torch
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} is incomplete: {STATE_FILE} missing")
    return {
        "adapter_dir": path / "adapter",
        "optimizer": torch.load(path / "optimizer.pt", map_location=device, weights_only=True),
        "rng": load_file(str(path / "rng.safetensors")),
        "state": read_json(path / STATE_FILE),
    }


def save_best(root: str | os.PathLike, adapter, info: dict) -> Path:
    """Replace ``root/best`` with this adapter (built aside, then swapped in with renames)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    best = root / "best"
    tmp = Path(tempfile.mkdtemp(prefix=".best.", suffix=".tmp", dir=root))
    try:
        adapter.save_pretrained(tmp / "adapter")
        atomic_write_json(tmp / "best.json", info)
        _fsync_tree(tmp)
        _replace_dir(tmp, best)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return best


def clean_stale(root: str | os.PathLike) -> None:
    """Remove half-written temp dirs left by a kill; restore ``best`` if a kill hit between the two renames."""
    root = Path(root)
    if not root.is_dir():
        return
    best, old_best = root / "best", root / ".best.old"
    if not best.exists() and old_best.exists():
        os.replace(old_best, best)
    for p in root.iterdir():
        if p.name.startswith(".") and (p.name.endswith(".tmp") or p.name.endswith(".old")):
            shutil.rmtree(p, ignore_errors=True)


def _replace_dir(src: Path, dst: Path) -> None:
    """dst := src. Two renames; a kill in between leaves ``.NAME.old``, which clean_stale puts back."""
    old = dst.parent / f".{dst.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if dst.exists():
        os.replace(dst, old)
    os.replace(src, dst)
    shutil.rmtree(old, ignore_errors=True)


def _fsync_tree(path: Path) -> None:
    for p in path.rglob("*"):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
