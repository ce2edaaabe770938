"""Training the paper's pose network (``models/posenet.py``; paper 6.1 and supplementary A.1).

Data: person keypoint files in COCO format (``read_coco_keypoints``) or PoseTrack
format (a 2017/2018 file or a folder of them, ``read_posetrack``), each with the
folder its image paths are relative to. Every labelled, non-crowd person with
``min_keypoints`` labelled joints is one sample. Joints are mapped by name
into the model's layout (``coco17`` or ``posetrack18``); joints the data lacks
(COCO's head_top for a PoseTrack model, PoseTrack's eyes for a COCO model)
are unlabelled, not invented. The paper's recipe is two runs of the same
command: COCO with ``--layout coco17``, then PoseTrack with ``--layout
posetrack18 --init coco_run/posenet.pt`` (shared joints keep their heads).

A sample is the inference crop of the person's box (``pipeline.pose``: centre,
3:4 box enlarged by ``padding``, the network's w x h) under a random
augmentation: scale, rotation (paper: "random flippings and rotations"),
shift, horizontal flip - with left/right joints swapped
(``layout.flip_permutation()``), since the mirror image of a left wrist is
a right wrist - and brightness / contrast jitter. Targets come from
``PoseCodec.encode`` on the training device; the loss is BCE on the heatmaps
of both stages plus L1 on the offsets where the heatmap target is positive
(within ``offset_radius`` cells of a joint).

Distillation (``teacher_dataset``): for users without labels, the project's
detector + MoveNet thunder label frames of videos (``train/pseudolabel.py``)
and the network learns from those; joints the teacher is not confident about
are trained as "absent" (``unlabelled_weight`` 1), so scores stay meaningful.

Exact resume, determinism and torchrun DDP work as for the correspondence
network (``train/common.py``). On a GPU the forward pass runs in mixed
precision (bf16 where supported, else fp16 with loss scaling).
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from corrtrack.errors import CorrtrackError
from corrtrack.layouts import KeypointLayout
from corrtrack.models.pose_codec import PoseCodec
from corrtrack.models.posenet import PoseNet, PoseNetConfig, transfer_weights
from corrtrack.train.common import (MetricsLog, StepSampler, average_gradients, barrier, config_dict,
                                    epoch_permutation_index, load_checkpoint, photometric, progress_bar, read_rgb,
                                    rng_state, save_checkpoint, set_rng_state, setup_distributed)

TEACHERS = ("movenet-thunder", "movenet-lightning")
IMAGE_CACHE = 16  # decoded images kept per data-loading process


@dataclass(frozen=True)
class AugmentConfig:
    flip_prob: float = 0.5
    rotate_prob: float = 0.6
    max_rotate: float = 40.0  # degrees, uniform in +-max_rotate when rotating
    scale_range: tuple[float, float] = (0.75, 1.25)  # of the crop side, log-uniform
    max_shift: float = 0.08  # fraction of the crop side
    photometric: bool = True

    @classmethod
    def none(cls) -> "AugmentConfig":
        return cls(0.0, 0.0, 0.0, (1.0, 1.0), 0.0, False)


@dataclass(frozen=True)
class PoseTrainConfig:
    data: tuple[str, ...]  # COCO-format or PoseTrack-format annotation files / PoseTrack folders
    images: tuple[str, ...]  # the folder each file's image paths are relative to
    out_dir: str
    net: PoseNetConfig = field(default_factory=PoseNetConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    init: str | None = None  # a PoseNet file to start from (fine-tuning)
    steps: int = 20000
    batch_size: int = 32  # per process
    lr: float = 1e-3
    lr_drop_at: float = 0.75  # lr x0.1 after this fraction of the run
    warmup_steps: int = 200
    weight_decay: float = 1e-4
    offset_weight: float = 1.0
    padding: float = 1.25  # box enlargement of the crop, as at inference (PoseConfig.padding)
    min_keypoints: int = 1  # people with fewer labelled joints are skipped
    unlabelled_weight: float = 0.0  # 0: unlabelled joints are ignored; 1: trained as absent (teacher labels)
    amp: bool = True  # mixed precision on a GPU (ignored on a CPU)
    seed: int = 0
    device: str = "auto"
    workers: int = 2
    checkpoint_every: int = 500
    log_every: int = 20
    progress: bool = True

    def __post_init__(self) -> None:
        if len(self.data) != len(self.images) or not self.data:
            raise CorrtrackError("training: give one image folder per annotation file")
        if self.steps < 1 or self.batch_size < 1:
            raise CorrtrackError("training: steps and batch size must be >= 1")


# -- data ------------------------------------------------------------------------------

@dataclass
class PersonRecord:
    path: Path  # the image
    box: np.ndarray  # (4,) xyxy
    keypoints: np.ndarray  # (K, 3) x, y, labelled (0/1), in the model's layout


def _by_name(kp: np.ndarray, src: KeypointLayout, dst: KeypointLayout) -> np.ndarray:
    out = np.zeros(kp.shape[:-2] + (dst.num_joints, 3))
    for j, name in enumerate(dst.joints):
        if name in src.joints:
            out[..., j, :] = kp[..., src.index(name), :]
    return out


def _is_posetrack(path: Path) -> bool:
    if path.is_dir():
        return True
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CorrtrackError(f"{path}: not a readable JSON file ({e})") from None
    if not isinstance(data, dict):
        raise CorrtrackError(f"{path}: not a person keypoint annotation file")
    cats = [c for c in data.get("categories") or [] if isinstance(c, dict)]
    return "annolist" in data or any("head_bottom" in (c.get("keypoints") or []) for c in cats)


def read_person_records(path: str | Path, image_root: str | Path, layout: KeypointLayout,
                        min_keypoints: int = 1) -> list[PersonRecord]:
    """Every labelled person of a COCO or PoseTrack file (or PoseTrack folder), in ``layout``."""
    from corrtrack.structures import boxes_from_keypoints

    path, root = Path(path), Path(image_root)
    if _is_posetrack(path):
        from corrtrack.io.posetrack import read_posetrack, read_posetrack_dir

        seqs = read_posetrack_dir(path) if path.is_dir() else [read_posetrack(path)]
        frames = [(f, p) for s in seqs for f, p in s if f.is_labeled]
    else:
        from corrtrack.io.coco import read_coco_keypoints

        frames = read_coco_keypoints(path)
    out = []
    for info, poses in frames:
        if len(poses) == 0:
            continue
        if not info.file_name:
            raise CorrtrackError(f"{path}: frame {info.index} has no image file name")
        img = root / info.file_name
        if not img.is_file():
            raise CorrtrackError(f"{img}: image listed in {path.name} not found")
        src = poses.keypoints.copy()
        # poseval's rule: a joint is absent only when x, y and its flag are all 0 (PoseTrack GT
        # has occluded joints with a position and flag 0)
        src[..., 2] = (src[..., 2] > 0) | (np.abs(src[..., :2]).sum(-1) > 0)
        kp = _by_name(src, poses.layout, layout)
        for i in range(len(poses)):
            if kp[i, :, 2].sum() < min_keypoints:
                continue
            box = poses.boxes[i]
            if not (np.isfinite(box).all() and box[2] > box[0] and box[3] > box[1]):
                box = boxes_from_keypoints(poses.keypoints[i:i + 1], 0.0)[0]
            out.append(PersonRecord(img, np.asarray(box, np.float64), kp[i]))
    return out


def sample_crop_affine(rng: np.random.Generator, square: np.ndarray, width: int, height: int,
                       aug: AugmentConfig) -> tuple[np.ndarray, bool]:
    """(2x3 image -> crop affine in pixel-index coordinates, flipped?) for one crop square (cx, cy, side).

    Without augmentation it is ``pipeline.pose.crop_affines(square, (width, height))``: the
    crop of inference."""
    cx, cy, side = square
    flip = rng.random() < aug.flip_prob
    angle = math.radians(rng.uniform(-aug.max_rotate, aug.max_rotate)) if rng.random() < aug.rotate_prob else 0.0
    lo, hi = np.log(aug.scale_range)
    s = float(np.exp(rng.uniform(lo, hi)))
    shift = rng.uniform(-aug.max_shift, aug.max_shift, 2) * side
    k = height / (side * s)
    lin = k * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    if flip:
        lin = lin @ np.diag([-1.0, 1.0])
    centre = np.array([cx, cy]) + shift
    # continuous image point p + 0.5 - centre goes to the crop's continuous centre (w/2, h/2)
    t = lin @ (0.5 - centre) + np.array([width / 2, height / 2]) - 0.5
    return np.hstack([lin, t[:, None]]), flip


class PoseDataset(torch.utils.data.Dataset):
    """Sample i of the run -> {"image": (3, h, w) uint8, "keypoints": (K, 3) crop x, y, labelled}."""

    def __init__(self, records: list[PersonRecord], cfg: PoseTrainConfig):
        from corrtrack.pipeline.pose import PoseConfig

        self.records, self.cfg = records, cfg
        self.w, self.h = cfg.net.input_width, cfg.net.input_height
        self.flip = cfg.net.joints.flip_permutation()
        self.crop_config = PoseConfig(aspect_ratio=self.w / self.h, padding=cfg.padding)
        self._images: OrderedDict[Path, np.ndarray] = OrderedDict()

    def image(self, path: Path) -> np.ndarray:
        """Decoded images, the last few kept: consecutive people often share an image, and
        small data sets (tests, a few videos' frames) fit entirely."""
        img = self._images.pop(path, None)
        if img is None:
            img = read_rgb(path)
        self._images[path] = img
        while len(self._images) > IMAGE_CACHE:
            self._images.popitem(last=False)
        return img

    def __len__(self) -> int:  # samples are addressed by their index in the whole run
        return 1 << 62

    def sample(self, i: int, augment: AugmentConfig | None = None) -> dict[str, torch.Tensor]:
        import cv2

        from corrtrack.pipeline.pose import crop_squares

        aug = self.cfg.augment if augment is None else augment
        rec = self.records[epoch_permutation_index(self.cfg.seed, len(self.records), i)]
        rng = np.random.default_rng([self.cfg.seed, 1, i])
        img = self.image(rec.path)
        square = crop_squares(rec.box[None], self.crop_config)[0]
        m, flip = sample_crop_affine(rng, square, self.w, self.h, aug)
        crop = cv2.warpAffine(img, m, (self.w, self.h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=(0, 0, 0))
        if aug.photometric:
            crop = photometric(crop, rng)
        kp = rec.keypoints.astype(np.float32).copy()
        kp[:, :2] = kp[:, :2] @ m[:, :2].T + m[:, 2]
        if flip:
            kp = kp[self.flip]
        kp[kp[:, 2] <= 0, :2] = 0
        return {"image": torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))),
                "keypoints": torch.from_numpy(kp)}

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.sample(i)


