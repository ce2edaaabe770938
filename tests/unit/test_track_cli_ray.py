"""A folder of videos tracked as Ray tasks on a local Ray cluster started for the test.

Ray is an optional extra (pip install 'corrtrack[ray]', ~80 MB), not part of the
test install, so this file is skipped where it is missing. Starting the local
cluster takes ~10 s.
"""
from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (optional: pip install 'corrtrack[ray]')")

from test_track_cli import blob_detect, blob_parts, passthrough, walkers_avi  # tests/unit is on sys.path


def crash_on_white(image):
    if image.mean() > 200:
        raise RuntimeError("a bug in a task")
    return blob_detect(image)


def crashing_parts(config):
    from corrtrack.pipeline.run import Parts

    return Parts(crash_on_white, passthrough)


def test_ray_tasks_track_each_video_like_a_serial_run_and_resume(tmp_path, monkeypatch):
    from corrtrack.pipeline.run import (
        RayConfig,
        RunConfig,
        discover_inputs,
        is_complete,
        output_path,
        track_many,
    )
    from corrtrack.pipeline.tracker import RecoveryConfig, TrackerConfig

    # The tasks build the fake networks from the test modules, which they cannot import: ship them by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[blob_parts.__module__])
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    folder = tmp_path / "videos"
    folder.mkdir()
    walkers_avi(folder / "a.avi", 6)
    walkers_avi(folder / "b.avi", 5, people=lambda f: [(100 + 4 * f, 120)], corrupt=(2,))
    white = cv2.VideoWriter(str(folder / "c.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for _ in range(3):
        white.write(np.full((48, 64, 3), 255, np.uint8))  # crash_on_white's trigger
    white.release()
    cfg = RunConfig(tracker=TrackerConfig(similarity="oks", recovery=RecoveryConfig(enabled=False)), progress=False)
    seqs = discover_inputs(folder)
    serial = tmp_path / "serial"
    track_many(seqs[:2], serial, cfg, parts_factory=blob_parts)

    monkeypatch.chdir(tmp_path)  # a relative output folder: the tasks must get absolute paths
    results = track_many(seqs, "on_ray", cfg, ray=RayConfig(address="local"), parts_factory=crashing_parts)
    assert not ray.is_initialized()  # the cluster it started is shut down again
    got = {r.name: r for r in results}
    assert sorted(got) == ["a", "b", "c"] and not any(r.skipped for r in results)
    assert (got["a"].frames, got["a"].tracks, got["b"].frames, got["b"].tracks) == (6, 2, 5, 1)
    # A task that crashes is reported for its video; the others complete.
    assert not got["a"].error and not got["b"].error and "c.avi: Ray task failed" in got["c"].error
    for name in "ab":
        assert is_complete(tmp_path / "on_ray", name)
        for kind in ("posetrack", "coco", "csv"):  # the same outputs as tracking in this process
            assert output_path(tmp_path / "on_ray", kind, name).read_bytes() == \
                output_path(serial, kind, name).read_bytes()
    assert not is_complete(tmp_path / "on_ray", "c")
    assert not list((tmp_path / "on_ray").glob("*/c.*")) and not list((tmp_path / "on_ray").glob("*/.*"))

    # Resuming: complete videos are skipped; only the failed one is tried again.
    import corrtrack.pipeline.run as run_mod

    submitted = []
    monkeypatch.setattr(run_mod, "_track_on_ray", lambda todo, *a: submitted.extend(s.name for s in todo) or [])
    again = track_many(seqs, "on_ray", cfg, ray=RayConfig(address="local"), parts_factory=crashing_parts)
    assert sorted(r.name for r in again if r.skipped) == ["a", "b"] and submitted == ["c"]


def test_unreachable_cluster_is_a_one_line_error(tmp_path, monkeypatch):
    from corrtrack.errors import CorrtrackError
    from corrtrack.pipeline.run import RayConfig, RunConfig, discover_inputs, track_many

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where "auto" looks for a running local cluster
    walkers_avi(tmp_path / "a.avi", 2)
    with pytest.raises(CorrtrackError, match=r"^Ray cluster auto: cannot start or connect \(") as err:
        track_many(discover_inputs(tmp_path / "a.avi"), tmp_path / "out", RunConfig(progress=False),
                   ray=RayConfig(address="auto"), parts_factory=blob_parts)
    assert "\n" not in str(err.value)
