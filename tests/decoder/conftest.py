import pytest
import torch
from torch import nn  # noqa: F401

from stand_ins import TinyAdapter  # noqa: F401




@pytest.fixture(scope="session")
def tiny_bridge():
    from c2bridge.decoder import LTXBridge

    return LTXBridge.from_preset("tiny", seed=0)


@pytest.fixture
def no_lpips_weights(tmp_path, monkeypatch):
    """An empty torch hub dir: no LPIPS backbone files."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home" / "hub" / "checkpoints"


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """These tiny models run fastest on one thread on a shared machine (two threads oversubscribe it); the
    previous setting is restored after each module."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
