"""Decoder LoRA (plan §8.2): low-rank adapters on the LTX transformer's attention projections, trained jointly
with the conditioning adapter, with ``peft``.

Every other experiment keeps the decoder frozen. Here ``peft.get_peft_model`` injects ``LoraConfig`` layers into
``to_q`` / ``to_k`` / ``to_v`` / ``to_out.0`` of every attention block in place (the bridge's transformer object
stays the same, so ``LTXBridge`` and its pipeline use the LoRA without rewiring); the base weights stay frozen and
bit-identical, only the ``lora_A`` / ``lora_B`` matrices train. Saved and loaded with peft's own
``PeftModel.save_pretrained`` / ``PeftModel.from_pretrained`` (``adapter_model.safetensors`` +
``adapter_config.json``).

Parameter count: ``rank x (in + out)`` per projection. LTX-Video (28 blocks x 2 attentions x 4 projections of
2048 x 2048) at rank 8: 7.3M (the plan's 4-8M); the miniature (4 blocks, width 64) at rank 2: 8,192 (about the
full count / 800, the way the adapter budgets scale).
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from torch import nn

TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
LORA_CONFIG = "adapter_config.json"  # peft's file names
LORA_WEIGHTS = "adapter_model.safetensors"


def projections(transformer: nn.Module, targets=TARGETS) -> dict[str, nn.Linear]:
    """name -> the attention projections ``targets`` names (their module names end with a target)."""
    found = {}
    for name, module in transformer.named_modules():
        if isinstance(module, nn.Linear) and any(name == t or name.endswith("." + t) for t in targets):
            found[name] = module
    return found


def max_rank(transformer: nn.Module, targets=TARGETS) -> int:
    """The largest rank that fits every targeted projection: min(in_features, out_features) over them."""
    found = projections(transformer, targets)
    if not found:
        raise ValueError(f"decoder_lora.targets={list(targets)}: no attention projection of the decoder matches; "
                         f"expected names such as {list(TARGETS)}")
    return min(min(m.in_features, m.out_features) for m in found.values())


def check_rank(transformer: nn.Module, rank, targets=TARGETS) -> None:
    """One ValueError when ``rank`` does not fit: not an integer >= 1, or wider than a projection."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"decoder_lora.rank={rank!r}: expected an integer >= 1 (null = no decoder LoRA)")
    ceiling = max_rank(transformer, targets)
    if rank > ceiling:
        raise ValueError(f"decoder_lora.rank={rank}: larger than the decoder's narrowest attention projection "
                         f"({ceiling}); expected 1 <= rank <= {ceiling}")


def lora_param_count(transformer: nn.Module, rank: int, targets=TARGETS) -> int:
    return sum(rank * (m.in_features + m.out_features) for m in projections(transformer, targets).values())


def attach(transformer: nn.Module, rank: int, alpha: float | None = None, dropout: float = 0.0,
           targets=TARGETS, seed: int = 0):
    """Inject trainable LoRA layers into ``transformer`` (in place) -> the ``PeftModel``. ``lora_B`` starts at
    zero (peft's default), so step 0 reproduces the frozen decoder exactly; ``lora_A`` is drawn under ``seed``."""
    import torch
    from peft import LoraConfig, get_peft_model

    check_rank(transformer, rank, targets)
    config = LoraConfig(r=int(rank), lora_alpha=float(alpha if alpha is not None else rank),
                        lora_dropout=float(dropout), target_modules=list(targets), bias="none")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = get_peft_model(transformer, config)
    return model


def trainable(model) -> list:
    return [p for n, p in model.named_parameters() if p.requires_grad and "lora_" in n]


def save(model, directory: str | Path) -> Path:
    """``PeftModel.save_pretrained`` (safetensors) into ``directory``."""
    directory = Path(directory)
    model.save_pretrained(str(directory), safe_serialization=True)
    return directory


def load_into(model, directory: str | Path) -> None:
    """Copy a saved LoRA's weights into an attached ``PeftModel`` (a resumed run's checkpoint)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(Path(directory) / LORA_WEIGHTS)))


def is_lora_dir(directory: str | Path) -> bool:
    return (Path(directory) / LORA_WEIGHTS).is_file() and (Path(directory) / LORA_CONFIG).is_file()


@contextlib.contextmanager
def loaded(transformer: nn.Module, directory: str | Path) -> Iterator:
    """The decoder with a saved LoRA (``PeftModel.from_pretrained``, frozen) for the ``with`` block; afterwards the
    LoRA layers are removed again (``unload``), leaving the original modules and weights untouched."""
    from peft import PeftModel

    if not is_lora_dir(directory):
        raise FileNotFoundError(f"no decoder LoRA at {directory}: expected {LORA_CONFIG} + {LORA_WEIGHTS} "
                                "(PeftModel.save_pretrained)")
    model = PeftModel.from_pretrained(transformer, str(directory), is_trainable=False)
    try:
        yield model
    finally:
        model.unload()
