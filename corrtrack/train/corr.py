"""Self-supervised training of the correspondence network (paper section 4.3).

Data: any COCO-format person-keypoint file(s) with their image folder(s).
Each sample is one image with its annotated people; the second image is the
same image under a random affine warp (translation, rotation, horizontal
flip; we add a mild scale change and, on the second image only, brightness /
contrast jitter and occasional blur, which real frame pairs have). The target
of keypoint k is the same *physical* point after the warp - a flip does not
swap left and right labels - as a Gaussian map, or an all-zero map when the
warp moved it out of the frame. BCE on both stages, trained module-wise: the
Siamese module first, then the refinement module with the Siamese frozen.

Optionally (``temporal_prob`` > 0; off by default, the paper uses warps only) a
sample is instead a real frame pair of one video: two labelled frames of the
same source up to ``temporal_max_frames`` apart, the people linked between
them where the link is unambiguous (``link_people``). The target is then the
same person's labelled joint in the other frame: real non-rigid motion and
occlusion, which affine warps never show. A joint unlabelled in the other
frame has no known position (hidden, or the labeller missed it) and is left
out of the loss rather than trained towards zero.

Optionally (``occlude_prob`` > 0; off by default) the second image of a
sample gets a person from another labelled frame pasted over one of its
people (``paste_occluder``): the target's joints under the paste become
all-zero targets and the pasted person's own joints are distractors. This is
what people crossing do to correspondences (the synthetic benchmark's crossing
and occluder presets) and what neither a warp nor the few crossings in our
real frame pairs show often; it needs no segmentation masks, which only the
benchmark's own people have here.

Determinism and exact resume: the record and the warp of the i-th sample of
the run are functions of (seed, i) alone (``StepSampler`` hands each rank its
slice of every global batch, the role DistributedSampler plays, but it can
start in the middle of an epoch), so a run resumed from a checkpoint (model,
optimizer, step, RNG states) continues exactly as if never interrupted.
``torchrun`` with WORLD_SIZE > 1 runs data-parallel with plain
torch.distributed (gradients averaged with all_reduce).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from corrtrack.errors import CorrtrackError
from corrtrack.layouts import COCO17
from corrtrack.models.corr_codec import (Letterbox, body_consensus, decode_maps, encode_targets,
                                         image_to_grid, inside_image)
from corrtrack.models.corrnet import CorrespondenceNet, CorrNetConfig
from corrtrack.structures import boxes_from_keypoints
from corrtrack.train.common import (MetricsLog, StepSampler, average_gradients, barrier, config_dict,
                                    epoch_permutation_index, load_checkpoint, progress_bar, read_rgb, rng_state,
                                    save_checkpoint, set_rng_state, setup_distributed)
from corrtrack.train.common import photometric as _photometric


@dataclass(frozen=True)
class WarpConfig:
    max_translate: float = 0.15  # fraction of the frame's width / height
    max_rotate: float = 30.0  # degrees
    flip_prob: float = 0.5
    scale_range: tuple[float, float] = (0.8, 1.25)  # log-uniform
    photometric: bool = True


@dataclass(frozen=True)
class CorrTrainConfig:
    annotations: tuple[str, ...]  # COCO-format person keypoint files
    images: tuple[str, ...]  # the image folder of each annotation file
    out_dir: str
    net: CorrNetConfig = CorrNetConfig()
    warp: WarpConfig = WarpConfig()
    steps_siamese: int = 3000
    steps_refine: int = 1500
    batch_size: int = 8  # per process
    lr: float = 1e-3
    backbone_lr_mult: float = 0.1  # the ImageNet backbone moves slower than the new layers
    lr_drop_at: float = 0.75  # lr x0.1 after this fraction of each stage (the paper's step schedule)
    warmup_steps: int = 50
    weight_decay: float = 1e-4
    sigma: float = 1.0  # target Gaussian, in feature cells (4 canvas pixels)
    refine_sigma: float = 1.0  # the refinement's target Gaussian, cells (2.0 measured: higher peaks, less precise)
    init_from: str = ""  # a saved model whose Siamese weights start the run (then e.g. --steps-siamese 0)
    temporal_prob: float = 0.0  # share of samples that are real frame pairs (needs source + frame_index)
    temporal_max_frames: int = 12  # the farthest two frames of a real pair may be apart
    occlude_prob: float = 0.0  # share of samples whose second image gets a person pasted over one of its people
    distract_prob: float = 0.0  # refinement stage: share of joints whose affinity map gets a second, false peak
    max_persons: int = 8
    min_keypoints: int = 4  # people with fewer labelled joints are skipped
    seed: int = 0
    device: str = "auto"
    workers: int = 2
    checkpoint_every: int = 250
    log_every: int = 10
    progress: bool = True

    def __post_init__(self) -> None:
        if len(self.annotations) != len(self.images) or not self.annotations:
            raise CorrtrackError("training: give one image folder per annotation file")
        if self.steps_siamese < 0 or self.steps_refine < 0 or self.steps_siamese + self.steps_refine == 0:
            raise CorrtrackError("training: steps must be >= 0 and not both 0")
        if not 0.0 <= self.temporal_prob <= 1.0 or self.temporal_max_frames < 1:
            raise CorrtrackError("training: temporal_prob must be in [0, 1] and temporal_max_frames >= 1")
        if not 0.0 <= self.occlude_prob <= 1.0:
            raise CorrtrackError("training: occlude_prob must be in [0, 1]")
        if not 0.0 <= self.distract_prob <= 1.0:
            raise CorrtrackError("training: distract_prob must be in [0, 1]")

    @property
    def total_steps(self) -> int:
        return self.steps_siamese + self.steps_refine


# -- data -------------------------------------------------------------------------

@dataclass
class Record:
    path: Path
    width: int
    height: int
    keypoints: np.ndarray  # (P, K, 3) x, y, v
    boxes: np.ndarray | None = None  # (P, 4) x1, y1, x2, y2; around the labelled joints when the file has none
    source: str = ""  # the video a frame comes from (the image's "source", or PoseTrack's "vid_id")
    frame_index: int = -1


def read_coco_records(ann_path: str | Path, image_dir: str | Path, num_joints: int = 17,
                      min_keypoints: int = 4) -> list[Record]:
    """Images with at least one non-crowd person with ``min_keypoints`` labelled joints."""
    ann_path, image_dir = Path(ann_path), Path(image_dir)
    try:
        data = json.loads(ann_path.read_text())
        images = {im["id"]: im for im in data["images"]}
        anns = data["annotations"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CorrtrackError(f"{ann_path}: not a readable COCO keypoint file ({e})") from None
    people: dict[int, list[np.ndarray]] = {}
    boxes: dict[int, list[np.ndarray]] = {}
    for a in anns:
        kp = a.get("keypoints")
        if not kp or a.get("iscrowd", 0):
            continue
        if len(kp) != 3 * num_joints:
            raise CorrtrackError(f"{ann_path}: annotation {a.get('id')} has {len(kp) // 3} keypoints, "
                                 f"the model expects {num_joints}")
        kp = np.asarray(kp, np.float64).reshape(num_joints, 3)
        if (kp[:, 2] > 0).sum() >= min_keypoints:
            people.setdefault(a["image_id"], []).append(kp)
            boxes.setdefault(a["image_id"], []).append(_box(a.get("bbox"), kp))
    records = []
    for iid, kps in sorted(people.items()):
        im = images.get(iid)
        if im is None:
            raise CorrtrackError(f"{ann_path}: annotation refers to missing image id {iid}")
        path = image_dir / im["file_name"]
        if not path.is_file():
            raise CorrtrackError(f"{path}: image listed in {ann_path.name} not found")
        source = str(im.get("source", im.get("vid_id", "")))
        frame = im.get("frame_index", im.get("frame_id", -1))
        records.append(Record(path, int(im["width"]), int(im["height"]), np.stack(kps), np.stack(boxes[iid]),
                              source, int(frame) if isinstance(frame, (int, float)) else -1))
    return records


def _box(bbox, kp: np.ndarray) -> np.ndarray:
    """The annotation's COCO box (x, y, w, h) as x1, y1, x2, y2, else the box around the labelled joints."""
    if bbox is not None and len(bbox) == 4 and bbox[2] > 0 and bbox[3] > 0:
        x, y, w, h = map(float, bbox)
        return np.array([x, y, x + w, y + h])
    return boxes_from_keypoints(kp[None])[0]  # zeros without labelled joints: never linked


