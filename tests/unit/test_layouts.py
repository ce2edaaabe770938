import numpy as np
import pytest

from corrtrack.layouts import COCO17, POSETRACK18, POSEVAL15, convert_keypoints, get_layout


def _random_coco(n=3, seed=0):
    rng = np.random.default_rng(seed)
    kp = np.zeros((n, 17, 3))
    kp[..., :2] = rng.uniform(0, 500, (n, 17, 2))
    kp[..., 2] = rng.uniform(0.1, 1, (n, 17))
    return kp


def test_layout_sizes_and_names():
    assert COCO17.num_joints == 17 and POSETRACK18.num_joints == 17 and POSEVAL15.num_joints == 15
    assert POSEVAL15.joints[12] == "head_bottom" and POSEVAL15.joints[13] == "nose"
    assert POSETRACK18.joints[:3] == ("nose", "head_bottom", "head_top")
    assert get_layout("coco17") is COCO17
    with pytest.raises(ValueError, match="unknown keypoint layout"):
        get_layout("mpii")


def test_flip_permutation_is_an_involution_swapping_left_right():
    for layout in (COCO17, POSETRACK18, POSEVAL15):
        perm = layout.flip_permutation()
        assert (perm[perm] == np.arange(layout.num_joints)).all()
        for i, j in enumerate(perm):
            a, b = layout.joints[i], layout.joints[j]
            assert a.replace("left_", "right_") == b or b.replace("left_", "right_") == a or a == b


def test_posetrack_to_poseval_and_back_is_lossless_on_the_15_joints():
    kp = _random_coco()
    kp[:, 3:5] = 0  # PoseTrack ears are never annotated
    pv = convert_keypoints(kp, POSETRACK18, POSEVAL15)
    assert pv.shape == (3, 15, 3)
    assert np.allclose(pv[:, POSEVAL15.index("left_wrist")], kp[:, POSETRACK18.index("left_wrist")])
    back = convert_keypoints(pv, POSEVAL15, POSETRACK18)
    assert np.allclose(back, kp)


def test_coco_to_posetrack_derives_head_on_the_shoulder_nose_line():
    kp = np.zeros((1, 17, 3))
    kp[0, 0] = [100, 50, 0.9]  # nose
    kp[0, 5] = [120, 100, 0.8]  # left shoulder
    kp[0, 6] = [80, 100, 0.7]  # right shoulder
    kp[0, 1] = [95, 45, 0.9]  # an eye, which PoseTrack does not have
    pt = convert_keypoints(kp, COCO17, POSETRACK18)
    bottom, top = pt[0, 1], pt[0, 2]
    assert np.allclose(bottom, [100, 100 - 0.27 * 50, 0.7])
    assert np.allclose(top, [100, 100 - 1.46 * 50, 0.7])
    assert (pt[0, 3:5] == 0).all()
    assert np.allclose(pt[0, 5:], kp[0, 5:])


def test_coco_to_posetrack_leaves_head_absent_without_nose():
    kp = _random_coco(1)
    kp[0, 0] = 0
    pt = convert_keypoints(kp, COCO17, POSETRACK18)
    assert (pt[0, 1] == 0).all() and (pt[0, 2] == 0).all()


def test_coco_to_poseval_goes_through_posetrack():
    kp = _random_coco()
    direct = convert_keypoints(kp, COCO17, POSEVAL15)
    via = convert_keypoints(convert_keypoints(kp, COCO17, POSETRACK18), POSETRACK18, POSEVAL15)
    assert np.allclose(direct, via)


def test_posetrack_to_coco_has_no_eyes():
    kp = _random_coco()
    coco = convert_keypoints(kp, POSETRACK18, COCO17)
    assert (coco[:, 1:3] == 0).all()
    assert np.allclose(coco[:, 5:], kp[:, 5:])


def test_wrong_shape_is_rejected():
    with pytest.raises(ValueError, match="do not fit layout"):
        convert_keypoints(np.zeros((2, 15, 3)), COCO17, POSETRACK18)
