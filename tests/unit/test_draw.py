import itertools

import numpy as np
import pytest

from corrtrack.layouts import COCO17
from corrtrack.structures import RECOVERED, Poses
from corrtrack.viz.draw import UNTRACKED_COLOR, color_for_id, draw_poses


def test_colors_are_stable_and_distinct():
    assert color_for_id(3) == color_for_id(3) == color_for_id(np.int64(3))
    assert color_for_id(-1) == UNTRACKED_COLOR
    colors = [np.array(color_for_id(i), float) for i in range(20)]
    assert all(min(c) >= 0 and max(c) <= 255 for c in colors)
    dists = [np.abs(a - b).sum() for a, b in itertools.combinations(colors, 2)]
    assert min(dists) > 40
    # neighbouring ids, the usual case on screen, differ a lot
    assert min(np.abs(colors[i] - colors[i + 1]).sum() for i in range(19)) > 150
    assert all(np.abs(c - UNTRACKED_COLOR).sum() > 60 for c in colors)


def _person(x0, y0, score=0.9):
    kp = np.zeros((17, 3))
    kp[5] = [x0, y0, score]  # left shoulder
    kp[7] = [x0, y0 + 40, score]  # left elbow
    kp[6] = [x0 + 30, y0, 0.1]  # right shoulder, below threshold
    return kp


def test_draw_skeleton_box_and_threshold():
    image = np.full((480, 640, 3), 255, np.uint8)  # lines 2 px wide at this size
    poses = Poses(np.stack([_person(50, 50)]), COCO17, boxes=[[30, 30, 120, 150]], track_ids=[5])
    out = draw_poses(image, poses)
    assert (image == 255).all()  # input untouched
    color = np.array(color_for_id(5))
    near = lambda x, y: np.abs(out[y, x].astype(int) - color).sum() < 30  # noqa: E731
    assert near(50, 70)  # on the shoulder-elbow limb
    assert near(50, 50) or near(51, 51)  # joint disc (rim is black)
    assert (out[50, 80] == 255).all()  # right shoulder below threshold: nothing
    assert near(75, 150) and near(120, 100)  # box edges
    no_box = draw_poses(image, poses, show_boxes=False, show_ids=False)
    assert (no_box[150, 75] == 255).all() and (no_box[100, 120] == 255).all()
    assert (no_box[20:30, 30:60] == 255).all()  # no id label above the box
    assert (out[20:30, 30:60] != 255).any()
    low = draw_poses(image, poses, joint_threshold=0.05)
    assert np.abs(low[50, 65].astype(int) - color).sum() < 30  # now the shoulder line is drawn


def test_untracked_is_grey_and_recovered_box_is_dashed():
    image = np.zeros((200, 300, 3), np.uint8)
    kp = np.zeros((2, 17, 3))
    poses = Poses(kp, COCO17, boxes=[[20, 40, 120, 180], [160, 40, 260, 180]], track_ids=[-1, 2],
                  origin=[0, RECOVERED])
    out = draw_poses(image, poses)
    top_solid = out[40, 30:110]
    assert (np.abs(top_solid.astype(int) - UNTRACKED_COLOR).sum(1) < 30).all()  # grey, continuous
    top_dashed = out[40, 170:250]
    lit = (top_dashed != 0).any(1)
    assert 0.3 < lit.mean() < 0.8  # gaps in the dashed box
    # the label of a recovered id carries a "*": its label is wider than the plain one's
    plain = draw_poses(image, poses.replace(origin=np.zeros(2, np.int8)))
    assert (out[20:40, 160:200] != 0).sum() > (plain[20:40, 160:200] != 0).sum()


def test_draw_handles_empty_and_bad_input():
    image = np.zeros((10, 10, 3), np.uint8)
    assert (draw_poses(image, Poses.empty(COCO17)) == image).all()
    with pytest.raises(ValueError):
        draw_poses(np.zeros((10, 10), np.uint8), Poses.empty(COCO17))
    kp = np.full((1, 17, 3), np.nan)
    draw_poses(image, Poses(kp, COCO17, boxes=[[np.nan] * 4]))  # nothing finite: nothing drawn, no crash
