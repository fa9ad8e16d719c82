"""Resource planner for the real study: FLOPs, memory, wall time and GPU-hours per trial and per experiment.

Everything here is arithmetic on model configs (``c2bridge.full_dims``) and run recipes (plain dicts shaped like
``TrainConfig``); nothing imports torch. The formulas are written out in ``docs/planner.md`` and checked in
``tests/full/test_planner.py`` against FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode`` and against
the tensors autograd saves, on the real diffusers/transformers classes.

Conventions: a FLOP is one multiply or one add (a multiply-add = 2 FLOPs), as FlopCounterMode counts; only
matmuls, convolutions and attention are counted (norms, activations, RoPE, the optimizer step are < 1 % and are
left out); memory in bytes, reported in GiB.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from c2bridge.config import config_dir as config_root
from c2bridge.config import deep_merge, nested, read_mapping, resolve_budget
from c2bridge.datasets import dataset_item_shape
from c2bridge.full_dims import full_dims
from c2bridge.names import ADAPTER_KINDS, AUGMENTATIONS, PIXEL_TERMS, SCHEDULES, loss_terms

GIB = 1024**3

# ------------------------------------------------------------------------------------------------------- hardware


@dataclass(frozen=True)
class GPUSpec:
    name: str
    memory_gib: float  # device memory as the driver reports it
    peak_tflops: float  # dense bf16 tensor-core peak (no sparsity)
    description: str


GPUS: dict[str, GPUSpec] = {
    "a100-40": GPUSpec("a100-40", 40.0, 312.0, "NVIDIA A100 40GB (SXM), 312 TFLOP/s dense bf16"),
    "a100-80": GPUSpec("a100-80", 80.0, 312.0, "NVIDIA A100 80GB (SXM), 312 TFLOP/s dense bf16"),
    "h100": GPUSpec("h100", 79.6, 989.0, "NVIDIA H100 80GB SXM, 989 TFLOP/s dense bf16"),
}

# Model FLOPs utilisation: achieved / peak. 0.35 is a middle value for bf16 training of a frozen DiT with
# flash attention at 1-8k tokens per sample plus a conv3d VAE (which runs at lower utilisation than matmuls);
# measured MFU on the target GPU should replace it (`--mfu`).
DEFAULT_MFU = 0.35
RUNTIME_OVERHEAD_GIB = 1.5  # CUDA context, cuBLAS/cuDNN workspaces, allocator slack not covered below
ACTIVATION_SLACK = 1.10  # transient buffers during backward (grad of the largest activation, fragmentation)

# ------------------------------------------------------------------------------------------------ LTX transformer


def ltx_transformer_params(cfg: Mapping) -> int:
    """Exact parameter count of ``LTXVideoTransformer3DModel(**cfg)`` (default qk_norm, affine q/k norms)."""
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    dx = cfg.get("cross_attention_dim", d)
    cin, cout, cap = cfg["in_channels"], cfg.get("out_channels", cfg["in_channels"]), cfg["caption_channels"]
    attn1 = 4 * (d * d + d) + 2 * d  # q, k, v, out (+ bias) + RMSNorm(q), RMSNorm(k) weights
    attn2 = 2 * (d * d + d) + 2 * (dx * d + d) + 2 * d
    ff = (d * 4 * d + 4 * d) + (4 * d * d + d)
    block = attn1 + attn2 + ff + 6 * d  # + scale_shift_table
    time_embed = (256 * d + d) + (d * d + d) + (d * 6 * d + 6 * d)  # AdaLayerNormSingle
    caption = (cap * d + d) + (d * d + d)  # PixArtAlphaTextProjection
    return cfg["num_layers"] * block + (cin * d + d) + time_embed + caption + 2 * d + (d * cout + cout)


def ltx_transformer_flops(cfg: Mapping, tokens: int, text_tokens: int, batch: int = 1,
                          attention: str = "flash") -> dict[str, float]:
    """Forward and input-gradient backward FLOPs of the LTX transformer (all weights frozen, grad only to the
    conditioning). ``tokens`` S = latent frames x h x w (patch 1), ``text_tokens`` L = adapter output tokens.

    Backward: a frozen linear needs only dX = dY Wᵀ (1x its forward); attention needs dQ, dK, dV (2x with the math
    kernel's four matmuls, 2.5x with flash attention, which recomputes QKᵀ). Layer 0's self-attention and
    q-projection see only the noisy latents, which need no gradient, so autograd skips them; the math kernel also
    skips dQ in layer 0's cross-attention (1.5x); flash computes all three there.
    """
    if attention not in ("flash", "math"):
        raise ValueError(f"attention must be 'flash' or 'math', got {attention!r}")
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    dx = cfg.get("cross_attention_dim", d)
    cin, cout, cap = cfg["in_channels"], cfg.get("out_channels", cfg["in_channels"]), cfg["caption_channels"]
    n, s, l_ = cfg["num_layers"], tokens, text_tokens
    proj_in, proj_out = 2 * s * cin * d, 2 * s * d * cout
    caption = 2 * l_ * cap * d + 2 * l_ * d * d
    time_embed = 2 * (256 * d + d * d + 6 * d * d)
    self_lin, self_attn = 8 * s * d * d, 4 * s * s * d  # q, k, v, out; QKᵀ and PV
    cross_q_out, cross_kv, cross_attn = 4 * s * d * d, 4 * l_ * dx * d, 4 * s * l_ * d
    ff = 16 * s * d * d  # d -> 4d -> d
    layer_fwd = self_lin + self_attn + cross_q_out + cross_kv + cross_attn + ff
    forward = proj_in + proj_out + caption + time_embed + n * layer_fwd

    attn_bwd = 2.5 if attention == "flash" else 2.0
    first_cross = 2.5 if attention == "flash" else 1.5
    layer_bwd = self_lin + cross_q_out + cross_kv + ff + attn_bwd * (self_attn + cross_attn)
    layer0_bwd = (cross_q_out / 2) + cross_kv + ff + first_cross * cross_attn  # to_out only of q/out
    backward = caption + proj_out + (n - 1) * layer_bwd + (layer0_bwd if n >= 1 else 0)
    return {"forward": float(batch * forward), "backward": float(batch * backward)}


# Elements autograd keeps per layer for the input-gradient backward, measured on the class (tests check it):
# per latent token ~17 x d (q, k, v, attention outputs, norm inputs, modulated inputs, the 4d GELU input, ...),
# per text token ~3 x d (cross-attention k, v, and the projected captions).
LTX_SAVED_PER_TOKEN = 17.0
LTX_SAVED_PER_TEXT_TOKEN = 3.0


def ltx_transformer_activation_bytes(cfg: Mapping, tokens: int, text_tokens: int, batch: int = 1,
                                     bytes_per_element: int = 2) -> float:
    """Bytes saved for backward by the transformer (no gradient checkpointing; flash attention keeps no S x S
    matrix). An upper bound: layer 0 saves less (its self-attention needs no gradient)."""
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    per_layer = LTX_SAVED_PER_TOKEN * tokens * d + LTX_SAVED_PER_TEXT_TOKEN * text_tokens * d
    return float(batch * bytes_per_element * cfg["num_layers"] * per_layer)


# ------------------------------------------------------------------------------------------------------ LTX VAE


def vae_ratios(vae: Mapping) -> tuple[int, int]:
    """(spatial, temporal) compression of an ``AutoencoderKLLTXVideo`` config."""
    n = sum(bool(x) for x in vae["spatio_temporal_scaling"])
    return vae["patch_size"] * 2**n, vae.get("patch_size_t", 1) * 2**n


def latent_shape(vae: Mapping, num_frames: int, height: int, width: int) -> tuple[int, int, int]:
    """Pixel clip -> latent (frames, h, w); ValueError for sizes the VAE cannot take."""
    rs, rt = vae_ratios(vae)
    if height % rs or width % rs:
        raise ValueError(f"height/width {height}x{width} must be multiples of {rs} for this VAE")
    if num_frames < 1 or (num_frames - 1) % rt:
        raise ValueError(f"num_frames {num_frames} must be {rt}k+1 for this VAE")
    return (num_frames - 1) // rt + 1, height // rs, width // rs


class _Tally:
    """Walks a conv net, summing forward FLOPs, parameters and elements saved for backward."""

    def __init__(self) -> None:
        self.flops = 0.0
        self.params = 0
        self.saved = 0.0

    def conv(self, cin: int, cout: int, k: int, out_voxels: float, in_voxels_padded: float,
             bias: bool = True) -> None:
        self.flops += 2.0 * cin * cout * k**3 * out_voxels
        self.params += cin * cout * k**3 + (cout if bias else 0)
        self.saved += cin * in_voxels_padded

    def linear(self, fin: int, fout: int, rows: int = 1) -> None:
        self.flops += 2.0 * fin * fout * rows
        self.params += fin * fout + fout

    def time_embedder(self, dim: int) -> None:  # PixArtAlphaCombinedTimestepSizeEmbeddings(dim, 0): 256 -> dim -> dim
        self.linear(256, dim)
        self.linear(dim, dim)

    def resnet(self, cin: int, cout: int, t: int, hw: int, *, noise: bool = False, temb: bool = False) -> None:
        vox, pad = t * hw, (t + 2) * hw  # k=3 convs pad 2 frames (causal: both left; else one each side)
        self.saved += 2 * cin * vox  # norm1 input, SiLU input
        if temb:
            self.params += 4 * cin
            self.saved += 2 * cin * vox + 2 * cout * vox  # the two (1 + scale) modulations keep their inputs
        self.conv(cin, cout, 3, vox, pad)
        self.saved += 2 * cout * vox  # norm2 input, SiLU input
        self.conv(cout, cout, 3, vox, pad)
        if noise:
            self.params += 2 * cin
        if cin != cout:
            self.params += 2 * cin  # LayerNorm(cin) with bias
            self.saved += cin * vox  # its input
            self.conv(cin, cout, 1, vox, vox)


def vae_decoder_costs(vae: Mapping, latent_frames: int, h: int, w: int) -> dict[str, float]:
    """Decoder of ``AutoencoderKLLTXVideo`` on one latent ``[C, T, h, w]``: forward FLOPs (the input-gradient
    backward costs the same: every conv needs dX), parameters, and elements saved for backward."""
    bc = tuple(reversed(vae["decoder_block_out_channels"]))
    layers = tuple(reversed(vae["decoder_layers_per_block"]))
    scaling = tuple(reversed(vae["decoder_spatio_temporal_scaling"]))
    noise = tuple(reversed(vae.get("decoder_inject_noise", (False,) * (len(bc) + 1))))
    factor = tuple(reversed(vae.get("upsample_factor", (1,) * len(bc))))
    temb = bool(vae.get("timestep_conditioning", False))
    tally = _Tally()
    t, hw = latent_frames, h * w
    tally.conv(vae["latent_channels"], bc[0], 3, t * hw, (t + 2) * hw)
    c = bc[0]
    if temb:
        tally.time_embedder(c * 4)
    for _ in range(layers[0]):
        tally.resnet(c, c, t, hw, noise=noise[0], temb=temb)
    for i in range(len(bc)):
        in_c, out_c = c // factor[i], bc[i] // factor[i]
        if in_c != out_c:
            tally.resnet(in_c, out_c, t, hw, noise=noise[i + 1], temb=temb)
            c = out_c
        if temb:
            tally.time_embedder(in_c * 4)
        if scaling[i]:  # conv to 8x channels, then depth-to-space 2x2x2 (first frame dropped)
            tally.conv(c, c * 8 // factor[i], 3, t * hw, (t + 2) * hw)
            c = c // factor[i]
            t, hw = 2 * t - 1, hw * 4
        for _ in range(layers[i + 1]):
            tally.resnet(c, c, t, hw, noise=noise[i + 1], temb=temb)
    tally.saved += 2 * c * t * hw  # norm_out input, SiLU input
    if temb:
        tally.time_embedder(c * 2)
        tally.params += 2 * c + 1  # scale_shift_table, timestep_scale_multiplier
        tally.saved += c * t * hw
    p, pt = vae["patch_size"], vae.get("patch_size_t", 1)
    tally.conv(c, vae["out_channels"] * p * p * pt, 3, t * hw, (t + 2) * hw)
    return {"forward": tally.flops, "params": float(tally.params), "saved_elements": tally.saved}


def vae_encoder_costs(vae: Mapping, num_frames: int, height: int, width: int) -> dict[str, float]:
    """Encoder forward FLOPs and parameters (0.9.0-style ``LTXVideoDownBlock3D`` blocks), for caching latents."""
    if any(b != "LTXVideoDownBlock3D" for b in vae.get("down_block_types", ("LTXVideoDownBlock3D",))):
        raise ValueError("vae_encoder_costs models LTXVideoDownBlock3D encoders only (LTX-Video 0.9.0/0.9.1)")
    p, pt = vae["patch_size"], vae.get("patch_size_t", 1)
    bc, layers, scaling = vae["block_out_channels"], vae["layers_per_block"], vae["spatio_temporal_scaling"]
    tally = _Tally()
    t, hh, ww = num_frames // pt, height // p, width // p
    c = vae["in_channels"] * p * p * pt
    tally.conv(c, bc[0], 3, t * hh * ww, 0)
    c = bc[0]
    for i in range(len(bc)):
        out_c = bc[i + 1] if i + 1 < len(bc) else bc[i]
        for _ in range(layers[i]):
            tally.resnet(c, c, t, hh * ww)
        if scaling[i]:  # causal conv with stride 2 in time and space
            t, hh, ww = (t - 1) // 2 + 1, (hh - 1) // 2 + 1, (ww - 1) // 2 + 1
            tally.conv(c, c, 3, t * hh * ww, 0)
        if c != out_c:
            tally.resnet(c, out_c, t, hh * ww)
            c = out_c
    for _ in range(layers[-1]):
        tally.resnet(c, c, t, hh * ww)
    tally.conv(c, vae["latent_channels"] + 1, 3, t * hh * ww, 0)
    return {"forward": tally.flops, "params": float(tally.params)}


# ---------------------------------------------------------------------------------------------------------- LPIPS

# torchvision feature stacks LPIPS uses: ("conv", cin, cout, kernel, stride, pad) / ("pool", kernel, stride)
_LPIPS_NETS = {
    "alex": [("conv", 3, 64, 11, 4, 2), ("pool", 3, 2), ("conv", 64, 192, 5, 1, 2), ("pool", 3, 2),
             ("conv", 192, 384, 3, 1, 1), ("conv", 384, 256, 3, 1, 1), ("conv", 256, 256, 3, 1, 1)],
    "vgg": [("conv", 3, 64, 3, 1, 1), ("conv", 64, 64, 3, 1, 1), ("pool", 2, 2),
            ("conv", 64, 128, 3, 1, 1), ("conv", 128, 128, 3, 1, 1), ("pool", 2, 2),
            ("conv", 128, 256, 3, 1, 1), ("conv", 256, 256, 3, 1, 1), ("conv", 256, 256, 3, 1, 1), ("pool", 2, 2),
            ("conv", 256, 512, 3, 1, 1), ("conv", 512, 512, 3, 1, 1), ("conv", 512, 512, 3, 1, 1), ("pool", 2, 2),
            ("conv", 512, 512, 3, 1, 1), ("conv", 512, 512, 3, 1, 1), ("conv", 512, 512, 3, 1, 1)],
}
_LPIPS_TAPS = {"alex": {0, 2, 4, 5, 6}, "vgg": {1, 4, 8, 12, 16}}  # layers whose (ReLU) output feeds a lin head


def lpips_costs(net: str, height: int, width: int) -> dict[str, float]:
    """One LPIPS distance between two images: forward FLOPs (backbone on both images + the 1x1 lin heads),
    input-gradient backward FLOPs (backbone and heads on the reconstructed image only), backbone parameters,
    and elements saved for backward."""
    if net not in _LPIPS_NETS:
        raise ValueError(f"unknown LPIPS net {net!r}; expected one of {sorted(_LPIPS_NETS)}")
    h, w = height, width
    backbone = heads = 0.0
    params = 0
    saved = 2.0 * 3 * h * w  # the scaled input image (twice: [-1, 1] shift and LPIPS' ScalingLayer)
    channels = 3
    for i, layer in enumerate(_LPIPS_NETS[net]):
        if layer[0] == "pool":
            k, s = layer[1], layer[2]
            h, w = (h - k) // s + 1, (w - k) // s + 1
            saved += 2.0 * channels * h * w  # int64 argmax indices (= 2 elements of 4 bytes)
            continue
        _, cin, cout, k, s, p = layer
        ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        backbone += 2.0 * cin * cout * k * k * ho * wo
        params += cin * cout * k * k + cout
        saved += cout * ho * wo  # in-place ReLU output (= the next conv's saved input)
        h, w, channels = ho, wo, cout
        if i in _LPIPS_TAPS[net]:
            heads += 2.0 * cout * h * w
            saved += 2.0 * cout * h * w  # normalised features and their squared difference
    return {"forward": 2 * backbone + heads, "backward": backbone + heads, "params": float(params),
            "saved_elements": saved}


# --------------------------------------------------------------------------------------------------- encoders


def dinov2_flops(cfg: Mapping, image_size: int, batch: int = 1) -> float:
    """Forward FLOPs of ``Dinov2Model`` at ``image_size`` px (CLS + (size/patch)^2 tokens)."""
    d, p = cfg["hidden_size"], cfg["patch_size"]
    patches = (image_size // p) ** 2
    n = patches + 1
    embed = 2.0 * cfg.get("num_channels", 3) * p * p * d * patches
    mlp = cfg.get("mlp_ratio", 4) * d
    layer = 2.0 * n * d * 3 * d + 2.0 * n * d * d + 4.0 * n * n * d + 4.0 * n * d * mlp
    return batch * (embed + cfg["num_hidden_layers"] * layer)


def _qwen_windows(grid_h: int, grid_w: int, vision: Mapping) -> list[int]:
    """Patch counts of the attention windows Qwen2.5-VL's vision tower uses on one image's patch grid."""
    m = vision["spatial_merge_size"]
    side = vision["window_size"] // m // vision["patch_size"]  # window side in merged cells
    gh, gw = grid_h // m, grid_w // m
    sizes = []
    for r in range(0, gh, side):
        for c in range(0, gw, side):
            sizes.append(min(side, gh - r) * min(side, gw - c) * m * m)
    return sizes


def qwen_vl_flops(text: Mapping, vision: Mapping, image_size: int, prompt_tokens: int, batch: int = 1,
                  lm_head: bool = False) -> dict[str, float]:
    """Forward FLOPs of Qwen2.5-VL on one square image + ``prompt_tokens`` text tokens (vision tower incl. window
    attention and the patch merger; the language model over image + prompt tokens; lm_head only if asked)."""
    p, m, tp = vision["patch_size"], vision["spatial_merge_size"], vision["temporal_patch_size"]
    g = image_size // p
    if g % m:
        raise ValueError(f"image_size {image_size} must be a multiple of patch*merge = {p * m}")
    n = g * g  # patches (an image is one temporal patch of 2 copies)
    hv, iv = vision["hidden_size"], vision["intermediate_size"]
    embed = 2.0 * vision.get("in_channels", 3) * tp * p * p * hv * n
    lin = 2.0 * n * hv * 3 * hv + 2.0 * n * hv * hv + 3 * 2.0 * n * hv * iv
    full = set(vision.get("fullatt_block_indexes", ()))
    windows = _qwen_windows(g, g, vision)
    attn_window = sum(4.0 * k * k * hv for k in windows)
    attn_full = 4.0 * n * n * hv
    vis = embed + vision["depth"] * lin + sum(attn_full if i in full else attn_window for i in range(vision["depth"]))
    merged, wide = n // (m * m), hv * m * m
    vis += 2.0 * merged * wide * wide + 2.0 * merged * wide * vision["out_hidden_size"]
    t = merged + prompt_tokens
    h, inter = text["hidden_size"], text["intermediate_size"]
    kv = text["num_key_value_heads"] * (h // text["num_attention_heads"])
    layer = 2.0 * t * h * h * 2 + 2.0 * t * h * kv * 2 + 3 * 2.0 * t * h * inter + 4.0 * t * t * h
    lang = text["num_hidden_layers"] * layer + (2.0 * t * h * text["vocab_size"] if lm_head else 0.0)
    return {"vision": batch * vis, "text": batch * lang, "forward": batch * (vis + lang), "tokens": t}


def qwen_vl_params(text: Mapping, vision: Mapping) -> int:
    """Parameter count of ``Qwen2_5_VLForConditionalGeneration`` (untied lm_head, as the 7B)."""
    h, inter, v = text["hidden_size"], text["intermediate_size"], text["vocab_size"]
    kv = text["num_key_value_heads"] * (h // text["num_attention_heads"])
    layer = (h * h + h) + 2 * (h * kv + kv) + h * h + 3 * h * inter + 2 * h
    lang = v * h + text["num_hidden_layers"] * layer + h + v * h
    hv, iv, p, tp, m = (vision[k] for k in ("hidden_size", "intermediate_size", "patch_size", "temporal_patch_size",
                                            "spatial_merge_size"))
    block = (hv * 3 * hv + 3 * hv) + (hv * hv + hv) + 3 * hv * iv + 2 * iv + hv + 2 * hv
    wide = hv * m * m
    vis = 3 * tp * p * p * hv + vision["depth"] * block + hv + (wide * wide + wide) + (
        wide * vision["out_hidden_size"] + vision["out_hidden_size"])
    return lang + vis


def dinov2_params(cfg: Mapping) -> int:
    d, p = cfg["hidden_size"], cfg["patch_size"]
    mlp = cfg.get("mlp_ratio", 4) * d
    layer = (3 * (d * d + d) + (d * d + d)) + (d * mlp + mlp + mlp * d + d) + 4 * d + 2 * d  # + norms, layerscales
    pos = ((cfg.get("image_size", 518) // p) ** 2 + 1) * d
    return 3 * p * p * d + d + 2 * d + pos + cfg["num_hidden_layers"] * layer + 2 * d  # + cls, mask token, final LN


# ---------------------------------------------------------------------------------------------------- adapters


def adapter_flops(params: float, input_tokens: int, batch: int = 1) -> dict[str, float]:
    """Upper bound for any adapter kind: every weight touches every input token once (2·N·T forward); the
    backward computes weight and input gradients (2x forward)."""
    fwd = 2.0 * params * input_tokens * batch
    return {"forward": fwd, "backward": 2 * fwd}


ADAPTER_BYTES_PER_PARAM = 18  # fp32 weight + fp32 grad + AdamW m, v (fp32) + a bf16 autocast copy


# -------------------------------------------------------------------------------------------------------- recipes

# The plan's recipe (section 5, E2.1 "Training") and data (section 4.4). `configs/presets/full.yaml` and the
# `configs/experiments/*.full.yaml` files override these when they exist.
PLAN_RECIPE: dict = {
    "adapter": {"kind": "query", "budget": "10m"},
    "optim": {"batch_size": 8, "grad_accum": 4, "epochs": 50.0, "max_steps": None},
    "loss": {"name": "lpips_l2", "perceptual": "lpips_alex"},
    "eval": {"every_steps": 500, "max_batches": None, "n_samples": 0, "sample_steps": 20, "guidance": 1.0},
}
PLAN_DATA: dict = {
    "train": {"shapes": {"n": 10000, "frames": 1}, "coco": {"n": 5000, "frames": 1}, "ssv2": {"n": 5000, "frames": 25}},
    "val": {"shapes": {"n": 1000, "frames": 1}, "coco": {"n": 500, "frames": 1}},
    "test": {"shapes": {"n": 500, "frames": 1}, "coco": {"n": 500, "frames": 1}, "ssv2": {"n": 200, "frames": 25}},
}
# What feeds the adapter: Qwen2.5-VL hidden states of one image + prompt (448 px -> 256 image tokens) and
# DINOv2 patch tokens; a clip is encoded from one frame (the cache stores one feature set per sample).
PLAN_ENCODING: dict = {"vlm_image_size": 448, "prompt_tokens": 32, "cache_latents": True}
PLAN_GPU_HOURS = {"e2.1": 80.0, "e2.2": 60.0, "e2.3": 50.0, "e2.4": 30.0}  # section 11.1 (A100-80GB)

_MS_LPIPS_AREA = 1 + 1 / 4 + 1 / 16  # full, 1/2 and 1/4 resolution
_DECODE_ONLY = {"loss": {"name": "flow", "weights": {"l2": 1.0}}}  # sampling: one decode per sample, no LPIPS


# The plan's own experiment designs (section 5), in the experiment-config schema: used for an experiment whose
# `configs/experiments/<stem>.<preset>.yaml` does not exist; expanded by the experiment's own `trials()`.
PLAN_EXPERIMENTS: dict[str, dict] = {
    "e2.1": {"kind": "query", "budgets": ["5m", "10m", "20m", "50m", "100m"], "seeds": [0]},
    "e2.2": {"kinds": list(ADAPTER_KINDS), "budget": "10m", "seeds": [0]},
    "e2.3": {"budget": "10m", "seeds": [0], "combine": True, "grids": {
        "losses": {"arms": {name: {"loss.name": name} for name in ("lpips", "lpips_l2", "lpips_ssim", "ms_lpips")}},
        "schedules": {"arms": {name: {"schedule.name": name} for name in SCHEDULES}},
        "augmentations": {"arms": {name: {"data.augment": name} for name in AUGMENTATIONS}},
        "regularization": {"arms": {"dropout_0.1": {"adapter.dropout": 0.1}, "dropout_0.2": {"adapter.dropout": 0.2},
                                    "weight_decay_1e-4": {"optim.weight_decay": 1e-4},
                                    "weight_decay_1e-3": {"optim.weight_decay": 1e-3}}},
    }},
    # the final and reference adapters sample the whole test set with guidance 3 ("test": the plan's test data)
    "e2.4": {"small_budget": "10m", "reference_budget": "100m", "seeds": [0], "eval_split": "val",
             "recipe": {"eval": {"n_samples": "test", "guidance": 3.0}}},
}


def trial_overrides(specs: list, cfg: Mapping, preset) -> list[dict]:
    """An experiment's trial list (``TrialSpec``s from its ``trials()``) -> one recipe override per trial: what
    the cost model reads (adapter, seed, recipe patch, the caches it trains on, the evaluations after training).

    Trials decided at run time (upstream winners, E2.3's combination) are costed as the documented assumption;
    they are shared only with trials resting on the same assumption.
    """
    recipe = nested(cfg.get("recipe") or {})
    caches = cfg.get("caches") or {}

    def cache_data(name: str | None) -> dict | None:
        spec = caches.get(name) if name else None
        if not isinstance(spec, Mapping) or not spec.get("limit"):
            return None
        frames = dataset_item_shape(preset, spec.get("dataset", name))[0]
        return {spec.get("dataset", name): {"n": int(spec["limit"]), "frames": frames}}

    ev = cfg.get("eval") or {}

    def post_eval(splits: Mapping, n_samples: int | None = None) -> dict | None:
        n_samples = n_samples or ev.get("n_samples")  # an evaluate trial may ask for more (the sequential design)
        if not n_samples:  # the runner's sampled evaluation after training, on each eval split
            return None
        out = {}
        for split, cache_name in splits.items():
            d = cache_data(cache_name)
            if d:
                (_, spec), = d.items()
                out[split] = {"n": min(int(n_samples), spec["n"]), "frames": spec["frames"]}
        return {"splits": out, "sample_steps": int(ev.get("sample_steps", 20)),
                "guidance": float(ev.get("guidance", 1.0))}

    by_label = {s.label: s for s in specs}
    out: list[dict] = []
    for spec in specs:
        trained = by_label[spec.of] if spec.kind == "evaluate" else spec
        t = deep_merge(recipe, {"adapter": {"kind": trained.adapter or cfg.get("kind", "query"),
                                            "budget": trained.budget or "10m"}, "seed": int(trained.seed)})
        if spec.kind == "train":
            t = deep_merge(t, nested(spec.patch))
            train_cache = spec.train_cache or cfg.get("train_cache")
            train, val = cache_data(train_cache), cache_data(cfg.get("val_cache"))
            mix = [] if spec.train_cache else (cfg.get("train_mix") or [])
            if mix:  # a mixed training set: each cache's items, and its share of the micro-batches (its weight)
                train, parts = {}, [(e, cache_data(e.get("cache")) or {}) for e in mix]
                datasets = [name for _, d in parts for name in d]
                for entry, d in parts:
                    for name, item in d.items():  # two caches of one dataset: named by their caches
                        train[name if datasets.count(name) == 1 else str(entry["cache"])] = {
                            **item, "weight": float(entry["weight"])}
                train_cache = "+".join(str(e.get("cache")) for e in mix)
            if train:
                t["_data"] = {"train": train, "val": val or {}}
                t["_train_cache"] = train_cache  # a different cache is a different trial
            pe = post_eval(ev.get("splits") or {})
        else:  # evaluation only: the sampled metrics on its splits, no training
            t["_eval_only"] = spec.kind
            if spec.reference:
                t["_reference"] = spec.reference  # caption / zero / untrained: different trials
            pe = post_eval(spec.splits if spec.splits is not None else (ev.get("splits") or {}), spec.eval_samples)
        if pe:
            t["_post_eval"] = pe
        if spec.stage > 1:
            t["_runtime_choice"] = True  # decided from this experiment's earlier results: never shared
        elif spec.assumption:
            t["_assumption"] = spec.assumption  # shared only with trials resting on the same assumption
        t["name"] = spec.label
        out.append(t)
    return out


def load_sources(preset: str = "full", config_dir: str | Path | None = None) -> dict:
    """The recipe and trial lists the planner uses: ``configs/presets/<preset>.yaml`` and every registered
    experiment's ``<stem>.<preset>.yaml`` (through the runner's loader, expanded by the experiment's own
    ``trials()``) when present, else the plan's numbers (``PLAN_RECIPE``, ``PLAN_EXPERIMENTS``).

    Returns ``{"recipe", "data", "encoding", "experiments": {name: [trial overrides]}, "sources": {what: file}}``.
    """
    from c2bridge.experiments import registry
    from c2bridge.presets import get_preset

    p = get_preset(preset)
    root = Path(config_dir) if config_dir else config_root()
    recipe, sources = copy.deepcopy(PLAN_RECIPE), {"recipe": "plan"}
    preset_file = root / "presets" / f"{preset}.yaml"
    if preset_file.is_file():
        recipe = deep_merge(recipe, read_mapping(preset_file))
        sources["recipe"] = str(preset_file)
    experiments: dict[str, list[dict]] = {}
    caches: dict[str, dict] = {}
    for name, module in registry.experiments().items():
        path = registry.config_path(name, preset, root / "experiments")
        if path.is_file():
            cfg = registry.load_experiment_config(name, preset, directory=root / "experiments")
            sources[name] = str(path)
        elif name in PLAN_EXPERIMENTS:
            cfg = copy.deepcopy(PLAN_EXPERIMENTS[name])
            sources[name] = "plan"
        else:
            continue
        experiments[name] = trial_overrides(module.trials(cfg, p, {}), cfg, p)
        for cache_name, spec in (cfg.get("caches") or {}).items():
            if isinstance(spec, Mapping) and spec.get("limit"):
                frames = dataset_item_shape(p, spec.get("dataset", cache_name))[0]
                caches[cache_name] = {"n": int(spec["limit"]) * int(spec.get("views", 1)), "frames": frames}
    data = copy.deepcopy(PLAN_DATA)
    if caches:  # what the study actually extracts (each named cache once)
        data["caches"] = caches
    return {"recipe": recipe, "data": data, "encoding": copy.deepcopy(PLAN_ENCODING),
            "experiments": experiments, "sources": sources}


def estimate_trial_lists(lists: Mapping[str, tuple[Mapping, list]], *, preset: str = "full", gpu: str = "a100-80",
                         mfu: float = DEFAULT_MFU) -> dict[str, list["TrialEstimate"]]:
    """The estimates of given trial lists (``{experiment: (config, [TrialSpec])}``, e.g. the runner's), in order,
    with trials that share a resolved recipe costed once (what ``c2bridge run --dry-run`` prints)."""
    from c2bridge.presets import get_preset

    p = get_preset(preset)
    src = load_sources(preset)
    src["experiments"] = {n: trial_overrides(specs, cfg, p) for n, (cfg, specs) in lists.items()}
    result = plan(preset=preset, experiments=list(lists), gpu=gpu, mfu=mfu, sources=src)
    out: dict[str, list] = {n: [] for n in lists}
    for t in result.trials:
        out[t.experiment].append(t)
    return out


# ------------------------------------------------------------------------------------------------------ estimates


@dataclass
class TrialEstimate:
    experiment: str
    name: str  # the trial's label in its experiment (the runner's)
    kind: str  # train | reference | evaluate (evaluation only: no training steps)
    adapter_kind: str
    adapter_params: float
    batch_size: int
    grad_accum: int
    optimizer_steps: int
    micro_batches: int
    step_tflops: dict  # dataset -> TFLOPs of one optimizer step made of that dataset's micro-batches
    flops: dict  # "train", "eval", "sample", "total" (FLOPs)
    memory_gib: dict  # breakdown of the peak (worst dataset)
    peak_gib: float
    worst_dataset: str
    hours: float  # on the chosen GPU (0 when shared)
    fits: bool
    max_batch: int = 0  # largest micro-batch whose peak fits the GPU (0: not even 1)
    shared_with: str | None = None  # "e2.1/query-10m": the same resolved recipe runs once (the runner keys trials)
    # what it trains on: dataset -> {"n": items, "frames": per item (1 = image), "share": of the micro-batches}
    train_data: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        from c2bridge._io import to_plain

        return to_plain(self)


@dataclass
class PlanResult:
    preset: str
    gpu: GPUSpec
    mfu: float
    trials: list[TrialEstimate]
    cache: dict  # the one-off feature/latent extraction
    experiments: dict = field(default_factory=dict)  # name -> {"gpu_hours", "plan_gpu_hours", "trials", "not_fitting"}
    sources: dict = field(default_factory=dict)

    @property
    def total_hours(self) -> float:
        return sum(e["gpu_hours"] for e in self.experiments.values()) + self.cache["hours"]

    def to_dict(self) -> dict:
        from c2bridge._io import to_plain

        return {"preset": self.preset, "gpu": to_plain(self.gpu), "mfu": self.mfu, "cache": self.cache,
                "experiments": self.experiments, "total_gpu_hours": self.total_hours,
                "plan_total_gpu_hours": sum(PLAN_GPU_HOURS.values()), "sources": self.sources,
                "trials": [t.to_dict() for t in self.trials]}




def _stages(loss: Mapping) -> tuple[bool, str | None]:
    """Which costly stages a step of this loss runs: (decode the one-step estimate?, perceptual network:
    None / "single" / "multiscale"), from the named loss's terms plus ``loss.weights``."""
    terms = {k: w for k, w in loss_terms(loss.get("name", "lpips_l2"), loss.get("weights")).items() if float(w) > 0}
    decode = any(t in PIXEL_TERMS for t in terms)
    perceptual = "multiscale" if "ms_lpips" in terms else "single" if "lpips" in terms else None
    return decode, perceptual


def _perceptual_net(loss: Mapping) -> str:
    net = str(loss.get("perceptual", "lpips_alex"))
    return net.removeprefix("lpips_")


def sample_costs(dims: Mapping, preset, frames: int, text_tokens: int, recipe: Mapping, encoding: Mapping,
                 adapter_params: float) -> dict[str, Any]:
    """Per-sample FLOPs of each stage and per-sample saved bytes for one training sample of `frames` frames."""
    t, h, w = latent_shape(dims["ltx_vae"], frames, preset.image_size, preset.image_size)
    tokens = t * h * w
    tr = ltx_transformer_flops(dims["ltx_transformer"], tokens, text_tokens)
    decode, perceptual = _stages(recipe.get("loss", {}))
    dec = vae_decoder_costs(dims["ltx_vae"], t, h, w) if decode else {"forward": 0.0, "saved_elements": 0.0}
    if perceptual:
        lp = lpips_costs(_perceptual_net(recipe["loss"]), preset.image_size, preset.image_size)
        scale = _MS_LPIPS_AREA if perceptual == "multiscale" else 1.0
        lp = {k: v * scale * frames for k, v in lp.items() if k != "params"}
    else:
        lp = {"forward": 0.0, "backward": 0.0, "saved_elements": 0.0}
    in_tokens = encoding["vlm_tokens"] + preset.n_patches
    ad = adapter_flops(adapter_params, in_tokens)
    train = {
        "adapter": ad["forward"] + ad["backward"],
        "transformer": tr["forward"] + tr["backward"],
        "vae_decode": 2 * dec["forward"],
        "perceptual": lp["forward"] + lp["backward"],
    }
    evaluation = tr["forward"] + dec["forward"] + lp["forward"] + ad["forward"]
    bpe = 2  # bf16 activations
    act = {
        "transformer": ltx_transformer_activation_bytes(dims["ltx_transformer"], tokens, text_tokens,
                                                        bytes_per_element=bpe),
        "vae_decode": dec["saved_elements"] * bpe,
        "perceptual": lp["saved_elements"] * bpe,
        "features": (encoding["vlm_tokens"] * preset.vlm_dim + preset.n_patches * preset.dino_dim) * bpe
        + 4.0 * frames * preset.image_size**2 * 3,  # adapter inputs + fp32 target pixels
    }
    return {"tokens": tokens, "latent": (t, h, w), "train": train, "eval": evaluation,
            "transformer_forward": tr["forward"], "decode_forward": dec["forward"], "activation_bytes": act}


def estimate_trial(experiment: str, overrides: Mapping, *, preset: str = "full", gpu: str = "a100-80",
                   mfu: float = DEFAULT_MFU, recipe: Mapping | None = None, data: Mapping | None = None,
                   encoding: Mapping | None = None, dims: Mapping | None = None) -> TrialEstimate:
    """One trial: its recipe = ``recipe`` (default: the plan's) deep-merged with ``overrides``."""
    from c2bridge.presets import get_preset

    if gpu not in GPUS:
        raise ValueError(f"unknown GPU {gpu!r}; expected one of {sorted(GPUS)}")
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu must be in (0, 1], got {mfu}")
    spec, p = GPUS[gpu], get_preset(preset)
    dims = dims or full_dims()
    data = data or PLAN_DATA
    enc = dict(encoding or PLAN_ENCODING)
    qv = dims["qwen_vision"]
    enc.setdefault("vlm_tokens", (enc["vlm_image_size"] // (qv["patch_size"] * qv["spatial_merge_size"])) ** 2
                   + enc["prompt_tokens"])
    overrides = dict(overrides)
    data = overrides.pop("_data", None) or data
    post_eval = overrides.pop("_post_eval", None)
    eval_only = overrides.pop("_eval_only", None)  # "reference" / "evaluate": sampled metrics only, no training
    for internal in ("_train_cache", "_runtime_choice", "_assumption", "_reference"):
        overrides.pop(internal, None)
    r = deep_merge(dict(recipe or PLAN_RECIPE), overrides)
    o, ev = r["optim"], r.get("eval", {})
    batch, accum = int(o["batch_size"]), int(o["grad_accum"])
    if batch < 1 or accum < 1:
        raise ValueError(f"batch_size and grad_accum must be >= 1, got {batch} and {accum}")
    n_params = resolve_budget(r["adapter"].get("budget", "10m"), p)
    text_tokens = p.n_tokens

    per_sample = {name: sample_costs(dims, p, d["frames"], text_tokens, r, enc, n_params)
                  for name, d in data["train"].items()}
    micro_per_epoch = {name: math.ceil(d["n"] / batch) for name, d in data["train"].items()}
    total_micro_epoch = sum(micro_per_epoch.values())
    # each dataset's share of the micro-batches: its mix weight when the trial trains on a weighted mix (each
    # micro-batch from one dataset), else its size
    weights = {name: float(d.get("weight", micro_per_epoch[name])) for name, d in data["train"].items()}
    share = {name: w / sum(weights.values()) for name, w in weights.items()}
    if eval_only:
        micro = 0
    elif o.get("max_steps"):
        micro = int(o["max_steps"]) * accum
    else:
        micro = math.ceil(float(o["epochs"]) * total_micro_epoch)
    steps = math.ceil(micro / accum)
    train_flops = micro * sum(share[n] * batch * sum(c["train"].values()) for n, c in per_sample.items())

    # validation loss every eval.every_steps (and at the end), forward only
    val = data.get("val", {})
    val_costs = {name: sample_costs(dims, p, d["frames"], text_tokens, r, enc, n_params) for name, d in val.items()}
    val_samples = {name: d["n"] for name, d in val.items()}
    if ev.get("max_batches"):
        cap = int(ev["max_batches"]) * batch
        total = sum(val_samples.values()) or 1
        val_samples = {k: min(v, cap * v / total) for k, v in val_samples.items()}
    n_evals = 0 if eval_only else (steps // int(ev["every_steps"]) if int(ev.get("every_steps", 0) or 0) > 0 else 0) + 1
    eval_flops = n_evals * sum(val_samples[n] * val_costs[n]["eval"] for n in val_samples)

    # sampled metrics at the end: denoising steps (x2 with CFG) + one decode per sample
    n_samples = 0 if eval_only else (ev.get("n_samples", 0) or 0)
    sample_set = data.get("test", {}) if n_samples == "test" else {"val": {"n": int(n_samples), "frames": 1}}
    cfg_mult = 2 if float(ev.get("guidance", 1.0)) > 1 else 1
    sample_flops = 0.0
    for d in sample_set.values():
        if not d["n"]:
            continue
        c = sample_costs(dims, p, d["frames"], text_tokens, _DECODE_ONLY, enc, n_params)
        sample_flops += d["n"] * (int(ev.get("sample_steps", 20)) * cfg_mult * c["transformer_forward"]
                                  + c["decode_forward"])

    if post_eval:  # the experiment runner's evaluation after training (c2bridge.experiments.backend)
        pe_cfg = 2 if post_eval["guidance"] > 1 else 1
        for d in post_eval["splits"].values():
            c = sample_costs(dims, p, d["frames"], text_tokens, _DECODE_ONLY, enc, n_params)
            sample_flops += d["n"] * (post_eval["sample_steps"] * pe_cfg * c["transformer_forward"]
                                      + c["decode_forward"])

    total = train_flops + eval_flops + sample_flops
    hours = total / (spec.peak_tflops * 1e12 * mfu) / 3600

    decode, perceptual = _stages(r.get("loss", {}))
    if eval_only:  # sampling under no_grad: the frozen weights, the adapter, a batch of latents; no optimizer
        weights = {"transformer_bf16": ltx_transformer_params(dims["ltx_transformer"]) * 2,
                   "vae_decoder_bf16": vae_decoder_costs(dims["ltx_vae"], 1, 1, 1)["params"] * 2,
                   "adapter_fp32": n_params * 4}
        memory = {k: v / GIB for k, v in weights.items()}
        memory["runtime_overhead"] = RUNTIME_OVERHEAD_GIB
        peak, worst, max_batch, step_tflops = sum(memory.values()), "-", batch, {}
    else:
        weights = {
            "transformer_bf16": ltx_transformer_params(dims["ltx_transformer"]) * 2,
            "vae_decoder_bf16": vae_decoder_costs(dims["ltx_vae"], 1, 1, 1)["params"] * 2 if decode else 0.0,
            "perceptual_fp32": lpips_costs(_perceptual_net(r["loss"]), 64, 64)["params"] * 4 if perceptual else 0.0,
            "adapter_and_adamw": n_params * ADAPTER_BYTES_PER_PARAM,
        }
        worst, worst_act = "", -1.0
        for name, c in per_sample.items():
            act = batch * sum(c["activation_bytes"].values())
            if act > worst_act:
                worst, worst_act = name, act
        act_parts = {f"activations_{k}": batch * v * ACTIVATION_SLACK
                     for k, v in per_sample[worst]["activation_bytes"].items()}
        memory = {k: v / GIB for k, v in {**weights, **act_parts}.items()}
        memory["runtime_overhead"] = RUNTIME_OVERHEAD_GIB
        peak = sum(memory.values())
        fixed = sum(v for k, v in memory.items() if not k.startswith("activations_"))
        per_sample_gib = sum(per_sample[worst]["activation_bytes"].values()) * ACTIVATION_SLACK / GIB
        max_batch = max(0, int((spec.memory_gib - fixed) // per_sample_gib))
        step_tflops = {n: accum * batch * sum(c["train"].values()) / 1e12 for n, c in per_sample.items()}
    return TrialEstimate(
        experiment=experiment, name=str(overrides.get("name", "trial")), kind=str(eval_only or "train"),
        adapter_kind=str(r["adapter"].get("kind")),
        adapter_params=n_params, batch_size=batch, grad_accum=accum, optimizer_steps=steps, micro_batches=micro,
        step_tflops=step_tflops,
        flops={"train": train_flops, "eval": eval_flops, "sample": sample_flops, "total": total},
        memory_gib=memory, peak_gib=peak, worst_dataset=worst, hours=hours, fits=peak <= spec.memory_gib,
        max_batch=max_batch,
        train_data={} if eval_only else {n: {"n": int(d["n"]), "frames": int(d["frames"]), "share": share[n]}
                                         for n, d in data["train"].items()},
    )


def estimate_cache(*, preset: str = "full", gpu: str = "a100-80", mfu: float = DEFAULT_MFU,
                   data: Mapping | None = None, encoding: Mapping | None = None, dims: Mapping | None = None) -> dict:
    """The one-off extraction: Qwen2.5-VL + DINOv2 on one image per sample, and the VAE encoder on every target
    (latents cached) for train + val + test. Forward only, so the peak is the encoder weights + a small batch."""
    from c2bridge.presets import get_preset

    spec, p = GPUS[gpu], get_preset(preset)
    dims = dims or full_dims()
    data = data or PLAN_DATA
    enc = encoding or PLAN_ENCODING
    per_image = qwen_vl_flops(dims["qwen_text"], dims["qwen_vision"], enc["vlm_image_size"], enc["prompt_tokens"])
    per_image = per_image["forward"] + dinov2_flops(dims["dinov2"], p.encoder_image_size)
    total, samples = 0.0, 0
    splits = [data["caches"]] if "caches" in data else [v for k, v in data.items() if k in ("train", "val", "test")]
    for split in splits:
        for d in split.values():
            samples += d["n"]
            lat = vae_encoder_costs(dims["ltx_vae"], d["frames"], p.image_size, p.image_size)["forward"] \
                if enc.get("cache_latents", True) else 0.0
            total += d["n"] * (per_image + lat)
    weights = (qwen_vl_params(dims["qwen_text"], dims["qwen_vision"]) + dinov2_params(dims["dinov2"])) * 2
    if enc.get("cache_latents", True):
        weights += vae_encoder_costs(dims["ltx_vae"], 1, 32, 32)["params"] * 2
    peak = weights / GIB + RUNTIME_OVERHEAD_GIB + 4.0  # + activations of a batch of 8 (forward only, no_grad)
    return {"samples": samples, "flops": total, "hours": total / (spec.peak_tflops * 1e12 * mfu) / 3600,
            "peak_gib": peak, "fits": peak <= spec.memory_gib}


def _check_recipe_overrides(overrides: Mapping) -> None:
    """``--set`` keys are TrainConfig keys: a typo or a bad value is one ValueError (as for ``recipe.*`` in a run)."""
    from c2bridge.config import set_dataclass_key
    from c2bridge.recipe import TrainConfig

    errors: list[str] = []
    for key, value in overrides.items():
        set_dataclass_key(TrainConfig(), key, value, errors)
    if errors:
        raise ValueError("bad --set override(s): " + "; ".join(errors))


def plan(preset: str = "full", experiments: Iterable[str] | None = None, gpu: str = "a100-80",
         mfu: float = DEFAULT_MFU, sources: Mapping | None = None, overrides: Mapping | None = None) -> PlanResult:
    """Estimate every trial of the chosen experiments (default all four) and sum GPU-hours per experiment.

    ``sources``: ``load_sources()``'s dict (recipe, data, encoding, experiments); default: read the configs.
    ``overrides``: dotted recipe keys applied to every trial, e.g. ``{"optim.batch_size": 2, "optim.grad_accum": 16}``.
    """
    src = dict(sources) if sources is not None else load_sources(preset)
    if overrides:
        _check_recipe_overrides(overrides)
        src["recipe"] = deep_merge(src["recipe"], nested(overrides))
        src["experiments"] = {n: [deep_merge(t, nested(overrides)) for t in ts]
                              for n, ts in src["experiments"].items()}
    all_exps = src["experiments"]
    names = list(experiments) if experiments else list(all_exps)
    for n in names:
        if n not in all_exps:
            raise ValueError(f"unknown experiment {n!r}; expected one of {sorted(all_exps)}")
    trials: list[TrialEstimate] = []
    summary: dict[str, dict] = {}
    from c2bridge._io import stable_hash

    seen: dict[str, str] = {}
    for n in names:
        ests = []
        for t in all_exps[n]:
            e = estimate_trial(n, t, preset=preset, gpu=gpu, mfu=mfu, recipe=src["recipe"], data=src["data"],
                               encoding=src["encoding"])
            key = stable_hash(deep_merge(src["recipe"], {k: v for k, v in t.items() if k != "name"}))
            if t.get("_runtime_choice"):
                pass
            elif key in seen:
                e.shared_with, e.hours = seen[key], 0.0
            else:
                seen[key] = f"{n}/{e.name}"
            ests.append(e)
        trials.extend(ests)
        summary[n] = {"trials": len(ests), "gpu_hours": sum(e.hours for e in ests),
                      "plan_gpu_hours": PLAN_GPU_HOURS.get(n), "max_peak_gib": max(e.peak_gib for e in ests),
                      "not_fitting": [e.name for e in ests if not e.fits]}
    cache = estimate_cache(preset=preset, gpu=gpu, mfu=mfu, data=src["data"], encoding=src["encoding"])
    return PlanResult(preset=preset, gpu=GPUS[gpu], mfu=mfu, trials=trials, cache=cache, experiments=summary,
                      sources=dict(src.get("sources", {})))


def describe_training_set(train_data: Mapping) -> str:
    """``shapes 10,000 images + coco 5,000 images + ssv2 5,000 clips (25 frames); shares 50/25/25%``."""
    parts = [f"{name} {d['n']:,} " + ("images" if d["frames"] == 1 else f"clips ({d['frames']} frames)")
             for name, d in train_data.items()]
    text = " + ".join(parts)
    if len(train_data) > 1:
        text += "; shares " + "/".join(f"{100 * d['share']:.0f}" for d in train_data.values()) + "%"
    return text


def describe_training_sets(trials: Iterable["TrialEstimate"]) -> dict[str, list[str]]:
    """Each distinct training set of these trials -> the experiments that train on it (study order)."""
    out: dict[str, list[str]] = {}
    for t in trials:
        if t.train_data:
            names = out.setdefault(describe_training_set(t.train_data), [])
            if t.experiment not in names:
                names.append(t.experiment)
    return out


def _group_hours(experiments: Mapping[str, dict]) -> dict[str, tuple[list[str], float]]:
    """GPU-hours per experiment group (``all`` = the study proper; ``branches`` = the plan's pivots and open
    questions), in study order."""
    from c2bridge.experiments import registry

    known = registry.experiments()
    out: dict[str, tuple[list[str], float]] = {}
    for name, e in experiments.items():
        group = (known[name].EXPERIMENT.group if name in known else None) or "all"
        names, hours = out.get(group, ([], 0.0))
        out[group] = (names + [name], hours + e["gpu_hours"])
    return out


def format_plan(result: PlanResult, per_trial: bool = True) -> str:
    """The human-readable tables `c2bridge plan` prints."""
    g = result.gpu
    lines = [f"c2bridge plan: preset {result.preset}, GPU {g.name} ({g.memory_gib:g} GiB, {g.peak_tflops:g} TFLOP/s "
             f"bf16), MFU {result.mfu:.2f}"]
    if per_trial:
        lines.append("")
        head = (f"{'experiment':<8} {'trial':<30} {'adapter':>8} {'steps':>7} {'TFLOP/step img|clip':>20} "
                f"{'peak GiB':>9} {'fits':>4} {'GPU-h':>7}")
        lines += [head, "-" * len(head)]
        for t in result.trials:
            st = t.step_tflops
            img = max((v for k, v in st.items() if k != "ssv2"), default=0.0)
            clip = st.get("ssv2", 0.0)
            lines.append(f"{t.experiment:<8} {t.name[:30]:<30} {t.adapter_params / 1e6:>7.1f}M {t.optimizer_steps:>7d} "
                         f"{f'{img:.0f} | {clip:.0f}':>20} {t.peak_gib:>9.1f} {'yes' if t.fits else 'NO':>4} "
                         f"{t.hours:>7.1f}" + (f"  (= {t.shared_with})" if t.shared_with else ""))
    lines.append("")
    head = f"{'experiment':<12} {'trials':>6} {'GPU-h':>8} {'plan GPU-h':>11} {'ratio':>6} {'max peak GiB':>13}  not fitting"
    lines += [head, "-" * len(head)]
    plan_total = 0.0
    for n, e in result.experiments.items():
        ref = e["plan_gpu_hours"]
        plan_total += ref or 0.0
        ratio = f"{e['gpu_hours'] / ref:.2f}" if ref else "-"
        bad = e["not_fitting"]
        bad_text = "all" if bad and len(bad) == e["trials"] else ", ".join(bad[:3]) + (" ..." if len(bad) > 3 else "")
        lines.append(f"{n:<12} {e['trials']:>6d} {e['gpu_hours']:>8.1f} {ref if ref is not None else '-':>11} "
                     f"{ratio:>6} {e['max_peak_gib']:>13.1f}  {bad_text or '-'}")
    c = result.cache
    lines.append(f"{'cache (once)':<12} {c['samples']:>6d} {c['hours']:>8.1f} {'-':>11} {'-':>6} {c['peak_gib']:>13.1f}"
                 f"  {'-' if c['fits'] else 'encoders'}")
    total = result.total_hours
    by_group = _group_hours(result.experiments)
    if len(by_group) > 1:  # the study proper (with the cache) against the plan's total; each group on its own line
        for group, (names, hours) in by_group.items():
            if group == "all":
                study = hours + c["hours"]
                lines.append(f"{'study total':<12} {'':>6} {study:>8.1f} {plan_total:>11.0f} "
                             f"{(study / plan_total if plan_total else float('nan')):>6.2f}  "
                             f"{', '.join(names)} + cache")
            else:
                lines.append(f"{group:<12} {'':>6} {hours:>8.1f} {'-':>11} {'-':>6} {'':>13}  {', '.join(names)}")
        lines.append(f"{'total':<12} {'':>6} {total:>8.1f}")
    elif plan_total:
        lines.append(f"{'total':<12} {'':>6} {total:>8.1f} {plan_total:>11.0f} {total / plan_total:>6.2f}")
    else:  # only experiments the plan has no GPU-hours for (the branches)
        lines.append(f"{'total':<12} {'':>6} {total:>8.1f} {'-':>11} {'-':>6}")
    bad = [t for t in result.trials if not t.fits]
    if bad:
        worst = max(bad, key=lambda t: t.peak_gib)
        parts = ", ".join(f"{k} {v:.1f}" for k, v in sorted(worst.memory_gib.items(), key=lambda kv: -kv[1])[:4])
        lines += ["", f"{len(bad)} trial(s) exceed {g.memory_gib:g} GiB at batch {worst.batch_size} "
                      f"(worst: {worst.experiment}/{worst.name} on {worst.worst_dataset}, {worst.peak_gib:.1f} GiB: "
                      f"{parts} GiB). Largest micro-batch that fits: {min(t.max_batch for t in bad)}; lower "
                      f"optim.batch_size and raise optim.grad_accum to keep the effective batch "
                      f"(--set optim.batch_size=N --set optim.grad_accum=M), or enable gradient checkpointing."]
    sets = describe_training_sets(result.trials)
    if sets:
        lines += ["", "training data (one dataset per micro-batch, picked by its share):"]
        lines += [f"  {', '.join(names)}: {text}" for text, names in sets.items()]
    src = {k: v for k, v in result.sources.items() if v != "plan"}
    lines += ["", "recipe/trials from: " + (", ".join(f"{k}={v}" for k, v in src.items()) if src
                                            else "the plan's numbers (no full-preset YAMLs yet)")]
    return "\n".join(lines)
