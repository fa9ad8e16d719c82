"""results.yaml schema + atomic writes, and FINDINGS.md / figures re-rendered from results.yaml alone."""
import shutil

import pytest
import yaml

from c2bridge.cli import main
from c2bridge.experiments.runner import Study
from c2bridge.report import render
from c2bridge.report.findings import num, pm
from c2bridge.report.results import load_results, new_results, stats, write_results

from exp_fakes import FakeBackend


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("study") / "run"
    Study(run, preset="tiny", overrides=["e2_1.seeds=[0,1]"], backend=FakeBackend(), log=lambda s: None,
          render=False).run(["e2.1", "e2.4"])  # e2.4 pulls in e2.2 and e2.3
    return run


def test_stats():
    s = stats([1.0, 2.0, None, float("nan"), 3.0])
    assert (s["mean"], s["n"], s["min"], s["max"]) == (2.0, 3, 1.0, 3.0)
    assert s["std"] == pytest.approx(1.0)
    assert stats([5.0])["std"] is None and stats([])["mean"] is None


def test_results_schema_and_atomic_write(tmp_path):
    res = new_results({"name": "tiny", "is_miniature": True})
    res["trials"]["abc"] = {"status": "completed", "config": {"x": 1}}
    write_results(tmp_path, res)
    assert load_results(tmp_path)["trials"]["abc"]["config"] == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.yaml"]  # no temp file left behind
    res["trials"]["abc"]["status"] = "exploded"
    with pytest.raises(ValueError, match="trial abc has status 'exploded'"):
        write_results(tmp_path, res)
    assert load_results(tmp_path)["trials"]["abc"]["status"] == "completed"  # the bad write changed nothing
    (tmp_path / "results.yaml").write_text("schema: something-else\n")
    with pytest.raises(ValueError, match="schema"):
        load_results(tmp_path)
    with pytest.raises(FileNotFoundError, match="c2bridge run"):
        load_results(tmp_path / "nowhere")


def test_report_is_rendered_from_results_yaml_alone(study_dir, tmp_path):
    only = tmp_path / "copy"
    only.mkdir()
    shutil.copy(study_dir / "results.yaml", only / "results.yaml")  # no trials/, cache/, checkpoints/
    out = render(only)
    findings = (only / "FINDINGS.md").read_text()
    res = yaml.safe_load((only / "results.yaml").read_text())
    eff = res["experiments"]["e2.1"]["summary"]["param_efficiency"]
    assert num(eff) in findings
    assert pm(res["experiments"]["e2.1"]["arms"][0]["val"]["distance"]) in findings  # mean ± spread (n=2)
    assert "(n=2)" in findings
    for section in ("## E2.1", "## E2.2", "## E2.3", "## E2.4", "## Decisions", "## Trials", "can and cannot claim"):
        assert section in findings
    assert "C1 VLM-only — quoted from the plan" in findings
    assert "scaling_curve.png" in findings and (only / "scaling_curve.png").stat().st_size > 1000
    assert set(out["figures"]) >= {"scaling_curve", "learning_curves_e2_1", "ablation_e2_2", "ablation_e2_3"}
    # rendering twice gives the same text (nothing but results.yaml goes in)
    first = findings
    render(only)
    assert (only / "FINDINGS.md").read_text() == first


def test_miniature_report_says_so_and_names_its_distance(study_dir, tmp_path):
    res = load_results(study_dir)
    res["preset"].update(name="mini", is_miniature=True)
    res["distance"] = {"name": "one_minus_ssim", "reason": "no LPIPS backbone here"}
    write_results(tmp_path, res)
    render(tmp_path)
    text = (tmp_path / "FINDINGS.md").read_text()
    assert "**This is the miniature.**" in text
    assert "**one_minus_ssim** — no LPIPS backbone here" in text
    assert "indicative only" in text  # absolute thresholds on a miniature


def test_report_command(study_dir, tmp_path, capsys):
    shutil.copy(study_dir / "results.yaml", tmp_path / "results.yaml")
    assert main(["report", str(tmp_path)]) == 0
    assert (tmp_path / "FINDINGS.md").is_file()
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and len(err.strip().splitlines()) == 1
