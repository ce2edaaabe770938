"""The shipped correspondence model on real COCO images (never seen in training) and a known warp."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from corrtrack.layouts import COCO17
from corrtrack.models.corr_codec import inside_image
from corrtrack.models.corrnet import DEFAULT_WEIGHTS, CorrespondenceNet
from corrtrack.pipeline.propagate import correspondence_similarity, frame_features, propagate
from corrtrack.structures import Poses

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def net():
    if not DEFAULT_WEIGHTS.is_file():
        pytest.skip(f"{DEFAULT_WEIGHTS} not shipped")
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # a busy shared CPU runs these small batches faster on one thread
    yield CorrespondenceNet.load()
    torch.set_num_threads(n)


def test_shipped_model_follows_people_through_a_warp(shared_data, net):
    root = shared_data / "mmpose" / "coco"
    d = json.loads((root / "test_coco.json").read_text())
    hits = {False: [], True: []}
    identity_ok, rows_with_signal, rows = 0, 0, 0
    for im in d["images"]:
        kp = np.array([np.reshape(a["keypoints"], (17, 3)) for a in d["annotations"] if a["image_id"] == im["id"]],
                      float)
        kp[..., 2] = kp[..., 2] > 0
        img = cv2.cvtColor(cv2.imread(str(root / im["file_name"])), cv2.COLOR_BGR2RGB)
        h, w = img.shape[:2]
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 10, 1.0)
        m[:, 2] += [25, -15]
        img2 = cv2.warpAffine(img, m, (w, h))
        gt = kp[..., :2] @ m[:, :2].T + m[:, 2]
        present = (kp[..., 2] > 0) & inside_image(gt, w, h)
        box = np.array([np.ptp(g[v], 0).max() if v.sum() > 1 else np.nan for g, v in zip(gt, present)])
        present &= np.isfinite(box)[:, None]
        fa, fb = frame_features(net, img), frame_features(net, img2)
        poses = Poses(kp, COCO17)
        for refine in (False, True):
            moved, maps = propagate(net, None, None, poses, feats_a=fa, feats_b=fb, use_refinement=refine)
            err = np.linalg.norm(moved.keypoints[..., :2] - gt, axis=-1) / box[:, None]
            hits[refine].extend((err[present] <= 0.1).tolist())
        # Eq. 6 against the true poses in the warped frame: each person is most similar to itself.
        sim = correspondence_similarity(maps, Poses(np.concatenate([gt, kp[..., 2:]], -1), COCO17))
        for i, row in enumerate(sim):
            rows += 1
            if row.max() > 0:
                rows_with_signal += 1
                identity_ok += int(np.argmax(row) == i)
    assert len(hits[True]) > 150
    assert np.mean(hits[False]) >= 0.9, np.mean(hits[False])  # measured 0.98
    assert np.mean(hits[True]) >= 0.8, np.mean(hits[True])  # measured 0.92
    assert identity_ok == rows_with_signal and rows_with_signal >= rows // 2, (identity_ok, rows_with_signal, rows)