# -- loss and metrics ----------------------------------------------------------------------

def pose_loss(outputs: Sequence[tuple[torch.Tensor, torch.Tensor]], targets: dict[str, torch.Tensor],
              codec: PoseCodec, offset_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum over stages of heatmap BCE + ``offset_weight`` x offset L1.

    BCE is summed over a map's pixels and divided by the Gaussian's mass (2 pi sigma^2),
    i.e. about "per joint"; maps are averaged with their joint weights. L1 (in cells) is
    averaged over the offset mask of labelled joints inside the crop.
    """
    w = targets["weights"]
    mass = 2 * math.pi * codec.sigma ** 2
    mask = targets["offset_mask"].repeat(1, 2, 1, 1).float()
    heat_total, off_total = 0.0, 0.0
    for heat, off in outputs:
        bce = F.binary_cross_entropy_with_logits(heat.float(), targets["heatmaps"], reduction="none").sum((-1, -2))
        heat_total = heat_total + (bce * w).sum() / (w.sum().clamp_min(1.0) * mass)
        l1 = (off.float() - targets["offsets"]).abs() * mask
        off_total = off_total + l1.sum() / mask.sum().clamp_min(1.0)
    loss = heat_total + offset_weight * off_total
    return loss, {"heatmap_loss": float(heat_total.detach()), "offset_loss": float(off_total.detach())}


def pck(pred: torch.Tensor, keypoints: torch.Tensor, codec: PoseCodec, fraction: float = 0.05) -> float:
    """Fraction of labelled in-crop joints decoded within ``fraction`` x crop height (NaN if none)."""
    ok = (keypoints[..., 2] > 0) & codec.inside(keypoints[..., :2])
    if not ok.any():
        return float("nan")
    d = (pred[..., :2] - keypoints[..., :2]).norm(dim=-1)
    return float((d[ok] <= fraction * codec.input_height).float().mean())


# -- teacher -----------------------------------------------------------------------------

def teacher_dataset(videos: Sequence[str | Path], out_dir: str | Path, teacher: str = "movenet-thunder",
                    every_n: int = 5, device: str | None = None, progress: bool = True) -> Path:
    """Label frames of ``videos`` with detector + teacher into ``out_dir`` (COCO format, via
    ``pseudolabel``); returns the annotation file. An existing one is reused."""
    if teacher not in TEACHERS:
        raise CorrtrackError(f"--teacher: unknown {teacher!r} (one of {', '.join(TEACHERS)})")
    out = Path(out_dir)
    ann = out / "annotations.json"
    if ann.is_file():
        return ann
    if not videos:
        raise CorrtrackError("--teacher: give the unlabelled videos or frame folders to learn from (--videos)")
    from corrtrack.pipeline.detector import Detector
    from corrtrack.pipeline.pose import PoseConfig, TopDownPoseEstimator
    from corrtrack.train.pseudolabel import pseudolabel

    dev = device if device not in (None, "auto") else None
    estimator = TopDownPoseEstimator(PoseConfig(model=teacher.split("-", 1)[1]), device=dev)
    return pseudolabel(videos, out, every_n=every_n, detector=Detector(device=dev), estimator=estimator,
                       device=dev, progress=progress)


# -- the loop ---------------------------------------------------------------------------

METRIC_FIELDS = ("step", "loss", "heatmap_loss", "offset_loss", "pck", "lr", "elapsed_s")


def _lr_factor(cfg: PoseTrainConfig, step: int) -> float:
    warm = min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
    return warm * (0.1 if step >= cfg.lr_drop_at * cfg.steps else 1.0)


def _amp(cfg: PoseTrainConfig, device: torch.device) -> torch.dtype | None:
    if not cfg.amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def load_records(cfg: PoseTrainConfig) -> list[PersonRecord]:
    records: list[PersonRecord] = []
    for path, root in zip(cfg.data, cfg.images):
        records += read_person_records(path, root, cfg.net.joints, cfg.min_keypoints)
    if not records:
        raise CorrtrackError(f"{cfg.data[0]}: no person with {cfg.min_keypoints}+ labelled keypoints")
    return records


def build_model(cfg: PoseTrainConfig) -> PoseNet:
    torch.manual_seed(cfg.seed)
    net = PoseNet(cfg.net)
    if cfg.init:
        src = PoseNet.load(cfg.init)
        if (src.config.width, src.config.deconv_channels) != (cfg.net.width, cfg.net.deconv_channels):
            raise CorrtrackError(f"{cfg.init}: width {src.config.width:g} does not fit the model being trained "
                                 f"(width {cfg.net.width:g})")
        transfer_weights(net, src.state_dict(), src.config.layout)
    return net


def train_pose(cfg: PoseTrainConfig, resume: bool = True, stop_after: int | None = None) -> Path:
    """Train (or continue training) and write ``out_dir/posenet.pt``; returns its path.

    Writes ``checkpoint.pt`` every ``checkpoint_every`` steps and at the end, and
    ``metrics.csv``. With ``resume`` an existing checkpoint in ``out_dir`` is
    continued (its configuration must match). ``stop_after`` ends the run early
    after that global step, leaving a checkpoint.
    """
    d = setup_distributed(cfg.device)
    device, main = d.device, d.main
    out = Path(cfg.out_dir)
    ckpt_path = out / "checkpoint.pt"
    metrics = MetricsLog(out / "metrics.csv", METRIC_FIELDS)
    config = config_dict(cfg)
    records = load_records(cfg)
    codec = cfg.net.codec

    net = build_model(cfg).to(device, memory_format=torch.channels_last)
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    amp = _amp(cfg, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    step, elapsed0 = 0, 0.0
    state = load_checkpoint(ckpt_path, device, config) if resume else None
    if state is not None:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        step, elapsed0 = int(state["step"]), float(state.get("elapsed_s", 0.0))
        set_rng_state(state["rng"])
        metrics.load(step)
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)

    def checkpoint() -> None:
        if not main:
            return
        save_checkpoint(ckpt_path, {"model": net.state_dict(), "optimizer": opt.state_dict(),
                                    "scaler": scaler.state_dict(), "step": step, "rng": rng_state(),
                                    "config": config, "elapsed_s": elapsed0 + time.time() - t0})
        metrics.write()

    loader = torch.utils.data.DataLoader(
        PoseDataset(records, cfg), batch_size=cfg.batch_size,
        sampler=StepSampler(step, end, cfg.batch_size, d.rank, d.world), num_workers=cfg.workers,
        pin_memory=device.type == "cuda", persistent_workers=False)
    bar = progress_bar(main and cfg.progress, cfg.steps, step, "train pose")
    t0 = time.time()
    for batch in loader:
        images = batch["image"].to(device, non_blocking=True).float().div_(255.0)
        kps = batch["keypoints"].to(device, non_blocking=True)
        targets = codec.encode(kps, cfg.unlabelled_weight)
        for g in opt.param_groups:
            g["lr"] = cfg.lr * _lr_factor(cfg, step)
        with torch.autocast("cuda", dtype=amp) if amp is not None else contextlib.nullcontext():
            outputs = net(images)
        loss, parts = pose_loss(outputs, targets, codec, cfg.offset_weight)
        if not torch.isfinite(loss):
            raise CorrtrackError(f"training diverged at step {step} (loss {float(loss.detach())}); try a lower --lr")
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        average_gradients(net.parameters(), d.world)
        scaler.step(opt)
        scaler.update()
        step += 1
        if main and (step % cfg.log_every == 0 or step == end):
            heat, off = outputs[-1]
            acc = pck(codec.decode(heat.detach().float(), off.detach().float()), kps, codec)
            metrics.append({"step": step, "loss": f"{float(loss.detach()):.6g}",
                            "heatmap_loss": f"{parts['heatmap_loss']:.6g}",
                            "offset_loss": f"{parts['offset_loss']:.6g}", "pck": f"{acc:.4f}",
                            "lr": f"{opt.param_groups[0]['lr']:.3g}",
                            "elapsed_s": f"{elapsed0 + time.time() - t0:.1f}"})
            if bar is not None:
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}", pck=f"{acc:.2f}")
        if bar is not None:
            bar.update(1)
        if step % cfg.checkpoint_every == 0 or step == end:
            checkpoint()
    if bar is not None:
        bar.close()
    final = out / "posenet.pt"
    if main and step >= cfg.steps:
        net.save(final, meta={"steps": cfg.steps, "batch_size": cfg.batch_size * d.world, "seed": cfg.seed,
                              "train_seconds": round(elapsed0 + time.time() - t0, 1), "init": cfg.init,
                              "data": [str(a) for a in cfg.data], "people": len(records)})
    barrier(d.world)
    return final

