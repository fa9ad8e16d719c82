"""`c2bridge adapters`: the table, JSON rows, errors; and that the command module keeps torch out of --help."""
import json
import subprocess
import sys

from c2bridge.cli import main


def test_json_rows_for_the_mini_preset(capsys):
    assert main(["adapters", "--json", "--no-latency", "--preset", "mini"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 25
    assert {r["kind"] for r in rows} == {"query", "bottleneck", "lora", "perceiver", "moe"}
    assert {r["budget"] for r in rows} == {"5m", "10m", "20m", "50m", "100m"}
    targets = {"5m": 6.25e3, "10m": 1.25e4, "20m": 2.5e4, "50m": 6.25e4, "100m": 1.25e5}  # the mini mapping of the plan scales
    for r in rows:
        assert r["target"] == targets[r["budget"]]
        assert abs(r["params"] - r["target"]) <= 0.02 * r["target"] and r["within_tolerance"]
        assert r["flops_per_sample"] > 0 and r["latency_ms"] is None
        assert (r["active_params"] < r["params"]) == (r["kind"] == "moe")
        assert r["dims"]["depth"] >= 1
    flops = [r["flops_per_sample"] for r in rows if r["kind"] == "query"]
    assert flops == sorted(flops)  # bigger budgets cost more compute
    # the human-readable table states the mapping of the plan's scales
    assert main(["adapters", "--no-latency", "--preset", "mini", "--kind", "query"]) == 0
    head = capsys.readouterr().out.splitlines()[:2]
    assert "10m->12,500" in head[0] and "the plan's scales / 800" in head[1]


def test_table_with_latency_and_custom_budget(capsys):
    assert main(["adapters", "--kind", "lora", "--kind", "moe", "--budget", "10m", "--budget", "30k",
                 "--preset", "tiny", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[0].startswith("preset tiny: scale -> target params: 10m->40,000, 30k->30,000")
    assert "latency ms" in lines[1] and len(lines) == 2 + 4
    assert all(not line.rstrip().endswith("-") for line in lines[2:])  # latency measured


def test_bad_arguments_exit_2(capsys):
    assert main(["adapters", "--kind", "mlp", "--no-latency"]) == 2
    assert "unknown adapter kind 'mlp'" in capsys.readouterr().err
    assert main(["adapters", "--budget", "ten", "--no-latency"]) == 2
    assert "budget 'ten'" in capsys.readouterr().err
    assert main(["adapters", "--budget", "1k", "--kind", "query", "--no-latency"]) == 2
    assert "below the minimum" in capsys.readouterr().err


def test_cli_parser_does_not_import_torch():
    # every subcommand's parser is built by `c2bridge --help`: none may pull in torch (or the library under it)
    code = "import sys, c2bridge.cli; c2bridge.cli.build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
