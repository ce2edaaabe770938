"""Correspondence network: accuracy on held-out affine pairs, synthetic and real video pairs; CPU speed.

    CORRTRACK_HOME=... .venv/bin/python benchmarks/bench_corr.py [--model PATH] [--pairs 12]
        [--sets a,b,c] [--synth DIR] [--teacher-cache FILE] [--anchors 48] [--skip-speed]
        [--skip-accuracy] [--trained-only] [--prior 0.1] [--threads 2] [--speed-sizes 512,384,320] [--speed-threads 1,2] [--speed-pck]

Accuracy (set (a) of issue 6): the real annotated images, none of which the
shipped model saw in training (it was trained on pseudo-labelled video frames):
COCO (4 images, 14 people, COCO-17) and the 3 labelled PoseTrack18 frames
(14 people, PoseTrack-18 slots). Each image gets ``--pairs`` random affine
warps drawn like the training ones (translation, rotation, flip, scale,
brightness/contrast, blur) but from a different seed; every labelled joint is
propagated from the image to its warp, and scored where it stays in the frame:
  * PCK@0.1: within 0.1 x the longer side of the person's box (tight box
    around its warped labelled joints);
  * PCKh@0.5 (PoseTrack frames only, they have head boxes): within 0.5 x head
    size, head size = 0.6 x the warped head-box diagonal (poseval's rule).
Side by side: the trained model (refined maps), the same model without the
refinement module (softmax argmax), the same backbone untrained (ImageNet
MobileNetV2 + a randomly initialised FPN head, seed 0; no refinement, an
untrained one is noise) and OpenCV DIS optical flow (PRESET_MEDIUM, on the
grey images at full resolution) moving the same keypoints.

Set (b), ``--sets b``: frame pairs at gaps 1, 5 and 10 (a pair starts every 3rd
frame) from a synthetic-benchmark suite (``--synth``; made on first use:
crossing preset, seed 123, 3 sequences x 60 frames, real COCO people on the
vtest.avi background; the training used another seed's sequences for model
selection only). Exact GT: joints visible in both frames are scored, PCK@0.1 of
the longer side of the person's GT box in the second frame and PCKh@0.5.
Occlusion: map maxima of joints visible in both vs joints hidden or gone.
Misses at gaps 5 and 10 by mode (``failure_modes``: on another person, on the own
mirrored joint, a near miss, on another own joint, elsewhere) and the share of
joints whose truth is among their map's 3 highest peaks: what the refinement could
win by choosing a better peak.

Truncation: the maximum of each joint's map for joints the warp moved out of
the frame vs joints that stayed in; reported as both means and the AUC (the
chance that a visible joint scores above a truncated one).

Set (c), ``--sets c``: real video pairs at gaps 1, 5 and 10 from the videos in
shared/data (``REAL_SOURCES``), scored against the teacher (our NanoDet + MoveNet
thunder): it measures agreement with the teacher, not accuracy. The training
pseudo-labels came from every 4th frame (index % 4 == 0) of these same videos, so
only frames with index % 4 != 0 are used (first frames a = 1 mod 4, ``--anchors``
per source spread evenly; one pair per gap each: <= 150 pairs per gap). People
are scored where identity is unambiguous and joints where the teacher is
confident (``RealPairConfig``: other people farther than 1.5 box diagonals in
both frames, the match within 0.75 diagonals, teacher joint score >= 0.5 in both
frames); PCK@0.1 of the longer side of the teacher's box in frame b. Misses at gaps 5
and 10 by mode as in set (b), against the teacher's joints (a miss on the own
mirrored joint: a left/right swap by the method or by the teacher). No PCKh: the
teacher gives COCO-17 joints, no head box. The teacher's boxes and keypoints are
cached in ``--teacher-cache`` (out/bench_corr_real/teacher.json), so reruns only
pay for the correspondence networks.

Speed on this CPU: for each ``--speed-sizes`` input size (longer side; square
canvas as shipped, and the canvas without square padding) and each
``--speed-threads`` count, ms per frame for the features (letterbox included) and
ms per person for ``propagate`` (affinity maps + refinement + decoding, 6 people in
one call, / 6; and affinity only), median and min of ``--repeats``, against the
25 FPS budget of 40 ms per frame. ``--speed-pck`` adds set (b) PCK at each size
(the accuracy side of the trade-off). The machine is shared: the load average is
printed beside the figures, and the commit and time (the network code may gain a
faster CPU path).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("CORRTRACK_SHARED", ROOT.parent / "shared")) / "data"

from corrtrack.layouts import COCO17  # noqa: E402
from corrtrack.models.corrnet import DEFAULT_WEIGHTS, CorrespondenceNet, CorrNetConfig  # noqa: E402
from corrtrack.models.frozen import RUNTIMES, effective_runtime  # noqa: E402
from corrtrack.models.corr_codec import inside_image  # noqa: E402
from corrtrack.pipeline.propagate import frame_features, propagate  # noqa: E402
from corrtrack.structures import Poses  # noqa: E402
from corrtrack.train.corr import WarpConfig, _photometric, sample_affine  # noqa: E402

SETS = (("coco", "mmpose/coco/test_coco.json", "mmpose/coco"),
        ("posetrack18", "mmpose/posetrack18/annotations/test_posetrack18_val.json", "mmpose/posetrack18"))


def load_people():
    out = []
    for name, ann, root in SETS:
        d = json.loads((DATA / ann).read_text())
        by_img: dict[int, list] = {}
        for a in d["annotations"]:
            kp = np.asarray(a["keypoints"], float).reshape(17, 3)
            if (kp[:, 2] > 0).sum() >= 1 and not a.get("iscrowd", 0):
                by_img.setdefault(a["image_id"], []).append((kp, a.get("bbox_head")))
        for im in d["images"]:
            if im["id"] in by_img:
                rgb = cv2.cvtColor(cv2.imread(str(DATA / root / im["file_name"])), cv2.COLOR_BGR2RGB)
                out.append((name, rgb, by_img[im["id"]]))
    return out


def dis_flow(a_rgb, b_rgb, kp):
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = dis.calc(cv2.cvtColor(a_rgb, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b_rgb, cv2.COLOR_RGB2GRAY), None)
    xy = kp[..., :2].reshape(-1, 1, 2).astype(np.float32)
    fx = cv2.remap(flow[..., 0], xy[..., 0], xy[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    fy = cv2.remap(flow[..., 1], xy[..., 0], xy[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return kp[..., :2] + np.stack([fx, fy], -1).reshape(kp.shape[:-1] + (2,))


PRIOR_ROW = " + motion prior "


def trained_nets(net, prior: float = 0.0) -> dict:
    """The trained model's rows: with the refinement module and without it (the same network), and both
    again with ``propagate``'s motion prior of sigma ``prior`` when it is > 0."""
    rows = ["trained + refinement", "trained, without refinement"]
    if prior > 0:
        rows += [f"{r}{PRIOR_ROW}{prior:g}" for r in rows]
    return {r: net for r in rows}


