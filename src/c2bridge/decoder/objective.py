"""The adapter's training objective against the frozen LTX-Video decoder: which losses, with which weights,
at which noise levels.

Terms (weights in ``LossSpec.terms``; any combination):

- ``flow``: flow matching in latent space, ``mse(v, noise − x0)`` (what IP-Adapter-style training uses). Cheap.
- pixel terms, on the one-step estimate ``x0_hat = x_t − σ·v`` decoded through the VAE (the decode is the
  expensive part, so it runs only when a pixel term has a nonzero weight):
  ``l2`` (pixel MSE), ``lpips`` (the distance named by ``LossSpec.perceptual``), ``ssim`` (1 − SSIM),
  ``ms_lpips`` (multi-scale version of the perceptual distance).

Cheaper pixel terms: ``PixelRegion`` names the part of ``x0_hat`` they see (a window of latent frames, a square
crop), ``random_pixel_region`` picks one from a seed; only that part is decoded, and compared with the target
pixels it decodes to. Which steps get pixel terms at all is the trainer's schedule (``LossSpec.flow_only``
on the others: no decode).

Named recipes (``LossSpec.named``): ``flow``, ``lpips_l2`` (the plan's default, LPIPS + 0.1·L2), ``lpips``,
``lpips_ssim``, ``ms_lpips`` (the E2.3 loss grid).

σ distributions (``LossSpec.sigma``):

- ``uniform``: σ ~ U(0, 1).
- ``logit_normal``: σ = sigmoid(N(logit_mean, logit_std)) (SD3's default).
- ``shifted`` (default): u ~ U(0, 1) pushed through the same resolution-dependent shift that ``LTXPipeline``'s
  sampling schedule uses (``calculate_shift`` of the latent sequence length -> ``scheduler.time_shift``; a static
  ``shift`` for schedulers without dynamic shifting). Training then visits the noise levels sampling visits; it
  biases σ *up*, never down (a low-noise bias trained ~10× worse early in the mini world).
- ``shifted_logit_normal``: logit-normal u, then the same shift (LTX-Video's own training recipe).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from c2bridge.metrics.distance import (
    LPIPS_DISTANCES,
    MultiScaleDistance,
    check_lpips_backbone,
    get_distance,
    lpips_available,
)
from c2bridge.names import (FLOW_TERM, NAMED_LOSSES, PERCEPTUAL, PIXEL_TERMS, SIGMA_DISTRIBUTIONS,  # noqa: F401
                            X0_WEIGHTINGS)
from c2bridge.names import LOSS_TERMS as TERMS


@dataclass(frozen=True)
class LossSpec:
    terms: dict[str, float] = field(default_factory=lambda: {"flow": 1.0})  # term -> weight (see TERMS)
    perceptual: str = "lpips_vgg"  # distance behind lpips/ms_lpips: lpips_vgg | lpips_alex | one_minus_ssim
    perceptual_fallback: str | None = None  # used instead of `perceptual` when its LPIPS backbone file is missing
    sigma: str = "shifted"  # σ distribution (see SIGMA_DISTRIBUTIONS and the module docstring)
    logit_mean: float = 0.0  # logit-normal location (logit_normal, shifted_logit_normal)
    logit_std: float = 1.0  # logit-normal scale
    x0_weighting: str = "none"  # pixel-term weight per sample: none | one_minus_sigma (trust x0_hat less at high σ)
    ms_scales: tuple[float, ...] = (1.0, 0.5, 0.25)  # pyramid levels of ms_lpips
    name: str | None = None  # the recipe name it was built from (LossSpec.named), for reports

    def __post_init__(self) -> None:
        terms = {str(k): float(v) for k, v in dict(self.terms).items()}
        unknown = sorted(set(terms) - set(TERMS))
        if unknown:
            raise ValueError(f"unknown loss term(s) {unknown}; expected any of {list(TERMS)}")
        if any(not math.isfinite(w) or w < 0 for w in terms.values()):
            raise ValueError(f"loss weights must be finite and >= 0; got {terms}")
        if not any(w > 0 for w in terms.values()):
            raise ValueError(f"at least one loss term needs a positive weight; got {terms}")
        for attr, allowed in (("perceptual", PERCEPTUAL), ("sigma", SIGMA_DISTRIBUTIONS),
                              ("x0_weighting", X0_WEIGHTINGS)):
            if getattr(self, attr) not in allowed:
                raise ValueError(f"LossSpec.{attr}={getattr(self, attr)!r}; expected one of {list(allowed)}")
        if self.perceptual_fallback is not None and self.perceptual_fallback not in PERCEPTUAL:
            raise ValueError(f"LossSpec.perceptual_fallback={self.perceptual_fallback!r}; expected one of "
                             f"{list(PERCEPTUAL)} or None")
        if not self.logit_std > 0:
            raise ValueError(f"LossSpec.logit_std must be > 0; got {self.logit_std}")
        object.__setattr__(self, "terms", terms)
        object.__setattr__(self, "ms_scales", tuple(float(s) for s in self.ms_scales))

    @classmethod
    def named(cls, name: str, *, weights: dict[str, float] | None = None, **kwargs: Any) -> "LossSpec":
        """A named recipe (``flow``, ``lpips_l2``, ``lpips``, ``lpips_ssim``, ``ms_lpips``); ``weights`` adds or
        overrides terms (e.g. ``{"flow": 0.5}``); other kwargs are LossSpec fields (``perceptual=``, ``sigma=``...)."""
        if name not in NAMED_LOSSES:
            raise ValueError(f"unknown loss {name!r}; expected one of {list(NAMED_LOSSES)}")
        terms = {**NAMED_LOSSES[name], **(weights or {})}
        return cls(terms=terms, name=name, **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LossSpec":
        """From ``to_dict()`` output or a config section; ``{"name": "lpips_l2", ...}`` builds the named recipe."""
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known - {"weights"})
        if unknown:
            raise ValueError(f"unknown LossSpec field(s) {unknown}; expected any of {sorted(known)}")
        if "terms" not in data and data.get("name") is not None:
            name = data.pop("name")
            return cls.named(name, **data)
        if "weights" in data:
            data["terms"] = {**data.get("terms", {}), **data.pop("weights")}
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ms_scales": list(self.ms_scales)}

    def replace(self, **kwargs: Any) -> "LossSpec":
        return dataclasses.replace(self, **kwargs)

    @property
    def active_terms(self) -> dict[str, float]:
        return {k: w for k, w in self.terms.items() if w > 0}

    @property
    def needs_pixels(self) -> bool:
        """True when some pixel term has a nonzero weight (then x0_hat is decoded through the VAE)."""
        return any(self.terms.get(t, 0.0) > 0 for t in PIXEL_TERMS)

    def flow_only(self) -> "LossSpec":
        """This spec without its pixel terms (the steps where they are scheduled off: no VAE decode)."""
        if self.terms.get(FLOW_TERM, 0.0) <= 0:
            raise ValueError(f"loss {self.describe()} has no flow term to train on without its pixel terms")
        return self.replace(terms={FLOW_TERM: self.terms[FLOW_TERM]})

    @property
    def uses_perceptual(self) -> bool:
        return self.terms.get("lpips", 0.0) > 0 or self.terms.get("ms_lpips", 0.0) > 0

    def resolve(self) -> "LossSpec":
        """The spec actually trained with: ``perceptual`` replaced by ``perceptual_fallback`` when its LPIPS
        backbone file is missing (no fallback -> the clear FileNotFoundError). Log ``resolve().to_dict()`` so a
        report can say which distance was used."""
        if not self.uses_perceptual or lpips_available(self.perceptual):
            return self
        if self.perceptual_fallback is not None:
            return self.replace(perceptual=self.perceptual_fallback, perceptual_fallback=None)
        check_lpips_backbone(LPIPS_DISTANCES[self.perceptual])  # raises, naming the file
        return self

    def describe(self) -> str:
        """E.g. ``1*lpips[lpips_vgg] + 0.1*l2 (σ shifted)``."""
        parts = []
        for term, w in self.active_terms.items():
            label = f"{term}[{self.perceptual}]" if term in ("lpips", "ms_lpips") else term
            parts.append(f"{w:g}*{label}")
        return " + ".join(parts) + f" (σ {self.sigma})"


def sample_sigmas(
    spec: LossSpec,
    batch_size: int,
    *,
    shift: Callable[[torch.Tensor], torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
    eps: float = 1e-4,
) -> torch.Tensor:
    """σ ∈ [eps, 1] per sample -> [B] float32 on the generator's device (CPU by default).

    ``shift`` maps u ∈ (0, 1] to the shifted σ (the bridge builds it from the scheduler and the latent size);
    required for the ``shifted*`` distributions.
    """
    device = generator.device if generator is not None else torch.device("cpu")
    if spec.sigma in ("uniform", "shifted"):
        u = torch.rand(batch_size, generator=generator, device=device)
    else:
        normal = torch.randn(batch_size, generator=generator, device=device)
        u = torch.sigmoid(spec.logit_mean + spec.logit_std * normal)
    u = u.clamp(eps, 1.0)
    if spec.sigma.startswith("shifted"):
        if shift is None:
            raise ValueError(f"σ distribution {spec.sigma!r} needs the scheduler's shift function")
        u = shift(u).clamp(eps, 1.0)
    return u.float()


def noisy_latents(x0: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Flow matching's path: x_t = (1 - σ)·x0 + σ·noise (= ``FlowMatchEulerDiscreteScheduler.scale_noise``); ``sigmas
    [B]`` broadcast over the latents' other dims (packed ``[B, S, C]`` or ``[B, C, F, h, w]``)."""
    s = sigmas.view(-1, *([1] * (x0.dim() - 1)))
    return (1 - s) * x0 + s * noise


