"""Behaviour of every registered adapter kind (parametrized over the registry), at the mini preset's dims."""
import inspect
import json
import math

import pytest
import torch

from c2bridge.adapters import ADAPTERS, Adapter, build_adapter, build_adapter_for_preset, load_adapter
from c2bridge.adapters.moe import MoEMLP

from adapter_helpers import MINI, make_inputs

KINDS = list(ADAPTERS)


def build(kind, budget="10m", **kw):
    kw.setdefault("seed", 0)
    return build_adapter_for_preset(kind, budget, MINI, **kw)


def test_registry_has_the_five_kinds():
    assert KINDS == ["query", "bottleneck", "lora", "perceiver", "moe"]
    assert all(issubclass(cls, Adapter) and cls.kind == name for name, cls in ADAPTERS.items())


@pytest.mark.parametrize("kind", KINDS)
def test_output_shape_and_counts(kind, inputs):
    adapter = build(kind)
    vlm, dino, mask = inputs
    cond = adapter(vlm, dino, mask)
    assert cond.shape == (3, MINI.n_tokens, MINI.cond_dim)
    assert torch.isfinite(cond).all()
    assert adapter(vlm, dino).shape == cond.shape  # mask optional
    assert adapter.num_params == sum(p.numel() for p in adapter.parameters())
    assert 0 < adapter.active_params <= adapter.num_params
    assert adapter.config["kind"] == kind
    json.dumps(adapter.config)  # JSON-able


@pytest.mark.parametrize("kind", KINDS)
def test_n_tokens_option_and_full_default_dims(kind):
    adapter = build(kind, n_tokens=5)
    vlm, dino, mask = make_inputs(batch=2)
    assert adapter(vlm, dino, mask).shape == (2, 5, MINI.cond_dim)
    full = build_adapter(kind, "5M", seed=0)  # the default dims
    out = full(torch.randn(1, 9, 3584), torch.randn(1, 256, 1024), torch.ones(1, 9, dtype=torch.bool))
    assert out.shape == (1, 77, 4096) and torch.isfinite(out).all()


