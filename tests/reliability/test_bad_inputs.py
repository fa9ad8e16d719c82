"""Every bad input is one line (what was wrong, what was expected) and exit 2, before anything is extracted or
written; an existing study directory is left exactly as it was; config-supplied names never escape their
directory; the CLI's expected error classes (full or read-only disk, malformed YAML, damaged safetensors) are one
line too."""
from __future__ import annotations

import errno

import pytest

from c2bridge.cli import expected_error, main

RUN = ["run", "e2.1", "--preset", "tiny", "--no-report"]


def _one_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


@pytest.mark.parametrize("override, message", [
    ("nonexistent.key=1", "no experiment config has 'nonexistent'"),
    ("recipe.optim.lrr=1", "unknown config key 'optim.lrr'"),
    ("recipe.optim.lr=nan", "optim.lr=nan: expected a learning rate > 0"),
    ("recipe.optim.max_steps=0", "optim.max_steps=0: expected null or an integer >= 1"),
    ("recipe.seed=abc", "seed='abc': expected an integer"),
    ("e2_1.seeds=[a]", "e2.1.seeds=['a']: expected a non-empty list of integers >= 0"),
    ("e2_1.seeds=5", "e2.1.seeds=5: expected a non-empty list of integers >= 0"),
    ("e2_1.seeds=[-1]", "expected a non-empty list of integers >= 0"),
    ("e2_1.budgets=[1e20]", "expected at most 1e+10"),
    ("e2_1.budgets=[10x]", "budget '10x': expected a parameter count"),
    ("e2_1.budgets=10m", "e2.1.budgets='10m': expected a non-empty list of budgets"),
    ("eval.distance=foo", "eval.distance='foo': expected auto or one of"),
    ("recipe.adapter.overrides={n_heads: 0}", "adapter 'query' at budget '5m' with options {'n_heads': 0} cannot be "
                                             "built"),
    ("recipe.adapter.overrides={n_hedas: 2}", "unknown option(s) ['n_hedas']"),
])
def test_bad_study_inputs_are_one_line_before_anything_is_written(tmp_path, capsys, override, message):
    out = tmp_path / "study"
    assert main([*RUN, "--out", str(out), override]) == 2
    line = _one_line(capsys)
    assert line.startswith("c2bridge run: error: ") and message in line, line
    assert not out.exists()  # no cache, no lock file, no half-made run dir


def test_an_existing_study_dir_is_untouched_by_a_bad_input(tmp_path, capsys):
    out = tmp_path / "study"
    out.mkdir()
    (out / "results.yaml").write_text("kept: true\n")
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()}
    assert main([*RUN, "--out", str(out), "e2_1.budgets=[1e20]"]) == 2
    _one_line(capsys)
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir() if p.name != ".c2bridge.lock"}
    assert after == before


@pytest.mark.parametrize("argv, message", [
    (["eval", "ADAPTER", "--preset", "tiny", "--cache", "CACHE", "--steps", "0"], "--steps 0: expected an integer >= 1"),
    (["eval", "ADAPTER", "--preset", "tiny", "--cache", "CACHE", "--distance", "foo"], "unknown distance 'foo'"),
    (["eval", "ADAPTER", "--preset", "tiny", "--cache", "CACHE", "--split", "../val"], "not a plain name"),
    (["plan", "--set", "optim.lrr=1"], "optim.lrr"),
    (["plan", "--set", "nonsense"], "is not KEY=VALUE"),
])
def test_bad_command_arguments_are_one_line(tmp_path, capsys, argv, message):
    (tmp_path / "ADAPTER").mkdir()
    (tmp_path / "CACHE").mkdir()
    argv = [str(tmp_path / a) if a in ("ADAPTER", "CACHE") else a for a in argv]
    assert main(argv) == 2
    line = _one_line(capsys)
    assert message in line, line


def test_expected_error_classes_become_one_line(tmp_path):
    import yaml
    from safetensors import SafetensorError

    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "results.yaml"))
    assert expected_error(full) == f"{tmp_path / 'results.yaml'}: No space left on device (the disk is full: free " \
                                   "space or use another --out)"
    ro = OSError(errno.EROFS, "Read-only file system", "/mnt/ro/study")
    assert "read-only" in expected_error(ro) and "/mnt/ro/study" in expected_error(ro)
    denied = PermissionError(errno.EACCES, "Permission denied", "/root/x")
    assert expected_error(denied).startswith("/root/x: Permission denied")
    try:
        yaml.safe_load("a: [1")
    except yaml.YAMLError as exc:
        assert expected_error(exc).startswith("malformed YAML at line")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    from safetensors.torch import load_file

    with pytest.raises(SafetensorError) as info:
        load_file(str(bad))
    assert expected_error(info.value).startswith("damaged safetensors file")
    assert expected_error(RuntimeError("a bug")) is None  # bugs keep their traceback


def test_an_unwritable_out_is_one_line(tmp_path, capsys):
    """--out below a regular file (mkdir fails with ENOTDIR, as it fails with EACCES/EROFS elsewhere): one line
    naming the path, exit 2, nothing written."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main([*RUN, "--out", str(blocker / "study")]) == 2
    line = _one_line(capsys)
    assert line.startswith("c2bridge run: error: ") and str(blocker / "study") in line and "Not a directory" in line


@pytest.mark.parametrize("override, message", [
    ("caches.val.split=../../escape", "e2.1.caches.val.split '../../escape' is not a plain name"),
    ("caches.train.dataset=a/b", "e2.1.caches.train.dataset 'a/b' is not a plain name"),
    ("eval.splits={../val: val}", "e2.1.eval.splits name '../val' is not a plain name"),
])
def test_config_names_that_become_paths_cannot_escape(tmp_path, capsys, override, message):
    out = tmp_path / "study"
    assert main([*RUN, "--out", str(out), override]) == 2
    assert message in _one_line(capsys)
    assert not out.exists() and not (tmp_path / "escape").exists()


def test_paths_read_from_records_stay_inside_their_directory(tmp_path):
    from c2bridge._io import inside
    from c2bridge.experiments.store import ResultsStore
    from c2bridge.presets import get_preset

    assert inside(tmp_path, "trials/abc/train") == tmp_path / "trials/abc/train"
    for rel in ("../outside", "trials/../../outside", "/etc"):
        with pytest.raises(ValueError, match="leaves|is absolute"):
            inside(tmp_path, rel, "cache path")
    (tmp_path / "link").symlink_to(tmp_path.parent)
    with pytest.raises(ValueError, match="leaves"):
        inside(tmp_path, "link/x")
    store = ResultsStore(tmp_path / "study", get_preset("tiny"), log=lambda line: None)
    (tmp_path / "study" / "trials").mkdir(parents=True)
    with pytest.raises(ValueError, match="export name '../../stolen' leaves"):
        store.export("trials", "../../stolen")
    assert not (tmp_path.parent / "stolen").exists()


def test_no_internal_ticket_numbers_in_user_facing_text():
    """Reports, configs and docs speak to users: no "issue 7"-style references to the project's tracker."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    pattern = re.compile(r"[Ii]ssues? #?[0-9]+")
    files = [root / "README.md", *(root / "docs").rglob("*.md"), *(root / "src").rglob("*.py"),
             *(root / "src").rglob("*.yaml")]
    hits = [f"{p.relative_to(root)}:{i}: {line.strip()}" for p in files if p.is_file()
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert not hits, "\n".join(hits)