def _match_unambiguous(boxes_a: np.ndarray, boxes_b: np.ndarray, max_dist: float, margin: float) -> np.ndarray:
    """For each person of frame a, the index of the same person in frame b, or -1.

    Linked only when each is the other's nearest box centre (distance in units
    of the box diagonal below ``max_dist``) and every other candidate, on
    either side, is ``margin`` times farther: a wrong link would teach the
    network a wrong correspondence, a missed one only costs a sample.
    """
    out = np.full(len(boxes_a), -1)
    if len(boxes_a) == 0 or len(boxes_b) == 0:
        return out
    ca = (boxes_a[:, :2] + boxes_a[:, 2:]) / 2
    cb = (boxes_b[:, :2] + boxes_b[:, 2:]) / 2
    size_a = np.linalg.norm(boxes_a[:, 2:] - boxes_a[:, :2], axis=1)
    size_b = np.linalg.norm(boxes_b[:, 2:] - boxes_b[:, :2], axis=1)
    diag = np.sqrt(np.maximum(size_a[:, None] * size_b[None], 1e-6))
    d = np.linalg.norm(ca[:, None] - cb[None], axis=-1) / diag
    for i in range(len(boxes_a)):
        j = int(d[i].argmin())
        if d[i, j] >= max_dist or int(d[:, j].argmin()) != i:
            continue
        others_row = np.delete(d[i], j)
        others_col = np.delete(d[:, j], i)
        if (others_row < margin * d[i, j]).any() or (others_col < margin * d[i, j]).any():
            continue
        out[i] = j
    return out


