"""PoseTracker: the online Python API is the `track` pipeline, frame by frame, without the files."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_track_cli import PERSON, SIZE, blob_detect, passthrough, walkers_avi  # tests/unit is on sys.path

from corrtrack.errors import CorrtrackError
from corrtrack.pipeline.run import Parts, PoseTracker, RunConfig, discover_inputs, track_sequence
from corrtrack.pipeline.tracker import RecoveryConfig, TrackerConfig
from corrtrack.structures import Poses

CONFIG = RunConfig(tracker=TrackerConfig(similarity="oks", recovery=RecoveryConfig(enabled=False)), progress=False)


def frame(f: int) -> np.ndarray:
    img = np.full((SIZE[1], SIZE[0], 3), 30, np.uint8)
    for x, y in [(60 + 3 * f, 120), (250 - 3 * f, 140)]:
        x1, y1 = int(x - PERSON[0] / 2), int(y - PERSON[1] / 2)
        img[y1:y1 + PERSON[1], x1:x1 + PERSON[0]] = 230
    return img


def test_each_call_tracks_the_next_frame_and_ids_stay_with_the_walkers():
    tracker = PoseTracker(CONFIG, Parts(blob_detect, passthrough))
    left_ids = set()
    for f in range(10):
        people = tracker(frame(f))
        assert len(people) == 2 and sorted(people.track_ids.tolist()) == [0, 1]
        left_ids.add(int(people.track_ids[np.argmin(people.keypoints[:, 11, 0])]))
    assert left_ids == {0}
    assert {"detect", "pose", "association"} <= set(tracker.timings)


def test_calls_return_what_track_writes_for_the_same_frames(tmp_path):
    """Same ids and joints as the PoseTrack file of `track_sequence` (no short tracks to drop here)."""
    from corrtrack.io.posetrack import read_posetrack
    from corrtrack.pipeline.run import output_path

    video = walkers_avi(tmp_path / "w.avi", 8)
    (seq,) = discover_inputs(video)
    track_sequence(seq, tmp_path / "out", CONFIG, Parts(blob_detect, passthrough))
    written = read_posetrack(output_path(tmp_path / "out", "posetrack", "w")).poses
    tracker = PoseTracker(CONFIG, Parts(blob_detect, passthrough))
    for (_, image), ref in zip(seq.frames(), written):
        online = tracker(image).to_layout(ref.layout)
        order, ref_order = np.argsort(online.track_ids), np.argsort(ref.track_ids)
        assert online.track_ids[order].tolist() == ref.track_ids[ref_order].tolist()
        a, b = online.keypoints[order], ref.keypoints[ref_order]
        shown = b[..., 2] > 0
        assert shown.sum() >= 2 * 13
        np.testing.assert_allclose(a[shown][:, :2], b[shown][:, :2], atol=0.01)


def test_weak_joints_are_dropped_from_calls_but_kept_by_step():
    def weak_hips(image):
        p = blob_detect(image)
        p.keypoints[:, 11:13, 2] = 0.1  # below the output threshold (0.3)
        return p

    tracker = PoseTracker(CONFIG, Parts(weak_hips, passthrough))
    assert (tracker(frame(0)).keypoints[:, 11:13, 2] == 0).all()
    assert (tracker.step(1, frame(1)).keypoints[:, 11:13, 2] == pytest.approx(0.1))


def test_reset_starts_a_new_sequence():
    tracker = PoseTracker(CONFIG, Parts(blob_detect, passthrough))
    for f in range(3):
        tracker(frame(f))
    assert tracker.tracker.live_track_ids == [0, 1]
    tracker.reset()
    assert tracker.tracker.live_track_ids == [] and not any(tracker.timings.values())
    assert sorted(tracker(frame(5)).track_ids.tolist()) == [0, 1]


def test_bad_image_is_a_clear_error():
    tracker = PoseTracker(CONFIG, Parts(blob_detect, passthrough))
    with pytest.raises(CorrtrackError, match="image"):
        tracker(np.zeros((4, 4, 5), np.uint8))


def test_top_level_names_load_lazily():
    """`import corrtrack` stays light; corrtrack.PoseTracker is the pipeline's class."""
    import subprocess
    import sys

    code = ("import sys, corrtrack; assert 'corrtrack.pipeline.run' not in sys.modules; "
            "from corrtrack import PoseTracker, RunConfig, TrackerConfig; "
            "from corrtrack.pipeline import run, tracker; "
            "assert PoseTracker is run.PoseTracker and RunConfig is run.RunConfig; "
            "assert TrackerConfig is tracker.TrackerConfig; assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    import corrtrack

    with pytest.raises(AttributeError):
        corrtrack.NoSuchThing  # noqa: B018


def test_a_rejected_candidate_is_not_estimated_again_at_once(tmp_path):
    """PoseConfig.candidate_memory: the pose network sees a static background candidate every 5th frame."""
    import json

    from corrtrack.pipeline.pose import PoseConfig, verify_candidates
    from corrtrack.pipeline.run import output_path
    from corrtrack.structures import CANDIDATE

    def with_cone(image):
        people = blob_detect(image)
        cone = Poses(np.c_[np.full((1, 17, 2), 20.0), np.full((1, 17, 1), 0.1)], "coco17",
                     np.array([[10.0, 10, 30, 40]]), np.array([0.3]), origin=np.array([CANDIDATE]))
        return Poses.concat([people, cone])

    asked = []

    def estimate(image, boxes):
        asked.append(len(boxes))
        return verify_candidates(boxes)

    config = dataclasses.replace(CONFIG, pose=PoseConfig(candidate_memory=4))
    tracker = PoseTracker(config, Parts(with_cone, estimate))
    for f in range(10):
        assert len(tracker(frame(f))) == 2
    assert asked == [3, 2, 2, 2, 2, 3, 2, 2, 2, 2]
    assert tracker.counts == {"detected": 30, "estimated": 22}
    tracker = PoseTracker(dataclasses.replace(config, pose=PoseConfig(candidate_memory=0)), Parts(with_cone, estimate))
    asked.clear()
    for f in range(3):
        tracker(frame(f))
    assert asked == [3, 3, 3]
    (seq,) = discover_inputs(walkers_avi(tmp_path / "w.avi", 6))
    track_sequence(seq, tmp_path / "out", config, Parts(with_cone, estimate))
    summary = json.loads(output_path(tmp_path / "out", "summary", "w").read_text())
    assert summary["boxes"] == {"detected": 18, "estimated": 14}


def test_parts_for_sets_the_propagator_as_the_tracker_config_asks_and_shares_the_network():
    from corrtrack.pipeline.run import CorrPropagator, parts_for

    net = object()  # never called here
    parts = Parts(blob_detect, passthrough, CorrPropagator(net, **CorrPropagator.settings(TrackerConfig())))
    assert parts.correspond.use_refinement and parts.correspond.cache_size == TrackerConfig().max_age + 2
    tc = TrackerConfig(use_refinement=False, joint_thresh=0.2, corr_prior=0.1, keep_alive=7)
    moved = parts_for(parts, tc).correspond
    assert moved.net is net and moved is not parts.correspond
    assert (moved.use_refinement, moved.joint_thresh, moved.prior, moved.cache_size) == (False, 0.2, 0.1, 9)
    assert parts.correspond.use_refinement  # the original is left as it was
    fake = Parts(blob_detect, passthrough, correspond=lambda *a: None)  # not a CorrPropagator: kept
    assert parts_for(fake, tc) is fake
    # PoseTracker (and so track_sequence) does the same with parts built for another config.
    tracker = PoseTracker(RunConfig(tracker=tc, progress=False), parts)
    assert tracker.parts.correspond.net is net and not tracker.parts.correspond.use_refinement
