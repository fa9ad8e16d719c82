"""E2.4 reports the final adapter per dataset: spatial IoU only where the dataset's protocol makes it meaningful
(n/a with the reason otherwise), the temporal metric on clip splits, intervals carried through."""
from c2bridge.experiments.e2_4 import _per_dataset, per_dataset_table
from c2bridge.experiments.trials import TrialRecord


def _record(seed, shapes_d, coco_d, ssv2_d, flick):
    return TrialRecord.from_dict({"key": f"k{seed}", "status": "completed", "metrics": {
        "heldout": {"distance": shapes_d, "spatial_iou": 0.9, "n": 4},
        "coco_heldout": {"distance": coco_d, "spatial_iou": None, "n": 4,
                         "iou_note": "coco: photos have no single background colour"},
        "ssv2_heldout": {"distance": ssv2_d, "spatial_iou": None, "flicker": flick, "warp_error": 2 * flick, "n": 2},
    }})


def test_per_dataset_rows_follow_each_datasets_protocol():
    cfg = {"caches": {"heldout": {"dataset": "shapes"}, "coco_heldout": {"dataset": "coco"},
                      "ssv2_heldout": {"dataset": "ssv2"}}}
    splits = {"heldout": "heldout", "coco_heldout": "coco_heldout", "ssv2_heldout": "ssv2_heldout"}
    recs = [_record(0, 0.2, 0.4, 0.6, 0.1), _record(1, 0.4, 0.6, 0.8, 0.3)]
    iv = {"low": 0.1, "high": 0.5, "level": 0.95}
    rows = _per_dataset(cfg, splits, recs, {"heldout": {"distance": iv}})
    assert rows["heldout"]["dataset"] == "shapes" and rows["heldout"]["kind"] == "image"
    assert abs(rows["heldout"]["distance"] - 0.3) < 1e-12 and rows["heldout"]["spatial_iou"] == 0.9
    assert rows["heldout"]["iou_note"] is None and rows["heldout"]["intervals"] == {"distance": iv}
    assert rows["coco_heldout"]["spatial_iou"] is None and "background" in rows["coco_heldout"]["iou_note"]
    ssv2 = rows["ssv2_heldout"]
    assert ssv2["kind"] == "clip" and abs(ssv2["flicker"] - 0.2) < 1e-12 and abs(ssv2["warp_error"] - 0.4) < 1e-12
    assert "no masks" in ssv2["iou_note"]  # no note in the records: the dataset spec says why
    table = per_dataset_table(rows)
    lines = table.splitlines()
    shapes_line = next(line for line in lines if line.startswith("| heldout"))
    assert "0.9" in shapes_line and "[0.1, 0.5]" in shapes_line and shapes_line.rstrip().endswith("| – | – |")
    assert "n/a (1)" in next(line for line in lines if line.startswith("| coco_heldout"))
    ssv2_line = next(line for line in lines if line.startswith("| ssv2_heldout"))
    assert "n/a (2)" in ssv2_line and "0.2" in ssv2_line and "0.4" in ssv2_line
    assert any(line.startswith("(1) coco_heldout: coco: photos") for line in lines)
