"""`corrtrack bench` end to end with tiny settings (real models, vtest.avi, the synthetic generator)."""
from __future__ import annotations

import json
import math

import pytest

from corrtrack.errors import CorrtrackError

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def vtest(shared_data):
    path = shared_data / "opencv" / "vtest.avi"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


def test_people_scene_has_exactly_that_many_people(vtest, tmp_path):
    from corrtrack.bench import people_scene, usable_people
    from corrtrack.io.posetrack import read_posetrack

    distinct = usable_people()  # 10 in the shared test_coco.json
    assert 1 <= distinct < 12
    video = people_scene(tmp_path, 12, 4, seed=0)
    assert video.is_file() and video.suffix == ".mp4"
    manifest = json.loads((tmp_path / "manifests" / f"{video.stem}.json").read_text())
    assert len(manifest["people"]) == 12
    assert sum(p["lookalike_of"] is not None for p in manifest["people"]) == 12 - distinct
    gt = read_posetrack(tmp_path / "posetrack" / f"{video.stem}.json")
    ids = {int(t) for p in gt.poses for t in p.track_ids}
    assert len(ids) == 12  # all of them appear (the crowd motion keeps people in view)


def test_bench_cli_tiny(vtest, tmp_path):
    from typer.testing import CliRunner

    from corrtrack.bench import QUALITY_COLUMNS, SPEED_COLUMNS, STAGES
    from corrtrack.cli import app

    out = tmp_path / "res" / "bench.json"
    # No --device: the default, as the README's `corrtrack bench` runs it (it once crashed without one).
    args = ["bench", "--frames", "3", "--people", "2", "--quality-frames", "5", "--quality-sequences", "1",
            "--detect-every", "2", "--no-refinement", "--json", str(out), "-q"]
    res = CliRunner().invoke(app, args)
    if isinstance(res.exception, CorrtrackError) and "weights" in str(res.exception):
        pytest.skip(f"models unavailable: {res.exception}")
    assert res.exit_code == 0, res.output
    header = [ln for ln in res.output.splitlines() if ln.strip().startswith("input")]
    assert header and header[0].split() == " ".join(SPEED_COLUMNS).split()
    data = json.loads(out.read_text())
    assert not list(out.parent.glob("*.part"))
    speed = data["speed"]
    assert [r["input"] for r in speed] == ["synthetic, 2 people", "vtest.avi", "vtest.avi, --no-refinement",
                                           "vtest.avi, --detect-every 2"]
    assert [r["people"] for r in speed] == [2, None, None, None]
    # Frames 0 and 2 detected, frame 1 followed: fewer boxes per frame than detecting all three.
    assert 0 < speed[3]["detected"] < speed[1]["detected"]
    assert speed[2]["detected"] == speed[1]["detected"]  # the maps change nothing before tracking
    for r in speed:
        assert r["frames"] == 3 and (r["width"], r["height"]) == (768, 576)
        assert set(r["stage_ms"]) == set(STAGES)
        for v in (r["total_ms"], r["fps"], r["peak_rss_mb"], r["cpu_ms"], r["stage_ms"]["detect"], r["stage_ms"]["pose"],
                  r["stage_ms"]["correspondence"]):
            assert math.isfinite(v) and v > 0
        assert all(math.isfinite(v) and v >= 0 for v in r["stage_ms"].values())
        assert sum(r["stage_ms"].values()) == pytest.approx(r["total_ms"], rel=1e-6)
        assert r["fps"] == pytest.approx(1000 / r["total_ms"])
        assert 0 < r["tracking_share"] < 100
        assert r["detected"] > 0 and r["propagated"] > 0  # people walk in both clips from frame 0
    q = data["quality"]
    assert set(q["methods"]) == {"corr", "oks"} and q["presets"] == ["crossing", "fast"]
    assert q["sequences"] == 2 and q["frames"] == 10 and q["gt_poses"] > 0  # 1 sequence of 5 frames per preset
    for m in q["methods"].values():
        assert set(QUALITY_COLUMNS[1:]) <= set(m)
        assert isinstance(m["IDSW"], int) and m["IDSW"] >= 0
        assert math.isfinite(m["MOTA"]) and m["MOTA"] <= 100 and 0 <= m["mAP"] <= 100
    names = {m["name"]: m for m in data["models"]}
    assert {"nanodet", "corrnet"} <= set(names)
    assert all(m["bytes"] > 0 and m["params"] > 0 for m in data["models"])
    assert names["nanodet"]["used"] and names["corrnet"]["used"]


def test_bench_cli_bad_people(tmp_path):
    from typer.testing import CliRunner

    from corrtrack.cli import app

    res = CliRunner().invoke(app, ["bench", "--people", "3,x", "--no-quality"])
    assert isinstance(res.exception, CorrtrackError) and "--people" in str(res.exception)
