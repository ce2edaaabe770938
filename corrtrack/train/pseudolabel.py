"""Pseudo-labelled training data for the correspondence network.

Frames of videos (or image folders) are labelled with keypoints by our own
detector + top-down pose model and written as a COCO-format person keypoint
dataset (``annotations.json`` + ``images/<k>_<source>/<frame>.jpg``), the input of
``corrtrack train corr``. Joints below ``min_score`` are written as unlabelled
(v = 0): the correspondence training only uses labelled joints, so a confident
subset is better than a complete but noisy pose.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from corrtrack.io.atomic import atomic_path, write_json


def pseudolabel(videos: Sequence[str | os.PathLike], out_dir: str | os.PathLike, every_n: int = 5,
                min_score: float = 0.3, min_keypoints: int = 6, min_box_score: float = 0.5,
                device: str | None = None, detector=None, estimator=None, progress: bool = True) -> Path:
    """Label every ``every_n``-th frame of each source; returns the annotation file's path.

    A person is kept when its box score is at least ``min_box_score`` and it has
    at least ``min_keypoints`` joints scoring ``min_score`` or more; a frame is
    kept when it has a kept person. ``detector`` / ``estimator`` default to the
    project's NanoDet and MoveNet.
    """
    import cv2
    from tqdm import tqdm

    from corrtrack.io.video import open_source

    if every_n < 1:
        raise ValueError("every_n must be >= 1")
    if detector is None:
        from corrtrack.pipeline.detector import Detector

        detector = Detector(device=device)
    if estimator is None:
        from corrtrack.pipeline.pose import TopDownPoseEstimator

        estimator = TopDownPoseEstimator(device=device)
    out = Path(out_dir)
    images, anns = [], []
    for src_i, src_path in enumerate(videos):
        src = open_source(src_path, step=every_n)
        with src:
            for frame in tqdm(src, total=src.expected_frames, desc=src.name, unit="frame", disable=not progress):
                boxes = detector(frame.image)
                boxes = boxes[boxes.scores >= min_box_score]
                if len(boxes) == 0:
                    continue
                poses = estimator(frame.image, boxes)
                kp = poses.keypoints.copy()
                good = kp[..., 2] >= min_score
                keep = good.sum(1) >= min_keypoints
                if not keep.any():
                    continue
                h, w = frame.image.shape[:2]
                rel = f"images/{src_i:02d}_{src.name}/{int(frame.index):06d}.jpg"  # two sources may share a name
                with atomic_path(out / rel, suffix=".jpg") as tmp:
                    if not cv2.imwrite(str(tmp), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR),
                                       [cv2.IMWRITE_JPEG_QUALITY, 92]):
                        raise OSError(f"{out / rel}: cannot write image")
                image_id = len(images) + 1
                images.append({"id": image_id, "file_name": rel, "width": int(w), "height": int(h),
                               "source": str(src_path), "frame_index": int(frame.index)})
                for i in np.flatnonzero(keep):
                    k = np.zeros((kp.shape[1], 3))
                    k[good[i], :2] = kp[i, good[i], :2]
                    k[good[i], 2] = 2
                    x1, y1, x2, y2 = poses.boxes[i]
                    anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                                 "keypoints": np.round(k, 2).ravel().tolist(), "num_keypoints": int(good[i].sum()),
                                 "bbox": [round(float(x1), 2), round(float(y1), 2), round(float(x2 - x1), 2),
                                          round(float(y2 - y1), 2)],
                                 "area": round(float((x2 - x1) * (y2 - y1)), 2), "score": round(float(poses.scores[i]), 4)})
    from corrtrack.layouts import COCO17

    categories = [{"id": 1, "name": "person", "supercategory": "person", "keypoints": list(COCO17.joints),
                   "skeleton": [[a + 1, b + 1] for a, b in COCO17.skeleton]}]
    path = out / "annotations.json"
    write_json(path, {"info": {"description": "corrtrack pseudo-labels (NanoDet + MoveNet)"},
                      "images": images, "annotations": anns, "categories": categories})
    return path
