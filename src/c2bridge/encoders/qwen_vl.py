"""Qwen2.5-VL (transformers ``Qwen2_5_VLForConditionalGeneration``) as a frozen feature encoder.

``QwenVLEncoder(images)`` puts each image (``[B,3,H,W]`` in [0, 1]) or clip (``[B,3,F,H,W]``, as a video) with a
prompt through the chat template and the model's processor, runs the language model and returns the hidden states
of one layer ``[B, T, vlm_dim]`` with a bool mask ``[B, T]`` (True = real token). ``token_selection``:
``"all"`` keeps every non-padding token of the conversation, ``"image"`` only the image/video placeholder
positions. Kept tokens are packed to the left of each row (``mask[i, :T_i]`` is True).

``layer`` indexes ``hidden_states`` (``num_hidden_layers + 1`` entries: 0 = token embeddings, -1 = the last layer
after the final norm, which equals ``last_hidden_state``).

Inputs are built by a real ``Qwen2_5_VLProcessor`` in every preset. For ``full`` it is the model's own processor
(tokenizer + chat template from the model dir). For ``tiny``/``mini`` there are no hub files offline, so
``mini_processor()`` builds one in memory: the same Qwen2-VL image/video processors (patch 4, merge 2, temporal 2)
with a tiny word-level tokenizer over a fixed vocabulary (``MINI_VOCAB``: Qwen's special tokens, the chat roles and
~90 prompt/caption words; anything else maps to ``<unk>``) and a Qwen-style chat template.

Pixels reach the vision tower the way Qwen2.5-VL's processor takes them: each image (each clip frame) is resized by
the processor's own ``smart_resize`` (transformers' ``qwen2_vl.image_processing_qwen2_vl.smart_resize``, the rule
``qwen-vl-utils`` applies too): both sides multiples of ``patch_size * merge_size`` (28 for the real model, 8 for
the mini processor), the aspect ratio kept as closely as that rounding allows, and the pixel count within
``[min_pixels, max_pixels]`` (``video_min_pixels``/``video_max_pixels`` per clip frame). The resize is bicubic with
antialiasing (the processor's resample), in float, batched; the processor then only patchifies
(``do_resize=False``). Every one of these settings is in ``encoder_key()`` and so in the cache key.
``image_size=S`` / ``video_size=S`` in the constructors are shorthand for ``max_pixels=S*S`` /
``video_max_pixels=S*S`` (the budget of an S x S square: a square input of at least that size becomes exactly
S x S, as before).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from c2bridge._io import stable_hash
from c2bridge.encoders.base import FrozenEncoder, pretrained_model, seeded_model
from c2bridge.encoders.hub import load_pretrained

FULL_VLM_ID = "Qwen/Qwen2.5-VL-7B-Instruct"
DEFAULT_PROMPT = "Describe this image in detail."
DEFAULT_VIDEO_PROMPT = "Describe this video in detail."
TOKEN_SELECTIONS = ("all", "image")

# ------------------------------------------------------------------ the in-memory processor for tiny/mini
MINI_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                       "<|image_pad|>", "<|video_pad|>", "<unk>"]
MINI_WORDS = (
    "user assistant system you are a helpful . , ? ! : describe this image video in detail what is the of and "
    "with on an at to from left right top bottom center middle upper lower small large big tiny medium "
    "red green blue yellow orange purple pink white black gray grey brown cyan magenta "
    "circle square triangle rectangle ellipse star cross diamond shape shapes object objects background "
    "moving moves up down one two three four five photo picture scene there near next behind front centre colour"
).split()
MINI_VOCAB_SIZE = 128  # the tiny model's vocab (>= len(MINI_SPECIAL_TOKENS) + len(MINI_WORDS))
MINI_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
MINI_PATCH, MINI_MERGE, MINI_TEMPORAL = 4, 2, 2


def mini_processor():
    """A real ``Qwen2_5_VLProcessor`` with a word-level tokenizer over ``MINI_VOCAB`` (no hub files needed)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    vocab = {tok: i for i, tok in enumerate(MINI_SPECIAL_TOKENS + MINI_WORDS)}
    assert len(vocab) <= MINI_VOCAB_SIZE
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<|endoftext|>",
                                        additional_special_tokens=MINI_SPECIAL_TOKENS[1:7])
    sizes = dict(patch_size=MINI_PATCH, merge_size=MINI_MERGE, temporal_patch_size=MINI_TEMPORAL,
                 min_pixels=(MINI_PATCH * MINI_MERGE) ** 2, max_pixels=512 * 512)
    return Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(**sizes), tokenizer=tokenizer,
                               video_processor=Qwen2VLVideoProcessor(**sizes), chat_template=MINI_CHAT_TEMPLATE)


