"""The refinement's learnt motion prior (``CorrNetConfig.refine_prior``): where a person's body went
(``body_consensus``), the distance term it adds to the refined logits, the same answer on the CPU
inference path, in ``propagate`` and in training (small random nets, CPU)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from corrtrack.layouts import COCO17
from corrtrack.models.corr_codec import Letterbox, body_consensus, consensus_sqdist, encode_targets
from corrtrack.models.corrnet import CorrespondenceNet, CorrNetConfig
from corrtrack.pipeline.propagate import FrameFeatures, propagate
from corrtrack.structures import Poses

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = CorrNetConfig(input_size=128, pretrained=False, refine_prior=True)


def test_body_consensus_is_the_median_shift_of_the_valid_joints():
    h = w = 40
    rng = np.random.default_rng(0)
    grid_a = rng.uniform(5, 30, (2, 4, 2))
    peaks = grid_a + rng.integers(-3, 4, (2, 4, 2))  # each joint moved its own way
    maps = encode_targets(torch.as_tensor(np.round(peaks), dtype=torch.float32), torch.ones(2, 4), h, w, 1.0)
    valid = np.array([[True, True, True, False], [False, False, False, False]])
    centre, size = body_consensus(maps, torch.as_tensor(grid_a), torch.as_tensor(valid))
    shift = np.median(np.round(peaks[0, :3]) - grid_a[0, :3], axis=0)  # even and odd counts: numpy's median
    np.testing.assert_allclose(centre[0].numpy(), grid_a[0] + shift, atol=1e-3)
    assert size[0] == pytest.approx(max(np.ptp(grid_a[0, :3], axis=0).max(), 1.0), abs=1e-4)
    np.testing.assert_allclose(centre[1].numpy(), grid_a[1], atol=1e-5)  # nobody propagated: no shift
    assert size[1] == 1.0
    d2 = consensus_sqdist(centre, size, h, w)
    assert d2.shape == (2, 4, h, w)
    y, x = 7, 31
    want = ((x - centre[0, 2, 0]) ** 2 + (y - centre[0, 2, 1]) ** 2) / size[0] ** 2
    assert float(d2[0, 2, y, x]) == pytest.approx(float(want), rel=1e-5)


def _pair(persons=3, seed=0):
    torch.manual_seed(seed)
    f1 = F.normalize(torch.randn(1, 32, 24, 32), dim=1)
    f2 = F.normalize(torch.randn(1, 32, 24, 32), dim=1)
    maps = torch.softmax(3 * torch.randn(1, persons, 17, 24 * 32), -1).reshape(1, persons, 17, 24, 32)
    centre = torch.rand(1, persons, 17, 2) * torch.tensor([32.0, 24.0])
    size = 4 + 10 * torch.rand(1, persons)
    return f1, f2, maps, (centre, size)


def test_untrained_prior_is_the_hand_set_gaussian_of_a_tenth_of_the_person():
    net = CorrespondenceNet(TINY).eval()
    f1, f2, maps, (centre, size) = _pair()
    far = (torch.full_like(centre, 1e3), torch.full_like(size, 1e6))  # d^2 ~ 0 everywhere
    with torch.no_grad():
        with_prior = net.refine_logits(f1, f2, maps, consensus=(centre, size))
        without = net.refine_logits(f1, f2, maps, consensus=far)
    # logit - d^2 / (2 * 0.1^2): the refined map times exp(-d^2 / 0.02) in the logit domain
    sqdist = consensus_sqdist(centre[0], size[0], 24, 32)[None]
    torch.testing.assert_close(without - with_prior, sqdist / (2 * 0.1 ** 2), atol=1e-3, rtol=1e-5)
    with pytest.raises(ValueError, match="consensus"):
        net.refine(f1, f2, maps)
    assert math.exp(float(net.refinement.prior_log_sigma[0].detach())) == pytest.approx(0.1)


def test_even_maps_pool_by_convolution_as_average_pooling_would():
    """The 2x2 stride-2 convolution that pools the maps on an even grid gives what average pooling
    + the 1x1 convolution gives (the odd grid's path)."""
    net = CorrespondenceNet(dataclasses.replace(TINY, refine_prior=False)).eval()
    maps = torch.rand(3, 17, 24, 32)
    m = torch.log1p(maps * 24 * 32)
    r = net.refinement
    with torch.no_grad():
        want = r.maps_in(F.avg_pool2d(m, 2, ceil_mode=True))
        torch.testing.assert_close(r.pooled_maps_in(m), want, atol=1e-5, rtol=1e-5)
        odd = r.persons(torch.zeros(1, 32, 12, 16), torch.rand(2, 17, 23, 31))  # the pooling path
    assert odd.shape == (2, 17, 23, 31)


@pytest.mark.parametrize("runtime", ["onnx", "torchscript"])
def test_prior_on_the_cpu_inference_path_matches_eager(runtime, monkeypatch):
    from corrtrack.models import frozen

    net = CorrespondenceNet(TINY).eval()
    with torch.no_grad():
        net.refinement.head.weight.normal_(0, 0.3)
        net.refinement.prior_log_sigma.copy_(torch.linspace(-2.5, -0.5, 17))
    f1, f2, maps, (centre, size) = _pair(5)
    with torch.inference_mode():
        eager = net.refine(f1, f2, maps, consensus=(centre, size))
        net.freeze_for_cpu(runtime=runtime)
        for p in (2, 5):
            torch.testing.assert_close(net.refine(f1, f2, maps[:, :p], consensus=(centre[:, :p], size[:, :p])),
                                       eager[:, :p], atol=1e-5, rtol=1e-4)
        # ONNX Runtime's arena keeps what its largest batch needed: a crowd is refined a few people at a time
        monkeypatch.setattr(frozen, "CPU_MAX_BATCH", 2)
        sizes = []
        call = net._refined_persons
        net._refined_persons = lambda pair, m, *extra: sizes.append(len(m)) or call(pair, m, *extra)
        torch.testing.assert_close(net.refine(f1, f2, maps, consensus=(centre, size)), eager, atol=1e-5, rtol=1e-4)
    assert sizes == [2, 2, 1]


def test_propagate_with_the_prior_keeps_a_joint_with_its_body():
    """Joint 3's Siamese map peaks higher on someone 20 cells away; the other joints all moved by
    (8, 2): the refinement's prior puts joint 3 where its body went, a plain refinement does not."""
    h = w = 40
    grid_a = np.array([[5.0, 5.0], [10.0, 5.0], [5.0, 15.0], [10.0, 15.0]] + [[0.0, 0.0]] * 13)[None]
    valid = np.zeros((1, 17), bool)
    valid[0, :4] = True
    truth = grid_a[0, :4] + [8.0, 2.0]
    siamese = torch.zeros(1, 17, h, w)
    siamese[0, :4] = encode_targets(torch.as_tensor(truth, dtype=torch.float32), torch.ones(4), h, w, 1.0) * 0.6
    siamese[0, 3] += 0.9 * encode_targets(torch.tensor([38.0, 23.0]), torch.ones(()), h, w, 1.0)
    siamese = siamese / siamese.sum((-1, -2), keepdim=True).clamp_min(1e-12)

    class Fixed(CorrespondenceNet):  # the Siamese maps above, whatever the features
        def affinity(self, f1, f2, grid_xy):
            return siamese.reshape(1, 17, h, w).repeat(1, grid_xy.shape[1] // 17, 1, 1)

    lb = Letterbox.fit(4 * w, 4 * h, 4 * w, square=True)
    feats = FrameFeatures(torch.zeros(1, 32, h, w), lb)
    kp = np.zeros((1, 17, 3))
    kp[..., :2] = grid_a * 4 + 1.5  # the inverse of image_to_grid on this canvas: cell centres
    kp[..., 2] = valid
    poses = Poses(kp, COCO17)
    got = {}
    for prior in (False, True):
        torch.manual_seed(0)
        net = Fixed(dataclasses.replace(TINY, input_size=4 * w, refine_prior=prior)).eval()
        moved, _ = propagate(net, None, None, poses, feats_a=feats, feats_b=feats)
        got[prior] = moved.keypoints[0, 3, :2]
    far = (38 * 4 + 1.5, 23 * 4 + 1.5)
    near = tuple(truth[3] * 4 + 1.5)
    assert np.allclose(got[False], far, atol=2.0)
    assert np.allclose(got[True], near, atol=2.0)


def test_training_moves_the_prior_widths(tmp_path):
    from test_train_corr import _config, _fixed_batch, _make_dataset

    from corrtrack.train.corr import read_coco_records, refinement_loss

    ann, img = _make_dataset(tmp_path)
    cfg = _config(tmp_path, ann, img, net=dataclasses.replace(TINY, input_size=64))
    batch = _fixed_batch(cfg, read_coco_records(ann, img))
    torch.manual_seed(0)
    net = CorrespondenceNet(cfg.net).eval()
    loss, _, _ = refinement_loss(net, batch, cfg.sigma)
    loss.backward()
    grad = net.refinement.prior_log_sigma.grad
    assert grad is not None and grad.abs().sum() > 0


def test_files_without_the_field_load_without_a_prior(tmp_path):
    net = CorrespondenceNet(dataclasses.replace(TINY, refine_prior=False))
    net.save(tmp_path / "m.pt")
    obj = torch.load(tmp_path / "m.pt", weights_only=False)
    del obj["config"]["refine_prior"]  # as written before the field existed
    torch.save(obj, tmp_path / "old.pt")
    back = CorrespondenceNet.load(tmp_path / "old.pt")
    assert back.config.refine_prior is False and not hasattr(back.refinement, "prior_log_sigma")


def test_affine_consensus_follows_a_turned_and_mirrored_person_past_a_wrong_peak():
    h = w = 64
    rng = np.random.default_rng(1)
    grid_a = rng.uniform(20, 40, (1, 17, 2))
    a = np.array([[-np.cos(0.4), np.sin(0.4)], [np.sin(0.4), np.cos(0.4)]])  # rotated 23 degrees and flipped
    truth = (grid_a - 30) @ a.T + 32 + [3.0, -2.0]
    peaks = np.round(truth)
    peaks[0, 5] = [60.0, 4.0]  # one joint's map peaks on someone else
    maps = encode_targets(torch.as_tensor(peaks, dtype=torch.float32), torch.ones(1, 17), h, w, 1.0)
    valid = torch.ones(1, 17, dtype=torch.bool)
    centre, _ = body_consensus(maps, torch.as_tensor(grid_a), valid, "affine")
    err = np.linalg.norm(centre[0].numpy() - truth[0], axis=-1)
    assert err.max() < 1.0  # the wrong joint included: it was trimmed from the fit
    shifted, _ = body_consensus(maps, torch.as_tensor(grid_a), valid)
    assert np.linalg.norm(shifted[0].numpy() - truth[0], axis=-1).max() > 5  # a shift cannot mirror
    few = torch.zeros(1, 17, dtype=torch.bool)
    few[0, :3] = True  # under 4 joints: the median shift
    torch.testing.assert_close(body_consensus(maps, torch.as_tensor(grid_a), few, "affine")[0],
                               body_consensus(maps, torch.as_tensor(grid_a), few)[0])
    with pytest.raises(ValueError, match="motion"):
        body_consensus(maps, torch.as_tensor(grid_a), valid, "projective")


def test_affine_consensus_ignores_a_third_of_the_peaks_on_a_crossing_person():
    """Six of 17 peaks on one other person, together: a least-squares start would bend towards them
    and keep them (they agree with each other); the pairwise-similarity start leaves them out."""
    from corrtrack.models.corr_codec import _affine_consensus

    rng = np.random.default_rng(2)
    failed_plain = 0
    for trial in range(20):
        src = torch.as_tensor(rng.uniform(20, 50, (1, 17, 2)))
        t = rng.uniform(-0.5, 0.5)
        a = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]) * rng.uniform(0.8, 1.25)
        truth = (src - 35) @ torch.as_tensor(a).T + 35 + torch.as_tensor(rng.uniform(-6, 6, 2))
        peaks = truth + torch.as_tensor(rng.normal(0, 0.5, (1, 17, 2)))
        wrong = rng.choice(17, 6, replace=False)
        peaks[0, wrong] = truth[0, wrong] + torch.as_tensor(rng.choice([-1, 1], 2) * rng.uniform(12, 20, 2))
        valid = torch.ones(1, 17, dtype=torch.bool)
        got = _affine_consensus(src, peaks, valid, src)
        assert (got - truth).norm(dim=-1).max() < 1.5, trial
        x = torch.cat([src, torch.ones_like(src[..., :1])], -1)
        plain = x @ torch.linalg.lstsq(x, peaks).solution
        failed_plain += bool((plain - truth).norm(dim=-1).max() > 3)
    assert failed_plain >= 15  # the test is one a plain least-squares fit fails


def test_bad_prior_motion_is_a_one_line_error():
    from corrtrack.errors import CorrtrackError

    with pytest.raises(CorrtrackError, match="refine_prior_motion"):
        CorrNetConfig(refine_prior=True, refine_prior_motion="spline")