def flow_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """What the LTX transformer predicts along that path: the velocity noise - x0 (the sampler steps against it)."""
    return noise - x0


def x0_weights(spec: LossSpec, sigmas: torch.Tensor) -> torch.Tensor:
    """Per-sample weights of the pixel terms -> [B]."""
    if spec.x0_weighting == "one_minus_sigma":
        return 1.0 - sigmas
    return torch.ones_like(sigmas)


@dataclass(frozen=True)
class PixelRegion:
    """What of the one-step estimate the pixel terms see, in latent units: latent frames ``[frame, frame +
    frames)`` and the square ``[top, top + size) × [left, left + size)`` (``size`` None = whole frames). The
    decoder maps a window of ``k`` latent frames starting at ``j`` to pixel frames ``[j·t, j·t + 1 + (k − 1)·t)``
    (t = temporal compression: the first latent frame decodes to one frame), and a latent square to the pixel
    square ``ratio`` times larger. Decoding a part is not bit-equal to cropping a whole decode (the VAE's
    receptive field at the borders): it is a training signal, validation decodes whole frames."""

    frame: int = 0
    frames: int | None = None  # None = all latent frames from `frame` on
    top: int = 0
    left: int = 0
    size: int | None = None  # None = whole frames

    def check_fits(self, latent_fhw: tuple[int, int, int]) -> None:
        """One clear error unless the region lies inside a ``latent_fhw`` = (F', h, w) latent."""
        f, h, w = latent_fhw
        frames_ok = self.frame >= 0 and (self.frame < f if self.frames is None else self.frame + self.frames <= f)
        square_ok = self.size is None or (self.top >= 0 and self.left >= 0 and self.top + self.size <= h
                                          and self.left + self.size <= w)
        if not (frames_ok and square_ok):
            raise ValueError(f"pixel region {self} does not fit latents of (frames, height, width) = {latent_fhw}")

    def latents(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, F', h, w]`` -> the region's latents."""
        f_end = None if self.frames is None else self.frame + self.frames
        x = x[:, :, self.frame:f_end]
        if self.size is not None:
            x = x[:, :, :, self.top:self.top + self.size, self.left:self.left + self.size]
        return x

    def pixels(self, video: torch.Tensor, spatial_ratio: int, temporal_ratio: int) -> torch.Tensor:
        """``[B, 3, F, H, W]`` target pixels -> the frames and square this region decodes to."""
        first = self.frame * temporal_ratio
        end = None if self.frames is None else first + 1 + (self.frames - 1) * temporal_ratio
        video = video[:, :, first:end]
        if self.size is not None:
            r = spatial_ratio
            video = video[:, :, :, self.top * r:(self.top + self.size) * r, self.left * r:(self.left + self.size) * r]
        return video


def random_pixel_region(latent_fhw: tuple[int, int, int], *, size: int | None = None, frames: int | None = None,
                        seed: int = 0) -> PixelRegion | None:
    """A region of a ``latent_fhw`` = (F', h, w) latent: a window of ``frames`` consecutive latent frames and a
    ``size`` × ``size`` square (latent units), placed uniformly at random from ``seed`` (a pure function of it,
    so a resumed run draws the same). None when the region is the whole latent (nothing to save)."""
    f, h, w = latent_fhw
    frames = None if frames is None or frames >= f else int(frames)
    size = None if size is None or (size >= h and size >= w) else min(int(size), h, w)
    if frames is None and size is None:
        return None
    if size is not None and size < 1:
        raise ValueError(f"a pixel region needs a side >= 1 latent pixel; got {size}")
    g = torch.Generator().manual_seed(int(seed))
    frame = int(torch.randint(0, f - frames + 1, (1,), generator=g)) if frames is not None else 0
    top = left = 0
    if size is not None:
        top = int(torch.randint(0, h - size + 1, (1,), generator=g))
        left = int(torch.randint(0, w - size + 1, (1,), generator=g))
    return PixelRegion(frame=frame, frames=frames, top=top, left=left, size=size)


def pixel_losses(pred: torch.Tensor, target: torch.Tensor, spec: LossSpec) -> dict[str, torch.Tensor]:
    """Per-sample pixel terms with nonzero weight -> {term: [B]}. ``pred`` is the decoded x0_hat (unclamped; the
    perceptual distances clamp, L2 does not, so out-of-range pixels are still pulled back), ``target`` in [0, 1]."""
    if pred.shape != target.shape:
        raise ValueError(f"decoded x0_hat {tuple(pred.shape)} and target pixels {tuple(target.shape)} differ; "
                         "targets must be at the decoder's resolution and frame count")
    out: dict[str, torch.Tensor] = {}
    weights = spec.terms
    if weights.get("l2", 0.0) > 0:
        out["l2"] = (pred.float() - target.float()).pow(2).flatten(1).mean(dim=1)
    if weights.get("ssim", 0.0) > 0:
        out["ssim"] = get_distance("one_minus_ssim")(pred, target)
    if weights.get("lpips", 0.0) > 0 or weights.get("ms_lpips", 0.0) > 0:
        base = get_distance(spec.perceptual)
        if weights.get("lpips", 0.0) > 0:
            out["lpips"] = base(pred, target)
        if weights.get("ms_lpips", 0.0) > 0:
            out["ms_lpips"] = MultiScaleDistance(base, scales=spec.ms_scales)(pred, target)
    return out


__all__ = [
    "LossSpec",
    "NAMED_LOSSES",
    "PERCEPTUAL",
    "PIXEL_TERMS",
    "PixelRegion",
    "SIGMA_DISTRIBUTIONS",
    "TERMS",
    "pixel_losses",
    "random_pixel_region",
    "sample_sigmas",
    "x0_weights",
]
