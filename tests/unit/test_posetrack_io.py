"""PoseTrack 2017/2018 reading and writing: round trips, id rules, bad files."""
from __future__ import annotations

import json

import numpy as np
import pytest

from corrtrack.errors import CorrtrackError
from corrtrack.io.posetrack import posetrack_image_id, read_posetrack, read_posetrack_dir, write_posetrack
from corrtrack.layouts import POSETRACK18, POSEVAL15
from corrtrack.structures import DETECTED, GROUND_TRUTH, FrameInfo, Poses, PoseSequence

_FIELDS = ("keypoints", "boxes", "scores", "track_ids", "origin", "head_boxes")


def assert_sequences_equal(a: PoseSequence, b: PoseSequence, layout=None) -> None:
    assert a.name == b.name and len(a) == len(b)
    for (fa, pa), (fb, pb) in zip(a, b):
        for key in ("index", "time", "file_name", "width", "height", "image_id", "is_labeled"):
            assert getattr(fa, key) == getattr(fb, key), key
        assert len(fa.ignore_regions) == len(fb.ignore_regions)
        for ra, rb in zip(fa.ignore_regions, fb.ignore_regions):
            np.testing.assert_array_equal(ra, rb)
        if layout is not None:
            pa, pb = pa.to_layout(layout), pb.to_layout(layout)
        assert pa.layout == pb.layout
        for f in _FIELDS:
            np.testing.assert_allclose(getattr(pa, f), getattr(pb, f), err_msg=f, equal_nan=True)


def _random_poses(rng, n: int, layout, origin: int) -> Poses:
    k = layout.num_joints
    kp = np.zeros((n, k, 3))
    kp[..., :2] = rng.uniform(1, 1000, (n, k, 2)).round(2)
    kp[..., 2] = rng.uniform(0.05, 1, (n, k)).round(4) if origin == DETECTED else 1.0
    kp[rng.random((n, k)) < 0.2] = 0  # absent joints
    if layout == POSETRACK18:
        kp[:, 3:5] = 0  # ears are never annotated
    head = np.column_stack([rng.uniform(0, 500, (n, 2)), rng.uniform(500, 900, (n, 2))]).round(1)[:, [0, 1, 2, 3]]
    boxes = np.sort(rng.uniform(0, 1000, (n, 4)).round(1).reshape(n, 2, 2), axis=1).transpose(0, 2, 1).reshape(n, 4)
    return Poses(kp, layout, boxes=boxes, scores=rng.uniform(0, 1, n).round(4),
                 track_ids=rng.permutation(n) + 3, origin=np.full(n, origin), head_boxes=head)


def _sequence(rng, origin: int, name: str = "012834_mpii_test") -> PoseSequence:
    frames, poses = [], []
    for i in range(4):
        regions = [np.array([[0, 0], [50, 0], [50, 40.5]])] if i == 1 else []
        frames.append(FrameInfo(index=i, file_name=f"images/val/{name}/{i:06d}.jpg", width=1920, height=1080,
                                image_id=10128340000 + i, is_labeled=i != 2, ignore_regions=regions))
        poses.append(_random_poses(rng, 0 if i == 2 else 3, POSETRACK18, origin))
    return PoseSequence(name, frames, poses, {"vid_id": "012834", "nframes": 4})


@pytest.mark.parametrize("origin", [DETECTED, GROUND_TRUTH])
def test_2018_round_trip(tmp_path, origin):
    seq = _sequence(np.random.default_rng(origin), origin)
    seq.poses[0].track_ids[1] = -1  # no id: left out of the file, read back as -1
    path = tmp_path / f"{seq.name}.json"
    write_posetrack(path, seq, ground_truth=origin == GROUND_TRUTH)
    back = read_posetrack(path)
    assert_sequences_equal(seq, back)
    assert back.meta["vid_id"] == "012834" and back.meta["nframes"] == 4 and back.meta["format"] == 2018
    # and once more: what we read we write unchanged
    write_posetrack(tmp_path / "again.json", back, ground_truth=origin == GROUND_TRUTH)
    assert json.loads(path.read_text()) == json.loads((tmp_path / "again.json").read_text())


def test_2018_file_layout(tmp_path):
    seq = _sequence(np.random.default_rng(0), DETECTED)
    write_posetrack(tmp_path / "p.json", seq)
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["categories"][0]["keypoints"] == list(POSETRACK18.joints)
    im, a = data["images"][0], data["annotations"][0]
    assert im["id"] == 10128340000 and im["vid_id"] == "012834" and im["nframes"] == 4
    assert len(a["keypoints"]) == 51 and len(a["scores"]) == 17 and a["category_id"] == 1
    assert a["id"] == 10128340000 * 100 and a["image_id"] == im["id"]
    kp = np.array(a["keypoints"]).reshape(17, 3)
    assert set(kp[:, 2]) <= {0, 1}  # flags; the scores are in "scores"
    x, y, w, h = a["bbox_head"]
    np.testing.assert_allclose([x, y, x + w, y + h], seq.poses[0].head_boxes[0])


