"""Experiment tracking for real: a tiny training run inside a study-style TrialTracker with W&B (offline) and
TensorBoard on, read back from W&B's offline run directory (the wandb package's record types) and from the
TensorBoard event files (tensorboard's EventAccumulator). And the adapter packages a training run leaves."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "use"))

pytest.importorskip("wandb", reason="the test extra installs wandb")
pytest.importorskip("tensorboard", reason="the test extra installs tensorboard")

LABELS = {"study": "study-a", "experiment": "e2.1", "arm": "query-5m-s0"}


@pytest.fixture
def offline_wandb(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))


def _offline_runs(root: Path) -> list[Path]:
    import wandb

    wandb.teardown()  # wait for W&B's service process to flush the run files (finish() returns before it has)
    return sorted((root / "wandb").glob("offline-run-*"))


def _events(logdir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def _grid_png(path: Path) -> Path:
    import numpy as np
    from PIL import Image

    Image.fromarray((np.arange(32 * 66 * 3) % 251).astype("uint8").reshape(32, 66, 3)).save(path)
    return path


def test_trial_run_is_tracked_in_wandb_offline_and_tensorboard(tiny_config, tmp_path, offline_wandb):
    from wandb_reader import read_offline_run

    from c2bridge.train import train
    from c2bridge.train.logging import TrialTracker, read_metrics

    out = tmp_path / "study" / "trials" / "k1" / "train"
    labels = {**LABELS, "root": str(tmp_path / "study")}
    cfg = tiny_config(**{"optim.max_steps": 4, "eval.every_steps": 2, "log.wandb": True, "log.tensorboard": True,
                         "log.labels": labels})
    with TrialTracker(out, cfg["log"], config={"trial": "k1", "train": cfg}) as tracker:
        result = train(cfg, out)
        assert result["status"] == "completed"
        tracker.log_evaluation({"val": {"distance": 0.42, "ssim": 0.58, "psnr": 14.5, "n": 8}},
                               images={"val": _grid_png(tmp_path / "val.png")}, step=result["step"],
                               extra={"latency_ms": 1.5})

    # JSONL stays the default record, with the sampled metrics next to the curves
    kinds = {r["kind"] for r in read_metrics(out)}
    assert {"train", "val", "eval"} <= kinds

    runs = _offline_runs(tmp_path / "study")  # W&B files of a study's trials live in the study dir
    assert len(runs) == 1, runs  # training and evaluation share one run
    run = read_offline_run(runs[0])
    assert run["run"]["name"] == "e2.1/query-5m-s0"
    assert run["run"]["group"] == "study-a"
    assert run["run"]["job_type"] == "e2.1"
    assert "arm:query-5m-s0" in run["run"]["tags"]
    assert run["config"]["optim"]["lr"] == pytest.approx(3e-3)  # the resolved training config
    assert run["config"]["trial"] == "k1"
    keys = set().union(*run["history"])
    assert {"train/loss", "val/val_loss", "eval/val/distance", "eval/val/ssim", "eval/latency_ms"} <= keys
    train_steps = [r["_step"] for r in run["history"] if "train/loss" in r]
    assert train_steps == [1, 2, 3, 4]
    assert run["summary"]["eval/val/distance"] == pytest.approx(0.42)
    assert any(f.startswith("media/images/eval/val/reconstructions") for f in run["files"])

    acc = _events(tmp_path / "study" / "tensorboard" / "e2.1" / "query-5m-s0")
    tags = acc.Tags()
    assert {"train/loss", "val/val_loss", "eval/val/distance", "eval/val/psnr"} <= set(tags["scalars"])
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2, 3, 4]
    assert acc.Scalars("eval/val/distance")[0].value == pytest.approx(0.42)
    assert "eval/val/reconstructions" in tags["images"]
    image = acc.Images("eval/val/reconstructions")[0]
    assert (image.width, image.height) == (66, 32)
    assert any(t.startswith("config") for t in tags["tensors"])  # add_text is stored as a tensor summary


def test_study_summary_run(tmp_path, offline_wandb):
    from wandb_reader import read_offline_run

    from c2bridge.train.logging import log_study_summary

    study = tmp_path / "study-b"
    study.mkdir()
    results = {
        "preset": {"name": "tiny"}, "distance": {"name": "one_minus_ssim"}, "study": {"claim": "c2"},
        "experiments": {"e2.4": {"summary": {"param_efficiency": 0.93, "distance_10m": 0.31, "arch": "query"},
                                 "verdicts": {"param_efficiency": {"value": 0.93, "verdict": "target"}}}},
        "gate2": {"c2": "pass", "overall": "not decidable here"},
    }
    log_study_summary(study, results, {"wandb": True, "tensorboard": True}, figures=[_grid_png(study / "scaling.png")])

    (run_dir,) = _offline_runs(study)
    run = read_offline_run(run_dir)
    assert run["run"]["name"] == "study-b/summary" and run["run"]["group"] == "study-b"
    assert run["run"]["job_type"] == "summary"
    assert run["summary"]["e2.4/param_efficiency"] == pytest.approx(0.93)
    assert run["summary"]["gate2/c2"] == "pass"
    assert any(f.startswith("media/images/figures/scaling") for f in run["files"])
    assert any(f.startswith("media/table/verdicts") for f in run["files"])

    acc = _events(study / "tensorboard" / "summary")
    assert acc.Scalars("e2.4/param_efficiency")[0].value == pytest.approx(0.93)
    assert "figures/scaling" in acc.Tags()["images"]


def test_no_tracker_packages_touched_by_default(tiny_config, tmp_path):
    """JSONL only: no wandb / tensorboard directories when the integrations are off."""
    from c2bridge.train import train
    from c2bridge.train.logging import TrialTracker

    out = tmp_path / "run"
    cfg = tiny_config(**{"optim.max_steps": 2, "eval.every_steps": 2})
    with TrialTracker(out, cfg["log"]) as tracker:
        train(cfg, out)
        tracker.log_evaluation({"val": {"distance": 0.5}}, step=2)
    assert (out / "metrics.jsonl").is_file()
    assert not (out / "wandb").exists() and not (out / "tensorboard").exists()


def test_a_training_run_leaves_self_describing_adapter_packages(tiny_config, tmp_path):
    """`c2bridge train`'s adapter (and its best copy) carry provenance.json + a model card, which the pipeline
    checks against the models it loads."""
    import json

    from c2bridge.pipeline import C2BridgePipeline
    from c2bridge.train import train

    out = tmp_path / "run"
    result = train(tiny_config(**{"optim.max_steps": 2, "eval.every_steps": 2}), out)
    for key in ("adapter_dir", "best_adapter_dir"):
        directory = Path(result[key])
        prov = json.loads((directory / "provenance.json").read_text())
        assert prov["preset"] == "tiny" and prov["dino"]["model_id"] and prov["decoder"]["weights_sha256"]
        assert prov["training"]["steps"] == 2
        assert (directory / "README.md").read_text().startswith("---\nlicense: apache-2.0")
    from c2bridge.train.checkpoint import checkpoint_problems

    assert checkpoint_problems(Path(result["best_adapter_dir"]).parent) == []  # the package is in its checksums
    pipe = C2BridgePipeline.from_pretrained(result["adapter_dir"], device="cpu")  # preset from the package
    assert pipe.preset.name == "tiny"
