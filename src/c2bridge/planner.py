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
CHOSEN_BATCH_HEADROOM = 0.95  # the micro-batch the plan chooses keeps its peak within 95 % of the GPU's memory

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


LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")  # peft target names of the attention projections


def _attention_backward(forward: float, q: bool, k: bool, v: bool, attention: str) -> float:
    """Backward FLOPs of one attention (forward = QKᵀ + PV) given which of q, k, v need a gradient. Math kernel:
    dP = dO·Vᵀ (when q or k does), dV, dQ, dK, each half the forward; flash computes dQ, dK, dV together and
    recomputes QKᵀ (2.5x the forward) as soon as one is needed."""
    if not (q or k or v):
        return 0.0
    if attention == "flash":
        return 2.5 * forward
    return forward / 2 * ((q or k) + v + q + k)


def ltx_transformer_flops(cfg: Mapping, tokens: int, text_tokens: int, batch: int = 1,
                          attention: str = "flash", lora_rank: int | None = None,
                          lora_targets: Iterable[str] = LORA_TARGETS) -> dict[str, float]:
    """Forward and backward FLOPs of the LTX transformer, gradient to the conditioning (and, with ``lora_rank``,
    to peft LoRA adapters of that rank on ``lora_targets`` of both attentions of every block). ``tokens`` S =
    latent frames x h x w (patch 1), ``text_tokens`` L = adapter output tokens.

    Backward: a frozen linear needs only dX = dY Wᵀ (1x its forward), and only where its input needs a gradient;
    attention needs dQ, dK, dV (``_attention_backward``). Layer 0's self-attention and q-projection see only the
    noisy latents, which need no gradient, so autograd skips them, unless a LoRA there needs its weight gradient.
    A LoRA projection x -> B(A(x)) costs 2·T·r·(in + out) forward; backward: the weight gradients of A and B, B's
    input gradient, and A's input gradient where x needs one. ``blocks_forward``: the blocks' share of the forward
    (what gradient checkpointing recomputes).
    """
    if attention not in ("flash", "math"):
        raise ValueError(f"attention must be 'flash' or 'math', got {attention!r}")
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    dx = cfg.get("cross_attention_dim", d)
    cin, cout, cap = cfg["in_channels"], cfg.get("out_channels", cfg["in_channels"]), cfg["caption_channels"]
    n, s, l_ = cfg["num_layers"], tokens, text_tokens
    lora = set(lora_targets) if lora_rank else set()
    unknown = lora - set(LORA_TARGETS)
    if unknown:
        raise ValueError(f"decoder LoRA targets {sorted(unknown)}: the planner models {list(LORA_TARGETS)}")
    r = int(lora_rank or 0)
    proj_in, proj_out = 2 * s * cin * d, 2 * s * d * cout
    caption = 2 * l_ * cap * d + 2 * l_ * d * d
    time_embed = 2 * (256 * d + d * d + 6 * d * d)
    lin_s = 2 * s * d * d  # one d -> d projection over the latent tokens
    self_attn, cross_attn = 4 * s * s * d, 4 * s * l_ * d  # QKᵀ and PV
    cross_kv = 4 * l_ * dx * d
    ff = 16 * s * d * d  # d -> 4d -> d

    def lora_proj(t: int, fin: int, fout: int, x_grad: bool) -> tuple[float, float]:
        fa, fb = 2.0 * t * fin * r, 2.0 * t * r * fout
        return fa + fb, fa + 2 * fb + (fa if x_grad else 0.0)

    forward = proj_in + proj_out + caption + time_embed
    blocks = backward = 0.0
    lora_fwd = lora_bwd = 0.0
    for i in range(n):
        x_grad = i > 0  # a block's input depends on the conditioning from layer 0's cross-attention on
        blocks += 4 * lin_s + self_attn + 2 * lin_s + cross_kv + cross_attn + ff
        # self-attention: q, k, v outputs need a gradient when the input does or a LoRA sits on them
        q1, k1, v1 = (x_grad or f"to_{c}" in lora for c in "qkv")
        attn_out = q1 or k1 or v1
        h1 = x_grad or attn_out or "to_out.0" in lora
        backward += (3 * lin_s if x_grad else 0.0) + (lin_s if attn_out else 0.0)
        backward += _attention_backward(self_attn, q1, k1, v1, attention)
        for name in lora & {"to_q", "to_k", "to_v"}:
            f, b = lora_proj(s, d, d, x_grad)
            lora_fwd, lora_bwd = lora_fwd + f, lora_bwd + b
        if "to_out.0" in lora:
            f, b = lora_proj(s, d, d, attn_out)
            lora_fwd, lora_bwd = lora_fwd + f, lora_bwd + b
        # cross-attention: k, v (from the captions) always need a gradient; q when the latents' path does
        q2 = h1 or "to_q" in lora
        backward += (lin_s if h1 else 0.0) + cross_kv + lin_s  # to_q (if), to_k + to_v, to_out
        backward += _attention_backward(cross_attn, q2, True, True, attention)
        for name in lora:
            t, fin, x_g = ((s, d, h1) if name == "to_q" else (l_, dx, True) if name in ("to_k", "to_v")
                           else (s, d, True))
            f, b = lora_proj(t, fin, d, x_g)
            lora_fwd, lora_bwd = lora_fwd + f, lora_bwd + b
        backward += ff
    forward += blocks + lora_fwd
    backward += caption + proj_out + lora_bwd
    return {"forward": float(batch * forward), "backward": float(batch * backward),
            "blocks_forward": float(batch * (blocks + lora_fwd)), "lora_forward": float(batch * lora_fwd),
            "lora_backward": float(batch * lora_bwd)}


