"""Checkpoints never lie: checksums recorded per checkpoint, a damaged newest checkpoint is passed over (with a
message) for the newest intact one, optimizer state without pickle, byte-reproducible files with normal permissions.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file

from c2bridge.train import checkpoint as ckpt_io
from c2bridge.train import train


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class _Adapter(torch.nn.Module):
    """The smallest thing with ``save_pretrained`` (adapter_config.json + model.safetensors)."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 3)

    def save_pretrained(self, directory):
        from c2bridge._io import atomic_write_json, save_safetensors

        save_safetensors(directory / "model.safetensors", {k: v.detach().contiguous()
                                                           for k, v in self.state_dict().items()},
                         metadata={"format": "pt", "kind": "test", "note": "several keys: order must not vary"})
        atomic_write_json(directory / "adapter_config.json", {"kind": "test"})


def _trained(seed=0):
    torch.manual_seed(seed)
    adapter = _Adapter()
    opt = torch.optim.AdamW(adapter.parameters(), lr=1e-2, betas=(0.9, 0.95))
    for _ in range(3):
        opt.zero_grad()
        adapter.lin(torch.randn(2, 4)).pow(2).sum().backward()
        opt.step()
    return adapter, opt


def _save(root, step, adapter, opt, keep_last=5):
    rng = {"torch_cpu": torch.get_rng_state(), "noise": torch.Generator().manual_seed(1).get_state()}
    return ckpt_io.save_checkpoint(root, step, adapter, opt, {"mixup_rng": {"a": 1}}, rng, keep_last=keep_last)


def test_optimizer_state_round_trips_without_pickle(tmp_path):
    adapter, opt = _trained()
    path = _save(tmp_path, 3, adapter, opt)
    assert not list(path.rglob("*.pt"))  # nothing torch.save'd (i.e. pickled)
    loaded = ckpt_io.load_checkpoint(path)["optimizer"]
    original = opt.state_dict()
    assert loaded["param_groups"] == original["param_groups"]  # incl. betas as a tuple, int param ids
    assert loaded["state"].keys() == original["state"].keys()
    for i, entry in original["state"].items():
        for name, value in entry.items():
            assert torch.equal(loaded["state"][i][name], value) and loaded["state"][i][name].dtype == value.dtype
    fresh = torch.optim.AdamW(_Adapter().parameters(), lr=1.0)
    fresh.load_state_dict(loaded)  # what the trainer does on resume
    assert fresh.state_dict()["param_groups"][0]["betas"] == (0.9, 0.95)


def test_checkpoint_files_are_reproducible_with_normal_permissions(tmp_path):
    """The same state written twice gives byte-identical files (safetensors metadata order included), each
    0666 & ~umask like the JSON files, in a step dir with normal permissions (not mkdtemp's 0700)."""
    for name in ("a", "b"):
        adapter, opt = _trained()
        _save(tmp_path / name, 3, adapter, opt)
    a, b = tmp_path / "a" / "step_00000003", tmp_path / "b" / "step_00000003"
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert {str(f) for f in files} >= {"optimizer.safetensors", "optimizer.json", "rng.safetensors",
                                       "trainer_state.json", "checksums.json", "adapter/model.safetensors"}
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
        assert (a / rel).stat().st_mode & 0o777 == 0o666 & ~_umask(), rel
    assert a.stat().st_mode & 0o777 == 0o777 & ~_umask()


def test_adapter_weights_are_byte_reproducible_with_normal_permissions(tmp_path):
    """save_pretrained of the same adapter twice: identical bytes (safetensors keeps metadata in a hash map, so
    without sorting its order changes from save to save), mode 0666 & ~umask."""
    from c2bridge.adapters import build_adapter

    names = "abcdef"  # several saves: an unsorted hash-map order would differ between some of them
    for name in names:
        torch.manual_seed(0)
        build_adapter("query", "5m", vlm_dim=32, dino_dim=32, out_dim=32, n_tokens=4, n_patches=16) \
            .save_pretrained(tmp_path / name)
    a = tmp_path / "a" / "model.safetensors"
    assert all((tmp_path / n / "model.safetensors").read_bytes() == a.read_bytes() for n in names)
    assert a.stat().st_mode & 0o777 == (tmp_path / "a" / "adapter_config.json").stat().st_mode & 0o777 \
        == 0o666 & ~_umask()


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "unlisted"])
def test_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, damage):
    adapter, opt = _trained()
    _save(tmp_path, 2, adapter, opt)
    newest = _save(tmp_path, 4, adapter, opt)
    target = newest / {"flip": "adapter/model.safetensors", "truncate": "optimizer.safetensors",
                       "delete": "rng.safetensors", "unlisted": "extra.bin"}[damage]
    if damage == "flip":
        data = bytearray(target.read_bytes())
        data[-3] ^= 0x01
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:20])
    elif damage == "delete":
        target.unlink()
    else:
        target.write_bytes(b"?")
    with pytest.raises(ckpt_io.CorruptCheckpoint, match="step_00000004 is damaged"):
        ckpt_io.load_checkpoint(newest)
    path, skipped = ckpt_io.latest_intact_checkpoint(tmp_path)
    assert path.name == "step_00000002"
    assert len(skipped) == 1 and "step_00000004" in skipped[0] and target.name in skipped[0]
    # every checkpoint damaged: none left (the run starts over), each one named
    (tmp_path / "step_00000002" / "trainer_state.json").write_text("{")
    path, skipped = ckpt_io.latest_intact_checkpoint(tmp_path)
    assert path is None and len(skipped) == 2


