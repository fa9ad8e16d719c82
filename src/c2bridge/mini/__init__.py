"""The mini world: the real classes (LTX-Video VAE + transformer, DINOv2) at small configs, trained by c2bridge on
synthetic shapes and shipped under ``c2bridge/assets/mini`` (``c2bridge mini build`` recreates them).

``load_mini_components(assets_dir=None)`` -> ``dict(vae, transformer, scheduler, dinov2, captions)``, frozen, eval.
See docs/mini_world.md.
"""
from c2bridge.mini.models import check_assets, default_assets_dir, load_mini_components, make_pipeline

__all__ = ["load_mini_components", "default_assets_dir", "check_assets", "make_pipeline"]