def prior_of(mname: str) -> float:
    """The motion prior of the row ``mname`` of ``trained_nets`` (0: none)."""
    return float(mname.split(PRIOR_ROW)[1]) if PRIOR_ROW in mname else 0.0


def uses_refinement(mname: str) -> bool:
    """Whether the row ``mname`` of ``trained_nets`` reads the refined maps (the untrained backbone does not)."""
    return mname.startswith("trained") and "without" not in mname


def method_names(nets: dict, flow: bool) -> list[str]:
    """The rows of an accuracy table: the networks, then DIS optical flow unless ``flow`` is off."""
    return list(nets) + (["DIS optical flow"] if flow else [])


def accuracy(nets: dict, pairs: int, seed: int, flow: bool = True):
    people = load_people()
    warp = WarpConfig()
    methods = method_names(nets, flow)
    hits = {m: [] for m in methods}
    hits_h = {m: [] for m in methods}
    trunc = {m: ([], []) for m in nets}  # (visible maxima, truncated maxima)
    for ii, (name, img, persons) in enumerate(people):
        h, w = img.shape[:2]
        kp = np.stack([p[0] for p in persons])
        kp[..., 2] = (kp[..., 2] > 0).astype(float)
        poses = Poses(kp, COCO17)
        for j in range(pairs):
            rng = np.random.default_rng([seed, 99, ii, j])
            m = sample_affine(rng, w, h, warp)
            img2 = _photometric(cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR), rng)
            gt = kp[..., :2] @ m[:, :2].T + m[:, 2]
            valid = kp[..., 2] > 0
            present = valid & inside_image(gt, w, h)
            box = np.array([np.ptp(g[v], 0).max() if v.sum() > 1 else np.nan for g, v in zip(gt, present)])
            scale = np.sqrt(abs(np.linalg.det(m[:, :2])))
            head = np.array([0.6 * np.hypot(hb[2], hb[3]) * scale if hb else np.nan for _, hb in persons])
            preds = {}
            for mname, net in nets.items():
                fa, fb = frame_features(net, img), frame_features(net, img2)
                moved, maps = propagate(net, None, None, poses, feats_a=fa, feats_b=fb,
                                        use_refinement=uses_refinement(mname), prior=prior_of(mname))
                preds[mname] = moved.keypoints[..., :2]
                conf = moved.keypoints[..., 2]
                trunc[mname][0].extend(conf[present].tolist())
                trunc[mname][1].extend(conf[valid & ~present].tolist())
            if flow:
                preds["DIS optical flow"] = dis_flow(img, img2, kp)
            for mname, p in preds.items():
                err = np.linalg.norm(p - gt, axis=-1)
                ok = present & np.isfinite(box)[:, None]
                hits[mname].extend((err[ok] <= 0.1 * np.broadcast_to(box[:, None], err.shape)[ok]).tolist())
                if name == "posetrack18":
                    okh = present & np.isfinite(head)[:, None]
                    hits_h[mname].extend((err[okh] <= 0.5 * np.broadcast_to(head[:, None], err.shape)[okh]).tolist())
    return methods, hits, hits_h, trunc


def synth_pairs(suite: Path, gaps=(1, 5, 10), every: int = 3):
    """Set (b): (sequence, gap, frame a, frame b, poses a, poses b) from a synthetic suite, COCO-17 joints.

    Only joints visible in a frame are in its PoseTrack GT (hidden or outside: score 0). Persons are
    matched by track id; a frame pair starts every ``every`` frames.
    """
    from corrtrack.io.posetrack import read_posetrack
    from corrtrack.io.video import open_source
    from corrtrack.layouts import convert_keypoints

    files = sorted((suite / "posetrack").glob("*.json"))
    if not files:
        raise SystemExit(f"{suite}: no posetrack/*.json (make it with: corrtrack data synth {suite} "
                         "--preset crossing --seed 123)")
    for f in files:
        seq = read_posetrack(f)
        frames = [fr.image for fr in open_source(suite / "videos" / f"{f.stem}.mp4")]
        for gap in gaps:
            for a in range(0, min(len(frames), len(seq.poses)) - gap, every):
                pa, pb = seq.poses[a], seq.poses[a + gap]
                common = [t for t in pa.track_ids if t in set(pb.track_ids.tolist())]
                if not common:
                    continue
                ia = [int(np.flatnonzero(pa.track_ids == t)[0]) for t in common]
                ib = [int(np.flatnonzero(pb.track_ids == t)[0]) for t in common]
                ka = convert_keypoints(pa.keypoints[ia], pa.layout, COCO17)
                kb = convert_keypoints(pb.keypoints[ib], pb.layout, COCO17)
                yield seq.name, gap, a, frames[a], frames[a + gap], ka, kb, pb.boxes[ib], pb.head_boxes[ib]


