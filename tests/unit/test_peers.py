"""Peer trackers (norfair, ByteTrack, SORT) on generated poses."""
from __future__ import annotations

import numpy as np
import pytest

from corrtrack.errors import CorrtrackError
from corrtrack.layouts import COCO17
from corrtrack.pipeline.peers import PeerConfig, make_peer, peer_available, peer_names
from corrtrack.structures import Poses

# A standing person in COCO-17, relative to the hip centre, ~150 px tall.
_BODY = np.array([
    [0, -120], [-4, -124], [4, -124], [-9, -120], [9, -120], [-20, -95], [20, -95], [-26, -60], [26, -60],
    [-28, -30], [28, -30], [-12, 0], [12, 0], [-13, 40], [13, 40], [-14, 80], [14, 80]], float)


def person(x: float, y: float = 300.0, score: float = 0.9) -> np.ndarray:
    kp = np.zeros((17, 3))
    kp[:, :2] = _BODY + [x, y]
    kp[:, 2] = score
    return kp


def frame(xs, score: float = 0.9) -> Poses:
    if not xs:
        return Poses.empty(COCO17)
    kp = np.stack([person(x, score=score) for x in xs])
    return Poses(kp, COCO17, scores=np.full(len(xs), score))


def run(name, frames, config=PeerConfig()):
    tr = make_peer(name, config)
    return [tr.step(t, p) for t, p in enumerate(frames)]


def needs(name):
    why = peer_available(name)
    if why is not None:
        pytest.skip(why)


@pytest.mark.parametrize("name", ["norfair", "bytetrack", "sort"])
def test_two_people_walking_apart_keep_ids(name):
    needs(name)
    # A walks left from x=300, B right from x=380, 4 px per frame each (they start 80 px apart).
    frames = [frame([300 - 4 * t, 380 + 4 * t]) for t in range(40)]
    out = run(name, frames)
    ids_left, ids_right = set(), set()
    for t, p in enumerate(out):
        for kp, tid in zip(p.keypoints, p.track_ids):
            # what comes out is the input pose, with an id
            src = frames[t].keypoints
            assert any(np.array_equal(kp, s) for s in src)
            (ids_left if kp[11, 0] < 340 + 0 * t else ids_right).add(int(tid))
    assert len(ids_left) == 1 and len(ids_right) == 1 and ids_left != ids_right
    # after the peer's confirmation delay, both people are reported in every frame
    assert all(len(p) == 2 for p in out[10:])


@pytest.mark.parametrize("name", ["norfair", "bytetrack", "sort"])
def test_missed_detections_and_a_newcomer(name):
    needs(name)
    # B is missed in frames 20-21; C enters at frame 25 far away and must get a new id.
    frames = []
    for t in range(45):
        xs = [200 - 2 * t] + ([] if t in (20, 21) else [420 + 2 * t]) + ([700] if t >= 25 else [])
        frames.append(frame(xs))
    out = run(name, frames)
    by_person: dict[int, set] = {0: set(), 1: set(), 2: set()}
    for p in out:
        for kp, tid in zip(p.keypoints, p.track_ids):
            x = kp[11, 0] + 12  # hip centre
            by_person[0 if x < 320 else (2 if x >= 690 else 1)].add(int(tid))
    assert all(len(v) == 1 for v in by_person.values()), by_person
    assert len(set().union(*by_person.values())) == 3
    assert len(out[40]) == 3


def test_registry():
    assert set(peer_names()) >= {"norfair", "bytetrack", "sort"}
    with pytest.raises(CorrtrackError, match="unknown"):
        make_peer("nope")


@pytest.mark.parametrize("name", ["bytetrack", "sort"])
def test_box_peers_skip_frames_by_index(name):
    needs(name)
    # Only every 3rd frame is given (12 px per step); the Kalman filter steps by the index gap.
    frames = {t: frame([200 + 4 * t]) for t in range(0, 60, 3)}
    tr = make_peer(name, PeerConfig(fps=25))
    ids = set()
    for t, p in frames.items():
        ids.update(int(i) for i in tr.step(t, p).track_ids)
    assert len(ids) == 1


@pytest.mark.parametrize("name", ["norfair", "bytetrack", "sort"])
def test_empty_frames(name):
    needs(name)
    # nobody at first, one person, then an empty frame in the middle
    frames = [frame([]) for _ in range(3)] + [frame([300 + 2 * t]) for t in range(15)] + [frame([])] + \
        [frame([332 + 2 * t]) for t in range(10)]
    out = run(name, frames)
    assert all(len(p) == 0 for p in out[:3]) and len(out[18]) == 0
    assert len({int(i) for p in out for i in p.track_ids}) == 1
    assert len(out[-1]) == 1


def test_tuned_bytetrack_tracks_people_the_default_thresholds_never_start():
    # Boxes at 0.55 confidence, as NanoDet gives many people: below ByteTrack's default 0.7 to start a
    # track, above the tuned thresholds.
    for name in ("bytetrack", "bytetrack-tuned"):
        needs(name)
    frames = [frame([300 - 4 * t, 500 + 4 * t], score=0.55) for t in range(20)]
    assert sum(len(p) for p in run("bytetrack", frames)) == 0
    out = run("bytetrack-tuned", frames)
    assert all(len(p) == 2 for p in out[5:]) and len({int(t) for p in out for t in p.track_ids}) == 2


def test_box_trackers_say_so():
    # bench_peers gives box trackers the detector's box confidence instead of the person score.
    for name in peer_names():
        needs(name)
        assert make_peer(name).takes_boxes == (name != "norfair"), name
