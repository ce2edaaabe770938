"""Pose network training on tiny generated data (CPU, random init): data, augmentation, resume, CLI."""
from __future__ import annotations

import csv
import dataclasses
import json

import cv2
import numpy as np
import pytest

from training_checks import assert_same_run

from corrtrack.errors import CorrtrackError
from corrtrack.layouts import COCO17, POSETRACK18
from corrtrack.models.posenet import PoseNet, PoseNetConfig
from corrtrack.pipeline.pose import PoseConfig, crop_affines, crop_image, crop_squares
from corrtrack.structures import GROUND_TRUTH, FrameInfo, Poses, PoseSequence
from corrtrack.train.pose import (AugmentConfig, PoseDataset, PoseTrainConfig, load_records, read_person_records,
                                  train_pose)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = PoseNetConfig(width=0.125, input_width=64, input_height=96)



def _people(rng, n, w, h):
    """Upright people: left joints on the image's right (facing the camera), labelled mostly."""
    kp = np.zeros((n, 17, 3))
    for p in range(n):
        cx, top, s = rng.uniform(30, w - 30), rng.uniform(5, 20), rng.uniform(45, 60)
        for j, name in enumerate(COCO17.joints):
            side = 1 if name.startswith("left_") else (-1 if name.startswith("right_") else 0)
            level = {"nose": 0.05, "eye": 0.03, "ear": 0.05, "shoulder": 0.2, "elbow": 0.35, "wrist": 0.5,
                     "hip": 0.55, "knee": 0.75, "ankle": 0.95}[name.split("_")[-1]]
            kp[p, j] = [cx + side * s * 0.15 + rng.normal(0, 1), top + level * s * 1.6, 2]
        kp[p, rng.choice(17, 2, replace=False)] = 0
    return kp


def _coco(root, n_images=3, size=(120, 110), seed=0):
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True)
    images, anns = [], []
    w, h = size
    for i in range(n_images):
        noise = rng.uniform(0, 255, (h // 6, w // 6, 3)).astype(np.uint8)
        cv2.imwrite(str(root / "img" / f"{i}.png"), cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC))
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": w, "height": h})
        for kp in _people(rng, 2, w, h):
            vis = kp[kp[:, 2] > 0]
            x1, y1 = vis[:, :2].min(0)
            x2, y2 = vis[:, :2].max(0)
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                         "num_keypoints": len(vis), "keypoints": kp.ravel().tolist(),
                         "bbox": [x1 - 5, y1 - 5, x2 - x1 + 10, y2 - y1 + 10]})
    cats = [{"id": 1, "name": "person", "keypoints": list(COCO17.joints)}]
    ann = root / "ann.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return ann, root / "img"


@pytest.fixture()
def data(tmp_path):
    return _coco(tmp_path)


def _config(tmp, ann, img, out="run", **kw):
    base = dict(data=(str(ann),), images=(str(img),), out_dir=str(tmp / out), net=TINY, steps=4, batch_size=2,
                lr=3e-3, warmup_steps=1, seed=3, device="cpu", workers=0, checkpoint_every=100, log_every=1,
                progress=False)
    base.update(kw)
    return PoseTrainConfig(**base)


def test_plain_sample_is_the_inference_crop(data, tmp_path):
    ann, img = data
    cfg = _config(tmp_path, ann, img)
    records = load_records(cfg)
    assert len(records) == 6
    ds = PoseDataset(records, cfg)
    s = ds.sample(0, AugmentConfig.none())
    rec = records[int(np.random.default_rng([cfg.seed, 0, 0]).permutation(6)[0])]
    image = cv2.imread(str(rec.path))[..., ::-1]
    sq = crop_squares(rec.box[None], PoseConfig(aspect_ratio=64 / 96, padding=cfg.padding))
    crop = crop_image(np.ascontiguousarray(image), sq, (64, 96))[0]
    assert np.abs(s["image"].permute(1, 2, 0).numpy().astype(int) - crop).max() <= 1
    m = crop_affines(sq, (64, 96))[0]
    lab = rec.keypoints[:, 2] > 0
    np.testing.assert_allclose(s["keypoints"][lab, :2].numpy(), rec.keypoints[lab, :2] @ m[:, :2].T + m[:, 2],
                               atol=1e-3)
    np.testing.assert_array_equal(s["keypoints"][:, 2].numpy() > 0, lab)