def tiny_qwen_config(vlm_dim: int, processor=None, num_layers: int = 2):
    """A test-sized nested ``Qwen2_5_VLConfig`` (text hidden = vision out = ``vlm_dim``) matching ``processor``."""
    from transformers import Qwen2_5_VLConfig

    tok = (processor or mini_processor()).tokenizer
    ids = {name: tok.convert_tokens_to_ids(t) for name, t in [
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")]}
    special = dict(bos_token_id=tok.convert_tokens_to_ids("<|im_start|>"),
                   eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tok.pad_token_id)
    heads = 4 if vlm_dim % 4 == 0 else 1
    text = dict(vocab_size=MINI_VOCAB_SIZE, hidden_size=vlm_dim, intermediate_size=37, num_hidden_layers=num_layers,
                num_attention_heads=heads, num_key_value_heads=max(1, heads // 2), max_position_embeddings=1024,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                 "mrope_section": _mrope_section(vlm_dim // heads)}, **special)
    vision = dict(depth=2, hidden_size=32, out_hidden_size=vlm_dim, num_heads=4, intermediate_size=37,
                  patch_size=MINI_PATCH, spatial_merge_size=MINI_MERGE, temporal_patch_size=MINI_TEMPORAL,
                  window_size=MINI_PATCH * MINI_MERGE * 2, fullatt_block_indexes=[1])
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids, **special)


def _mrope_section(head_dim: int) -> list[int]:
    """Split head_dim/2 rotary frequencies over (time, height, width) like Qwen's [16, 24, 24] for 128."""
    half = head_dim // 2
    t = max(1, half // 4)
    h = (half - t) // 2
    return [t, h, half - t - h]


@dataclass(frozen=True)
class QwenPreprocess:
    max_pixels: int  # an image is resized (aspect ratio kept) to at most this many pixels: smart_resize
    video_max_pixels: int  # the same per clip frame (videos cost grid_t times more tokens)
    min_pixels: int | None = None  # ... and to at least this many (None: the processor's own minimum)
    video_min_pixels: int | None = None
    prompt: str = DEFAULT_PROMPT  # user text after the image, through the chat template
    video_prompt: str = DEFAULT_VIDEO_PROMPT  # user text after a video
    layer: int = -1  # index into hidden_states (-1: last layer, after the final norm)
    token_selection: str = "all"  # "all" conversation tokens, or "image" placeholder tokens only
    chat_template_hash: str = ""  # which template rendered the prompt (filled in by the encoder)


class QwenVLEncoder(FrozenEncoder):
    """A frozen Qwen2.5-VL -> ``(hidden [B, T, vlm_dim], mask [B, T] bool)``."""

    kind = "qwen2.5-vl"

    def __init__(self, model, processor, preprocess: QwenPreprocess, model_id: str, revision: str = "random",
                 device=None):
        if preprocess.token_selection not in TOKEN_SELECTIONS:
            raise ValueError(f"token_selection must be one of {list(TOKEN_SELECTIONS)}, "
                             f"got {preprocess.token_selection!r}")
        n_states = int(model.config.text_config.num_hidden_layers) + 1
        if not -n_states <= preprocess.layer < n_states:
            raise ValueError(f"layer {preprocess.layer} out of range for {n_states} hidden states "
                             f"(0 = embeddings, -1 = last layer)")
        factor = processor.image_processor.patch_size * processor.image_processor.merge_size
        preprocess = replace(  # unset minimums: the processor's own (capped at the budget)
            preprocess,
            min_pixels=preprocess.min_pixels or min(_min_pixels(processor.image_processor, factor),
                                                    preprocess.max_pixels),
            video_min_pixels=preprocess.video_min_pixels or min(
                _min_pixels(getattr(processor, "video_processor", None), factor), preprocess.video_max_pixels))
        for lo, hi in (("min_pixels", "max_pixels"), ("video_min_pixels", "video_max_pixels")):
            if not factor * factor <= getattr(preprocess, lo) <= getattr(preprocess, hi):
                raise ValueError(f"Qwen needs (patch*merge)^2={factor * factor} <= {lo} <= {hi}; got "
                                 f"{lo}={getattr(preprocess, lo)}, {hi}={getattr(preprocess, hi)}")
        template = processor.chat_template if isinstance(processor.chat_template, str) else str(
            processor.chat_template)
        self.preprocess = replace(preprocess, chat_template_hash=stable_hash(template or ""))
        self.factor = factor
        super().__init__(model, model_id, revision, device)
        self.processor = processor
        self._text = {}

    # ------------------------------------------------------------------ constructors
    @classmethod
    def random(cls, vlm_dim: int, seed: int = 0, image_size: int = 16, video_size: int | None = None, device=None,
               model_id: str = "tiny-random-qwen2.5-vl", **options) -> "QwenVLEncoder":
        """Seeded random tiny model + the in-memory mini processor (global RNG untouched)."""
        from transformers import Qwen2_5_VLForConditionalGeneration

        processor = mini_processor()
        model = seeded_model(Qwen2_5_VLForConditionalGeneration, tiny_qwen_config(vlm_dim, processor), seed)
        pre = qwen_preprocess(image_size, video_size or image_size, options)
        return cls(model, processor, pre, model_id=model_id, revision=f"seed{seed}", device=device)

    @classmethod
    def from_pretrained(cls, model_id: str = FULL_VLM_ID, revision: str | None = None, device=None, dtype=None,
                        image_size: int = 448, video_size: int = 224, **options) -> "QwenVLEncoder":
        """Real weights + processor (local dir or hub id, ``HF_HUB_OFFLINE`` respected); missing -> one
        FileNotFoundError naming the model id and the fetch command."""
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        model, resolved = pretrained_model(Qwen2_5_VLForConditionalGeneration.from_pretrained, model_id, revision,
                                           dtype=dtype)
        processor = load_pretrained(AutoProcessor.from_pretrained, model_id, revision)
        pre = qwen_preprocess(image_size, video_size, options)
        return cls(model, processor, pre, model_id=model_id, revision=resolved, device=device)

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        return int(self.model.config.text_config.hidden_size)

    def key_extras(self) -> dict:
        return {"image_processor": processor_digest(self.processor)}

    # ------------------------------------------------------------------ inputs
    def chat_text(self, video: bool) -> str:
        """The prompt rendered through the chat template (one user turn: image/video + text)."""
        if video not in self._text:
            pre = self.preprocess
            content = [{"type": "video" if video else "image"},
                       {"type": "text", "text": pre.video_prompt if video else pre.prompt}]
            self._text[video] = self.processor.apply_chat_template(
                [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True)
        return self._text[video]

    def input_size(self, height: int, width: int, video: bool = False) -> tuple[int, int]:
        """The ``(height, width)`` an image (or clip frame) of that size is resized to: the processor's
        ``smart_resize`` with this encoder's patch*merge factor and pixel bounds."""
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        pre = self.preprocess
        lo, hi = (pre.video_min_pixels, pre.video_max_pixels) if video else (pre.min_pixels, pre.max_pixels)
        return smart_resize(int(height), int(width), factor=self.factor, min_pixels=lo, max_pixels=hi)

    def build_inputs(self, pixels) -> dict:
        """Processor inputs for images ``[B,3,H,W]`` or clips ``[B,3,F,H,W]`` in [0, 1]."""
        video = pixels.ndim == 5
        if pixels.ndim not in (4, 5) or pixels.shape[1] != 3:
            raise ValueError(f"QwenVLEncoder expects images [B,3,H,W] or clips [B,3,F,H,W], got {tuple(pixels.shape)}")
        height, width = self.input_size(*pixels.shape[-2:], video=video)
        x = pixels.detach().float().cpu()
        if video:  # [B, 3, F, H, W] -> [B*F, 3, H, W] for resizing
            B, _, n_frames = x.shape[:3]
            x = x.permute(0, 2, 1, 3, 4).reshape(B * n_frames, 3, *x.shape[-2:])
        if tuple(x.shape[-2:]) != (height, width):
            x = F.interpolate(x, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
        x = x.clamp(0, 1)
        text = [self.chat_text(video)] * len(pixels)
        common = dict(text=text, return_tensors="pt", padding=True, do_rescale=False, do_resize=False)
        if video:
            clips = list(x.reshape(B, n_frames, 3, height, width))  # each [F, 3, h, w]
            extra = {}
            if hasattr(type(self.processor.video_processor), "cap_pixels_per_frame"):
                extra["cap_pixels_per_frame"] = True  # no effect without resizing; silences the 5.x warning
            batch = self.processor(videos=clips, do_sample_frames=False, **common, **extra)
        else:
            batch = self.processor(images=list(x), **common)
        out = {}
        for k, v in batch.items():
            if isinstance(v, torch.Tensor):
                v = v.to(self.device)
                if v.is_floating_point():
                    v = v.to(self.dtype)
                out[k] = v
        return out

    # ------------------------------------------------------------------ forward
    def __call__(self, pixels):
        inputs = self.build_inputs(pixels)
        with torch.inference_mode():
            out = self.model.model(**inputs, output_hidden_states=True, return_dict=True)
        hidden = out.hidden_states[self.preprocess.layer]  # [B, L, vlm_dim]
        ids = inputs["input_ids"]
        if self.preprocess.token_selection == "image":
            cfg = self.model.config
            keep = (ids == cfg.image_token_id) | (ids == cfg.video_token_id)
        else:
            keep = inputs["attention_mask"].bool()
        return pack_left(hidden, keep)


def _min_pixels(proc, factor: int) -> int:
    """A Qwen2-VL image/video processor's own lower pixel bound (``size["shortest_edge"]``), else one merged patch."""
    size = getattr(proc, "size", None)
    value = size.get("shortest_edge") if isinstance(size, dict) else getattr(size, "shortest_edge", None)
    return int(value or getattr(proc, "min_pixels", None) or factor * factor)


def qwen_preprocess(image_size: int, video_size: int, options: dict) -> QwenPreprocess:
    """``image_size``/``video_size`` are the side of the square pixel budget unless max pixels are given."""
    options = dict(options)
    options.setdefault("max_pixels", int(image_size) ** 2)
    options.setdefault("video_max_pixels", int(video_size) ** 2)
    return QwenPreprocess(**options)


def pack_left(hidden, keep):
    """Move the kept positions of each row to the front: -> ``(packed [B, T, D], mask [B, T])``, T = max kept."""
    counts = keep.sum(1)  # [B]
    T = int(counts.max()) if len(counts) else 0
    packed = hidden.new_zeros(hidden.shape[0], T, hidden.shape[-1])
    mask = torch.zeros(hidden.shape[0], T, dtype=torch.bool, device=hidden.device)
    for i in range(hidden.shape[0]):
        n = int(counts[i])
        packed[i, :n] = hidden[i][keep[i]]
        mask[i, :n] = True
    return packed, mask


def processor_digest(processor) -> str:
    """Hash of the image/video processor settings (resize, mean/std, patch sizes) and the tokenizer vocab size."""
    parts = {}
    for name in ("image_processor", "video_processor"):
        proc = getattr(processor, name, None)
        if proc is not None:
            d = proc.to_dict()
            parts[name] = {k: d[k] for k in sorted(d) if k in {
                "image_mean", "image_std", "patch_size", "merge_size", "temporal_patch_size", "rescale_factor",
                "do_normalize", "do_convert_rgb", "resample"}}
    parts["vocab"] = len(processor.tokenizer)
    return stable_hash(parts, 12)
