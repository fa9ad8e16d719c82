"""The trainer's compute levers on the tiny preset: early stopping at a plateau (and its exact resume), the pixel
terms' schedule (no VAE decode on the steps without them), crops, gradient checkpointing, torch.compile."""
import json
import os
import signal
import threading
import time

import pytest
import torch
from safetensors.torch import load_file

from c2bridge.decoder import LTXBridge
from c2bridge.metrics.efficiency import detect_plateau
from c2bridge.train import train


def _records(run, kind="train"):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
            if json.loads(line)["kind"] == kind]


def _weights(run):
    return load_file(run / "adapter" / "model.safetensors")


# ------------------------------------------------------------------------------------------------ early stopping


def test_online_plateau_mode_waits_for_the_curve_to_end_on_a_plateau():
    curve = [1.0, 0.8, 0.8, 0.8, 0.5, 0.5]  # plateau after 0.8, then an improvement, then one flat evaluation
    assert detect_plateau(curve, patience=2, min_rel_improvement=0.0).step == 1  # the first plateau
    assert detect_plateau(curve, patience=2, min_rel_improvement=0.0, mode="current").step is None
    assert detect_plateau(curve + [0.5], patience=2, min_rel_improvement=0.0, mode="current").step == 4
    for n in range(1, len(curve) + 1):  # after each evaluation, both modes first see a plateau at the same point
        first = [detect_plateau(curve[:k], patience=2, min_rel_improvement=0.0).step for k in range(1, n + 1)]
        now = [detect_plateau(curve[:k], patience=2, min_rel_improvement=0.0, mode="current").step
               for k in range(1, n + 1)]
        assert next((i for i, s in enumerate(first) if s is not None), None) == \
            next((i for i, s in enumerate(now) if s is not None), None)
    with pytest.raises(ValueError, match="mode"):
        detect_plateau(curve, mode="last")


def test_early_stopping_stops_at_the_plateau_and_records_it(tiny_config, tmp_path):
    # min_delta 0.5: no tiny-run improvement is large enough, so the plateau comes after `patience` evaluations
    base = {"optim.max_steps": 12, "eval.every_steps": 2, "checkpoint.every_steps": 0, "stop.min_delta": 0.5}
    stopped = train(tiny_config(**base, **{"stop.patience": 2}), tmp_path / "stopped")
    assert stopped["status"] == "completed"
    assert (stopped["steps_run"], stopped["max_steps"], stopped["stopped_early"], stopped["stop_step"]) == \
        (4, 12, True, 4)  # evaluations at steps 0, 2, 4: two without improvement
    assert [r["step"] for r in _records(tmp_path / "stopped")][-1] == 4
    assert (tmp_path / "stopped" / "adapter").is_dir() and stopped["best_adapter_dir"]
    assert stopped["best"]["step"] in (2, 4)  # the best checkpoint is what evaluation uses
    from c2bridge.experiments import backend  # what the study's trial record keeps of it

    stats = backend._train_stats(stopped, tmp_path / "stopped")
    assert (stats["steps_run"], stats["max_steps"], stats["stopped_early"], stats["stop_step"]) == (4, 12, True, 4)

    late = train(tiny_config(**base, **{"stop.patience": 2, "stop.min_fraction": 0.5}), tmp_path / "late")
    assert (late["steps_run"], late["stop_step"]) == (6, 6)  # never before half of the 12 steps

    full = train(tiny_config(**base), tmp_path / "full")  # stop.patience null: the whole run
    assert (full["steps_run"], full["max_steps"], full["stopped_early"], full["stop_step"]) == (12, 12, False, None)
    # the steps both ran are the same steps: stopping changes nothing before it
    assert [r["loss"] for r in _records(tmp_path / "full")][:4] == [r["loss"] for r in _records(tmp_path / "stopped")]


