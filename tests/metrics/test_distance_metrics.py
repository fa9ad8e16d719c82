"""Distances (LPIPS offline behaviour, 1 − SSIM fallback, multi-scale) and SSIM/PSNR."""
import os

import pytest
import torch

from c2bridge.metrics import distance as dist_mod
from c2bridge.metrics import get_distance, psnr, ssim


def test_backbone_table_matches_torchvision():
    from torchvision import models

    enums = {"alex": models.AlexNet_Weights, "vgg": models.VGG16_Weights, "squeeze": models.SqueezeNet1_1_Weights}
    for net, (filename, url) in dist_mod.LPIPS_BACKBONES.items():
        assert enums[net].IMAGENET1K_V1.url == url
        assert os.path.basename(url) == filename


@pytest.mark.parametrize("name,filename", [("lpips_alex", "alexnet-owt-7be5be79.pth"),
                                           ("lpips_vgg", "vgg16-397923af.pth"),
                                           ("ms_lpips_alex", "alexnet-owt-7be5be79.pth")])
def test_lpips_offline_error_names_the_file(empty_torch_home, monkeypatch, name, filename):
    import lpips

    def no_construction(*a, **k):  # the check must fire before lpips/torchvision try to download
        raise AssertionError("lpips.LPIPS was constructed without its backbone file")

    monkeypatch.setattr(lpips, "LPIPS", no_construction)
    expected = empty_torch_home / "hub" / "checkpoints" / filename
    with pytest.raises(FileNotFoundError) as info:
        get_distance(name)
    message = str(info.value)
    assert str(expected) in message and "download.pytorch.org" in message and "one_minus_ssim" in message


def test_named_fallback_is_reported(empty_torch_home):
    d = get_distance("lpips_alex", fallback="one_minus_ssim")
    assert d.name == "one_minus_ssim"
    assert dist_mod.resolve_distance_name("lpips_vgg", "one_minus_ssim") == "one_minus_ssim"
    assert get_distance("ms_lpips_vgg", fallback="one_minus_ssim").name == "one_minus_ssim"


def test_lossspec_resolves_fallback(empty_torch_home):
    from c2bridge.decoder import LossSpec

    spec = LossSpec.named("lpips_l2", perceptual="lpips_vgg", perceptual_fallback="one_minus_ssim")
    resolved = spec.resolve()
    assert resolved.perceptual == "one_minus_ssim" and "one_minus_ssim" in resolved.describe()
    assert resolved.to_dict()["perceptual"] == "one_minus_ssim"
    with pytest.raises(FileNotFoundError, match="vgg16-397923af.pth"):
        LossSpec.named("lpips", perceptual="lpips_vgg").resolve()
    assert LossSpec().resolve() == LossSpec()  # flow needs no perceptual net


def test_lpips_with_backbone_file_on_disk(empty_torch_home):
    """With the backbone file present, LPIPS builds offline (here a random-weight AlexNet stands in for the
    ImageNet file: the plumbing is what is tested) and every weight is frozen."""
    from torchvision.models import alexnet

    path = dist_mod.lpips_backbone_path("alex")
    path.parent.mkdir(parents=True)
    torch.save(alexnet().state_dict(), path)
    d = get_distance("lpips_alex")
    assert d.name == "lpips_alex"
    assert all(not p.requires_grad for p in d.parameters())
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    assert d(x, x).abs().max() < 1e-6
    assert d(x, y).shape == (2,) and (d(x, y) > 0).all()
    out_of_range = x * 3 - 1
    assert torch.equal(d(out_of_range, y), d(out_of_range.clamp(0, 1), y))  # inputs are clamped to [0, 1]
    clip_x, clip_y = torch.stack([x, y], dim=2), torch.stack([y, y], dim=2)  # [B, 3, 2, H, W]
    torch.testing.assert_close(d(clip_x, clip_y), (d(x, y) + d(y, y)) / 2)
    assert get_distance("ms_lpips_alex")(x, y).shape == (2,)
    assert get_distance("lpips_alex") is d  # built once per backbone file

    # as a training loss: gradients reach the conditioning, never the LPIPS weights or the decoder
    from c2bridge.decoder import LossSpec, LTXBridge

    bridge = LTXBridge.from_preset("tiny", seed=0)
    cond = torch.randn(2, 8, 32, requires_grad=True)
    spec = LossSpec.named("lpips_l2", perceptual="lpips_alex")
    loss, parts = bridge.training_loss(cond, None, bridge.encode_latents(x), x, loss=spec)
    loss.backward()
    assert parts["lpips"] > 0 and cond.grad.abs().sum() > 0
    assert all(p.grad is None for p in d.parameters()) and all(p.grad is None for p in bridge.parameters())


def test_ssim_psnr_and_one_minus_ssim():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 32, 32, generator=g)
    noisy = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert torch.allclose(ssim(x, x), torch.ones(3))
    assert (ssim(noisy, x) < 0.99).all()
    assert torch.isinf(psnr(x, x)).all()
    mse = (noisy - x).pow(2).flatten(1).mean(1)
    torch.testing.assert_close(psnr(noisy, x), 10 * torch.log10(1 / mse))
    d = get_distance("one_minus_ssim")
    torch.testing.assert_close(d(noisy, x), 1 - ssim(noisy, x))
    ms = get_distance("ms_one_minus_ssim")
    assert ms.name == "ms_one_minus_ssim" and ms(x, x).abs().max() < 1e-6 and ms(noisy, x).shape == (3,)
    with pytest.raises(ValueError, match="differ in shape"):
        d(x, x[:, :, :16])
    with pytest.raises(ValueError, match="unknown distance"):
        get_distance("lpips_resnet")