def decoder_lora_params(cfg: Mapping, rank: int | None, targets: Iterable[str] = LORA_TARGETS) -> int:
    """Trainable parameters of peft LoRA (rank r, no bias) on ``targets`` of both attentions of every block."""
    if not rank:
        return 0
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    dx = cfg.get("cross_attention_dim", d)
    per_layer = 0
    for name in targets:
        per_layer += rank * (d + d)  # self-attention: every projection is d -> d
        per_layer += rank * ((dx if name in ("to_k", "to_v") else d) + d)
    return cfg["num_layers"] * per_layer


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
    from c2bridge.experiments.halving import plan_groups

    competing = {label: {"group": g["group"], "arm": arm, "protected": arm in g["protected"], "eta": g["eta"],
                         "min_fraction": g["min_fraction"]}
                 for g in plan_groups(cfg, specs) for arm, labels in g["arms"].items() for label in labels}

    def cache_data(name: str | None) -> dict | None:
        spec = caches.get(name) if name else None
        if not isinstance(spec, Mapping) or not spec.get("limit"):
            return None
        frames = dataset_item_shape(preset, spec.get("dataset", name))[0]
        return {spec.get("dataset", name): {"n": int(spec["limit"]), "frames": frames}}

    def validation_data() -> dict | None:
        """The caches a trial validates on (``val_mix``, else ``val_cache``): dataset -> its samples and frames."""
        parts = [cache_data(e.get("cache")) or {} for e in cfg.get("val_mix") or [] if isinstance(e, Mapping)]
        if not parts:
            return cache_data(cfg.get("val_cache"))
        datasets = [name for d in parts for name in d]
        return {name if datasets.count(name) == 1 else f"{name}{i}": item  # two caches of one dataset: by position
                for i, d in enumerate(parts) for name, item in d.items()}

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
            train, val = cache_data(train_cache), validation_data()
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
            t["_stage"] = int(spec.stage)
        elif spec.assumption:
            t["_assumption"] = spec.assumption  # shared only with trials resting on the same assumption
        if spec.kind == "evaluate":
            t["_of"] = spec.of
        if nested(spec.patch or {}).get("distill", {}).get("teacher") or (recipe.get("distill") or {}).get("teacher"):
            t["_teacher_budget"] = str(cfg.get("teacher_budget") or cfg.get("reference_budget") or "100m")
        if spec.label in competing and spec.kind == "train":
            t["_halving_group"] = competing[spec.label]
        t["name"] = spec.label
        out.append(t)
    return out


def halving_caps(group: Mapping[str, Mapping], eta: int, min_fraction: float) -> dict[str, float]:
    """One successive-halving group -> the share of the max steps each arm is costed to.

    ``group``: arm -> {"cost": its GPU-hours at full length, "max_steps", "eval_every", "forced": protected or
    already trained (never pruned, still ranks)}. Which arms survive is known only at run time; here the costliest
    unforced arms are the survivors of each rung (an upper bound on the group's total), and forced arms survive
    on top of them. At each rung the top max(1, n // eta) of the n arms still running continue
    (``c2bridge.experiments.halving``); the rungs are its ``rung_steps`` (moved down to validation steps)."""
    from c2bridge.experiments.halving import rung_steps

    forced = [a for a, g in group.items() if g["forced"]]
    ranked = sorted((a for a in group if a not in forced), key=lambda a: -group[a]["cost"])
    caps = {a: 1.0 for a in group}
    if not ranked:
        return caps
    first = group[ranked[0]]
    alive = ranked
    for step in rung_steps(int(first["max_steps"]), int(first["eval_every"]), eta, min_fraction):
        keep = max(1, (len(alive) + len(forced)) // eta)
        for a in alive[keep:]:
            caps[a] = step / max(1, int(first["max_steps"]))
        alive = alive[:keep]
    return caps


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
    assumptions: dict = {}
    if preset_file.is_file():
        preset_recipe = read_mapping(preset_file)
        assumptions = dict(preset_recipe.pop("plan", None) or {})  # the planner's documented assumptions
        recipe = deep_merge(recipe, preset_recipe)
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
            "experiments": experiments, "sources": sources, "assumptions": assumptions}


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


@dataclass(frozen=True)
class Levers:
    """The recipe keys that change a trial's cost, read from a resolved recipe dict (TrainConfig's shape)."""

    stop_patience: int | None = None  # early stopping at a val-loss plateau (None: train to the max steps)
    stop_min_fraction: float = 0.0  # never stop before this fraction of the max steps
    pixel_start: float = 0.0  # pixel terms from this fraction of the max steps on
    pixel_every: int = 1  # ... on every k-th optimizer step
    pixel_crop: int | None = None  # ... on one crop of this side (px), the latent crop decoded alone
    pixel_latent_frames: int | None = None  # clips: ... on a window of this many latent frames
    gradient_checkpointing: bool = False  # recompute the transformer's blocks in backward
    lora_rank: int | None = None  # decoder LoRA (pivot 8.2): trainable LoRA in the transformer
    lora_targets: tuple = LORA_TARGETS
    teacher: bool = False  # distillation (pivot 8.3): a frozen teacher adapter's forward per sample

    @classmethod
    def of(cls, recipe: Mapping) -> "Levers":
        loss, stop = recipe.get("loss") or {}, recipe.get("stop") or {}
        lora = recipe.get("decoder_lora") or {}
        return cls(stop_patience=stop.get("patience"), stop_min_fraction=float(stop.get("min_fraction") or 0.0),
                   pixel_start=float(loss.get("pixel_start") or 0.0), pixel_every=int(loss.get("pixel_every") or 1),
                   pixel_crop=loss.get("pixel_crop"), pixel_latent_frames=loss.get("pixel_latent_frames"),
                   gradient_checkpointing=bool((recipe.get("memory") or {}).get("gradient_checkpointing")),
                   lora_rank=lora.get("rank"), lora_targets=tuple(lora.get("targets") or LORA_TARGETS),
                   teacher=bool((recipe.get("distill") or {}).get("teacher")))

    def run_fraction(self, expected_stop_fraction: float | None) -> float:
        """The expected share of the max steps a trial trains: 1 without early stopping, else the documented
        expected stop fraction (never below ``stop.min_fraction``)."""
        if not self.stop_patience:
            return 1.0
        f = 1.0 if expected_stop_fraction is None else float(expected_stop_fraction)
        return min(1.0, max(f, self.stop_min_fraction))

    def pixel_share(self, run_fraction: float) -> float:
        """The share of the steps run (``run_fraction`` of the max steps) that carry the pixel terms."""
        if run_fraction <= 0:
            return 0.0
        return max(0.0, run_fraction - self.pixel_start) / self.pixel_every / run_fraction


