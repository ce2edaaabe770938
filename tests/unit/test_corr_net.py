"""CorrespondenceNet, MobileNetV2 key mapping, propagate and the eq. 6 similarity (random weights)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from corrtrack.errors import CorrtrackError
from corrtrack.layouts import COCO17
from corrtrack.models.corr_codec import Letterbox, encode_targets
from corrtrack.models.corrnet import CorrespondenceNet, CorrNetConfig
from corrtrack.models.mobilenetv2 import MobileNetV2Features, block_specs, map_deepsort_keys
from corrtrack.pipeline.propagate import CorrMaps, correspondence_similarity, frame_features, propagate
from corrtrack.structures import Poses

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = CorrNetConfig(input_size=128, pretrained=False)



@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return CorrespondenceNet(TINY).eval()


def test_features_are_unit_vectors_at_stride_4(net):
    with torch.no_grad():
        f = net.features(torch.rand(2, 3, 128, 96))
    assert f.shape == (2, 32, 32, 24)
    torch.testing.assert_close(f.norm(dim=1), torch.ones(2, 32, 24))


def test_affinity_is_descriptor_convolved_then_softmax(net):
    torch.manual_seed(1)
    f1 = F.normalize(torch.randn(2, 32, 12, 14), dim=1)
    f2 = F.normalize(torch.randn(2, 32, 12, 14), dim=1)
    pts = torch.tensor([[[3.0, 4.0], [0.0, 0.0], [13.0, 11.0]], [[7.0, 2.0], [5.0, 5.0], [1.0, 9.0]]])
    with torch.no_grad():
        got = net.affinity(f1, f2, pts)
    assert got.shape == (2, 3, 12, 14)
    for b in range(2):
        for m, (x, y) in enumerate(pts[b].long().tolist()):
            patch = F.pad(f1[b:b + 1], (1, 1, 1, 1))[:, :, y:y + 3, x:x + 3]  # zero outside, as grid_sample
            ref = torch.softmax(F.conv2d(f2[b:b + 1], patch, padding=1).flatten(), 0).reshape(12, 14)
            torch.testing.assert_close(got[b, m], ref, atol=1e-6, rtol=1e-4)


def random_pairs(frames: int, seed: int):
    """Unit features of ``frames`` frame pairs (16 x 16 cells) and softmax maps of 3 persons each."""
    torch.manual_seed(seed)
    f1 = F.normalize(torch.randn(frames, 32, 16, 16), dim=1)
    f2 = F.normalize(torch.randn(frames, 32, 16, 16), dim=1)
    return f1, f2, torch.softmax(torch.randn(frames, 3, 17, 256), -1).reshape(frames, 3, 17, 16, 16)


def test_refine_runs_all_persons_at_once_and_matches_one_by_one(net):
    f1, f2, maps = random_pairs(1, seed=2)
    with torch.no_grad():
        together = net.refine(f1, f2, maps)
        alone = torch.cat([net.refine(f1, f2, maps[:, i:i + 1]) for i in range(3)], 1)
    assert together.shape == maps.shape and (together >= 0).all() and (together <= 1).all()
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)


def test_refinement_of_a_batch_of_frame_pairs_matches_each_pair_alone(net):
    # training batches several frame pairs (B > 1): each person must get its own pair's term
    f1, f2, maps = random_pairs(2, seed=5)
    with torch.no_grad():
        net.refinement.head.weight.normal_(0, 0.3)  # the zero-initialised head would hide the pair term
        batch = net.refine_logits(f1, f2, maps)
        alone = torch.cat([net.refine_logits(f1[i:i + 1], f2[i:i + 1], maps[i:i + 1]) for i in range(2)])
        net.refinement.head.weight.zero_()
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=1e-4)


def test_mobilenetv2_keys_map_from_the_deepsort_layout():
    keys = {"features.0.0.weight"} | {f"features.0.1.{p}" for p in ("weight", "bias", "running_mean", "running_var",
                                                                    "num_batches_tracked")}
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    for i, (_, _, _, t) in enumerate(block_specs(), start=1):
        convs = (0, 3) if t == 1 else (0, 3, 6)
        for c in convs:
            keys.add(f"features.{i}.conv.{c}.weight")
            keys |= {f"features.{i}.conv.{c + 1}.{p}" for p in bn}
    keys |= {"features.18.0.weight"} | {f"features.18.1.{p}" for p in bn}
    mapped = map_deepsort_keys({k: torch.zeros(1) for k in keys})
    assert set(mapped) == set(MobileNetV2Features(17).state_dict())
    with pytest.raises(KeyError):
        map_deepsort_keys({"classifier.1.weight": torch.zeros(1)})


def test_save_load_round_trip(tmp_path, net):
    path = tmp_path / "m.pt"
    net.save(path, meta={"note": "test"})
    back = CorrespondenceNet.load(path)
    assert back.config == dataclasses.replace(TINY, pretrained=False) and back.meta == {"note": "test"}
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(back.features(x), net.features(x), atol=2e-2, rtol=0)  # fp16 weights
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(CorrtrackError, match="bad.pt"):
        CorrespondenceNet.load(tmp_path / "bad.pt")
    with pytest.raises(CorrtrackError, match="not found"):
        CorrespondenceNet.load(tmp_path / "missing.pt")


def _texture(h, w, seed):
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (h // 4, w // 4, 3)).astype(np.uint8)
    return cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)


def test_propagate_follows_a_shift_even_untrained(net):
    # Convolutions are shift-equivariant: shifting the frame by 16 px (a multiple of the
    # backbone's stride) moves the features by 4 cells, so the affinity argmax follows it.
    img = _texture(160, 160, 3)
    a, b = img[16:144, 16:144], img[16:144, 32:160]  # b = a moved 16 px left
    rng = np.random.default_rng(4)
    kp = np.zeros((2, 17, 3))
    kp[..., :2] = rng.uniform(40, 100, (2, 17, 2))
    kp[..., 2] = 1.0
    kp[1, 5, 2] = 0.0  # an absent joint stays absent
    poses = Poses(kp, COCO17, track_ids=np.array([7, 9]))
    moved, maps = propagate(net, a, b, poses, use_refinement=False)
    assert moved.track_ids.tolist() == [7, 9] and len(maps) == 2 and not maps.refined
    ok = kp[..., 2] > 0
    err = np.linalg.norm(moved.keypoints[..., :2] - (kp[..., :2] - [16, 0]), axis=-1)[ok]
    assert np.median(err) < 2.5, err
    assert moved.keypoints[1, 5, 2] == 0 and (moved.keypoints[ok, 2] > 0).all()
    # Precomputed features give the same result; refinement gives maps in 0..1.
    fa, fb = frame_features(net, a), frame_features(net, b)
    again, _ = propagate(net, None, None, poses, feats_a=fa, feats_b=fb, use_refinement=False)
    np.testing.assert_allclose(again.keypoints, moved.keypoints)
    ref, rmaps = propagate(net, None, None, poses, feats_a=fa, feats_b=fb)
    assert rmaps.refined and float(rmaps.maps.max()) <= 1 and (ref.keypoints[1, 5] == 0).all()
    empty, emaps = propagate(net, None, None, Poses.empty(COCO17), feats_a=fa, feats_b=fb)
    assert len(empty) == 0 and len(emaps) == 0
    # The motion prior keeps the shift here (every joint moved alike) and reaches the tracker's propagator.
    pri, pmaps = propagate(net, None, None, poses, feats_a=fa, feats_b=fb, use_refinement=False, prior=0.2)
    err_p = np.linalg.norm(pri.keypoints[..., :2] - (kp[..., :2] - [16, 0]), axis=-1)[ok]
    assert np.median(err_p) <= np.median(err) + 0.5 and (pri.keypoints[1, 5] == 0).all()
    assert not torch.equal(pmaps.maps, maps.maps)
    from corrtrack.pipeline.run import CorrPropagator

    prop = CorrPropagator(net, use_refinement=False, joint_thresh=0.0, prior=0.2)
    via, _ = prop(0, a, 1, b, poses)
    np.testing.assert_allclose(via.keypoints, pri.keypoints)


def test_correspondence_similarity_is_eq6():
    lb = Letterbox.fit(64, 64, 64)  # scale 1: grid = (x + 0.5) / 4 - 0.5
    k = 17
    track_xy = torch.zeros(2, k, 2)
    track_xy[0] = 3.0  # every joint of track 0 maps to cell (3, 3) = pixel 13.5
    track_xy[1] = 10.0  # track 1 -> cell (10, 10) = pixel 41.5
    valid = np.ones((2, k), bool)
    valid[1, :7] = False  # track 1 only has 10 joints
    maps = encode_targets(track_xy, torch.as_tensor(valid), 16, 16)
    cm = CorrMaps(maps, lb, 4, valid, True)
    cand = np.zeros((3, k, 3))
    cand[0, :, :2], cand[0, :, 2] = 13.5, 1.0  # exactly where track 0 went
    cand[1, :, :2], cand[1, :, 2] = 41.5, 1.0  # where track 1 went
    cand[2, :, :2], cand[2, :, 2] = 13.5, 1.0
    cand[2, :9, 2] = 0.0  # candidate 2 lacks 9 joints
    sim = correspondence_similarity(cm, Poses(cand, COCO17))
    np.testing.assert_allclose(sim[0], [1.0, 0.0, 8 / 17], atol=1e-5)
    np.testing.assert_allclose(sim[1], [0.0, 1.0, 0.0], atol=1e-5)
    # Affinities below min_affinity do not count: half a cell off is exp(-1/8) ~ 0.88.
    cand[0, :, 0] += 2.0
    low = correspondence_similarity(cm, Poses(cand, COCO17), min_affinity=0.9)
    assert low[0, 0] == 0.0
    assert correspondence_similarity(cm, Poses.empty(COCO17)).shape == (2, 0)


def test_bninception_backbone_gives_the_same_feature_map():
    torch.manual_seed(0)
    bn = CorrespondenceNet(CorrNetConfig(backbone="bninception", input_size=64, pretrained=False)).eval()
    assert bn.backbone.channels("inception_4e") == 1056 and bn.backbone.channels("inception_4d") == 608
    with torch.no_grad():
        f = bn.features(torch.rand(1, 3, 64, 96))
    assert f.shape == (1, 32, 16, 24)
    torch.testing.assert_close(f.norm(dim=1), torch.ones(1, 16, 24))


def test_bad_config_is_a_one_line_error():
    with pytest.raises(CorrtrackError, match="backbone"):
        CorrNetConfig(backbone="resnet")
    with pytest.raises(CorrtrackError, match="multiple of 32"):
        CorrNetConfig(input_size=100)


def test_padded_person_batch_changes_no_result(net, monkeypatch):
    # On a GPU the persons are padded to a power of two (models/buckets.py); the padding
    # rows must not leak into the real ones. Force the padding on CPU to check it.
    import corrtrack.pipeline.propagate as prop

    img = _texture(128, 128, 5)
    rng = np.random.default_rng(5)
    kp = np.zeros((3, 17, 3))
    kp[..., :2] = rng.uniform(20, 100, (3, 17, 2))
    kp[..., 2] = 1.0
    kp[2, 3, 2] = 0.0
    poses = Poses(kp, COCO17)
    fa, fb = frame_features(net, img), frame_features(net, img[:, ::-1].copy())
    plain, pmaps = propagate(net, None, None, poses, feats_a=fa, feats_b=fb)
    monkeypatch.setattr(prop, "pad_batch", lambda x: torch.cat([x, x.new_zeros((5, *x.shape[1:]))]))
    padded, qmaps = propagate(net, None, None, poses, feats_a=fa, feats_b=fb)
    assert qmaps.maps.shape == pmaps.maps.shape
    np.testing.assert_allclose(padded.keypoints, plain.keypoints, atol=1e-5)
    torch.testing.assert_close(qmaps.maps, pmaps.maps, atol=1e-6, rtol=1e-5)


def test_motion_prior_picks_the_peak_where_the_body_went():
    from corrtrack.pipeline.propagate import motion_prior

    h = w = 40
    grid_a = np.array([[[5.0, 5.0], [10.0, 5.0], [5.0, 15.0], [10.0, 15.0]]])  # one person, 4 joints
    shift = np.array([8.0, 2.0])
    truth = grid_a + shift
    maps = encode_targets(torch.as_tensor(truth, dtype=torch.float32), torch.ones(1, 4), h, w, 1.0) * 0.6
    # Joint 3 also peaks, higher, on someone 20 cells away: its argmax alone would jump there.
    maps[0, 3] += 0.9 * encode_targets(torch.tensor([38.0, 23.0]), torch.ones(()), h, w, 1.0)
    valid = np.ones((1, 4), bool)
    before = maps.clone()
    out = motion_prior(maps, grid_a, valid, 0.3)
    peak = lambda m: np.unravel_index(int(m.argmax()), m.shape)[::-1]  # noqa: E731 (x, y)
    assert peak(maps[0, 3]) == (38, 23)
    assert [peak(out[0, j]) for j in range(4)] == [tuple(int(v) for v in t) for t in truth[0]]
    assert torch.equal(maps, before)  # input untouched
    # Only propagated joints set the shift and the size.
    valid2 = np.array([[True, True, False, False]])
    out2 = motion_prior(maps, grid_a, valid2, 0.3)
    assert [peak(out2[0, j]) for j in range(2)] == [tuple(int(v) for v in t) for t in truth[0, :2]]
    assert motion_prior(maps, grid_a, valid, 0.0) is maps
