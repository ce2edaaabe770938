import json

import numpy as np
import pytest

from corrtrack.errors import CorrtrackError
from corrtrack.io.coco import load_coco_annotations, read_coco_keypoints, read_coco_results, write_coco_results
from corrtrack.layouts import COCO17, POSETRACK18
from corrtrack.structures import DETECTED, GROUND_TRUTH, RECOVERED, FrameInfo, Poses, PoseSequence


def _flat(rng, vis):
    kp = np.zeros((17, 3))
    kp[:, :2] = rng.uniform(10, 200, (17, 2)).round(2)
    kp[:, 2] = vis
    kp[vis == 0, :2] = 0
    return kp.reshape(-1).tolist()


def _gt(tmp_path, **changes):
    rng = np.random.default_rng(0)
    vis_a = np.array([2] * 10 + [1] * 4 + [0] * 3)
    vis_b = np.array([0] * 5 + [2] * 12)
    data = {
        "images": [{"id": 7, "file_name": "a.jpg", "width": 640, "height": 480},
                   {"id": 3, "file_name": "b.jpg", "width": 320, "height": 240},
                   {"id": 9, "file_name": "empty.jpg", "width": 100, "height": 100}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "iscrowd": 0, "bbox": [10, 20, 100, 50], "area": 4000.0,
             "num_keypoints": 14, "keypoints": _flat(rng, vis_a), "segmentation": [[1, 2, 3, 4, 5, 6]]},
            {"id": 2, "image_id": 7, "category_id": 1, "iscrowd": 0, "bbox": [0, 0, 5, 5], "area": 25.0,
             "num_keypoints": 12, "keypoints": _flat(rng, vis_b)},
            {"id": 3, "image_id": 3, "category_id": 1, "iscrowd": 1, "bbox": [50, 60, 30, 40], "area": 900.0,
             "num_keypoints": 0, "keypoints": [0] * 51, "segmentation": {"counts": [0, 5], "size": [240, 320]}},
            {"id": 4, "image_id": 3, "category_id": 1, "iscrowd": 0, "bbox": [1, 2, 3, 4], "area": 9.0,
             "num_keypoints": 0, "keypoints": [0] * 51},
        ],
        "categories": [{"id": 1, "name": "person", "keypoints": list(COCO17.joints), "skeleton": []}],
    }
    data.update(changes)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    return path, data


def test_read_coco_keypoints(tmp_path):
    path, data = _gt(tmp_path)
    out = read_coco_keypoints(path, image_root="/imgs")
    assert [f.image_id for f, _ in out] == [7, 3, 9]
    assert [f.index for f, _ in out] == [0, 1, 2]
    f0, p0 = out[0]
    assert (f0.file_name, f0.width, f0.height) == ("/imgs/a.jpg", 640, 480)
    assert len(p0) == 2 and p0.layout == COCO17
    assert (p0.origin == GROUND_TRUTH).all() and (p0.track_ids == -1).all() and (p0.scores == 1).all()
    assert np.allclose(p0.boxes[0], [10, 20, 110, 70]) and np.allclose(p0.boxes[1], [0, 0, 5, 5])
    raw = np.array(data["annotations"][0]["keypoints"]).reshape(17, 3)
    assert np.allclose(p0.keypoints[0, :, :2], raw[:, :2])
    assert p0.keypoints[0, :, 2].tolist() == [1.0] * 14 + [0.0] * 3  # visibility 1 and 2 -> 1
    assert p0.num_visible().tolist() == [14, 12]
    # The crowd annotation is an ignore region, not a person; the 0-keypoint person stays.
    f1, p1 = out[1]
    assert len(p1) == 1 and p1.num_visible().tolist() == [0]
    assert len(f1.ignore_regions) == 1
    assert np.allclose(f1.ignore_regions[0], [[50, 60], [80, 60], [80, 100], [50, 100]])
    assert len(out[2][1]) == 0 and out[2][1].layout == COCO17
    assert read_coco_keypoints(path)[0][0].file_name == "a.jpg"


def test_load_coco_annotations_keeps_raw_fields(tmp_path):
    path, _ = _gt(tmp_path)
    raw = load_coco_annotations(path)
    assert {k: len(v) for k, v in raw.items()} == {7: 2, 3: 2, 9: 0}
    assert raw[7][0]["area"] == 4000.0 and raw[7][0]["segmentation"] == [[1, 2, 3, 4, 5, 6]]
    assert raw[3][0]["iscrowd"] == 1 and raw[3][0]["segmentation"]["size"] == [240, 320]


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ("[]", "results file"),
    ('{"images": []}', "not a COCO annotation file"),
    ('{"images": [], "annotations": [{"image_id": 1, "bbox": [0, 0, 1, 1]}]}', "not a COCO person-keypoints"),
])
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "x.json"
    path.write_text(content)
    with pytest.raises(CorrtrackError, match=message) as err:
        read_coco_keypoints(path)
    assert str(path) in str(err.value)


