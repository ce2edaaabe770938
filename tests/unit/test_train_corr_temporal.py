"""Real frame pairs for the correspondence training (``--temporal-prob``): people linked between
labelled frames of one video only where the link is unambiguous, and the target of a joint is the
same person's joint in the other frame (tiny generated video, CPU)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from corrtrack.cli import app
from corrtrack.errors import CorrtrackError
from corrtrack.models.corr_codec import grid_to_canvas
from corrtrack.models.corrnet import CorrNetConfig
from corrtrack.train.corr import (
    CorrTrainConfig,
    PairDataset,
    Record,
    WarpConfig,
    link_people,
    read_coco_records,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rec(frame, centres, source="v.mp4", size=20.0):
    kp = np.zeros((len(centres), 17, 3))
    kp[..., 2] = 2
    boxes = np.array([[x - size / 2, y - size, x + size / 2, y + size] for x, y in centres])
    kp[..., :2] = np.asarray(centres, float)[:, None]
    return Record(path=None, width=200, height=100, keypoints=kp, boxes=boxes, source=source, frame_index=frame)


def _pairs(partners, i):
    return {j: m.tolist() for j, m in partners[i]}


def test_links_are_chained_and_ambiguous_ones_dropped():
    recs = [_rec(0, [(20, 50), (150, 50)]),
            _rec(4, [(152, 52), (25, 50)]),  # same two people, listed in the other order
            _rec(8, [(30, 50), (154, 50), (155, 53)]),  # a newcomer right beside person 2: no safe link
            _rec(12, [(36, 50)]),
            _rec(4, [(20, 50)], source="other.mp4")]
    p = link_people(recs, max_frames=8)
    assert _pairs(p, 0) == {1: [1, 0], 2: [0, -1]}  # frame 0 -> 8 through the chain of person 1 only
    assert _pairs(p, 1) == {0: [1, 0], 2: [-1, 0], 3: [-1, 0]}
    assert _pairs(p, 2)[3] == [0, -1, -1] and _pairs(p, 3) == {1: [1], 2: [0]}  # 12 - 0 > 8: no pair
    assert p[4] == []  # another video
    # A gap between labelled frames larger than max_frames breaks the chain.
    assert link_people([recs[0], recs[3]], max_frames=8) == [[], []]


def _video_dataset(root, shift=(6, -3)):
    """Two frames of one 'video': the second is the first with its content moved by ``shift``."""
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    w, h = 96, 80
    img = cv2.resize(rng.uniform(0, 255, (h // 8, w // 8, 3)).astype(np.uint8), (w, h),
                     interpolation=cv2.INTER_CUBIC)
    m = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
    cv2.imwrite(str(root / "img" / "0.png"), img)
    cv2.imwrite(str(root / "img" / "1.png"), cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT))
    kp = np.zeros((17, 3))
    kp[:, 0] = rng.uniform(15, w - 15, 17)
    kp[:, 1] = rng.uniform(15, h - 15, 17)
    kp[:, 2] = 2
    kp2 = kp.copy()
    kp2[:, :2] += shift
    kp2[:4, 2] = 0  # not labelled in the second frame: unknown, not "gone"
    images = [{"id": i + 1, "file_name": f"{i}.png", "width": w, "height": h, "source": "clip.mp4",
               "frame_index": 4 * i} for i in range(2)]
    anns = [{"id": i + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0, "num_keypoints": 17,
             "keypoints": k.ravel().tolist()} for i, k in enumerate((kp, kp2))]
    ann = root / "ann.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}))
    return ann, root / "img", kp, kp2


def test_a_temporal_sample_targets_the_other_frames_joints(tmp_path):
    ann, img, kp, kp2 = _video_dataset(tmp_path)
    recs = read_coco_records(ann, img, min_keypoints=4)
    assert [r.frame_index for r in recs] == [0, 4] and recs[0].source == "clip.mp4"
    cfg = CorrTrainConfig(annotations=(str(ann),), images=(str(img),), out_dir=str(tmp_path / "o"),
                          net=CorrNetConfig(input_size=96, pretrained=False), warp=WarpConfig(photometric=False),
                          temporal_prob=1.0, seed=0)
    ds = PairDataset(recs, cfg)
    for i in range(4):
        s = ds[i]
        first = ds.record_index(i)
        a, b = (kp, kp2) if first == 0 else (kp2, kp)
        known = s["known2"][0].numpy()
        assert known.tolist() == ([False] * 4 + [True] * 13)  # joints 0-3 unlabelled in one of the two
        assert torch.equal(s["present2"][0], s["known2"][0]) and not s["valid1"][1:].any()
        c1 = grid_to_canvas(s["grid1"][0].numpy(), 4)
        c2 = grid_to_canvas(s["grid2"][0].numpy(), 4)
        # A 96 x 80 frame on a 96 x 96 canvas: padded below, not scaled, so canvas = image coordinates.
        np.testing.assert_allclose(c1[known], a[known, :2], atol=1e-3)
        np.testing.assert_allclose(c2[known], b[known, :2], atol=1e-3)
        # The second image is the other frame (its content at the target), not a warp of the first.
        x = s["img1"].permute(1, 2, 0).numpy().astype(np.float32)
        y = s["img2"].permute(1, 2, 0).numpy().astype(np.float32)
        errs = [np.abs(cv2.getRectSubPix(x, (1, 1), tuple(map(float, p)))[0, 0]
                       - cv2.getRectSubPix(y, (1, 1), tuple(map(float, q)))[0, 0]).mean()
                for p, q in zip(c1[known], c2[known])]
        assert np.median(errs) < 3, errs


def test_cli_trains_with_temporal_pairs(tmp_path):
    ann, img, _, _ = _video_dataset(tmp_path)
    args = ["train", "corr", "-a", str(ann), "-i", str(img), "-o", str(tmp_path / "run"), "--input-size", "64",
            "--steps-siamese", "2", "--steps-refine", "2", "--batch-size", "2", "--workers", "0", "--device", "cpu",
            "--backbone", "mobilenetv2", "--temporal-prob", "1", "--temporal-max-frames", "4"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert ck["config"]["temporal_prob"] == 1.0 and ck["config"]["temporal_max_frames"] == 4
    res = CliRunner().invoke(app, args[:-1] + ["0"] + ["--no-resume"])
    assert isinstance(res.exception, CorrtrackError) and "temporal_max_frames" in str(res.exception)
