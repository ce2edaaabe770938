"""The one container that travels through the pipeline.

``Poses`` holds the people of one frame: boxes, keypoints (x, y, score) in a
named layout, a score per person, track ids and where each pose came from.
Every stage takes and returns ``Poses`` (like detectron2's ``Instances``).
``FrameInfo`` carries what is known about the frame itself, and
``PoseSequence`` a whole annotated or predicted sequence.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from corrtrack.layouts import KeypointLayout, convert_keypoints, get_layout

# Values of Poses.origin.
# CANDIDATE: a detector box below its score threshold, kept only if the pose estimator finds a
# confident person in it (``corrtrack.pipeline.pose.verify_candidates``); never leaves that stage.
DETECTED, RECOVERED, GROUND_TRUTH, CANDIDATE = 0, 1, 2, 3
ORIGIN_NAMES = {DETECTED: "detected", RECOVERED: "recovered", GROUND_TRUTH: "ground_truth", CANDIDATE: "candidate"}

_FIELDS = ("boxes", "scores", "keypoints", "track_ids", "origin", "head_boxes")


def boxes_from_keypoints(keypoints: np.ndarray, min_score: float = 0.0) -> np.ndarray:
    """Tight xyxy boxes around the joints with score > ``min_score`` (zeros when none)."""
    kp = np.asarray(keypoints, dtype=np.float64)
    out = np.zeros((kp.shape[0], 4))
    for i, person in enumerate(kp):
        ok = person[:, 2] > min_score
        if ok.any():
            xy = person[ok, :2]
            out[i] = [*xy.min(0), *xy.max(0)]
    return out


@dataclass
class Poses:
    """People of one frame. N people, K joints of ``layout``.

    boxes      (N, 4) float  x1, y1, x2, y2 in pixels
    scores     (N,)   float  person score (detection or pose score)
    keypoints  (N, K, 3) float  x, y, score; score 0 means "joint absent"
    track_ids  (N,)   int    -1 = not assigned
    origin     (N,)   int8   DETECTED / RECOVERED / GROUND_TRUTH (/ CANDIDATE, inside detect + pose)
    head_boxes (N, 4) float  xyxy head box (ground truth, for PCKh); NaN if unknown
    """

    keypoints: np.ndarray
    layout: KeypointLayout
    boxes: np.ndarray | None = None
    scores: np.ndarray | None = None
    track_ids: np.ndarray | None = None
    origin: np.ndarray | None = None
    head_boxes: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.layout = get_layout(self.layout)
        k = self.layout.num_joints
        kp = np.asarray(self.keypoints, dtype=np.float64)
        if kp.size == 0:
            kp = kp.reshape(0, k, 3)
        if kp.ndim != 3 or kp.shape[1:] != (k, 3):
            raise ValueError(f"keypoints must be (N, {k}, 3) for layout {self.layout.name}, got {kp.shape}")
        self.keypoints = kp
        n = len(kp)
        self.boxes = boxes_from_keypoints(kp) if self.boxes is None else np.asarray(self.boxes, np.float64).reshape(n, 4)
        if self.scores is None:
            self.scores = np.array([p[p[:, 2] > 0, 2].mean() if (p[:, 2] > 0).any() else 0.0 for p in kp])
        self.scores = np.asarray(self.scores, np.float64).reshape(n)
        self.track_ids = (np.full(n, -1, np.int64) if self.track_ids is None
                          else np.asarray(self.track_ids, np.int64).reshape(n))
        self.origin = (np.full(n, DETECTED, np.int8) if self.origin is None
                       else np.asarray(self.origin, np.int8).reshape(n))
        self.head_boxes = (np.full((n, 4), np.nan) if self.head_boxes is None
                           else np.asarray(self.head_boxes, np.float64).reshape(n, 4))

    # -- construction -------------------------------------------------------
    @classmethod
    def empty(cls, layout: str | KeypointLayout) -> "Poses":
        layout = get_layout(layout)
        return cls(np.zeros((0, layout.num_joints, 3)), layout)

    @classmethod
    def concat(cls, items: Sequence["Poses"], layout: str | KeypointLayout | None = None) -> "Poses":
        """Stack several ``Poses`` (all converted to ``layout``, default the first's)."""
        if not items and layout is None:
            raise ValueError("Poses.concat of nothing needs a layout")
        layout = get_layout(layout) if layout is not None else items[0].layout
        items = [p.to_layout(layout) for p in items]
        if not items:
            return cls.empty(layout)
        return cls(layout=layout, **{f: np.concatenate([getattr(p, f) for p in items]) for f in _FIELDS})

    # -- access -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.keypoints)

    def __getitem__(self, idx) -> "Poses":
        """Index with an int, slice, index array or boolean mask; always returns Poses."""
        if isinstance(idx, (int, np.integer)):
            idx = [int(idx)]
        return Poses(layout=self.layout, **{f: getattr(self, f)[idx] for f in _FIELDS})

    def __iter__(self) -> Iterator["Poses"]:
        for i in range(len(self)):
            yield self[i]

    def copy(self) -> "Poses":
        return Poses(layout=self.layout, **{f: getattr(self, f).copy() for f in _FIELDS})

    def replace(self, **fields) -> "Poses":
        """A copy with some fields replaced (like ``dataclasses.replace``)."""
        layout = fields.pop("layout", self.layout)
        data = {f: getattr(self, f) for f in _FIELDS}
        data.update(fields)
        return Poses(layout=layout, **data)

    # -- transforms ---------------------------------------------------------
    def to_layout(self, layout: str | KeypointLayout) -> "Poses":
        layout = get_layout(layout)
        if layout == self.layout:
            return self
        kp = convert_keypoints(self.keypoints, self.layout, layout)
        return Poses(kp, layout, self.boxes.copy(), self.scores.copy(), self.track_ids.copy(),
                     self.origin.copy(), self.head_boxes.copy())

    def threshold_joints(self, min_score: float) -> "Poses":
        """Zero out joints whose score is below ``min_score`` (they count as absent)."""
        kp = self.keypoints.copy()
        kp[kp[..., 2] < min_score] = 0
        return self.replace(keypoints=kp)

    def num_visible(self, min_score: float = 0.0) -> np.ndarray:
        return (self.keypoints[..., 2] > min_score).sum(-1)

    def scale(self, sx: float, sy: float | None = None) -> "Poses":
        """Scale all coordinates (e.g. from network input to image size)."""
        sy = sx if sy is None else sy
        kp = self.keypoints.copy()
        kp[..., 0] *= sx
        kp[..., 1] *= sy
        f = np.array([sx, sy, sx, sy])
        return self.replace(keypoints=kp, boxes=self.boxes * f, head_boxes=self.head_boxes * f)

    def translate(self, dx: float, dy: float) -> "Poses":
        """Move all coordinates by (dx, dy) pixels (e.g. a pose carried on at its velocity)."""
        kp = self.keypoints.copy()
        kp[..., 0] += dx
        kp[..., 1] += dy
        d = np.array([dx, dy, dx, dy])
        return self.replace(keypoints=kp, boxes=self.boxes + d, head_boxes=self.head_boxes + d)

    def __repr__(self) -> str:
        return f"Poses(n={len(self)}, layout={self.layout.name}, track_ids={self.track_ids.tolist()})"


@dataclass
class FrameInfo:
    """What is known about one frame besides its people."""

    index: int  # position in the sequence, from 0
    time: float | None = None  # seconds from the start of the video
    file_name: str | None = None  # as written in annotation files (relative path)
    width: int | None = None
    height: int | None = None
    image_id: int | None = None  # PoseTrack / COCO image id
    is_labeled: bool = True
    ignore_regions: list[np.ndarray] = field(default_factory=list)  # polygons, each (M, 2) x, y


@dataclass
class PoseSequence:
    """A sequence of frames with their people: an annotation file or a tracker's output."""

    name: str
    frames: list[FrameInfo]
    poses: list[Poses]
    meta: dict = field(default_factory=dict)  # e.g. vid_id, nframes, categories

    def __post_init__(self) -> None:
        if len(self.frames) != len(self.poses):
            raise ValueError(f"{self.name}: {len(self.frames)} frames but {len(self.poses)} pose sets")

    def __len__(self) -> int:
        return len(self.frames)

    def __iter__(self) -> Iterator[tuple[FrameInfo, Poses]]:
        return iter(zip(self.frames, self.poses))

    @property
    def layout(self) -> KeypointLayout | None:
        return self.poses[0].layout if self.poses else None

    def track_ids(self) -> list[int]:
        ids: set[int] = set()
        for p in self.poses:
            ids.update(int(t) for t in p.track_ids if t >= 0)
        return sorted(ids)

