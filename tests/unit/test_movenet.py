"""MoveNet module: TF padding, the batched decode, batching — on random weights (no model files)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from corrtrack.errors import CorrtrackError  # noqa: E402
from corrtrack.models.movenet import MoveNet, TfConv2d  # noqa: E402


def test_same_padding_stride2_even_pads_bottom_right_only():
    conv = TfConv2d(1, 1, 3, 2, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1.0  # output(i, j) = padded input(2i, 2j)
    x = torch.arange(36.0).reshape(1, 1, 6, 6)
    y = conv(x)
    assert y.shape == (1, 1, 3, 3)
    # TF pads (0, 1): the top-left tap reads input(2i, 2j) itself, not a padding zero
    assert torch.equal(y[0, 0], x[0, 0, ::2, ::2])


@pytest.mark.parametrize("size", [6, 7])
def test_depthwise_stride2_equals_explicit_tf_padding(size):
    torch.manual_seed(1)
    conv = TfConv2d(4, 4, 3, 2, depthwise=True, act="relu6")
    x = torch.randn(2, 4, size, size) * 3
    pad = (0, 1, 0, 1) if size % 2 == 0 else (1, 1, 1, 1)  # TF SAME: total padding 1 (even) or 2 (odd)
    want = F.hardtanh(F.conv2d(F.pad(x, pad), conv.weight, conv.bias, 2, 0, 1, 4), 0, 6)
    torch.testing.assert_close(conv(x), want, atol=1e-5, rtol=1e-5)


def test_same_padding_stride2_odd_and_stride1():
    conv = TfConv2d(1, 1, 3, 2, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = 1.0  # centre tap
    x = torch.arange(25.0).reshape(1, 1, 5, 5)
    assert torch.equal(conv(x)[0, 0], x[0, 0, ::2, ::2])  # odd size: TF pads (1, 1)
    conv1 = TfConv2d(2, 2, 3, 1, depthwise=True, bias=False)
    with torch.no_grad():
        conv1.weight.zero_()
        conv1.weight[:, 0, 1, 1] = 1.0
    x = torch.randn(1, 2, 7, 7)
    assert torch.equal(conv1(x), x)


def _maps(g=48, k=17):
    """Head outputs with one clear person at centre cell (20, 26) and keypoints placed on purpose."""
    m = {"center": torch.full((1, 1, g, g), -10.0), "heatmap": torch.full((1, k, g, g), -10.0),
         "regress": torch.zeros((1, 2 * k, g, g)), "offset": torch.zeros((1, 2 * k, g, g))}
    m["center"][0, 0, 20, 26] = 5.0
    m["center"][0, 0, 5, 5] = 6.0  # a stronger centre far from the crop centre loses to the weighting
    rng = np.random.default_rng(0)
    target = rng.integers(2, g - 2, size=(k, 2))
    for j, (ty, tx) in enumerate(target):
        m["regress"][0, 2 * j, 20, 26] = float(ty - 20) + 0.3  # regressed position near the target
        m["regress"][0, 2 * j + 1, 20, 26] = float(tx - 26) - 0.2
        m["heatmap"][0, j, ty, tx] = 2.0
        m["heatmap"][0, j, (ty + g // 2) % g, (tx + g // 2) % g] = 2.5  # stronger but far from the regression
        m["offset"][0, 2 * j, ty, tx] = 0.25
        m["offset"][0, 2 * j + 1, ty, tx] = -0.5
    return m, target


def test_decode_follows_the_graph_logic():
    net = MoveNet("lightning")
    m, target = _maps()
    out = net.decode(m)[0].numpy()
    np.testing.assert_allclose(out[:, 0], (target[:, 0] + 0.25) / 48, atol=1e-6)
    np.testing.assert_allclose(out[:, 1], (target[:, 1] - 0.5) / 48, atol=1e-6)
    np.testing.assert_allclose(out[:, 2], 1 / (1 + np.exp(-2.0)), atol=1e-6)


def test_decode_batched_equals_single():
    net = MoveNet("lightning")
    m1, _ = _maps()
    m2 = {k: torch.roll(v, shifts=(3, -2), dims=(2, 3)) for k, v in m1.items()}
    both = {k: torch.cat([m1[k], m2[k]]) for k in m1}
    out = net.decode(both)
    assert torch.equal(out[0], net.decode(m1)[0])
    assert torch.equal(out[1], net.decode(m2)[0])


@pytest.mark.parametrize("variant,size", [("lightning", 192), ("thunder", 256)])
def test_forward_shapes_and_batch_consistency(variant, size):
    torch.manual_seed(0)
    net = MoveNet(variant).eval()
    assert net.input_size == size
    x = torch.randint(0, 256, (3, size, size, 3), dtype=torch.int32)
    with torch.inference_mode():
        maps = net.maps(x)
        out = net(x)
        singles = torch.cat([net(x[i:i + 1]) for i in range(3)])
    g = size // 4
    assert maps["heatmap"].shape == (3, 17, g, g) and maps["offset"].shape == (3, 34, g, g)
    assert out.shape == (3, 17, 3)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, singles, atol=1e-5, rtol=1e-5)


def test_bad_variant_and_input():
    with pytest.raises(CorrtrackError):
        MoveNet("medium")
    with pytest.raises(ValueError):
        MoveNet("lightning")(torch.zeros(1, 3, 192, 192))  # NCHW is not the documented layout
