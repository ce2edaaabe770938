import csv

import numpy as np
import pytest

from corrtrack.errors import CorrtrackError
from corrtrack.io.csv import COLUMNS, read_csv, write_csv
from corrtrack.layouts import COCO17, POSETRACK18
from corrtrack.structures import FrameInfo, Poses, PoseSequence, boxes_from_keypoints


def _sequence(layout=COCO17, seed=0):
    rng = np.random.default_rng(seed)
    k = layout.num_joints
    frames, poses = [], []
    # frame 0: ids 4 and 7; frame 1: two untracked people back to back, one tracked;
    # frame 2: nobody; frame 3: one person without any present joint plus id 4.
    people = [[4, 7], [-1, -1, 2], [], [-1, 4]]
    for t, ids in enumerate(people):
        n = len(ids)
        kp = np.concatenate([rng.uniform(0, 500, (n, k, 2)), rng.uniform(0.1, 1, (n, k, 1))], -1)
        kp[:, ::5, :] = 0  # some absent joints
        if t == 3:
            kp[0] = 0
        frames.append(FrameInfo(index=10 + 2 * t, time=None if t == 1 else (10 + 2 * t) / 30))
        poses.append(Poses(kp, layout, track_ids=ids))
    return PoseSequence("clip", frames, poses)


@pytest.mark.parametrize("layout", [COCO17, POSETRACK18])
def test_round_trip(tmp_path, layout):
    seq = _sequence(layout)
    path = tmp_path / "out" / "clip.csv"
    rows = write_csv(path, seq)
    assert rows == sum(int((p.keypoints[..., 2] > 0).sum()) for p in seq.poses)
    with open(path, newline="") as f:
        table = list(csv.reader(f))
    assert tuple(table[0]) == COLUMNS and len(table) == rows + 1
    assert table[1][3] == layout.joints[1]  # joint 0 is absent in every person
    assert [p.name for p in path.parent.iterdir()] == ["clip.csv"]

    back = read_csv(path, layout)
    assert back.name == "clip"
    # Frame 2 (nobody) is not in the file; the person with no joints in frame 3 is lost.
    assert [f.index for f in back.frames] == [10, 12, 16]
    assert back.frames[0].time == pytest.approx(10 / 30, abs=1e-6) and back.frames[1].time is None
    for got, t in zip(back.poses, [0, 1, 3]):
        ref = seq.poses[t]
        if t == 3:
            ref = ref[1:]
        assert got.layout == layout
        assert got.track_ids.tolist() == ref.track_ids.tolist()
        assert np.allclose(got.keypoints, ref.keypoints, atol=1e-3)
        assert np.allclose(got.boxes, boxes_from_keypoints(ref.keypoints), atol=1e-3)


def test_untracked_people_split_by_joint_order(tmp_path):
    kp = np.zeros((2, 17, 3))
    kp[0, 5:8] = [[1, 1, 0.9], [2, 2, 0.9], [3, 3, 0.9]]
    kp[1, 9:11] = [[4, 4, 0.8], [5, 5, 0.8]]  # starts after person 0's last joint ...
    kp[1, 2] = [6, 6, 0.7]  # ... but its first joint comes before it
    seq = PoseSequence("s", [FrameInfo(index=0, time=0.0)], [Poses(kp, COCO17)])
    write_csv(tmp_path / "s.csv", seq)
    back = read_csv(tmp_path / "s.csv", "coco17")
    assert len(back.poses[0]) == 2
    assert np.allclose(back.poses[0].keypoints, kp, atol=1e-3)


@pytest.mark.parametrize("text, message", [
    ("frame,time,track_id,joint,x,y\n", "missing column"),
    ("", "missing column"),
    ("frame,time,track_id,joint,x,y,score\n0,0.0,1,head_top,1,2,0.5\n", "joint 'head_top' is not in layout coco17"),
    ("frame,time,track_id,joint,x,y,score\n0,0.0,1,nose,abc,2,0.5\n", "line 2: bad number"),
    ("frame,time,track_id,joint,x,y,score\n0,0.0,1,nose,nan,2,0.5\n", "finite"),
])
def test_bad_csv(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(CorrtrackError, match=message) as err:
        read_csv(path, COCO17)
    assert str(path) in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(CorrtrackError, match="no such file"):
        read_csv(tmp_path / "nope.csv", COCO17)
