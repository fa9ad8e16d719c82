"""Checkpoints: adapter-only weights + trainer state, each written atomically as a whole directory, with checksums.

Layout under ``RUN_DIR/checkpoints/``::

    step_00000100/
        adapter/               adapter.save_pretrained(): adapter_config.json + model.safetensors
        optimizer.safetensors  the optimizer state's tensors (exp_avg, exp_avg_sq, step, ...)
        optimizer.json         the rest of optimizer.state_dict() (param groups, hyper-parameters), tensors named
        rng.safetensors        RNG states as uint8 tensors (torch CPU/CUDA global RNG, the σ/noise generator)
        trainer_state.json     step, data position, best metric, running-min loss, train time, numpy mixup RNG
        checksums.json         sha256 of every file above (written last)
    best/
        adapter/               the adapter with the lowest validation metric so far
        best.json              {step, metric, value}
        checksums.json

A step directory is built under a temporary name and renamed into place, so it either exists completely or not at
all; a kill at any moment leaves every earlier checkpoint intact. ``keep_last`` step dirs are kept. Nothing is
pickled: tensors go to safetensors, the rest to JSON (checkpoints written before that hold ``optimizer.pt``, read
back with ``torch.load(weights_only=True)``, which refuses anything but tensors and plain containers).

Disk faults after the fact (a flipped byte, a truncated file) are caught by the checksums:
:func:`latest_intact_checkpoint` returns the newest checkpoint that verifies and loads, and says why it skipped
the newer ones, so a resume continues from the last good state instead of from damaged bytes, or failing forever.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from c2bridge._io import atomic_write_json, read_json, save_safetensors, sha256_file

STEP_PREFIX = "step_"
STATE_FILE = "trainer_state.json"
CHECKSUMS_FILE = "checksums.json"
OPTIMIZER_TENSORS = "optimizer.safetensors"
OPTIMIZER_STATE = "optimizer.json"
LEGACY_OPTIMIZER = "optimizer.pt"
RNG_FILE = "rng.safetensors"


class CorruptCheckpoint(ValueError):
    """A checkpoint whose files do not match their recorded checksums, are missing, or do not parse."""


def step_dir_name(step: int) -> str:
    return f"{STEP_PREFIX}{step:08d}"


def _step_of(path: Path) -> int | None:
    try:
        return int(path.name[len(STEP_PREFIX):])
    except ValueError:
        return None


def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Step checkpoint directories, oldest first (not verified: see :func:`latest_intact_checkpoint`)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        if p.is_dir() and p.name.startswith(STEP_PREFIX) and _step_of(p) is not None \
                and ((p / STATE_FILE).is_file() or (p / CHECKSUMS_FILE).is_file()):
            found.append((_step_of(p), p))
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    """The newest step checkpoint directory (unverified)."""
    ckpts = list_checkpoints(root)
    return ckpts[-1] if ckpts else None


def latest_intact_checkpoint(root: str | os.PathLike, device: Any = "cpu") -> tuple[Path | None, list[str]]:
    """The newest step checkpoint whose files match their checksums and load -> ``(path or None, skipped)``,
    ``skipped`` holding one line per newer checkpoint passed over and why (for the user: the resume says so)."""
    skipped = []
    for path in reversed(list_checkpoints(root)):
        try:
            load_checkpoint(path, device=device)
        except CorruptCheckpoint as exc:
            skipped.append(str(exc))
            continue
        return path, skipped
    return None, skipped


# ---------------------------------------------------------------------------------------------------------------
# checksums


def _files(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*")
                  if p.is_file() and p.name != CHECKSUMS_FILE)


def write_checksums(directory: Path) -> dict[str, str]:
    sums = {rel: sha256_file(directory / rel) for rel in _files(directory)}
    atomic_write_json(directory / CHECKSUMS_FILE, {"sha256": sums})
    return sums


def checkpoint_problems(directory: str | os.PathLike) -> list[str]:
    """What does not match ``checksums.json`` (missing, changed or unlisted files). A checkpoint written before
    checksums were recorded has none to check: [] (it still has to load)."""
    directory = Path(directory)
    path = directory / CHECKSUMS_FILE
    if not path.is_file():
        return [] if (directory / STATE_FILE).is_file() else [f"{CHECKSUMS_FILE} and {STATE_FILE} are missing"]
    try:
        sums = read_json(path)["sha256"]
        if not isinstance(sums, dict):
            raise TypeError("'sha256' is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{CHECKSUMS_FILE} is unreadable ({type(exc).__name__}: {exc})"]
    problems = []
    for rel, digest in sorted(sums.items()):
        file = directory / rel
        if not file.is_file():
            problems.append(f"{rel} is missing")
        elif sha256_file(file) != digest:
            problems.append(f"{rel} does not match its recorded sha256 (damaged: {file.stat().st_size} bytes)")
    for rel in _files(directory):
        if rel not in sums:
            problems.append(f"{rel} is not listed in {CHECKSUMS_FILE}")
    return problems


# ---------------------------------------------------------------------------------------------------------------
# optimizer state without pickle: tensors -> safetensors, the rest -> JSON with the tensors named


def _encode(obj: Any, tensors: dict) -> Any:
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors):05d}"
        tensors[name] = obj.detach().to("cpu").clone().contiguous()  # own storage: safetensors refuses shared
        return {"__tensor__": name}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, tensors) for k, v in obj.items()}
        return {"__items__": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"optimizer state holds a {type(obj).__name__}, which cannot be stored without pickle")


def _decode(obj: Any, tensors: dict, device: Any) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors, device) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if set(obj) == {"__tensor__"}:
        return tensors[obj["__tensor__"]].to(device)
    if set(obj) == {"__tuple__"}:
        return tuple(_decode(v, tensors, device) for v in obj["__tuple__"])
    if set(obj) == {"__items__"}:
        return {_decode(k, tensors, device): _decode(v, tensors, device) for k, v in obj["__items__"]}
    return {k: _decode(v, tensors, device) for k, v in obj.items()}


def save_optimizer_state(directory: Path, state_dict: dict) -> None:
    tensors: dict = {}
    tree = _encode(state_dict, tensors)
    save_safetensors(directory / OPTIMIZER_TENSORS, tensors)
    atomic_write_json(directory / OPTIMIZER_STATE, tree)


def load_optimizer_state(directory: Path, device: Any = "cpu") -> dict:
    from safetensors.torch import load_file

    if (directory / OPTIMIZER_STATE).is_file():
        return _decode(read_json(directory / OPTIMIZER_STATE), load_file(str(directory / OPTIMIZER_TENSORS)), device)
    return torch.load(directory / LEGACY_OPTIMIZER, map_location=device, weights_only=True)  # older checkpoints


# ---------------------------------------------------------------------------------------------------------------
# writing / reading


def save_checkpoint(
    root: str | os.PathLike,
    step: int,
    adapter,
    optimizer,
    state: dict,
    rng: dict,
    keep_last: int,
) -> Path:
    """Write ``root/step_XXXXXXXX`` atomically (checksums last), then prune to the ``keep_last`` newest."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    tmp = _temp_dir(root, final.name)
    try:
        adapter.save_pretrained(tmp / "adapter")
        save_optimizer_state(tmp, optimizer.state_dict())
        save_safetensors(tmp / RNG_FILE, {k: v.contiguous() for k, v in rng.items()})
        atomic_write_json(tmp / STATE_FILE, {"step": step, **state})
        write_checksums(tmp)
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
    """Verify, then read -> {"adapter_dir", "optimizer" (state dict), "rng" (name -> uint8 tensor), "state"}.

    Raises :class:`CorruptCheckpoint` (a ValueError) naming the checkpoint and the damaged file."""
    from safetensors.torch import load_file

    path = Path(path)
    problems = checkpoint_problems(path)
    if problems:
        raise CorruptCheckpoint(f"checkpoint {path.name} is damaged: {'; '.join(problems)}")
    try:
        loaded = {
            "adapter_dir": path / "adapter",
            "optimizer": load_optimizer_state(path, device),
            "rng": load_file(str(path / RNG_FILE)),
            "state": read_json(path / STATE_FILE),
        }
        if not (path / "adapter" / "adapter_config.json").is_file():
            raise FileNotFoundError("adapter/adapter_config.json is missing")
    except Exception as exc:  # safetensors, JSON and torch each raise their own types for a damaged file
        raise CorruptCheckpoint(f"checkpoint {path.name} does not load ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    return loaded


def save_best(root: str | os.PathLike, adapter, info: dict) -> Path:
    """Replace ``root/best`` with this adapter (built aside, then swapped in with renames)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    best = root / "best"
    tmp = _temp_dir(root, "best")
    try:
        adapter.save_pretrained(tmp / "adapter")
        atomic_write_json(tmp / "best.json", info)
        write_checksums(tmp)
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


def _temp_dir(root: Path, name: str) -> Path:
    """A hidden build directory next to its destination, with normal permissions (mkdtemp makes it 0700)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=root))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    return tmp


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