def test_ground_truth_writes_flags_not_scores(tmp_path):
    seq = _sequence(np.random.default_rng(1), DETECTED)
    write_posetrack(tmp_path / "g.json", seq, ground_truth=True)
    data = json.loads((tmp_path / "g.json").read_text())
    a = data["annotations"][0]
    assert a["scores"] == [] and a["num_keypoints"] == int((np.array(a["keypoints"][2::3]) > 0).sum())
    assert "ignore_regions_x" in data["images"][0]
    back = read_posetrack(tmp_path / "g.json")
    assert (back.poses[0].origin == GROUND_TRUTH).all()


def test_ground_truth_needs_head_boxes(tmp_path):
    seq = _sequence(np.random.default_rng(2), GROUND_TRUTH)
    seq.poses[0].head_boxes[0] = np.nan
    with pytest.raises(CorrtrackError, match="head box"):
        write_posetrack(tmp_path / "g.json", seq, ground_truth=True)


def test_derived_image_ids(tmp_path):
    """Without image ids: PoseTrack's T * 1e10 + sequence * 1e4 + frame."""
    p = Poses(np.ones((1, 17, 3)), POSETRACK18, track_ids=[0])
    seq = PoseSequence("009473_mpii_test", [FrameInfo(index=i) for i in range(3)], [p] * 3)
    assert posetrack_image_id(seq, seq.frames[2]) == 10094730002
    bonn = PoseSequence("000342_bonn_train", [FrameInfo(index=0, file_name="images/x/000342_bonn_train/000017.jpg")], [p])
    assert posetrack_image_id(bonn, bonn.frames[0]) == 20003420017
    other = PoseSequence("my clip", [FrameInfo(index=5)], [p])
    assert posetrack_image_id(other, other.frames[0]) == 10000000005
    write_posetrack(tmp_path / "s.json", seq)
    data = json.loads((tmp_path / "s.json").read_text())
    assert [im["id"] for im in data["images"]] == [10094730000, 10094730001, 10094730002]
    assert data["images"][0]["vid_id"] == "009473"
    assert data["images"][1]["file_name"] == "images/009473_mpii_test/000001.jpg"
    assert data["annotations"][2]["id"] == 1009473000200


def test_2018_joint_presence_and_scores(tmp_path):
    """poseval's rule: absent only when x = y = v = 0; scores [] means none."""
    names = list(POSETRACK18.joints)
    kp = [0.0] * 51
    kp[0:3] = [10, 20, 1]  # nose
    kp[3:6] = [30, 40, 0]  # head_bottom with v = 0 but coordinates: present
    anns = [{"image_id": 1, "track_id": 4, "keypoints": kp, "scores": [0.5] * 17, "bbox_head": [0, 0, 10, 20]},
            {"image_id": 1, "track_id": 5, "keypoints": kp, "scores": []},
            {"image_id": 99, "track_id": 6, "keypoints": kp}]  # no such image: dropped like poseval does
    data = {"categories": [{"name": "person", "keypoints": names}],
            "images": [{"id": 1, "file_name": "images/val/000001_mpii_test/000000.jpg"}], "annotations": anns}
    (tmp_path / "a.json").write_text(json.dumps(data))
    p = read_posetrack(tmp_path / "a.json").poses[0]
    assert len(p) == 2
    np.testing.assert_array_equal(p.keypoints[0, :3], [[10, 20, 0.5], [30, 40, 0.5], [0, 0, 0]])
    np.testing.assert_array_equal(p.keypoints[1, :3], [[10, 20, 1], [30, 40, 0], [0, 0, 0]])
    assert p.origin.tolist() == [DETECTED, GROUND_TRUTH]
    np.testing.assert_array_equal(p.head_boxes[0], [0, 0, 10, 20])
    assert np.isnan(p.head_boxes[1]).all()


def test_2018_category_in_other_order(tmp_path):
    names = list(POSEVAL15.joints)  # a 15-joint category, poseval's order
    kp = np.zeros((15, 3))
    kp[names.index("left_wrist")] = [5, 6, 1]
    data = {"categories": [{"name": "person", "keypoints": names}], "images": [{"id": 7}],
            "annotations": [{"image_id": 7, "track_id": 0, "keypoints": kp.ravel().tolist()}]}
    (tmp_path / "b.json").write_text(json.dumps(data))
    p = read_posetrack(tmp_path / "b.json").poses[0]
    assert p.layout == POSETRACK18
    np.testing.assert_array_equal(p.keypoints[0, POSETRACK18.index("left_wrist")], [5, 6, 1])


def _annolist() -> dict:
    def person(tid, x0, scored):
        pts = [{"id": [j], "x": [x0 + j], "y": [100.0 + j]} for j in (0, 5, 12, 13, 14)]
        if scored:
            for p in pts:
                p["score"] = [0.25 + p["id"][0] / 100]
        return {"track_id": [tid], "x1": [x0], "y1": [50.0], "x2": [x0 + 30], "y2": [90.0],
                "score": [0.8], "annopoints": [{"point": pts}]}

    return {"annolist": [
        {"image": [{"name": "images/bonn/000342_mpii/00000001.jpg"}], "annorect": [person(1, 10.0, True), person(2, 200.0, False)],
         "ignore_regions": [{"point": [{"x": [0], "y": [0]}, {"x": [5], "y": [0]}, {"x": [5], "y": [5]}]}]},
        {"image": [{"name": "images/bonn/000342_mpii/00000002.jpg"}], "annorect": [{"track_id": [3]}]},
    ]}


