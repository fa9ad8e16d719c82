"""A cut-down study end to end with the real backend on the `tiny` preset (random tiny models, a few steps):
extraction -> training -> sampled evaluation -> results.yaml -> FINDINGS.md. Numbers are meaningless; the
plumbing is what is checked: files, a well-formed results.yaml, a re-run that does nothing, a failed trial
recorded while the rest go on."""
import json

from c2bridge.adapters import load_adapter
from c2bridge.experiments.backend import TorchBackend
from c2bridge.experiments.runner import Study
from c2bridge.report.results import load_results

OVERRIDES = [
    "e2_1.budgets=[10m]", "e2_1.reference_budget=10m", "e2_1.seeds=[0]",
    "e2_2.kinds=[query, lora]", "e2_2.seeds=[0]",
]  # (a bad adapter option is refused before the study starts: tests/reliability/test_bad_inputs.py)


class CountingBackend(TorchBackend):
    """The real backend, counting its trials; ``fail_kind``: trials of that adapter kind raise at run time."""

    def __init__(self, fail_kind: str | None = None):
        super().__init__()
        self.calls = []
        inner = self.trial_fn

        def counted(trial):
            self.calls.append(trial["key"])
            if fail_kind and ((trial["config"].get("train") or {}).get("adapter") or {}).get("kind") == fail_kind:
                raise RuntimeError(f"injected failure in the {fail_kind} trial")
            return inner(trial)

        self.trial_fn = counted


def test_tiny_study_end_to_end(tmp_path):
    run = tmp_path / "run"
    backend = CountingBackend(fail_kind="lora")  # one trial fails at run time: recorded, the rest go on
    Study(run, preset="tiny", overrides=OVERRIDES, backend=backend, log=lambda s: None).run(["e2.1", "e2.2"])

    res = load_results(run)
    assert res["preset"]["name"] == "tiny" and res["distance"]["name"] == "one_minus_ssim"
    assert res["models"]["decoder"]["preset"] == "tiny" and res["environment"]["packages"]["torch"]
    by_label = {lbl: t for t in res["trials"].values() for lbl in t["labels"].values()}
    query, lora = by_label["query-10m-s0"], by_label["lora-10m-s0"]
    assert query["status"] == "completed" and set(query["labels"]) == {"e2.1", "e2.2"}  # one trial, two uses
    assert lora["status"] == "failed" and "injected failure in the lora trial" in lora["error"]
    m = query["metrics"]["val"]  # E2.1/E2.2 trials are evaluated on val (E2.4 adds held-out + train split)
    assert 0 <= m["distance"] <= 2 and m["n"] == 4 and m["distance_name"] == "one_minus_ssim"
    assert query["params"]["trainable"] <= 4e4 and query["perf"]["latency_ms"] > 0
    assert query["train"]["steps"] == 4 and len(query["curve"]["step"]) == 4
    assert res["experiments"]["e2.2"]["status"] == "partial"
    assert res["experiments"]["e2.2"]["summary"]["recommended_kind"] == "query"

    for rel in ("results.yaml", "FINDINGS.md", "scaling_curve.png", "figures/learning_curves_e2_1.png",
                "figures/grids/e2_1_query_10m.png", "figures/grids/e2_2_query.png"):
        assert (run / rel).is_file(), rel
    adapter = load_adapter(run / "checkpoints" / "adapter_10m_best")
    assert adapter.num_params == query["params"]["trainable"]
    record = json.loads((run / query["run_dir"] / "trial.json").read_text())
    assert record["status"] == "completed"
    assert "lora" in (run / "FINDINGS.md").read_text()

    ran = list(backend.calls)
    assert len(ran) == 2  # query once (shared by E2.1 and E2.2), lora once
    again = CountingBackend()
    Study(run, preset="tiny", overrides=OVERRIDES, backend=again, log=lambda s: None, render=False).run(["e2.1", "e2.2"])
    assert again.calls == []  # nothing is done twice; the failed trial waits for --resume
