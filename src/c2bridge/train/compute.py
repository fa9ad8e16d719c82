"""``compute.compile``: how the frozen transformer is compiled, and where the compiled graphs are kept.

Modes (``COMPILE_MODES``; ``false`` = eager):

- ``exact``: inductor, with the ops whose inductor kernels round differently from ATen's left to ATen
  (``EAGER_OPS``: reductions, norms, GELU/SiLU, transcendental functions, arange/linspace). On CPU in float32 the
  training forward and backward are bit-identical to eager (tests/train/test_levers.py), so a trial trains to the
  same numbers with it on or off; what it still removes is the per-op overhead and the pointwise chains' passes
  over memory (the mini transformer's forward + backward at batch 32: ~0.75x eager alone on this CPU; a mini
  study trial's training 0.85x, ``benchmarks/mini_study_time.py --levers both``).
- ``fast`` (``true``): every lowering inductor has. Faster where the fused reductions pay (GPU); the last digits
  differ from eager, and over a few hundred steps of training that moves a trial by about its seed spread, so a
  verdict near its line can come out differently with it on and off.

One persistent inductor cache, so only the first run on a machine pays the cold compile (measured on this CPU for
the mini transformer: ~55 s cold, ~4 s with a warm cache).

``use_compile_cache(path=None)`` points ``TORCHINDUCTOR_CACHE_DIR`` at, in order: ``path`` (a caller's own
choice), an already set ``TORCHINDUCTOR_CACHE_DIR``, ``C2BRIDGE_COMPILE_CACHE``, else
``$XDG_CACHE_HOME/c2bridge/inductor`` (``~/.cache/c2bridge/inductor``). Call it before the first compile of the
process (the trainer does, for any ``compute.compile``); worker processes inherit the variable. torch writes its
own default (``/tmp/torchinductor_<user>``) into the variable the first time anything asks for its cache dir
(loading a diffusers model does), so that value counts as unset.
"""
from __future__ import annotations

import functools
import os
from contextlib import contextmanager
from pathlib import Path

from c2bridge.names import COMPILE_MODES  # noqa: F401  (re-exported: the modes this module implements)

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


# ATen ops "exact" keeps out of inductor's kernels. Measured on the LTX transformer (forward + backward, float32):
# with mean/sum, layer norm, GELU, SiLU, exp/sin/cos or arange/linspace lowered, outputs differed from eager by
# ~1e-6; with these left to ATen they were equal bit for bit. The rest are of the same kinds (reductions,
# transcendental functions), listed so another model's graph keeps the property.
EAGER_OPS = (
    "sum", "mean", "prod", "var", "std", "var_mean", "amax", "amin", "cumsum", "logsumexp",
    "native_layer_norm", "native_layer_norm_backward", "native_group_norm", "native_group_norm_backward",
    "_softmax", "_softmax_backward_data", "_log_softmax", "_log_softmax_backward_data",
    "gelu", "gelu_backward", "silu", "silu_backward", "mish", "softplus", "sigmoid", "sigmoid_backward",
    "tanh", "tanh_backward", "erf", "exp", "exp2", "expm1", "log", "log1p", "sin", "cos",
    "arange", "linspace",
)


def compile_options(setting) -> dict:
    """``torch.compile`` keyword arguments for a ``compute.compile`` setting the config has validated (``true`` /
    ``fast``: inductor's defaults; ``exact``: its own backend)."""
    return {"backend": exact_inductor} if setting == "exact" else {}


def exact_inductor(graph, example_inputs):
    """The ``exact`` backend: inductor with ``EAGER_OPS`` neither decomposed nor lowered (ATen runs them). Both
    tables are swapped only while inductor works on one of our graphs -- the decompositions while the forward and
    backward graphs are traced, the lowerings while each is lowered (the backward lazily, at the first backward,
    through the same ``inner_compile``) --, so other compiles in the process are untouched.
    ``emulate_precision_casts`` also keeps low-precision rounding as eager has it and gives these graphs their own
    entries in inductor's on-disk cache (its key holds the inductor config)."""
    import torch._inductor.compile_fx as fx

    def inner_compile(*args, **kwargs):
        with _aten_lowerings(_overloads(EAGER_OPS)):
            return fx.compile_fx_inner(*args, **kwargs)

    default_table, fx.select_decomp_table = fx.select_decomp_table, exact_decompositions
    try:  # not compile_fx(decompositions=...): that table would make inductor's cache key unpicklable
        return fx.compile_fx(graph, example_inputs, inner_compile=inner_compile,
                             config_patches={"emulate_precision_casts": True})
    finally:
        fx.select_decomp_table = default_table


def exact_decompositions() -> dict:
    """Inductor's decomposition table without ``EAGER_OPS`` (module level: the cache key pickles it by name)."""
    from torch._inductor.decomposition import select_decomp_table

    ops = _overloads(EAGER_OPS)
    return {op: fn for op, fn in select_decomp_table().items() if op not in ops}


@functools.lru_cache(maxsize=None)
def _overloads(names: tuple) -> frozenset:
    import torch

    out = set()
    for name in names:
        packet = getattr(torch.ops.aten, name, None)
        if packet is not None:
            out.update(getattr(packet, o) for o in packet.overloads())
    return frozenset(out)


@contextmanager
def _aten_lowerings(ops: frozenset):
    """Inductor's lowering of each of ``ops`` replaced by an ATen fallback, restored on exit."""
    import torch._inductor.lowering as lowering

    saved = (dict(lowering.lowerings), set(lowering.needs_realized_inputs), set(lowering.fallbacks))
    try:
        for op in ops:
            lowering.lowerings.pop(op, None)
            lowering.make_fallback(op, warn=False, override_decomp=True)
        yield
    finally:
        for table, old in zip((lowering.lowerings, lowering.needs_realized_inputs, lowering.fallbacks), saved):
            table.clear()
            table.update(old)


__all__ = ["CACHE_ENV", "COMPILE_MODES", "EAGER_OPS", "INDUCTOR_ENV", "compile_options",
           "default_compile_cache", "exact_decompositions", "exact_inductor", "use_compile_cache"]
