"""The mini world: the real classes (LTX-Video VAE + transformer, DINOv2) at small configs, trained by c2bridge on
synthetic shapes and shipped under ``c2bridge/assets/mini``.

Two halves: what the ``mini`` preset loads at run time (``c2bridge.mini.assets``: ``load_mini_components``,
``check_assets``, ``default_assets_dir``; ``c2bridge.mini.captions``: the caption embedder) and the recipe that
recreates the weights (``c2bridge.mini.build``, ``c2bridge mini build``; model configs in ``c2bridge.mini.models``).
See docs/mini_world.md.
"""
from c2bridge.mini.assets import check_assets, default_assets_dir, load_mini_components

__all__ = ["load_mini_components", "default_assets_dir", "check_assets"]
