"""Top-down pose estimator: crop geometry, image handling, batching — with random MoveNet weights."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from corrtrack.models import frozen  # noqa: E402
from corrtrack.models.movenet import MoveNet  # noqa: E402
from corrtrack.pipeline.pose import (PoseConfig, TopDownPoseEstimator, as_rgb_uint8, crop_affines,  # noqa: E402
                                     crop_image, crop_squares, crop_tensor, crops_to_image)
from corrtrack.layouts import COCO17  # noqa: E402
from corrtrack.structures import RECOVERED, Poses  # noqa: E402


def test_crop_square_follows_aspect_and_padding():
    cfg = PoseConfig(padding=1.25, aspect_ratio=0.75)
    sq = crop_squares(np.array([[10, 20, 40, 120],      # upright 30x100: side = 1.25 * 100
                                [0, 0, 300, 100],       # wide 300x100: side = 1.25 * 300 / 0.75
                                [5, 5, 5, 5]]), cfg)    # degenerate: small but positive
    np.testing.assert_allclose(sq[0], [25, 70, 125])
    np.testing.assert_allclose(sq[1], [150, 50, 500])
    assert sq[2, 2] > 0


def test_affine_and_back_are_inverse():
    sq = np.array([[100.0, 80.0, 150.0], [-20.0, 300.0, 33.0]])
    m = crop_affines(sq, 192)
    rng = np.random.default_rng(1)
    pts = rng.uniform(-50, 400, size=(2, 17, 2))
    # image point -> crop pixel (cv2 convention) -> MoveNet's normalised (y, x) -> image point
    crop_px = np.einsum("nij,nkj->nki", m[:, :, :2], pts) + m[:, None, :, 2]
    yx = np.stack([(crop_px[..., 1] + 0.5) / 192, (crop_px[..., 0] + 0.5) / 192, np.ones((2, 17))], -1)
    back = crops_to_image(yx, sq)
    np.testing.assert_allclose(back[..., :2], pts, atol=1e-9)


def test_cv2_crop_and_tensor_crop_agree():
    rng = np.random.default_rng(2)
    image = cv2.GaussianBlur(rng.integers(0, 256, (120, 160, 3)).astype(np.uint8), (7, 7), 2)
    sq = crop_squares(np.array([[30, 10, 70, 110], [-20, -10, 60, 50], [150, 100, 200, 160]]), PoseConfig())
    a = crop_image(image, sq, 64).astype(np.float32)
    frames = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    b = crop_tensor(frames, np.zeros(3, int), sq, 64).numpy()
    assert a.shape == b.shape == (3, 64, 64, 3)
    assert np.abs(a - b).max() <= 2.0  # cv2 uses 5-bit fixed-point weights and rounds to uint8
    assert (a[1, :5, :5] == 0).all()  # outside the image is black


def test_as_rgb_uint8():
    gray = np.full((4, 5), 7, np.uint8)
    assert as_rgb_uint8(gray).shape == (4, 5, 3)
    assert as_rgb_uint8(gray[..., None]).shape == (4, 5, 3)
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 3] = 255
    assert (as_rgb_uint8(rgba) == 0).all()
    assert as_rgb_uint8(np.full((2, 2, 3), 65535, np.uint16)).max() == 255
    assert as_rgb_uint8(np.full((2, 2, 3), 300.0)).max() == 255
    with pytest.raises(ValueError):
        as_rgb_uint8(np.zeros((4, 5, 2), np.uint8))


@pytest.fixture(scope="module")
def estimator(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "movenet-lightning.pt"
    torch.save(MoveNet("lightning").state_dict(), path)
    return TopDownPoseEstimator(PoseConfig(model="lightning", max_batch=2), device="cpu", weights=path)


def test_estimator_shapes_scores_and_edge_cases(estimator):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (90, 120, 3)).astype(np.uint8)
    boxes = np.array([[10, 10, 50, 80, 0.9], [-30, 40, 20, 130, 0.5], [60, 5, 119, 89, 1.0]])
    p = estimator(image, boxes)
    assert len(p) == 3 and p.layout.name == "coco17"
    np.testing.assert_allclose(p.boxes, boxes[:, :4])
    np.testing.assert_allclose(p.scores, boxes[:, 4] * p.keypoints[..., 2].mean(1))
    sq = crop_squares(boxes[:, :4], estimator.config)
    lo, hi = sq[:, :2] - sq[:, 2:] / 2 - 1, sq[:, :2] + sq[:, 2:] / 2
    assert ((p.keypoints[..., :2] >= lo[:, None]) & (p.keypoints[..., :2] <= hi[:, None])).all()
    # each crop is independent of the others (batched in chunks of max_batch=2)
    np.testing.assert_allclose(estimator(image, boxes[1:2]).keypoints, p.keypoints[1:2], atol=1e-5)
    # no boxes, a 1x1 image, grayscale and RGBA inputs
    assert len(estimator(image, np.zeros((0, 4)))) == 0
    assert len(estimator(np.zeros((1, 1, 3), np.uint8), [[0, 0, 1, 1]])) == 1
    gray = image[..., 0]
    np.testing.assert_allclose(estimator(gray, boxes).keypoints,
                               estimator(np.repeat(gray[..., None], 3, 2), boxes).keypoints)
    rgba = np.concatenate([image, np.full((90, 120, 1), 255, np.uint8)], 2)
    np.testing.assert_allclose(estimator(rgba, boxes).keypoints, p.keypoints)
    with pytest.raises(ValueError):
        estimator(image, [[0, 0, np.nan, 4]])


def test_estimator_keeps_given_poses_fields(estimator):
    image = np.zeros((50, 50, 3), np.uint8)
    given = Poses(np.zeros((2, 17, 3)), "coco17", boxes=[[0, 0, 10, 20], [5, 5, 30, 40]], scores=[0.8, 0.4],
                  track_ids=[7, 9], origin=[RECOVERED, RECOVERED])
    p = estimator(image, given)
    assert p.track_ids.tolist() == [7, 9] and (p.origin == RECOVERED).all()
    np.testing.assert_allclose(p.boxes, given.boxes)


def test_estimate_frames_matches_per_frame_call(estimator):
    # A smooth image so that cv2's and grid_sample's crops are nearly identical.
    yy, xx = np.mgrid[0:80, 0:100]
    frames = np.stack([np.stack([xx * 2, yy * 3, (xx + yy)], -1).astype(np.uint8),
                       np.stack([yy * 3, xx * 2, 255 - xx], -1).astype(np.uint8)])
    boxes = [np.array([[10, 10, 40, 70], [50, 0, 90, 60]]), np.array([[20, 20, 60, 79]])]
    batched = estimator.estimate_frames(torch.from_numpy(frames).permute(0, 3, 1, 2), boxes)
    assert [len(p) for p in batched] == [2, 1]
    for f, b, p in zip(frames, boxes, batched):
        single = estimator(f, b)
        np.testing.assert_allclose(p.boxes, single.boxes)
        # same crops up to interpolation rounding: keypoints agree closely (random weights can flip a
        # near-tied argmax, so compare the median)
        assert np.median(np.abs(p.keypoints[..., :2] - single.keypoints[..., :2])) < 1.0
    # float input is 0..1 (as for Detector.detect_batch)
    as_float = estimator.estimate_frames(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255, boxes)
    for a, b in zip(as_float, batched):
        assert np.median(np.abs(a.keypoints - b.keypoints)) < 1e-3
    empty = estimator.estimate_frames(torch.zeros(2, 3, 8, 8), [np.zeros((0, 4)), np.zeros((0, 4))])
    assert [p.keypoints.shape for p in empty] == [(0, 17, 3)] * 2


def _person(x0: float, score: float, joint: float, origin: int) -> tuple:
    """A 17-joint pose spread over a 40x100 box at x0, every joint scored ``joint``."""
    rng = np.random.default_rng(int(x0))
    kp = np.concatenate([np.c_[x0 + rng.uniform(0, 40, 17), rng.uniform(0, 100, 17)], np.full((17, 1), joint)], 1)
    return kp, [x0, 0, x0 + 40, 100], score, origin


def _poses(*people) -> Poses:
    kp, boxes, scores, origin = zip(*people)
    return Poses(np.array(kp), COCO17, np.array(boxes, float), np.array(scores), origin=np.array(origin))


def test_verify_candidates_keeps_confident_new_people_only():
    from corrtrack.pipeline.pose import verify_candidates
    from corrtrack.structures import CANDIDATE, DETECTED

    sure = _person(0, 0.6, 0.5, DETECTED)
    weak_but_clear = _person(200, 0.25, 0.6, CANDIDATE)  # a person the detector scored low: kept
    background = _person(400, 0.3, 0.1, CANDIDATE)  # a box with no confident pose: dropped
    repeat = (sure[0] + [1, 1, 0], [1, 1, 41, 101], 0.3, CANDIDATE)  # the sure person again: dropped
    weak_sure = _person(600, 0.45, 0.1, DETECTED)  # above the detector threshold: never dropped
    out = verify_candidates(_poses(sure, weak_but_clear, background, repeat, weak_sure), 0.35, 0.5)
    assert out.boxes[:, 0].tolist() == [0, 200, 600]
    assert (out.origin == DETECTED).all()
    # of two candidates on one person, the better-scored one stays
    twin = (weak_but_clear[0] + [1, 0, 0], [201, 0, 241, 100], 0.35, CANDIDATE)
    out = verify_candidates(_poses(weak_but_clear, twin), 0.35, 0.5)
    assert out.boxes[:, 0].tolist() == [201]
    plain = _poses(sure, weak_sure)
    assert verify_candidates(plain) is plain  # nothing to verify


def test_rejected_candidates_are_the_candidate_boxes_missing_from_the_output():
    from corrtrack.pipeline.pose import rejected_candidates, verify_candidates
    from corrtrack.structures import CANDIDATE, DETECTED

    asked = _poses(_person(0, 0.6, 0.5, DETECTED), _person(200, 0.25, 0.6, CANDIDATE),
                   _person(400, 0.3, 0.1, CANDIDATE), _person(600, 0.45, 0.1, DETECTED))
    assert rejected_candidates(asked, verify_candidates(asked)).tolist() == [False, False, True, False]
    assert not rejected_candidates(asked[[0, 3]], asked[[0]]).any()  # only candidates are ever rejected


def test_candidate_memory_skips_a_rejected_place_for_a_few_frames():
    from corrtrack.pipeline.pose import CandidateMemory
    from corrtrack.structures import CANDIDATE, DETECTED

    cone = _person(400, 0.3, 0.1, CANDIDATE)  # background the pose check rejects
    memory = CandidateMemory(frames=3, iou=0.8)
    frame0 = _poses(_person(0, 0.6, 0.5, DETECTED), cone)
    assert memory.filter(0, frame0) is frame0  # nothing remembered yet
    memory.update(0, frame0, frame0[[0]])  # the cone was rejected at frame 0
    jittered = (cone[0], [401, 1, 441, 100], 0.3, CANDIDATE)  # IoU 0.95 with the cone's box
    elsewhere = _person(200, 0.25, 0.6, CANDIDATE)
    as_person = (cone[0], cone[1], 0.6, DETECTED)  # the same box scored high: always estimated
    for f in (1, 2, 3):
        out = memory.filter(f, _poses(jittered, elsewhere, as_person))
        assert out.boxes[:, 0].tolist() == [200, 400]
    # 3 frames after the real estimate the place is estimated again, and rejected again
    again = memory.filter(4, _poses(jittered))
    assert len(again) == 1
    memory.update(4, again, again[[]])
    assert len(memory.filter(7, _poses(cone))) == 0 and len(memory.filter(8, _poses(cone))) == 1
    # a candidate that was kept is not remembered; reset forgets; frames=0 remembers nothing
    kept = _poses(elsewhere)
    memory.update(8, kept, kept)
    assert len(memory.filter(9, kept)) == 1
    memory.reset()
    assert len(memory.filter(9, _poses(cone))) == 1
    off = CandidateMemory(frames=0)
    off.update(0, _poses(cone), _poses(cone)[[]])
    assert len(off.filter(0, _poses(cone))) == 1


def test_candidate_memory_config_is_checked():
    with pytest.raises(ValueError, match="candidate_memory"):
        PoseConfig(candidate_memory=-1)
    with pytest.raises(ValueError, match="candidate_memory"):
        PoseConfig(candidate_memory_iou=0)


def test_cpu_batches_are_at_most_cpu_max_batch(tmp_path, monkeypatch):
    # ONNX Runtime's arena keeps the largest batch's activations: a crowded frame goes through in chunks
    path = tmp_path / "movenet-lightning.pt"
    torch.save(MoveNet("lightning").state_dict(), path)
    monkeypatch.setattr(frozen, "CPU_MAX_BATCH", 3)
    est = TopDownPoseEstimator(PoseConfig(model="lightning"), device="cpu", weights=path)
    assert est.max_batch == 3 and est.config.max_batch == 64
    sizes = []
    model = est.model
    est.model = lambda x: sizes.append(len(x)) or model(x)
    image = np.random.default_rng(0).integers(0, 256, (60, 80, 3)).astype(np.uint8)
    p = est(image, np.tile([[5, 5, 40, 55]], (7, 1)))
    assert sizes == [3, 3, 1] and len(p) == 7
    sizes.clear()
    est.estimate_frames(torch.as_tensor(image).permute(2, 0, 1)[None], [np.tile([[5, 5, 40, 55]], (4, 1))])
    assert sizes == [3, 1]