FAILURE_MODES = ("correct", "on another person", "own mirrored joint", "0.1-0.2 of the box away",
                 "on another own joint", "elsewhere")


def failure_modes(pred: np.ndarray, truth: np.ndarray, side: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """(N, K) index into FAILURE_MODES of each propagated joint of N people in frame b (-1: not visible there).

    ``pred`` (N, K, 2), ``truth`` (N, K, 3) with score > 0 where visible, ``side`` (N,) the longer box side.
    A joint is "correct" within 0.1 x side (PCK@0.1); a miss is put in the first mode that fits: within
    0.1 x side of any visible joint of another person, of its own mirrored joint, within 0.2 x side of the
    truth, of another of its own joints, else elsewhere. Tells whether a miss is a confusion the maps could
    resolve (another person, left/right) or a localisation or motion failure.
    """
    n, k = pred.shape[:2]
    vis = truth[..., 2] > 0
    tol = 0.1 * np.asarray(side, float)[:, None]  # (N, 1)
    d = np.linalg.norm(pred[:, :, None, None] - truth[None, None, :, :, :2], axis=-1)  # (N, K, N, K)
    close = (d <= tol[:, :, None, None]) & vis[None, None]
    same = np.eye(n, dtype=bool)[:, None, :, None]
    other_person = (close & ~same).any(axis=(2, 3))
    own = close[np.arange(n), :, np.arange(n)]  # (N, K, K): joint j's prediction near own joint j2
    mirrored = own[:, np.arange(k), flip]
    own_other = (own & ~np.eye(k, dtype=bool)[None]).any(-1)
    err = d[np.arange(n), :, np.arange(n)][:, np.arange(k), np.arange(k)]
    modes = np.select([err <= tol, other_person, mirrored, err <= 2 * tol, own_other], [0, 1, 2, 3, 4], 5)
    return np.where(vis, modes, -1)


def print_failure_modes(methods, modes: dict, gaps, top3: dict | None = None) -> None:
    """Markdown table: per method and gap the share of joints in each miss mode (and the top-3 bound)."""
    print("| method | gap | " + " | ".join(FAILURE_MODES[1:]) + (" | top-3 peaks |" if top3 is not None else " |"))
    print("|---" * (1 + len(FAILURE_MODES) + (top3 is not None)) + "|")
    for m in methods:
        for g in gaps:
            c = np.bincount(modes[m, g], minlength=len(FAILURE_MODES)) / max(len(modes[m, g]), 1)
            row = f"| {m} | {g} | " + " | ".join(f"{100 * v:.1f}" for v in c[1:]) + " |"
            if top3 is not None:
                row += f" {100 * np.mean(top3[m, g]):.1f} |" if (m, g) in top3 else " – |"
            print(row)


def truth_in_top_peaks(maps: torch.Tensor, truth_xy: np.ndarray, side: np.ndarray, letterbox, stride: int,
                       m: int = 3) -> np.ndarray:
    """(N, K): the truth lies within 0.1 x side of one of the ``m`` highest local maxima of its map.

    An upper bound for anything that only chooses among the peaks a map already has (a pose prior, the
    refinement at its best): what share of joints the right choice would get.
    """
    from corrtrack.models.corr_codec import grid_to_image

    x = maps.float()
    peaks = (x == torch.nn.functional.max_pool2d(x, 3, 1, 1)) & (x > 0)
    top = torch.where(peaks, x, torch.zeros_like(x)).flatten(2).topk(m, dim=-1)
    w = x.shape[-1]
    uv = torch.stack([top.indices % w, top.indices // w], -1).double().cpu().numpy()
    xy = grid_to_image(uv, letterbox, stride)  # (N, K, m, 2)
    near = np.linalg.norm(xy - truth_xy[:, :, None], axis=-1) <= 0.1 * np.asarray(side, float)[:, None, None]
    return (near & (top.values > 0).cpu().numpy()).any(-1)


def accuracy_synth(nets: dict, suite: Path, gaps=(1, 5, 10), flow: bool = True):
    """PCK@0.1 (of the longer side of the GT box in frame b) and PCKh@0.5 per gap, on joints visible in
    both frames; map maxima of joints visible in both vs joints visible in a that are hidden or gone in b;
    per method and gap the failure mode of each such joint (``failure_modes``) and, for the networks,
    whether the truth is among its map's 3 highest peaks."""
    methods = method_names(nets, flow)
    flip = COCO17.flip_permutation()
    modes = {(m, g): [] for m in methods for g in gaps}
    top3 = {(m, g): [] for m in nets for g in gaps}
    hits = {(m, g): [] for m in methods for g in gaps}
    hits_h = {(m, g): [] for m in methods for g in gaps}
    occl = {m: ([], []) for m in nets}
    cache: dict = {}
    for seq, gap, a, fa, fb, ka, kb, box_b, head_b in synth_pairs(suite, gaps):
        if seq not in {k[1] for k in cache}:
            cache.clear()  # a new sequence: the frames of the last one are done
        va, vb = ka[..., 2] > 0, kb[..., 2] > 0
        both = va & vb
        side = np.maximum(box_b[:, 2] - box_b[:, 0], box_b[:, 3] - box_b[:, 1])
        head = 0.6 * np.hypot(head_b[:, 2] - head_b[:, 0], head_b[:, 3] - head_b[:, 1])
        kp = ka.copy()
        kp[..., 2] = va.astype(float)
        poses = Poses(kp, COCO17)
        preds = {}
        for mname, net in nets.items():
            feats = []
            for i, fr in ((a, fa), (a + gap, fb)):
                key = (mname.startswith("untrained"), seq, i)
                if key not in cache:
                    cache[key] = frame_features(net, fr)
                feats.append(cache[key])
            refine = uses_refinement(mname)
            moved, maps = propagate(net, None, None, poses, feats_a=feats[0], feats_b=feats[1],
                                    use_refinement=refine, prior=prior_of(mname))
            preds[mname] = moved.keypoints[..., :2]
            in_top = truth_in_top_peaks(maps.maps, kb[..., :2], side, maps.letterbox, maps.stride)
            top3[mname, gap].extend(in_top[both].tolist())
            occl[mname][0].extend(moved.keypoints[..., 2][both].tolist())
            occl[mname][1].extend(moved.keypoints[..., 2][va & ~vb].tolist())
        if flow:
            preds["DIS optical flow"] = dis_flow(fa, fb, kp)
        for mname, p in preds.items():
            err = np.linalg.norm(p - kb[..., :2], axis=-1)
            hits[mname, gap].extend((err[both] <= 0.1 * np.broadcast_to(side[:, None], err.shape)[both]).tolist())
            okh = both & np.isfinite(head)[:, None]
            hits_h[mname, gap].extend((err[okh] <= 0.5 * np.broadcast_to(head[:, None], err.shape)[okh]).tolist())
            modes[mname, gap].extend(failure_modes(p, kb, side, flip)[both].tolist())
    return methods, hits, hits_h, occl, (modes, top3)


# -- set (c): real video pairs scored against the teacher ------------------------------------------

# Sources of the pseudo-label training data (docs/models/corrnet.md): every 4th frame (index % 4 == 0)
# of each was a training frame, so set (c) uses only frames with index % 4 != 0 (the videos were seen).
REAL_SOURCES = ("opencv/vtest.avi", "mmaction2/test_video_structuralize.mp4",
                "intel_sample_videos/one-by-one-person-detection.mp4", "mmpose/demo/demo.mp4",
                "mmtracking/demo.mp4", "mmpose/posetrack18/videos/000001_mpiinew_test")
TRAIN_EVERY = 4


@dataclasses.dataclass(frozen=True)
class RealPairConfig:
    """Which teacher people of a frame pair count as one identity, and which joints are scored.

    Person i of frame a and person j of frame b are the same identity ("unambiguous") when:
      * both detections score >= ``min_box_score`` (the pseudo-labels' own threshold);
      * j is the detection of frame b whose box centre is nearest to i's, at most ``max_shift`` x the
        diagonal of i's box away;
      * in frame a every other detection's box centre is farther than ``separation`` x i's box diagonal
        from i's centre, and in frame b farther than ``separation`` x j's diagonal from j's centre
        ("one person in view" is the case with no other detection).
    "Other detections" are all the detector's boxes (its own threshold, 0.4), so a half-confident
    neighbour still makes a person ambiguous. A joint is scored when the teacher gives it
    >= ``min_joint_score`` in both frames.
    """

    gaps: tuple[int, ...] = (1, 5, 10)
    anchors_per_source: int = 48  # 6 sources: <= 150 frame pairs per gap overall
    separation: float = 1.5
    max_shift: float = 0.75
    min_box_score: float = 0.5
    min_joint_score: float = 0.5


def _short(source: str) -> str:
    """A table label: two sources are called demo.mp4."""
    return f"{source.split('/')[0]}/{Path(source).name}"


def real_anchors(num_frames: int, count: int, gaps=(1, 5, 10), every: int = TRAIN_EVERY) -> list[int]:
    """Up to ``count`` first frames a, evenly spread, such that a and every a + gap that fits in the
    video are not training frames. a = 1 (mod 4) gives a + 1, a + 5, a + 10 = 2, 2, 3 (mod 4): one
    teacher frame set serves all gaps. Anchors with every gap are preferred; a video too short for
    them (5-8 frames) contributes what fits."""
    ok = [a for a in range(1, num_frames, every)
          if all((a + g) % every for g in gaps if a + g < num_frames) and any(a + g < num_frames for g in gaps)]
    full = [a for a in ok if a + max(gaps) < num_frames]
    cand = full or ok
    if len(cand) <= count:
        return cand
    return sorted({cand[int(round(i))] for i in np.linspace(0, len(cand) - 1, count)})


def _centre_diag(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    return (boxes[:, :2] + boxes[:, 2:]) / 2, np.hypot(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])


def _isolated(centres: np.ndarray, diag: np.ndarray, i: int, separation: float) -> bool:
    d = np.linalg.norm(centres - centres[i], axis=1)
    d[i] = np.inf
    return bool((d > separation * diag[i]).all())


def unambiguous_matches(boxes_a, scores_a, boxes_b, scores_b, cfg: RealPairConfig = RealPairConfig()):
    """[(i, j)]: person i of frame a is person j of frame b by the rule of ``RealPairConfig``."""
    ca, da = _centre_diag(boxes_a)
    cb, db = _centre_diag(boxes_b)
    out = []
    if not len(ca) or not len(cb):
        return out
    for i in range(len(ca)):
        if scores_a[i] < cfg.min_box_score or not _isolated(ca, da, i, cfg.separation):
            continue
        shift = np.linalg.norm(cb - ca[i], axis=1)
        j = int(np.argmin(shift))
        if (shift[j] <= cfg.max_shift * da[i] and scores_b[j] >= cfg.min_box_score
                and _isolated(cb, db, j, cfg.separation)):
            out.append((i, j))
    return out


TEACHER = {"detector": "NanoDet, DetectorConfig() defaults", "pose": "MoveNet thunder, PoseConfig() crops",
           "keypoints_for_boxes_from": RealPairConfig.min_box_score}


def teacher_labels(cache_path: Path, source: str, frames: dict[int, np.ndarray], detector, estimator) -> dict:
    """{frame index: (boxes (N, 4), box scores (N,), keypoints (N, 17, 3))} of the teacher for ``frames``,
    read from / added to the JSON cache (written atomically after each source). Keypoints are zero for
    boxes under ``TEACHER['keypoints_for_boxes_from']`` (they only count as neighbours)."""
    from corrtrack.io.atomic import write_json

    from corrtrack.errors import CorrtrackError

    try:
        cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    except (OSError, ValueError) as e:
        raise CorrtrackError(f"{cache_path}: unreadable teacher cache ({type(e).__name__}); delete it to rebuild") from None
    if cache.get("teacher") != TEACHER:
        cache = {"teacher": TEACHER, "frames": {}}
    have = cache["frames"].setdefault(source, {})
    todo = [i for i in sorted(frames) if str(i) not in have]
    for i in tqdm(todo, desc=f"teacher {Path(source).name}", unit="frame", disable=not todo):
        det = detector(frames[i])
        kp = np.zeros((len(det), 17, 3))
        sel = np.flatnonzero(det.scores >= TEACHER["keypoints_for_boxes_from"])
        if len(sel):
            kp[sel] = estimator(frames[i], det.boxes[sel]).keypoints
        have[str(i)] = {"boxes": np.round(det.boxes, 2).tolist(), "scores": np.round(det.scores, 4).tolist(),
                        "keypoints": np.round(kp, 3).tolist()}
    if todo:
        write_json(cache_path, cache)
    return {i: (np.asarray(have[str(i)]["boxes"], float).reshape(-1, 4), np.asarray(have[str(i)]["scores"], float),
                np.asarray(have[str(i)]["keypoints"], float).reshape(-1, 17, 3)) for i in frames}


def _read_frames(path: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    from corrtrack.io.video import open_source

    out = {}
    with open_source(path) as src:
        for fr in src:
            if fr.index in wanted:
                out[fr.index] = fr.image
            if len(out) == len(wanted):
                break
    return out


def accuracy_real(nets: dict, cache_path: Path, cfg: RealPairConfig = RealPairConfig(), sources=REAL_SOURCES,
                  flow: bool = True):
    """Set (c): PCK@0.1 (of the longer side of the teacher's box in frame b) per gap and source, for the
    teacher's confident joints of unambiguous people. Returns (methods, hits {(method, gap, source): [bool]},
    counts {(gap, source): [pairs, people]}, people {(gap, source): [person id of each scored joint]}, modes
    {(method, gap): [``failure_modes`` index of each scored joint]}; the joints of one key are in the same
    order for every method)."""
    from corrtrack.io.video import open_source
    from corrtrack.pipeline.detector import Detector
    from corrtrack.pipeline.pose import PoseConfig, TopDownPoseEstimator

    detector, estimator = Detector(device="cpu"), TopDownPoseEstimator(PoseConfig(model="thunder"), device="cpu")
    methods = method_names(nets, flow)
    flip = COCO17.flip_permutation()
    hits: dict = {}
    counts: dict = {}
    people: dict = {}
    modes: dict = {}
    for source in sources:
        path = DATA / source
        with open_source(path) as src:
            n = src.num_frames
        if n is None:
            raise SystemExit(f"{path}: frame count unknown")
        anchors = real_anchors(n, cfg.anchors_per_source, cfg.gaps)
        pairs = [(a, g) for a in anchors for g in cfg.gaps if a + g < n]
        wanted = {i for a, g in pairs for i in (a, a + g)}
        assert all(i % TRAIN_EVERY for i in wanted)  # never a training frame
        frames = _read_frames(path, wanted)
        labels = teacher_labels(cache_path, source, frames, detector, estimator)
        for a in tqdm(anchors, desc=f"set (c) {Path(source).name}", unit="anchor"):
            feats: dict = {}
            for g in cfg.gaps:
                if a + g >= n:
                    continue
                b = a + g
                (ba, sa, ka), (bb, sb, kb) = labels[a], labels[b]
                matches = unambiguous_matches(ba, sa, bb, sb, cfg)
                counts.setdefault((g, source), [0, 0])
                if not matches:
                    continue
                ia, ib = [m[0] for m in matches], [m[1] for m in matches]
                src_kp, dst_kp = ka[ia], kb[ib]
                both = (src_kp[..., 2] >= cfg.min_joint_score) & (dst_kp[..., 2] >= cfg.min_joint_score)
                if not both.any():
                    continue
                counts[g, source][0] += 1
                counts[g, source][1] += int(both.any(1).sum())
                people.setdefault((g, source), []).extend(
                    f"{a}:{p}" for p in np.broadcast_to(np.arange(len(ia))[:, None], both.shape)[both])
                kp = src_kp.copy()
                kp[..., 2] = (src_kp[..., 2] >= cfg.min_joint_score).astype(float)
                poses = Poses(kp, COCO17)
                side = np.maximum(bb[ib, 2] - bb[ib, 0], bb[ib, 3] - bb[ib, 1])
                preds = {}
                for mname, net in nets.items():
                    for i in (a, b):
                        key = (mname.startswith("untrained"), i)
                        if key not in feats:
                            feats[key] = frame_features(net, frames[i])
                    untr = mname.startswith("untrained")
                    refine = uses_refinement(mname)
                    moved, _ = propagate(net, None, None, poses, feats_a=feats[untr, a], feats_b=feats[untr, b],
                                         use_refinement=refine, prior=prior_of(mname))
                    preds[mname] = moved.keypoints[..., :2]
                if flow:
                    preds["DIS optical flow"] = dis_flow(frames[a], frames[b], kp)
                truth = dst_kp.copy()
                truth[..., 2] = both  # only the scored joints count, as truth and as "another person"
                for mname, p in preds.items():
                    err = np.linalg.norm(p - dst_kp[..., :2], axis=-1)
                    ok = err[both] <= 0.1 * np.broadcast_to(side[:, None], err.shape)[both]
                    hits.setdefault((mname, g, source), []).extend(ok.tolist())
                    modes.setdefault((mname, g), []).extend(failure_modes(p, truth, side, flip)[both].tolist())
    return methods, hits, counts, people, modes


def paired_bootstrap(h1, h2, groups, n: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """PCK difference (points) of two methods on the same joints, and its 95 % interval from resampling
    people (the joints of one person are not independent)."""
    h1, h2 = np.asarray(h1, float), np.asarray(h2, float)
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    cnt, s1, s2 = (np.bincount(g, w, minlength=g.max() + 1) for w in (None, h1, h2))
    w = np.random.default_rng(seed).multinomial(len(cnt), np.full(len(cnt), 1 / len(cnt)), size=n)
    diffs = 100 * (w @ (s1 - s2)) / (w @ cnt)
    return 100 * (h1.mean() - h2.mean()), float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))


def auc(pos, neg):
    pos, neg = np.asarray(pos), np.asarray(neg)
    if not len(pos) or not len(neg):
        return float("nan")
    return float(((pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None])).mean())


def timeit(fn, repeats):
    """(median, min) wall ms and median process CPU ms of ``repeats`` calls. With one thread the CPU
    time is close to what an idle core would take: on this shared machine it moves far less with the
    other jobs' load than the wall time does (it still includes cache and memory-bandwidth contention)."""
    fn()
    ts, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        ts.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return 1e3 * float(np.median(ts)), 1e3 * float(np.min(ts)), 1e3 * float(np.median(cpu))


BUDGET_MS = 40.0  # 25 FPS end to end: detection, pose, correspondences and tracking share it
SPEED_PEOPLE = 6  # vtest.avi has about 6 walkers in view


def with_input_size(net, size: int, square: bool = True):
    """The same weights on another letterbox canvas (the network is fully convolutional; people then
    look smaller than in training, hence the accuracy column)."""
    other = copy.deepcopy(net)
    other.config = dataclasses.replace(net.config, input_size=size, square=square)
    return other


def speed(net, frame: np.ndarray, sizes, repeats: int, people: int = SPEED_PEOPLE, runtime: str = "onnx"):
    """Rows per input size, at the current torch thread count: (size, square canvas, unpadded canvas,
    then ``timeit`` triples (median, min, CPU) for: features on the square canvas (eager), the same
    through the CPU runtime the tracker uses (``freeze_for_cpu(runtime=runtime)``: ONNX Runtime or
    frozen TorchScript, when the model has it, else None), features without square padding (eager),
    per person with refinement, per person affinity only, then the tracker's path or None: (features, per person refined) without square
    padding through that runtime, as ``CorrPropagator`` runs them). Per person = one
    ``propagate`` of ``people`` people (affinity maps, refinement incl. its per-pair term, decoding) /
    ``people``: the tracker's unit."""
    h, w = frame.shape[:2]
    rng = np.random.default_rng(0)
    kp = np.ones((people, 17, 3))
    kp[..., 0] = rng.uniform(0, w - 1, (people, 17))
    kp[..., 1] = rng.uniform(0, h - 1, (people, 17))
    poses = Poses(kp, COCO17)
    rows = []
    for size in sizes:
        sq, rect = with_input_size(net, size, True), with_input_size(net, size, False)
        f_sq = timeit(lambda: frame_features(sq, frame), repeats)
        f_frozen = None
        if hasattr(sq, "freeze_for_cpu"):
            fz = with_input_size(net, size, True).freeze_for_cpu(runtime=runtime)
            f_frozen = timeit(lambda: frame_features(fz, frame), repeats)  # the first call traces, untimed
        f_rect = timeit(lambda: frame_features(rect, frame), repeats)
        fa, fb = frame_features(sq, frame), frame_features(sq, frame)
        ref = timeit(lambda: propagate(sq, None, None, poses, feats_a=fa, feats_b=fb), repeats)
        aff = timeit(lambda: propagate(sq, None, None, poses, feats_a=fa, feats_b=fb, use_refinement=False), repeats)
        canvas = (fa.letterbox.canvas_w, fa.letterbox.canvas_h)
        rect_canvas = (rect.letterbox(w, h).canvas_w, rect.letterbox(w, h).canvas_h)
        # What the tracker runs (CorrPropagator): no square padding, frozen features and refinement.
        path = None
        if hasattr(rect, "freeze_for_cpu"):
            tr = with_input_size(net, size, False).freeze_for_cpu(runtime=runtime)
            ta, tb = frame_features(tr, frame), frame_features(tr, frame)  # the first calls trace, untimed
            propagate(tr, None, None, poses, feats_a=ta, feats_b=tb)
            path = (timeit(lambda: frame_features(tr, frame), repeats),
                    tuple(t / people for t in timeit(lambda: propagate(tr, None, None, poses, feats_a=ta, feats_b=tb),
                                                     repeats)))
        rows.append((size, canvas, rect_canvas, f_sq, f_frozen, f_rect, tuple(t / people for t in ref),
                     tuple(t / people for t in aff), path))
    return rows


def code_version() -> str:
    """Commit of the working tree (read from .git, no git process) and the time, for timings."""
    head = ROOT / ".git" / "HEAD"
    commit = "unknown"
    if head.is_file():
        ref = head.read_text().strip()
        commit = ref
        if ref.startswith("ref: "):
            name = ref[5:]
            loose = ROOT / ".git" / name
            if loose.is_file():
                commit = loose.read_text().strip()
            elif (ROOT / ".git" / "packed-refs").is_file():
                for line in (ROOT / ".git" / "packed-refs").read_text().splitlines():
                    if line.endswith(" " + name):
                        commit = line.split()[0]
    return f"commit {commit[:10]} (plus any uncommitted changes), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_WEIGHTS)
    ap.add_argument("--pairs", type=int, default=12, help="warps per image")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the accuracy sets")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--trained-only", action="store_true",
                    help="score only the model (with and without refinement), not the untrained backbone and DIS "
                         "optical flow: about half the time, for comparing trained models")
    ap.add_argument("--sets", default="a,b,c", help="accuracy sets to run: a (affine pairs), b (synthetic sequences), "
                                                 "c (real video pairs against the teacher)")
    ap.add_argument("--synth", type=Path, default=ROOT / "out" / "bench_corr_synth",
                    help="set (b) suite folder; made here (crossing, seed 123, 3 x 60 frames) when absent")
    ap.add_argument("--teacher-cache", type=Path, default=ROOT / "out" / "bench_corr_real" / "teacher.json",
                    help="set (c): the teacher's boxes and keypoints per frame (made on first use)")
    ap.add_argument("--anchors", type=int, default=RealPairConfig.anchors_per_source,
                    help="set (c): first frames per source (each gives one pair per gap)")
    ap.add_argument("--speed-sizes", default="512,384,320", help="input sizes (longer side) for the speed table")
    ap.add_argument("--speed-threads", default="1,2", help="thread counts for the speed table")
    ap.add_argument("--cpu-runtime", choices=RUNTIMES, default="onnx",
                    help="the tracker's CPU runtime for the frozen columns (RunConfig.cpu_runtime)")
    ap.add_argument("--prior", type=float, default=0.0,
                    help="also score the trained model with propagate's motion prior of this sigma (x person size)")
    ap.add_argument("--speed-pck", action="store_true",
                    help="also score set (b) (trained model, with and without refinement) at each speed input size")
    args = ap.parse_args()
    sets = set(args.sets.split(","))
    torch.set_num_threads(args.threads)
    trained = CorrespondenceNet.load(args.model)
    if not args.skip_accuracy:
        nets = trained_nets(trained, args.prior)
        if not args.trained_only:
            torch.manual_seed(0)
            nets["untrained (ImageNet backbone)"] = CorrespondenceNet(CorrNetConfig()).eval()
    flow = not args.trained_only
    if not args.skip_accuracy and "a" in sets:
        t = time.time()
        methods, hits, hits_h, trunc = accuracy(nets, args.pairs, args.seed, flow)
        n = len(hits[methods[0]])
        print(f"\nHeld-out affine pairs: COCO 4 images + PoseTrack18 3 frames (28 people), {args.pairs} warps each, "
              f"{n} joints in frame ({time.time() - t:.0f} s)\n")
        print("| method | PCK@0.1 | PCKh@0.5 (PoseTrack18) |")
        print("|---|---|---|")
        for m in methods:
            print(f"| {m} | {100 * np.mean(hits[m]):.1f} | {100 * np.mean(hits_h[m]):.1f} |")
        print("\nTruncation: map maximum of joints that stay in the frame vs joints warped out\n")
        print("| maps | visible mean | truncated mean | AUC visible > truncated | truncated joints |")
        print("|---|---|---|---|---|")
        for m, (vis, tr) in trunc.items():
            if m.startswith("untrained"):
                continue
            kind = "refined (sigmoid)" if "without" not in m else "softmax"
            print(f"| {m}: {kind} | {np.mean(vis):.3f} | {np.mean(tr) if tr else float('nan'):.3f} | "
                  f"{auc(vis, tr):.3f} | {len(tr)} |")
    if not args.skip_accuracy and "b" in sets:
        if not (args.synth / "posetrack").is_dir():
            from corrtrack.synth.suite import generate_suite

            generate_suite(args.synth, "crossing", seed=123, overrides={"num_sequences": 3, "num_frames": 60})
        t = time.time()
        gaps = (1, 5, 10)
        methods, hits, hits_h, occl, (modes, top3) = accuracy_synth(nets, args.synth, gaps, flow)
        seed = json.loads((args.synth / "suite.json").read_text()).get("seed")
        print(f"\nSynthetic sequences {args.synth} (seed {seed}), joints visible in both frames, "
              f"{', '.join(f'gap {g}: {len(hits[methods[0], g])}' for g in gaps)} joints ({time.time() - t:.0f} s)\n")
        print("| method | " + " | ".join(f"PCK@0.1 gap {g}" for g in gaps) + " | "
              + " | ".join(f"PCKh@0.5 gap {g}" for g in gaps) + " |")
        print("|---" * (1 + 2 * len(gaps)) + "|")
        for m in methods:
            print(f"| {m} | " + " | ".join(f"{100 * np.mean(hits[m, g]):.1f}" for g in gaps) + " | "
                  + " | ".join(f"{100 * np.mean(hits_h[m, g]):.1f}" for g in gaps) + " |")
        print("\nOcclusion: map maximum of joints visible in both frames vs joints hidden or gone in frame b\n")
        print("| maps | visible mean | hidden mean | AUC visible > hidden | hidden joints |")
        print("|---|---|---|---|---|")
        for m, (vis, hid) in occl.items():
            if not m.startswith("untrained"):
                print(f"| {m} | {np.mean(vis):.3f} | {np.mean(hid):.3f} | {auc(vis, hid):.3f} | {len(hid)} |")
        print("\nMisses by mode at gaps 5 and 10, % of the joints (`failure_modes`); top-3 peaks: % of joints "
              "whose truth is among the map's 3 highest peaks (a bound for choosing among them)\n")
        print_failure_modes(methods, modes, gaps[1:], top3)
    if not args.skip_accuracy and "c" in sets:
        t = time.time()
        cfg = dataclasses.replace(RealPairConfig(), anchors_per_source=args.anchors)
        methods, hits, counts, people, modes = accuracy_real(nets, args.teacher_cache, cfg, flow=flow)
        srcs = [s for s in REAL_SOURCES if any(counts.get((g, s), [0])[0] for g in cfg.gaps)]
        pool = lambda m, g, ss=REAL_SOURCES: [h for s in ss for h in hits.get((m, g, s), [])]  # noqa: E731
        print(f"\nReal video pairs vs the teacher (NanoDet + MoveNet thunder), frames with index % {TRAIN_EVERY} "
              f"!= 0 only; unambiguous people (separation {cfg.separation} x box diagonal, shift <= "
              f"{cfg.max_shift} x diagonal), joints the teacher scores >= {cfg.min_joint_score} in both frames "
              f"({time.time() - t:.0f} s). This measures agreement with the teacher.\n")
        print("| source | " + " | ".join(f"gap {g}: pairs / people / joints" for g in cfg.gaps) + " |")
        print("|---" * (1 + len(cfg.gaps)) + "|")
        for s in srcs + ["all"]:
            ss = REAL_SOURCES if s == "all" else (s,)
            cells = [f"{sum(counts.get((g, x), [0, 0])[0] for x in ss)} / {sum(counts.get((g, x), [0, 0])[1] for x in ss)}"
                     f" / {len(pool(methods[0], g, ss))}" for g in cfg.gaps]
            print(f"| {s} | " + " | ".join(cells) + " |")
        print("\n| method | " + " | ".join(f"PCK@0.1 gap {g}" for g in cfg.gaps) + " |")
        print("|---" * (1 + len(cfg.gaps)) + "|")
        for m in methods:
            print(f"| {m} | " + " | ".join(f"{100 * np.mean(pool(m, g)):.1f}" for g in cfg.gaps) + " |")
        print("\nTrained + refinement minus each other method, PCK@0.1 points [95 % interval, bootstrap over "
              "people]\n")
        print("| vs | " + " | ".join(f"gap {g}" for g in cfg.gaps) + " |")
        print("|---" * (1 + len(cfg.gaps)) + "|")
        groups = lambda g: [f"{s}:{p}" for s in REAL_SOURCES for p in people.get((g, s), [])]  # noqa: E731
        for m in methods[1:]:
            cells = ["{:+.1f} [{:+.1f}, {:+.1f}]".format(*paired_bootstrap(pool(methods[0], g), pool(m, g), groups(g)))
                     for g in cfg.gaps]
            print(f"| {m} | " + " | ".join(cells) + " |")
        print("\nPer source (PCK@0.1, gaps " + " / ".join(map(str, cfg.gaps)) + ")\n")
        print("| method | " + " | ".join(_short(s) for s in srcs) + " |")
        print("|---" * (1 + len(srcs)) + "|")
        for m in methods:
            cells = [" / ".join(f"{100 * np.mean(pool(m, g, (s,))):.1f}" if pool(m, g, (s,)) else "-"
                                for g in cfg.gaps) for s in srcs]
            print(f"| {m} | " + " | ".join(cells) + " |")
        print("\nMisses by mode at gaps 5 and 10, % of the joints (`failure_modes`, against the teacher: a miss "
              "on the own mirrored joint is a left/right swap by the method or by the teacher between the two "
              "frames)\n")
        print_failure_modes(methods, modes, cfg.gaps[1:])
        print("\nPCKh@0.5: not derivable: the teacher gives COCO-17 joints and no head box.")
    if not args.skip_speed:
        sizes = [int(x) for x in args.speed_sizes.split(",")]
        frame = _read_frames(DATA / "opencv" / "vtest.avi", {101})[101]
        print(f"\nSpeed on this CPU ({code_version()}), vtest.avi frame 768x576, ms median / min of "
              f"{args.repeats}; per person = one propagate of {SPEED_PEOPLE} people / {SPEED_PEOPLE}. "
              f"Budget at 25 FPS: {BUDGET_MS:.0f} ms per frame for everything.\n")
        print("Cells: wall median / wall min / process CPU median (with 2 threads the CPU time is the sum "
              "of both).\n")
        print(f"Frozen = the tracker's CPU runtime: {effective_runtime(args.cpu_runtime)}.\n")
        print("| threads | load avg | input | features, square canvas | same, frozen | "
              "features, no square padding | per person: affinity + refinement | per person: affinity only | "
              "tracker's path (no square padding, frozen): features | tracker's path: per person, refined | "
              f"tracker's path: features + {SPEED_PEOPLE} people, refined |")
        print("|---" * 11 + "|")
        cell = lambda t, d=0: " / ".join(f"{x:.{d}f}" for x in t)  # noqa: E731
        for nt in [int(x) for x in args.speed_threads.split(",")]:
            torch.set_num_threads(nt)
            load = os.getloadavg()[0]
            rows = speed(trained, frame, sizes, args.repeats, runtime=args.cpu_runtime)
            for size, canvas, rect, fsq, ffz, frect, ref, aff, path in rows:
                feats, per = path or (ffz or fsq, ref)
                tot = [feats[i] + SPEED_PEOPLE * per[i] for i in (0, 1, 2)]
                print(f"| {nt} | {load:.1f} | {size} | {canvas[0]}x{canvas[1]}: {cell(fsq)} | "
                      f"{cell(ffz) if ffz else 'n/a'} | "
                      f"{rect[0]}x{rect[1]}: {cell(frect)} | {cell(ref, 1)} | {cell(aff, 1)} | "
                      f"{cell(path[0]) if path else 'n/a'} | {cell(path[1], 1) if path else 'n/a'} | "
                      f"{cell(tot)} ({min(tot) / BUDGET_MS:.1f}x the budget at best) |")
            print(f"(load average after: {os.getloadavg()[0]:.1f})")
        torch.set_num_threads(args.threads)
        if args.speed_pck:
            if not (args.synth / "posetrack").is_dir():
                raise SystemExit(f"{args.synth}: run --sets b first to make the set (b) suite")
            print("\nAccuracy at each input size, set (b) (square canvas; the model was trained at 512)\n")
            print("| input | refined PCK@0.1 gap 1 / 5 / 10 | without refinement gap 1 / 5 / 10 |")
            print("|---|---|---|")
            for size in sizes:
                net = with_input_size(trained, size)
                _, hits, _, _, _ = accuracy_synth(trained_nets(net), args.synth, flow=False)
                cell = lambda m: " / ".join(f"{100 * np.mean(hits[m, g]):.1f}" for g in (1, 5, 10))  # noqa: E731
                print(f"| {size} | {cell('trained + refinement')} | {cell('trained, without refinement')} |")


if __name__ == "__main__":
    from corrtrack.errors import CorrtrackError

    try:
        main()
    except CorrtrackError as e:  # bad input: one line, not a traceback
        raise SystemExit(f"bench_corr: error: {e}") from None
