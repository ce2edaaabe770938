"""Drawing people on frames: skeletons, joints, boxes and track ids (OpenCV only).

Each track id gets its own stable colour; untracked people (id -1) are grey.
People recovered by propagation (origin RECOVERED) get a dashed, thinner box
and a "*" after their id, so one can see where the tracker filled a gap.
"""
from __future__ import annotations

import colorsys

import cv2
import numpy as np

from corrtrack.structures import RECOVERED, Poses

UNTRACKED_COLOR = (160, 160, 160)
_GOLDEN = 0.618033988749895


def color_for_id(track_id: int) -> tuple[int, int, int]:
    """A stable RGB colour per track id; nearby ids get far-apart hues."""
    track_id = int(track_id)
    if track_id < 0:
        return UNTRACKED_COLOR
    # Golden-ratio hue steps spread any run of consecutive ids around the colour
    # wheel; alternating brightness separates ids whose hues come out close.
    hue = (0.1 + track_id * _GOLDEN) % 1.0
    value = 1.0 if track_id % 2 == 0 else 0.78
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, value)
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


def _dashed_rect(img: np.ndarray, p1: tuple[int, int], p2: tuple[int, int], color, thickness: int, dash: int) -> None:
    (x1, y1), (x2, y2) = p1, p2
    for (ax, ay), (bx, by) in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))):
        length = max(abs(bx - ax), abs(by - ay))
        for s in range(0, length, 2 * dash):
            e = min(s + dash, length)
            t0, t1 = s / max(length, 1), e / max(length, 1)
            cv2.line(img, (round(ax + (bx - ax) * t0), round(ay + (by - ay) * t0)),
                     (round(ax + (bx - ax) * t1), round(ay + (by - ay) * t1)), color, thickness)


def _label(img: np.ndarray, text: str, x: int, y: int, color, scale: float, thickness: int) -> None:
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    h, w = img.shape[:2]
    x = int(np.clip(x, 0, max(w - tw - 4, 0)))
    y = int(np.clip(y, th + base + 2, h))  # keep the label inside the frame
    cv2.rectangle(img, (x, y - th - base - 2), (x + tw + 4, y), color, -1)
    dark = sum(color) > 380  # black text on light colours, white on dark ones
    cv2.putText(img, text, (x + 2, y - base), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (0, 0, 0) if dark else (255, 255, 255), thickness, cv2.LINE_AA)


def draw_poses(image_rgb: np.ndarray, poses: Poses, joint_threshold: float = 0.3, show_boxes: bool = True,
               show_ids: bool = True) -> np.ndarray:
    """A copy of ``image_rgb`` (H, W, 3 uint8) with ``poses`` drawn on it.

    Joints with score below ``joint_threshold`` and limbs touching them are not drawn.
    """
    img = np.ascontiguousarray(image_rgb, dtype=np.uint8).copy()
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) RGB, got {img.shape}")
    h, w = img.shape[:2]
    thick = max(1, round(min(h, w) / 240))
    radius = thick + 1
    font = max(0.4, min(h, w) / 900)
    skeleton = poses.layout.skeleton
    # Lower scores first so that confident people end up on top.
    for i in np.argsort(poses.scores, kind="stable"):
        color = color_for_id(poses.track_ids[i])
        recovered = poses.origin[i] == RECOVERED
        kp = poses.keypoints[i]
        ok = (kp[:, 2] >= joint_threshold) & (kp[:, 2] > 0) & np.isfinite(kp[:, :2]).all(1)
        pts = np.round(kp[:, :2]).astype(np.int64) if ok.any() else None
        for a, b in skeleton:
            if ok[a] and ok[b]:
                cv2.line(img, tuple(map(int, pts[a])), tuple(map(int, pts[b])), color, thick, cv2.LINE_AA)
        for j in np.flatnonzero(ok):
            cv2.circle(img, tuple(map(int, pts[j])), radius, color, -1, cv2.LINE_AA)
            cv2.circle(img, tuple(map(int, pts[j])), radius, (0, 0, 0), 1, cv2.LINE_AA)
        box = poses.boxes[i]
        if not np.isfinite(box).all() or (box[2] <= box[0] and box[3] <= box[1]):
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        if show_boxes:
            if recovered:
                _dashed_rect(img, (x1, y1), (x2, y2), color, max(1, thick // 2), dash=4 * thick + 2)
            else:
                cv2.rectangle(img, (x1, y1), (x2, y2), color, thick)
        if show_ids and poses.track_ids[i] >= 0:
            text = f"{int(poses.track_ids[i])}{'*' if recovered else ''}"
            _label(img, text, x1, y1, color, font, max(1, thick // 2))
    return img