def test_early_stopping_needs_a_val_cache(tiny_config, tmp_path):
    with pytest.raises(ValueError, match="stop.patience"):
        train(tiny_config(**{"stop.patience": 2, "data.val_cache": None}), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_interrupted_run_with_early_stopping_resumes_to_the_same_stop(tiny_config, tmp_path):
    """SIGTERM mid-run after some validations; the resumed run must stop where an uninterrupted one stops (the
    validation history is part of the checkpointed loop state), with bit-identical weights."""
    cfg = tiny_config(**{"optim.max_steps": 16, "eval.every_steps": 2, "checkpoint.every_steps": 0,
                         "stop.patience": 3, "stop.min_delta": 0.5, "adapter.dropout": 0.1,
                         "debug.sleep_per_step": 0.3})
    run = tmp_path / "run"

    def sigterm_after_step_3():
        deadline = time.time() + 60
        while time.time() < deadline:
            log = run / "metrics.jsonl"
            if log.exists() and any(json.loads(x)["kind"] == "train" and json.loads(x)["step"] >= 3
                                    for x in log.read_text().splitlines()):
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.02)

    sender = threading.Thread(target=sigterm_after_step_3)
    sender.start()
    first = train(cfg, run)
    sender.join()
    assert first["status"] == "interrupted" and 3 <= first["step"] < 6, first

    resumed = train(cfg, run, resume=True)
    reference = train(cfg, tmp_path / "reference")
    assert reference["stop_step"] == 6  # evaluations at 0, 2, 4, 6: three without improvement
    assert resumed["resumed_from_step"] == first["step"]
    assert (resumed["steps_run"], resumed["stop_step"], resumed["stopped_early"]) == (6, 6, True)
    a, b = _weights(run), _weights(tmp_path / "reference")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["best"] == reference["best"]


# ------------------------------------------------------------------------------------------------ pixel terms


@pytest.fixture
def count_decodes(monkeypatch):
    """Every VAE decode of the objective: the latent shape it decoded."""
    shapes = []
    original = LTXBridge.decode_latents

    def counting(self, latents):
        shapes.append(tuple(latents.shape))
        return original(self, latents)

    monkeypatch.setattr(LTXBridge, "decode_latents", counting)
    return shapes


def test_pixel_terms_only_on_scheduled_steps_and_no_decode_on_the_others(tiny_config, tmp_path, count_decodes):
    pixel = {"loss.name": "flow", "loss.weights": {"l2": 0.5, "ssim": 0.2}, "optim.max_steps": 8,
             "optim.grad_accum": 2, "data.val_cache": None}
    result = train(tiny_config(**pixel, **{"loss.pixel_start": 0.25, "loss.pixel_every": 3}), tmp_path / "sched")
    assert result["status"] == "completed"
    # pixel terms from step ceil(0.25 * 8) = 2 on, every 3rd: steps 2 and 5 (0-based) -> 2 steps x 2 micro-batches
    assert len(count_decodes) == 4
    recs = _records(tmp_path / "sched")
    assert [r["step"] for r in recs if "recon_l2" in r] == [3, 6]  # records count steps from 1
    assert all("recon_flow" in r for r in recs)  # the flow term runs on every step

    # before pixel_start the objective is the flow term alone: the same losses as a flow-only run
    flow = train(tiny_config(**{**pixel, "loss.weights": {}}), tmp_path / "flow")
    assert flow["status"] == "completed"
    assert [r["loss"] for r in _records(tmp_path / "flow")][:2] == [r["loss"] for r in recs][:2]

    count_decodes.clear()  # every step: one decode per micro-batch
    train(tiny_config(**pixel), tmp_path / "every")
    assert len(count_decodes) == 16