def test_checkpoint_without_checksums_still_loads_and_is_checked_by_parsing(tmp_path):
    """Checkpoints written before checksums existed (optimizer.pt, no checksums.json) still resume."""
    adapter, opt = _trained()
    path = _save(tmp_path, 2, adapter, opt)
    (path / "checksums.json").unlink()
    for name in ("optimizer.safetensors", "optimizer.json"):
        (path / name).unlink()
    torch.save(opt.state_dict(), path / "optimizer.pt")
    assert ckpt_io.latest_intact_checkpoint(tmp_path) == (path, [])
    (path / "optimizer.pt").write_bytes(b"garbage")  # no checksum, but it does not load: passed over
    found, skipped = ckpt_io.latest_intact_checkpoint(tmp_path)
    assert found is None and "does not load" in skipped[0]


def _cli(args):
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "c2bridge.cli", "train", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_flipped_byte_in_the_newest_checkpoint_resumes_from_the_previous(tiny_config, tmp_path, capsys):
    """A real `c2bridge train` SIGKILLed after its step-4 checkpoint; a byte of that checkpoint's adapter flipped
    on disk; --resume says so, continues from step 2 and ends bit-identical to an uninterrupted run."""
    total = 6
    cfg = tiny_config(**{"optim.max_steps": total, "checkpoint.every_steps": 2, "checkpoint.keep_last": 3,
                         "eval.every_steps": 3, "adapter.dropout": 0.1, "debug.sleep_per_step": 0.4})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    proc = _cli([str(path), "--out", str(run)])
    deadline = time.time() + 120
    while not (run / "checkpoints" / "step_00000004").is_dir():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "no step-4 checkpoint appeared"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "result.json").exists()
    weights = run / "checkpoints" / "step_00000004" / "adapter" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x10  # a bit flip in a weight: loads fine, only the checksum knows
    weights.write_bytes(bytes(data))

    capsys.readouterr()
    train(cfg, run, resume=True)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "step_00000004" in ln]
    assert len(lines) == 1 and "damaged" in lines[0] and "adapter/model.safetensors" in lines[0]
    assert "resuming from step_00000002 instead" in lines[0]
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "completed" and result["resumed_from_step"] == 2
    assert len(result["skipped_checkpoints"]) == 1

    train(cfg, tmp_path / "uninterrupted")
    a = load_file(run / "adapter" / "model.safetensors")
    b = load_file(tmp_path / "uninterrupted" / "adapter" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the damaged checkpoint was replaced by the resumed run's own step 4
    assert ckpt_io.checkpoint_problems(run / "checkpoints" / "step_00000004") == []


def test_ctrl_c_during_training_checkpoints_like_sigterm(tiny_config, tmp_path):
    """SIGINT (Ctrl-C) while training: the step finishes, a checkpoint is written, status interrupted (no
    KeyboardInterrupt traceback); the previous SIGINT handler is back afterwards."""
    import threading

    from c2bridge import _signals

    cfg = tiny_config(**{"optim.max_steps": 6, "checkpoint.every_steps": 0, "eval.every_steps": 3,
                         "debug.sleep_per_step": 0.3})
    run = tmp_path / "run"

    def ctrl_c_after_first_step():
        deadline = time.time() + 60
        while time.time() < deadline:
            log = run / "metrics.jsonl"
            if log.exists() and '"kind": "train"' in log.read_text():
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.02)

    before = signal.getsignal(signal.SIGINT)
    sender = threading.Thread(target=ctrl_c_after_first_step)
    sender.start()
    result = train(cfg, run)
    sender.join()
    assert result["status"] == "interrupted" and result["reason"].startswith("SIGINT after step")
    assert (run / "checkpoints" / f"step_{result['step']:08d}").is_dir() and not (run / "result.json").exists()
    assert signal.getsignal(signal.SIGINT) is before and _signals.exit_code() == 130
