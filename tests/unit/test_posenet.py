"""PoseNet (two-stage BN-Inception), its files, and its use by the top-down estimator."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from corrtrack.errors import CorrtrackError
from corrtrack.layouts import COCO17, POSETRACK18
from corrtrack.models.bninception import BNInception
from corrtrack.models.posenet import PoseNet, PoseNetConfig, transfer_weights
from corrtrack.pipeline.pose import (PoseConfig, TopDownPoseEstimator, crop_affines, crop_image, crop_squares,
                                     crop_tensor, crops_to_image)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = PoseNetConfig(width=0.125, input_width=64, input_height=96)



def _net(cfg=TINY, seed=0):
    torch.manual_seed(seed)
    net = PoseNet(cfg).eval()
    # random BN statistics and head biases so that the maps are not flat
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        for head in (net.head1, net.head2):
            head.heatmap.weight.normal_(0, 0.1)
            head.offset.weight.normal_(0, 0.1)
    return net


def test_bninception_layers_1_to_17_and_3_to_17():
    full = BNInception()
    assert sum(p.numel() for p in full.parameters()) == 5_771_712  # unchanged for the correspondence net
    assert [n for n, _ in full.named_children()][:4] == ["conv1", "pool1", "conv2_reduce", "conv2"]
    x = torch.rand(1, 3, 128, 96)
    low, deep = full.eval()(x, ("conv2_reduce", "inception_4e"))
    assert low.shape == (1, 64, 32, 24) and deep.shape == (1, 1056, 4, 3)
    # layers 3-17 start at conv2 on stride-4 maps of any width
    tail = BNInception(in_channels=80, first_layer=3).eval()
    assert not hasattr(tail, "conv1") and tail.conv2[0].in_channels == 80
    assert tail(torch.rand(1, 80, 32, 24), ("inception_4e",))[0].shape == (1, 1056, 4, 3)
    slim = BNInception(width=0.25)
    assert slim.channels("inception_4e") < 1056 / 3
    with pytest.raises(ValueError):
        BNInception(first_layer=2)


def test_two_stages_shapes_and_parameter_count():
    net = _net()
    x = torch.rand(2, 3, 96, 64)
    outs = net(x)
    assert len(outs) == 2
    for heat, off in outs:
        assert heat.shape == (2, 17, 24, 16) and off.shape == (2, 34, 24, 16)
    # the paper's size: two BN-Inceptions, 288x384 crops, 72x96 maps
    full = PoseNet()
    assert 20e6 < full.num_parameters() < 30e6
    assert full.input_size == (288, 384) and full.codec.heatmap_size == (72, 96)
    with pytest.raises(CorrtrackError):
        PoseNetConfig(input_width=100)
    with pytest.raises(CorrtrackError):
        PoseNetConfig(layout="mpii")


def test_predict_is_the_stage2_decode_in_movenet_convention():
    net = _net()
    crops = torch.randint(0, 256, (3, 96, 64, 3), dtype=torch.uint8)
    with torch.no_grad():
        yx = net.predict(crops)
        heat, off = net(crops.permute(0, 3, 1, 2).float() / 255)[-1]
    kp = net.codec.decode(heat, off)
    np.testing.assert_allclose(yx[..., 0], (kp[..., 1] + 0.5) / 96, atol=1e-6)
    np.testing.assert_allclose(yx[..., 1], (kp[..., 0] + 0.5) / 64, atol=1e-6)
    np.testing.assert_allclose(yx[..., 2], kp[..., 2], atol=1e-6)
    with pytest.raises(ValueError):
        net.predict(torch.zeros(1, 64, 64, 3))


def test_save_load_round_trip_and_bad_files(tmp_path):
    net = _net()
    path = tmp_path / "posenet.pt"
    net.save(path, meta={"steps": 3})
    back = PoseNet.load(path)
    assert back.config == net.config and back.meta == {"steps": 3}
    x = torch.rand(2, 3, 96, 64)
    with torch.no_grad():
        a, b = net(x)[-1][0], back(x)[-1][0]
    assert torch.allclose(a, b, atol=0.05)  # fp16 weights
    with pytest.raises(CorrtrackError, match="not found"):
        PoseNet.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(CorrtrackError, match="junk.pt"):
        PoseNet.load(tmp_path / "junk.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(CorrtrackError, match="not a corrtrack PoseNet"):
        PoseNet.load(tmp_path / "other.pt")


def test_transfer_weights_maps_joints_by_name():
    coco = _net(seed=1)
    pt = PoseNet(PoseNetConfig(**{**TINY.__dict__, "layout": "posetrack18"}))
    fresh = pt.head2.heatmap.weight.detach().clone()
    untouched = transfer_weights(pt, coco.state_dict(), "coco17")
    assert untouched == []
    src_w, dst_w = coco.head2.heatmap.weight, pt.head2.heatmap.weight
    for name in ("nose", "left_shoulder", "right_ankle"):
        assert torch.equal(dst_w[POSETRACK18.index(name)], src_w[COCO17.index(name)])
    # PoseTrack's head_bottom sits in COCO's left_eye slot but is not an eye: it stays fresh
    hb = POSETRACK18.index("head_bottom")
    assert torch.equal(dst_w[hb], fresh[hb]) and not torch.equal(dst_w[hb], src_w[hb])
    # offsets: x rows then y rows, both mapped
    k = 17
    ls_d, ls_s = POSETRACK18.index("left_shoulder"), COCO17.index("left_shoulder")
    assert torch.equal(pt.head1.offset.weight[k + ls_d], coco.head1.offset.weight[k + ls_s])
    assert torch.equal(pt.stage2.conv2[0].weight, coco.stage2.conv2[0].weight)


def test_rectangular_crops_invert_and_match_on_both_paths():
    boxes = np.array([[30, 10, 70, 110], [-20, -10, 60, 50], [150, 100, 200, 160]])
    sq = crop_squares(boxes, PoseConfig(aspect_ratio=64 / 96))
    m = crop_affines(sq, (64, 96))
    pts = np.array([[12.0, 40.0], [100.0, 90.0]])
    for mi, s in zip(m, sq):
        c = pts @ mi[:, :2].T + mi[:, 2]
        yx = np.stack([(c[:, 1] + 0.5) / 96, (c[:, 0] + 0.5) / 64, np.ones(2)], -1)
        back = crops_to_image(yx[None], s[None], 64 / 96)[0]
        np.testing.assert_allclose(back[:, :2], pts, atol=1e-9)
    # the rectangle is side * w/h wide: the upright box fills the width of its 3:4 crop / 1.25
    assert m[0, 0, 0] == pytest.approx(96 / sq[0, 2])
    yy, xx = np.mgrid[0:170, 0:220]
    img = np.stack([xx, yy, xx + yy], -1).astype(np.uint8)
    a = crop_image(img, sq, (64, 96)).astype(np.float32)
    b = crop_tensor(torch.from_numpy(img).permute(2, 0, 1)[None].float(), np.zeros(3, int), sq, (64, 96)).numpy()
    assert a.shape == b.shape == (3, 96, 64, 3)
    assert np.median(np.abs(a - b)) < 1.0


def test_estimator_runs_a_posenet_file(tmp_path):
    net = _net(PoseNetConfig(**{**TINY.__dict__, "layout": "posetrack18"}))
    path = tmp_path / "posenet.pt"
    net.save(path)
    est = TopDownPoseEstimator(PoseConfig(model=str(path), max_batch=2), device="cpu")
    assert est.input_size == (64, 96) and est.layout == POSETRACK18
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (90, 120, 3)).astype(np.uint8)
    boxes = np.array([[10, 10, 50, 80, 0.9], [-30, 40, 20, 130, 0.5], [60, 5, 119, 89, 1.0]])
    p = est(image, boxes)
    assert len(p) == 3 and p.layout == POSETRACK18
    np.testing.assert_allclose(p.scores, boxes[:, 4] * p.keypoints[..., 2].mean(1))
    sq = est.squares(boxes[:, :4])
    half = np.stack([sq[:, 2] * 64 / 96, sq[:, 2]], 1) / 2
    assert ((p.keypoints[..., :2] >= (sq[:, :2] - half - 1)[:, None])
            & (p.keypoints[..., :2] <= (sq[:, :2] + half)[:, None])).all()
    # the same as running the network on the crops by hand
    crops = crop_image(image, sq, (64, 96))
    with torch.no_grad():
        yx = net.predict(torch.from_numpy(crops)).numpy()
    np.testing.assert_allclose(p.keypoints, crops_to_image(yx, sq, 64 / 96), atol=1e-4)
    assert len(est(image, np.zeros((0, 4)))) == 0
    batched = est.estimate_frames(torch.from_numpy(image).permute(2, 0, 1)[None], [boxes])[0]
    assert batched.keypoints.shape == p.keypoints.shape


def test_pose_config_accepts_posenet_paths_only_as_files(tmp_path):
    assert PoseConfig(model="thunder").model == "thunder"
    assert PoseConfig(model="runs/posenet.pt").model == "runs/posenet.pt"
    with pytest.raises(ValueError):
        PoseConfig(model="blazepose")
    with pytest.raises(CorrtrackError, match="not found"):
        TopDownPoseEstimator(PoseConfig(model=str(tmp_path / "none.pt")), device="cpu")