def link_people(records: list[Record], max_frames: int, max_dist: float = 0.5,
                margin: float = 2.0) -> list[list[tuple[int, np.ndarray]]]:
    """Real frame pairs: for each record, ``(other record, person map)`` for the labelled frames of the
    same source at most ``max_frames`` apart, where ``map[p]`` is person p's index in the other
    frame (-1: not linked). People are linked between consecutive labelled frames
    (``_match_unambiguous``) and the links chained, so a pair of frames farther apart shares the
    people whose chain of links is unbroken between them."""
    partners: list[list[tuple[int, np.ndarray]]] = [[] for _ in records]
    by_source: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        if r.source and r.frame_index >= 0 and r.boxes is not None:
            by_source.setdefault(r.source, []).append(i)
    for idx in by_source.values():
        idx.sort(key=lambda i: records[i].frame_index)
        tracks: list[np.ndarray] = []  # per record of this source: a chain id per person
        next_id = 0
        for n, i in enumerate(idx):
            ids = np.full(len(records[i].keypoints), -1)
            if n > 0 and 0 < records[i].frame_index - records[idx[n - 1]].frame_index <= max_frames:
                prev = idx[n - 1]
                back = _match_unambiguous(records[i].boxes, records[prev].boxes, max_dist, margin)
                ids = np.where(back >= 0, tracks[-1][np.maximum(back, 0)], -1)
            new = ids < 0
            ids[new] = np.arange(next_id, next_id + new.sum())
            next_id += int(new.sum())
            tracks.append(ids)
        where = [{int(t): q for q, t in enumerate(ids)} for ids in tracks]  # chain id -> person, per record
        for n, i in enumerate(idx):
            for m in range(n + 1, len(idx)):
                j = idx[m]
                if records[j].frame_index - records[i].frame_index > max_frames:
                    break
                fwd = np.array([where[m].get(int(t), -1) for t in tracks[n]])
                if (fwd >= 0).any():
                    back = np.full(len(tracks[m]), -1)
                    back[fwd[fwd >= 0]] = np.flatnonzero(fwd >= 0)
                    partners[i].append((j, fwd))
                    partners[j].append((i, back))
    return partners


def sample_affine(rng: np.random.Generator, width: int, height: int, cfg: WarpConfig) -> np.ndarray:
    """A random 2x3 affine about the frame centre: flip, rotation, scale, then translation."""
    c = np.array([(width - 1) / 2, (height - 1) / 2])
    angle = math.radians(rng.uniform(-cfg.max_rotate, cfg.max_rotate))
    lo, hi = np.log(cfg.scale_range)
    s = float(np.exp(rng.uniform(lo, hi)))
    flip = rng.random() < cfg.flip_prob
    t = rng.uniform(-cfg.max_translate, cfg.max_translate, 2) * [width, height]
    a = s * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    if flip:
        a = a @ np.diag([-1.0, 1.0])
    return np.hstack([a, (c + t - a @ c)[:, None]])


