"""Self-supervised correspondence training on tiny generated images (CPU, random init)."""
from __future__ import annotations

import csv
import dataclasses
import json

import cv2
import numpy as np
import pytest
import torch

from training_checks import assert_same_run

from corrtrack.errors import CorrtrackError
from corrtrack.models.corr_codec import grid_to_canvas
from corrtrack.models.corrnet import CorrespondenceNet, CorrNetConfig
from corrtrack.train.corr import (CorrTrainConfig, PairDataset, WarpConfig, read_coco_records, refinement_loss,
                                  sample_affine, siamese_loss, train_corr)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _make_dataset(root, n_images=3, size=(96, 80), seed=0):
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True)
    images, anns = [], []
    w, h = size
    for i in range(n_images):
        noise = rng.uniform(0, 255, (h // 8, w // 8, 3)).astype(np.uint8)
        img = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(root / "img" / f"{i}.png"), img)
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": w, "height": h})
        for p in range(2):
            kp = np.zeros((17, 3))
            kp[:, 0] = rng.uniform(8, w - 8, 17)
            kp[:, 1] = rng.uniform(8, h - 8, 17)
            kp[:, 2] = 2
            kp[rng.choice(17, 3, replace=False), :] = 0
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                         "num_keypoints": 14, "keypoints": kp.ravel().tolist()})
    ann = root / "ann.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}))
    return ann, root / "img"


def _config(tmp, ann, img, out="run", **kw):
    base = dict(annotations=(str(ann),), images=(str(img),), out_dir=str(tmp / out),
                net=CorrNetConfig(input_size=64, pretrained=False), steps_siamese=4, steps_refine=2, batch_size=2,
                lr=3e-3, warmup_steps=1, seed=3, device="cpu", workers=0, checkpoint_every=100, log_every=1,
                progress=False)
    base.update(kw)
    return CorrTrainConfig(**base)


@pytest.fixture()
def data(tmp_path):
    return _make_dataset(tmp_path)


def test_flip_keeps_the_physical_point(data, tmp_path):
    # The target of keypoint k is where the same image content went, flip or not.
    ann, img = data
    cfg = _config(tmp_path, ann, img, warp=WarpConfig(flip_prob=1.0, photometric=False), max_persons=2)
    ds = PairDataset(read_coco_records(ann, img), cfg)
    m = sample_affine(np.random.default_rng(0), 100, 50, WarpConfig(flip_prob=1.0, max_rotate=0, max_translate=0,
                                                                    scale_range=(1, 1)))
    np.testing.assert_allclose(m @ [10, 20, 1], [89, 20])  # a mirror about the frame centre
    errs = []
    for i in range(6):
        s = ds[i]
        c1 = grid_to_canvas(s["grid1"].numpy(), 4)
        c2 = grid_to_canvas(s["grid2"].numpy(), 4)
        a = s["img1"].permute(1, 2, 0).numpy().astype(np.float32)
        b = s["img2"].permute(1, 2, 0).numpy().astype(np.float32)
        ok = s["present2"].numpy()
        assert not (ok & ~s["valid1"].numpy()).any()
        for (x1, y1), (x2, y2) in zip(c1[ok], c2[ok]):
            pa = cv2.getRectSubPix(a, (1, 1), (float(x1), float(y1)))[0, 0]
            pb = cv2.getRectSubPix(b, (1, 1), (float(x2), float(y2)))[0, 0]
            errs.append(np.abs(pa - pb).mean())
    assert len(errs) > 20 and np.median(errs) < 12, np.median(errs)


def test_bad_annotations_are_one_line_errors(tmp_path, data):
    ann, img = data
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(CorrtrackError, match="bad.json"):
        read_coco_records(bad, img)
    d = json.loads(ann.read_text())
    d["annotations"][0]["keypoints"] = [1, 2, 2] * 14
    (tmp_path / "k14.json").write_text(json.dumps(d))
    with pytest.raises(CorrtrackError, match="14 keypoints"):
        read_coco_records(tmp_path / "k14.json", img)
    with pytest.raises(CorrtrackError, match="not found"):
        read_coco_records(ann, tmp_path / "nowhere")


def _fixed_batch(cfg, records, start=1000):
    ds = PairDataset(records, cfg)
    items = [ds[start + i] for i in range(4)]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def test_training_lowers_both_losses(tmp_path, data):
    ann, img = data
    cfg = _config(tmp_path, ann, img, steps_siamese=40, steps_refine=30, lr_drop_at=1.0)
    records = read_coco_records(ann, img)
    batch = _fixed_batch(cfg, records)
    torch.manual_seed(cfg.seed)
    net0 = CorrespondenceNet(cfg.net).eval()
    with torch.no_grad():
        s0 = float(siamese_loss(net0, batch, cfg.sigma)[0])
        r0 = float(refinement_loss(net0, batch, cfg.sigma)[0])
    train_corr(cfg)
    net = CorrespondenceNet(cfg.net)
    net.load_state_dict(torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["model"])
    net.eval()
    with torch.no_grad():
        s1 = float(siamese_loss(net, batch, cfg.sigma)[0])
        r1 = float(refinement_loss(net, batch, cfg.sigma)[0])
    assert s1 < 0.9 * s0, (s0, s1)
    assert r1 < 0.9 * r0, (r0, r1)
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 71))
    assert {r["stage"] for r in rows[:40]} == {"siamese"} and {r["stage"] for r in rows[40:]} == {"refine"}
    assert (tmp_path / "run" / "corrnet.pt").is_file()
    # The refinement stage leaves the frozen Siamese module untouched.
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert ck["step"] == 70 and ck["stage"] == "refine"


