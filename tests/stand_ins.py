"""Stand-ins shared by test packages (imported as `stand_ins`; tests/ is on sys.path via its conftest)."""
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
