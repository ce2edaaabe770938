"""Move poses from one frame to another with the correspondence network.

``propagate`` is the primitive the tracker uses (paper section 5): every
keypoint of every person of frame a goes to the argmax of its (refined)
affinity map in frame b, with sub-cell precision, mapped back through the
letterbox to image coordinates; its score is the map's maximum. The maps are
returned too (``CorrMaps``) so that the tracker can score candidates with
``correspondence_similarity`` (paper eq. 6) without running the network again.

Frames are RGB uint8 (H, W, 3), as everywhere in the pipeline. Features of a
frame can be computed once with ``frame_features`` and passed in for both
pairs the frame belongs to.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from corrtrack.models.buckets import pad_batch
from corrtrack.models.corr_codec import (Letterbox, body_consensus, consensus_sqdist, decode_maps, grid_to_image,
                                         image_to_grid, sample_maps)
from corrtrack.structures import RECOVERED, Poses


@dataclass
class FrameFeatures:
    """The correspondence features of one frame (computed once, used for both its pairs)."""

    features: torch.Tensor  # (1, C, h, w), L2-normalised per pixel
    letterbox: Letterbox


@dataclass
class CorrMaps:
    """Maps of the N source persons in the destination frame.

    ``maps`` (N, K, h, w): refined maps (0..1, sigmoid) or, without refinement,
    the softmax affinity maps. ``source_valid`` (N, K): which source joints were
    propagated (the others' maps are all zero).
    """

    maps: torch.Tensor
    letterbox: Letterbox
    stride: int
    source_valid: np.ndarray
    refined: bool

    def __len__(self) -> int:
        return self.maps.shape[0]

    def values_at(self, poses: Poses) -> np.ndarray:
        """(N, M, K): the value of source person n's map k at joint k of each of the M ``poses``."""
        n, m = len(self), len(poses)
        if n == 0 or m == 0:
            return np.zeros((n, m, self.maps.shape[1]))
        grid = image_to_grid(poses.keypoints[..., :2], self.letterbox, self.stride)  # (M, K, 2)
        g = torch.as_tensor(grid, dtype=self.maps.dtype, device=self.maps.device)[None].expand(n, -1, -1, -1)
        return sample_maps(self.maps, g).double().cpu().numpy()


def frame_features(net, image_rgb: np.ndarray) -> FrameFeatures:
    """Letterbox one RGB frame and run the Siamese branch on it."""
    with torch.inference_mode():
        x, boxes = net.to_input([image_rgb])
        return FrameFeatures(net.features(x), boxes[0])


def motion_prior(maps: torch.Tensor, grid_a: np.ndarray, valid: np.ndarray, sigma: float) -> torch.Tensor:
    """Maps (N, K, h, w) weighted by where each person as a whole went.

    A person's joints move together more than their maps know: a joint whose map peaks on someone
    else, or on the mirrored limb, has usually moved unlike the rest of its body. Every joint's map
    is multiplied by a Gaussian of ``sigma`` x the person's size around the place its body says it
    went (``body_consensus``: its source place + the median displacement of the person's joints). A
    peak near where the body went is kept; one far from it loses to a weaker peak in the right place.
    """
    n, k, h, w = maps.shape
    if n == 0 or sigma <= 0:
        return maps
    centre, size = body_consensus(maps, torch.as_tensor(grid_a), torch.as_tensor(valid))
    d2 = consensus_sqdist(centre.to(maps.device), size.to(maps.device), h, w)
    return maps * torch.exp(-d2 / (2 * sigma * sigma)).to(maps.dtype)


def propagate(net, frame_a: np.ndarray | None, frame_b: np.ndarray | None, poses_a: Poses,
              feats_a: FrameFeatures | None = None, feats_b: FrameFeatures | None = None,
              use_refinement: bool = True, joint_thresh: float = 0.0,
              prior: float = 0.0) -> tuple[Poses, CorrMaps]:
    """Poses of frame a moved to frame b, and the maps they were read from.

    Joints of ``poses_a`` with score <= ``joint_thresh`` are not propagated
    (score 0 in the result). Each propagated joint's score is the maximum of
    its map: the refined map (0..1) by default, the softmax affinity map with
    ``use_refinement=False``. ``prior`` > 0 weights the maps first by where the
    whole person went (``motion_prior``, sigma = ``prior`` x the person's size).
    Track ids are kept; origin becomes RECOVERED.
    """
    if feats_a is None:
        feats_a = frame_features(net, frame_a)
    if feats_b is None:
        feats_b = frame_features(net, frame_b)
    stride = net.config.stride
    n, k = len(poses_a), poses_a.layout.num_joints
    if k != net.config.num_joints:
        raise ValueError(f"the correspondence model has {net.config.num_joints} joints, poses have {k}")
    f1, f2 = feats_a.features, feats_b.features
    h, w = f2.shape[-2:]
    valid = poses_a.keypoints[..., 2] > joint_thresh
    if n == 0:
        maps = torch.zeros((0, k, h, w), device=f2.device)
    else:
        grid = image_to_grid(poses_a.keypoints[..., :2], feats_a.letterbox, stride)
        with torch.inference_mode():
            g = pad_batch(torch.as_tensor(grid, dtype=f1.dtype, device=f1.device))  # GPU: few shapes
            nb = len(g)
            mask = torch.zeros((nb, k), dtype=f1.dtype, device=f1.device)
            mask[:n] = torch.as_tensor(valid, dtype=f1.dtype, device=f1.device)
            mask = mask[None, :, :, None, None]
            maps = net.affinity(f1, f2, g.reshape(1, nb * k, 2)).reshape(1, nb, k, h, w) * mask
            if use_refinement:
                if f1.shape != f2.shape:
                    raise ValueError("refinement needs both frames on the same canvas size")
                consensus = None
                if net.config.refine_prior:  # the refinement's learnt motion prior reads the Siamese maps
                    centre, size = body_consensus(maps[0], g, mask[0, :, :, 0, 0], net.config.refine_prior_motion)
                    consensus = (centre[None].to(f1.device), size[None].to(f1.device))
                maps = net.refine(f1, f2, maps, consensus=consensus) * mask
            maps = maps[0, :n]
            if prior > 0:
                maps = motion_prior(maps, grid, valid, prior)
    dec = decode_maps(maps).double().cpu().numpy().reshape(n, k, 3)
    kp = np.zeros((n, k, 3))
    kp[..., :2] = grid_to_image(dec[..., :2], feats_b.letterbox, stride)
    kp[..., 2] = np.where(valid, dec[..., 2], 0.0)
    kp[~valid, :2] = 0.0
    moved = Poses(kp, poses_a.layout, track_ids=poses_a.track_ids.copy(),
                  origin=np.full(n, RECOVERED, np.int8))
    return moved, CorrMaps(maps, feats_b.letterbox, stride, valid, use_refinement)


def correspondence_similarity(maps: CorrMaps, candidates: Poses, joint_thresh: float = 0.1,
                              min_affinity: float = 0.1, scale: float = 1.0) -> np.ndarray:
    """Paper eq. 6: (T, C) similarity of the T source persons of ``maps`` to ``candidates``.

    For track t and candidate c: the mean over the track's propagated joints
    (source score > the tracker's joint threshold when it called ``propagate``)
    of the value of the track's map k at the candidate's joint k; values below
    ``min_affinity`` and candidate joints with score <= ``joint_thresh`` count 0.
    ``scale`` multiplies the map values first (clipped to 1), e.g. to put softmax
    maps on the refined maps' scale.
    """
    t, c = len(maps), len(candidates)
    if t == 0 or c == 0:
        return np.zeros((t, c))
    vals = maps.values_at(candidates)  # (T, C, K)
    if scale != 1.0:
        vals = np.minimum(vals * scale, 1.0)
    vals = np.where(vals >= min_affinity, vals, 0.0)
    vals = vals * (candidates.keypoints[..., 2] > joint_thresh)[None] * maps.source_valid[:, None, :]
    n_joints = maps.source_valid.sum(1)
    return vals.sum(-1) / np.maximum(n_joints, 1)[:, None]
