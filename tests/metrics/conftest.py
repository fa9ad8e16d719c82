import pytest
import torch
from torch import nn


class TinyAdapter(nn.Module):
    """A stand-in adapter: learned queries + a projection of the mean DINO token -> [B, n_tokens, out_dim]."""

    def __init__(self, dino_dim: int = 32, out_dim: int = 32, n_tokens: int = 8):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(n_tokens, out_dim) * 0.5)
        self.proj = nn.Linear(dino_dim, out_dim)

    def forward(self, vlm, dino, vlm_mask=None):
        return self.queries + self.proj(dino.mean(dim=1, keepdim=True))  # [B, n_tokens, out_dim]


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
