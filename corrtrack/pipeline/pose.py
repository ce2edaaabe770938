"""Top-down pose estimation: crop around each person box, run MoveNet on all
crops of a frame as one batch, map the keypoints back to the image.

The crop. The paper crops boxes at aspect ratio 288:384 (w:h = 3:4) and
enlarges them; MoveNet takes a square. We therefore take the box centre, grow
the box to 3:4 (widen a thin box, heighten a wide one), enlarge it by
``padding`` and use the square around the result: its side is
``padding * max(h, w / aspect_ratio)``. For an upright person (w:h ≤ 3:4) that
is ``padding × box height``; a wide box (someone lying, arms spread) gets
proportionally more room. Pixels outside the image are black (zero padding,
as when a frame is padded to a square for MoveNet). On the 14 COCO people with
GT boxes, padding 1.0-1.4 and aspect 3:4 or 1:1 all gave thunder OKS-AP 72-79
(lightning 62-69): differences within the noise of so few people, so we keep
the paper's 3:4 and a 1.25 enlargement.

PoseNet (``models/posenet.py``, the paper's own network, trained with
``corrtrack train pose``) takes ``PoseConfig(model=<path to posenet.pt>)``. Its
crops are rectangles of the network's input shape (288 x 384 for the paper's
model): the same centre and height ``side`` as above with the box grown to the
network's aspect ratio, and width ``side * w / h`` - no square, no black bars
beyond those the image edges give.

Coordinates: boxes are xyxy with continuous edges (x2 - x1 = width);
keypoints come back in pixel-index coordinates (pixel (i, j) has centre
(j, i)), the convention of COCO/PoseTrack annotations and of OpenCV drawing.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from corrtrack.layouts import COCO17
from corrtrack.structures import CANDIDATE, DETECTED, Poses

MODELS = ("lightning", "thunder")
AUTO = "auto"  # thunder on a GPU, lightning on a CPU


def is_posenet_path(model: str) -> bool:
    """A ``PoseConfig.model`` that names a PoseNet file rather than a MoveNet variant."""
    return model not in MODELS and model != AUTO and (Path(model).suffix != "" or "/" in model or "\\" in model)


@dataclass(frozen=True)
class PoseConfig:
    """How people are cropped and which MoveNet runs.

    model: "auto", "thunder", "lightning", or the path of a PoseNet file (``corrtrack train
        pose`` writes OUT/posenet.pt). "auto" (default) = thunder on a GPU, lightning on a
        CPU, where speed decides whether tracking is usable. With ground-truth boxes thunder scores COCO
        OKS-AP 74.8 vs 63.0 for lightning (4 images, 14 people) and PoseTrack18
        mAP 56.0 vs 53.9 (benchmarks/bench_pose.py), at ~4× the CPU cost per
        person (single-thread CPU time ~60 vs ~15 ms; on a GPU both are ~3 ms
        per batch). "lightning" is the option for CPU-bound runs.
    aspect_ratio: w:h of the paper's crop (288:384).
    padding: box enlargement before squaring (paper-style 1.25).
    max_batch: crops per forward pass (bounds memory on crowded frames); on a CPU at most
        ``corrtrack.models.frozen.CPU_MAX_BATCH``.
    candidate_min_joint_score: a detector CANDIDATE (a box below the detector's score threshold,
        see ``DetectorConfig.candidate_threshold``) is kept when its pose's mean joint score reaches
        this (0.35: basketball2's truncated player and vtest's far walkers pass with lightning and
        thunder, the vtest traffic cone does not), unless OKS above ``candidate_oks`` says it
        repeats a person already kept.
    candidate_memory: in a video, a candidate whose box overlaps (IoU >= ``candidate_memory_iou``)
        one rejected by that check in the last ``candidate_memory`` frames is dropped without a
        pose estimate (``CandidateMemory``; 0 = estimate every candidate).
    frozen_cpu: on CPU, run MoveNet through ONNX Runtime or a frozen TorchScript trace (the
        estimator's ``runtime``; within 1e-3 of eager; ``corrtrack.models.frozen``).
    """

    model: str = AUTO
    aspect_ratio: float = 288 / 384
    padding: float = 1.25
    max_batch: int = 64
    candidate_min_joint_score: float = 0.35
    candidate_oks: float = 0.5
    candidate_memory: int = 4
    candidate_memory_iou: float = 0.8
    frozen_cpu: bool = True

    def __post_init__(self) -> None:
        if self.model not in MODELS and self.model != AUTO and not is_posenet_path(self.model):
            raise ValueError(f"pose model must be one of {MODELS} or a PoseNet file path, not {self.model!r}")
        if not self.aspect_ratio > 0 or not self.padding > 0 or self.max_batch < 1:
            raise ValueError("aspect_ratio and padding must be > 0 and max_batch >= 1")
        if self.candidate_memory < 0 or not 0 < self.candidate_memory_iou <= 1:
            raise ValueError("candidate_memory must be >= 0 frames and candidate_memory_iou in (0, 1]")


def crop_squares(boxes: np.ndarray, config: PoseConfig) -> np.ndarray:
    """(N, 4) xyxy boxes -> (N, 3) crop squares (centre x, centre y, side)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    w = np.maximum(boxes[:, 2] - boxes[:, 0], 0)
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    side = config.padding * np.maximum(h, w / config.aspect_ratio)
    # A degenerate box still gets a small crop instead of a division by zero.
    side = np.maximum(side, 2.0)
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2, side], 1)


