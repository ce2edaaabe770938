"""Similarities between tracks and the candidate poses of a frame, by CLI name.

A similarity is a pure function ``(tracks, candidates, context) -> (T, C)``
matrix in [0, 1]: ``tracks`` holds the last pose of each active track (in the
frame where it was last seen), ``candidates`` the poses of the current frame,
and ``context`` what some similarities need beyond the poses (images, the
tracks' keypoints propagated to this frame, correspondence maps, embeddings).
Register new ones with ``@register_similarity("name")``.

OKS here follows COCO with the *first* argument as the reference: its joints
above the joint threshold count, a reference joint the other pose lacks scores
0, and the scale s^2 is the area of the reference's box (the detector's box in
the pipeline, as FlowTrack and PoseFlow do; for poses without one, the tight
box around the joints). A tight joint box would be too strict for people seen
from the side (a narrow box): 10 px of walking would already fail the match.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from corrtrack.structures import Poses

SimilarityFn = Callable[[Poses, Poses, "FrameContext"], np.ndarray]
_REGISTRY: dict[str, SimilarityFn] = {}


def register_similarity(name: str) -> Callable[[SimilarityFn], SimilarityFn]:
    def deco(fn: SimilarityFn) -> SimilarityFn:
        if name in _REGISTRY:
            raise ValueError(f"similarity {name!r} registered twice")
        _REGISTRY[name] = fn
        return fn

    return deco


def get_similarity(name: str) -> SimilarityFn:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown similarity {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def similarity_names() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


@dataclass
class FrameContext:
    """What some similarities need besides the poses; unused fields stay None.

    ``propagated`` is aligned with ``tracks``: each track's keypoints moved to
    the current frame (optical flow or correspondences), joint score = the
    propagation's confidence. ``corr_maps`` is what the correspondence
    network's ``propagate`` returned for ``tracks`` (read only by ``corr``).
    """

    image: np.ndarray | None = None  # current frame, RGB (H, W, 3) uint8
    prev_image: np.ndarray | None = None  # the frame the tracks were last seen in, if they share one
    image_size: tuple[int, int] | None = None  # (width, height)
    propagated: Poses | None = None
    corr_maps: Any = None
    track_embeddings: np.ndarray | None = None  # (T, D) L2-normalised
    candidate_embeddings: np.ndarray | None = None  # (C, D) L2-normalised
    joint_thresh: float = 0.1  # joints below this score count as absent
    corr_joint_conf: float = 0.1  # eq. 6 only counts affinities above this
    corr_oks: bool = False  # corr: max of eq. 6 and OKS(propagated joints, candidate)


# -- geometry ---------------------------------------------------------------

def box_areas(poses: Poses) -> np.ndarray:
    """Area of each pose's box (>= 1 px²), the OKS scale."""
    wh = np.clip(poses.boxes[:, 2:] - poses.boxes[:, :2], 0, None)
    return np.maximum(wh.prod(1), 1.0)


def keypoint_similarity(ref: Poses, other: Poses, joint_thresh: float = 0.1) -> np.ndarray:
    """Per-joint COCO keypoint similarity ``(R, O, K)``; 0 where either joint is absent."""
    other = other.to_layout(ref.layout)
    sig = np.asarray(ref.layout.sigmas, np.float64)
    if sig.size != ref.layout.num_joints:
        raise ValueError(f"layout {ref.layout.name} has no OKS sigmas")
    a, b = ref.keypoints, other.keypoints
    d2 = ((a[:, None, :, :2] - b[None, :, :, :2]) ** 2).sum(-1)
    area = box_areas(ref)[:, None, None]
    ks = np.exp(-d2 / (2.0 * area * (2.0 * sig) ** 2))
    both = (a[:, None, :, 2] > joint_thresh) & (b[None, :, :, 2] > joint_thresh)
    return np.where(both, ks, 0.0)


def oks_matrix(ref: Poses, other: Poses, joint_thresh: float = 0.1) -> np.ndarray:
    """OKS ``(R, O)`` with ``ref`` as the reference (see the module doc)."""
    if len(ref) == 0 or len(other) == 0:
        return np.zeros((len(ref), len(other)))
    ks = keypoint_similarity(ref, other, joint_thresh)
    n = (ref.keypoints[..., 2] > joint_thresh).sum(-1)
    return ks.sum(-1) / np.maximum(n, 1)[:, None]