@pytest.mark.parametrize("stop", [2, 4])  # mid-stage, and exactly at the stage switch
def test_resume_gives_the_same_model(tmp_path, data, stop):
    ann, img = data
    full = _config(tmp_path, ann, img, out="full")
    train_corr(full)
    part = _config(tmp_path, ann, img, out="part")
    train_corr(part, stop_after=stop)
    assert not (tmp_path / "part" / "corrnet.pt").exists()
    assert torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=False)["step"] == stop
    train_corr(part)
    assert_same_run(tmp_path / "full", tmp_path / "part", 6)
    # A checkpoint from another configuration is refused, not silently mixed.
    other = dataclasses.replace(part, lr=1e-4)
    with pytest.raises(CorrtrackError, match="another configuration"):
        train_corr(other)


def test_refinement_loss_skips_padded_person_slots_without_changing_the_loss(tmp_path, data):
    """Padded slots (no known joint) are left out of the refinement pass: with BatchNorm's statistics
    fixed (eval), loss and gradients equal those of the refinement run over every slot."""
    import torch.nn.functional as F

    from corrtrack.models.corr_codec import encode_targets
    from corrtrack.train.corr import _masked_mean

    ann, img = data
    cfg = _config(tmp_path, ann, img, max_persons=4)
    batch = _fixed_batch(cfg, read_coco_records(ann, img))
    assert not batch["known2"].any(-1).all()  # the test needs padded slots
    torch.manual_seed(0)
    net = CorrespondenceNet(cfg.net).eval()
    with torch.no_grad():  # random head weights: the residual init would make the correction 0
        net.refinement.head.weight.normal_(0, 0.3)

    def grads(loss):
        net.zero_grad()
        loss.backward()
        return [q.grad.clone() for q in net.refinement.parameters() if q.grad is not None]

    loss, maps, _ = refinement_loss(net, batch, cfg.sigma)
    got = grads(loss)
    # the same loss over every slot, padded ones included (the code before the selection)
    b, p, k, _ = batch["grid1"].shape
    with torch.no_grad():
        f = net.features(torch.cat([batch["img1"], batch["img2"]]).float().div_(255.0))
        aff = net.affinity(f[:b], f[b:], batch["grid1"].reshape(b, p * k, 2))
        h, w = aff.shape[-2:]
        aff = aff.reshape(b, p, k, h, w) * batch["valid1"][..., None, None]
    logits = net.refine_logits(f[:b], f[b:], aff)
    t = encode_targets(batch["grid2"], batch["present2"], h, w, cfg.sigma)
    ref = _masked_mean(F.binary_cross_entropy_with_logits(logits, t, reduction="none").mean((-1, -2)),
                       batch["known2"])
    torch.testing.assert_close(loss, ref)
    for a, r in zip(got, grads(ref)):
        torch.testing.assert_close(a, r)
    slots = batch["known2"].reshape(b * p, k).any(-1)
    torch.testing.assert_close(maps.reshape(b * p, k, h, w)[slots],
                               torch.sigmoid(logits.detach()).reshape(b * p, k, h, w)[slots])
    assert not maps.reshape(b * p, k, h, w)[~slots].any()

    # A batch with nobody known still gives a (zero) loss with a graph, in training mode too.
    net.refinement.train()
    empty = dict(batch, known2=torch.zeros_like(batch["known2"]), present2=torch.zeros_like(batch["present2"]))
    loss, _, _ = refinement_loss(net, empty, cfg.sigma)
    assert loss.detach().item() == 0.0 and loss.requires_grad


def test_refinement_stage_reads_the_frozen_siamese_through_the_cpu_inference_path():
    from corrtrack.train.corr import _set_stage

    torch.manual_seed(0)
    net = CorrespondenceNet(CorrNetConfig(input_size=64, pretrained=False))
    x = torch.rand(2, 3, 64, 64)
    _set_stage(net, "siamese")
    assert net.features(x).requires_grad  # the Siamese trains: eager, differentiable
    _set_stage(net, "refine")
    with torch.no_grad():
        fast = net.features(x)
        assert len(net._features._traces) == 1  # the frozen (ONNX Runtime / TorchScript) path ran
        torch.testing.assert_close(fast, net._eager_features(x), atol=1e-4, rtol=1e-3)