def paste_occluder(img: np.ndarray, target_box: np.ndarray, donor: np.ndarray, donor_box: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
    """Paste the person in ``donor_box`` of image ``donor`` over the person in ``target_box`` of ``img``
    (in place); returns the (H, W) mask of the pixels it covers.

    The donor is scaled to the target's height (x0.8-1.2) and shifted sideways by up to 0.6 of the
    target's width, as a passer-by is. Its alpha is an ellipse inscribed in its box (a person is
    narrower than a box; less of the donor's background comes along), feathered at the rim; the mask
    is where alpha >= 0.5.
    """
    import cv2

    h, w = img.shape[:2]
    dh, dw = donor.shape[:2]
    x1, y1, x2, y2 = donor_box
    pad = 0.1 * (x2 - x1)
    x1, x2 = int(max(0, x1 - pad)), int(min(dw, np.ceil(x2 + pad)))
    y1, y2 = int(max(0, y1)), int(min(dh, np.ceil(y2)))
    tw, th = target_box[2] - target_box[0], target_box[3] - target_box[1]
    if x2 - x1 < 4 or y2 - y1 < 4 or tw < 2 or th < 2:
        return np.zeros((h, w), bool)
    s = th * rng.uniform(0.8, 1.2) / (y2 - y1)
    pw, ph = max(2, round((x2 - x1) * s)), max(2, round((y2 - y1) * s))
    patch = cv2.resize(donor[y1:y2, x1:x2], (pw, ph), interpolation=cv2.INTER_LINEAR)
    cx = (target_box[0] + target_box[2]) / 2 + rng.uniform(-0.6, 0.6) * tw
    cy = (target_box[1] + target_box[3]) / 2 + rng.uniform(-0.25, 0.25) * th
    px, py = round(cx - pw / 2), round(cy - ph / 2)
    yy, xx = np.mgrid[0:ph, 0:pw]
    r2 = ((xx + 0.5) / pw * 2 - 1) ** 2 + ((yy + 0.5) / ph * 2 - 1) ** 2
    alpha = np.clip((1.0 - r2) * 4.0, 0.0, 1.0).astype(np.float32)
    # the part of the patch that lands on the image
    ax1, ay1, ax2, ay2 = max(0, px), max(0, py), min(w, px + pw), min(h, py + ph)
    mask = np.zeros((h, w), bool)
    if ax2 <= ax1 or ay2 <= ay1:
        return mask
    a = alpha[ay1 - py:ay2 - py, ax1 - px:ax2 - px, None]
    region = img[ay1:ay2, ax1:ax2].astype(np.float32)
    src = patch[ay1 - py:ay2 - py, ax1 - px:ax2 - px].astype(np.float32)
    img[ay1:ay2, ax1:ax2] = np.round(a * src + (1 - a) * region).astype(img.dtype)
    mask[ay1:ay2, ax1:ax2] = a[..., 0] >= 0.5
    return mask


class PairDataset(torch.utils.data.Dataset):
    """Sample i of the run -> (image, second image, keypoints in both, on the feature grid).

    The second image is a random warp of the first, or (with ``temporal_prob``)
    another labelled frame of the same video (``link_people``).
    """

    def __init__(self, records: list[Record], cfg: CorrTrainConfig):
        self.records, self.cfg = records, cfg
        self.size, self.stride, self.k = cfg.net.input_size, cfg.net.stride, cfg.net.num_joints
        self.partners = link_people(records, cfg.temporal_max_frames) if cfg.temporal_prob > 0 else None

    def __len__(self) -> int:  # samples are addressed by their index in the whole run
        return 1 << 62

    def record_index(self, i: int) -> int:
        return epoch_permutation_index(self.cfg.seed, len(self.records), i)

    def _partner(self, ri: int, i: int) -> tuple[int, np.ndarray] | None:
        if self.partners is None or not self.partners[ri]:
            return None
        # Its own stream, so that temporal_prob = 0 leaves every warp as it was.
        rng = np.random.default_rng([self.cfg.seed, 2, i])
        if rng.random() >= self.cfg.temporal_prob:
            return None
        return self.partners[ri][int(rng.integers(len(self.partners[ri])))]

    def _occlude(self, img2: np.ndarray, kp2: np.ndarray, present: np.ndarray, i: int) -> np.ndarray:
        """With ``occlude_prob``, paste a person over one of img2's people (in place); the joints it hides."""
        hidden = np.zeros(present.shape, bool)
        rng = np.random.default_rng([self.cfg.seed, 3, i])  # its own stream, as in ``_partner``
        if rng.random() >= self.cfg.occlude_prob:
            return hidden
        who = np.flatnonzero(present.sum(1) >= self.cfg.min_keypoints)
        if not len(who):
            return hidden
        t = int(rng.choice(who))
        pts = kp2[t][present[t]]
        donor = self.records[int(rng.integers(len(self.records)))]
        donor_box = donor.boxes[int(rng.integers(len(donor.boxes)))]
        mask = paste_occluder(img2, np.r_[pts.min(0), pts.max(0)], read_rgb(donor.path), donor_box, rng)
        h, w = mask.shape
        xi = np.clip(np.round(kp2[..., 0]).astype(int), 0, w - 1)
        yi = np.clip(np.round(kp2[..., 1]).astype(int), 0, h - 1)
        return present & mask[yi, xi]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        import cv2

        ri = self.record_index(i)
        rec = self.records[ri]
        rng = np.random.default_rng([self.cfg.seed, 1, i])
        img = read_rgb(rec.path)
        h, w = img.shape[:2]
        partner = self._partner(ri, i)
        if partner is None:
            m = sample_affine(rng, w, h, self.cfg.warp)
            img2 = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
        else:
            j, to_j = partner
            img2 = read_rgb(self.records[j].path)
            if img2.shape[:2] != (h, w):
                raise CorrtrackError(f"{self.records[j].path}: frame size differs from {rec.path} of the same video")
        if self.cfg.warp.photometric:
            img2 = _photometric(img2, rng)
        kps = rec.keypoints
        chosen = np.arange(len(kps))
        if len(kps) > self.cfg.max_persons:
            chosen = np.sort(rng.choice(len(kps), self.cfg.max_persons, replace=False))
            kps = kps[chosen]
        kp1 = kps[..., :2]
        valid = (kps[..., 2] > 0) & inside_image(kp1, w, h)
        if partner is None:
            kp2 = kp1 @ m[:, :2].T + m[:, 2]
            known = valid  # a warp says where every joint went, out of the frame included
        else:
            other = self.records[j].keypoints[np.maximum(to_j[chosen], 0)]
            kp2 = other[..., :2]
            known = valid & (to_j[chosen, None] >= 0) & (other[..., 2] > 0)
        present = known & inside_image(kp2, w, h)
        present &= ~self._occlude(img2, kp2, present, i)
        lb = Letterbox.fit(w, h, self.size, square=True)  # square: a batch needs one canvas size
        p, pm = len(kps), self.cfg.max_persons
        g1 = np.zeros((pm, self.k, 2), np.float32)
        g2 = np.zeros((pm, self.k, 2), np.float32)
        v1 = np.zeros((pm, self.k), bool)
        v2 = np.zeros((pm, self.k), bool)
        k2 = np.zeros((pm, self.k), bool)
        g1[:p], g2[:p] = image_to_grid(kp1, lb, self.stride), image_to_grid(kp2, lb, self.stride)
        v1[:p], v2[:p], k2[:p] = valid, present, known
        to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))  # noqa: E731
        return {"img1": to_t(lb.apply(img)), "img2": to_t(lb.apply(img2)), "grid1": torch.from_numpy(g1),
                "grid2": torch.from_numpy(g2), "valid1": torch.from_numpy(v1), "present2": torch.from_numpy(v2),
                "known2": torch.from_numpy(k2)}


