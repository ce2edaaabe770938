"""`corrtrack track` on bad inputs and batches, on generated videos with a fake detector.

The videos are MJPG AVIs of bright rectangles ("people") walking on a dark
background; ``blob_parts`` stands in for the networks: every bright blob is a
person whose pose fills the blob. It is a module-level function, so worker
processes and Ray tasks can build it too (test_track_cli_ray.py).
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_tracker import TEMPLATE  # a standing person in body heights (tests/unit is on sys.path)

from corrtrack.errors import CorrtrackError
from corrtrack.structures import Poses

SIZE = (320, 240)  # width, height
PERSON = (24, 80)  # rectangle width, height


def walkers_avi(path: Path, n: int, people=lambda f: [(60 + 3 * f, 120), (250 - 3 * f, 140)],
                corrupt: tuple[int, ...] = ()) -> Path:
    """MJPG AVI of ``n`` frames; frame f shows a rectangle centred at each of ``people(f)``.

    Every MJPG frame is its own JPEG: wiping the start of frame i's JPEG makes
    exactly that frame undecodable (``corrupt``).
    """
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, SIZE)
    assert w.isOpened()
    for f in range(n):
        img = np.full((SIZE[1], SIZE[0], 3), 30, np.uint8)
        for x, y in people(f):
            x1, y1 = int(x - PERSON[0] / 2), int(y - PERSON[1] / 2)
            img[y1:y1 + PERSON[1], x1:x1 + PERSON[0]] = 230
        w.write(img)
    w.release()
    if corrupt:
        data = bytearray(path.read_bytes())
        soi = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
        assert len(soi) == n
        for i in corrupt:
            data[soi[i]:soi[i] + 200] = bytes(200)
        path.write_bytes(bytes(data))
    return path


def blob_detect(image: np.ndarray) -> Poses:
    """Every bright blob is a person; its pose is the template stretched over the blob."""
    mask = (image.mean(axis=2) > 128).astype(np.uint8)
    count, _, stats, centroids = cv2.connectedComponentsWithStats(mask)
    people = []
    for i in range(1, count):
        if stats[i, cv2.CC_STAT_AREA] < 300:
            continue
        kp = np.zeros((1, 17, 3))
        kp[0, :, :2] = TEMPLATE * stats[i, cv2.CC_STAT_HEIGHT] + centroids[i]
        kp[0, :, 2] = 0.9
        people.append(Poses(kp, "coco17"))
    return Poses.concat(people, layout="coco17") if people else Poses.empty("coco17")


def passthrough(image: np.ndarray, boxes):
    return boxes  # blob_detect already gives poses


def blob_parts(config):
    from corrtrack.pipeline.run import Parts

    return Parts(blob_detect, passthrough)


FAKE_ARGS = ["--similarity", "oks", "--no-recovery", "-q"]  # what the fakes can do: no correspondences


@pytest.fixture
def cli(monkeypatch):
    """Runs `corrtrack track ...` in process with the fake networks."""
    from typer.testing import CliRunner

    from corrtrack.cli import app
    from corrtrack.pipeline import run as run_mod

    monkeypatch.setattr(run_mod, "build_parts", blob_parts)

    def invoke(*args):
        return CliRunner().invoke(app, ["track", *map(str, args), *FAKE_ARGS])
    return invoke


def _posetrack(out: Path, name: str):
    from corrtrack.io.posetrack import read_posetrack
    from corrtrack.pipeline.run import output_path

    return read_posetrack(output_path(out, "posetrack", name))


def test_fake_detector_sees_the_walkers(tmp_path):
    from corrtrack.io.video import open_source

    frames = list(open_source(walkers_avi(tmp_path / "w.avi", 3)))
    found = blob_detect(frames[2].image)
    assert len(found) == 2
    np.testing.assert_allclose(np.sort(found.keypoints[:, 11:13, 0].mean(1)), [66, 244], atol=2)


def test_video_without_people_writes_empty_outputs(cli, tmp_path):
    from corrtrack.io.csv import read_csv
    from corrtrack.pipeline.run import is_complete, output_path

    video = walkers_avi(tmp_path / "empty_street.avi", 6, people=lambda f: [])
    out = tmp_path / "out"
    res = cli(video, "-o", out)
    assert res.exit_code == 0, res.output
    assert "empty_street: 6 frames, 0 tracks, 0 poses" in res.output
    assert "no people found in 6 frames" in res.output
    seq = _posetrack(out, "empty_street")
    assert len(seq) == 6 and all(len(p) == 0 for p in seq.poses)
    assert json.loads(output_path(out, "coco", "empty_street").read_text()) == []
    assert sum(len(p) for p in read_csv(output_path(out, "csv", "empty_street"), "coco17").poses) == 0
    assert is_complete(out, "empty_street")  # complete, so a batch rerun skips it


def test_corrupt_frames_in_a_video_are_skipped_and_ids_continue(cli, tmp_path, caplog):
    video = walkers_avi(tmp_path / "walk.avi", 12, corrupt=(5, 6))
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        res = cli(video, "-o", out)
    assert res.exit_code == 0, res.output
    assert "walk: 12 frames, 2 tracks, 20 poses" in res.output
    assert any("walk.avi" in r.getMessage() and "frames 5..6" in r.getMessage() for r in caplog.records)
    seq = _posetrack(out, "walk")
    # The undecodable frames are written empty, so frames stay aligned with the source ...
    assert [f.index for f in seq.frames] == list(range(12))
    assert [len(p) for p in seq.poses] == [2] * 5 + [0, 0] + [2] * 5
    # ... and each walker keeps its id across the gap (left walker first).
    ids = [p.track_ids[np.argsort(p.keypoints[:, 11, 0])].tolist() for p in seq.poses if len(p)]
    assert ids == [ids[0]] * 10 and sorted(ids[0]) == [0, 1]


def test_single_frame_video(cli, tmp_path):
    from corrtrack.io.video import open_source
    from corrtrack.pipeline.run import output_path

    video = walkers_avi(tmp_path / "still.avi", 1, people=lambda f: [(160, 120)])
    out = tmp_path / "out"
    res = cli(video, "-o", out, "--render")
    assert res.exit_code == 0, res.output
    assert "still: 1 frames, 1 tracks, 1 poses" in res.output  # min track length gives way on a 1-frame clip
    seq = _posetrack(out, "still")
    assert len(seq) == 1 and seq.track_ids() == [0]
    with open_source(output_path(out, "video", "still")) as rendered:
        assert len(list(rendered)) == 1


def test_non_video_file_is_a_one_line_error(tmp_path):
    """Through the real entry point: exit code 1, one line naming the file, no traceback."""
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video\n" * 20)
    proc = subprocess.run([sys.executable, "-c", "from corrtrack.cli import main; main()", "track", str(notes),
                           "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("corrtrack: error: ") and str(notes) in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()  # failed before writing anything


def test_a_bad_video_in_a_folder_does_not_stop_the_batch(cli, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    walkers_avi(folder / "a.avi", 4)
    (folder / "b.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    out = tmp_path / "out"
    res = cli(folder, "-o", out)
    assert res.exit_code == 1
    assert "a: 4 frames, 2 tracks, 8 poses" in res.output and "b: not tracked" in res.output
    assert isinstance(res.exception, CorrtrackError) and "1 of 2 sequences could not be tracked (b)" in str(
        res.exception)
    assert len(_posetrack(out, "a")) == 4


def test_detect_every_runs_the_detector_on_every_nth_frame_and_follows_people_between(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from corrtrack.cli import app
    from corrtrack.pipeline import run as run_mod
    from corrtrack.pipeline.run import Parts

    detected = []

    def detect(image):
        detected.append(image)
        return blob_detect(image)

    def estimate(image, boxes):
        """Detected poses pass through; in a box (following) the blob pose inside it."""
        if isinstance(boxes, Poses):
            return boxes
        blobs = blob_detect(image)
        centres = blobs.keypoints[:, 11:13, :2].mean(1)
        out = []
        for b in boxes:
            inside = [i for i, (x, y) in enumerate(centres) if b[0] <= x <= b[2] and b[1] <= y <= b[3]]
            out.append(blobs[inside[:1]] if inside else Poses(np.zeros((1, 17, 3)), "coco17"))
        return Poses.concat(out, layout="coco17")

    def follow(src, src_image, dst, dst_image, poses):
        """A blob-matching stand-in for the correspondences: each pose moves with its nearest blob."""
        a, b = blob_detect(src_image), blob_detect(dst_image)
        ca, cb = a.keypoints[:, 11:13, :2].mean(1), b.keypoints[:, 11:13, :2].mean(1)
        kp = poses.keypoints.copy()
        for i, c in enumerate(kp[:, 11:13, :2].mean(1)):
            j = np.argmin(np.hypot(*(ca - c).T))
            kp[i, :, :2] += cb[np.argmin(np.hypot(*(cb - ca[j]).T))] - ca[j]
        return poses.replace(keypoints=kp), None

    monkeypatch.setattr(run_mod, "build_parts", lambda config: Parts(detect, estimate, correspond=follow))
    video = walkers_avi(tmp_path / "w.avi", 12)
    res = CliRunner().invoke(app, ["track", str(video), "-o", str(tmp_path / "out"), *FAKE_ARGS,
                                   "--detect-every", "3"])
    assert res.exit_code == 0, res.output
    assert len(detected) == 4  # frames 0, 3, 6, 9
    seq = _posetrack(tmp_path / "out", "w")
    assert [len(p) for p in seq.poses] == [2] * 12
    assert all(sorted(p.track_ids.tolist()) == [0, 1] for p in seq.poses)
    left = [p.track_ids[np.argmin(p.keypoints[:, 11, 0])] for p in seq.poses]
    assert len(set(left)) == 1  # the left walker keeps one id


def _track_many_args(cli, tmp_path, monkeypatch, *args) -> dict:
    """What `corrtrack track a.avi ARGS` hands to track_many (which is not run)."""
    from corrtrack.pipeline import run as run_mod

    seen = []
    monkeypatch.setattr(run_mod, "track_many", lambda seqs, out, cfg, workers, skip_complete, ray: seen.append(
        {"config": cfg, "ray": ray}) or [])
    walkers_avi(tmp_path / "a.avi", 2)
    res = cli(tmp_path / "a.avi", "-o", tmp_path / "out", *args)
    assert res.exit_code == 0, res.output
    return seen[0]


@pytest.mark.parametrize("args, address", [(["--ray", "local"], "local"), (["--ray=auto"], "auto"),
                                           (["--ray", "10.0.0.1:6379"], "10.0.0.1:6379"), ([], "no ray")])
def test_ray_option_passes_the_address_as_ray_init_reads_it(cli, tmp_path, monkeypatch, args, address):
    ray = _track_many_args(cli, tmp_path, monkeypatch, *args)["ray"]
    assert (ray.address if ray else "no ray") == address


@pytest.mark.parametrize("args, runtime", [([], "onnx"), (["--cpu-runtime", "torchscript"], "torchscript")])
def test_cpu_runtime_option_reaches_the_run_config(cli, tmp_path, monkeypatch, args, runtime):
    assert _track_many_args(cli, tmp_path, monkeypatch, *args)["config"].cpu_runtime == runtime
    assert cli(tmp_path / "a.avi", "--cpu-runtime", "tensorrt").exit_code != 0


def test_build_parts_loads_the_correspondence_net_on_the_chosen_runtime(monkeypatch):
    from corrtrack.pipeline import run as run_mod
    from corrtrack.pipeline.run import RunConfig, build_parts

    loaded = []
    monkeypatch.setattr(run_mod.CorrPropagator, "load", classmethod(lambda cls, *a, **kw: loaded.append(kw)))
    monkeypatch.setattr("corrtrack.pipeline.detector.Detector", lambda *a, **kw: None)
    monkeypatch.setattr("corrtrack.pipeline.pose.TopDownPoseEstimator", lambda *a, **kw: None)
    build_parts(RunConfig(device="cpu", cpu_runtime="torchscript"))
    assert loaded[0]["runtime"] == "torchscript" and loaded[0]["input_size"] is None
    build_parts(RunConfig(device="cpu", corr_input_size=384))
    assert loaded[1]["input_size"] == 384


def test_corr_input_size_option_reaches_the_run_config(cli, tmp_path, monkeypatch):
    assert _track_many_args(cli, tmp_path, monkeypatch)["config"].corr_input_size is None
    assert _track_many_args(cli, tmp_path, monkeypatch, "--corr-input-size", "384")["config"].corr_input_size == 384


def test_motion_prior_option_reaches_the_tracker_config(cli, tmp_path, monkeypatch):
    assert _track_many_args(cli, tmp_path, monkeypatch)["config"].tracker.motion_prior is True
    assert _track_many_args(cli, tmp_path, monkeypatch, "--no-motion-prior")["config"].tracker.motion_prior is False


def test_confirmed_first_option_reaches_the_tracker_config(cli, tmp_path, monkeypatch):
    assert _track_many_args(cli, tmp_path, monkeypatch)["config"].tracker.confirmed_first is True
    assert _track_many_args(cli, tmp_path, monkeypatch, "--any-order")["config"].tracker.confirmed_first is False


def test_rematch_option_reaches_the_tracker_config(cli, tmp_path, monkeypatch):
    assert _track_many_args(cli, tmp_path, monkeypatch)["config"].tracker.duplicate.rematch is True
    assert _track_many_args(cli, tmp_path, monkeypatch, "--no-rematch")["config"].tracker.duplicate.rematch is False


def test_duplicate_ratio_option_reaches_the_tracker_config(cli, tmp_path, monkeypatch):
    assert _track_many_args(cli, tmp_path, monkeypatch)["config"].tracker.duplicate.ratio == 0.4
    got = _track_many_args(cli, tmp_path, monkeypatch, "--duplicate-ratio", "0.6")["config"].tracker.duplicate
    assert got.ratio == 0.6 and got.rematch is True


def test_appearance_option_reaches_the_tracker_config(cli, tmp_path, monkeypatch):
    assert _track_many_args(cli, tmp_path, monkeypatch)["config"].tracker.appearance == 0.75
    assert _track_many_args(cli, tmp_path, monkeypatch, "--appearance", "0")["config"].tracker.appearance == 0.0


def test_last_box_iou_option_reaches_the_tracker_config(cli, tmp_path, monkeypatch):
    assert _track_many_args(cli, tmp_path, monkeypatch)["config"].tracker.last_box_iou == 0.8
    assert _track_many_args(cli, tmp_path, monkeypatch, "--last-box-iou", "0")["config"].tracker.last_box_iou == 0.0


def test_recovered_overlap_iou_option_reaches_the_tracker_config(cli, tmp_path, monkeypatch):
    assert _track_many_args(cli, tmp_path, monkeypatch)["config"].tracker.recovered_overlap_iou == 0.5
    args = ("--recovered-overlap-iou", "0")
    assert _track_many_args(cli, tmp_path, monkeypatch, *args)["config"].tracker.recovered_overlap_iou == 0.0


def test_reach_option_reaches_the_tracker_config(cli, tmp_path, monkeypatch):
    assert _track_many_args(cli, tmp_path, monkeypatch)["config"].tracker.reach == 0.2
    assert _track_many_args(cli, tmp_path, monkeypatch, "--reach", "0")["config"].tracker.reach == 0.0


def test_corr_prior_option_reaches_the_tracker_config(cli, tmp_path, monkeypatch):
    assert _track_many_args(cli, tmp_path, monkeypatch)["config"].tracker.corr_prior == 0.0
    assert _track_many_args(cli, tmp_path, monkeypatch, "--corr-prior", "0.1")["config"].tracker.corr_prior == 0.1


def test_ray_not_installed_is_a_clear_error(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    walkers_avi(tmp_path / "a.avi", 2)
    res = cli(tmp_path / "a.avi", "-o", tmp_path / "out", "--ray", "local")
    assert isinstance(res.exception, CorrtrackError)
    assert "pip install 'corrtrack[ray]'" in str(res.exception)


def test_worker_processes_track_each_video_and_resume(tmp_path):
    """--workers: spawned processes run track_one per video; complete videos are skipped next time."""
    from corrtrack.pipeline.run import (
        RunConfig,
        discover_inputs,
        is_complete,
        track_many,
    )
    from corrtrack.pipeline.tracker import RecoveryConfig, TrackerConfig

    folder = tmp_path / "videos"
    folder.mkdir()
    walkers_avi(folder / "a.avi", 5)
    walkers_avi(folder / "b.avi", 4, people=lambda f: [(100, 120)])
    (folder / "c.avi").write_bytes(b"RIFF" + bytes(500))
    cfg = RunConfig(tracker=TrackerConfig(similarity="oks", recovery=RecoveryConfig(enabled=False)), progress=False)
    out = tmp_path / "out"
    res = {r.name: r for r in track_many(discover_inputs(folder), out, cfg, workers=2, parts_factory=blob_parts)}
    assert (res["a"].frames, res["a"].poses, res["b"].frames, res["b"].poses) == (5, 10, 4, 4)
    assert res["c"].error and "c.avi" in res["c"].error
    assert is_complete(out, "a") and is_complete(out, "b") and not is_complete(out, "c")
    again = track_many(discover_inputs(folder), out, cfg, workers=2, parts_factory=blob_parts)
    assert sorted((r.name, r.skipped, bool(r.error)) for r in again) == [("a", True, False), ("b", True, False),
                                                                         ("c", False, True)]
