"""Runs that survive: one study per directory (a lock naming its holder, stale locks taken over), stop signals with
the pool executor (forwarded, checkpointed, one line, exit 128 + signal, no process left), pool workers that exit
with their parent, Ctrl-C without a traceback. Real subprocesses, real signals."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from c2bridge._lock import LOCK_FILE, DirectoryBusy, DirectoryLock

HERE = Path(__file__).resolve().parent
ENV = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
    [str(HERE), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]])}


def session_processes(sid: int) -> list[int]:
    """Live (non-zombie) processes of session ``sid`` (the tests start each command in its own session)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def wait_until(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> float:
    t0 = time.time()
    while not predicate():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the command ended (rc {proc.returncode}) before {what}: {err.decode()[-2000:]}")
        if time.time() - t0 > timeout:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)
    return time.time() - t0


def all_gone_within(sid: int, seconds: float) -> list[int]:
    deadline = time.time() + seconds
    while session_processes(sid) and time.time() < deadline:
        time.sleep(0.2)
    return session_processes(sid)


# ------------------------------------------------------------------------------------------------ the lock
def test_directory_lock_refuses_a_live_holder_and_takes_over_a_dead_ones(tmp_path):
    d = tmp_path / "study"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from c2bridge._lock import DirectoryLock; "
                               "DirectoryLock(sys.argv[1], 'c2bridge run').acquire(); print('held', flush=True); "
                               "time.sleep(120)", str(d)], stdout=subprocess.PIPE, env=ENV)
    try:
        assert holder.stdout.readline().strip() == b"held"
        with pytest.raises(DirectoryBusy, match=rf"in use by another c2bridge run \(pid {holder.pid} on "):
            DirectoryLock(d, "c2bridge run").acquire()
    finally:
        holder.kill()
        holder.wait()
    notes = []
    with DirectoryLock(d, "c2bridge run", note=notes.append):  # the kernel dropped the dead holder's lock
        assert json.loads((d / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert len(notes) == 1 and f"pid {holder.pid}" in notes[0] and "no longer running" in notes[0]
    assert (d / LOCK_FILE).read_text() == ""  # released cleanly: the next run takes it without a note
    with DirectoryLock(d, note=notes.append):
        pass
    assert len(notes) == 1
    # refused before anything was written: a directory the lock created is removed again
    with pytest.raises(ValueError, match="bad override"):
        with DirectoryLock(tmp_path / "new"):
            raise ValueError("bad override")
    assert not (tmp_path / "new").exists()


# ------------------------------------------------------------------------------------------------ orphans
def test_pool_workers_exit_when_their_parent_dies(tmp_path):
    """SIGKILL the process running a pool: its workers notice, stop their trials and exit (no orphans writing
    into trial directories)."""
    driver = (
        "import sys; from c2bridge.experiments.executors import get_executor; import _stop_trials; "
        "trials = [{'key': f't{i}', 'run_dir': f'{sys.argv[1]}/t{i}', 'steps': 100000, 'sleep': 0.1} "
        "for i in range(2)]; "
        "[print(r, flush=True) for r in get_executor('pool', workers=2).run(_stop_trials.stoppable_trial, trials)]"
    )
    proc = subprocess.Popen([sys.executable, "-c", driver, str(tmp_path)], env=ENV, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    progress = [tmp_path / f"t{i}" / "progress.jsonl" for i in range(2)]
    wait_until(lambda: all(p.is_file() for p in progress), 240, "both trials to start", proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    left = all_gone_within(proc.pid, 15)
    assert not left, f"processes outlived their parent: {left}"
    sizes = [p.stat().st_size for p in progress]
    time.sleep(1.0)
    assert [p.stat().st_size for p in progress] == sizes  # nobody writes into the trial dirs any more
    last = [json.loads(p.read_text().splitlines()[-1]) for p in progress]
    assert all(r["step"] >= 1 for r in last)


# ------------------------------------------------------------------------------------------------ the study
OVERRIDES = ["e2_1.budgets=[5m,10m]", "e2_1.reference_budget=10m", "e2_1.small_budget=5m",
             "recipe.optim.max_steps=6", "recipe.checkpoint.every_steps=2", "recipe.debug.sleep_per_step=0.5"]


def _run_cli(out: Path, *extra: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "c2bridge.cli", "run", "e2.1", "--preset", "tiny", "--no-report",
                             "--out", str(out), *extra, *OVERRIDES], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)


@pytest.mark.slow
def test_sigterm_to_the_pool_parent_and_a_second_run_on_the_same_dir(tmp_path):
    """`c2bridge run --executor pool`: a second `run` on the same dir is refused in one line; SIGTERM to the parent
    alone checkpoints the running trials, prints one line, exits 143 and leaves no process behind within 10 s; the
    same command then finishes the study with the same numbers and weights as an uninterrupted run."""
    import torch
    from safetensors.torch import load_file

    from c2bridge._io import read_yaml
    from c2bridge.experiments.runner import Study

    study = tmp_path / "study"
    pool = ("--executor", "pool", "--executor-opt", "workers=2")
    first = _run_cli(study, *pool, start_new_session=True)
    lock = study / LOCK_FILE
    wait_until(lambda: lock.is_file() and f'"pid": {first.pid}' in lock.read_text(), 120, "the lock", first)

    second = _run_cli(study)
    _, err = second.communicate(timeout=300)
    lines = [ln for ln in err.decode().splitlines() if ln.strip()]
    assert second.returncode == 2 and len(lines) == 1, err.decode()
    assert f"is in use by another c2bridge run (pid {first.pid} on " in lines[0]

    wait_until(lambda: any(study.glob("trials/*/train/checkpoints/step_*")), 300, "a trial checkpoint", first)
    os.kill(first.pid, signal.SIGTERM)  # the parent only: it forwards the stop to its workers
    _, err = first.communicate(timeout=300)
    err = err.decode()
    assert first.returncode == 143, err
    assert "Traceback" not in err
    stopped = [ln for ln in err.splitlines() if "stopped by SIGTERM" in ln]
    assert len(stopped) == 1 and stopped[0].startswith("c2bridge run: "), err
    assert not all_gone_within(first.pid, 10), "no process of the stopped run may outlive it by 10 s"
    assert lock.read_text() == ""  # released
    interrupted = [p for p in study.glob("trials/*") if not (p / "trial.json").exists()]
    assert interrupted and all(any(p.glob("train/checkpoints/step_*")) for p in interrupted)

    resumed = _run_cli(study, *pool)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err.decode()[-3000:]

    Study(tmp_path / "reference", preset="tiny", overrides=OVERRIDES, render=False,
          log=lambda line: None).run(["e2.1"])  # uninterrupted, local executor
    a, b = read_yaml(study / "results.yaml")["trials"], read_yaml(tmp_path / "reference" / "results.yaml")["trials"]
    assert a.keys() == b.keys() and len(a) == 2
    for key in a:
        assert a[key]["status"] == b[key]["status"] == "completed"
        assert a[key]["metrics"] == b[key]["metrics"], key
        wa = load_file(study / "trials" / key / "train" / "adapter" / "model.safetensors")
        wb = load_file(tmp_path / "reference" / "trials" / key / "train" / "adapter" / "model.safetensors")
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), key
    assert any(json.loads((study / "trials" / k / "train" / "result.json").read_text())["resumed_from_step"]
               for k in a)  # at least one trial really resumed from its checkpoint


def test_a_stop_signal_inside_a_deferred_block_lands_right_after_it():
    from c2bridge._signals import deferred

    events = []
    handler = lambda signum, frame: events.append(f"handled {signal.Signals(signum).name}")  # noqa: E731
    previous = signal.signal(signal.SIGINT, handler)
    try:
        with deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the signal has arrived; the block goes on
            events.append("shard and manifest")
        assert events == ["shard and manifest", "handled SIGINT"]  # held, then given to the handler in place
        assert signal.getsignal(signal.SIGINT) is handler  # restored
        with deferred():  # nothing held: nothing delivered
            events.append("again")
        assert events[-1] == "again"
    finally:
        signal.signal(signal.SIGINT, previous)


def test_ctrl_c_outside_training_is_one_line_and_exit_130(tmp_path):
    """Ctrl-C (SIGINT to the whole process group) during feature extraction: no traceback, one line, exit 130;
    the finished shards stay and the same command resumes."""
    out = tmp_path / "cache"
    cmd = [sys.executable, "-m", "c2bridge.cli", "extract", "--preset", "tiny", "--dataset", "shapes", "--split",
           "train", "--limit", "4000", "--shard-size", "16", "--device", "cpu", "--out", str(out)]
    proc = subprocess.Popen(cmd, env=ENV, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_until(lambda: (out / "shard-00000.safetensors").is_file(), 300, "the first shard", proc)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    err = err.decode()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("c2bridge ")]
    assert len(lines) == 1 and "interrupted (Ctrl-C)" in lines[0]
    from c2bridge.encoders.cache import FeatureCache

    partial = FeatureCache(out, allow_partial=True).verify()
    assert len(partial) >= 16 and not partial.manifest["complete"]
