"""Similarity functions on generated poses and images."""
from __future__ import annotations

import numpy as np
import pytest

from corrtrack.pipeline.similarity import (
    FrameContext,
    dis_flow,
    flow_propagate,
    get_similarity,
    iou_matrix,
    keypoint_votes,
    oks_matrix,
    similarity_names,
)
from corrtrack.structures import Poses

# A standing person, COCO-17, in units of body height about the hip centre.
TEMPLATE = np.array([
    (0, -.45), (.02, -.47), (-.02, -.47), (.04, -.46), (-.04, -.46), (.1, -.33), (-.1, -.33),
    (.13, -.15), (-.13, -.15), (.14, 0), (-.14, 0), (.07, 0), (-.07, 0), (.07, .25), (-.07, .25),
    (.07, .48), (-.07, .48)])


def people(*centres, height=100.0, score=0.9) -> Poses:
    kp = np.zeros((len(centres), 17, 3))
    for i, (x, y) in enumerate(centres):
        kp[i, :, :2] = TEMPLATE * height + (x, y)
        kp[i, :, 2] = score
    boxes = np.concatenate([kp[:, :, :2].min(1) - 5, kp[:, :, :2].max(1) + 5], 1)
    return Poses(kp, "coco17", boxes=boxes)


CTX = FrameContext()


def test_registry_has_the_baselines():
    assert {"oks", "iou", "flow", "reid"} <= set(similarity_names())
    with pytest.raises(ValueError, match="unknown similarity"):
        get_similarity("nope")


def test_oks_identical_shifted_and_far():
    a = people((100, 100))
    s = oks_matrix(a, people((100, 100), (103, 100), (110, 100), (400, 100)))
    assert s[0, 0] == pytest.approx(1.0)
    assert 1.0 > s[0, 1] > s[0, 2] > 0.0
    assert s[0, 3] < 1e-6


def test_oks_reference_semantics_and_scale():
    ref = people((100, 100))
    part = ref.copy()
    part.keypoints[0, :8, 2] = 0.0  # candidate lacks 8 joints: they score 0 for the reference
    assert oks_matrix(ref, part)[0, 0] == pytest.approx(9 / 17)
    assert oks_matrix(part, ref)[0, 0] == pytest.approx(1.0)  # the reference only asks for its own joints
    # The same 5 px shift matters less for a bigger person.
    small = oks_matrix(people((100, 100), height=50), people((105, 100), height=50))[0, 0]
    big = oks_matrix(people((100, 100), height=200), people((105, 100), height=200))[0, 0]
    assert big > small
    # Joints at or below the joint threshold are absent.
    low = ref.copy()
    low.keypoints[0, :, 2] = 0.05
    assert oks_matrix(ref, low, joint_thresh=0.1)[0, 0] == 0.0


def test_oks_empty():
    assert oks_matrix(people(), people((1, 1))).shape == (0, 1)
    assert get_similarity("oks")(people((1, 1)), people(), CTX).shape == (1, 0)


def test_iou_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]])
    np.testing.assert_allclose(iou_matrix(a, b), [[1.0, 50 / 150, 0.0, 0.0]])
    t = people((100, 100))
    c = people((100, 100), (300, 100))
    np.testing.assert_allclose(get_similarity("iou")(t, c, CTX), [[1.0, 0.0]])


