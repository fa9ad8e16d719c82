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
