"""Compositing people into a frame, and the exact ground truth of what it shows.

Each person is its cut-out moved by one 2x3 affine transform per frame::

    M = T(foot + shake) . R(rotation) . S(scale) . F(flip) . T(-anchor)

and the same M moves its mask, its pixels and its keypoints, so a keypoint
lands on the same body pixel it was annotated on. People are drawn far to
near (by foot row); each frame keeps an *owner map*: which person's mask
covers each pixel last (the warped alpha >= 0.5). A joint is **visible** when

* it was kept on the cut-out (labelled and on its mask, see ``people``),
* its pixel — ``floor(x + 0.5), floor(y + 0.5)``, integer pixel centres as in
  OpenCV's warps — lies inside the frame, and
* the owner map there is the person itself (its own mask, not covered by a
  nearer person or a nearer static occluder).

Static occluders (poles, signs: ``corrtrack.synth.occluders``) are layers
like the people, placed by their foot row among them; they own their pixels
(codes after the people's), so a joint under one is invisible and, in the
truth, counts as covered by ``occluder_name(j)``.

Everything else is invisible and left out of the ground truth, as PoseTrack
leaves out joints it could not see. Flipping a person horizontally swaps the
labels of left and right joints (``flip_permutation``), so "left wrist" stays
the person's left wrist.

The head box PCKh needs (PoseTrack's ``bbox_head``) comes from the transformed
``head_bottom`` and ``head_top``: in PoseTrack 2018's own annotations (all 14
people of the val files in shared/data) the head box diagonal is exactly
1.429 times the head_bottom–head_top distance L and its centre lies 0.071 L
from their midpoint towards head_top. We use that relation with a square box
(PCKh only uses the diagonal). It is computed whether or not the head joints
are visible.

Pixels change in ways that do not move the geometry: motion blur smears a
person's pixels and alpha along its motion (the owner map uses the unblurred
alpha), brightness scales the whole frame, JPEG re-encoding adds compression
artefacts.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from corrtrack.layouts import COCO17, POSETRACK18, convert_keypoints
from corrtrack.synth.motion import PERSON_HEIGHT_M, Camera, PersonPlan
from corrtrack.synth.people import Cutout

HEAD_DIAGONAL = 1.429  # head-box diagonal / |head_top - head_bottom| in PoseTrack 2018
HEAD_CENTRE_SHIFT = 0.071  # box centre beyond the midpoint, towards head_top, in units of L
K_PT, K_COCO = POSETRACK18.num_joints, COCO17.num_joints
_PT_FLIP = POSETRACK18.flip_permutation()
_COCO_FLIP = COCO17.flip_permutation()
_HB, _HT = POSETRACK18.index("head_bottom"), POSETRACK18.index("head_top")


def _on_mask(mask: np.ndarray, xy: np.ndarray) -> np.ndarray:
    px = np.floor(xy + 0.5).astype(np.int64)
    h, w = mask.shape
    ok = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
    out = np.zeros(len(xy), bool)
    out[ok] = mask[px[ok, 1], px[ok, 0]]
    return out


@dataclass
class Actor:
    """A person of a sequence: its cut-out, its track id and its motion."""

    track_id: int
    cutout: Cutout
    plan: PersonPlan
    lookalike_of: int | None = None
    rgba: np.ndarray = field(init=False, repr=False)  # premultiplied: rgb is 0 off the mask
    points: np.ndarray = field(init=False, repr=False)  # (K_PT + K_COCO, 2) crop coordinates
    keep: np.ndarray = field(init=False, repr=False)  # (K_PT + K_COCO,) kept on the cut-out
    mask_area: int = field(init=False)

    def __post_init__(self) -> None:
        c = self.cutout
        alpha = np.where(c.mask, 255, 0).astype(np.uint8)
        self.rgba = np.dstack([c.rgb, alpha])
        # PoseTrack joints from the raw labels (head_bottom/head_top are derived
        # from nose and shoulders), then kept only where they lie on the mask.
        pt = convert_keypoints(c.labelled, COCO17, POSETRACK18)
        pt_keep = (pt[:, 2] > 0) & _on_mask(c.mask, pt[:, :2])
        self.points = np.concatenate([pt[:, :2], c.labelled[:, :2]])
        self.keep = np.concatenate([pt_keep, c.keypoints[:, 2] > 0])
        self.mask_area = int(c.mask.sum())


@dataclass
class Sprite:
    """A static object standing on the ground (an occluder): premultiplied RGBA like a person's layer."""

    rgba: np.ndarray
    anchor: np.ndarray  # (2,) crop point that stands on the ground
    foot: tuple[float, float]  # image position of that point, without camera shake

    def transform(self, shake: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        """The 2x3 transform from crop coordinates to the frame: a translation, moved with the camera shake."""
        return np.array([[1.0, 0.0, self.foot[0] + shake[0] - self.anchor[0]],
                         [0.0, 1.0, self.foot[1] + shake[1] - self.anchor[1]]])


def occluder_name(j: int) -> str:
    """How static occluder ``j`` is named where people are named by track id (``covered_by``, events)."""
    return f"occluder {j}"


@dataclass
class PersonTruth:
    """What one person is in one frame."""

    in_frame: bool  # any of its mask pixels inside the frame
    own_pixels: int  # its mask pixels inside the frame
    visible_pixels: int  # of those, not covered by nearer people
    covered_by: dict  # track id (a person) or occluder_name(j) (static occluder j) -> pixels of this person it covers
    points: np.ndarray  # (K_PT + K_COCO, 2), rounded to 0.01 px
    visible: np.ndarray  # (K_PT + K_COCO,) bool
    occluded: np.ndarray  # (K_PT + K_COCO,) kept, in the frame, but covered by a nearer person or occluder
    head_box: np.ndarray  # (4,) xyxy
    box: np.ndarray | None  # (4,) xyxy of its visible pixels (x2, y2 exclusive), None if none
    full_box: np.ndarray | None  # (4,) xyxy of its whole mask in the frame
    height_px: float  # standing height at this depth
    foot: np.ndarray  # (2,) image position of the feet
    flipped: bool


def transform(actor: Actor, cam: Camera, k: int, flipped: bool, shake: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """The 2x3 affine transform from crop coordinates to the frame at base frame ``k``."""
    p = actor.plan
    X, Z = p.X[k], p.Z[k]
    u, v = cam.project(X, Z)
    height = cam.pixels_per_metre(Z) * PERSON_HEIGHT_M * p.height_factor
    s = height / actor.cutout.height_px
    th = np.deg2rad(p.rotation(k))
    c, sn = np.cos(th), np.sin(th)
    fx = -s if flipped else s
    ax, ay = actor.cutout.anchor
    A = np.array([[c * fx, -sn * s], [sn * fx, c * s]])
    t = np.array([u + shake[0], v + shake[1]]) - A @ np.array([ax, ay])
    return np.column_stack([A, t])


def facing(actor: Actor, cam: Camera, min_speed_px: float = 0.3) -> np.ndarray:
    """Per base frame: is the person drawn flipped? It faces where it walks (image x)."""
    u, _ = cam.project(actor.plan.X, actor.plan.Z)
    vx = np.gradient(u)
    right = np.empty(len(u), bool)
    moving = np.flatnonzero(np.abs(vx) > min_speed_px)
    cur = bool(vx[moving[0]] > 0) if len(moving) else actor.cutout.faces_right
    for k in range(len(u)):
        if abs(vx[k]) > min_speed_px:
            cur = bool(vx[k] > 0)
        right[k] = cur
    return right != actor.cutout.faces_right


def _motion_kernel(dx: float, dy: float, blur: float) -> np.ndarray | None:
    n = int(round(np.hypot(dx, dy) * blur))
    if n < 2:
        return None
    size = 2 * (n // 2) + 1
    ker = np.zeros((size, size), np.float32)
    c = size // 2
    d = np.array([dx, dy]) / max(1e-9, np.hypot(dx, dy))
    for s in np.linspace(-n / 2, n / 2, 2 * n + 1):
        x, y = int(round(c + s * d[0])), int(round(c + s * d[1]))
        if 0 <= x < size and 0 <= y < size:
            ker[y, x] = 1
    return ker / ker.sum()


def _composite(frame: np.ndarray, owner: np.ndarray, code: int, rgba: np.ndarray, M: np.ndarray,
               ker: np.ndarray | None) -> tuple[int, int, np.ndarray] | None:
    """Draw one layer over ``frame`` and give its pixels (warped alpha >= 0.5) to ``code`` in ``owner``.

    Returns where its mask landed (x0, y0, mask), or None when none of it is in the frame.
    """
    import cv2

    H, W = frame.shape[:2]
    h, w = rgba.shape[:2]
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], np.float64) @ M.T
    pad = 2 + (ker.shape[0] // 2 if ker is not None else 0)
    x0, y0 = np.floor(corners.min(0)).astype(int) - pad
    x1, y1 = np.ceil(corners.max(0)).astype(int) + pad + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
    if x1 <= x0 or y1 <= y0:
        return None
    Mr = M.copy()
    Mr[:, 2] -= (x0, y0)
    warped = cv2.warpAffine(rgba, Mr, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    occ = warped[..., 3] >= 128
    if not occ.any():
        return None
    if ker is not None:
        warped = cv2.filter2D(warped, -1, ker, borderType=cv2.BORDER_CONSTANT)
    alpha = warped[..., 3:4].astype(np.uint16)
    roi = frame[y0:y1, x0:x1]
    mixed = (roi.astype(np.uint16) * (255 - alpha) + 127) // 255 + warped[..., :3]
    roi[:] = np.minimum(mixed, 255).astype(np.uint8)
    owner[y0:y1, x0:x1][occ] = code
    return x0, y0, occ


def render_frame(background: np.ndarray, actors: list[Actor], transforms: list[np.ndarray],
                 heights: list[float], flips: list[bool], velocities: list[tuple[float, float]] | None = None,
                 blur: float = 0.0, occluders: list[tuple[Sprite, np.ndarray]] = ()
                 ) -> tuple[np.ndarray, list[PersonTruth]]:
    """Composite the actors and static ``occluders`` (sprite, transform) far to near over ``background``.

    Returns the frame and the truth of each actor.
    """
    H, W = background.shape[:2]
    frame = background.copy()
    owner = np.full((H, W), -1, np.int16)
    # Layer i is actor i, then the occluders; the layer index is the owner code.
    rgbas = [a.rgba for a in actors] + [sp.rgba for sp, _ in occluders]
    Ms = list(transforms) + [M for _, M in occluders]
    anchors = [a.cutout.anchor for a in actors] + [sp.anchor for sp, _ in occluders]
    foot_rows = [M[1, :2] @ anchor + M[1, 2] for M, anchor in zip(Ms, anchors)]
    order = sorted(range(len(rgbas)), key=lambda i: (foot_rows[i], i))  # far (high in the image) first
    layers: dict[int, tuple] = {}
    for i in order:
        moving = blur > 0 and velocities and i < len(actors)  # static occluders are not blurred
        ker = _motion_kernel(*velocities[i], blur) if moving else None
        placed = _composite(frame, owner, i, rgbas[i], Ms[i], ker)
        if placed is not None:
            layers[i] = placed

    truths = []
    for i, a in enumerate(actors):
        M = transforms[i]
        pts = np.round(a.points @ M[:, :2].T + M[:, 2], 2)
        if flips[i]:  # mirrored: the joint drawn where a left joint was is now a right one
            perm = np.concatenate([_PT_FLIP, K_PT + _COCO_FLIP])
            pts, keep = pts[perm], a.keep[perm]
        else:
            keep = a.keep
        px = np.floor(pts + 0.5).astype(np.int64)
        inside = (px[:, 0] >= 0) & (px[:, 0] < W) & (px[:, 1] >= 0) & (px[:, 1] < H)
        who = np.full(len(pts), -2, np.int64)
        who[inside] = owner[px[inside, 1], px[inside, 0]]
        visible = keep & inside & (who == i)
        occluded = keep & inside & (who >= 0) & (who != i)
        hb, ht = pts[_HB], pts[_HT]
        L = float(np.hypot(*(ht - hb)))
        centre = (hb + ht) / 2 + HEAD_CENTRE_SHIFT * (ht - hb)
        half = HEAD_DIAGONAL * L / np.sqrt(2) / 2
        head = np.round(np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half]), 2)
        foot = M[:, :2] @ a.cutout.anchor + M[:, 2]
        if i in layers:
            x0, y0, occ = layers[i]
            mine = owner[y0:y0 + occ.shape[0], x0:x0 + occ.shape[1]][occ]
            own = int(occ.sum())
            counts = np.bincount(mine + 1, minlength=len(rgbas) + 1)
            vis = int(counts[i + 1])
            covered = {actors[j].track_id: int(counts[j + 1]) for j in range(len(actors)) if j != i and counts[j + 1]}
            covered.update({occluder_name(j): int(counts[len(actors) + j + 1]) for j in range(len(occluders))
                            if counts[len(actors) + j + 1]})
            ys, xs = np.nonzero(occ)
            full_box = np.array([xs.min() + x0, ys.min() + y0, xs.max() + x0 + 1, ys.max() + y0 + 1], np.float64)
            box = None
            if vis:
                sel = owner[y0:y0 + occ.shape[0], x0:x0 + occ.shape[1]] == i
                ys, xs = np.nonzero(sel)
                box = np.array([xs.min() + x0, ys.min() + y0, xs.max() + x0 + 1, ys.max() + y0 + 1], np.float64)
            truths.append(PersonTruth(True, own, vis, covered, pts, visible, occluded, head, box, full_box,
                                      heights[i], foot, flips[i]))
        else:
            truths.append(PersonTruth(False, 0, 0, {}, pts, visible, occluded, head, None, None, heights[i], foot,
                                      flips[i]))
    return frame, truths
