"""The correspondence codec: letterbox, grid coordinates, target encoding, map decoding."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from corrtrack.models.corr_codec import (Letterbox, decode_maps, encode_targets, grid_to_image, image_to_grid,
                                         inside_image, sample_maps)


def test_letterbox_fit_and_round_trip():
    lb = Letterbox.fit(768, 576, 512)
    assert (lb.canvas_w, lb.canvas_h) == (512, 512) and lb.content_size == (512, 384)
    lb2 = Letterbox.fit(768, 576, 512, square=False)
    assert (lb2.canvas_w, lb2.canvas_h) == (512, 384)
    xy = np.random.default_rng(0).uniform(-5, 800, (10, 2))
    np.testing.assert_allclose(lb.to_image(lb.to_canvas(xy)), xy, atol=1e-9)
    uv = image_to_grid(xy, lb, 4)
    np.testing.assert_allclose(grid_to_image(uv, lb, 4), xy, atol=1e-9)
    # The image's outer edges land on the canvas content's outer edges.
    np.testing.assert_allclose(lb.to_canvas(np.array([-0.5, 767.5])), [-0.5, 511.5])


def test_letterbox_apply_pads_right_and_bottom():
    img = np.full((60, 100, 3), 200, np.uint8)
    lb = Letterbox.fit(100, 60, 64)
    out = lb.apply(img)
    assert out.shape == (64, 64, 3)
    assert (out[:38, :64] == 200).all() and (out[39:] == 0).all()
    with pytest.raises(ValueError):
        lb.apply(np.zeros((10, 10, 3), np.uint8))


@pytest.mark.parametrize("sigma", [1.0, 1.5])
def test_encode_decode_round_trip(sigma):
    rng = np.random.default_rng(1)
    pts = torch.tensor(rng.uniform(1, 30, (5, 4, 2)), dtype=torch.float32)
    present = torch.ones(5, 4, dtype=torch.bool)
    present[0, 1] = False
    maps = encode_targets(pts, present, 32, 32, sigma)
    assert maps.shape == (5, 4, 32, 32)
    assert maps[0, 1].abs().max() == 0  # out-of-frame keypoint: all-zero target
    dec = decode_maps(maps)
    ok = present.numpy()
    np.testing.assert_allclose(dec[..., :2].numpy()[ok], pts.numpy()[ok], atol=2e-3)
    # The decoded value is the map maximum: 1 at a cell centre, less in between.
    assert (dec[..., 2][present] <= 1).all() and (dec[..., 2][present] > np.exp(-0.5 / sigma ** 2) - 1e-6).all()


def test_decode_at_border_and_flat_maps():
    m = torch.zeros(2, 8, 8)
    m[0, 0, 7] = 1.0  # corner peak: no neighbour on two sides, no sub-cell shift
    dec = decode_maps(m)
    assert dec[0].tolist() == [7.0, 0.0, 1.0]
    assert torch.isfinite(dec).all()  # an all-zero map decodes without NaN


def test_decode_softmax_map_is_exact_for_quadratic_logits():
    ys, xs = torch.meshgrid(torch.arange(20.0), torch.arange(24.0), indexing="ij")
    logits = -((xs - 10.3) ** 2 + (ys - 5.8) ** 2) / 3.0
    p = torch.softmax(logits.flatten(), 0).reshape(20, 24)
    x, y, _ = decode_maps(p).tolist()
    assert abs(x - 10.3) < 1e-3 and abs(y - 5.8) < 1e-3


def test_sample_maps_reads_each_joint_map_at_its_joint():
    maps = torch.zeros(2, 3, 10, 10)
    maps[0, 0, 4, 6] = 1.0
    maps[1, 2, 2, 3] = 0.5
    pts = torch.tensor([[[6.0, 4.0], [6.0, 4.0], [3.0, 2.0]], [[6.5, 4.0], [0, 0], [3.0, 2.0]]])  # (M=2, K=3, 2)
    vals = sample_maps(maps, pts[None].expand(2, -1, -1, -1))
    assert vals.shape == (2, 2, 3)
    assert abs(float(vals[0, 0, 0]) - 1) < 1e-6 and abs(float(vals[0, 1, 0]) - 0.5) < 1e-6  # bilinear half-way
    assert vals[0, 0, 1] == 0.0  # joint 1 reads map 1, which is empty
    assert abs(float(vals[1, 0, 2]) - 0.5) < 1e-6
    far = sample_maps(maps, torch.full((2, 1, 3, 2), 50.0))
    assert (far == 0).all()


def test_inside_image():
    xy = np.array([[-0.6, 0], [-0.5, 0], [99.4, 49.4], [99.5, 0], [10, 49.6]])
    assert inside_image(xy, 100, 50).tolist() == [False, True, True, False, False]
