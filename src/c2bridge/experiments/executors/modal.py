"""Trials on Modal: one GPU function call per trial, ``.starmap`` over the trial list, a Volume for the
workspace (feature caches, latents, checkpoints, results).

``c2bridge run e2.1 --preset full --out runs/full --executor modal``. Settings (environment, read at import):

- ``C2BRIDGE_MODAL_GPU`` (default ``A100-80GB``; the planner says which GPU fits, ``c2bridge plan``),
- ``C2BRIDGE_MODAL_TIMEOUT`` seconds per attempt (default 86400, Modal's maximum),
- ``C2BRIDGE_MODAL_RETRIES`` re-runs after a crash/preemption (default 3),
- ``C2BRIDGE_MODAL_VOLUME`` Volume name (default ``c2bridge``; created if missing).

Paths: the study's workspace (``--out``) maps to ``/vol/<its folder name>`` on the Volume, so a trial's
``run_dir`` ``runs/full/trials/<key>`` runs in ``/vol/full/trials/<key>``; its caches must be there too (see
docs/running_full.md). A retried trial is called again with the same ``run_dir`` and ``resume=True``: the trainer
resumes from the last checkpoint it committed to the Volume. Each result is returned to the runner and also
written to ``<run_dir>/executor_result.json`` on the Volume.

Importable without Modal installed and without credentials (nothing contacts Modal until ``run``).
"""
from __future__ import annotations

import importlib
import os
import traceback
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Iterator

from c2bridge.experiments.executors import TrialFn, run_guarded

APP_NAME = "c2bridge"
VOLUME_MOUNT = "/vol"
GPU = os.environ.get("C2BRIDGE_MODAL_GPU", "A100-80GB")
TIMEOUT_S = int(os.environ.get("C2BRIDGE_MODAL_TIMEOUT", str(24 * 3600)))
RETRIES = int(os.environ.get("C2BRIDGE_MODAL_RETRIES", "3"))
VOLUME_NAME = os.environ.get("C2BRIDGE_MODAL_VOLUME", "c2bridge")
RESULT_FILE = "executor_result.json"
# The container's Python packages: the project's pinned torch pair + its runtime dependencies.
PIP_PACKAGES = [
    "torch==2.14.1", "torchvision==0.29.1", "diffusers>=0.32", "transformers>=4.49", "accelerate>=0.27",
    "safetensors>=0.4", "lpips>=0.1.4", "torchmetrics>=1.3", "pycocotools>=2.0.7", "av>=12", "numpy>=1.24",
    "pillow>=10", "pyyaml>=6", "matplotlib>=3.7", "tqdm>=4.66",
]

try:
    import modal
except ImportError:  # the extra is optional: ModalExecutor() raises the install hint
    modal = None

app = volume = image = run_trial_remote = None
FUNCTION_SETTINGS: dict = {}
if modal is not None:
    app = modal.App(APP_NAME)
    volume = modal.Volume.from_name(VOLUME_NAME, create_if_missing=True)  # lazy: no network until the app runs
    image = (
        modal.Image.debian_slim(python_version="3.11")
        .pip_install(*PIP_PACKAGES)
        .env({"HF_HOME": f"{VOLUME_MOUNT}/hf", "TORCH_HOME": f"{VOLUME_MOUNT}/torch"})  # weights live on the Volume
        .add_local_python_source("c2bridge", ignore=lambda p: "__pycache__" in Path(p).parts)  # code + YAML assets
    )

    FUNCTION_SETTINGS = dict(
        image=image,
        gpu=GPU,
        volumes={VOLUME_MOUNT: volume},
        timeout=TIMEOUT_S,
        retries=modal.Retries(max_retries=RETRIES, backoff_coefficient=1.0, initial_delay=30.0),
        single_use_containers=True,  # a fresh process per trial: nothing leaks between trials
    )

    @app.function(**FUNCTION_SETTINGS)
    def run_trial_remote(fn_ref: str, trial: dict) -> dict:
        # in a container the Volume is mounted; `.local()` calls (tests, debugging) run without it
        return trial_body(fn_ref, trial, None if modal.is_local() else volume)


def resolve_fn(fn_ref: str) -> TrialFn:
    """``"package.module:function"`` -> the function (the container imports it from the shipped c2bridge)."""
    module, _, name = fn_ref.partition(":")
    if not module or not name:
        raise ValueError(f"trial function reference {fn_ref!r}; expected 'package.module:function'")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def fn_reference(fn: TrialFn) -> str:
    """The importable name of a trial function; ValueError for lambdas and nested functions."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or "<" in qualname or module == "__main__":
        raise ValueError(f"modal executor: the trial function {fn!r} must be a module-level function importable "
                         f"by name (e.g. c2bridge.experiments.backend.run_trial)")
    return f"{module}:{qualname}"


def trial_body(fn_ref: str, trial: dict, vol: Any = None) -> dict:
    """What runs in the container: see the Volume's latest state, run the trial (resuming), write its result to
    the Volume, commit. Runs offline too (``vol=None``), which is how the tests exercise it."""
    from c2bridge._io import atomic_write_json

    if vol is not None:
        vol.reload()
    result = run_guarded(resolve_fn(fn_ref), {**trial, "resume": True})
    run_dir = Path(trial["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / RESULT_FILE, result)
    if vol is not None:
        vol.commit()
    return result


def to_volume(trial: dict, mount: str = VOLUME_MOUNT) -> dict:
    """A local trial -> the same trial with its workspace and run_dir on the Volume."""
    run_dir = Path(trial["run_dir"])
    workspace = Path(trial.get("workspace") or run_dir.parent)
    remote_ws = PurePosixPath(mount) / workspace.resolve().name
    try:
        rel = run_dir.resolve().relative_to(workspace.resolve())
    except ValueError:
        raise ValueError(f"modal executor: run_dir {run_dir} is not inside the workspace {workspace}") from None
    return {**trial, "workspace": str(remote_ws), "run_dir": str(remote_ws / PurePosixPath(*rel.parts))}


def has_credentials() -> bool:
    if os.environ.get("MODAL_TOKEN_ID") and os.environ.get("MODAL_TOKEN_SECRET"):
        return True
    try:
        from modal.config import config

        return bool(config.get("token_id")) and bool(config.get("token_secret"))
    except Exception:
        return False


class ModalExecutor:
    name = "modal"

    def __init__(self, check_credentials: bool = True) -> None:
        if modal is None:
            raise ValueError("the modal executor needs Modal: pip install 'c2bridge[modal]' (modal>=0.64), "
                             "then `modal token new`")
        self.check_credentials = check_credentials

    def run(self, fn: TrialFn, trials: Iterable[dict]) -> Iterator[dict]:
        trials = list(trials)
        if not trials:
            return
        ref = fn_reference(fn)
        remote = [to_volume(t) for t in trials]
        if self.check_credentials and not has_credentials():
            raise ValueError("modal executor: no Modal credentials; run `modal token new` or set MODAL_TOKEN_ID "
                             "and MODAL_TOKEN_SECRET")
        with modal.enable_output(), app.run():
            outputs = run_trial_remote.starmap([(ref, t) for t in remote], order_outputs=True, return_exceptions=True)
            for trial, out in zip(trials, outputs):
                if isinstance(out, BaseException):  # infrastructure failure after all retries
                    yield {"key": trial.get("key"), "status": "failed",
                           "error": f"modal: {type(out).__name__}: {out}",
                           "traceback": "".join(traceback.format_exception(out))}
                else:
                    yield {**out, "key": trial.get("key")}
