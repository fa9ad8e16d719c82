"""The mini decoder's own caption encoder: the miniature's stand-in for T5.

Shapes captions are token ids (``c2bridge.data.shapes``: per shape colour, kind, x-bin, y-bin, size-bin[, motion]).
``CaptionEmbedder`` turns them into one conditioning token per shape: the sum of its attribute embeddings
(a sum binds the attributes of one shape, so cross-attention can "AND" position and colour in one dot product);
colour/kind/motion from learned tables, x/y/size from Fourier features of the bin centre (smooth in position).
Absent shapes are masked out. Output: ``cond [B, MAX_SHAPES, cond_dim]`` + ``mask [B, MAX_SHAPES]`` bool, i.e.
exactly what ``LTXPipeline(prompt_embeds=..., prompt_attention_mask=...)`` takes.

Null conditioning (10% of decoder training, and the "zero conditioning" baseline) is all-zero tokens with an
all-ones mask; zero tokens give the same cross-attention output at any length, so ``zeros [B, n_tokens, cond_dim]``
from an adapter-shaped tensor means the same thing.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import nn

from c2bridge._io import atomic_path, atomic_write_json
from c2bridge.data import shapes as S

CONFIG_NAME = "captions_config.json"
_EXACT_NUMBERS = re.compile(r" \(x=[^)]*\)")


def vlm_caption_text(caption: str) -> str:
    """A shapes caption in the words the mini Qwen2.5-VL learns to say: size, colour, kind and the coarse place of
    each shape (``"a small red circle at the top left, a large blue square at the centre."``). The exact x/y/size
    numbers are dropped (the mini tokenizer has no numbers), so what the VLM is taught is semantic: which shapes,
    what colour, roughly where."""
    return _EXACT_NUMBERS.sub("", caption).replace(";", ",") + "."

WEIGHTS_NAME = "model.safetensors"


class CaptionEmbedder(nn.Module):
    def __init__(self, cond_dim: int = 64, tokens_per_shape: int = S.TOKENS_PER_SHAPE, max_shapes: int = S.MAX_SHAPES,
                 n_freqs: int = 4, init_std: float = 0.5):
        super().__init__()
        self.config = {"cond_dim": cond_dim, "tokens_per_shape": tokens_per_shape, "max_shapes": max_shapes,
                       "n_freqs": n_freqs, "init_std": init_std}
        self.cond_dim, self.tokens_per_shape, self.max_shapes = cond_dim, tokens_per_shape, max_shapes
        # categorical attributes: a learned table each
        self.colour = nn.Embedding(len(S.COLOURS), cond_dim)
        self.kind = nn.Embedding(len(S.KINDS), cond_dim)
        self.motion = nn.Embedding(len(S.MOTIONS), cond_dim)
        # ordinal attributes (x, y, size bins): Fourier features of the bin centre through a learned linear map,
        # so neighbouring bins get neighbouring embeddings (smooth response, nothing to learn per bin). Periods 2, 1,
        # 1/2, 1/4 of the side: enough to tell 32 bins apart, smooth enough for an adapter to produce.
        self.register_buffer("freqs", torch.pi * 2.0 ** torch.arange(n_freqs, dtype=torch.float32), persistent=False)
        self.x = nn.Linear(2 * n_freqs, cond_dim, bias=False)
        self.y = nn.Linear(2 * n_freqs, cond_dim, bias=False)
        self.size = nn.Linear(2 * n_freqs, cond_dim, bias=False)
        for table in (self.colour, self.kind, self.motion):
            nn.init.normal_(table.weight, std=init_std / tokens_per_shape ** 0.5)  # token rms ~ init_std
        for lin in (self.x, self.y, self.size):
            nn.init.normal_(lin.weight, std=init_std / (tokens_per_shape * n_freqs) ** 0.5)

    def _fourier(self, ids: torch.Tensor, offset: int, n_bins: int) -> torch.Tensor:
        centre = ((ids - offset).clamp(0, n_bins - 1).float() + 0.5) / n_bins  # [..] in (0, 1)
        angles = centre[..., None] * self.freqs  # [.., n_freqs]
        return torch.cat([angles.sin(), angles.cos()], -1)

    def forward(self, caption_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """caption_ids ``[B, L]`` long -> ``cond [B, max_shapes, cond_dim]``, ``mask [B, max_shapes]`` bool."""
        if caption_ids.ndim != 2 or caption_ids.shape[1] != self.max_shapes * self.tokens_per_shape:
            raise ValueError(f"caption_ids must be [B, {self.max_shapes * self.tokens_per_shape}] (shapes caption "
                             f"tokens), got {tuple(caption_ids.shape)}")
        ids = caption_ids.view(caption_ids.shape[0], self.max_shapes, self.tokens_per_shape)  # [B, K, T]
        off = S.FIELD_OFFSETS
        cond = (self.colour((ids[..., 0] - off["colour"]).clamp_min(0))
                + self.kind((ids[..., 1] - off["kind"]).clamp_min(0))
                + self.x(self._fourier(ids[..., 2], off["x"], S.POS_BINS))
                + self.y(self._fourier(ids[..., 3], off["y"], S.POS_BINS))
                + self.size(self._fourier(ids[..., 4], off["size"], S.SIZE_BINS)))  # [B, K, cond_dim]
        if self.tokens_per_shape > S.TOKENS_PER_SHAPE:  # clips: + motion
            cond = cond + self.motion((ids[..., 5] - off["motion"]).clamp_min(0))
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
