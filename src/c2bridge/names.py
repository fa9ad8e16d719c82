"""The names a config may use, in one place, importable without torch.

Each list has one owner (this module); the modules that implement the names (``c2bridge.adapters``,
``c2bridge.decoder.objective``, ``c2bridge.data.augment``, ``c2bridge.train.schedules``) import them from here, and
``tests/test_names.py`` checks that every implementation covers exactly its list.
"""
from __future__ import annotations

# adapter architectures (c2bridge.adapters registers one class per kind)
ADAPTER_KINDS = ("query", "bottleneck", "lora", "perceiver", "moe")

# learning-rate schedules (c2bridge.train.schedules)
SCHEDULES = ("constant", "cosine", "warmup_cosine", "cyclic")

# augmentations applied at extraction time (c2bridge.data.augment)
AUGMENTATIONS = ("none", "color_jitter", "random_crop", "mixup")

# training objective (c2bridge.decoder.objective): loss terms, the named recipes as term weights, σ sampling
FLOW_TERM = "flow"
PIXEL_TERMS = ("l2", "lpips", "ssim", "ms_lpips")  # need the one-step estimate decoded to pixels
LOSS_TERMS = (FLOW_TERM, *PIXEL_TERMS)
NAMED_LOSSES: dict[str, dict[str, float]] = {
    "flow": {"flow": 1.0},
    "lpips_l2": {"lpips": 1.0, "l2": 0.1},  # the plan's default: LPIPS + 0.1·L2
    "lpips": {"lpips": 1.0},
    "lpips_ssim": {"lpips": 1.0, "ssim": 1.0},
    "ms_lpips": {"ms_lpips": 1.0},
}
LOSS_NAMES = tuple(NAMED_LOSSES)
PERCEPTUAL = ("lpips_vgg", "lpips_alex", "one_minus_ssim")  # distance behind the lpips / ms_lpips terms
SIGMA_DISTRIBUTIONS = ("uniform", "logit_normal", "shifted", "shifted_logit_normal")
X0_WEIGHTINGS = ("none", "one_minus_sigma")

# distances of sampled metrics (c2bridge.metrics.get_distance)
COMPILE_MODES = ("exact", "fast")  # compute.compile besides false / true (= fast): c2bridge.train.compute
DISTANCES = ("lpips_alex", "lpips_vgg", "one_minus_ssim")

# evaluation-only references of the study (c2bridge.experiments.backend)
REFERENCES = ("caption", "zero", "untrained")


def loss_terms(name: str, weights: dict | None = None) -> dict[str, float]:
    """The term weights of a named loss plus ``weights`` (``loss.weights`` in a TrainConfig)."""
    if name not in NAMED_LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {list(LOSS_NAMES)}")
    return {**NAMED_LOSSES[name], **(weights or {})}
