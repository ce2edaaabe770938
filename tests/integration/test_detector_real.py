"""The NanoDet person detector on real frames: every person found, nothing else.

The detector alone is checked at its score threshold (``candidate_threshold=None``); with
low-score candidates verified by the pose model (the default detect + pose path) the same
frames must give the same people, and the truncated player of basketball2.png too.

The reference boxes were drawn from the frames by eye (checked on the
rendered images: each is one walking person); a detection counts when its
IoU with one of them is >= 0.5.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from corrtrack.errors import CorrtrackError
from corrtrack.pipeline.detector import Detector, DetectorConfig, canvas_shape, match_boxes

pytestmark = pytest.mark.integration

VTEST_PEOPLE = {
    300: [[583, 162, 611, 235], [312, 211, 347, 295], [298, 159, 325, 231], [185, 161, 219, 235],
          [618, 165, 645, 233], [243, 159, 263, 224]],
    # A traffic cone scores 0.35 here: the default threshold must stay above it.
    360: [[531, 195, 569, 286], [370, 178, 402, 248], [697, 236, 738, 335], [439, 178, 466, 250],
          [433, 236, 465, 338], [732, 236, 768, 334]],
}
BASKETBALL1_PEOPLE = [[36, 93, 163, 466], [423, 19, 635, 480]]
# The right-hand player is cut by the frame edge: NanoDet scores him 0.25 (a candidate).
BASKETBALL2_PEOPLE = [[36, 86, 160, 470], [425, 20, 640, 480]]


@pytest.fixture(scope="module")
def detector():
    from corrtrack.models.registry import load_model

    try:
        model = load_model("nanodet", "cpu")
    except CorrtrackError as e:
        pytest.skip(f"NanoDet weights unavailable: {e}")
    return Detector(DetectorConfig(candidate_threshold=None), device="cpu", model=model)


def vtest_frame(shared_data, index: int) -> np.ndarray:
    import cv2

    cap = cv2.VideoCapture(str(shared_data / "opencv" / "vtest.avi"))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, bgr = cap.read()
    cap.release()
    assert ok, f"vtest.avi frame {index} unreadable"
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def assert_same_people(boxes: np.ndarray, truth: list, what: str) -> None:
    from corrtrack.pipeline.detector import box_iou

    iou = box_iou(torch.tensor(boxes, dtype=torch.float64), torch.tensor(truth, dtype=torch.float64)).numpy()
    missed = [truth[j] for j in range(len(truth)) if iou.shape[0] == 0 or iou[:, j].max() < 0.5]
    extra = [boxes[i].round().tolist() for i in range(len(boxes)) if iou[i].max() < 0.5]
    assert not missed and not extra and len(boxes) == len(truth), \
        f"{what}: missed {missed}, false positives {extra}, {len(boxes)} detections for {len(truth)} people"


@pytest.mark.parametrize("index", sorted(VTEST_PEOPLE))
def test_all_walking_people_in_vtest(shared_data, detector, index):
    poses = detector(vtest_frame(shared_data, index))
    assert_same_people(poses.boxes, VTEST_PEOPLE[index], f"vtest.avi frame {index}")
    assert (poses.keypoints == 0).all() and poses.layout.name == "coco17"


def test_both_people_in_grayscale_basketball(shared_data, detector):
    import cv2

    gray = cv2.imread(str(shared_data / "opencv" / "basketball1.png"), cv2.IMREAD_UNCHANGED)
    assert gray.ndim == 2  # the file really is single-channel
    assert_same_people(detector(gray).boxes, BASKETBALL1_PEOPLE, "basketball1.png")


def test_awkward_inputs_do_not_crash(shared_data, detector):
    frame = vtest_frame(shared_data, 300)
    rgba = np.dstack([frame, np.full(frame.shape[:2], 255, np.uint8)])
    np.testing.assert_allclose(detector(rgba).boxes, detector(frame).boxes)
    assert len(detector(np.zeros((1, 1, 3), np.uint8))) == 0
    assert len(detector(np.zeros((4320, 7680, 3), np.uint8))) == 0  # 8K black frame
    # 8K frame with the real frame inside: at the same network input size, the same people with
    # coordinates scaled by 10 (the default "auto" size runs an 8K frame at 640, where vtest's
    # small walkers come with a spurious box: see DetectorConfig.input_size).
    big = frame.repeat(10, 0).repeat(10, 1)[:4320]
    fixed = Detector(DetectorConfig(input_size=416, candidate_threshold=None), device="cpu", model=detector.model)
    assert_same_people(fixed(big).boxes / 10, VTEST_PEOPLE[300], "vtest frame 300 upscaled to 8K")
    found = match_boxes(detector(big).boxes / 10, VTEST_PEOPLE[300])
    assert (found >= 0).all(), "vtest frame 300 upscaled to 8K, auto input size: a walker missed"


def test_large_frames_get_a_larger_input_and_find_the_posetrack_dancers(shared_data, detector):
    """The 3 labelled 1920×1080 PoseTrack18 frames, 14 people (GT boxes: the files' ``bbox``, i.e.
    the keypoints' extent grown by 30%). Measured: 8 found at the default "auto" input (640 here),
    3 at the graph's 416; the floor of 7 fails if large frames fall back to 416."""
    from corrtrack.io.posetrack import read_posetrack_dir
    from corrtrack.io.video import read_image

    assert canvas_shape(768, 576, detector.config) == (416, 416)  # vtest keeps the graph's input
    assert canvas_shape(1920, 1080, detector.config) == (640, 640)
    root = shared_data / "mmpose" / "posetrack18"
    found = total = 0
    for seq in read_posetrack_dir(root / "annotations" / "val"):
        for frame, gt in seq:
            image = read_image(root / frame.file_name)
            assert image.shape == (1080, 1920, 3)
            found += int((match_boxes(detector(image).boxes, gt.boxes) >= 0).sum())
            total += len(gt)
    assert total == 14
    assert found >= 7, f"default detector found {found} of the 14 PoseTrack people (IoU >= 0.5)"


def test_fitted_canvas_finds_the_same_walkers(shared_data, detector):
    fitted = Detector(DetectorConfig(square=False, candidate_threshold=None), device="cpu", model=detector.model)
    assert canvas_shape(768, 576, fitted.config) == (320, 416)
    for index in sorted(VTEST_PEOPLE):
        assert_same_people(fitted(vtest_frame(shared_data, index)).boxes, VTEST_PEOPLE[index],
                           f"vtest.avi frame {index}, fitted canvas")


def test_batch_tensor_gives_the_same_people(shared_data, detector):
    frames = np.stack([vtest_frame(shared_data, i) for i in sorted(VTEST_PEOPLE)])
    out = detector(torch.from_numpy(frames).permute(0, 3, 1, 2))
    for poses, index in zip(out, sorted(VTEST_PEOPLE)):
        assert_same_people(poses.boxes, VTEST_PEOPLE[index], f"batched vtest frame {index}")


def test_cli_detect_writes_json_and_annotations(shared_data, detector, tmp_path):
    from typer.testing import CliRunner

    from corrtrack.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["detect", str(shared_data / "opencv" / "basketball1.png"), "-o", str(tmp_path),
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "basketball1.detections.json").read_text())
    assert len(out["frames"]) == 1
    assert_same_people(np.array(out["frames"][0]["boxes"]), BASKETBALL1_PEOPLE, "detect CLI on basketball1.png")
    assert (tmp_path / "basketball1.detections.png").stat().st_size > 10_000
    res = runner.invoke(app, ["detect", str(shared_data / "opencv" / "vtest.avi"), "-o", str(tmp_path),
                              "--start", "300", "--end", "303", "--device", "cpu",
                              "--cpu-runtime", "torchscript", "-q"])  # the image above ran on the default, ONNX Runtime
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "vtest.detections.json").read_text())
    assert [f["index"] for f in out["frames"]] == [300, 301, 302]
    assert_same_people(np.array(out["frames"][0]["boxes"]), VTEST_PEOPLE[300], "detect CLI on vtest frame 300")
    assert (tmp_path / "vtest.detections.mp4").stat().st_size > 10_000


