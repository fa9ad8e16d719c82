"""The adapter interface every kind implements: input checks, config, parameter counts, save/load."""
from __future__ import annotations

import contextlib
import copy
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from c2bridge._io import atomic_path, atomic_write_json, read_json

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "model.safetensors"

# Registry: kind name -> class. Filled by `register_adapter` as each kind's module is imported.
ADAPTERS: dict[str, type["Adapter"]] = {}


def register_adapter(cls: type["Adapter"]) -> type["Adapter"]:
    ADAPTERS[cls.kind] = cls
    return cls


def ensure_registered() -> None:
    """Import every kind's module (each registers itself), in the registry's canonical order."""
    from . import query, bottleneck, lora, perceiver, moe  # noqa: F401


@dataclass(frozen=True)
class BudgetSpec:
    """How the budget solver sizes a kind (see budget.py): it picks `width` and `depth` by the documented rule,
    then solves the integer `free` dimension so the parameter count lands on the budget."""

    width: str = "width"  # config key of the width (multiple of the head dim)
    depth: str = "depth"  # config key of the depth (blocks / iterations)
    free: str = "ffn_dim"  # config key of the per-block dimension solved exactly (count is linear in it)
    fine: str | None = None  # optional second per-block dim that absorbs the remainder the free dim leaves
    free_ratio: float = 4.0  # nominal free dim = free_ratio * width when choosing the width
    heads: bool = True  # whether the kind has attention heads (sets n_heads = width // head_dim)
    width_factor: float = 1.0  # width option = grid width x this (lora: rank = rank-space width / 2)


def per_block(value, depth: int, name: str) -> list[int]:
    """An int (same for every block) or a list of `depth` ints -> list of positive ints."""
    values = list(value) if isinstance(value, (list, tuple)) else [value] * depth
    if len(values) != depth or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        raise ValueError(
            f"{name} must be a positive int or a list of {depth} positive ints (one per block), got {value!r}"
        )
    return values


def compact(values: list[int]):
    """Inverse of per_block for configs: a single int when every block has the same value."""
    return values[0] if len(set(values)) == 1 else list(values)


@contextlib.contextmanager
def seeded(seed: int | None):
    """Run the block under `torch.manual_seed(seed)` without disturbing the caller's global CPU RNG."""
    if seed is None:
        yield
        return
    # fork CUDA generators too when CUDA is in use (manual_seed seeds them; a build under a cuda device uses them)
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if cuda else []):
        torch.manual_seed(int(seed))
        yield


