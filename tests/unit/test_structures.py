import numpy as np
import pytest

from corrtrack.layouts import COCO17, POSEVAL15
from corrtrack.structures import RECOVERED, FrameInfo, Poses, PoseSequence, boxes_from_keypoints


def _poses(n=4, seed=0):
    rng = np.random.default_rng(seed)
    kp = np.concatenate([rng.uniform(0, 100, (n, 17, 2)), rng.uniform(0, 1, (n, 17, 1))], -1)
    return Poses(kp, COCO17, track_ids=np.arange(n))


def test_defaults_are_filled():
    p = _poses()
    assert p.boxes.shape == (4, 4) and p.scores.shape == (4,) and p.origin.shape == (4,)
    assert np.isnan(p.head_boxes).all()
    assert np.allclose(p.boxes, boxes_from_keypoints(p.keypoints))


def test_empty_and_concat():
    e = Poses.empty("coco17")
    assert len(e) == 0 and e.keypoints.shape == (0, 17, 3)
    both = Poses.concat([_poses(2), e, _poses(3, seed=1)])
    assert len(both) == 5 and both.track_ids.tolist() == [0, 1, 0, 1, 2]
    assert len(Poses.concat([], layout=COCO17)) == 0
    with pytest.raises(ValueError):
        Poses.concat([])


def test_indexing_keeps_all_fields_in_step():
    p = _poses()
    p.origin[2] = RECOVERED
    sub = p[p.track_ids >= 2]
    assert sub.track_ids.tolist() == [2, 3] and sub.origin.tolist() == [RECOVERED, 0]
    assert np.allclose(sub.keypoints, p.keypoints[2:])
    one = p[1]
    assert len(one) == 1 and one.track_ids[0] == 1
    assert [q.track_ids[0] for q in p] == [0, 1, 2, 3]


def test_threshold_and_layout_and_scale():
    p = _poses()
    t = p.threshold_joints(0.5)
    assert (t.keypoints[..., 2][p.keypoints[..., 2] < 0.5] == 0).all()
    assert (t.num_visible() == (p.keypoints[..., 2] >= 0.5).sum(-1)).all()
    pv = p.to_layout(POSEVAL15)
    assert pv.keypoints.shape == (4, 15, 3) and pv.track_ids.tolist() == p.track_ids.tolist()
    s = p.scale(2.0)
    assert np.allclose(s.keypoints[..., :2], 2 * p.keypoints[..., :2]) and np.allclose(s.boxes, 2 * p.boxes)
    m = p.translate(3.0, -2.0)
    assert np.allclose(m.keypoints[..., :2], p.keypoints[..., :2] + (3.0, -2.0)) and np.allclose(m.boxes, p.boxes + (3, -2, 3, -2))
    assert np.allclose(m.keypoints[..., 2], p.keypoints[..., 2]) and m.track_ids.tolist() == p.track_ids.tolist()


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="keypoints must be"):
        Poses(np.zeros((2, 15, 3)), COCO17)


def test_sequence():
    seq = PoseSequence("s", [FrameInfo(0), FrameInfo(1)], [_poses(2), _poses(3)])
    assert len(seq) == 2 and seq.track_ids() == [0, 1, 2] and seq.layout is COCO17
    with pytest.raises(ValueError):
        PoseSequence("s", [FrameInfo(0)], [])