# -- losses -----------------------------------------------------------------------

def _masked_mean(per_map: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(per_map.dtype)
    return (per_map * mask).sum() / mask.sum().clamp_min(1.0)


def siamese_loss(net: CorrespondenceNet, batch: dict, sigma: float):
    """BCE between the softmax affinity maps and the targets (paper eq. 4).

    Summed over the pixels of a map (the map is a distribution over the frame),
    averaged over the maps of keypoints labelled in the first image whose place in the second is
    known (``known2``: all of them for a warp).
    """
    f = net.features(torch.cat([batch["img1"], batch["img2"]]).float().div_(255.0))
    b = batch["img1"].shape[0]
    f1, f2 = f[:b], f[b:]
    pk = batch["grid1"].shape[1] * batch["grid1"].shape[2]
    logp = net.affinity_log(f1, f2, batch["grid1"].reshape(b, pk, 2))
    h, w = logp.shape[-2:]
    t = encode_targets(batch["grid2"].reshape(b, pk, 2), batch["present2"].reshape(b, pk), h, w, sigma)
    log1mp = torch.log1p(-logp.exp().clamp(max=1 - 1e-6))
    per_map = -(t * logp + (1 - t) * log1mp).sum((-1, -2))
    return _masked_mean(per_map, batch["known2"].reshape(b, pk)), logp.detach().exp(), (f1, f2)


def _shifted(m: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """m (h, w) moved by (dy, dx) cells, zeros where nothing moves in (no wrap-around)."""
    h, w = m.shape
    out = torch.zeros_like(m)
    if abs(dy) < h and abs(dx) < w:
        out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            m[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def add_distractors(maps: torch.Tensor, grid2: torch.Tensor, present2: torch.Tensor, prob: float,
                    flip: np.ndarray, rng: np.random.Generator, min_shift: float = 3.0) -> torch.Tensor:
    """Mix a second, false peak into a share ``prob`` of the affinity maps (refinement training).

    Where the Siamese maps fail at gaps of 5-10 frames, they often peak on another person's joint or
    on the mirrored joint of the same person (6.9 of the 15.9 missed points at gap 10 on crossing
    people; docs/models/corrnet.md, "Distractor peaks for the refinement", which also says that this
    did not help); on the refinement's own training pairs they are right 99 % of the time, so it
    never sees such a map to correct. Here a joint's map becomes (1 - lam) * map + lam * (the same
    map moved onto another person's same joint, or onto the own mirrored joint), lam ~ U(0.25,
    0.75), with the target unchanged: to undo it the refinement has to use what the Siamese cannot,
    the person's other joints and the frames' features around both peaks.

    maps (B, P, K, h, w); grid2 (B, P, K, 2) the joints' true places in the second image, in cells;
    present2 (B, P, K); flip (K,) the left/right permutation. Returns a new tensor.
    """
    out = maps.clone()
    g = grid2.detach().cpu().numpy()
    pres = present2.detach().cpu().numpy()
    b, p, k = pres.shape
    for i, s, j in zip(*np.nonzero(pres)):
        if rng.random() >= prob:
            continue
        cands = [g[i, o, j] for o in range(p) if o != s and pres[i, o, j]]
        if flip[j] != j and pres[i, s, flip[j]]:
            cands.append(g[i, s, flip[j]])
        if not cands:
            continue
        dx, dy = np.round(cands[int(rng.integers(len(cands)))] - g[i, s, j]).astype(int)
        if max(abs(dx), abs(dy)) < min_shift:  # on top of the true peak: nothing to undo
            continue
        lam = float(rng.uniform(0.25, 0.75))
        out[i, s, j] = (1 - lam) * maps[i, s, j] + lam * _shifted(maps[i, s, j], int(dy), int(dx))
    return out


def refinement_loss(net: CorrespondenceNet, batch: dict, sigma: float,
                    distract: tuple[float, np.ndarray, np.random.Generator] | None = None):
    """BCE (mean over pixels) between the refined maps and the targets (paper eq. 5); Siamese frozen.

    ``sigma`` is ``refine_sigma``. A wider target (2 cells) raises the peaks, which the tracker's
    eq. 6 reads, but measured 1-3 PCK points less precise on held-out pairs than 1 cell.

    Only the person slots with a known joint go through the refinement. A sample is padded to
    ``max_persons`` slots and about 28 % of them hold someone on our pseudo-labels: a padded slot
    adds nothing to the loss but costs a full refinement pass, and its input (the pair term alone)
    would weigh in the refinement's BatchNorm statistics, which at inference only ever see people.

    ``distract`` = (prob, flip permutation, rng): ``add_distractors`` on the affinity maps first.
    """
    with torch.no_grad():
        f = net.features(torch.cat([batch["img1"], batch["img2"]]).float().div_(255.0))
        b = batch["img1"].shape[0]
        f1, f2 = f[:b], f[b:]
        _, p, k, _ = batch["grid1"].shape
        maps = net.affinity(f1, f2, batch["grid1"].reshape(b, p * k, 2))
        h, w = maps.shape[-2:]
        maps = maps.reshape(b, p, k, h, w) * batch["valid1"].reshape(b, p, k, 1, 1)
        if distract is not None and distract[0] > 0:
            maps = add_distractors(maps, batch["grid2"], batch["present2"], *distract)
        maps = maps.reshape(b * p, k, h, w)
    known = batch["known2"].reshape(b * p, k)
    slots = known.any(-1)
    if not slots.any():  # nobody to learn from: one slot keeps the graph (and BatchNorm) well defined
        slots[0] = True
    owner = torch.arange(b, device=slots.device).repeat_interleave(p)[slots]  # the sample of each slot
    consensus = None
    if net.config.refine_prior:  # where each body went, from the same maps the refinement sees
        with torch.no_grad():
            centre, size = body_consensus(maps[slots], batch["grid1"].reshape(b * p, k, 2)[slots],
                                          batch["valid1"].reshape(b * p, k)[slots], net.config.refine_prior_motion)
            consensus = (centre.to(maps.device, maps.dtype), size.to(maps.device, maps.dtype))
    logits = net.refinement.persons(net.refinement.pair_term(f1, f2)[owner], maps[slots], consensus)
    t = encode_targets(batch["grid2"].reshape(b * p, k, 2)[slots], batch["present2"].reshape(b * p, k)[slots],
                       h, w, sigma)
    per_map = F.binary_cross_entropy_with_logits(logits, t, reduction="none").mean((-1, -2))
    refined = torch.zeros(b * p, k, h, w, dtype=logits.dtype, device=logits.device)
    refined[slots] = torch.sigmoid(logits.detach())
    return _masked_mean(per_map, known[slots]), refined.reshape(b, p * k, h, w), (f1, f2)


def init_siamese(net: CorrespondenceNet, path: str | Path) -> None:
    """Copy the Siamese weights (everything but the refinement) of a saved model into ``net``."""
    src = CorrespondenceNet.load(path).state_dict()
    own = net.state_dict()
    keys = [k for k in own if not k.startswith("refinement.")]
    bad = [k for k in keys if k not in src or src[k].shape != own[k].shape]
    if bad:
        raise CorrtrackError(f"{path}: its Siamese weights do not fit this configuration ({bad[0]})")
    net.load_state_dict({k: src[k] for k in keys}, strict=False)


def map_metrics(maps: torch.Tensor, batch: dict, radius: float = 1.5) -> tuple[float, float, float]:
    """(fraction of present keypoints decoded within ``radius`` cells, mean map max of present
    keypoints, mean map max of keypoints warped out of the frame)."""
    b = maps.shape[0]
    dec = decode_maps(maps).reshape(b, -1, 3)
    g2 = batch["grid2"].reshape(b, -1, 2)
    present = batch["present2"].reshape(b, -1)
    gone = batch["known2"].reshape(b, -1) & ~present
    hit = (dec[..., :2] - g2).norm(dim=-1) <= radius
    mean = lambda x, m: float((x * m).sum() / m.sum()) if m.any() else float("nan")  # noqa: E731
    return mean(hit.float(), present), mean(dec[..., 2], present), mean(dec[..., 2], gone)


# -- the loop ---------------------------------------------------------------------

def _stage(cfg: CorrTrainConfig, step: int) -> str:
    return "siamese" if step < cfg.steps_siamese else "refine"


def _lr_factor(cfg: CorrTrainConfig, step: int) -> float:
    if _stage(cfg, step) == "siamese":
        i, n = step, cfg.steps_siamese
    else:
        i, n = step - cfg.steps_siamese, cfg.steps_refine
    warm = min(1.0, (i + 1) / max(cfg.warmup_steps, 1))
    return warm * (0.1 if i >= cfg.lr_drop_at * n else 1.0)


def _optimizer(net: CorrespondenceNet, cfg: CorrTrainConfig, stage: str) -> torch.optim.Optimizer:
    if stage == "siamese":
        back = list(net.backbone.parameters())
        ids = {id(p) for p in back}
        rest = [p for p in net.siamese_parameters() if id(p) not in ids]
        groups = [{"params": back, "lr": cfg.lr * cfg.backbone_lr_mult, "base_lr": cfg.lr * cfg.backbone_lr_mult},
                  {"params": rest, "lr": cfg.lr, "base_lr": cfg.lr}]
    else:
        groups = [{"params": net.refinement_parameters(), "lr": cfg.lr, "base_lr": cfg.lr}]
    return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)


def _set_stage(net: CorrespondenceNet, stage: str) -> None:
    train_siamese = stage == "siamese"
    for p in net.siamese_parameters():
        p.requires_grad_(train_siamese)
    for p in net.refinement_parameters():
        p.requires_grad_(not train_siamese)
    net.train(train_siamese)  # a frozen Siamese keeps its BatchNorm statistics
    net.refinement.train(not train_siamese)
    if not train_siamese and net.log_scale.device.type == "cpu":
        # The Siamese is fixed from here on, so its features can take the CPU inference path (ONNX
        # Runtime, within 1e-4 of eager): 4.8 -> 0.7 s for a batch of 16 pairs (32 images at 512) on 2 cores.
        net.freeze_for_cpu()


METRIC_FIELDS = ("step", "stage", "loss", "pck", "present_max", "truncated_max", "lr", "elapsed_s")


def train_corr(cfg: CorrTrainConfig, resume: bool = True, stop_after: int | None = None) -> Path:
    """Train (or continue training) and write ``out_dir/corrnet.pt``; returns its path.

    Writes ``checkpoint.pt`` every ``checkpoint_every`` steps and at the end,
    and ``metrics.csv``. With ``resume`` an existing checkpoint in ``out_dir``
    is continued (its configuration must match). ``stop_after`` ends the run
    early after that global step, leaving a checkpoint (for tests and for
    splitting a long run).
    """
    d = setup_distributed(cfg.device)
    device, main = d.device, d.main
    out = Path(cfg.out_dir)
    ckpt_path = out / "checkpoint.pt"
    metrics = MetricsLog(out / "metrics.csv", METRIC_FIELDS)
    config = config_dict(cfg)

    records: list[Record] = []
    for ann, imgs in zip(cfg.annotations, cfg.images):
        records += read_coco_records(ann, imgs, cfg.net.num_joints, cfg.min_keypoints)
    if not records:
        raise CorrtrackError(f"{cfg.annotations[0]}: no person with {cfg.min_keypoints}+ labelled keypoints")

    torch.manual_seed(cfg.seed)
    net = CorrespondenceNet(cfg.net).to(device)
    step, elapsed0 = 0, 0.0
    state = load_checkpoint(ckpt_path, device, config) if resume else None
    if state is not None:
        net.load_state_dict(state["model"])
        step, elapsed0 = int(state["step"]), float(state.get("elapsed_s", 0.0))
        set_rng_state(state["rng"])
        metrics.load(step)
    elif cfg.init_from:
        init_siamese(net, cfg.init_from)
    end = cfg.total_steps if stop_after is None else min(cfg.total_steps, stop_after)

    stage = _stage(cfg, min(step, cfg.total_steps - 1))
    _set_stage(net, stage)
    opt = _optimizer(net, cfg, stage)
    if state is not None and state.get("stage") == stage and state.get("optimizer") is not None:
        opt.load_state_dict(state["optimizer"])

    def checkpoint() -> None:
        if not main:
            return
        save_checkpoint(ckpt_path, {"model": net.state_dict(), "optimizer": opt.state_dict(), "stage": stage,
                                    "step": step, "rng": rng_state(), "config": config,
                                    "elapsed_s": elapsed0 + time.time() - t0})
        metrics.write()

    flip = COCO17.flip_permutation() if cfg.net.num_joints == len(COCO17.joints) else np.arange(cfg.net.num_joints)
    ds = PairDataset(records, cfg)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=cfg.batch_size, sampler=StepSampler(step, end, cfg.batch_size, d.rank, d.world),
        num_workers=cfg.workers, pin_memory=device.type == "cuda", persistent_workers=False)
    bar = progress_bar(main and cfg.progress, cfg.total_steps, step, "train corr")
    t0 = time.time()
    for batch in loader:
        new_stage = _stage(cfg, step)
        if new_stage != stage:  # module-wise: the Siamese module is done, train the refinement
            stage = new_stage
            _set_stage(net, stage)
            opt = _optimizer(net, cfg, stage)
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        factor = _lr_factor(cfg, step)
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * factor
        if stage == "siamese":
            loss, maps, _ = siamese_loss(net, batch, cfg.sigma)
        else:
            distract = (cfg.distract_prob, flip, np.random.default_rng([cfg.seed, 4, step]))
            loss, maps, _ = refinement_loss(net, batch, cfg.refine_sigma, distract)
        if not torch.isfinite(loss):
            raise CorrtrackError(f"training diverged at step {step} (loss {float(loss.detach())}); try a lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients((p for g in opt.param_groups for p in g["params"]), d.world)
        opt.step()
        step += 1
        if main and (step % cfg.log_every == 0 or step == end):
            pck, pmax, tmax = map_metrics(maps, batch)
            metrics.append({"step": step, "stage": stage, "loss": f"{float(loss.detach()):.6g}",
                            "pck": f"{pck:.4f}", "present_max": f"{pmax:.4f}", "truncated_max": f"{tmax:.4f}",
                         "lr": f"{opt.param_groups[-1]['lr']:.3g}", "elapsed_s": f"{elapsed0 + time.time() - t0:.1f}"})
            if bar is not None:
                bar.set_postfix(stage=stage, loss=f"{float(loss.detach()):.4f}", pck=f"{pck:.2f}")
        if bar is not None:
            bar.update(1)
        if step % cfg.checkpoint_every == 0 or step == end:
            checkpoint()
    if bar is not None:
        bar.close()
    final = out / "corrnet.pt"
    if main and step >= cfg.total_steps:
        net.save(final, meta={"steps_siamese": cfg.steps_siamese, "steps_refine": cfg.steps_refine,
                              "batch_size": cfg.batch_size * d.world, "seed": cfg.seed,
                              "train_seconds": round(elapsed0 + time.time() - t0, 1),
                              "data": [str(a) for a in cfg.annotations], "init_from": cfg.init_from,
                              "temporal_prob": cfg.temporal_prob, "temporal_max_frames": cfg.temporal_max_frames,
                              "occlude_prob": cfg.occlude_prob, "distract_prob": cfg.distract_prob})
    barrier(d.world)
    return final