def test_pixel_schedule_needs_a_flow_term_and_a_pixel_term(tiny_config, tmp_path):
    with pytest.raises(ValueError, match="no flow weight"):
        train(tiny_config(**{"loss.name": "lpips_l2", "loss.pixel_every": 2}), tmp_path / "a")
    with pytest.raises(ValueError, match="no pixel term"):
        train(tiny_config(**{"loss.pixel_start": 0.5}), tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_pixel_crop_decodes_only_the_crop_deterministically(tiny_config, tmp_path, count_decodes):
    cfg = tiny_config(**{"loss.name": "flow", "loss.weights": {"l2": 0.5}, "optim.max_steps": 4,
                         "data.val_cache": None, "loss.pixel_crop": 16})
    first = train(cfg, tmp_path / "a")
    # the tiny VAE compresses 4x: a 16 px crop of the 32 px frame decodes a 4x4 latent square
    assert first["status"] == "completed" and count_decodes and all(s[-2:] == (4, 4) for s in count_decodes)
    train(cfg, tmp_path / "b")  # same seed -> the same crops -> the same weights
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    train(tiny_config(**{"loss.name": "flow", "loss.weights": {"l2": 0.5}, "optim.max_steps": 4,
                         "data.val_cache": None}), tmp_path / "whole")
    assert [r["recon_l2"] for r in _records(tmp_path / "a")] != [r["recon_l2"] for r in _records(tmp_path / "whole")]
    for bad in (18, 64):  # not a multiple of the compression / larger than the image
        with pytest.raises(ValueError, match="loss.pixel_crop"):
            train(tiny_config(**{"loss.weights": {"l2": 0.5}, "loss.pixel_crop": bad}), tmp_path / f"bad{bad}")
        assert not (tmp_path / f"bad{bad}").exists()


# ------------------------------------------------------------------------------------------------ memory / compute


def test_gradient_checkpointing_trains_the_same_weights(tiny_config, tmp_path):
    base = {"optim.max_steps": 3, "data.val_cache": None, "loss.weights": {"l2": 0.5}}
    off = train(tiny_config(**base), tmp_path / "off")
    on = train(tiny_config(**base, **{"memory.gradient_checkpointing": True}), tmp_path / "on")
    assert off["status"] == on["status"] == "completed"
    a, b = _weights(tmp_path / "off"), _weights(tmp_path / "on")
    assert all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6) for k in a)
    assert on["config_hash"] != off["config_hash"]  # part of the trial key


@pytest.mark.slow  # ~50 s cold compile per mode on a loaded 2-core CPU; a few seconds with the warm cache of a re-run
def test_compile_exact_trains_bit_identically_and_fast_to_the_same_losses(tiny_config, tmp_path, monkeypatch,
                                                                          request):
    # persistent across test sessions, like the trainer's default (a fresh one without pytest's cache plugin)
    store = getattr(request.config, "cache", None)
    cache = store.mkdir("inductor") if store is not None else tmp_path / "inductor"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(cache))
    base = {"optim.max_steps": 3, "data.val_cache": None, "adapter.dropout": 0.1}
    off = train(tiny_config(**base), tmp_path / "off")
    exact = train(tiny_config(**base, **{"compute.compile": "exact"}), tmp_path / "exact")
    fast = train(tiny_config(**base, **{"compute.compile": "fast"}), tmp_path / "fast")
    assert exact["status"] == fast["status"] == "completed", (exact, fast)
    a, b, c = (_records(tmp_path / d) for d in ("off", "exact", "fast"))
    # exact: every loss and every trained weight equal to eager's, bit for bit
    assert [r["loss"] for r in a] == [r["loss"] for r in b] and len(a) == 3
    wa, wb = _weights(tmp_path / "off"), _weights(tmp_path / "exact")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # fast: the same losses to float precision, not necessarily to the bit
    assert all(abs(x["loss"] - y["loss"]) <= 1e-4 * abs(x["loss"]) for x, y in zip(a, c)), (a, c)
    assert any(cache.iterdir())  # compiled graphs went to the persistent cache
    assert len({off["config_hash"], exact["config_hash"], fast["config_hash"]}) == 3  # part of the trial key
    from c2bridge.recipe import config_hash, load_config

    assert config_hash(load_config(tiny_config(**base, **{"compute.compile": True}))) == fast["config_hash"]


