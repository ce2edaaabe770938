"""pseudolabel: frames + a detector + a pose model -> a COCO keypoint dataset train corr can read."""
from __future__ import annotations

import json

import cv2
import numpy as np

from corrtrack.layouts import COCO17
from corrtrack.structures import Poses
from corrtrack.train.corr import read_coco_records
from corrtrack.train.pseudolabel import pseudolabel


def test_pseudolabel_writes_a_coco_dataset(tmp_path):
    for name in ("a", "b"):  # two sources with the same stem must not overwrite each other
        folder = tmp_path / name / "clip"
        folder.mkdir(parents=True)
        for i in range(4):
            cv2.imwrite(str(folder / f"{i}.png"), np.full((40, 60, 3), 40 * i + (name == "b"), np.uint8))

    def detector(image):
        return Poses(np.zeros((2, 17, 3)), COCO17, boxes=np.array([[5, 5, 30, 35], [35, 5, 55, 35]]),
                     scores=np.array([0.9, 0.3]))

    def estimator(image, boxes):
        kp = np.zeros((len(boxes), 17, 3))
        kp[:, :, :2] = boxes.boxes[:, None, :2] + 3
        kp[:, :, 2] = np.linspace(0, 1, 17)  # 11 joints >= 0.35
        if image[0, 0, 0] >= 80:  # frames 2 and 3: too few confident joints
            kp[:, :, 2] = 0.1
        return Poses(kp, COCO17, boxes=boxes.boxes, scores=boxes.scores)

    ann = pseudolabel([tmp_path / "a" / "clip", tmp_path / "b" / "clip"], tmp_path / "out", every_n=1,
                      min_score=0.35, detector=detector, estimator=estimator, progress=False)
    d = json.loads(ann.read_text())
    assert [im["frame_index"] for im in d["images"]] == [0, 1, 0, 1]
    assert len({im["file_name"] for im in d["images"]}) == 4
    assert len(d["annotations"]) == 4  # the 0.3-score box is dropped
    kp = np.reshape(d["annotations"][0]["keypoints"], (17, 3))
    assert (kp[:, 2] > 0).sum() == d["annotations"][0]["num_keypoints"] == 11 and (kp[kp[:, 2] == 0] == 0).all()
    recs = read_coco_records(ann, tmp_path / "out")
    assert len(recs) == 4 and recs[3].path.read_bytes()
    assert cv2.imread(str(recs[2].path))[0, 0, 0] in (0, 1) and cv2.imread(str(recs[3].path))[0, 0, 0] in (40, 41)