def mirror_oks_matrix(ref: Poses, other: Poses, joint_thresh: float = 0.1) -> np.ndarray:
    """OKS ``(R, O)`` that also counts ``other`` with its left and right joints swapped.

    A top-down crop that holds two people can give the wrong one's pose, sometimes
    mirrored (MoveNet confuses a person's left and right when seen from the back): plain OKS
    to the true pose is then ~0 and the copy survives OKS-NMS. On vtest.avi a crop from a
    narrow box at the frame's edge returned the walker next to it, mirrored, and took his
    track id for a frame. The tracker's OKS-NMS uses this OKS."""
    plain = oks_matrix(ref, other, joint_thresh)
    if len(other) == 0 or not ref.layout.flip_pairs:
        return plain
    other = other.to_layout(ref.layout)
    mirrored = other.replace(keypoints=other.keypoints[:, ref.layout.flip_permutation()])
    return np.maximum(plain, oks_matrix(ref, mirrored, joint_thresh))


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of xyxy boxes ``(A, 4)`` x ``(B, 4)``."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


# -- optical flow (the FlowTrack baseline) -----------------------------------

def dis_flow(prev_rgb: np.ndarray, next_rgb: np.ndarray) -> np.ndarray:
    """Dense OpenCV DIS flow (medium preset) from ``prev`` to ``next``: (H, W, 2) dx, dy."""
    import cv2

    g0 = cv2.cvtColor(np.ascontiguousarray(prev_rgb), cv2.COLOR_RGB2GRAY)
    g1 = cv2.cvtColor(np.ascontiguousarray(next_rgb), cv2.COLOR_RGB2GRAY)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(g0, g1, None)


