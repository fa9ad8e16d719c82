"""Loading the real (``full``) encoders: local-first, one clear error when weights are missing."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable


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


def resolved_revision(model: Any, requested: str | None) -> str:
    """The commit the weights came from (what the cache key must record), else the requested revision."""
    commit = getattr(getattr(model, "config", None), "_commit_hash", None)
    return commit or requested or "main"
