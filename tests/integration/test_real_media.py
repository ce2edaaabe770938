"""Readers on the real files in shared/data (see its INDEX.md)."""
import json

import numpy as np
import pytest

from corrtrack.errors import CorrtrackError
from corrtrack.io import open_source, read_coco_keypoints, read_coco_results, write_coco_results, write_csv
from corrtrack.io.csv import read_csv
from corrtrack.layouts import COCO17
from corrtrack.structures import GROUND_TRUTH, PoseSequence
from corrtrack.viz import draw_poses

pytestmark = pytest.mark.integration


def _need(path):
    if not path.exists():
        pytest.skip(f"{path} not found")
    return path


def test_vtest_avi(shared_data):
    path = _need(shared_data / "opencv" / "vtest.avi")
    with open_source(path, end=30) as src:
        assert (src.fps, src.num_frames, src.width, src.height) == (10.0, 795, 768, 576)
        assert src.expected_frames == 30
        frames = list(src)
    assert [f.index for f in frames] == list(range(30))
    assert np.allclose([f.time for f in frames], np.arange(30) / 10.0)
    assert all(f.image.shape == (576, 768, 3) and f.image.dtype == np.uint8 for f in frames)
    assert np.abs(frames[0].image.astype(int) - frames[29].image).mean() > 1  # people move
    # A late window: indices and container timestamps agree.
    late = list(open_source(path, start=400, end=406, step=2))
    assert [f.index for f in late] == [400, 402, 404]
    assert np.allclose([f.time for f in late], [40.0, 40.2, 40.4])


def test_posetrack_frame_folder_matches_its_video(shared_data):
    folder = _need(shared_data / "mmpose" / "posetrack18" / "videos" / "000001_mpiinew_test")
    src = open_source(folder, fps=30)
    frames = list(src)
    assert (src.kind, src.num_frames, src.width, src.height) == ("folder", 5, 1280, 720)
    assert [f.name for f in frames] == [f"{i:06d}.jpg" for i in range(5)]  # the .mp4 beside them is not a frame
    assert np.allclose([f.time for f in frames], np.arange(5) / 30)
    video = list(open_source(folder / "000001_mpiinew_test.mp4"))
    assert len(video) == 5
    # Same pictures in the same order, up to compression (measured: ~2.6 grey levels
    # for the same frame, >= 9 for neighbouring frames).
    diff = np.array([[np.abs(a.image.astype(int) - b.image).mean() for b in video] for a in frames])
    assert (np.diag(diff) < 6).all()
    assert (diff.argmin(1) == np.arange(5)).all()


def test_grayscale_png(shared_data):
    path = _need(shared_data / "opencv" / "basketball1.png")
    (frame,) = list(open_source(path))
    assert frame.image.shape == (480, 640, 3)
    assert (frame.image[..., 0] == frame.image[..., 1]).all() and (frame.image[..., 1] == frame.image[..., 2]).all()
    assert frame.name == "basketball1.png" and frame.time is None


def test_coco_ground_truth(shared_data, tmp_path):
    root = _need(shared_data / "mmpose" / "coco")
    gt = read_coco_keypoints(root / "test_coco.json", image_root=root)
    assert len(gt) == 4 and sum(len(p) for _, p in gt) == 14
    assert [len(p) for _, p in gt] == [1, 3, 5, 5]
    assert all((p.origin == GROUND_TRUTH).all() and p.layout == COCO17 for _, p in gt)
    # num_keypoints in the file = joints with visibility > 0
    raw = json.loads((root / "test_coco.json").read_text())["annotations"]
    assert sorted(int(n) for _, p in gt for n in p.num_visible()) == sorted(a["num_keypoints"] for a in raw)
    # The images are where the file says, and the joints lie inside them.
    for info, poses in gt:
        frame = next(iter(open_source(info.file_name)))
        assert frame.image.shape[:2] == (info.height, info.width)
        vis = poses.keypoints[..., 2] > 0
        xy = poses.keypoints[vis][:, :2]
        assert (xy >= 0).all() and (xy[:, 0] < info.width).all() and (xy[:, 1] < info.height).all()
        assert draw_poses(frame.image, poses).shape == frame.image.shape
    # Round trips through the results list and the CSV.
    write_coco_results(tmp_path / "res.json", gt)
    back = read_coco_results(tmp_path / "res.json", frames=[f for f, _ in gt])
    for (_, a), (_, b) in zip(gt, back):
        assert np.allclose(a.keypoints, b.keypoints, atol=1e-3) and np.allclose(a.boxes, b.boxes, atol=1e-3)
    seq = PoseSequence("coco", [f for f, _ in gt], [p for _, p in gt])
    write_csv(tmp_path / "coco.csv", seq)
    assert sum(len(p) for p in read_csv(tmp_path / "coco.csv", COCO17).poses) == 12  # two have no joints


@pytest.mark.parametrize("name, joints", [("crowdpose/test_crowdpose.json", 14), ("mhp/test_mhp.json", 16)])
def test_other_joint_sets_rejected(shared_data, name, joints):
    path = _need(shared_data / "mmpose" / name)
    with pytest.raises(CorrtrackError, match=f"{joints} keypoints"):
        read_coco_keypoints(path)