def test_other_joint_sets_are_rejected_by_count(tmp_path):
    crowdpose = ["left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
                 "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "head", "neck"]
    path, _ = _gt(tmp_path, categories=[{"id": 1, "name": "person", "keypoints": crowdpose}])
    with pytest.raises(CorrtrackError, match="14 keypoints"):
        read_coco_keypoints(path)
    path, _ = _gt(tmp_path, categories=[{"id": 1, "name": "person", "keypoints": list(POSETRACK18.joints)}])
    with pytest.raises(CorrtrackError, match="PoseTrack-18"):
        read_coco_keypoints(path)
    with pytest.raises(CorrtrackError, match="no such file"):
        read_coco_keypoints(tmp_path / "missing.json")


def test_bad_annotations(tmp_path):
    path, data = _gt(tmp_path)
    data["annotations"][1]["keypoints"] = [1, 2, 3]
    path.write_text(json.dumps(data))
    with pytest.raises(CorrtrackError, match="annotation 2 .*3 keypoint values"):
        read_coco_keypoints(path)
    data["annotations"][1]["keypoints"] = [0] * 51
    data["annotations"][1]["image_id"] = 12345
    path.write_text(json.dumps(data))
    with pytest.raises(CorrtrackError, match="image 12345"):
        read_coco_keypoints(path)


def _sequence(name="seq", n_frames=4, seed=0, image_ids=True):
    rng = np.random.default_rng(seed)
    frames, poses = [], []
    for t in range(n_frames):
        n = [2, 0, 3, 1][t % 4]
        kp = np.concatenate([rng.uniform(0, 300, (n, 17, 2)), rng.uniform(0.05, 1, (n, 17, 1))], -1)
        if n:
            kp[0, 3] = 0  # an absent joint
        p = Poses(kp, COCO17, scores=rng.uniform(0, 1, n), track_ids=np.arange(n) + 10 * t,
                  origin=np.full(n, RECOVERED))
        if n:
            p.track_ids[-1] = -1
        frames.append(FrameInfo(index=t, image_id=1000 * seed + t if image_ids else None))
        poses.append(p)
    return PoseSequence(name, frames, poses)


def test_results_round_trip(tmp_path):
    seq = _sequence()
    path = tmp_path / "res" / "results.json"
    assert write_coco_results(path, seq) == 6
    entries = json.loads(path.read_text())
    assert set(entries[0]) == {"image_id", "category_id", "keypoints", "score", "bbox", "track_id"}
    assert entries[0]["category_id"] == 1 and len(entries[0]["keypoints"]) == 51
    back = read_coco_results(path)
    assert [f.image_id for f, _ in back] == [0, 2, 3]  # frame 1 has nobody: no entries
    for (f, p), t in zip(back, [0, 2, 3]):
        ref = seq.poses[t]
        assert np.allclose(p.keypoints, ref.keypoints, atol=1e-3)
        assert np.allclose(p.boxes, ref.boxes, atol=1e-3) and np.allclose(p.scores, ref.scores, atol=1e-6)
        assert p.track_ids.tolist() == ref.track_ids.tolist() and (p.origin == DETECTED).all()
    # Aligned to known frames, the empty frame comes back empty.
    aligned = read_coco_results(path, frames=seq.frames)
    assert [len(p) for _, p in aligned] == [2, 0, 3, 1]
    with pytest.raises(CorrtrackError, match="not among the frames"):
        read_coco_results(path, frames=seq.frames[:2])


def test_results_of_several_sequences_and_pairs(tmp_path):
    a, b = _sequence("a", seed=1), _sequence("b", seed=2)
    path = tmp_path / "r.json"
    write_coco_results(path, [a, b])
    assert sorted({e["image_id"] for e in json.loads(path.read_text())}) == [1000, 1002, 1003, 2000, 2002, 2003]
    with pytest.raises(CorrtrackError, match="no image_id"):
        write_coco_results(path, [_sequence("a", image_ids=False), _sequence("b", seed=1, image_ids=False)])
    with pytest.raises(CorrtrackError, match="two sequences"):
        write_coco_results(path, [a, _sequence("c", seed=1)])
    # (FrameInfo, Poses) pairs, as read_coco_keypoints returns them, and layout conversion.
    gt_path, _ = _gt(tmp_path)
    write_coco_results(path, read_coco_keypoints(gt_path), layout=POSETRACK18)
    back = read_coco_results(path, layout=POSETRACK18)
    assert [f.image_id for f, _ in back] == [3, 7] and back[1][1].layout == POSETRACK18


def test_read_results_rejects_other_files(tmp_path):
    gt_path, _ = _gt(tmp_path)
    with pytest.raises(CorrtrackError, match="annotation file, not a results list"):
        read_coco_results(gt_path)
    boxes_only = tmp_path / "det.json"
    boxes_only.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]))
    with pytest.raises(CorrtrackError, match="not a COCO keypoint results list"):
        read_coco_results(boxes_only)
