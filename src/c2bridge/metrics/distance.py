"""Perceptual distances between reconstructions and targets, as per-sample tensors.

``get_distance(name)`` returns a :class:`Distance` (an ``nn.Module``): ``d(pred, target) -> [B]``, with ``.name``.
Images ``[B, 3, H, W]`` or clips ``[B, 3, F, H, W]`` in [0, 1] (clamped); clips are scored frame by frame and
averaged per sample.

- ``lpips_alex`` (the number reports quote), ``lpips_vgg`` (the usual choice as a training loss): the ``lpips``
  package on torchvision's ImageNet backbones. Those backbone weights are *not* in the ``lpips`` package:
  torchvision downloads them into ``torch.hub.get_dir()/checkpoints/`` on first construction. We check that file
  first and raise one ``FileNotFoundError`` naming it, instead of a network attempt.
- ``one_minus_ssim``: 1 − SSIM (Wang et al. as scikit-image computes it: ``c2bridge.metrics.image``), the named
  fallback for worlds without the LPIPS backbones.
- ``ms_<name>``: the multi-scale version of any of the above (see :class:`MultiScaleDistance`).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from c2bridge.metrics.image import as_frames, ssim_frames

# lpips net -> (torchvision weights file, where torchvision downloads it from). tests/metrics checks these against
# torchvision's own weight enums (AlexNet_Weights / VGG16_Weights / SqueezeNet1_1_Weights.IMAGENET1K_V1).
LPIPS_BACKBONES = {
    "alex": ("alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
    "vgg": ("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth"),
    "squeeze": ("squeezenet1_1-b8a52dc0.pth", "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth"),
}
LPIPS_DISTANCES = {"lpips_alex": "alex", "lpips_vgg": "vgg", "lpips_squeeze": "squeeze"}
BASE_DISTANCES = (*LPIPS_DISTANCES, "one_minus_ssim")
MS_PREFIX = "ms_"


def lpips_backbone_path(net: str) -> Path:
    """The file torchvision loads the LPIPS backbone from: ``torch.hub.get_dir()/checkpoints/<file>``
    (``$TORCH_HOME/hub/checkpoints`` when TORCH_HOME is set, else ``~/.cache/torch/hub/checkpoints``)."""
    if net not in LPIPS_BACKBONES:
        raise ValueError(f"unknown LPIPS net {net!r}; expected one of {sorted(LPIPS_BACKBONES)}")
    return Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_BACKBONES[net][0]


def lpips_available(name: str) -> bool:
    """True when ``name`` (e.g. ``lpips_alex``, ``ms_lpips_vgg``, ``one_minus_ssim``) can be built offline."""
    base = name[len(MS_PREFIX):] if name.startswith(MS_PREFIX) else name
    if base not in LPIPS_DISTANCES:
        return base in BASE_DISTANCES
    return lpips_backbone_path(LPIPS_DISTANCES[base]).is_file()


def check_lpips_backbone(net: str) -> Path:
    """Raise one clear FileNotFoundError when the torchvision backbone LPIPS needs is not on disk (never download)."""
    path = lpips_backbone_path(net)
    if not path.is_file():
        filename, url = LPIPS_BACKBONES[net]
        raise FileNotFoundError(
            f"LPIPS ({net}) needs torchvision's ImageNet backbone weights at {path} (not found). torchvision "
            f"downloads that file from {url} into torch.hub.get_dir()/checkpoints/ ($TORCH_HOME/hub/checkpoints); "
            f"this machine is offline, so copy {filename} there, or name the fallback distance 'one_minus_ssim' "
            f"(the report then says which distance it used)."
        )
    return path


class Distance(nn.Module):
    """A per-sample distance: ``forward(pred, target) -> [B]`` (lower is closer). Inputs in [0, 1], clamped."""

    name: str = "distance"

    def frame_distance(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # [N,3,H,W] -> [N]
        raise NotImplementedError

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        frames_pred, frames_target, num_frames = as_frames(pred, target)
        frames_pred = frames_pred.float().clamp(0, 1)
        frames_target = frames_target.float().clamp(0, 1)
        per_frame = self.frame_distance(frames_pred, frames_target)  # [B*F]
        return per_frame.view(-1, num_frames).mean(dim=1)  # [B]

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


class LPIPSDistance(Distance):
    """LPIPS from the ``lpips`` package; every weight frozen (backbone and the ``lin*`` heads)."""

    def __init__(self, net: str = "alex"):
        super().__init__()
        check_lpips_backbone(net)
        import lpips

        with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=` flag
            warnings.simplefilter("ignore", UserWarning)
            self.model = lpips.LPIPS(net=net, verbose=False)
        self.model.eval().requires_grad_(False)  # the lin heads ship with requires_grad=True
        self.net = net
        self.name = f"lpips_{net}"

    def train(self, mode: bool = True) -> "LPIPSDistance":  # always eval: dropout in the lin heads stays off
        return super().train(False)

    def frame_distance(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        device = pred.device
        if next(self.model.parameters()).device != device:
            self.model.to(device)
        return self.model(pred, target, normalize=True).view(-1)  # normalize: [0,1] -> [-1,1]


class SSIMDistance(Distance):
    """1 − SSIM (Wang et al. as scikit-image computes it: Gaussian 11×11 window, valid region, data range 1)."""

    name = "one_minus_ssim"

    def frame_distance(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 1.0 - ssim_frames(pred, target)


class MultiScaleDistance(Distance):
    """Mean of a base distance over an image pyramid (the plan's "multi-scale LPIPS").

    Level ``s`` average-pools both images by ``1/s``. Levels smaller than ``min_size`` pixels (AlexNet-LPIPS fails
    below ~32 px) are bilinearly resized back up to ``min_size``: they still compare only the coarse (blurred)
    content, which is what a coarse level is for, at a size the backbone can take.
    """

    def __init__(self, base: Distance, scales: tuple[float, ...] = (1.0, 0.5, 0.25), min_size: int = 32):
        super().__init__()
        if not scales or any(not 0 < s <= 1 for s in scales):
            raise ValueError(f"multi-scale scales must be in (0, 1]; got {scales}")
        self.base = base
        self.scales = tuple(float(s) for s in scales)
        self.min_size = int(min_size)
        self.name = f"{MS_PREFIX}{base.name}"

    def frame_distance(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for scale in self.scales:
            level_pred, level_target = pred, target
            if scale < 1:
                factor = round(1 / scale)
                level_pred, level_target = F.avg_pool2d(pred, factor), F.avg_pool2d(target, factor)
            short = min(level_pred.shape[-2:])
            if short < self.min_size:
                size = [round(d * self.min_size / short) for d in level_pred.shape[-2:]]
                level_pred = F.interpolate(level_pred, size=size, mode="bilinear", align_corners=False)
                level_target = F.interpolate(level_target, size=size, mode="bilinear", align_corners=False)
            total = total + self.base.frame_distance(level_pred, level_target)
        return total / len(self.scales)


# building LPIPS loads weights from disk: build each (net, backbone file) once
_LPIPS_CACHE: dict[tuple[str, str], LPIPSDistance] = {}


def check_distance_name(name) -> str:
    """``name`` if it is a distance ``get_distance`` builds (``lpips_alex`` | ``lpips_vgg`` | ``lpips_squeeze`` |
    ``one_minus_ssim`` | ``ms_<one of those>``), else one ValueError saying what is accepted."""
    base = name[len(MS_PREFIX):] if isinstance(name, str) and name.startswith(MS_PREFIX) else name
    if base not in BASE_DISTANCES:
        raise ValueError(f"unknown distance {name!r}; expected one of {list(BASE_DISTANCES)} or 'ms_' + one of them")
    return name


def get_distance(name: str, *, fallback: str | None = None) -> Distance:
    """``lpips_alex`` | ``lpips_vgg`` | ``one_minus_ssim`` | ``ms_<one of those>``.

    ``fallback`` (e.g. ``"one_minus_ssim"``) is used when ``name`` needs an LPIPS backbone that is not on disk;
    the returned distance's ``.name`` says which one was actually built.
    """
    check_distance_name(name)
    if fallback is not None:
        check_distance_name(fallback)
    if fallback is not None and not lpips_available(name):
        return get_distance(fallback)
    if name.startswith(MS_PREFIX):
        return MultiScaleDistance(get_distance(name[len(MS_PREFIX):]))
    if name in LPIPS_DISTANCES:
        net = LPIPS_DISTANCES[name]
        key = (net, str(check_lpips_backbone(net)))  # checked on every call: TORCH_HOME may have moved
        if key not in _LPIPS_CACHE:
            _LPIPS_CACHE[key] = LPIPSDistance(net)
        return _LPIPS_CACHE[key]
    return SSIMDistance()  # the one base distance left (check_distance_name above)


def resolve_distance_name(name: str, fallback: str | None = None) -> str:
    """The distance name ``get_distance(name, fallback=fallback)`` would build, without building it."""
    if fallback is not None and not lpips_available(name):
        return fallback
    return name


__all__ = [
    "BASE_DISTANCES",
    "Distance",
    "LPIPSDistance",
    "LPIPS_BACKBONES",
    "MultiScaleDistance",
    "SSIMDistance",
    "check_distance_name",
    "check_lpips_backbone",
    "get_distance",
    "lpips_available",
    "lpips_backbone_path",
    "resolve_distance_name",
]
