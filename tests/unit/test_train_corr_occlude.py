"""Occlusion by a pasted passer-by (``CorrTrainConfig.occlude_prob``): the paste itself, and what it does
to a training sample's targets."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from corrtrack.models.corr_codec import grid_to_canvas
from corrtrack.models.corrnet import CorrNetConfig
from corrtrack.train.corr import CorrTrainConfig, PairDataset, WarpConfig, paste_occluder, read_coco_records
from test_train_corr import _make_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_donor_lands_over_the_target_scaled_to_its_height():
    donor = np.full((100, 80, 3), 255, np.uint8)
    donor[10:90, 20:60] = 200  # the donor person, on a white background
    for seed in range(20):
        img = np.full((120, 160, 3), 50, np.uint8)
        target = np.array([60.0, 30.0, 90.0, 90.0])  # 30 wide, 60 high
        mask = paste_occluder(img, target, donor, np.array([20.0, 10.0, 60.0, 90.0]), np.random.default_rng(seed))
        ys, xs = np.nonzero(mask)
        assert len(ys), seed
        # height 0.8-1.2 x the target's; the ellipse's mask (alpha >= 0.5) is sqrt(7/8) of the box
        assert 0.8 * 60 * 0.9 - 2 <= ys.max() - ys.min() + 1 <= 1.2 * 60 + 2
        # centred on the target, up to 0.6 of its width sideways and 0.25 of its height up or down
        assert abs(xs.mean() - 75) <= 0.6 * 30 + 1 and abs(ys.mean() - 60) <= 0.25 * 60 + 1
        assert (img[mask] >= 125).all()  # covered: at least half the donor's (>= 200) over the image's 50
        assert (img[~mask] < 153).all() and (img[0, 0] == 50).all()  # uncovered: less than half; far away untouched


def test_a_paste_over_the_border_is_clipped():
    img = np.zeros((40, 40, 3), np.uint8)
    donor = np.full((50, 30, 3), 255, np.uint8)
    mask = paste_occluder(img, np.array([30.0, 0.0, 40.0, 40.0]), donor, np.array([0.0, 0.0, 30.0, 50.0]),
                          np.random.default_rng(0))
    assert mask.shape == (40, 40) and mask.any() and not mask[:, :10].any()


def test_occluded_joints_become_zero_targets_and_nothing_else_changes(tmp_path):
    ann, img = _make_dataset(tmp_path, n_images=4, size=(96, 80))
    recs = read_coco_records(ann, img)
    base = dict(annotations=(str(ann),), images=(str(img),), out_dir=str(tmp_path / "o"),
                net=CorrNetConfig(input_size=96, pretrained=False), warp=WarpConfig(photometric=False), seed=0)
    plain = PairDataset(recs, CorrTrainConfig(**base))
    occluded = PairDataset(recs, CorrTrainConfig(**base, occlude_prob=1.0))
    hidden = changed = 0
    for i in range(12):
        a, b = plain[i], occluded[i]
        for key in ("img1", "grid1", "grid2", "valid1", "known2"):
            assert torch.equal(a[key], b[key]), key  # same warp, same people
        # only joints that were in view can be hidden, and a hidden joint keeps a known (zero) target
        assert not (b["present2"] & ~a["present2"]).any()
        gone = (a["present2"] & ~b["present2"]).numpy()
        hidden += int(gone.sum())
        # a 96 x 80 frame on a 96 x 96 canvas: canvas = image coordinates; the hidden joints lie under the paste
        xy = np.round(grid_to_canvas(b["grid2"].numpy(), 4)[gone]).astype(int)
        diff = (a["img2"].int() - b["img2"].int()).abs().sum(0).numpy()
        changed += int((diff[xy[:, 1], xy[:, 0]] > 0).sum())
        assert not torch.equal(a["img2"], b["img2"])  # something was pasted
    assert hidden > 0 and changed >= 0.9 * hidden
    with pytest.raises(Exception, match="occlude_prob"):
        CorrTrainConfig(**base, occlude_prob=1.5)
