"""Person detection with NanoDet: letterbox, network, GFL decode, class-aware NMS.

``Detector`` takes a numpy frame (RGB uint8 ``(H, W, 3)``; grayscale, RGBA and
other dtypes are converted) or a batch tensor and returns, per frame, a
``Poses`` in the COCO-17 layout whose ``boxes`` and ``scores`` are the person
detections and whose keypoints are all zero (score 0 = "absent"): the pose
estimator fills them in. ``Poses`` is the one container of the pipeline, and a
zero-keypoint ``Poses`` with a real layout keeps ``Poses.concat`` and layout
conversion working downstream.

The network input: the frame is letterboxed onto a canvas whose long side is
``DetectorConfig.input_size`` (by default chosen from the frame size: 416, the
graph's own, up to ~1250 px frames, more for larger ones, where people are
small), square or fitted to the frame's aspect ratio (``square``).

Decoding follows NanoDet's GFL head: per cell, 4 sides (left, top, right,
bottom) × 11 bins; softmax over the bins, the expectation times the stride is
the distance from the cell centre ``((i + 0.5) * stride)`` to that side.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from corrtrack.errors import CorrtrackError
from corrtrack.layouts import COCO17
from corrtrack.models.frozen import FrozenCPU
from corrtrack.structures import CANDIDATE, DETECTED, Poses

PERSON = 0  # COCO-80 class index


@dataclass(frozen=True)
class DetectorConfig:
    score_threshold: float = 0.4  # vtest.avi: people score >= 0.5, a traffic cone 0.35
    # Boxes scoring in [candidate_threshold, score_threshold) come out as CANDIDATE: the pose
    # estimator keeps one only where it finds a confident person (PoseConfig.candidate_min_joint_score).
    # NanoDet-m scores truncated, small and grey people low (basketball2's second person 0.25, far
    # walkers on vtest 0.2-0.4) while its false positives give no confident pose (the cone): with
    # candidates, PoseTrack18 mAP 29.4 -> 44.9 (lightning) / 31.4 -> 56.0 (thunder), COCO AP 51.4 -> 63.4 /
    # 59.0 -> 72.8,
    # and 10 more true walkers on 32 sampled vtest frames, no false positive (benchmarks/bench_pose.py).
    # None: the score threshold alone.
    candidate_threshold: float | None = 0.2
    # At most this many candidates per frame, the best-scored (None: all). Each costs a pose estimate
    # and most are background (vtest: ~5 a frame, 1 in 16 kept; synthetic crowds 10+), but a cap costs
    # recall in crowds: PoseTrack18 thunder mAP 56.0 uncapped, 49.1 at 16, 39.2 at 4 (lightning 44.9 /
    # 39.1 / 33.6). For speed over recall set a cap, or candidate_threshold=None.
    max_candidates: int | None = None
    nms_iou: float = 0.6  # NanoDet's own test-time NMS
    # Long side of the network input: a multiple of 32 (the graph's is 416), or "auto": the frame's
    # long side × auto_scale rounded up to 32, clipped to auto_range. Why: at 416 a 1920×1080
    # PoseTrack frame shrinks 4.6× and NanoDet finds 3 of its 14 people (IoU >= 0.5; MoveNet thunder
    # PoseTrack mAP 14.8); at 640 it finds 8 (mAP 31.4), at 768 fewer again (6). On vtest.avi
    # (768×576) 416 finds all 6 walkers and nothing else, 640 adds 3 false positives: so frames up to
    # ~1250 px keep the graph's 416 and 1080p gets 640 (benchmarks/bench_models.py).
    input_size: int | str = "auto"
    auto_scale: float = 1 / 3
    auto_range: tuple[int, int] = (416, 640)
    # A square canvas (the graph's layout) or one fitted to the frame's aspect ratio: nearly the same
    # people on vtest, PoseTrack and COCO, ~40% less compute on 16:9 frames (less black border).
    square: bool = True
    max_detections: int = 100
    pre_nms_top_k: int = 1000  # best candidates kept before NMS
    classes: tuple[int, ...] = (PERSON,)  # COCO-80 classes to keep; the output is people by default
    pad_value: int = 0  # letterbox border (the network sees 0..1 RGB; black borders)
    min_box_size: float = 2.0  # pixels in the original image; smaller boxes are dropped
    # CPU: run the network through ONNX Runtime or a frozen TorchScript trace per canvas shape (the
    # Detector's runtime; corrtrack.models.frozen). Same outputs to ~1e-4.
    frozen_cpu: bool = True


def auto_input_size(width: int, height: int, config: DetectorConfig) -> int:
    """Long side of the network input for a ``width``×``height`` frame under ``config``."""
    if config.input_size != "auto":
        return int(config.input_size)
    lo, hi = config.auto_range
    side = round(max(width, height) * config.auto_scale, 6)  # 1920 / 3 must give 640, not 672
    return int(min(max(-(-side // 32) * 32, lo), hi))


def canvas_shape(width: int, height: int, config: DetectorConfig) -> tuple[int, int]:
    """(H, W) of the network input for a ``width``×``height`` frame."""
    side = auto_input_size(width, height, config)
    if config.square:
        return side, side
    scale = side / max(width, height)
    return (max(32, -(-round(height * scale) // 32) * 32), max(32, -(-round(width * scale) // 32) * 32))


@dataclass
class Letterbox:
    """Where an image sits in the network input: input = image * scale + (dx, dy)."""

    scale: float
    dx: float
    dy: float
    width: int
    height: int


def letterbox_params(width: int, height: int, size: int | tuple[int, int]) -> Letterbox:
    """``size``: a square side or a canvas ``(H, W)``; the image is fitted inside it and centred."""
    ch, cw = (size, size) if isinstance(size, int) else size
    scale = min(cw / width, ch / height)
    nw, nh = max(1, round(width * scale)), max(1, round(height * scale))
    return Letterbox(scale, (cw - nw) // 2, (ch - nh) // 2, width, height)


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Any reasonable image array -> (H, W, 3) RGB uint8 (gray replicated, alpha dropped)."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise CorrtrackError(f"image: expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise CorrtrackError(f"image: empty image of shape {a.shape}")
    if a.dtype == np.uint16:
        a = (a >> 8).astype(np.uint8)
    elif a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = np.clip(np.nan_to_num(a), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return np.ascontiguousarray(a[..., :3])


def letterbox_image(image: np.ndarray, size: int | tuple[int, int], pad_value: int = 0) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping the aspect ratio, centre on a ``size``×``size`` (or ``(H, W)``) canvas."""
    import cv2

    h, w = image.shape[:2]
    lb = letterbox_params(w, h, size)
    nw, nh = max(1, round(w * lb.scale)), max(1, round(h * lb.scale))
    # INTER_AREA when shrinking (an 8K frame must not alias), bilinear when enlarging.
    interp = cv2.INTER_AREA if lb.scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interp)
    ch, cw = (size, size) if isinstance(size, int) else size
    canvas = np.full((ch, cw, 3), pad_value, np.uint8)
    canvas[int(lb.dy):int(lb.dy) + nh, int(lb.dx):int(lb.dx) + nw] = resized
    return canvas, lb


