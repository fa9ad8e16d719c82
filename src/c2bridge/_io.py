"""Small I/O helpers shared by every stage: atomic writes, stable hashing, JSON/YAML, safetensors files."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path in the destination directory; rename it over `path` only if the block succeeds.

    Readers never see a partial file, and a crash leaves the previous version intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; published files get normal permissions
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:  # flush to disk before the rename makes it visible
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_write_yaml(path: str | os.PathLike, obj: Any) -> None:
    import yaml

    atomic_write_text(path, yaml.safe_dump(to_plain(obj), sort_keys=False, allow_unicode=True))


def save_safetensors(path: str | os.PathLike, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """``safetensors.torch.save_file``, but atomic, with the permissions of every other file we write, and
    byte-reproducible: safetensors stores ``metadata`` as a hash map (random key order per process), so the
    header is rewritten with the metadata keys sorted."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        mode = tmp.stat().st_mode & 0o777
        save_file(tensors, str(tmp), metadata=metadata)  # replaces tmp with a 0600 file of its own
        os.chmod(tmp, mode)
        if metadata and len(metadata) > 1:
            _sort_safetensors_metadata(tmp)


def _sort_safetensors_metadata(path: Path) -> None:
    with open(path, "r+b") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        raw = fh.read(n)
        header = json.loads(raw)
        ordered = {"__metadata__": dict(sorted(header.pop("__metadata__").items())), **header}
        text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(text) > n or json.loads(text) != json.loads(raw):  # never expected: same keys, same values
            raise RuntimeError(f"could not reorder the safetensors header of {path}")
        fh.seek(8)
        fh.write(text + b" " * (n - len(text)))  # same length: the tensor offsets stay valid


def check_plain_name(name: Any, what: str) -> str:
    """A config- or user-supplied name that becomes one path component (a split, an export, a trial label): a
    non-empty string without separators, not ``.``/``..``, no leading dot or NUL. -> the name, else ValueError."""
    if not isinstance(name, str) or not name or name in {".", ".."} or name.startswith(".") \
            or any(c in name for c in ("/", "\\", "\0")) or name != name.strip():
        raise ValueError(f"{what} {name!r} is not a plain name; expected letters, digits, '_', '-' or '.' "
                         "without path separators or '..' (it becomes a directory or file name)")
    return name


def inside(base: str | os.PathLike, rel: str | os.PathLike, what: str = "path") -> Path:
    """``base / rel`` if it stays inside ``base`` (after resolving ``..`` and symlinks), else ValueError: a
    relative path read from a config or a record never reaches outside its directory."""
    base_path = Path(base)
    if Path(rel).is_absolute():
        raise ValueError(f"{what} {str(rel)!r} is absolute; expected a path relative to {base_path}")
    path = base_path / rel
    root = base_path.resolve()
    if path.resolve() != root and root not in path.resolve().parents:
        raise ValueError(f"{what} {str(rel)!r} leaves {base_path}; expected a path inside it")
    return path


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def read_yaml(path: str | os.PathLike) -> Any:
    import yaml

    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line (a log; appends of a single short line are atomic enough on POSIX)."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True, default=_json_default) + "\n")


def stable_hash(obj: Any, length: int = 12) -> str:
    """Hash of a JSON-able object that does not depend on key order (used for cache and trial keys)."""
    blob = json.dumps(to_plain(obj), sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def to_plain(obj: Any) -> Any:
    """Dataclasses, tuples, paths and numpy/torch scalars -> plain JSON/YAML types."""
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 0) == 0:
        return obj.item()
    return obj


def _json_default(obj: Any) -> Any:
    plain = to_plain(obj)
    if plain is obj:
        raise TypeError(f"not JSON serializable: {type(obj).__name__}")
    return plain
