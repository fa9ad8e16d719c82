"""Loading the real (``full``) encoders: local-first, one clear error when weights are missing, and the identity of
the weights actually loaded (what a feature-cache key must record)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from c2bridge._io import sha256_file


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` read at call time (huggingface_hub reads them at import)."""
    return any(os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"}
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def fetch_command(model_id: str) -> str:
    return f"hf download {model_id}  (huggingface_hub<1.0: huggingface-cli download {model_id})"


def load_pretrained(loader: Callable[..., Any], model_id: str, revision: str | None = None, **kwargs) -> Any:
    """``loader(model_id, revision=..., local_files_only=<offline>, **kwargs)`` or one ``FileNotFoundError`` naming
    the model id and the command that fetches it."""
    if model_id.startswith((".", "/", "~")):
        path = Path(model_id).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"local model directory {path} does not exist; expected a save_pretrained "
                                    f"directory (config.json + weights)")
        model_id = str(path)
    offline = hub_offline()
    try:
        return loader(model_id, revision=revision, local_files_only=offline, **kwargs)
    except OSError as exc:
        where = "offline (HF_HUB_OFFLINE=1), not in the local Hugging Face cache" if offline else \
            "could not be loaded (no network, or not in the local Hugging Face cache)"
        raise FileNotFoundError(
            f"weights for {model_id}{'@' + revision if revision else ''} {where}; fetch them once with: "
            f"{fetch_command(model_id)}  [{type(exc).__name__}: {str(exc).splitlines()[0][:200]}]") from exc


WEIGHT_SUFFIXES = (".safetensors", ".json")  # weights + the configs/processor files read with them
LEGACY_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth")  # hashed only where a directory has no safetensors

# (realpath, size, mtime_ns) -> sha256: a process loading the same weights twice hashes them once
_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a weights file. A Hugging Face hub snapshot links each large (LFS) file to ``blobs/<sha256>``,
    a name the hub verified at download, so those cost nothing; anything else is hashed (about 0.8 GB/s on one
    core), once per process per (file, size, mtime)."""
    real = Path(path).resolve()
    if real.parent.name == "blobs" and len(real.name) == 64 and all(c in "0123456789abcdef" for c in real.name):
        return real.name
    stat = real.stat()
    memo = (str(real), stat.st_size, stat.st_mtime_ns)
    if memo not in _DIGESTS:
        _DIGESTS[memo] = sha256_file(real)
    return _DIGESTS[memo]


def weights_revision(directory: str | os.PathLike) -> str:
    """``sha256:`` + the first 8 hex digits of each weights/config file's sha256 (sorted by name): a directory
    whose weights are replaced gets a new revision, so a feature cache keyed on it is never served for the new
    model. Files: ``*.safetensors`` and ``*.json`` (``*.bin``/``*.pt`` only where there is no safetensors)."""
    directory = Path(directory)
    files = sorted(p for p in directory.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    if not any(p.suffix == ".safetensors" for p in files):
        files = sorted(files + [p for p in directory.iterdir() if p.suffix in LEGACY_WEIGHT_SUFFIXES and p.is_file()])
    if not files:
        raise FileNotFoundError(f"{directory} holds no weight files (*.safetensors, *.bin)")
    return "sha256:" + "".join(file_sha256(p)[:8] for p in files)


def weights_directory(model: Any) -> Path | None:
    """The directory ``from_pretrained`` read ``model``'s files from: the local directory it was given, or the
    hub snapshot of the resolved commit in the local Hugging Face cache. None when neither can be found."""
    config = getattr(model, "config", None)
    source = getattr(config, "_name_or_path", None)
    if not source:
        return None
    if Path(source).expanduser().is_dir():
        return Path(source).expanduser()
    commit = getattr(config, "_commit_hash", None)
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(source, "config.json", revision=commit)
    except Exception:  # not a repo id, or an old huggingface_hub: no snapshot to point at
        return None
    return Path(found).parent if isinstance(found, (str, os.PathLike)) else None


def resolved_revision(model: Any, requested: str | None) -> str:
    """What the cache key records as the weights' revision: the hub commit they came from (else the requested
    revision) plus :func:`weights_revision` of the files actually loaded, so replacing the weights in a local
    directory (whose "revision" never changes) or in the hub cache changes the key."""
    commit = getattr(getattr(model, "config", None), "_commit_hash", None)
    directory = weights_directory(model)
    digest = weights_revision(directory) if directory is not None else None
    if commit:
        return f"{commit}+{digest}" if digest else commit
    return digest or requested or "main"