class Adapter(nn.Module):
    """Base class: ``adapter(vlm, dino, vlm_mask=None) -> cond``.

    vlm [B, T, vlm_dim] (padded), vlm_mask [B, T] bool (True = real token), dino [B, P, dino_dim]
    -> cond [B, n_tokens, out_dim]. Subclasses implement ``_forward`` on checked inputs.
    """

    kind: str = ""
    budget_spec: BudgetSpec = BudgetSpec()

    def __init__(self, config: dict):
        super().__init__()
        self._config = {"kind": self.kind, **copy.deepcopy(config)}
        for key in ("vlm_dim", "dino_dim", "out_dim", "n_tokens", "n_patches"):
            value = config[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{self.kind} adapter: {key} must be a positive int, got {value!r}")
        if not 0.0 <= float(config.get("dropout", 0.0)) < 1.0:
            raise ValueError(f"{self.kind} adapter: dropout must be in [0, 1), got {config.get('dropout')!r}")
        if "stream_weights" in config and len(config["stream_weights"]) != 2:
            raise ValueError(f"stream_weights must be (vlm_weight, dino_weight), got {config['stream_weights']!r}")
        self.vlm_dim = config["vlm_dim"]
        self.dino_dim = config["dino_dim"]
        self.out_dim = config["out_dim"]
        self.n_tokens = config["n_tokens"]
        self.n_patches = config["n_patches"]
        self._aux_loss: torch.Tensor | None = None

    # ---- public API -------------------------------------------------------------------------------------------
    @property
    def config(self) -> dict:
        """JSON-able constructor kwargs plus "kind": ``ADAPTERS[kind](**rest)`` rebuilds the same module."""
        return copy.deepcopy(self._config)

    @property
    def num_params(self) -> int:
        """Exact number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @property
    def active_params(self) -> int:
        """Trainable parameters used to compute one output (MoE overrides: only the routed experts count)."""
        return self.num_params

    @property
    def aux_loss(self) -> torch.Tensor:
        """Auxiliary loss of the last forward (MoE load balancing); a zero scalar for the other kinds."""
        if self._aux_loss is not None:
            return self._aux_loss
        p = next(self.parameters())
        return torch.zeros((), device=p.device, dtype=torch.float32)

    def forward(self, vlm: torch.Tensor, dino: torch.Tensor, vlm_mask: torch.Tensor | None = None) -> torch.Tensor:
        self.check_inputs(vlm, dino, vlm_mask)
        dtype = next(self.parameters()).dtype
        self._aux_loss = None
        cond = self._forward(vlm.to(dtype), dino.to(dtype), vlm_mask)  # [B, n_tokens, out_dim]
        if self._aux_loss is None:
            self._aux_loss = torch.zeros((), device=cond.device, dtype=torch.float32)
        return cond

    def _forward(self, vlm, dino, vlm_mask):  # pragma: no cover - abstract
        raise NotImplementedError

    def check_inputs(self, vlm, dino, vlm_mask=None) -> None:
        """Shape/dtype checks only (free on a GPU: no device sync). One ValueError naming expected vs got."""
        name = f"{self.kind} adapter"
        for label, x in (("vlm", vlm), ("dino", dino)):
            if not isinstance(x, torch.Tensor):
                raise ValueError(f"{name}: {label} must be a tensor, got {type(x).__name__}")
            if not x.is_floating_point():
                raise ValueError(f"{name}: {label} must be a floating-point tensor, got {x.dtype}")
        if vlm.dim() != 3 or vlm.shape[-1] != self.vlm_dim:
            raise ValueError(f"{name}: vlm must be [B, T, {self.vlm_dim}], got {list(vlm.shape)}")
        if dino.dim() != 3 or tuple(dino.shape[1:]) != (self.n_patches, self.dino_dim):
            raise ValueError(
                f"{name}: dino must be [B, {self.n_patches}, {self.dino_dim}] (n_patches, dino_dim), "
                f"got {list(dino.shape)}"
            )
        if vlm.shape[0] != dino.shape[0]:
            raise ValueError(f"{name}: batch sizes disagree: vlm has {vlm.shape[0]}, dino has {dino.shape[0]}")
        if vlm_mask is not None:
            if not isinstance(vlm_mask, torch.Tensor):
                raise ValueError(f"{name}: vlm_mask must be a bool tensor, got {type(vlm_mask).__name__}")
            if tuple(vlm_mask.shape) != tuple(vlm.shape[:2]):
                raise ValueError(
                    f"{name}: vlm_mask must be [B, T] = {list(vlm.shape[:2])} like vlm, got {list(vlm_mask.shape)}"
                )
            if vlm_mask.dtype != torch.bool:
                # float masks are ambiguous (additive 0/-inf vs multiplicative 1/0), so only bool is accepted
                raise ValueError(f"{name}: vlm_mask must be bool (True = real token), got {vlm_mask.dtype}")

    # ---- save / load ------------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` then ``adapter_config.json`` (each atomically) into `directory`."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        with atomic_path(directory / WEIGHTS_NAME) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt", "kind": self.kind})
        atomic_write_json(directory / CONFIG_NAME, self.config)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device | None = None) -> "Adapter":
        adapter = load_adapter(directory, device=device)
        if cls is not Adapter and not isinstance(adapter, cls):
            raise ValueError(f"{directory} holds a {adapter.kind!r} adapter, not {cls.kind!r}")
        return adapter


def load_adapter(directory: str | Path, device: str | torch.device | None = None) -> Adapter:
    """Rebuild an adapter saved by ``save_pretrained`` (config + safetensors weights, strict key match)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"no adapter at {directory}: missing {path.name} (expected {CONFIG_NAME} + {WEIGHTS_NAME})"
            )
    try:
        config = read_json(config_path)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{config_path} is not valid JSON: {exc}") from None
    ensure_registered()
    kind = config.pop("kind", None) if isinstance(config, dict) else None
    if kind not in ADAPTERS:
        raise ValueError(f"{config_path}: unknown adapter kind {kind!r}; expected one of {sorted(ADAPTERS)}")
    with torch.device("meta"):  # no random init: the weights are assigned from the file below
        try:
            adapter = ADAPTERS[kind](**config)
        except TypeError as exc:
            raise ValueError(f"{config_path}: config does not match the {kind!r} adapter: {exc}") from None
    # clone: fresh, aligned storage (tensors viewing the file's buffer can take slower, numerically different
    # kernel paths, and a round trip must give bit-identical outputs)
    state = {k: v.clone() for k, v in load_file(str(weights_path), device=str(device or "cpu")).items()}
    try:
        adapter.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise ValueError(f"{weights_path} does not match {config_path}: {exc}") from None
    return adapter
