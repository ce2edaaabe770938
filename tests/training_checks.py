"""Checks shared by the training tests (importable: tests/ is on sys.path through conftest.py)."""
from __future__ import annotations

import csv
from pathlib import Path

import torch


def assert_same_run(full: Path, resumed: Path, steps: int) -> list[dict]:
    """An interrupted-then-resumed run equals the uninterrupted one: same final step, bit-identical
    weights, same metrics log (wall times aside). Returns the log rows."""
    a = torch.load(full / "checkpoint.pt", weights_only=False)
    b = torch.load(resumed / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == steps
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k

    def rows(folder: Path) -> list[dict]:
        with open(folder / "metrics.csv") as f:
            return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in csv.DictReader(f)]

    ra, rb = rows(full), rows(resumed)
    assert ra == rb
    return ra
