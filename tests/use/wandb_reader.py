"""Read a W&B offline run back from its ``run-<id>.wandb`` file with the ``wandb`` package's own record types.

The file is W&B's transaction log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0) then LevelDB-log-style
32 KiB blocks of chunks (crc32 [4], length [2], type [1]: full / first / middle / last), each record a
``wandb.proto.wandb_internal_pb2.Record``.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32 * 1024
HEADER = 7
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _records(path: Path):
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, pending = HEADER, b""
    while pos + CHUNK_HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK_HEADER:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + CHUNK_HEADER])
        pos += CHUNK_HEADER
        chunk = data[pos:pos + length]
        pos += length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
            pending = b""
        elif kind == 0 and length == 0:  # zero padding at the end
            break


def read_offline_run(run_dir: str | Path) -> dict:
    """``{"run": {id, name, group, job_type, tags, project}, "config": {...}, "history": [{key: value}],
    "summary": {...}, "files": [relative paths under files/]}``."""
    from wandb.proto import wandb_internal_pb2 as pb

    run_dir = Path(run_dir)
    (log,) = run_dir.glob("run-*.wandb")
    out: dict = {"run": {}, "config": {}, "history": [], "summary": {}, "files": []}
    for raw in _records(log):
        rec = pb.Record()
        rec.ParseFromString(raw)
        which = rec.WhichOneof("record_type")
        if which == "run":
            r = rec.run
            out["run"] = {"id": r.run_id, "name": r.display_name, "group": r.run_group, "job_type": r.job_type,
                          "tags": list(r.tags), "project": r.project}
            for item in r.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif which == "config":
            for item in rec.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif which == "history":
            row = {}
            for item in rec.history.item:
                key = item.key or "/".join(item.nested_key)
                row[key] = json.loads(item.value_json)
            out["history"].append(row)
        elif which == "summary":
            for item in rec.summary.update:
                key = item.key or "/".join(item.nested_key)
                out["summary"][key] = json.loads(item.value_json)
    out["files"] = sorted(str(p.relative_to(run_dir / "files")) for p in (run_dir / "files").rglob("*") if p.is_file())
    return out
