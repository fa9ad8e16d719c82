"""`c2bridge reconstruct` on the tiny preset: images of any kind and a video in, reconstructions + side-by-sides +
metrics out; every bad input is one error line while the others still run."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from c2bridge.cli import main


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from c2bridge.pipeline import save_video

    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 50, 4), dtype=np.uint8), "RGBA").save(d / "rgba.png")
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8), "L").save(d / "gray.png")
    clip = torch.from_numpy(rng.random((3, 3, 48, 64), dtype=np.float32))  # [F, 3, H, W]
    save_video(clip, d / "clip.mp4", 25)
    (d / "empty.png").write_bytes(b"")
    (d / "notes.txt").write_text("not a picture")
    (d / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 garbage")
    Image.new("L", (100, 100)).save(d / "bomb.png")  # a bomb once MAX_IMAGE_PIXELS is lowered below
    return d


def _run(capsys, *argv):
    code = main(["reconstruct", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if "error:" in line]


def test_good_and_bad_inputs(tmp_path, inputs, tiny_package, capsys, monkeypatch):
    from c2bridge.metrics import psnr
    from c2bridge.pipeline import read_video

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # bomb.png: 10,000 pixels; the others <= 4,096
    out = tmp_path / "out"
    names = ["rgba.png", "empty.png", "gray.png", "notes.txt", "bomb.png", "clip.mp4", "broken.mp4", "missing.png"]
    code, stdout, errors = _run(capsys, *[inputs / n for n in names], "--adapter", tiny_package, "--preset", "tiny",
                                "--out", out, "--steps", "2", "--seed", "1")
    monkeypatch.undo()
    assert code == 2  # some inputs failed
    assert len(errors) == 5, errors  # exactly one line per bad input
    for name, reason in [("empty.png", "empty file (0 bytes)"), ("notes.txt", "not an image PIL can read"),
                         ("bomb.png", "decompression bomb"), ("broken.mp4", "not a video PyAV can decode"),
                         ("missing.png", "no such file")]:
        assert any(name in line and reason in line for line in errors), (name, errors)
    assert "3/8 reconstructed" in stdout

    report = json.loads((out / "metrics.json").read_text())
    assert report["preset"] == "tiny" and report["steps"] == 2 and report["seed"] == 1
    done = {k: v for k, v in report["inputs"].items() if v["status"] == "completed"}
    assert {k.rsplit("/", 1)[-1] for k in done} == {"rgba.png", "gray.png", "clip.mp4"}
    failed = [v for v in report["inputs"].values() if v["status"] == "failed"]
    assert len(failed) == 5 and all(v["error"] for v in failed)
    for record in done.values():
        assert record["distance_name"] == report["distance"]
        assert 0 <= record["ssim"] <= 1 and record["psnr"] > 0 and 0 <= record["distance"] <= 2
    for stem in ("rgba", "gray"):
        assert (out / f"{stem}.recon.png").is_file() and (out / f"{stem}.side_by_side.png").is_file()
    # the reported PSNR is the reconstruction's against the input at the decoder's size (up to 8-bit rounding)
    gray = report["inputs"][str(inputs / "gray.png")]
    recon = torch.from_numpy(np.array(Image.open(out / "gray.recon.png"))).permute(2, 0, 1).float()[None] / 255
    target = torch.from_numpy(np.array(Image.open(inputs / "gray.png").resize((32, 32), Image.BILINEAR))).float()
    target = target.expand(1, 3, 32, 32) / 255
    assert float(psnr(recon, target)[0]) == pytest.approx(gray["psnr"], abs=1.0)
    frames, rate = read_video(out / "clip.recon.mp4")
    assert frames.shape == (3, 32, 32, 3) and rate == 25
    assert read_video(out / "clip.side_by_side.mp4")[0].shape == (3, 32, 64, 3)
    clip_record = report["inputs"][str(inputs / "clip.mp4")]
    assert clip_record["frames"] == 3 and clip_record["flicker"] >= 0 and clip_record["warp_error"] >= 0
    assert "flicker" not in gray  # temporal metrics only for clips
    side = Image.open(out / "rgba.side_by_side.png")
    assert side.size[0] > side.size[1]  # input | reconstruction


def test_missing_adapter_dir_is_one_line_and_writes_nothing(tmp_path, inputs, capsys):
    out = tmp_path / "out"
    code, _, errors = _run(capsys, inputs / "gray.png", "--adapter", tmp_path / "nope", "--out", out)
    assert code == 2 and len(errors) == 1 and "adapter dir" in errors[0] and "does not exist" in errors[0]
    assert not out.exists()


def test_all_inputs_bad_writes_no_metrics(tmp_path, inputs, tiny_package, capsys):
    out = tmp_path / "out"
    code, _, errors = _run(capsys, inputs / "empty.png", "--adapter", tiny_package, "--preset", "tiny", "--out", out)
    assert code == 2 and len(errors) == 1
    assert not (out / "metrics.json").exists()