def test_exact_compile_swaps_inductor_tables_only_while_it_lowers_its_own_graphs():
    import torch._inductor.compile_fx as fx
    import torch._inductor.lowering as lowering

    from c2bridge.train.compute import EAGER_OPS, _aten_lowerings, _overloads, exact_decompositions

    mean = torch.ops.aten.mean.dim
    before = (dict(lowering.lowerings), set(lowering.needs_realized_inputs), set(lowering.fallbacks))
    with _aten_lowerings(_overloads(EAGER_OPS)):
        assert getattr(lowering.lowerings[mean], "_is_fallback_handler", False)  # ATen runs it
        assert mean in lowering.fallbacks
    assert (dict(lowering.lowerings), set(lowering.needs_realized_inputs), set(lowering.fallbacks)) == before
    assert not getattr(lowering.lowerings[mean], "_is_fallback_handler", False)
    layer_norm = torch.ops.aten.native_layer_norm.default
    assert layer_norm in fx.select_decomp_table() and layer_norm not in exact_decompositions()
    assert fx.select_decomp_table is not exact_decompositions


def test_compile_mode_is_checked_before_anything_is_written(tiny_config, tmp_path):
    with pytest.raises(ValueError, match=r"compute.compile='eager': expected false, true or one of \['exact', 'fast'\]"):
        train(tiny_config(**{"compute.compile": "eager"}), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_compile_failure_is_one_error_before_anything_is_written(tiny_config, tmp_path, monkeypatch):
    def broken(module, **kwargs):
        def forward(*args, **kw):
            raise RuntimeError("InductorError: no working C++ compiler\nlong traceback ...")
        return forward

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.raises(ValueError, match=r"compute.compile=true: torch.compile .* failed .*no working C\+\+ compiler"):
        train(tiny_config(**{"compute.compile": True}), tmp_path / "run")
    assert not (tmp_path / "run").exists()

    def unsupported(module, **kwargs):  # torch.compile refusing at once (e.g. an unsupported Python)
        raise RuntimeError("torch.compile is not supported on this Python")

    monkeypatch.setattr(torch, "compile", unsupported)
    with pytest.raises(ValueError, match=r"compute.compile=true: .*not supported on this Python"):
        train(tiny_config(**{"compute.compile": True}), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_pause_at_a_step_checkpoints_and_resumes_exactly(tiny_config, tmp_path):
    """Successive halving's rungs: pause at a validation step (no result.json), resume to the same weights."""
    cfg = tiny_config(**{"optim.max_steps": 8, "eval.every_steps": 4, "checkpoint.every_steps": 0,
                         "adapter.dropout": 0.1})
    paused = train(cfg, tmp_path / "run", pause_at_step=4)
    assert paused["status"] == "paused" and paused["step"] == 4 and not (tmp_path / "run" / "result.json").exists()
    assert (tmp_path / "run" / "checkpoints" / "step_00000004").is_dir()
    resumed = train(cfg, tmp_path / "run", resume=True)
    reference = train(cfg, tmp_path / "reference")
    assert resumed["status"] == "completed" and resumed["resumed_from_step"] == 4
    a, b = _weights(tmp_path / "run"), _weights(tmp_path / "reference")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["best"] == reference["best"]


def test_compile_cache_dir_order(tmp_path, monkeypatch):
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    from c2bridge.train.compute import use_compile_cache

    monkeypatch.setenv("C2BRIDGE_COMPILE_CACHE", str(tmp_path / "ours"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())  # what torch writes once a model loads
    assert use_compile_cache() == tmp_path / "ours"  # torch's own default counts as unset
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "user"))
    assert use_compile_cache() == tmp_path / "user"  # a user's choice is kept
    assert use_compile_cache(tmp_path / "study") == tmp_path / "study"  # a runner's path wins
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "study") and (tmp_path / "study").is_dir()