def test_flip_mirrors_the_crop_and_swaps_left_and_right(data, tmp_path):
    ann, img = data
    cfg = _config(tmp_path, ann, img)
    ds = PoseDataset(load_records(cfg), cfg)
    perm = COCO17.flip_permutation()
    ls, rs = COCO17.index("left_shoulder"), COCO17.index("right_shoulder")
    for i in range(6):
        plain = ds.sample(i, AugmentConfig.none())
        flip = ds.sample(i, dataclasses.replace(AugmentConfig.none(), flip_prob=1.0))
        a, b = plain["image"].numpy().astype(int), flip["image"].numpy().astype(int)
        assert np.median(np.abs(a[:, :, ::-1] - b)) == 0 and np.abs(a[:, :, ::-1] - b).max() <= 2
        kp, kf = plain["keypoints"].numpy(), flip["keypoints"].numpy()
        np.testing.assert_array_equal(kf[:, 2], kp[perm, 2])
        lab = kf[:, 2] > 0
        np.testing.assert_allclose(kf[lab, 0], 63 - kp[perm][lab, 0], atol=1e-3)
        np.testing.assert_allclose(kf[lab, 1], kp[perm][lab, 1], atol=1e-3)
        # a person facing the camera still has the left shoulder on the image's right after a flip
        if kp[ls, 2] and kp[rs, 2]:
            assert kp[ls, 0] > kp[rs, 0] and kf[ls, 0] > kf[rs, 0]