def _wh(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if np.isscalar(size) else (int(size[0]), int(size[1]))


def crop_affines(squares: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """(N, 2, 3) affine maps from image pixel coordinates to crop pixel coordinates (cv2 convention).

    ``size``: S for an S x S crop of each square, or (w, h) for a w x h crop of the
    rectangle with the square's centre and height and width ``side * w / h``."""
    w, h = _wh(size)
    s = h / squares[:, 2]
    x0 = squares[:, 0] - squares[:, 2] * (w / h) / 2
    y0 = squares[:, 1] - squares[:, 2] / 2
    m = np.zeros((len(squares), 2, 3))
    m[:, 0, 0] = m[:, 1, 1] = s
    # pixel centres sit at +0.5 in continuous coordinates on both sides
    m[:, 0, 2] = (0.5 - x0) * s - 0.5
    m[:, 1, 2] = (0.5 - y0) * s - 0.5
    return m


def crops_to_image(yxs: np.ndarray, squares: np.ndarray, aspect: float = 1.0) -> np.ndarray:
    """Model output (N, K, 3) (y, x, score in 0..1 of the crop) -> (N, K, 3) image x, y, score.

    ``aspect``: the crop's w / h (1 for MoveNet's squares)."""
    x0 = squares[:, 0] - squares[:, 2] * aspect / 2
    y0 = squares[:, 1] - squares[:, 2] / 2
    side = squares[:, 2][:, None]
    out = np.empty(yxs.shape, np.float64)
    out[..., 0] = x0[:, None] + yxs[..., 1] * side * aspect - 0.5
    out[..., 1] = y0[:, None] + yxs[..., 0] * side - 0.5
    out[..., 2] = yxs[..., 2]
    return out


def crop_image(image_rgb: np.ndarray, squares: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """(N, h, w, 3) uint8 crops with cv2.warpAffine (black outside the image); ``size`` as in
    ``crop_affines``."""
    import cv2

    w, h = _wh(size)
    out = np.zeros((len(squares), h, w, 3), np.uint8)
    for i, m in enumerate(crop_affines(squares, size)):
        cv2.warpAffine(image_rgb, m, (w, h), dst=out[i], flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return out


def crop_tensor(frames, frame_of: np.ndarray, squares: np.ndarray, size: int | tuple[int, int]):
    """The same crops as ``cv2.warpAffine`` in ``TopDownPoseEstimator.crop``, on the frames' device:
    frames (B, C, H, W) float, crop i from frame ``frame_of[i]`` -> (N, h, w, C) float."""
    import torch
    import torch.nn.functional as F

    dev = frames.device
    h, w = frames.shape[-2:]
    cw, ch = _wh(size)
    a = cw / ch
    sq = torch.as_tensor(np.asarray(squares, np.float64).reshape(-1, 3), device=dev)
    # grid_sample's normalised coordinates: -1/+1 are the image's outer edges (align_corners=False)
    tx = (torch.arange(cw, device=dev, dtype=torch.float64) + 0.5) / cw
    ty = (torch.arange(ch, device=dev, dtype=torch.float64) + 0.5) / ch
    gx = (sq[:, None, 0] - sq[:, None, 2] * a / 2 + tx * sq[:, None, 2] * a) * (2 / w) - 1
    gy = (sq[:, None, 1] - sq[:, None, 2] / 2 + ty * sq[:, None, 2]) * (2 / h) - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), -1).to(frames.dtype)
    idx = torch.as_tensor(np.asarray(frame_of, np.int64), device=dev)
    crops = F.grid_sample(frames[idx], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return crops.permute(0, 2, 3, 1)


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Gray (H, W) / (H, W, 1), RGB or RGBA, uint8/uint16/float 0..255 -> (H, W, 3) uint8 RGB."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {image.shape}")
    image = image[..., :3]
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(np.nan_to_num(image), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


def _box_input(boxes, scores) -> tuple[np.ndarray, np.ndarray | None, Poses | None]:
    if isinstance(boxes, Poses):
        return boxes.boxes, boxes.scores if scores is None else scores, boxes
    arr = np.asarray(boxes, np.float64)
    if arr.size == 0:
        arr = arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] not in (4, 5):
        raise ValueError(f"boxes must be (N, 4) xyxy or (N, 5) xyxy+score, got shape {arr.shape}")
    if arr.shape[1] == 5 and scores is None:
        scores = arr[:, 4]
    if not np.isfinite(arr[:, :4]).all():
        raise ValueError("boxes contain NaN or infinite coordinates")
    return arr[:, :4], scores, None


def verify_candidates(poses: Poses, min_joint_score: float = 0.35, oks_thresh: float = 0.5) -> Poses:
    """Keep a CANDIDATE pose (a low-score detector box) only where it is a person the confident
    detections missed: its mean joint score reaches ``min_joint_score`` and its OKS to every pose
    kept before it (confident ones first, then candidates by score) stays at or below
    ``oks_thresh``. Kept candidates become DETECTED; other poses pass untouched, in order."""
    cand = poses.origin == CANDIDATE
    if not cand.any():
        return poses
    from corrtrack.pipeline.similarity import oks_matrix

    good = ~cand | (poses.keypoints[..., 2].mean(1) >= min_joint_score)
    oks = oks_matrix(poses, poses, joint_thresh=0.05)
    keep = ~cand
    for i in np.lexsort((-poses.scores, cand)):  # confident first (already kept), then candidates
        if cand[i] and good[i] and not (oks[keep, i] > oks_thresh).any():
            keep[i] = True
    out = poses[np.flatnonzero(keep)]
    out.origin[out.origin == CANDIDATE] = DETECTED
    return out


def rejected_candidates(asked: Poses, kept: Poses) -> np.ndarray:
    """Bool mask over ``asked``: the CANDIDATE boxes that ``verify_candidates`` dropped from ``kept``
    (the estimator's output for ``asked``, whose boxes are copies of the input boxes)."""
    cand = asked.origin == CANDIDATE
    if not cand.any():
        return cand
    same = (asked.boxes[:, None, :] == kept.boxes[None, :, :]).all(-1)
    return cand & ~same.any(1)


class CandidateMemory:
    """Skips the pose estimate of a detector CANDIDATE where one was rejected moments ago.

    Most candidates of a video are background that the detector scores low frame after frame
    at the same place (vtest.avi: traffic cones, a rock, posts; 5.7 candidates a frame, 5 % of
    them kept), and each costs a MoveNet crop. So a candidate whose box overlaps (IoU >= ``iou``)
    a box rejected in the last ``frames`` frames is dropped unestimated. A remembered box keeps
    the frame of its real estimate, so every place is looked at again after ``frames`` frames,
    and what moves (a walker) soon leaves the box. On vtest.avi (795 frames, 4 and 0.8) this
    skips 2.7 of the 11.3 crops a frame and 26 of the 233 candidates that would have been kept
    (some of them a cone taken for a person); a tracked person among those is still found by
    recovery.
    ``filter`` before the estimate, ``update`` after it, ``reset`` between videos.
    """

    def __init__(self, frames: int = 4, iou: float = 0.8):
        self.frames, self.iou = frames, iou
        self.reset()

    def reset(self) -> None:
        self._boxes, self._frames = np.zeros((0, 4)), np.zeros(0, np.int64)

    def filter(self, index: int, detections: Poses) -> Poses:
        """``detections`` without the candidates at a place rejected in the last ``frames`` frames."""
        from corrtrack.pipeline.similarity import iou_matrix

        recent = (index - self._frames <= self.frames) & (self._frames <= index)
        self._boxes, self._frames = self._boxes[recent], self._frames[recent]
        cand = detections.origin == CANDIDATE
        if not len(self._boxes) or not cand.any():
            return detections
        seen = iou_matrix(detections.boxes, self._boxes).max(1) >= self.iou
        return detections[np.flatnonzero(~(cand & seen))]

    def update(self, index: int, asked: Poses, kept: Poses) -> None:
        """Remember the candidates of ``asked`` that the estimate (``kept``) rejected at frame ``index``."""
        from corrtrack.pipeline.similarity import iou_matrix

        if self.frames <= 0:
            return
        new = asked.boxes[rejected_candidates(asked, kept)]
        if not len(new):
            return
        if len(self._boxes):  # a new rejection replaces the remembered ones at its place
            other = iou_matrix(self._boxes, new).max(1) < self.iou
            self._boxes, self._frames = self._boxes[other], self._frames[other]
        self._boxes = np.concatenate([self._boxes, new])
        self._frames = np.concatenate([self._frames, np.full(len(new), index, np.int64)])


class TopDownPoseEstimator:
    """MoveNet (or a PoseNet) applied to every person box of a frame, in one batch.

    ``est(image_rgb, boxes)`` -> ``Poses`` (image coordinates; COCO-17 for MoveNet,
    the PoseNet's own layout for a PoseNet).
    ``boxes``: (N, 4) xyxy, (N, 5) xyxy+score, or a ``Poses`` (e.g. the
    detector's) whose boxes, scores, track ids and origin are kept.
    Person score = box score (1 when none) × mean keypoint score.
    """

    def __init__(self, config: PoseConfig | None = None, device=None, weights: str | Path | None = None,
                 runtime: str = "onnx"):
        import torch

        from corrtrack.models import frozen

        self.config = config or PoseConfig()
        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        if is_posenet_path(self.config.model):
            from corrtrack.models.posenet import PoseNet

            net = PoseNet.load(weights or self.config.model, map_location=self.device)
            self.model, self.layout = net.predict, net.layout
            self.input_size = net.input_size  # (w, h)
            w, h = net.input_size
            # the crop takes the network's own aspect ratio (see the module doc)
            self._crop_config = replace(self.config, aspect_ratio=w / h)
        else:
            from corrtrack.models.movenet import load_movenet

            variant = self.config.model
            if variant == AUTO:
                variant = "thunder" if self.device.type == "cuda" else "lightning"
            self.variant = variant
            self.model = load_movenet(variant, weights, self.device).freeze_for_cpu(self.config.frozen_cpu, runtime)
            self.input_size, self.layout = self.model.input_size, COCO17
            self._crop_config = self.config
        w, h = _wh(self.input_size)
        self.aspect = w / h
        # on a CPU in chunks that bound ONNX Runtime's arena
        self.max_batch = frozen.batch_limit(self.device, self.config.max_batch)

    # -- crops -----------------------------------------------------------------
    def squares(self, boxes: np.ndarray) -> np.ndarray:
        return crop_squares(boxes, self._crop_config)

    def crop(self, image_rgb: np.ndarray, squares: np.ndarray) -> np.ndarray:
        return crop_image(image_rgb, squares, self.input_size)

    def predict_crops(self, crops) -> np.ndarray:
        """The model on (N, h, w, 3) RGB crops (numpy or tensor) -> (N, K, 3) (y, x, score), in chunks."""
        import torch

        from corrtrack.models.buckets import pad_batch

        crops = torch.as_tensor(crops)
        outs = []
        with torch.inference_mode():
            for i in range(0, len(crops), self.max_batch):
                chunk = crops[i:i + self.max_batch].to(self.device)
                outs.append(self.model(pad_batch(chunk))[:len(chunk)].float().cpu())
        if not outs:
            return np.zeros((0, self.layout.num_joints, 3), np.float32)
        return torch.cat(outs).numpy()

    # -- frames ----------------------------------------------------------------
    def __call__(self, image_rgb: np.ndarray, boxes, scores: Sequence[float] | None = None,
                 origin: int = DETECTED) -> Poses:
        image = as_rgb_uint8(image_rgb)
        xyxy, scores, given = _box_input(boxes, scores)
        squares = self.squares(xyxy)
        yxs = self.predict_crops(self.crop(image, squares)) if len(xyxy) else np.zeros((0, self.layout.num_joints, 3))
        return self._poses(yxs, squares, xyxy, scores, given, origin)

    def estimate_frames(self, images, boxes: Sequence) -> list[Poses]:
        """Batched tensor path, same input as ``Detector.detect_batch``: ``images`` (B, 3, H, W) RGB,
        uint8 0..255 or float 0..1, on any device; ``boxes`` one (N_i, 4|5) array or ``Poses`` per
        frame. All frames' crops are cut with ``grid_sample`` on the device and go through MoveNet
        together."""
        import torch

        from corrtrack.models.buckets import pad_batch

        images = torch.as_tensor(images)
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        if len(boxes) != len(images):
            raise ValueError(f"{len(images)} images but {len(boxes)} box sets")
        parsed = [_box_input(b, None) for b in boxes]
        squares = [self.squares(p[0]) for p in parsed]
        counts = [len(s) for s in squares]
        all_sq = np.concatenate(squares) if squares else np.zeros((0, 3))
        with torch.inference_mode():
            frames = images.to(self.device)
            frames = frames.float() * 255 if frames.is_floating_point() else frames.float()
            frame_of = np.repeat(np.arange(len(images)), counts)
            yxs = []
            for i in range(0, len(all_sq), self.max_batch):
                sl = slice(i, i + self.max_batch)
                crops = crop_tensor(frames, frame_of[sl], all_sq[sl], self.input_size)
                yxs.append(self.model(pad_batch(crops))[:len(crops)].float().cpu())
            yxs = torch.cat(yxs).numpy() if yxs else np.zeros((0, self.layout.num_joints, 3))
        out, start = [], 0
        for (xyxy, sc, given), sqs, n in zip(parsed, squares, counts):
            out.append(self._poses(yxs[start:start + n], sqs, xyxy, sc, given, DETECTED))
            start += n
        return out

    def _poses(self, yxs, squares, xyxy, scores, given: Poses | None, origin: int) -> Poses:
        kp = crops_to_image(np.asarray(yxs, np.float64).reshape(-1, self.layout.num_joints, 3), squares, self.aspect)
        n = len(kp)
        box_scores = np.ones(n) if scores is None else np.asarray(scores, np.float64).reshape(n)
        person = box_scores * (kp[..., 2].mean(1) if n else np.zeros(0))
        if given is not None:
            poses = Poses(kp, self.layout, xyxy.copy(), person, given.track_ids.copy(), given.origin.copy(),
                          given.head_boxes.copy())
            return verify_candidates(poses, self.config.candidate_min_joint_score, self.config.candidate_oks)
        return Poses(kp, self.layout, xyxy.copy(), person, origin=np.full(n, origin, np.int8))
