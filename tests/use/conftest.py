"""Shared fixtures for the tests of using a trained adapter: a tiny-preset adapter package and its models."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_models():
    """(bridge, encoders) of the tiny preset, built once (random test-sized models: plumbing only)."""
    import torch

    from c2bridge.decoder import LTXBridge
    from c2bridge.encoders import build_encoders

    torch.set_num_threads(1)  # tiny ops on a shared CPU
    return LTXBridge.from_preset("tiny", device="cpu"), build_encoders("tiny", device="cpu")


@pytest.fixture(scope="session")
def tiny_package(tmp_path_factory, tiny_models):
    """A tiny-preset adapter package (weights + provenance.json + model card) trained against ``tiny_models``."""
    import torch

    from c2bridge import package
    from c2bridge.adapters import build_adapter_for_preset

    bridge, encoders = tiny_models
    torch.manual_seed(0)
    adapter = build_adapter_for_preset("query", "5m", "tiny")
    with torch.no_grad():  # an adapter whose output is not ~0, so the conditioning visibly matters
        for p in adapter.parameters():
            p.add_(0.05 * torch.randn_like(p))
    directory = tmp_path_factory.mktemp("pkg") / "adapter"
    provenance = package.make_provenance(package.model_identity("tiny", bridge, encoders),
                                         training={"kind": "query", "steps": 0},
                                         params={"trainable": adapter.num_params})
    metrics = {"val": {"distance": 0.41, "distance_name": "one_minus_ssim", "ssim": 0.59, "psnr": 14.2, "n": 16}}
    intervals = {"val": {"distance": {"low": 0.38, "high": 0.44, "level": 0.95, "method": "bootstrap"}}}
    package.write_adapter_package(directory, adapter, provenance, metrics=metrics, intervals=intervals)
    return directory