def test_augmented_keypoints_stay_on_their_pixels(data, tmp_path):
    ann, img = data
    aug = AugmentConfig(flip_prob=0.5, rotate_prob=1.0, max_rotate=40, scale_range=(0.75, 1.25), max_shift=0.1,
                        photometric=False)
    cfg = _config(tmp_path, ann, img, augment=aug)
    records = load_records(cfg)
    ds = PoseDataset(records, cfg)
    perm = COCO17.flip_permutation()
    errs, angles = [], set()
    for i in range(12):
        s = ds.sample(i)
        rec = records[int(np.random.default_rng([cfg.seed, 0, i // 6]).permutation(6)[i % 6])]
        image = cv2.imread(str(rec.path)).astype(np.float32)
        crop = s["image"].permute(1, 2, 0).numpy()[..., ::-1].astype(np.float32)
        kp = s["keypoints"].numpy()
        # which way the sample went: a flip swaps the labels, so compare with both
        direct = [(rec.keypoints[j], kp[j]) for j in range(17)]
        swapped = [(rec.keypoints[perm[j]], kp[j]) for j in range(17)]
        best = []
        for pairs in (direct, swapped):
            e = []
            for src, dst in pairs:
                if src[2] > 0 and 1 < dst[0] < 62 and 1 < dst[1] < 94:
                    pa = cv2.getRectSubPix(image, (1, 1), (float(src[0]), float(src[1])))[0, 0]
                    pb = cv2.getRectSubPix(crop, (1, 1), (float(dst[0]), float(dst[1])))[0, 0]
                    e.append(np.abs(pa - pb).mean())
            best.append(np.median(e) if e else np.inf)
        errs.append(min(best))
        v = kp[kp[:, 2] > 0]
        angles.add(round(float(np.degrees(np.arctan2(*(v[1, :2] - v[0, :2])[::-1]))), 0))
    assert np.median(errs) < 12, errs
    assert len(angles) > 6  # the rotations differ from sample to sample


def test_posetrack_and_coco_data_map_joints_by_name(tmp_path):
    from corrtrack.io.posetrack import write_posetrack

    (tmp_path / "images" / "seq").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "images" / "seq" / "000000.jpg"), np.full((100, 120, 3), 90, np.uint8))
    kp = np.zeros((1, 17, 3))
    kp[0, :, :2] = np.random.default_rng(0).uniform(20, 80, (17, 2))
    kp[0, :, 2] = 1
    kp[0, 3:5] = 0  # PoseTrack never labels ears
    kp[0, 9, 2] = 0  # an occluded wrist: a position with visibility flag 0 is still a label (poseval's rule)
    poses = Poses(kp, POSETRACK18, boxes=[[10, 10, 90, 95]], track_ids=[0], head_boxes=[[30, 10, 50, 30]],
                  origin=[GROUND_TRUTH])
    seq = PoseSequence("000001_mpii_test", [FrameInfo(0, file_name="images/seq/000000.jpg", width=120, height=100)],
                       [poses])
    write_posetrack(tmp_path / "pt" / "000001_mpii_test.json", seq, ground_truth=True)
    for path in (tmp_path / "pt", tmp_path / "pt" / "000001_mpii_test.json"):  # a folder or one file
        recs = read_person_records(path, tmp_path, POSETRACK18)
        assert len(recs) == 1
        np.testing.assert_allclose(recs[0].keypoints[:, :2], kp[0, :, :2], atol=0.01)
        np.testing.assert_array_equal(recs[0].keypoints[:, 2], [1, 1, 1, 0, 0] + [1] * 12)
        np.testing.assert_allclose(recs[0].box, [10, 10, 90, 95])
    as_coco = read_person_records(tmp_path / "pt", tmp_path, COCO17)[0].keypoints
    assert as_coco[COCO17.index("left_eye"), 2] == 0  # not in PoseTrack: unlabelled, not invented
    np.testing.assert_allclose(as_coco[COCO17.index("nose")], kp[0, POSETRACK18.index("nose")], atol=0.01)
    with pytest.raises(CorrtrackError, match="not found"):
        read_person_records(tmp_path / "pt", tmp_path / "elsewhere", POSETRACK18)
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(CorrtrackError, match="bad.json"):
        read_person_records(bad, tmp_path, COCO17)


def test_resume_gives_the_same_model(data, tmp_path):
    ann, img = data
    full = _config(tmp_path, ann, img, out="full")
    train_pose(full)
    part = _config(tmp_path, ann, img, out="part")
    train_pose(part, stop_after=2)
    assert not (tmp_path / "part" / "posenet.pt").exists()
    train_pose(part)
    ra = assert_same_run(tmp_path / "full", tmp_path / "part", 4)
    assert [int(r["step"]) for r in ra] == [1, 2, 3, 4]
    net = PoseNet.load(tmp_path / "full" / "posenet.pt")
    assert net.config == TINY and net.meta["steps"] == 4
    with pytest.raises(CorrtrackError, match="another configuration"):
        train_pose(dataclasses.replace(part, lr=1e-4))


def test_training_lowers_the_loss_and_fine_tunes_into_another_layout(data, tmp_path):
    ann, img = data
    cfg = _config(tmp_path, ann, img, steps=25, batch_size=4, log_every=5, lr=5e-3, augment=AugmentConfig.none())
    model = train_pose(cfg)
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert float(rows[-1]["loss"]) < 0.8 * float(rows[0]["loss"]), [r["loss"] for r in rows]
    # second run of the paper's recipe: PoseTrack joints, starting from the first model
    ft = _config(tmp_path, ann, img, out="ft", net=dataclasses.replace(TINY, layout="posetrack18"), init=str(model),
                 steps=1)
    out = train_pose(ft)
    assert PoseNet.load(out).layout == POSETRACK18
    with pytest.raises(CorrtrackError, match="width"):
        train_pose(_config(tmp_path, ann, img, out="bad", net=dataclasses.replace(TINY, width=0.25), init=str(model)))


def test_cli_errors_are_one_line(tmp_path, data):
    from typer.testing import CliRunner

    from corrtrack.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["train", "pose", "-o", str(tmp_path / "o")])
    assert isinstance(res.exception, CorrtrackError) and "--teacher" in str(res.exception)
    res = runner.invoke(app, ["train", "pose", "--videos", "x.mp4"])
    assert isinstance(res.exception, CorrtrackError) and "needs --teacher" in str(res.exception)
    res = runner.invoke(app, ["train", "pose", "--teacher", "blazepose", "--videos", "x.mp4", "-o", str(tmp_path)])
    assert isinstance(res.exception, CorrtrackError) and "unknown" in str(res.exception)
    ann, img = data
    res = runner.invoke(app, ["train", "pose", "-a", str(ann), "-i", str(img), "-o", str(tmp_path / "c"),
                              "--width", "0.125", "--input-width", "64", "--input-height", "96", "--steps", "2",
                              "--batch-size", "2", "--workers", "0", "--device", "cpu", "--stop-after", "1"])
    assert res.exit_code == 0, res.output
    assert "not finished" in res.output and (tmp_path / "c" / "checkpoint.pt").is_file()