def test_cli_detect_empty_video_is_a_clear_error(tmp_path):
    from typer.testing import CliRunner

    from corrtrack.cli import app

    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    res = CliRunner().invoke(app, ["detect", str(empty), "-o", str(tmp_path)])
    assert isinstance(res.exception, CorrtrackError) and "empty.mp4" in str(res.exception)


@pytest.mark.parametrize("variant", ["lightning", "thunder"])
def test_candidates_verified_by_pose_add_the_missed_player_and_no_false_positive(shared_data, detector, variant):
    from corrtrack.io.video import read_image
    from corrtrack.pipeline.pose import PoseConfig, TopDownPoseEstimator

    with_candidates = Detector(DetectorConfig(), device="cpu", model=detector.model)
    estimator = TopDownPoseEstimator(PoseConfig(model=variant), device="cpu")
    for index in sorted(VTEST_PEOPLE):  # frame 300 has two candidate boxes that are not people
        frame = vtest_frame(shared_data, index)
        assert_same_people(estimator(frame, with_candidates(frame)).boxes, VTEST_PEOPLE[index],
                           f"vtest.avi frame {index}, detect + {variant}")
    for name, truth in (("basketball1.png", BASKETBALL1_PEOPLE), ("basketball2.png", BASKETBALL2_PEOPLE)):
        image = read_image(shared_data / "opencv" / name)
        assert_same_people(estimator(image, with_candidates(image)).boxes, truth, f"{name}, detect + {variant}")
    image = read_image(shared_data / "opencv" / "basketball2.png")
    assert len(estimator(image, detector(image))) == 1  # without candidates the player is missed