def textured(shape=(160, 200), seed=0) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    g = cv2.GaussianBlur(rng.uniform(0, 255, shape).astype(np.float32), (0, 0), 2.0)
    g = cv2.normalize(g, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def test_dis_flow_moves_keypoints_with_the_image():
    a = textured()
    b = np.roll(a, shift=(3, 5), axis=(0, 1))  # content moves 5 px right, 3 px down
    t = people((100, 80), height=60)
    moved = flow_propagate(t, dis_flow(a, b))
    d = moved.keypoints[0, :, :2] - t.keypoints[0, :, :2]
    np.testing.assert_allclose(np.median(d, axis=0), [5, 3], atol=0.5)
    np.testing.assert_allclose(moved.boxes - t.boxes, [[*np.mean(d, 0), *np.mean(d, 0)]], atol=1e-6)
    # The flow similarity prefers the candidate where the image moved the person.
    cands = people((100, 80), (105, 83), height=60)
    s = get_similarity("flow")(t, cands, FrameContext(image=b, prev_image=a))
    assert s[0, 1] > 0.9 > s[0, 0]
    with pytest.raises(ValueError, match="previous and the current image"):
        get_similarity("flow")(t, cands, FrameContext())


def test_reid_is_clipped_cosine():
    e = np.eye(3)
    ctx = FrameContext(track_embeddings=e[:2], candidate_embeddings=np.stack([e[0], -e[1], e[2]]))
    s = get_similarity("reid")(people((0, 0), (1, 1)), people((0, 0), (1, 1), (2, 2)), ctx)
    np.testing.assert_allclose(s, [[1, 0, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="embeddings"):
        get_similarity("reid")(people((0, 0)), people((0, 0)), FrameContext())


def test_keypoint_votes_count_shared_joints():
    t = people((100, 100))
    half = people((100, 100))
    half.keypoints[0, 9:, :2] += 200  # the last 8 joints belong elsewhere
    v = keypoint_votes(t, Poses.concat([t, half, people((300, 100))]))
    np.testing.assert_allclose(v, [[1.0, 9 / 17, 0.0]])


def _corr_maps(moved: Poses, image_size=(640, 480), peak=0.9, sigma=1.5):
    """CorrMaps with a Gaussian of height ``peak`` at each moved joint (what a good network gives)."""
    import torch

    from corrtrack.models.corr_codec import Letterbox, encode_targets, image_to_grid
    from corrtrack.pipeline.propagate import CorrMaps

    lb = Letterbox.fit(*image_size, 512)
    g = torch.as_tensor(image_to_grid(moved.keypoints[..., :2], lb, 4))
    valid = moved.keypoints[..., 2] > 0
    maps = peak * encode_targets(g, torch.as_tensor(valid), 128, 128, sigma).float()
    return CorrMaps(maps, lb, 4, valid, True)


def test_corr_similarity_is_eq6():
    tracks = people((100, 100), (300, 100))
    maps = _corr_maps(tracks)  # both stay where they are
    cands = people((100, 100), (300, 100), (500, 100))
    s = get_similarity("corr")(tracks, cands, FrameContext(corr_maps=maps))
    # Bilinear reads of a peak 0.9 between grid cells give a bit less.
    assert 0.75 < s[0, 0] <= 0.9 and 0.75 < s[1, 1] <= 0.9
    assert s[0, 1] == s[1, 0] == 0 and (s[:, 2] == 0).all()
    # A candidate whose lower body is elsewhere gets only its matching joints' share.
    half = people((100, 100))
    half.keypoints[0, 9:, :2] += 200
    vals = _corr_maps(tracks[:1]).values_at(tracks[:1])[0, 0]
    s = get_similarity("corr")(tracks[:1], half, FrameContext(corr_maps=_corr_maps(tracks[:1])))
    assert s[0, 0] == pytest.approx(vals[:9].sum() / 17)
    with pytest.raises(ValueError, match="correspondence maps"):
        get_similarity("corr")(tracks, cands, FrameContext())


def test_corr_oks_tolerates_a_pose_a_few_pixels_off():
    tracks = people((100, 100), (300, 100))
    maps = _corr_maps(tracks, sigma=1.0)  # the refinement's sharp maps: 1 cell = 4 px at 512
    shifted = people((112, 100), (312, 100))  # the same two people, estimated 12 px to the right
    eq6 = get_similarity("corr")(tracks, shifted, FrameContext(corr_maps=maps, propagated=tracks))
    both = get_similarity("corr")(tracks, shifted, FrameContext(corr_maps=maps, propagated=tracks, corr_oks=True))
    assert eq6[0, 0] < 0.1 and eq6[1, 1] < 0.1  # eq. 6 alone loses them
    np.testing.assert_allclose(both, np.maximum(eq6, oks_matrix(tracks, shifted)))
    assert both[0, 0] > 0.3 and both[1, 1] > 0.3 and both[0, 1] < 1e-6 and both[1, 0] < 1e-6
    with pytest.raises(ValueError, match="propagated"):
        get_similarity("corr")(tracks, shifted, FrameContext(corr_maps=maps, corr_oks=True))


def test_oks_scale_is_the_box_area():
    a, b = people((100, 100)), people((106, 100))
    wide = a.replace(boxes=a.boxes * [1, 1, 1.5, 1.5] - [0, 0, 50, 50])  # a bigger box, same joints
    assert oks_matrix(wide, b)[0, 0] > oks_matrix(a, b)[0, 0]


def test_correspondence_votes_count_joints_above_the_affinity_threshold():
    from corrtrack.pipeline.similarity import correspondence_votes

    tracks = people((100, 100))
    half = people((100, 100))
    half.keypoints[0, 9:, :2] += 200
    v = correspondence_votes(_corr_maps(tracks), Poses.concat([tracks, half, people((300, 100))]))
    np.testing.assert_allclose(v, [[1.0, 9 / 17, 0.0]])


def test_softmax_maps_are_put_on_the_refined_scale():
    from dataclasses import replace as dc_replace

    from corrtrack.pipeline.similarity import SOFTMAX_SCALE, correspondence_votes, propagation_confidence

    tracks = people((100, 100))
    refined = _corr_maps(tracks, peak=0.9)
    softmax = dc_replace(_corr_maps(tracks, peak=0.1), refined=False)  # a softmax peak is ~1/(2 pi)
    cands = people((100, 100))
    s_ref = get_similarity("corr")(tracks, cands, FrameContext(corr_maps=refined))
    s_soft = get_similarity("corr")(tracks, cands, FrameContext(corr_maps=softmax))
    assert s_soft[0, 0] == pytest.approx(s_ref[0, 0] * 0.1 * SOFTMAX_SCALE / 0.9, rel=1e-6)
    # Raw softmax values (~0.1) would fall below the 0.1 affinity floor of eq. 6 and of the votes.
    assert correspondence_votes(softmax, cands)[0, 0] == 1.0
    # Scaled values never exceed 1, and move confidences get the same factor.
    hot = dc_replace(_corr_maps(tracks, peak=0.5), refined=False)
    assert get_similarity("corr")(tracks, cands, FrameContext(corr_maps=hot))[0, 0] <= 1.0
    moved = tracks.replace(keypoints=np.concatenate([tracks.keypoints[..., :2], np.full((1, 17, 1), 0.1)], -1))
    np.testing.assert_allclose(propagation_confidence(moved, softmax).keypoints[..., 2], 0.1 * SOFTMAX_SCALE)
    assert propagation_confidence(moved, refined) is moved and propagation_confidence(moved, None) is moved