def letterbox_tensor(images: torch.Tensor, size: int | tuple[int, int],
                     pad_value: float = 0.0) -> tuple[torch.Tensor, Letterbox]:
    """The same for a float batch ``(B, 3, H, W)`` in 0..1, on its device."""
    b, _, h, w = images.shape
    lb = letterbox_params(w, h, size)
    nw, nh = max(1, round(w * lb.scale)), max(1, round(h * lb.scale))
    resized = F.interpolate(images, size=(nh, nw), mode="bilinear", align_corners=False,
                            antialias=lb.scale < 1)
    ch, cw = (size, size) if isinstance(size, int) else size
    canvas = images.new_full((b, 3, ch, cw), pad_value)
    canvas[:, :, int(lb.dy):int(lb.dy) + nh, int(lb.dx):int(lb.dx) + nw] = resized
    return canvas, lb


def cell_centres(size: int | tuple[int, int], strides=(8, 16, 32), device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres (A, 2) and strides (A,) of all cells of a square (or ``(H, W)``) input, level by level,
    rows first."""
    ch, cw = (size, size) if isinstance(size, int) else size
    centres, cell_strides = [], []
    for s in strides:
        ny, nx = -(-ch // s), -(-cw // s)
        ry = (torch.arange(ny, dtype=torch.float32, device=device) + 0.5) * s
        rx = (torch.arange(nx, dtype=torch.float32, device=device) + 0.5) * s
        yy, xx = torch.meshgrid(ry, rx, indexing="ij")
        centres.append(torch.stack([xx.reshape(-1), yy.reshape(-1)], 1))
        cell_strides.append(torch.full((ny * nx,), float(s), device=device))
    return torch.cat(centres), torch.cat(cell_strides)


def decode_boxes(box_logits: torch.Tensor, centres: torch.Tensor, strides: torch.Tensor,
                 reg_max: int = 10) -> torch.Tensor:
    """GFL integral decode: (..., A, 4*(reg_max+1)) logits -> (..., A, 4) xyxy boxes."""
    bins = torch.arange(reg_max + 1, dtype=box_logits.dtype, device=box_logits.device)
    prob = box_logits.reshape(*box_logits.shape[:-1], 4, reg_max + 1).softmax(-1)
    dist = (prob * bins).sum(-1) * strides[:, None]  # left, top, right, bottom
    return torch.cat([centres - dist[..., :2], centres + dist[..., 2:]], -1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix (N, M) of xyxy boxes."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS; indices of the kept boxes, best first.

    The IoU matrix is computed once (vectorised); the greedy pass then loops
    only over the boxes it keeps, each removing all boxes it overlaps.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True)
    overlaps = (box_iou(boxes[order], boxes[order]) > iou_threshold).cpu().numpy()
    alive = np.ones(len(order), bool)
    keep = []
    while alive.any():
        i = int(alive.argmax())  # first alive = best remaining
        keep.append(i)
        alive &= ~overlaps[i]
        alive[i] = False
    return order[torch.as_tensor(keep, device=order.device)]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                iou_threshold: float) -> torch.Tensor:
    """Class-aware NMS: boxes of different labels never suppress each other."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    # Shift each class to its own region of the plane, then one NMS does all classes.
    offset = labels.to(boxes.dtype)[:, None] * (boxes.max() - boxes.min() + 1)
    return nms(boxes + offset, scores, iou_threshold)


def match_boxes(boxes: np.ndarray, truth: np.ndarray, min_iou: float = 0.5) -> np.ndarray:
    """Greedy one-to-one matching, highest IoU first: for each true box, the index of its box or -1.

    One box covering two people (a dancing couple) counts for one of them only.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    truth = np.asarray(truth, np.float64).reshape(-1, 4)
    match = np.full(len(truth), -1)
    if len(boxes) == 0 or len(truth) == 0:
        return match
    iou = box_iou(torch.from_numpy(boxes), torch.from_numpy(truth)).numpy()
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        i, j = divmod(int(flat), len(truth))
        if iou[i, j] < min_iou:
            break
        if match[j] < 0 and i not in match:
            match[j] = i
    return match


@dataclass
class Detections:
    """Raw detections of one frame in image pixels."""

    boxes: np.ndarray  # (N, 4) xyxy
    scores: np.ndarray  # (N,)
    labels: np.ndarray  # (N,) COCO-80 class index
    candidate: np.ndarray | None = None  # (N,) bool: below the score threshold (DetectorConfig)

    def __post_init__(self) -> None:
        if self.candidate is None:
            self.candidate = np.zeros(len(self.scores), bool)

    def confident(self) -> "Detections":
        """Only the boxes at or above the score threshold."""
        k = ~self.candidate
        return Detections(self.boxes[k], self.scores[k], self.labels[k], self.candidate[k])

    def to_poses(self) -> Poses:
        """People as a ``Poses`` (COCO-17, all keypoints zero); candidates have origin CANDIDATE."""
        person = self.labels == PERSON
        n = int(person.sum())
        return Poses(np.zeros((n, COCO17.num_joints, 3)), COCO17, boxes=self.boxes[person],
                     scores=self.scores[person], origin=np.where(self.candidate[person], CANDIDATE, DETECTED))


class Detector:
    """NanoDet person detector. ``detector(frame) -> Poses``; ``detector(batch) -> list[Poses]``."""

    def __init__(self, config: DetectorConfig = DetectorConfig(), device: str | torch.device | None = None,
                 model: torch.nn.Module | None = None, runtime: str = "onnx"):
        from corrtrack.models.registry import default_device, load_model

        if config.input_size != "auto" and (not isinstance(config.input_size, int) or config.input_size % 32
                                            or config.input_size < 32):
            raise CorrtrackError(f"DetectorConfig.input_size must be a multiple of 32 or \"auto\", "
                                 f"got {config.input_size!r}")
        lo, hi = config.auto_range
        if lo % 32 or hi % 32 or not 32 <= lo <= hi or not config.auto_scale > 0:
            raise CorrtrackError(f"DetectorConfig: auto_range {config.auto_range} must be multiples of 32 with "
                                 f"32 <= lo <= hi, auto_scale {config.auto_scale} > 0")
        self.config = config
        self.device = torch.device(device or default_device())
        model = model if model is not None else load_model("nanodet", self.device)
        # channels_last: oneDNN/cuDNN convolutions skip a layout reorder per layer (~25% on CPU).
        # Note: Module.to() converts the given model in place.
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()
        from corrtrack.models.nanodet import NanoDet

        # optimize=False: oneDNN layouts cost NanoDet's PAN more than they save (corrtrack.models.frozen)
        self._network = FrozenCPU(self.model, config.frozen_cpu, batch_generic=isinstance(self.model, NanoDet),
                                  optimize=False, runtime=runtime)
        self._cells: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}  # canvas -> centres, strides

    # -- public API -----------------------------------------------------------
    def __call__(self, images) -> Poses | list[Poses]:
        if isinstance(images, torch.Tensor) and images.ndim == 4:
            return [d.to_poses() for d in self.detect_batch(images)]
        return self.detect(images).to_poses()

    @torch.inference_mode()
    def detect(self, image) -> Detections:
        """One frame: numpy image (see ``as_rgb_uint8``) or a (3, H, W) tensor."""
        if isinstance(image, torch.Tensor):
            return self.detect_batch(image[None] if image.ndim == 3 else image)[0]
        rgb = as_rgb_uint8(image)
        shape = canvas_shape(rgb.shape[1], rgb.shape[0], self.config)
        canvas, lb = letterbox_image(rgb, shape, self.config.pad_value)
        x = torch.from_numpy(canvas).to(self.device).permute(2, 0, 1)[None].float().div_(255)
        return self._postprocess(*self._network(x.contiguous(memory_format=torch.channels_last)), [lb], shape)[0]

    @torch.inference_mode()
    def detect_batch(self, images: torch.Tensor) -> list[Detections]:
        """A batch ``(B, 3, H, W)`` RGB: uint8 0..255 or float 0..1 (all frames one size)."""
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] == 0 or images.shape[3] == 0:
            raise CorrtrackError(f"images: expected a (B, 3, H, W) batch, got shape {tuple(images.shape)}")
        x = images.to(self.device).contiguous(memory_format=torch.channels_last)
        x = x.float().div(255) if not x.is_floating_point() else x.float()
        shape = canvas_shape(x.shape[3], x.shape[2], self.config)
        if tuple(x.shape[2:]) == shape:
            lb = letterbox_params(x.shape[3], x.shape[2], shape)
        else:
            x, lb = letterbox_tensor(x, shape, self.config.pad_value / 255)
        return self._postprocess(*self._network(x), [lb] * len(x), shape)

    # -- decoding -------------------------------------------------------------
    def _postprocess(self, scores: torch.Tensor, box_logits: torch.Tensor, lbs: list[Letterbox],
                     shape: tuple[int, int]) -> list[Detections]:
        cfg = self.config
        if shape not in self._cells:
            self._cells[shape] = cell_centres(shape, self.model.strides, self.device)
        boxes = decode_boxes(box_logits, *self._cells[shape], self.model.reg_max)
        classes = torch.as_tensor(cfg.classes, device=scores.device, dtype=torch.long)
        out = []
        for b, lb in enumerate(lbs):
            s = scores[b][:, classes]  # (A, C) of the wanted classes
            lowest = cfg.score_threshold if cfg.candidate_threshold is None else min(cfg.score_threshold,
                                                                                     cfg.candidate_threshold)
            cell, k = torch.nonzero(s > lowest, as_tuple=True)
            cand_scores = s[cell, k]
            if len(cand_scores) > cfg.pre_nms_top_k:
                top = cand_scores.topk(cfg.pre_nms_top_k).indices
                cell, k, cand_scores = cell[top], k[top], cand_scores[top]
            labels = classes[k]
            # Back to image pixels, clipped to the image.
            xyxy = boxes[b][cell].clone()
            xyxy[:, 0::2] = ((xyxy[:, 0::2] - lb.dx) / lb.scale).clamp(0, lb.width)
            xyxy[:, 1::2] = ((xyxy[:, 1::2] - lb.dy) / lb.scale).clamp(0, lb.height)
            big = ((xyxy[:, 2] - xyxy[:, 0]) >= cfg.min_box_size) & ((xyxy[:, 3] - xyxy[:, 1]) >= cfg.min_box_size)
            xyxy, cand_scores, labels = xyxy[big], cand_scores[big], labels[big]
            keep = batched_nms(xyxy, cand_scores, labels, cfg.nms_iou)[: cfg.max_detections]
            kept_scores = cand_scores[keep].double().cpu().numpy()
            candidate = kept_scores <= cfg.score_threshold
            # NMS keeps best-first order: the candidates past the first max_candidates are dropped
            if cfg.max_candidates is not None:
                sel = ~candidate | (np.cumsum(candidate) <= cfg.max_candidates)
                keep = keep[torch.from_numpy(sel).to(keep.device)]
                kept_scores, candidate = kept_scores[sel], candidate[sel]
            out.append(Detections(xyxy[keep].double().cpu().numpy(), kept_scores, labels[keep].cpu().numpy(),
                                  candidate))
        return out
