"""The mini decoder's own caption encoder: the miniature's stand-in for T5.

Shapes captions are token ids (``c2bridge.data.shapes``: per shape colour, kind, x-bin, y-bin, size-bin[, motion]).
``CaptionEmbedder`` turns them into one conditioning token per shape: the sum of its attribute embeddings
(a sum binds the attributes of one shape, so cross-attention can "AND" position and colour in one dot product).
Absent shapes are masked out. Output: ``cond [B, MAX_SHAPES, cond_dim]`` + ``mask [B, MAX_SHAPES]`` bool, i.e.
exactly what ``LTXPipeline(prompt_embeds=..., prompt_attention_mask=...)`` takes.

Null conditioning (10% of decoder training, and the "zero conditioning" baseline) is all-zero tokens with an
all-ones mask; zero tokens give the same cross-attention output at any length, so ``zeros [B, n_tokens, cond_dim]``
from an adapter-shaped tensor means the same thing.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from c2bridge._io import atomic_path, atomic_write_json
from c2bridge.data import shapes as S

CONFIG_NAME = "captions_config.json"
WEIGHTS_NAME = "model.safetensors"


class CaptionEmbedder(nn.Module):
    def __init__(self, cond_dim: int = 64, vocab_size: int = S.VOCAB_SIZE, tokens_per_shape: int = S.TOKENS_PER_SHAPE,
                 max_shapes: int = S.MAX_SHAPES, init_std: float = 0.5):
        super().__init__()
        self.config = {"cond_dim": cond_dim, "vocab_size": vocab_size, "tokens_per_shape": tokens_per_shape,
                       "max_shapes": max_shapes, "init_std": init_std}
        self.cond_dim, self.tokens_per_shape, self.max_shapes = cond_dim, tokens_per_shape, max_shapes
        self.embed = nn.Embedding(vocab_size, cond_dim, padding_idx=S.PAD_ID)  # one table, fields have own id ranges
        nn.init.normal_(self.embed.weight, std=init_std / tokens_per_shape ** 0.5)  # token rms ~ init_std
        with torch.no_grad():
            self.embed.weight[S.PAD_ID].zero_()

    def forward(self, caption_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """caption_ids ``[B, L]`` long -> ``cond [B, max_shapes, cond_dim]``, ``mask [B, max_shapes]`` bool."""
        if caption_ids.ndim != 2 or caption_ids.shape[1] != self.max_shapes * self.tokens_per_shape:
            raise ValueError(f"caption_ids must be [B, {self.max_shapes * self.tokens_per_shape}] (shapes caption "
                             f"tokens), got {tuple(caption_ids.shape)}")
        ids = caption_ids.view(caption_ids.shape[0], self.max_shapes, self.tokens_per_shape)  # [B, K, T]
        cond = self.embed(ids).sum(2)  # [B, K, cond_dim]
        mask = ids[..., 0] != S.PAD_ID  # [B, K]
        return cond * mask[..., None], mask

    @staticmethod
    def null(batch_size: int, n_tokens: int, cond_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Null conditioning: zero tokens, all-ones mask."""
        return torch.zeros(batch_size, n_tokens, cond_dim), torch.ones(batch_size, n_tokens, dtype=torch.bool)

    def save_pretrained(self, directory: str | Path, dtype: torch.dtype = torch.float16) -> None:
        from safetensors.torch import save_file

        directory = Path(directory)
        state = {k: v.detach().to(dtype).contiguous() for k, v in self.state_dict().items()}
        with atomic_path(directory / WEIGHTS_NAME) as tmp:
            save_file(state, str(tmp))
        atomic_write_json(directory / CONFIG_NAME, self.config)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "CaptionEmbedder":
        from safetensors.torch import load_file

        directory = Path(directory)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"missing {directory / name}; run `c2bridge mini build` to create it")
        model = cls(**json.loads((directory / CONFIG_NAME).read_text()))
        state = {k: v.float() for k, v in load_file(str(directory / WEIGHTS_NAME)).items()}
        model.load_state_dict(state)
        return model
