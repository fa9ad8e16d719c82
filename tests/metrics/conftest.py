import pytest
import torch
from torch import nn  # noqa: F401

from stand_ins import TinyAdapter  # noqa: F401




@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    """TORCH_HOME at an empty temp dir: torch.hub.get_dir() has no LPIPS backbone files."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """These tiny models run fastest on one thread on a shared machine (two threads oversubscribe it); the
    previous setting is restored after each module."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