@pytest.mark.parametrize("kind", KINDS)
def test_padding_invariance(kind, inputs):
    adapter = build(kind).eval()
    vlm, dino, mask = inputs
    ref = adapter(vlm, dino, mask)
    noisy = vlm.clone()
    noisy[~mask] = 100.0 * torch.randn(int((~mask).sum()))[:, None].expand(-1, vlm.shape[-1])
    assert torch.equal(adapter(noisy, dino, mask), ref)  # bit-identical: masked keys get exactly zero weight
    # the padded content does change the output when the mask is not given (so the check above can fail)
    assert not torch.allclose(adapter(noisy, dino), adapter(vlm, dino), atol=1e-4)
    # and padding length does not matter: sample 1 alone, unpadded, gives the same output
    n1 = int(mask[1].sum())
    alone = adapter(vlm[1:2, :n1], dino[1:2], mask[1:2, :n1])
    torch.testing.assert_close(alone[0], ref[1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_batch_independence(kind, inputs):
    adapter = build(kind).eval()
    vlm, dino, mask = inputs
    batched = adapter(vlm, dino, mask)
    for i in range(vlm.shape[0]):
        single = adapter(vlm[i:i + 1], dino[i:i + 1], mask[i:i + 1])
        torch.testing.assert_close(single[0], batched[i], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_reach_every_parameter(kind):
    adapter = build(kind).train()
    vlm, dino, mask = make_inputs(batch=4, T=9)
    cond = adapter(vlm, dino, mask)
    (cond.square().mean() + adapter.aux_loss).backward()
    missing = [n for n, p in adapter.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("kind", KINDS)
def test_all_false_mask_row_is_finite(kind):
    adapter = build(kind)
    vlm, dino, mask = make_inputs(batch=2, T=5)
    mask[0] = False  # sample 0 has DINOv2 tokens only
    cond = adapter(vlm, dino, mask)
    assert torch.isfinite(cond).all()
    cond.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in adapter.parameters() if p.grad is not None)
    empty = adapter(vlm[:, :0], dino, mask[:, :0])  # T = 0 is valid too
    assert empty.shape == cond.shape and torch.isfinite(empty).all()
    torch.testing.assert_close(empty[0], cond[0].detach(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(kind, tmp_path, inputs):
    adapter = build(kind).eval()
    vlm, dino, mask = inputs
    adapter.save_pretrained(tmp_path / "a")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["adapter_config.json", "model.safetensors"]
    loaded = load_adapter(tmp_path / "a").eval()
    assert type(loaded) is type(adapter) and loaded.config == adapter.config
    assert loaded.num_params == adapter.num_params
    assert torch.equal(loaded(vlm, dino, mask), adapter(vlm, dino, mask))
    again = type(adapter).from_pretrained(tmp_path / "a")
    assert torch.equal(again(vlm, dino, mask), adapter(vlm, dino, mask))
    other = next(cls for name, cls in ADAPTERS.items() if name != kind)
    with pytest.raises(ValueError, match="holds a"):
        other.from_pretrained(tmp_path / "a")


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_adapter(tmp_path / "missing")
    adapter = build("query")
    adapter.save_pretrained(tmp_path / "a")
    cfg = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    (tmp_path / "a" / "adapter_config.json").write_text(json.dumps({**cfg, "kind": "nope"}))
    with pytest.raises(ValueError, match="unknown adapter kind 'nope'"):
        load_adapter(tmp_path / "a")
    (tmp_path / "a" / "adapter_config.json").write_text(json.dumps({**cfg, "width": cfg["width"] * 2}))
    with pytest.raises(ValueError, match="does not match"):
        load_adapter(tmp_path / "a")


def test_save_overwrites_atomically(tmp_path, inputs):
    first, second = build("query", seed=0), build("query", seed=1)
    first.save_pretrained(tmp_path)
    second.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter_config.json", "model.safetensors"]  # no temps
    assert torch.equal(load_adapter(tmp_path)(*inputs), second(*inputs))


@pytest.mark.parametrize("kind", KINDS)
def test_determinism_under_seed(kind, inputs):
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a, b = build(kind, seed=7), build(kind, seed=7)
    after = torch.rand(3)
    torch.testing.assert_close(after, before, rtol=0, atol=0)  # seed= leaves the global RNG alone
    c = build(kind, seed=8)
    for (name, pa), pb, pc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.state_dict().values(), c.state_dict().values()))
    assert torch.equal(a(*inputs), b(*inputs))
    # without seed=, construction under the caller's torch.manual_seed is deterministic too
    torch.manual_seed(3)
    d = build(kind, seed=None)
    torch.manual_seed(3)
    e = build(kind, seed=None)
    assert all(torch.equal(x, y) for x, y in zip(d.state_dict().values(), e.state_dict().values()))


@pytest.mark.parametrize("kind", KINDS)
def test_bf16_forward_on_cpu(kind, inputs):
    adapter = build(kind).eval()
    vlm, dino, mask = inputs
    ref = adapter(vlm, dino, mask)
    low = adapter.to(torch.bfloat16)(vlm.bfloat16(), dino.bfloat16(), mask)
    assert low.dtype == torch.bfloat16 and torch.isfinite(low).all()
    # bf16 keeps ~3 significant digits; MoE may also route a few tokens differently
    assert (low.float() - ref).norm() < (0.15 if kind == "moe" else 0.03) * ref.norm()
    low.float().sum().backward()


@pytest.mark.parametrize("kind", KINDS)
def test_bad_inputs(kind):
    adapter = build(kind)
    vlm, dino, mask = make_inputs(batch=2, T=5)
    cases = [
        ((torch.randn(2, 5, 31), dino, mask), r"vlm must be \[B, T, 32\], got \[2, 5, 31\]"),
        ((vlm[0], dino, mask), r"vlm must be \[B, T, 32\], got \[5, 32\]"),
        ((vlm, torch.randn(2, 64, 63), mask), r"dino must be \[B, 64, 64\].*got \[2, 64, 63\]"),
        ((vlm, torch.randn(2, 49, 64), mask), r"dino must be \[B, 64, 64\].*got \[2, 49, 64\]"),
        ((vlm, dino[:1], mask), "batch sizes disagree: vlm has 2, dino has 1"),
        ((vlm, dino, mask[:, :4]), r"vlm_mask must be \[B, T\] = \[2, 5\].*got \[2, 4\]"),
        ((vlm, dino, mask[:1]), r"vlm_mask must be \[B, T\] = \[2, 5\].*got \[1, 5\]"),
        ((vlm, dino, mask.float()), "vlm_mask must be bool"),
        ((vlm.long(), dino, mask), "floating-point"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            adapter(*args)


@pytest.mark.parametrize("kind", KINDS)
def test_aux_loss_and_active_params(kind, inputs):
    adapter = build(kind)
    assert adapter.aux_loss.shape == ()  # defined before any forward
    adapter(*inputs)
    aux = adapter.aux_loss
    assert aux.shape == () and torch.isfinite(aux)
    if kind != "moe":
        assert aux.item() == 0.0 and adapter.active_params == adapter.num_params
        return
    layers = [m for m in adapter.modules() if isinstance(m, MoEMLP)]
    assert len(layers) == adapter.config["depth"] and layers[0].n_experts == 8 and layers[0].top_k == 2
    assert aux.requires_grad and 0.5 < aux.item() < 8.0  # Switch loss: 1.0 when perfectly balanced
    expert = sum(m.w1.numel() + m.b1.numel() + m.w2.numel() + m.b2.numel() for m in layers)
    assert adapter.active_params == adapter.num_params - expert * 6 // 8  # 6 of 8 experts unused per token


def test_moe_load_balancing_loss_sees_imbalance():
    adapter = build("moe")
    vlm, dino, mask = make_inputs()
    adapter(vlm, dino, mask)
    balanced = adapter.aux_loss.item()
    bias = torch.zeros(8)
    bias[0] = 20.0  # every token prefers expert 0

    def skew(module, args, logits):
        return logits + bias

    hooks = [m.router.register_forward_hook(skew) for m in adapter.modules() if isinstance(m, MoEMLP)]
    adapter(vlm, dino, mask)
    for hook in hooks:
        hook.remove()
    # f_0 = 1/2 (expert 0 takes one of the two slots of every token), P_0 ~ 1: 8 * 1/2 * 1 = 4
    assert balanced < 2.0 and adapter.aux_loss.item() == pytest.approx(4.0, rel=0.02)


@pytest.mark.parametrize("routing", ["token", "sample"])
def test_moe_routing_modes(routing, inputs):
    adapter = build("moe", routing=routing)
    assert adapter(*inputs).shape == (3, MINI.n_tokens, MINI.cond_dim)
    with pytest.raises(ValueError, match="routing"):
        build("moe", budget=None, routing="expert")


@pytest.mark.parametrize("kind", KINDS)
def test_options(kind, inputs):
    base = build(kind).eval()
    vlm, dino, mask = inputs
    ref = base(vlm, dino, mask)
    swapped = build(kind, stream_weights=(0.7, 0.3)).eval()
    assert swapped.num_params == base.num_params  # weights are constants, not parameters
    assert not torch.allclose(swapped(vlm, dino, mask), ref, atol=1e-5)
    no_pos = build(kind, budget=None, pos_emb=False, **_shape_of(base))
    with_pos = build(kind, budget=None, **_shape_of(base))
    width = _grid_width(base)
    assert with_pos.num_params - no_pos.num_params == 2 * math.isqrt(MINI.n_patches) * width
    dropped = build(kind, dropout=0.5).train()
    assert dropped.config["dropout"] == 0.5
    assert not torch.equal(dropped(vlm, dino, mask), dropped(vlm, dino, mask))
    dropped.eval()
    assert torch.equal(dropped(vlm, dino, mask), dropped(vlm, dino, mask))


def _shape_of(adapter):
    keys = ("width", "rank", "depth", "ffn_dim", "hidden_dim", "expert_dim", "shared_dim", "n_heads")
    return {k: v for k, v in adapter.config.items() if k in keys}


def _grid_width(adapter):
    """Width of the tokens the position embedding is added to."""
    cfg = adapter.config
    if adapter.kind == "lora":
        return cfg["rank"]
    if adapter.kind == "bottleneck":
        return cfg["width"] // 2
    return cfg["width"]


@pytest.mark.parametrize("kind", ["query", "perceiver", "moe"])
def test_type_embedding_option(kind):
    a = build(kind, budget=None, width=16, depth=2)
    b = build(kind, budget=None, width=16, depth=2, type_emb=False)
    assert a.num_params - b.num_params == 2 * 16


@pytest.mark.parametrize("kind", ["bottleneck", "lora"])
def test_spatial_false_is_the_plans_mean_pooling(kind, inputs):
    adapter = build(kind, spatial=False).eval()
    vlm, dino, mask = inputs
    cond = adapter(vlm, dino, mask)
    assert cond.shape == (3, MINI.n_tokens, MINI.cond_dim) and torch.isfinite(cond).all()
    # mean pooling: permuting the patches leaves the output unchanged (no spatial information) ...
    perm = torch.randperm(MINI.n_patches, generator=torch.Generator().manual_seed(0))
    no_pos = build(kind, spatial=False, pos_emb=False).eval()
    torch.testing.assert_close(no_pos(vlm, dino[:, perm], mask), no_pos(vlm, dino, mask), rtol=1e-4, atol=1e-5)
    # ... while the default (spatial) adapter sees the permutation even without position embeddings
    spatial = build(kind, pos_emb=False).eval()
    torch.testing.assert_close(spatial(vlm, dino[:, perm], mask), spatial(vlm, dino, mask), rtol=1e-4, atol=1e-5)
    spatial_pos = build(kind).eval()
    assert not torch.allclose(spatial_pos(vlm, dino[:, perm], mask), spatial_pos(vlm, dino, mask), atol=1e-4)


def test_unknown_kind_and_option():
    with pytest.raises(ValueError, match="unknown adapter kind 'mlp'"):
        build_adapter("mlp", 1e6)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['widht'\]"):
        build_adapter("query", 1e6, widht=3)
    with pytest.raises(ValueError, match="2-D position embeddings need a square"):
        build_adapter("query", None, n_patches=50)
    with pytest.raises(ValueError, match="dropout"):
        build_adapter("query", None, dropout=1.5)
    for kind in ("query", "perceiver", "moe"):  # the attention kinds: zero heads is one clear line, not a crash
        with pytest.raises(ValueError, match="n_heads must be a positive int"):
            build_adapter(kind, None, n_heads=0, device="meta")


def test_config_records_every_constructor_argument_once():
    # the kind's own options and the shared ones (Adapter.__init__), defaults included, resolved where None
    adapter = build_adapter("query", None, dropout=0, stream_weights=(1, 1), device="meta")
    cfg = adapter.config
    assert cfg["kind"] == "query" and cfg["dropout"] == 0.0 and isinstance(cfg["dropout"], float)
    assert cfg["stream_weights"] == [1.0, 1.0] and cfg["ffn_dim"] == 4 * cfg["width"] and cfg["n_heads"] >= 1
    signature = set(inspect.signature(type(adapter).__init__).parameters) - {"self"}
    assert set(cfg) - {"kind"} == signature  # nothing hand-assembled, nothing missing
    with torch.device("meta"):
        assert type(adapter)(**{k: v for k, v in cfg.items() if k != "kind"}).config == cfg  # round trip
