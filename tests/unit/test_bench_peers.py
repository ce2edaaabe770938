"""benchmarks/bench_peers.py: picking our runs on disk, the box confidence, the ID-switch sentence."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bp():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_peers
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return bench_peers


def _run(runs: Path, folder: str, names: list[str], mtime: float) -> Path:
    d = runs / folder / "posetrack"
    d.mkdir(parents=True)
    for n in names:
        (d / f"{n}.json").write_text("{}", encoding="utf-8")
        os.utime(d / f"{n}.json", (mtime, mtime))
    return runs / folder


def test_split_run_name(bp):
    assert bp.split_run_name("corr+rec+merge-0123456789") == ("corr+rec+merge", "0123456789")
    assert bp.split_run_name("corr-noref-abcdef0123") == ("corr-noref", "abcdef0123")
    assert bp.split_run_name("peer-sort-abcdef0123") == ("peer-sort", "abcdef0123")
    assert bp.split_run_name("corr-xyz") is None and bp.split_run_name("corr-ABCDEF0123") is None


def test_pick_runs_latest_complete_and_preferred(bp, tmp_path):
    runs = tmp_path / "runs"
    names = ["001001_a_walk", "002001_a_crossing"]
    old = _run(runs, "corr-aaaaaaaaaa", names, 1000)
    new = _run(runs, "corr-bbbbbbbbbb", names, 2000)
    _run(runs, "corr-cccccccccc", names[:1], 3000)  # newest but incomplete
    _run(runs, "corr-noref-dddddddddd", names, 4000)  # another method whose name starts the same
    _run(runs, "oks-eeeeeeeeee", names[:1], 1000)
    picked, missing = bp.pick_runs(runs, ["corr", "oks"], names)
    assert picked == {"corr": new} and list(missing) == ["oks"] and "oks-<hash>" in missing["oks"]
    # The current config's folder wins when complete, even if older; an incomplete one does not.
    picked, _ = bp.pick_runs(runs, ["corr"], names, {"corr": old})
    assert picked["corr"] == old
    picked, _ = bp.pick_runs(runs, ["corr"], names, {"corr": runs / "corr-cccccccccc"})
    assert picked["corr"] == new
    picked, _ = bp.pick_runs(runs, ["corr-noref"], names)
    assert picked["corr-noref"].name == "corr-noref-dddddddddd"
    # A subset of the sequences makes the incomplete run complete, and it is the newest.
    picked, _ = bp.pick_runs(runs, ["corr"], names[:1])
    assert picked["corr"].name == "corr-cccccccccc"
    assert bp.pick_runs(tmp_path / "none", ["corr"], names)[0] == {}


def test_box_confidence_inverts_the_person_score(bp):
    from corrtrack.structures import Poses

    kp = np.zeros((3, 17, 3))
    kp[0, :, 2], kp[1, :, 2] = 0.5, 0.25
    box = np.array([0.8, 0.4, 0.6])
    person = box * kp[..., 2].mean(1)  # as the pose estimator stores it
    poses = Poses(kp, "coco17", np.zeros((3, 4)), person)
    np.testing.assert_allclose(bp.box_confidence(poses), [0.8, 0.4, 0.0])


def test_idsw_summary_target(bp):
    def row(sw, rec=50.0, mota=30.0):
        return {"IDSW": sw, "Rec": rec, "MOTA": mota}

    met = {"corr": row(40), "oks": row(100), "flow": row(60), "reid": row(70), "norfair": row(50),
           "bytetrack": row(45), "sort": row(30)}
    s = bp.idsw_summary(met, ["norfair", "bytetrack", "sort"])
    assert "0.40x" in s and "**met**" in s and "not fewer than `sort` 30" in s
    missed = dict(met, oks=row(60), bytetrack=row(10, rec=20.0))
    s = bp.idsw_summary(missed, ["norfair", "bytetrack", "sort"])
    assert "missed by 10 switches" in s and "**not met**" in s and "`bytetrack` recalls 20 %" in s
    assert "per % of recall) `corr` 0.8 against `bytetrack` 0.5" in s  # 40 / 50 and 10 / 20
    assert "cannot be checked" in bp.idsw_summary({"oks": row(3)}, [])