def flow_propagate(poses: Poses, flow: np.ndarray) -> Poses:
    """Move every joint by the flow at its (bilinearly sampled) position; scores unchanged."""
    import cv2

    kp = poses.keypoints.copy()
    if len(kp):
        xy = kp[..., :2].reshape(1, -1, 2).astype(np.float32)
        h, w = flow.shape[:2]
        fx = cv2.remap(flow[..., 0], xy[..., 0], xy[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        fy = cv2.remap(flow[..., 1], xy[..., 0], xy[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        kp[..., 0] += fx.reshape(kp.shape[:2])
        kp[..., 1] += fy.reshape(kp.shape[:2])
        kp[..., 0] = np.clip(kp[..., 0], 0, w - 1)
        kp[..., 1] = np.clip(kp[..., 1], 0, h - 1)
    shift = np.zeros_like(poses.boxes)
    if len(kp):
        d = kp[..., :2] - poses.keypoints[..., :2]
        ok = poses.keypoints[..., 2] > 0
        mean = np.where(ok[..., None], d, 0).sum(1) / np.maximum(ok.sum(1), 1)[:, None]
        shift = np.concatenate([mean, mean], axis=1)
    return poses.replace(keypoints=kp, boxes=poses.boxes + shift)


# -- the registered similarities --------------------------------------------

@register_similarity("oks")
def oks_similarity(tracks: Poses, candidates: Poses, context: FrameContext) -> np.ndarray:
    """OKS between each track's last pose and each candidate."""
    return oks_matrix(tracks, candidates, context.joint_thresh)


@register_similarity("iou")
def iou_similarity(tracks: Poses, candidates: Poses, context: FrameContext) -> np.ndarray:
    """IoU of the track's last box and the candidate's box."""
    return iou_matrix(tracks.boxes, candidates.boxes)


@register_similarity("flow")
def flow_similarity(tracks: Poses, candidates: Poses, context: FrameContext) -> np.ndarray:
    """OKS between the track's keypoints moved by DIS optical flow and each candidate (FlowTrack)."""
    moved = context.propagated
    if moved is None:
        if context.prev_image is None or context.image is None:
            raise ValueError("the flow similarity needs the previous and the current image")
        moved = flow_propagate(tracks, dis_flow(context.prev_image, context.image))
    return oks_matrix(moved, candidates, context.joint_thresh)


@register_similarity("reid")
def reid_similarity(tracks: Poses, candidates: Poses, context: FrameContext) -> np.ndarray:
    """Cosine similarity of person-crop embeddings (clipped at 0: post-ReLU features are never opposite)."""
    a, b = context.track_embeddings, context.candidate_embeddings
    if a is None or b is None:
        raise ValueError("the reid similarity needs track and candidate embeddings")
    if len(a) != len(tracks) or len(b) != len(candidates):
        raise ValueError(f"reid: {len(a)}/{len(b)} embeddings for {len(tracks)} tracks / {len(candidates)} candidates")
    return np.clip(np.asarray(a) @ np.asarray(b).T, 0.0, 1.0)


def keypoint_votes(tracks: Poses, candidates: Poses, joint_thresh: float = 0.1, ks_thresh: float = 0.5) -> np.ndarray:
    """Fraction ``(T, C)`` of each track's joints that land on the candidate's same joint.

    A joint "lands" when its keypoint similarity is at least ``ks_thresh``
    (0.5 = about one joint-sigma of the person's scale). Used for duplicate
    removal when there are no correspondence maps (pass the tracks' propagated
    keypoints where a similarity moved them).
    """
    if len(tracks) == 0 or len(candidates) == 0:
        return np.zeros((len(tracks), len(candidates)))
    hit = keypoint_similarity(tracks, candidates, joint_thresh) >= ks_thresh
    n = (tracks.keypoints[..., 2] > joint_thresh).sum(-1)
    return hit.sum(-1) / np.maximum(n, 1)[:, None]


# The refinement module learns Gaussian maps of peak 1 and sigma 1 cell (paper eq. 3). A Siamese
# softmax map that puts the same mass on the same place (sum 2*pi*sigma^2 for that Gaussian) peaks at
# 1/(2*pi), so softmax maps are scaled by 2*pi (and clipped to 1): then eq. 6, its threshold and the
# propagation confidence mean the same with or without refinement. On the quick synthetic suite,
# eq. 6 of the right consecutive-frame match has median 0.11 on raw softmax maps (0.69 scaled) and
# 0.54 on refined maps; the wrong matches' 99th percentile is 0.012 (0.075 scaled) and 0.056.
SOFTMAX_SCALE = 2 * np.pi


def map_scale(corr_maps: Any) -> float:
    """Factor that puts a propagator's maps on the refined maps' 0..1 scale (1 when refined or unknown)."""
    return 1.0 if getattr(corr_maps, "refined", True) else SOFTMAX_SCALE


def propagation_confidence(moved: Poses, corr_maps: Any) -> Poses:
    """``moved`` with joint scores (map maxima) on the refined maps' scale; see ``map_scale``."""
    scale = map_scale(corr_maps)
    if scale == 1.0 or len(moved) == 0:
        return moved
    kp = moved.keypoints.copy()
    kp[..., 2] = np.minimum(kp[..., 2] * scale, 1.0)
    return moved.replace(keypoints=kp)


def corr_values(corr_maps: Any, candidates: Poses) -> np.ndarray:
    """(T, C, K): track t's map k at candidate c's joint k, on the refined maps' 0..1 scale."""
    return np.minimum(corr_maps.values_at(candidates) * map_scale(corr_maps), 1.0)


@register_similarity("corr")
def corr_similarity(tracks: Poses, candidates: Poses, context: FrameContext) -> np.ndarray:
    """Paper eq. 6: mean over the track's propagated joints of its map's value at the candidate's
    same joint; values below ``corr_joint_conf`` and candidate joints below the joint threshold
    count 0. Softmax maps (no refinement) are first put on the refined maps' scale (``map_scale``)."""
    maps = context.corr_maps
    if maps is None:
        raise ValueError("the corr similarity needs the correspondence maps of the tracks")
    if len(maps) != len(tracks):
        raise ValueError(f"corr: maps of {len(maps)} persons for {len(tracks)} tracks")
    from corrtrack.pipeline.propagate import correspondence_similarity

    sim = correspondence_similarity(maps, candidates, joint_thresh=context.joint_thresh,
                                    min_affinity=context.corr_joint_conf, scale=map_scale(maps))
    if context.corr_oks:
        if context.propagated is None:
            raise ValueError("corr_oks needs the tracks' propagated joints")
        sim = np.maximum(sim, oks_matrix(context.propagated, candidates, context.joint_thresh))
    return sim


def correspondence_votes(corr_maps: Any, candidates: Poses, joint_thresh: float = 0.1,
                         min_affinity: float = 0.1) -> np.ndarray:
    """Fraction ``(T, C)`` of each track's propagated joints whose map is at least ``min_affinity``
    at the candidate's same joint: the joints whose correspondence the candidate "takes" (the
    quantity eq. 6 averages, counted instead of summed)."""
    t, c = len(corr_maps), len(candidates)
    if t == 0 or c == 0:
        return np.zeros((t, c))
    hit = corr_values(corr_maps, candidates) >= min_affinity
    hit &= (candidates.keypoints[..., 2] > joint_thresh)[None] & corr_maps.source_valid[:, None, :]
    return hit.sum(-1) / np.maximum(corr_maps.source_valid.sum(1), 1)[:, None]
