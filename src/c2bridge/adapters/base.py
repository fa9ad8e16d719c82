"""The adapter interface every kind implements: input checks, config, parameter counts, save/load."""
from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from c2bridge._io import atomic_write_json, read_json, save_safetensors
from c2bridge.adapters.registry import ADAPTERS, adapter_class

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "model.safetensors"
IO_DIMS = ("vlm_dim", "dino_dim", "out_dim", "n_tokens", "n_patches")  # fixed by the preset, not by the budget
POS_EMB_CHOICES = (True, False, "learned", "sincos", "none")
# how a clip's per-frame DINOv2 tokens [B, F, P, D] become conditioning (see Adapter.forward)
TEMPORAL_CHOICES = ("frame", "pool", "spacetime")


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


def default_heads(width: int, n_heads: int | None = None) -> int:
    """Attention heads of a width when not given: one per 64 channels, at least one."""
    if n_heads is None:
        return max(1, width // 64)
    if not isinstance(n_heads, int) or isinstance(n_heads, bool) or n_heads < 1:
        raise ValueError(f"n_heads must be a positive int (or None: width // 64), got {n_heads!r}")
    return n_heads


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

    Clips: dino [B, F, P, dino_dim] (every frame's patch tokens; the VLM read the clip as one video, so ``vlm`` is
    the clip's). The ``temporal`` option decides what comes out (plan open question 5):

    - ``"frame"``: each frame through the adapter with the clip's VLM tokens -> cond [B, F, n_tokens, out_dim],
      one conditioning per frame (the decoder reconstructs each frame with its own: ``LTXBridge``);
    - ``"pool"``: the mean of the frames' tokens -> cond [B, n_tokens, out_dim] for the whole clip;
    - ``"spacetime"``: the F x P tokens of every frame in one context, each with its 2-D grid position plus a fixed
      sin-cos embedding of its frame index (``layers.patch_positions``) -> cond [B, n_tokens, out_dim].

    None adds parameters, so a kind has the same count (and budget) under each.
    """

    kind: str = ""
    budget_spec: BudgetSpec = BudgetSpec()

    def __init__(
        self,
        *,
        vlm_dim: int = 3584,  # Qwen2.5-VL hidden width
        dino_dim: int = 1024,  # DINOv2 patch-token width
        out_dim: int = 4096,  # LTX caption_channels
        n_tokens: int = 77,  # output tokens
        n_patches: int = 256,  # DINOv2 patches (square grid for the 2-D position embedding)
        dropout: float = 0.0,  # attention + residual + MLP dropout
        # scale on each stream's (vlm, dino) tokens, or "learned": a trained gate g (vlm g, dino 1 - g; starts at 0.3)
        stream_weights: tuple[float, float] | list[float] | str = (0.3, 0.7),
        # 2-D position embedding on the DINOv2 patches: True / "learned" (row + col, trained), "sincos" (fixed 2-D
        # sin-cos table, no parameters), False / "none"
        pos_emb: bool | str = True,
        out_init_scale: float = 0.1,  # output projection ~ N(0, scale²/width): cond starts at ~scale per element
        # clips (dino [B, F, P, D]): "frame" one conditioning per frame [B, F, n_tokens, out_dim] (each frame decoded
        # with its own), "pool" the mean over frames -> one conditioning for the clip, "spacetime" every frame's
        # patches at once with a fixed temporal position embedding -> one conditioning. No parameters in any.
        temporal: str = "pool",
        seed: int | None = None,  # init under this seed without touching the global RNG (None: global RNG)
        budget: float | None = None,  # the budget this was sized for (informational)
    ):
        """The options every kind takes; a kind's own options come first in its ``__init__`` (see
        ``register_to_config``), which passes these on with ``super().__init__(**options)``."""
        if "_config" not in self.__dict__:
            raise TypeError(f"{type(self).__name__}.__init__ must be decorated with @register_to_config")
        super().__init__()
        dims = dict(vlm_dim=vlm_dim, dino_dim=dino_dim, out_dim=out_dim, n_tokens=n_tokens, n_patches=n_patches)
        for key, value in dims.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{self.kind} adapter: {key} must be a positive int, got {value!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"{self.kind} adapter: dropout must be in [0, 1), got {dropout!r}")
        if stream_weights != "learned" and (isinstance(stream_weights, str) or len(stream_weights) != 2):
            raise ValueError(f"stream_weights must be (vlm_weight, dino_weight) or 'learned', got {stream_weights!r}")
        if pos_emb not in POS_EMB_CHOICES:
            raise ValueError(f"pos_emb must be one of {list(POS_EMB_CHOICES)}, got {pos_emb!r}")
        if temporal not in TEMPORAL_CHOICES:
            raise ValueError(f"temporal must be one of {list(TEMPORAL_CHOICES)}, got {temporal!r}")
        self.temporal = temporal
        self.vlm_dim, self.dino_dim, self.out_dim, self.n_tokens, self.n_patches = dims.values()
        self._aux_loss: torch.Tensor | None = None

    def register_to_config(self, **values) -> None:
        """Record the values the constructor resolved from its defaults (``ffn_dim=None`` -> ``4 * width``)."""
        unknown = sorted(set(values) - set(self._config))
        if unknown:
            raise TypeError(f"{type(self).__name__}: {unknown} are not constructor arguments")
        self._config.update(copy.deepcopy(values))

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
        if isinstance(dino, torch.Tensor) and dino.dim() == 4:  # a clip's per-frame tokens [B, F, P, D]
            return self._forward_clip(vlm, dino, vlm_mask)
        self.check_inputs(vlm, dino, vlm_mask)
        return self._run(vlm, dino, vlm_mask)

    def _forward_clip(self, vlm, dino, vlm_mask):
        b, f = dino.shape[:2]
        self.check_inputs(vlm, dino[:, 0], vlm_mask)  # every frame must be [B, P, dino_dim]
        if self.temporal == "pool":
            return self._run(vlm, dino.mean(1), vlm_mask)  # [B, n_tokens, out_dim]
        if self.temporal == "spacetime":
            return self._run(vlm, dino.flatten(1, 2), vlm_mask)  # F*P context tokens -> [B, n_tokens, out_dim]
        repeat = (lambda x: None if x is None else x.repeat_interleave(f, 0))  # the clip's VLM tokens per frame
        cond = self._run(repeat(vlm), dino.flatten(0, 1), repeat(vlm_mask))  # [B*F, n_tokens, out_dim]
        return cond.view(b, f, *cond.shape[1:])  # [B, F, n_tokens, out_dim]

    def _run(self, vlm, dino, vlm_mask):
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
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        # atomic, normal permissions, sorted metadata: the same weights always give the same bytes
        save_safetensors(directory / WEIGHTS_NAME, state, metadata={"format": "pt", "kind": self.kind})
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
    kind = config.pop("kind", None) if isinstance(config, dict) else None
    if kind not in ADAPTERS:
        raise ValueError(f"{config_path}: unknown adapter kind {kind!r}; expected one of {sorted(ADAPTERS)}")
    with torch.device("meta"):  # no random init: the weights are assigned from the file below
        try:
            adapter = adapter_class(kind)(**config)
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


def _stored(value, default):
    """A constructor value as ``config`` keeps it: JSON-able, of its default's type (``dropout=0`` -> 0.0,
    ``pos_emb=1`` -> True, a tuple -> a list)."""
    if value is None or isinstance(value, str):  # named choices ("learned", "sincos") stay names
        return value
    if isinstance(default, bool):
        return bool(value)
    if isinstance(default, float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, (list, tuple)):
        floats = isinstance(default, tuple) and all(isinstance(d, float) for d in default)
        return [float(v) for v in value] if floats else list(value)
    return value


def register_to_config(init):
    """Decorator for a kind's ``__init__``: every constructor argument, defaults included, becomes the adapter's
    ``config`` (the diffusers ``register_to_config`` idea), so a kind never lists its options twice.

    The kind declares only its own options and takes the shared ones (``Adapter.__init__``: the dims, dropout,
    stream weights, ...) as ``**options``; the decorated ``__init__`` has the signature of both, dims first, so
    ``inspect.signature`` (the budget solver's option check) and ``help()`` show every option.
    """
    own = list(inspect.signature(init).parameters.values())
    self_param, own = own[0], [p for p in own[1:] if p.kind is not inspect.Parameter.VAR_KEYWORD]
    shared = list(inspect.signature(Adapter.__init__).parameters.values())[1:]
    clash = {p.name for p in own} & {p.name for p in shared}
    if clash:
        raise TypeError(f"{init.__qualname__} redeclares the shared option(s) {sorted(clash)}")
    ordered = [p for p in shared if p.name in IO_DIMS] + own + [p for p in shared if p.name not in IO_DIMS]
    signature = inspect.Signature(
        [self_param, *(p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in ordered)]
    )

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        values = {k: v for k, v in bound.arguments.items() if k != self_param.name}
        config = {name: _stored(value, signature.parameters[name].default) for name, value in values.items()}
        # set before nn.Module.__init__ runs (a plain attribute, so Module.__setattr__ is bypassed)
        object.__setattr__(self, "_config", {"kind": self.kind, **copy.deepcopy(config)})
        init(self, **values)

    wrapper.__signature__ = signature
    return wrapper
