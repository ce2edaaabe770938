"""PoseCodec: targets from keypoints and keypoints from predictions, both ways."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from corrtrack.models.pose_codec import PoseCodec, logit


def _keypoints(rng, n, k, w, h, margin=0.0):
    kp = np.zeros((n, k, 3), np.float32)
    kp[..., 0] = rng.uniform(-0.5 + margin, w - 0.5 - margin, (n, k))
    kp[..., 1] = rng.uniform(-0.5 + margin, h - 0.5 - margin, (n, k))
    kp[..., 2] = 1
    return kp


@pytest.mark.parametrize("codec", [PoseCodec(), PoseCodec(96, 128, sigma=1.0, offset_radius=1.5)])
def test_encode_then_decode_returns_the_keypoints(codec):
    rng = np.random.default_rng(0)
    kp = _keypoints(rng, 6, 17, codec.input_width, codec.input_height)
    t = codec.encode(kp)
    w, h = codec.heatmap_size
    assert t["heatmaps"].shape == (6, 17, h, w) and t["offsets"].shape == (6, 34, h, w)
    # a network that outputs exactly the targets decodes to the keypoints (the brief: within a pixel;
    # with exact offsets the codec is exact up to float rounding)
    dec = codec.decode(logit(t["heatmaps"]), t["offsets"]).numpy()
    err = np.abs(dec[..., :2] - kp[..., :2])
    assert err.max() < 1e-3, err.max()
    assert (dec[..., 2] > 0.75).all()  # the peak cell is the nearest one: Gaussian >= exp(-0.25 / sigma^2)
    # without offsets the argmax cell alone is within half a cell diagonal: the offsets carry the rest
    coarse = codec.decode(logit(t["heatmaps"]), torch.zeros_like(t["offsets"])).numpy()
    assert np.abs(coarse[..., :2] - kp[..., :2]).max() <= codec.stride / 2 + 1e-4


def test_pixel_and_cell_conventions():
    codec = PoseCodec(32, 32, stride=4)
    # crop pixels 0..3 form cell 0, whose centre is pixel 1.5
    kp = np.array([[[1.5, 1.5, 1], [5.5, 9.5, 1]]], np.float32)
    t = codec.encode(kp)
    assert t["heatmaps"][0, 0, 0, 0] == pytest.approx(1.0)
    assert t["heatmaps"][0, 1, 2, 1] == pytest.approx(1.0)
    assert float(t["offsets"][0, 0, 0, 0]) == 0 and float(t["offsets"][0, 2, 0, 0]) == 0
    # one cell to the right of joint 0, its offset points back by one cell
    assert float(t["offsets"][0, 0, 0, 1]) == pytest.approx(-1.0)
    np.testing.assert_allclose(codec.to_pixels(codec.to_cells(torch.tensor([0.0, 7.3]))), [0.0, 7.3], atol=1e-6)


def test_truncated_unlabelled_and_offset_mask():
    codec = PoseCodec(64, 64, stride=4, sigma=1.5, offset_radius=2.0)
    kp = np.array([[[30, 30, 1], [-5, 10, 1], [20, 20, 0], [63.4, 0, 2]]], np.float32)
    t = codec.encode(kp, unlabelled_weight=0.5)
    heat, mask = t["heatmaps"][0], t["offset_mask"][0]
    assert heat[0].max() > 0.9 and heat[3].max() > 0.5  # inside (edge pixel included)
    assert heat[1].max() == 0 and heat[2].max() == 0  # truncated: labelled but out of the crop; unlabelled
    assert not mask[1].any() and not mask[2].any()
    np.testing.assert_allclose(t["weights"][0].numpy(), [1, 1, 0.5, 1])
    # the mask is the disc of offset_radius cells around the joint, where offsets are non-zero
    g = codec.to_cells(torch.tensor([30.0, 30.0]))
    ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    disc = (xs - g[0]) ** 2 + (ys - g[1]) ** 2 <= 4.0
    assert torch.equal(mask[0], disc)
    off = t["offsets"][0]
    assert (off[0][~disc] == 0).all() and (off[4][~disc] == 0).all()
    np.testing.assert_allclose(off[0][disc].numpy(), (g[0] - xs)[disc].numpy(), atol=1e-6)
    np.testing.assert_allclose(off[4][disc].numpy(), (g[1] - ys)[disc].numpy(), atol=1e-6)


def test_decode_reads_the_offset_of_the_argmax_cell_and_scores_with_sigmoid():
    codec = PoseCodec(32, 32, stride=4)
    heat = torch.full((1, 2, 8, 8), -5.0)
    heat[0, 0, 3, 5] = 2.0
    heat[0, 1, 7, 0] = 0.0
    off = torch.zeros(1, 4, 8, 8)
    off[0, 0, 3, 5], off[0, 2, 3, 5] = 0.25, -0.5  # joint 0: x then y maps
    off[0, 1, 3, 5] = 9.0  # joint 1's offset at joint 0's cell is not read
    dec = codec.decode(heat, off)[0].numpy()
    np.testing.assert_allclose(dec[0], [(5.25 + 0.5) * 4 - 0.5, (2.5 + 0.5) * 4 - 0.5, 1 / (1 + np.exp(-2))],
                               rtol=1e-6)
    np.testing.assert_allclose(dec[1], [1.5, 29.5, 0.5], rtol=1e-6)


def test_bad_codec_settings():
    with pytest.raises(ValueError):
        PoseCodec(30, 32)
    with pytest.raises(ValueError):
        PoseCodec(offset_radius=0.5)
