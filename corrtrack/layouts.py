"""Keypoint layouts (named joint sets) and the conversions between them.

Three layouts matter here:

* ``COCO17`` — what MoveNet and most pose models predict.
* ``POSETRACK18`` — PoseTrack 2018 files: 17 slots, COCO order except that the
  eyes are replaced by ``head_bottom`` and ``head_top``; the ear slots exist
  but are never annotated.
* ``POSEVAL15`` — the 15 joints the official PoseTrack evaluator (poseval)
  scores, in its own order (PoseTrack 2017 / MPII ids).

Converting COCO-17 to PoseTrack-18 has to *invent* ``head_bottom`` and
``head_top``, which COCO does not have. We place both on the line from the
shoulder midpoint ``m`` through the nose ``n``::

    head_bottom = m + 0.27 * (n - m)
    head_top    = m + 1.46 * (n - m)

with score ``min(score(nose), score(l_shoulder), score(r_shoulder))``. The two
coefficients are the mean positions measured on the 13 people of the real
PoseTrack18 val frames in ``shared/data`` that have all five joints
annotated (std 0.16 and 0.24 along the line; the sideways offset averages ~0
because it changes sign with the facing direction, so we leave it out).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

HEAD_BOTTOM_ALONG = 0.27
HEAD_TOP_ALONG = 1.46


@dataclass(frozen=True)
class KeypointLayout:
    """A named set of joints with what drawing, flipping and OKS need."""

    name: str
    joints: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...] = ()
    sigmas: tuple[float, ...] = ()  # OKS per-joint sigmas (COCO convention)
    flip_pairs: tuple[tuple[int, int], ...] = field(default=(), repr=False)

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def index(self, joint: str) -> int:
        return self.joints.index(joint)

    def flip_permutation(self) -> np.ndarray:
        """Index array that swaps left and right joints (for horizontal flips)."""
        perm = np.arange(self.num_joints)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    def __str__(self) -> str:
        return self.name


def _pairs(joints: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    out = []
    for i, j in enumerate(joints):
        if j.startswith("left_"):
            other = "right_" + j[len("left_"):]
            if other in joints:
                out.append((i, joints.index(other)))
    return tuple(out)


def _skeleton(joints: tuple[str, ...], named: list[tuple[str, str]]) -> tuple[tuple[int, int], ...]:
    return tuple((joints.index(a), joints.index(b)) for a, b in named if a in joints and b in joints)


_BODY = (
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
_BODY_SKELETON = [
    ("left_ankle", "left_knee"), ("left_knee", "left_hip"), ("right_ankle", "right_knee"),
    ("right_knee", "right_hip"), ("left_hip", "right_hip"), ("left_shoulder", "left_hip"),
    ("right_shoulder", "right_hip"), ("left_shoulder", "right_shoulder"),
    ("left_shoulder", "left_elbow"), ("right_shoulder", "right_elbow"),
    ("left_elbow", "left_wrist"), ("right_elbow", "right_wrist"),
]
# COCO's OKS sigmas: nose, eyes, ears, then the body in COCO order.
_COCO_SIGMAS = (0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
                0.107, 0.107, 0.087, 0.087, 0.089, 0.089)

_coco_joints = ("nose", "left_eye", "right_eye", "left_ear", "right_ear") + _BODY
COCO17 = KeypointLayout(
    name="coco17",
    joints=_coco_joints,
    skeleton=_skeleton(_coco_joints, _BODY_SKELETON + [
        ("nose", "left_eye"), ("nose", "right_eye"), ("left_eye", "right_eye"),
        ("left_eye", "left_ear"), ("right_eye", "right_ear"),
        ("left_ear", "left_shoulder"), ("right_ear", "right_shoulder")]),
    sigmas=_COCO_SIGMAS,
    flip_pairs=_pairs(_coco_joints),
)

_pt_joints = ("nose", "head_bottom", "head_top", "left_ear", "right_ear") + _BODY
# head_bottom / head_top take the eye sigmas' slots; the neck-like head_bottom
# is as precise as the nose, head_top as an ear.
POSETRACK18 = KeypointLayout(
    name="posetrack18",
    joints=_pt_joints,
    skeleton=_skeleton(_pt_joints, _BODY_SKELETON + [
        ("nose", "head_bottom"), ("nose", "head_top"), ("head_bottom", "left_shoulder"),
        ("head_bottom", "right_shoulder")]),
    sigmas=(0.026, 0.026, 0.035) + _COCO_SIGMAS[3:],
    flip_pairs=_pairs(_pt_joints),
)

# poseval's joint ids 0..14 (PoseTrack 2017 / MPII order).
_pv_joints = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
    "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
    "head_bottom", "nose", "head_top",
)
POSEVAL15 = KeypointLayout(
    name="poseval15",
    joints=_pv_joints,
    skeleton=_skeleton(_pv_joints, _BODY_SKELETON + [
        ("nose", "head_bottom"), ("nose", "head_top"), ("head_bottom", "left_shoulder"),
        ("head_bottom", "right_shoulder")]),
    sigmas=tuple(POSETRACK18.sigmas[POSETRACK18.index(j)] for j in _pv_joints),
    flip_pairs=_pairs(_pv_joints),
)

LAYOUTS: dict[str, KeypointLayout] = {l.name: l for l in (COCO17, POSETRACK18, POSEVAL15)}


def get_layout(layout: str | KeypointLayout) -> KeypointLayout:
    if isinstance(layout, KeypointLayout):
        return layout
    try:
        return LAYOUTS[layout]
    except KeyError:
        raise ValueError(f"unknown keypoint layout {layout!r}; known: {', '.join(LAYOUTS)}") from None


def _by_name(kpts: np.ndarray, src: KeypointLayout, dst: KeypointLayout) -> np.ndarray:
    """Copy joints that exist in both layouts; others get (0, 0, 0)."""
    out = np.zeros(kpts.shape[:-2] + (dst.num_joints, 3), dtype=kpts.dtype if kpts.dtype.kind == "f" else np.float64)
    for j, name in enumerate(dst.joints):
        if name in src.joints:
            out[..., j, :] = kpts[..., src.index(name), :]
    return out


def _derive_head(coco: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """head_bottom and head_top (x, y, score) from COCO-17 nose and shoulders."""
    nose = coco[..., 0, :]
    ls, rs = coco[..., 5, :], coco[..., 6, :]
    mid = (ls[..., :2] + rs[..., :2]) / 2
    axis = nose[..., :2] - mid
    score = np.minimum(np.minimum(nose[..., 2], ls[..., 2]), rs[..., 2])
    present = (score > 0)[..., None]  # an absent joint is (0, 0, 0), not a stray position
    bottom = np.concatenate([mid + HEAD_BOTTOM_ALONG * axis, score[..., None]], axis=-1) * present
    top = np.concatenate([mid + HEAD_TOP_ALONG * axis, score[..., None]], axis=-1) * present
    return bottom, top


def convert_keypoints(kpts: np.ndarray, src: str | KeypointLayout, dst: str | KeypointLayout) -> np.ndarray:
    """Convert keypoints ``(..., K_src, 3)`` from one layout to another.

    Joints that ``dst`` has and ``src`` lacks are (0, 0, 0) (= not present),
    except head_bottom / head_top from COCO-17, which are derived (see module doc).
    """
    src, dst = get_layout(src), get_layout(dst)
    kpts = np.asarray(kpts, dtype=np.float64)
    if kpts.shape[-2:] != (src.num_joints, 3):
        raise ValueError(f"keypoints of shape {kpts.shape} do not fit layout {src.name} ({src.num_joints} joints)")
    if src == dst:
        return kpts.copy()
    out = _by_name(kpts, src, dst)
    if src == COCO17 and "head_bottom" in dst.joints:
        bottom, top = _derive_head(kpts)
        out[..., dst.index("head_bottom"), :] = bottom
        out[..., dst.index("head_top"), :] = top
    if src == COCO17 and dst == POSETRACK18:
        # PoseTrack never annotates ears; keep the slots empty like its files.
        out[..., 3:5, :] = 0
    return out
