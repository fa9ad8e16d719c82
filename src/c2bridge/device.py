"""Where computation runs: one rule for every stage (trainer, study backend, encoders, CLIs)."""
from __future__ import annotations

DEVICES = ("auto", "cpu", "cuda")


def pick_device(requested: "str | None" = "auto"):
    """``"auto"`` / None -> cuda when available, else cpu; ``"cpu"``, ``"cuda"``, ``"cuda:1"`` as given (one clear
    error when CUDA is asked for and there is none). Returns a ``torch.device``."""
    import torch

    name = "auto" if requested is None else str(requested)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but no CUDA device is available; expected device=cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ValueError(f"device={name!r}: expected one of {list(DEVICES)} or cuda:N") from None
