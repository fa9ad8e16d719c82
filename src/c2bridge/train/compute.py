"""Where torch.compile keeps its compiled graphs (``compute.compile``): one persistent inductor cache, so only the
first run on a machine pays the cold compile (measured on this CPU for the mini transformer: ~55 s cold, ~4 s
with a warm cache).

``use_compile_cache(path=None)`` points ``TORCHINDUCTOR_CACHE_DIR`` at, in order: ``path`` (a study runner passes
one inside its study dir), an already set ``TORCHINDUCTOR_CACHE_DIR``, ``C2BRIDGE_COMPILE_CACHE``, else
``$XDG_CACHE_HOME/c2bridge/inductor`` (``~/.cache/c2bridge/inductor``). Call it before the first compile of the
process (the trainer does, for ``compute.compile: true``); worker processes inherit the variable. torch writes its
own default (``/tmp/torchinductor_<user>``) into the variable the first time anything asks for its cache dir
(loading a diffusers model does), so that value counts as unset.
"""
from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "C2BRIDGE_COMPILE_CACHE"
INDUCTOR_ENV = "TORCHINDUCTOR_CACHE_DIR"


def default_compile_cache() -> Path:
    """``C2BRIDGE_COMPILE_CACHE``, else ``$XDG_CACHE_HOME/c2bridge/inductor`` (``~/.cache/...``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "c2bridge" / "inductor"


def use_compile_cache(path: "str | os.PathLike | None" = None) -> Path:
    """Set ``TORCHINDUCTOR_CACHE_DIR`` (see the module docstring for the order) -> the directory, created."""
    if path is not None:
        directory = Path(path)
    elif os.environ.get(INDUCTOR_ENV) and not _is_torch_default(os.environ[INDUCTOR_ENV]):
        directory = Path(os.environ[INDUCTOR_ENV])
    else:
        directory = default_compile_cache()
    directory = directory.expanduser().absolute()
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[INDUCTOR_ENV] = str(directory)
    return directory


def _is_torch_default(value: str) -> bool:
    """True when ``value`` is torch's own default inductor cache dir (which torch sets the variable to)."""
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # another torch layout: nothing to tell apart
        return False
    return os.path.abspath(value) == os.path.abspath(default_cache_dir())


__all__ = ["CACHE_ENV", "INDUCTOR_ENV", "default_compile_cache", "use_compile_cache"]