def test_2017_read_and_round_trip(tmp_path):
    (tmp_path / "000342_mpii.json").write_text(json.dumps(_annolist()))
    seq = read_posetrack(tmp_path / "000342_mpii.json")
    assert seq.layout == POSEVAL15 and seq.meta["format"] == 2017 and len(seq) == 2
    p = seq.poses[0]
    assert p.track_ids.tolist() == [1, 2] and p.origin.tolist() == [DETECTED, GROUND_TRUTH]
    np.testing.assert_array_equal(p.keypoints[0, 5], [15, 105, 0.3])
    np.testing.assert_array_equal(p.keypoints[1, 14], [214, 114, 1])
    assert (p.keypoints[0, [1, 2, 3]] == 0).all()
    np.testing.assert_array_equal(p.head_boxes[0], [10, 50, 40, 90])
    np.testing.assert_allclose(p.scores, [0.8, 0.8])
    np.testing.assert_array_equal(seq.frames[0].ignore_regions[0], [[0, 0], [5, 0], [5, 5]])
    assert len(seq.poses[1]) == 0  # a person without annopoints is dropped (as poseval does)
    assert seq.frames[0].file_name == "images/bonn/000342_mpii/00000001.jpg"
    # 2017 -> our 2018 writer -> read: the same people, in poseval's joints
    write_posetrack(tmp_path / "out" / "000342_mpii.json", seq)
    back = read_posetrack(tmp_path / "out" / "000342_mpii.json")
    assert back.layout == POSETRACK18
    for f in seq.frames:
        f.image_id = posetrack_image_id(seq, f)
    assert_sequences_equal(seq, back, layout=POSEVAL15)


def test_read_dir_sorted_by_name(tmp_path):
    seq = _sequence(np.random.default_rng(3), DETECTED)
    for name in ("b", "a", "c"):
        seq.name = name
        write_posetrack(tmp_path / f"{name}.json", seq)
    (tmp_path / "notes.txt").write_text("not json")
    assert [s.name for s in read_posetrack_dir(tmp_path)] == ["a", "b", "c"]


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a valid JSON file"),
    ("[1, 2]", "not a PoseTrack annotation file"),
    ('{"foo": 1}', "not a PoseTrack annotation file"),
    ('{"images": [], "annotations": []}', "no 'categories'"),
    ('{"images": [], "annotations": [], "categories": [{"name": "person", "keypoints": ["nose"]}]}', "lack"),
    ('{"images": [{"file_name": "x"}], "annotations": [], "categories": [{"name": "person", "keypoints": %s}]}'
     % json.dumps(list(POSETRACK18.joints)), "has no 'id'"),
    ('{"images": [{"id": 1}], "annotations": [{"image_id": 1, "keypoints": [1, 2, 1]}], "categories": '
     '[{"name": "person", "keypoints": %s}]}' % json.dumps(list(POSETRACK18.joints)), "keypoint values"),
    ('{"annolist": [{"annorect": [{"annopoints": [{"point": [{"id": [20], "x": [1], "y": [2]}]}]}]}]}', "outside 0..14"),
    ('{"annolist": [{"annorect": [{"annopoints": [{"point": [{"id": [2]}]}]}]}]}', "missing key"),
])
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(CorrtrackError, match=message) as e:
        read_posetrack(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(CorrtrackError, match="no such file"):
        read_posetrack(tmp_path / "nope.json")
    with pytest.raises(CorrtrackError, match="no such folder"):
        read_posetrack_dir(tmp_path / "nope")
    with pytest.raises(CorrtrackError, match=r"no \*.json"):
        read_posetrack_dir(tmp_path)


def test_streamed_json_equals_plain_json_and_an_error_leaves_no_file(tmp_path):
    import json

    import pytest

    from corrtrack.io.atomic import JsonStream, write_json

    obj = {"images": [{"id": i, "name": f"f{i}"} for i in range(3)], "annotations": [], "categories": [{"id": 1}]}
    write_json(tmp_path / "plain.json", obj)
    write_json(tmp_path / "streamed.json", {"images": JsonStream(iter(obj["images"])),
                                            "annotations": JsonStream(x for x in []), "categories": obj["categories"]})
    write_json(tmp_path / "list.json", JsonStream(iter(obj["images"])))
    assert json.loads((tmp_path / "streamed.json").read_text()) == json.loads((tmp_path / "plain.json").read_text())
    assert json.loads((tmp_path / "list.json").read_text()) == obj["images"]

    def broken():
        yield {"id": 0}
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_json(tmp_path / "broken.json", {"images": JsonStream(broken())})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.json", "plain.json", "streamed.json"]
