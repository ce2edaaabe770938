"""The simplest tracker, as a floor for the benchmark: greedy IoU of boxes, frame to frame.

It re-labels the ground-truth poses of a sequence: each person takes the id of
the person in the previous frame whose box overlaps it most (IoU above
``min_iou``, greedily, best pairs first); anyone left over starts a new id.
Geometry is perfect, so every ID switch it makes comes from the sequence's
events (crossings, occlusions, exits and re-entries), never from bad poses.
"""
from __future__ import annotations

import numpy as np

from corrtrack.structures import PoseSequence


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of xyxy boxes (N, 4) x (M, 4)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(-1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


def greedy_iou_tracks(seq: PoseSequence, min_iou: float = 0.3) -> PoseSequence:
    """A copy of ``seq`` whose track ids come from greedy frame-to-frame box IoU."""
    next_id, prev_boxes, prev_ids, poses = 0, np.zeros((0, 4)), np.zeros(0, np.int64), []
    for p in seq.poses:
        ids = np.full(len(p), -1, np.int64)
        iou = box_iou(p.boxes, prev_boxes)
        while iou.size and iou.max() > min_iou:
            i, j = np.unravel_index(np.argmax(iou), iou.shape)
            ids[i] = prev_ids[j]
            iou[i, :], iou[:, j] = -1, -1
        for i in np.flatnonzero(ids < 0):
            ids[i], next_id = next_id, next_id + 1
        poses.append(p.replace(track_ids=ids))
        prev_boxes, prev_ids = p.boxes, ids
    return PoseSequence(seq.name, seq.frames, poses, dict(seq.meta))
