"""Preview frames: the ground truth drawn over the rendered frame, to check by eye.

Visible joints and limbs are drawn as ``corrtrack.viz.draw`` draws tracks (one
colour per ground-truth id, id over the box); joints hidden behind a nearer
person are hollow rings with a cross in the id's colour; ignore regions are
grey boxes.
"""
from __future__ import annotations

import numpy as np

from corrtrack.structures import FrameInfo, Poses


def draw_preview(image: np.ndarray, poses: Poses, frame: FrameInfo, hidden: list[np.ndarray],
                 hidden_ids: list[int]) -> np.ndarray:
    import cv2

    from corrtrack.viz.draw import color_for_id, draw_poses

    out = draw_poses(image, poses, joint_threshold=0.5)
    r = max(3, round(min(out.shape[:2]) / 160))
    for pts, tid in zip(hidden, hidden_ids):
        color = color_for_id(tid)
        for x, y in pts[np.isfinite(pts).all(1)]:
            c = (int(round(x)), int(round(y)))
            cv2.circle(out, c, r, color, 1, cv2.LINE_AA)
            cv2.line(out, (c[0] - r + 1, c[1] - r + 1), (c[0] + r - 1, c[1] + r - 1), color, 1, cv2.LINE_AA)
            cv2.line(out, (c[0] - r + 1, c[1] + r - 1), (c[0] + r - 1, c[1] - r + 1), color, 1, cv2.LINE_AA)
    for reg in frame.ignore_regions:
        x1, y1 = reg.min(0).astype(int)
        x2, y2 = reg.max(0).astype(int)
        cv2.rectangle(out, (x1, y1), (x2, y2), (128, 128, 128), 1)
        cv2.putText(out, "ignore", (x1, max(10, y1 - 2)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (128, 128, 128), 1,
                    cv2.LINE_AA)
    cv2.putText(out, f"{frame.index:04d}", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out
