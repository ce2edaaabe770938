"""Top-down MoveNet on the real annotated images: accuracy floors, awkward inputs, the CLI.

Floors are set well below what the converted models score (benchmarks/bench_pose.py,
ground-truth boxes: COCO OKS-AP 63 lightning / 75 thunder, PCK@0.2 ~92 %, PoseTrack18
mAP 54 / 56) and far above what a broken conversion scores (random weights: ~0,
checked below), so they catch a wrong conversion, crop or coordinate mapping.
"""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from corrtrack.errors import CorrtrackError  # noqa: E402
from corrtrack.io.video import read_image  # noqa: E402
from corrtrack.layouts import POSETRACK18  # noqa: E402
from corrtrack.structures import PoseSequence  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def estimators():
    from corrtrack.pipeline.pose import PoseConfig, TopDownPoseEstimator

    try:
        return {v: TopDownPoseEstimator(PoseConfig(model=v), device="cpu") for v in ("lightning", "thunder")}
    except CorrtrackError as e:
        pytest.skip(f"MoveNet weights unavailable: {e}")


def coco_accuracy(est, shared_data) -> tuple[float, float]:
    """(COCO keypoint AP %, PCK@0.2·max(box side) %) with ground-truth boxes."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    root = shared_data / "mmpose" / "coco"
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(root / "test_coco.json"))
    results, hits = [], []
    for img_id in gt.getImgIds():
        image = read_image(root / gt.loadImgs(img_id)[0]["file_name"])
        anns = gt.loadAnns(gt.getAnnIds(imgIds=img_id, iscrowd=False))
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)])
        poses = est(image, boxes)
        for a, kp, score in zip(anns, poses.keypoints, poses.scores):
            results.append(dict(image_id=img_id, category_id=1, keypoints=kp.ravel().tolist(), score=float(score)))
            g = np.array(a["keypoints"], np.float64).reshape(17, 3)
            vis = g[:, 2] > 0
            hits += list(np.linalg.norm(kp[vis, :2] - g[vis, :2], axis=1) < 0.2 * max(a["bbox"][2:]))
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(results), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return 100 * ev.stats[0], 100 * float(np.mean(hits))


@pytest.mark.parametrize("variant", ["lightning", "thunder"])
def test_coco_accuracy_with_ground_truth_boxes(variant, estimators, shared_data):
    ap, pck = coco_accuracy(estimators[variant], shared_data)
    assert ap >= 45, f"MoveNet {variant}: COCO OKS-AP {ap:.1f} on the 14 GT people"
    assert pck >= 80, f"MoveNet {variant}: PCK@0.2 {pck:.1f} %"


@pytest.mark.parametrize("variant", ["lightning", "thunder"])
def test_posetrack_map_with_ground_truth_boxes(variant, estimators, shared_data):
    from corrtrack.eval.posetrack import evaluate
    from corrtrack.io.posetrack import read_posetrack_dir

    root = shared_data / "mmpose" / "posetrack18"
    gts = read_posetrack_dir(root / "annotations" / "val")
    preds = [PoseSequence(seq.name, seq.frames,
                          [estimators[variant](read_image(root / f.file_name), gt.boxes).to_layout(POSETRACK18)
                           for f, gt in seq])
             for seq in gts]
    m = evaluate(gts, preds, tracking=False).ap.mAP
    assert m >= 40, f"MoveNet {variant}: PoseTrack18 mAP {m:.1f} on the 3 labelled frames"


def test_floor_is_out_of_reach_for_a_broken_model(shared_data, tmp_path):
    """Control: the same pipeline with untrained weights must fail the floors by far."""
    from corrtrack.models.movenet import MoveNet
    from corrtrack.pipeline.pose import PoseConfig, TopDownPoseEstimator

    torch.manual_seed(0)
    path = tmp_path / "random.pt"
    torch.save(MoveNet("lightning").state_dict(), path)
    ap, pck = coco_accuracy(TopDownPoseEstimator(PoseConfig(model="lightning"), "cpu", path), shared_data)
    assert ap < 10 and pck < 40


def test_awkward_inputs(estimators, shared_data):
    import cv2

    est = estimators["lightning"]
    gray = cv2.imread(str(shared_data / "opencv" / "basketball1.png"), cv2.IMREAD_UNCHANGED)
    assert gray.ndim == 2
    people = np.array([[36, 93, 163, 466], [423, 19, 635, 480]])
    p = est(gray, people)
    assert len(p) == 2 and (p.keypoints[..., 2].mean(1) > 0.3).all()
    # every joint lands near its box (the crop maps back to the right place)
    for kp, (x1, y1, x2, y2) in zip(p.keypoints, people):
        assert ((kp[:, 0] > x1 - 40) & (kp[:, 0] < x2 + 40) & (kp[:, 1] > y1 - 40) & (kp[:, 1] < y2 + 40)).all()
    # the same frame at 8K: same joints, coordinates scaled (up to interpolation differences)
    rgb = cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
    big = cv2.resize(rgb, None, fx=10, fy=10, interpolation=cv2.INTER_LINEAR)
    p_big = est(big, people * 10 + 4.5)  # pixel centres: x_big = 10 x + 4.5
    err = np.abs((p_big.keypoints[..., :2] - 4.5) / 10 - p.keypoints[..., :2])
    assert np.median(err) < 2.0
    # boxes hanging over the border, a 1x1 image, no boxes
    edge = est(rgb, [[-100, -50, 120, 400], [500, 100, 900, 700]])
    assert len(edge) == 2 and np.isfinite(edge.keypoints).all()
    assert len(est(np.zeros((1, 1), np.uint8), [[0, 0, 1, 1]])) == 1
    assert len(est(rgb, np.zeros((0, 4)))) == 0


def test_cli_pose_image_and_video(estimators, shared_data, tmp_path):
    from typer.testing import CliRunner

    from corrtrack.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["pose", str(shared_data / "opencv" / "basketball1.png"), "-o", str(tmp_path),
                              "--model", "lightning", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "basketball1.poses.json").read_text())
    assert len(out) == 2 and all(len(p["keypoints"]) == 51 for p in out)
    assert (tmp_path / "basketball1.poses.png").stat().st_size > 10_000
    res = runner.invoke(app, ["pose", str(shared_data / "opencv" / "vtest.avi"), "-o", str(tmp_path),
                              "--start", "300", "--end", "302", "--model", "lightning", "--device", "cpu",
                              "--cpu-runtime", "torchscript", "-q"])  # the image above ran on the default, ONNX Runtime
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "vtest.poses.json").read_text())
    assert sorted({p["image_id"] for p in out}) == [300, 301]
    assert sum(p["image_id"] == 300 for p in out) == 6  # the six walkers of frame 300
    assert (tmp_path / "vtest.poses.mp4").stat().st_size > 10_000


def test_cli_pose_bad_input_is_a_clear_error(tmp_path):
    from typer.testing import CliRunner

    from corrtrack.cli import app

    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    res = CliRunner().invoke(app, ["pose", str(empty), "-o", str(tmp_path)])
    assert isinstance(res.exception, CorrtrackError) and "empty.mp4" in str(res.exception)
    res = CliRunner().invoke(app, ["pose", str(empty), "--model", "medium"])
    assert isinstance(res.exception, CorrtrackError) and "medium: not a pose model" in str(res.exception)