@dataclass
class TrialEstimate:
    experiment: str
    name: str  # the trial's label in its experiment (the runner's)
    kind: str  # train | reference | evaluate (evaluation only: no training steps)
    adapter_kind: str
    adapter_params: float
    batch_size: int  # the micro-batch this estimate uses (the largest that fits when the plan chooses it)
    grad_accum: int  # micro-batches per optimizer step at that micro-batch (the effective batch is kept)
    optimizer_steps: int  # the max steps (the recipe's epochs / max_steps)
    micro_batches: int  # micro-batches of the expected run
    step_tflops: dict  # dataset -> TFLOPs of one optimizer step of that dataset (averaged over the pixel schedule)
    flops: dict  # "train", "eval", "sample", "total" (FLOPs) of the expected run
    memory_gib: dict  # breakdown of the peak (worst dataset, a step with the pixel terms)
    peak_gib: float
    worst_dataset: str
    hours: float  # expected, on the chosen GPU (0 when shared)
    fits: bool
    max_batch: int = 0  # largest micro-batch whose peak fits the GPU (0: not even 1)
    shared_with: str | None = None  # "e2.1/query-10m": the same resolved recipe runs once (the runner keys trials)
    # what it trains on: dataset -> {"n": items, "frames": per item (1 = image), "share": of the micro-batches}
    train_data: dict = field(default_factory=dict)
    hours_worst: float = 0.0  # every trial to its max steps (no early stopping; halving still prunes)
    run_fraction: float = 1.0  # expected share of the max steps trained (early stopping, halving rung)
    steps_run: int = 0  # expected optimizer steps
    pixel_share: float = 0.0  # share of the steps run that decode and run the pixel terms
    configured_batch: int = 0  # the recipe's optim.batch_size / grad_accum
    configured_accum: int = 0
    configured_fits: bool = True  # whether the recipe's own micro-batch fits
    halving_rung: float | None = None  # successive halving: costed up to this fraction (None: not pruned)
    eval_every_steps: int = 0  # the validation interval (halving rungs lie on validation steps)
    stage: int = 1  # 2: decided from this experiment's stage-1 results (conditional: worst case listed)
    assumption: str | None = None  # what it assumes about upstream results (waits for them on the trial graph)
    of: str | None = None  # evaluate trials: the trained trial they evaluate
    decoder_lora_params: int = 0
    teacher_params: float = 0.0

    @property
    def conditional(self) -> bool:
        """Runs only when its experiment's stage-1 results call for it (listed at its worst case)."""
        return self.stage > 1

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
    assumptions: dict = field(default_factory=dict)  # plan.* of the preset file (expected_stop_fraction, ...)
    gpus: int = 1  # GPUs of the trial-graph makespan
    makespan: dict = field(default_factory=dict)  # group -> wall-clock hours on `gpus` GPUs

    @property
    def total_hours(self) -> float:
        return sum(e["gpu_hours"] for e in self.experiments.values()) + self.cache["hours"]

    @property
    def conditional_hours(self) -> float:
        return sum(e["conditional_gpu_hours"] for e in self.experiments.values())

    @property
    def total_hours_worst(self) -> float:
        return sum(e["gpu_hours_worst"] for e in self.experiments.values()) + self.cache["hours"]

    def to_dict(self) -> dict:
        from c2bridge._io import to_plain

        return {"preset": self.preset, "gpu": to_plain(self.gpu), "mfu": self.mfu, "cache": self.cache,
                "experiments": self.experiments, "total_gpu_hours": self.total_hours,
                "conditional_gpu_hours": self.conditional_hours, "total_gpu_hours_worst": self.total_hours_worst,
                "groups": to_plain(group_hours(self)),
                "plan_total_gpu_hours": sum(PLAN_GPU_HOURS.values()), "sources": self.sources,
                "assumptions": self.assumptions, "gpus": self.gpus, "makespan_hours": self.makespan,
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


PIXEL_STAGES = ("vae_decode", "perceptual")  # run only on the steps of the pixel schedule


def sample_costs(dims: Mapping, preset, frames: int, text_tokens: int, recipe: Mapping, encoding: Mapping,
                 adapter_params: float, teacher_params: float = 0.0) -> dict[str, Any]:
    """Per-sample FLOPs of each stage and per-sample saved bytes for one training sample of `frames` frames.

    ``train``: a step with the pixel terms (``PIXEL_STAGES`` on the decoded region: ``loss.pixel_crop`` and
    ``loss.pixel_latent_frames``); the other stages run on every step. ``eval``: validation decodes whole frames.
    """
    temporal = str(((recipe.get("adapter") or {}).get("overrides") or {}).get("temporal", "pool"))
    if frames > 1 and temporal == "frame":  # one conditioning per frame: the clip trains as `frames` images
        one = sample_costs(dims, preset, 1, text_tokens, recipe, encoding, adapter_params, teacher_params)
        scaled = {k: ({kk: vv * frames for kk, vv in v.items()} if isinstance(v, dict)
                      else v * frames if k in ("eval", "transformer_forward", "decode_forward") else v)
                  for k, v in one.items()}
        scaled["tokens"] = one["tokens"] * frames
        return scaled
    if temporal == "spacetime":  # every frame's DINOv2 patches reach the adapter
        encoding = {**encoding, "dino_frames": frames}
    vae = dims["ltx_vae"]
    rs, rt = vae_ratios(vae)
    t, h, w = latent_shape(vae, frames, preset.image_size, preset.image_size)
    tokens = t * h * w
    lv = Levers.of(recipe)
    cfg = dims["ltx_transformer"]
    tr = ltx_transformer_flops(cfg, tokens, text_tokens, lora_rank=lv.lora_rank, lora_targets=lv.lora_targets)
    plain = tr if not lv.lora_rank else ltx_transformer_flops(cfg, tokens, text_tokens)
    decode, perceptual = _stages(recipe.get("loss", {}))
    # the region the pixel terms see: a window of latent frames, a square crop (decoded alone)
    k = t if lv.pixel_latent_frames is None else max(1, min(int(lv.pixel_latent_frames), t))
    side = min(h, w) if lv.pixel_crop is None else max(1, min(int(lv.pixel_crop) // rs, h, w))
    ch, cw = (h, w) if lv.pixel_crop is None or side >= min(h, w) else (side, side)
    px_frames, px_h, px_w = (k - 1) * rt + 1, ch * rs, cw * rs
    zero = {"forward": 0.0, "saved_elements": 0.0}
    dec = vae_decoder_costs(vae, k, ch, cw) if decode else zero
    dec_whole = vae_decoder_costs(vae, t, h, w) if decode else zero

    def perceptual_costs(f: int, hh: int, ww: int) -> dict:
        if not perceptual:
            return {"forward": 0.0, "backward": 0.0, "saved_elements": 0.0}
        lp = lpips_costs(_perceptual_net(recipe["loss"]), hh, ww)
        scale = _MS_LPIPS_AREA if perceptual == "multiscale" else 1.0
        return {key: v * scale * f for key, v in lp.items() if key != "params"}

    lp = perceptual_costs(px_frames, px_h, px_w)
    lp_whole = perceptual_costs(frames, preset.image_size, preset.image_size)
    patches = preset.n_patches * int(encoding.get("dino_frames", 1))
    in_tokens = encoding["vlm_tokens"] + patches
    ad = adapter_flops(adapter_params, in_tokens)
    train = {
        "adapter": ad["forward"] + ad["backward"],
        "transformer": plain["forward"] + plain["backward"],
        "decoder_lora": (tr["forward"] + tr["backward"]) - (plain["forward"] + plain["backward"]),
        "recompute": tr["blocks_forward"] if lv.gradient_checkpointing else 0.0,
        "teacher": adapter_flops(teacher_params, in_tokens)["forward"] if teacher_params else 0.0,
        "vae_decode": 2 * dec["forward"],
        "perceptual": lp["forward"] + lp["backward"],
    }
    evaluation = tr["forward"] + dec_whole["forward"] + lp_whole["forward"] + ad["forward"] + train["teacher"]
    bpe = 2  # bf16 activations
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    if lv.gradient_checkpointing:  # every block's input + one block's saved tensors during its recompute
        one_block = dict(cfg, num_layers=1)
        transformer_act = (cfg["num_layers"] * tokens * d * bpe
                           + ltx_transformer_activation_bytes(one_block, tokens, text_tokens, bytes_per_element=bpe))
        lora_act = 0.0  # inside the recomputed block
    else:
        transformer_act = ltx_transformer_activation_bytes(cfg, tokens, text_tokens, bytes_per_element=bpe)
        # a LoRA keeps its inputs for its weight gradient: the self-attention input (q, k, v share it) and the
        # cross-attention query input per block (the other inputs are kept already), and its r-wide middle
        lora_act = (cfg["num_layers"] * (2 * tokens * d + 8 * tokens * int(lv.lora_rank)) * bpe
                    if lv.lora_rank else 0.0)
    act = {
        "transformer": transformer_act + lora_act,
        "vae_decode": dec["saved_elements"] * bpe,
        "perceptual": lp["saved_elements"] * bpe,
        "features": (encoding["vlm_tokens"] * preset.vlm_dim + patches * preset.dino_dim) * bpe
        + 4.0 * frames * preset.image_size**2 * 3,  # adapter inputs + fp32 target pixels
    }
    return {"tokens": tokens, "latent": (t, h, w), "pixel_region": (px_frames, px_h, px_w), "train": train,
            "eval": evaluation, "transformer_forward": tr["forward"], "decode_forward": dec_whole["forward"],
            "activation_bytes": act}


def _sample_flops(c: Mapping, pixel_share: float) -> float:
    """One training sample's FLOPs averaged over the pixel schedule."""
    return sum(v * (pixel_share if k in PIXEL_STAGES else 1.0) for k, v in c["train"].items())


DEFAULT_EXPECTED_STOP_FRACTION = None  # no documented assumption: early-stopped trials are costed at full length


def estimate_trial(experiment: str, overrides: Mapping, *, preset: str = "full", gpu: str = "a100-80",
                   mfu: float = DEFAULT_MFU, recipe: Mapping | None = None, data: Mapping | None = None,
                   encoding: Mapping | None = None, dims: Mapping | None = None,
                   assumptions: Mapping | None = None, choose_batch: bool = False) -> TrialEstimate:
    """One trial: its recipe = ``recipe`` (default: the plan's) deep-merged with ``overrides``.

    ``assumptions``: the plan's documented assumptions (``expected_stop_fraction``: the share of the max steps an
    early-stopped trial trains). ``choose_batch``: use the largest micro-batch that fits the GPU among the
    divisors of the effective batch (``batch_size x grad_accum``, kept), else the recipe's own.
    """
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
    assumptions = dict(assumptions or {})
    overrides = dict(overrides)
    data = overrides.pop("_data", None) or data
    post_eval = overrides.pop("_post_eval", None)
    eval_only = overrides.pop("_eval_only", None)  # "reference" / "evaluate": sampled metrics only, no training
    rung = overrides.pop("_halving_rung", None)  # successive halving: pruned at this fraction of the max steps
    teacher_budget = overrides.pop("_teacher_budget", None)
    stage = int(overrides.pop("_stage", 1))
    assumption = overrides.pop("_assumption", None)
    of = overrides.pop("_of", None)
    for internal in ("_train_cache", "_runtime_choice", "_reference", "_halving_group"):
        overrides.pop(internal, None)
    r = deep_merge(dict(recipe or PLAN_RECIPE), overrides)
    o, ev = r["optim"], r.get("eval", {})
    batch, accum = int(o["batch_size"]), int(o["grad_accum"])
    if batch < 1 or accum < 1:
        raise ValueError(f"batch_size and grad_accum must be >= 1, got {batch} and {accum}")
    n_params = resolve_budget(r["adapter"].get("budget", "10m"), p)
    text_tokens = p.n_tokens
    lv = Levers.of(r)
    teacher_params = resolve_budget(teacher_budget or "100m", p) if lv.teacher else 0.0
    lora_params = decoder_lora_params(dims["ltx_transformer"], lv.lora_rank, lv.lora_targets)

    per_sample = {name: sample_costs(dims, p, d["frames"], text_tokens, r, enc, n_params, teacher_params)
                  for name, d in data["train"].items()}
    micro_per_epoch = {name: math.ceil(d["n"] / batch) for name, d in data["train"].items()}
    total_micro_epoch = sum(micro_per_epoch.values())
    # each dataset's share of the micro-batches: its mix weight when the trial trains on a weighted mix (each
    # micro-batch from one dataset), else its size
    weights = {name: float(d.get("weight", micro_per_epoch[name])) for name, d in data["train"].items()}
    share = {name: w / sum(weights.values()) for name, w in weights.items()}
    if eval_only:
        micro_max = 0
    elif o.get("max_steps"):
        micro_max = int(o["max_steps"]) * accum
    else:
        micro_max = math.ceil(float(o["epochs"]) * total_micro_epoch)
    steps = math.ceil(micro_max / accum)
    decode, perceptual = _stages(r.get("loss", {}))

    def run(fraction: float) -> dict:
        """Training + validation FLOPs of a run of ``fraction`` of the max steps."""
        ps = lv.pixel_share(fraction) if decode else 0.0
        micro = micro_max * fraction
        steps_run = math.ceil(steps * fraction - 1e-9)
        train = micro * sum(share[n] * batch * _sample_flops(c, ps) for n, c in per_sample.items())
        n_evals = 0 if eval_only else (steps_run // every if every > 0 else 0) + 1
        return {"train": train, "eval": n_evals * eval_per_pass, "pixel_share": ps, "micro": micro,
                "steps": steps_run, "step_tflops": {n: accum * batch * _sample_flops(c, ps) / 1e12
                                                    for n, c in per_sample.items()}}

    # validation loss every eval.every_steps (and at the end), forward only
    val = data.get("val", {})
    val_costs = {name: sample_costs(dims, p, d["frames"], text_tokens, r, enc, n_params, teacher_params)
                 for name, d in val.items()}
    val_samples = {name: d["n"] for name, d in val.items()}
    if ev.get("max_batches"):  # per val cache, as the trainer caps each
        cap = int(ev["max_batches"]) * batch
        val_samples = {k: min(v, cap) for k, v in val_samples.items()}
    every = int(ev.get("every_steps", 0) or 0)
    eval_per_pass = sum(val_samples[n] * val_costs[n]["eval"] for n in val_samples)

    # sampled metrics at the end: denoising steps (x2 with CFG) + one decode per sample
    sampling = {**_DECODE_ONLY, "adapter": r["adapter"]}  # the adapter's temporal option decides the decode
    n_samples = 0 if eval_only else (ev.get("n_samples", 0) or 0)
    sample_set = data.get("test", {}) if n_samples == "test" else {"val": {"n": int(n_samples), "frames": 1}}
    cfg_mult = 2 if float(ev.get("guidance", 1.0)) > 1 else 1
    sample_flops = 0.0
    for d in sample_set.values():
        if not d["n"]:
            continue
        c = sample_costs(dims, p, d["frames"], text_tokens, sampling, enc, n_params)
        sample_flops += d["n"] * (int(ev.get("sample_steps", 20)) * cfg_mult * c["transformer_forward"]
                                  + c["decode_forward"])

    if post_eval:  # the experiment runner's evaluation after training (c2bridge.experiments.backend)
        pe_cfg = 2 if post_eval["guidance"] > 1 else 1
        for d in post_eval["splits"].values():
            c = sample_costs(dims, p, d["frames"], text_tokens, sampling, enc, n_params)
            sample_flops += d["n"] * (post_eval["sample_steps"] * pe_cfg * c["transformer_forward"]
                                      + c["decode_forward"])

    cap = 1.0 if rung is None else float(rung)
    fraction = min(lv.run_fraction(assumptions.get("expected_stop_fraction", DEFAULT_EXPECTED_STOP_FRACTION)), cap)
    expected, worst_run = run(fraction), run(cap)
    per_hour = spec.peak_tflops * 1e12 * mfu * 3600
    total = expected["train"] + expected["eval"] + sample_flops
    hours, hours_worst = total / per_hour, (worst_run["train"] + worst_run["eval"] + sample_flops) / per_hour

    used_batch, used_accum = batch, accum
    if eval_only:  # sampling under no_grad: the frozen weights, the adapter, a batch of latents; no optimizer
        weights = {"transformer_bf16": ltx_transformer_params(dims["ltx_transformer"]) * 2,
                   "vae_decoder_bf16": vae_decoder_costs(dims["ltx_vae"], 1, 1, 1)["params"] * 2,
                   "adapter_fp32": n_params * 4}
        memory = {k: v / GIB for k, v in weights.items()}
        memory["runtime_overhead"] = RUNTIME_OVERHEAD_GIB
        peak, worst, max_batch, step_tflops = sum(memory.values()), "-", batch, {}
        configured_fits = fits = peak <= spec.memory_gib
    else:
        weights = {
            "transformer_bf16": ltx_transformer_params(dims["ltx_transformer"]) * 2,
            "vae_decoder_bf16": vae_decoder_costs(dims["ltx_vae"], 1, 1, 1)["params"] * 2 if decode else 0.0,
            "perceptual_fp32": lpips_costs(_perceptual_net(r["loss"]), 64, 64)["params"] * 4 if perceptual else 0.0,
            "adapter_and_adamw": n_params * ADAPTER_BYTES_PER_PARAM,
            "decoder_lora_and_adamw": lora_params * ADAPTER_BYTES_PER_PARAM,
            "teacher_fp32": teacher_params * 4,  # frozen, no gradient, no optimizer state
        }
        weights = {k: v for k, v in weights.items() if v or k in ("vae_decoder_bf16", "transformer_bf16")}
        worst, worst_act = "", -1.0
        for name, c in per_sample.items():
            act = sum(c["activation_bytes"].values())
            if act > worst_act:
                worst, worst_act = name, act
        fixed_gib = sum(weights.values()) / GIB + RUNTIME_OVERHEAD_GIB
        per_sample_gib = worst_act * ACTIVATION_SLACK / GIB
        max_batch = max(0, int((spec.memory_gib - fixed_gib) // per_sample_gib))
        configured_fits = fixed_gib + batch * per_sample_gib <= spec.memory_gib
        if choose_batch:  # the largest divisor of the effective batch that fits with headroom (else 1)
            effective = batch * accum
            room = int((CHOSEN_BATCH_HEADROOM * spec.memory_gib - fixed_gib) // per_sample_gib)
            fitting = [b for b in range(1, effective + 1) if effective % b == 0 and b <= room]
            used_batch = max(fitting) if fitting else 1
            used_accum = effective // used_batch
        act_parts = {f"activations_{k}": used_batch * v * ACTIVATION_SLACK
                     for k, v in per_sample[worst]["activation_bytes"].items()}
        memory = {k: v / GIB for k, v in {**weights, **act_parts}.items()}
        memory["runtime_overhead"] = RUNTIME_OVERHEAD_GIB
        peak = sum(memory.values())
        fits = peak <= spec.memory_gib
        step_tflops = expected["step_tflops"]
    return TrialEstimate(
        experiment=experiment, name=str(overrides.get("name", "trial")), kind=str(eval_only or "train"),
        adapter_kind=str(r["adapter"].get("kind")),
        adapter_params=n_params, batch_size=used_batch, grad_accum=used_accum, optimizer_steps=steps,
        micro_batches=round(expected["micro"] * batch / used_batch), step_tflops=step_tflops,
        flops={"train": expected["train"], "eval": expected["eval"], "sample": sample_flops, "total": total},
        memory_gib=memory, peak_gib=peak, worst_dataset=worst, hours=hours, fits=fits, max_batch=max_batch,
        train_data={} if eval_only else {n: {"n": int(d["n"]), "frames": int(d["frames"]), "share": share[n]}
                                         for n, d in data["train"].items()},
        hours_worst=hours_worst, run_fraction=fraction if not eval_only else 0.0, steps_run=expected["steps"],
        pixel_share=expected["pixel_share"], configured_batch=batch, configured_accum=accum,
        configured_fits=configured_fits, halving_rung=rung, eval_every_steps=every, stage=stage,
        assumption=assumption, of=of,
        decoder_lora_params=lora_params, teacher_params=teacher_params,
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


SHARING_IGNORES = ("name", "_halving_group", "_stage", "_of", "_teacher_budget")  # labels, not what trains


def plan(preset: str = "full", experiments: Iterable[str] | None = None, gpu: str = "a100-80",
         mfu: float = DEFAULT_MFU, sources: Mapping | None = None, overrides: Mapping | None = None,
         gpus: int = 8, assumptions: Mapping | None = None) -> PlanResult:
    """Estimate every trial of the chosen experiments (default all registered) and sum GPU-hours per experiment.

    ``sources``: ``load_sources()``'s dict (recipe, data, encoding, experiments, assumptions); default: read the
    configs. ``overrides``: dotted recipe keys applied to every trial, e.g. ``{"optim.batch_size": 2}``.
    ``assumptions``: on top of the preset file's ``plan:`` block (e.g. ``{"expected_stop_fraction": 1.0}``).
    ``gpus``: GPUs of the trial-graph makespan (wall-clock).
    """
    from c2bridge._io import stable_hash

    src = dict(sources) if sources is not None else load_sources(preset)
    if overrides:
        _check_recipe_overrides(overrides)
        src["recipe"] = deep_merge(src["recipe"], nested(overrides))
        src["experiments"] = {n: [deep_merge(t, nested(overrides)) for t in ts]
                              for n, ts in src["experiments"].items()}
    assume = {**(src.get("assumptions") or {}), **(assumptions or {})}
    f = assume.get("expected_stop_fraction")
    if f is not None and not 0 < float(f) <= 1:
        raise ValueError(f"plan.expected_stop_fraction={f}: expected a share of the max steps in (0, 1]")
    if int(gpus) < 1:
        raise ValueError(f"gpus={gpus}: expected an integer >= 1")
    all_exps = src["experiments"]
    names = list(experiments) if experiments else list(all_exps)
    for n in names:
        if n not in all_exps:
            raise ValueError(f"unknown experiment {n!r}; expected one of {sorted(all_exps)}")

    def estimate(n: str, t: Mapping) -> TrialEstimate:
        return estimate_trial(n, t, preset=preset, gpu=gpu, mfu=mfu, recipe=src["recipe"], data=src["data"],
                              encoding=src["encoding"], assumptions=assume, choose_batch=True)

    # pass 1: every trial at full length; the same resolved recipe runs once (the runner keys trials)
    rows: list[tuple[str, dict, TrialEstimate]] = []
    seen: dict[str, str] = {}
    for n in names:
        for t in all_exps[n]:
            e = estimate(n, t)
            key = stable_hash(deep_merge(src["recipe"], {k: v for k, v in t.items() if k not in SHARING_IGNORES}))
            if t.get("_runtime_choice"):
                pass
            elif key in seen:
                e.shared_with = seen[key]
            else:
                seen[key] = f"{n}/{e.name}"
            rows.append((n, dict(t), e))
    # pass 2: successive halving (which arms survive is known only at run time: see halving_caps)
    groups: dict[tuple, dict[str, list[int]]] = {}
    for i, (n, t, _) in enumerate(rows):
        if t.get("_halving_group"):
            h = t["_halving_group"]
            key = (n, h["group"], h["eta"], h["min_fraction"])
            groups.setdefault(key, {}).setdefault(h["arm"], []).append(i)
    for (n, _, eta, min_fraction), arms in groups.items():
        info = {arm: {"cost": sum(rows[i][2].hours for i in idx if not rows[i][2].shared_with),
                      "max_steps": rows[idx[0]][2].optimizer_steps, "eval_every": rows[idx[0]][2].eval_every_steps,
                      "forced": any(rows[i][1]["_halving_group"]["protected"] or rows[i][2].shared_with
                                    for i in idx)}
                for arm, idx in arms.items()}
        caps = halving_caps(info, eta, min_fraction)
        for arm, idx in arms.items():
            if caps[arm] < 1.0:
                for i in idx:
                    shared = rows[i][2].shared_with
                    rows[i] = (n, rows[i][1], estimate(n, {**rows[i][1], "_halving_rung": caps[arm]}))
                    rows[i][2].shared_with = shared
    trials: list[TrialEstimate] = []
    for _, _, e in rows:
        if e.shared_with:
            e.hours = e.hours_worst = 0.0
        trials.append(e)
    summary: dict[str, dict] = {}
    for n in names:
        ests = [e for e in trials if e.experiment == n]
        summary[n] = {"trials": len(ests), "gpu_hours": sum(e.hours for e in ests if not e.conditional),
                      "conditional_gpu_hours": sum(e.hours for e in ests if e.conditional),
                      "gpu_hours_worst": sum(e.hours_worst for e in ests),
                      "plan_gpu_hours": PLAN_GPU_HOURS.get(n), "max_peak_gib": max(e.peak_gib for e in ests),
                      "not_fitting": [e.name for e in ests if not e.fits],
                      "micro_batches": sorted({e.batch_size for e in ests if e.kind == "train"}),
                      "halving": any(e.halving_rung is not None for e in ests)}
    cache = estimate_cache(preset=preset, gpu=gpu, mfu=mfu, data=src["data"], encoding=src["encoding"])
    result = PlanResult(preset=preset, gpu=GPUS[gpu], mfu=mfu, trials=trials, cache=cache, experiments=summary,
                        sources=dict(src.get("sources", {})), assumptions=assume, gpus=int(gpus))
    result.makespan = {group: trial_graph_makespan(result, int(gpus), experiments=exps)
                       for group, (exps, _) in group_hours(result).items()}
    if len(result.makespan) > 1:
        result.makespan["total"] = trial_graph_makespan(result, int(gpus))
    return result


def trial_graph_makespan(result: PlanResult, gpus: int, experiments: Iterable[str] | None = None) -> float:
    """Wall-clock hours of the trials on ``gpus`` GPUs scheduled as a graph (greedy list scheduling, longest ready
    trial first on the GPU free first): the cache extraction split across the GPUs first; a trial resting on an
    upstream experiment's result (its ``assumption``) waits for every trial of the experiments its experiment
    requires; a stage-2 trial for its experiment's stage-1 trials; an evaluation for the trial it evaluates; a
    shared trial is done when its first listing is. Halving arms run to their rung as independent trials (the
    rung barrier is left out). The expected hours are used."""
    from c2bridge.experiments import registry

    known = registry.experiments()
    chosen = set(experiments) if experiments is not None else set(result.experiments)
    trials = [t for t in result.trials if t.experiment in chosen]
    ids = {f"{t.experiment}/{t.name}": t for t in trials}
    by_exp: dict[str, list[str]] = {}
    for tid, t in ids.items():
        by_exp.setdefault(t.experiment, []).append(tid)

    def requires(exp: str) -> list[str]:
        info = known.get(exp)
        return [r for r in (info.EXPERIMENT.requires if info else ()) if r in by_exp]

    deps: dict[str, set[str]] = {}
    for tid, t in ids.items():
        d: set[str] = set()
        if t.shared_with and t.shared_with in ids:
            d.add(t.shared_with)
        if t.assumption:
            for r in requires(t.experiment):
                d.update(by_exp[r])
        if t.stage > 1:
            d.update(x for x in by_exp[t.experiment] if ids[x].stage < t.stage)
            for r in requires(t.experiment):  # the decisions its stage 1 waited for
                d.update(by_exp[r])
        if t.of and f"{t.experiment}/{t.of}" in ids:
            d.add(f"{t.experiment}/{t.of}")
        deps[tid] = d - {tid}
    # close over dependencies of dependencies lazily: a trial is ready when all its deps have finished
    cache_done = result.cache["hours"] / gpus
    free = [cache_done] * gpus
    finish: dict[str, float] = {}
    pending = dict(ids)
    while pending:
        ready = [(max([finish[x] for x in deps[tid]] or [cache_done]), -t.hours, tid)
                 for tid, t in pending.items() if deps[tid] <= finish.keys()]
        if not ready:  # a cycle would be a bug in the trial lists: schedule the rest in order
            ready = [(max([finish.get(x, cache_done) for x in deps[tid]] or [cache_done]), -t.hours, tid)
                     for tid, t in pending.items()]
        g = min(range(gpus), key=lambda i: free[i])
        at, neg_h, tid = min(ready, key=lambda x: (max(x[0], free[g]), x[1]))
        start = max(at, free[g])
        finish[tid] = start - neg_h
        if -neg_h > 0:
            free[g] = finish[tid]
        del pending[tid]
    return max([cache_done, *finish.values()])


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


def group_hours(result: "PlanResult | Mapping[str, dict]") -> dict[str, tuple[list[str], float]]:
    """GPU-hours per experiment group (``all`` = the study proper; ``branches`` = the plan's pivots and open
    questions), in study order."""
    from c2bridge.experiments import registry

    experiments = result.experiments if isinstance(result, PlanResult) else result
    known = registry.experiments()
    out: dict[str, tuple[list[str], float]] = {}
    for name, e in experiments.items():
        group = (known[name].EXPERIMENT.group if name in known else None) or "all"
        names, hours = out.get(group, ([], 0.0))
        out[group] = (names + [name], hours + e["gpu_hours"])
    return out


def _days(hours: float) -> str:
    return f"{hours:.1f} h = {hours / 24:.1f} days"


def format_plan(result: PlanResult, per_trial: bool = True) -> str:
    """The human-readable tables `c2bridge plan` prints."""
    g = result.gpu
    f = result.assumptions.get("expected_stop_fraction")
    lines = [f"c2bridge plan: preset {result.preset}, GPU {g.name} ({g.memory_gib:g} GiB, {g.peak_tflops:g} TFLOP/s "
             f"bf16), MFU {result.mfu:.2f} (assumed; measure it: docs/planner.md), expected early-stop fraction "
             + (f"{float(f):.2f} of the max steps" if f is not None else "none (early-stopped trials at full length)")]
    if per_trial:
        lines.append("")
        head = (f"{'experiment':<8} {'trial':<30} {'adapter':>8} {'steps run/max':>13} {'micro x acc':>11} "
                f"{'TFLOP/step img|clip':>20} {'peak GiB':>9} {'fits':>4} {'GPU-h':>6} {'worst':>6}")
        lines += [head, "-" * len(head)]
        for t in result.trials:
            st = t.step_tflops
            img = max((v for k, v in st.items() if k != "ssv2"), default=0.0)
            clip = st.get("ssv2", 0.0)
            note = f"  (= {t.shared_with})" if t.shared_with else ""
            if t.halving_rung is not None and not t.shared_with:
                note += f"  halving: up to {t.halving_rung:.2f}"
            if t.conditional:
                note += "  conditional"
            steps = f"{t.steps_run}/{t.optimizer_steps}" if t.kind == "train" else "-"
            micro = f"{t.batch_size}x{t.grad_accum}" if t.kind == "train" else "-"
            lines.append(f"{t.experiment:<8} {t.name[:30]:<30} {t.adapter_params / 1e6:>7.1f}M {steps:>13} "
                         f"{micro:>11} {f'{img:.0f} | {clip:.0f}':>20} {t.peak_gib:>9.1f} "
                         f"{'yes' if t.fits else 'NO':>4} {t.hours:>6.1f} {t.hours_worst:>6.1f}" + note)
    lines.append("")
    head = (f"{'experiment':<12} {'trials':>6} {'GPU-h':>8} {'+cond.':>7} {'worst':>8} {'plan GPU-h':>11} {'ratio':>6} "
            f"{'max peak GiB':>13} {'micro':>7}  not fitting")
    lines += [head, "-" * len(head)]
    plan_total = 0.0
    for n, e in result.experiments.items():
        ref = e["plan_gpu_hours"]
        plan_total += ref or 0.0
        ratio = f"{e['gpu_hours'] / ref:.2f}" if ref else "-"
        bad = e["not_fitting"]
        bad_text = "all" if bad and len(bad) == e["trials"] else ", ".join(bad[:3]) + (" ..." if len(bad) > 3 else "")
        micro = ",".join(str(b) for b in e.get("micro_batches") or []) or "-"
        lines.append(f"{n:<12} {e['trials']:>6d} {e['gpu_hours']:>8.1f} {e['conditional_gpu_hours']:>7.1f} "
                     f"{e['gpu_hours_worst']:>8.1f} {ref if ref is not None else '-':>11} {ratio:>6} "
                     f"{e['max_peak_gib']:>13.1f} {micro:>7}  {bad_text or '-'}")
    c = result.cache
    lines.append(f"{'cache (once)':<12} {c['samples']:>6d} {c['hours']:>8.1f} {0.0:>7.1f} {c['hours']:>8.1f} "
                 f"{'-':>11} {'-':>6} {c['peak_gib']:>13.1f} {'':>7}  {'-' if c['fits'] else 'encoders'}")
    by_group = group_hours(result)
    span = result.makespan
    for group, (names, hours) in by_group.items():
        worst = sum(result.experiments[n]["gpu_hours_worst"] for n in names)
        conditional = sum(result.experiments[n]["conditional_gpu_hours"] for n in names)
        if group == "all":  # the study proper (with the cache) against the plan's total
            hours, worst = hours + c["hours"], worst + c["hours"]
            share = hours / plan_total if plan_total else float("nan")
            label, ref = "study total", f"{plan_total:>11.0f} {share:>6.2f}"
            what = ", ".join(names) + " + cache"
        else:
            label, ref, what = group, f"{'-':>11} {'-':>6}", ", ".join(names)
        lines.append(f"{label:<12} {'':>6} {hours:>8.1f} {conditional:>7.1f} {worst:>8.1f} {ref} {'':>13} {'':>7}  "
                     f"{what}")
    if len(by_group) > 1:
        lines.append(f"{'total':<12} {'':>6} {result.total_hours:>8.1f} {result.conditional_hours:>7.1f} "
                     f"{result.total_hours_worst:>8.1f}")
    lines += ["", "GPU-h: expected, the trials every run trains (early stopping at the expected fraction, successive "
                  "halving's pruned arms up to their rung); +cond.: the trials run only when stage-1 results call "
                  "for them (the sequential design's extra seeds while a verdict is undetermined, E2.1's pivot, "
                  "E2.3's combination), expected length; worst: every trial, conditional ones included, to its max "
                  "steps."]
    if span:
        lines.append(f"wall-clock on {result.gpus} GPU(s) (trial graph, cache extraction split across them, "
                     f"conditional trials included): "
                     + "; ".join(f"{'study' if k == 'all' else k} {_days(v)}" for k, v in span.items()))
    changed = [t for t in result.trials if t.kind == "train" and t.batch_size != t.configured_batch]
    if changed:
        pairs = sorted({(t.configured_batch, t.configured_accum, t.batch_size, t.grad_accum) for t in changed})
        lines.append("micro-batch chosen per trial (the largest that fits; the effective batch kept): "
                     + "; ".join(f"{b}x{a} -> {nb}x{na} (--set optim.batch_size={nb} --set optim.grad_accum={na})"
                                 for b, a, nb, na in pairs)
                     + f" for {len(changed)} trial(s)")
    bad = [t for t in result.trials if not t.fits]
    if bad:
        worst = max(bad, key=lambda t: t.peak_gib)
        parts = ", ".join(f"{k} {v:.1f}" for k, v in sorted(worst.memory_gib.items(), key=lambda kv: -kv[1])[:4])
        lines += ["", f"{len(bad)} trial(s) exceed {g.memory_gib:g} GiB even at micro-batch 1 "
                      f"(worst: {worst.experiment}/{worst.name} on {worst.worst_dataset}, {worst.peak_gib:.1f} GiB: "
                      f"{parts} GiB): enable memory.gradient_checkpointing, or crop the pixel terms "
                      f"(loss.pixel_crop, loss.pixel_latent_frames)."]
    sets = describe_training_sets(result.trials)
    if sets:
        lines += ["", "training data (one dataset per micro-batch, picked by its share):"]
        lines += [f"  {', '.join(names)}: {text}" for text, names in sets.items()]
    src = {k: v for k, v in result.sources.items() if v != "plan"}
    lines += ["", "recipe/trials from: " + (", ".join(f"{k}={v}" for k, v in src.items()) if src
                                            else "the plan's numbers (no full-preset YAMLs yet)")]
    return "\n".join(lines)
