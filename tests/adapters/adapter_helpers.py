"""Shared helpers for the adapter tests (imported by name: pytest puts this folder on sys.path)."""
import torch

from c2bridge.presets import get_preset

MINI = get_preset("mini")
MINI_DIMS = dict(vlm_dim=MINI.vlm_dim, dino_dim=MINI.dino_dim, out_dim=MINI.cond_dim, n_tokens=MINI.n_tokens,
                 n_patches=MINI.n_patches)


def make_inputs(batch=3, T=7, dims=MINI_DIMS, seed=0, lengths=None):
    """Random features and a padded VLM mask: sample i has lengths[i] real tokens (default T, T-3, 1, ...)."""
    gen = torch.Generator().manual_seed(seed)
    vlm = torch.randn(batch, T, dims["vlm_dim"], generator=gen)  # [B, T, vlm_dim]
    dino = torch.randn(batch, dims["n_patches"], dims["dino_dim"], generator=gen)  # [B, P, dino_dim]
    if lengths is None:
        lengths = [max(1, T - 3 * i) for i in range(batch)]
    mask = torch.arange(T)[None] < torch.tensor(lengths)[:, None]  # [B, T]
    return vlm, dino, mask

