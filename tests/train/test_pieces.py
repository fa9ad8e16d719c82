"""Unit tests of the harness pieces that need no training run: view selection, checkpoint crash recovery,
loss combination, optional integrations."""
import importlib.util

import pytest
import torch

from c2bridge.train.config import load_config


class _FakeCache:
    """Two samples with two augmented views each; every tensor row holds its own cache index."""

    sample_ids = ["a#v0", "a#v1", "b#v0", "b#v1"]
    stored_bytes = 0

    def load_all(self):
        rows = torch.arange(4.0)
        return {"vlm": rows.view(4, 1, 1).expand(4, 3, 2).clone(), "vlm_mask": torch.ones(4, 3, dtype=torch.bool),
                "dino": rows.view(4, 1, 1), "target": rows.view(4, 1, 1, 1), "latent": rows.view(4, 1)}


def test_one_view_per_sample_per_epoch_fixed_by_seed_and_epoch():
    from c2bridge.encoders.cache import group_views
    from c2bridge.train.loop import _Samples

    cache = _FakeCache()
    groups = group_views(cache.sample_ids)
    assert groups == [[0, 1], [2, 3]]
    samples = _Samples(cache, groups, load_config({"preset": "tiny"}), bridge=None, device=torch.device("cpu"))
    picks = {e: samples.batch([0, 1], epoch=e)["dino"].flatten().tolist() for e in range(12)}
    assert all(p[0] in (0, 1) and p[1] in (2, 3) for p in picks.values())  # one view of each sample
    assert picks == {e: samples.batch([0, 1], epoch=e)["dino"].flatten().tolist() for e in range(12)}  # repeatable
    assert len({p[0] for p in picks.values()}) == 2  # over epochs both views of a sample are used
    assert group_views(cache.sample_ids, limit=1) == [[0, 1]]  # limit counts samples, not views


def test_interrupted_best_swap_is_repaired(tmp_path):
    from c2bridge.train.checkpoint import clean_stale

    root = tmp_path / "checkpoints"
    (root / ".best.old").mkdir(parents=True)  # a kill between the two renames of save_best
    (root / ".best.old" / "best.json").write_text("{}")
    (root / ".step_00000004.x.tmp").mkdir()  # a half-written step checkpoint
    clean_stale(root)
    assert sorted(p.name for p in root.iterdir()) == ["best"] and (root / "best" / "best.json").exists()


def test_losses_combine_with_their_weights():
    from c2bridge.train.losses import combine_losses, distillation_loss

    cfg = load_config({"preset": "tiny", "distill": {"teacher": "x", "weight": 0.5, "recon_weight": 2.0},
                       "loss": {"moe_aux_weight": 0.1}})
    total, parts = combine_losses(cfg, recon=torch.tensor(1.0), recon_parts={"flow": 1.0, "total": 1.0},
                                  aux=torch.tensor(3.0), distill=torch.tensor(4.0))
    assert float(total) == pytest.approx(2.0 * 1 + 0.5 * 4 + 0.1 * 3)
    assert parts == {"recon": 1.0, "recon_flow": 1.0, "distill": 4.0, "moe_aux": 3.0}
    s, t = torch.randn(2, 4, 8), torch.randn(2, 4, 8)
    assert float(distillation_loss(s, s)) == 0 and float(distillation_loss(s, t, "cosine")) > 0
    with pytest.raises(ValueError, match="equal token shapes"):
        distillation_loss(s, t[:, :3])


def test_missing_tensorboard_or_wandb_is_a_clear_error(monkeypatch):
    from c2bridge.train.logging import check_integrations

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.split(".")[0] in ("tensorboard", "wandb") else real(name, *a))
    with pytest.raises(ValueError, match=r"c2bridge\[tensorboard\]"):
        check_integrations(load_config({"preset": "tiny", "log": {"tensorboard": True}}).log)
    with pytest.raises(ValueError, match=r"c2bridge\[wandb\]"):
        check_integrations(load_config({"preset": "tiny", "log": {"wandb": True}}).log)
    check_integrations(load_config({"preset": "tiny"}).log)  # nothing asked for: nothing needed
