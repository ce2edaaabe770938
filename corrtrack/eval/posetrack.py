"""The PoseTrack evaluation: per-joint AP (PCKh@0.5) and CLEAR-MOT per joint.

Equal to the official ``poseval`` (github.com/leonid-pishchulin/poseval) on
everything it computes, including its quirks (see docs/evaluation.md); the MOT
part runs on ``motmetrics.MOTAccumulator`` exactly as poseval feeds it.

Data flow: ``_prepare`` pairs GT and prediction frames by position, keeps only GT
frames with people and applies the ignore regions; ``_match`` computes, per
frame, the head-normalised distances, the AP assignment and the MOT inputs;
``_average_precision`` and ``_clear_mot`` pool them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from corrtrack.errors import CorrtrackError
from corrtrack.layouts import POSEVAL15
from corrtrack.structures import GROUND_TRUTH, PoseSequence

JOINTS = POSEVAL15.joints  # poseval's joint ids 0..14
DIST_THRESHOLD = 0.5  # PCKh@0.5
HEAD_SIZE_FACTOR = 0.6  # head size = 0.6 x head-box diagonal
MISSING_SCORE = -9999.0  # poseval's score for a joint predicted without a score
# poseval's printed joint groups (mean of the joints' values).
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Head", ("head_top", "head_bottom", "nose")),
    ("Shou", ("right_shoulder", "left_shoulder")),
    ("Elb", ("right_elbow", "left_elbow")),
    ("Wri", ("right_wrist", "left_wrist")),
    ("Hip", ("right_hip", "left_hip")),
    ("Knee", ("right_knee", "left_knee")),
    ("Ankl", ("right_ankle", "left_ankle")),
)
COUNT_NAMES = ("num_switches", "num_misses", "num_false_positives", "num_objects", "num_detections")
_J = len(JOINTS)


def _where(seq: PoseSequence) -> str:
    return str(seq.meta.get("path", seq.name))


# -- preparation -----------------------------------------------------------------


@dataclass
class _Frame:
    """One evaluated frame, in poseval's 15 joints, after the ignore regions."""

    seq: int
    index: int  # frame index in its sequence
    gt_xy: np.ndarray  # (G, 15, 2)
    gt_has: np.ndarray  # (G, 15) bool
    gt_head: np.ndarray  # (G,) head size in pixels (NaN: no head box)
    gt_ids: np.ndarray  # (G,)
    pr_xy: np.ndarray  # (P, 15, 2)
    pr_has: np.ndarray  # (P, 15) bool
    pr_score: np.ndarray  # (P, 15)
    pr_ids: np.ndarray  # (P,)


def _present(kp: np.ndarray) -> np.ndarray:
    """poseval's rule: a joint is absent only when x, y and score are all 0."""
    return ~((kp[..., 0] == 0) & (kp[..., 1] == 0) & (kp[..., 2] == 0))


def _outside(polygons: list, xy: np.ndarray) -> np.ndarray:
    """True where a point is not strictly inside any polygon (shapely ``contains``)."""
    import shapely

    inside = np.zeros(xy.shape[:-1], bool)
    for poly in polygons:
        inside |= shapely.contains_xy(poly, xy[..., 0], xy[..., 1])
    return ~inside


def _polygons(regions: list[np.ndarray]) -> list:
    from shapely import geometry

    # A "polygon" of fewer than 3 points contains nothing (poseval would crash on it).
    return [geometry.Polygon(r) for r in regions if len(r) >= 3]


def _prepare(gt: PoseSequence, pred: PoseSequence, seq_index: int) -> list[_Frame]:
    if len(pred) != len(gt):
        raise CorrtrackError(f"{_where(pred)}: {len(pred)} frames, but the ground truth {_where(gt)} has "
                             f"{len(gt)} (frames are paired by position)")
    frames = []
    for k, (info, g) in enumerate(gt):
        if len(g) == 0:
            continue  # poseval evaluates only GT frames with people
        g = g.to_layout(POSEVAL15)
        p = pred.poses[k].to_layout(POSEVAL15)
        gt_has, pr_has = _present(g.keypoints), _present(p.keypoints)
        gt_keep, pr_keep = np.ones(len(g), bool), np.ones(len(p), bool)
        if info.ignore_regions:
            polys = _polygons(info.ignore_regions)
            gt_has &= _outside(polys, g.keypoints[..., :2])
            pr_has &= _outside(polys, p.keypoints[..., :2])
            # ...and people left without joints go (only in frames with regions).
            gt_keep, pr_keep = gt_has.any(1), pr_has.any(1)
        score = np.where((p.origin == GROUND_TRUTH)[:, None], MISSING_SCORE, p.keypoints[..., 2])
        hb = g.head_boxes
        head = HEAD_SIZE_FACTOR * np.sqrt((hb[:, 2] - hb[:, 0]) ** 2 + (hb[:, 3] - hb[:, 1]) ** 2)
        frames.append(_Frame(
            seq_index, k,
            g.keypoints[gt_keep, :, :2], gt_has[gt_keep], head[gt_keep], g.track_ids[gt_keep],
            p.keypoints[pr_keep, :, :2], pr_has[pr_keep], score[pr_keep], p.track_ids[pr_keep]))
    return frames


# -- per-frame matching ------------------------------------------------------------


@dataclass
class _Matched:
    labels: np.ndarray  # (P, 15) bool: predicted joint is a true positive
    dist: np.ndarray  # (P, G, 15) normalised distance, inf where not comparable
    match: np.ndarray  # (P, G, 15) bool: dist <= threshold


def _match(f: _Frame, where: str) -> _Matched:
    P, G = len(f.pr_has), len(f.gt_has)
    labels = np.zeros((P, _J), bool)
    if P == 0 or G == 0:
        # No GT left: every predicted joint is a false positive.
        return _Matched(labels, np.full((P, G, _J), np.inf), np.zeros((P, G, _J), bool))
    if np.isnan(f.gt_head).any():
        raise CorrtrackError(f"{where}: frame {f.index}: a ground-truth person has no head box (bbox_head), "
                             "which PCKh needs")
    d = f.pr_xy[:, None] - f.gt_xy[None]  # (P, G, 15, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = np.sqrt(d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1]) / f.gt_head[None, :, None]
    dist = np.where(f.pr_has[:, None] & f.gt_has[None], dist, np.inf)
    match = dist <= DIST_THRESHOLD
    # PCKh of each prediction against each GT person; each prediction keeps its
    # best GT, then each GT its best prediction (ties: lowest index, like argmax).
    n_gt = f.gt_has.sum(1)
    pck = match.sum(2).astype(np.float64)
    pck = np.where(n_gt > 0, pck / np.maximum(n_gt, 1), pck)
    best = np.zeros_like(pck)
    rows = np.arange(P)
    best_gt = pck.argmax(1)
    best[rows, best_gt] = pck[rows, best_gt]
    pr_for_gt = best.argmax(0)
    for g in np.flatnonzero(best.max(0) > 0):
        labels[pr_for_gt[g]] = match[pr_for_gt[g], g]
    return _Matched(labels & f.pr_has, dist, match)


# -- AP -------------------------------------------------------------------------------


@dataclass
class APResult:
    """Per-joint AP (in %), poseval's 15 joints; NaN where a joint has predictions but no GT."""

    ap: dict[str, float]
    precision: dict[str, float]  # precision at the lowest score
    recall: dict[str, float]  # recall at the lowest score
    num_gt: dict[str, int]

    @property
    def mAP(self) -> float:
        return _nanmean(self.ap.values())

    def groups(self) -> dict[str, float]:
        return _groups(self.ap)

    def to_dict(self) -> dict:
        return _clean({"mAP": self.mAP, "ap_per_joint": self.ap, "ap_groups": self.groups(),
                       "ap_precision_total": _nanmean(self.precision.values()),
                       "ap_recall_total": _nanmean(self.recall.values()),
                       "ap_precision_per_joint": self.precision, "ap_recall_per_joint": self.recall,
                       "num_gt_joints": self.num_gt})


def _voc_ap(scores: np.ndarray, labels: np.ndarray, n_gt: float) -> tuple[float, float, float]:
    """VOC all-points AP, final precision and recall (all in %), as poseval ranks them."""
    if len(scores) == 0:
        return 0.0, 0.0, 0.0
    # numpy's default (unstable) sort, reversed, exactly as poseval: tied scores
    # are then ordered the same way as in the official tool.
    order = np.asarray(scores, np.float64).argsort()[::-1]
    tp = np.cumsum(labels[order] == 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = tp / np.float64(n_gt)
    precision = tp / np.arange(1, len(tp) + 1)
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    ap = np.sum((mrec[i] - mrec[i - 1]) * mpre[i])
    return float(ap * 100), float(precision[-1] * 100), float(recall[-1] * 100)


def _average_precision(frames: list[_Frame], matched: list[_Matched]) -> APResult:
    scores: list[list[np.ndarray]] = [[] for _ in range(_J)]
    labels: list[list[np.ndarray]] = [[] for _ in range(_J)]
    n_gt = np.zeros(_J, np.int64)
    for f, m in zip(frames, matched):
        n_gt += f.gt_has.sum(0)
        for j in range(_J):
            has = f.pr_has[:, j]
            scores[j].append(f.pr_score[has, j])
            labels[j].append(m.labels[has, j])
    ap, pre, rec = {}, {}, {}
    for j, name in enumerate(JOINTS):
        s = np.concatenate(scores[j]) if scores[j] else np.zeros(0)
        lab = np.concatenate(labels[j]) if labels[j] else np.zeros(0, bool)
        ap[name], pre[name], rec[name] = _voc_ap(s, lab, float(n_gt[j]))
    return APResult(ap, pre, rec, {n: int(c) for n, c in zip(JOINTS, n_gt)})


# -- CLEAR-MOT ----------------------------------------------------------------------------


@dataclass
class MOTResult:
    """CLEAR-MOT per joint (in %) and the summed counts behind it."""

    mota: dict[str, float]
    motp: dict[str, float]
    precision: dict[str, float]
    recall: dict[str, float]
    counts: dict[str, dict[str, int]]  # COUNT_NAMES -> joint -> count
    sum_distances: dict[str, float]

    @property
    def MOTA(self) -> float:
        return _nanmean(self.mota.values())

    @property
    def MOTP(self) -> float:
        return _nanmean(self.motp.values())

    @property
    def Prec(self) -> float:
        return _nanmean(self.precision.values())

    @property
    def Rec(self) -> float:
        return _nanmean(self.recall.values())

    def groups(self) -> dict[str, float]:
        return _groups(self.mota)

    def totals(self) -> dict[str, int]:
        return {k: int(sum(v.values())) for k, v in self.counts.items()}

    def to_dict(self) -> dict:
        return _clean({"MOTA": self.MOTA, "MOTP": self.MOTP, "Prec": self.Prec, "Rec": self.Rec,
                       "mota_per_joint": self.mota, "mota_groups": self.groups(),
                       "motp_per_joint": self.motp, "prec_per_joint": self.precision,
                       "rec_per_joint": self.recall, "counts_total": self.totals(),
                       "counts_per_joint": self.counts})


def _mot_inputs(f: _Frame, m: _Matched, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Object ids, hypothesis ids and distances (NaN = may not pair) for joint j."""
    if len(f.pr_has) == 0 or len(f.gt_has) == 0:
        # poseval's stand-in: one object and one hypothesis that cannot pair,
        # i.e. one miss and one false positive per joint (whatever the GT holds).
        return np.zeros(1, np.int64), np.zeros(1, np.int64), np.full((1, 1), np.nan)
    g, p = f.gt_has[:, j], f.pr_has[:, j]
    d = np.where(m.match[:, :, j], m.dist[:, :, j], np.nan)[p][:, g].T
    return f.gt_ids[g], f.pr_ids[p], d


def _accumulate(frames: list[_Frame], matched: list[_Matched]) -> tuple[np.ndarray, np.ndarray]:
    """Counts (len(COUNT_NAMES), 15) and summed distances (15,) of one sequence."""
    import motmetrics as mm

    counts = np.zeros((len(COUNT_NAMES), _J), np.int64)
    sum_d = np.zeros(_J)
    # poseval leaves out each sequence's last evaluated frame.
    frames, matched = frames[:-1], matched[:-1]
    for j in range(_J):
        acc = mm.MOTAccumulator(auto_id=True)
        for f, m in zip(frames, matched):
            oids, hids, dist = _mot_inputs(f, m, j)
            if len(oids) or len(hids):  # an empty update only adds a frame number
                acc.update(oids, hids, dist)
        types, d = _events(acc)
        c = {k: int(np.count_nonzero(types == k)) for k in ("MATCH", "SWITCH", "MISS", "FP")}
        counts[:, j] = [c["SWITCH"], c["MISS"], c["FP"], c["MATCH"] + c["SWITCH"] + c["MISS"],
                        c["MATCH"] + c["SWITCH"]]
        # poseval's MOTP sums D over all events, RAW ones included (see docs).
        sum_d[j] = float(np.nansum(d))
    return counts, sum_d


def _events(acc) -> tuple[np.ndarray, np.ndarray]:
    """Event types and distances of an accumulator.

    motmetrics 1.4 keeps them as lists in ``_events``; building its ``events``
    DataFrame costs ~10 ms per accumulator, most of the evaluation's time.
    """
    raw = getattr(acc, "_events", None)
    if isinstance(raw, dict) and "Type" in raw and "D" in raw:
        return np.asarray(raw["Type"], dtype=object), np.asarray(raw["D"], np.float64)
    ev = acc.events
    return ev["Type"].astype(str).to_numpy(dtype=object), ev["D"].to_numpy(np.float64)


def _mot_result(counts: np.ndarray, sum_d: np.ndarray) -> MOTResult:
    idsw, miss, fp, obj, det = counts.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        n_obj = np.where(obj > 0, obj, np.nan)
        mota = 100 * (1 - (miss + idsw + fp) / n_obj)
        motp = np.where(det == 0, 0.0, 100 * (1 - sum_d / np.where(det == 0, 1, det)))
        prec = 100 * det / np.where(fp + det > 0, fp + det, np.nan)
        rec = 100 * det / n_obj
    per = lambda a: {n: float(v) for n, v in zip(JOINTS, a)}  # noqa: E731
    return MOTResult(per(mota), per(motp), per(prec), per(rec),
                     {k: {n: int(v) for n, v in zip(JOINTS, row)} for k, row in zip(COUNT_NAMES, counts)},
                     per(sum_d))


# -- the whole evaluation ------------------------------------------------------------------


@dataclass
class PoseTrackEvaluation:
    """Result of :func:`evaluate`; ``to_dict()`` gives JSON-ready numbers."""

    ap: APResult
    mot: MOTResult | None
    stats: dict[str, int]
    per_sequence: dict[str, dict] = field(default_factory=dict)  # name -> {"ap": APResult, "mot": MOTResult}

    def to_dict(self) -> dict:
        out = dict(self.ap.to_dict())
        if self.mot is not None:
            out.update(self.mot.to_dict())
        out["stats"] = dict(self.stats)
        if self.per_sequence:
            out["per_sequence"] = {
                name: {**r["ap"].to_dict(), **(r["mot"].to_dict() if r.get("mot") else {})}
                for name, r in self.per_sequence.items()}
        return out


def _check_tracking(gt: PoseSequence, pred: PoseSequence, frames: list[_Frame]) -> None:
    if len(frames) == 1:
        raise CorrtrackError(
            f"{_where(gt)}: only one labeled frame with people; tracking needs at least 2 (poseval leaves "
            "out each sequence's last frame and crashes here) — evaluate with --no-tracking")
    for f in frames:
        if (f.gt_ids < 0).any():
            raise CorrtrackError(f"{_where(gt)}: frame {f.index}: a ground-truth person has no track_id")
        if (f.pr_ids < 0).any():
            raise CorrtrackError(f"{_where(pred)}: frame {f.index}: a predicted person has no track_id, "
                                 "which tracking needs (evaluate with --no-tracking for AP only)")
        if len(np.unique(f.pr_ids)) != len(f.pr_ids):
            raise CorrtrackError(f"{_where(pred)}: frame {f.index}: track_id used twice in one frame")


def evaluate(gt: Sequence[PoseSequence], pred: Sequence[PoseSequence], *, tracking: bool = True,
             per_sequence: bool = False) -> PoseTrackEvaluation:
    """Evaluate predictions against ground truth like the official PoseTrack tool.

    ``gt[i]`` is paired with ``pred[i]`` (same number of frames, paired by
    position). AP pools all sequences; the MOT counts are summed over sequences.
    Raises ``CorrtrackError`` for input the evaluation cannot use.
    """
    if len(gt) != len(pred):
        raise CorrtrackError(f"{len(gt)} ground-truth sequences but {len(pred)} predictions")
    if not gt:
        raise CorrtrackError("nothing to evaluate: no ground-truth sequences")
    seq_frames = [_prepare(g, p, i) for i, (g, p) in enumerate(zip(gt, pred))]
    seq_matched = [[_match(f, _where(g)) for f in fr] for g, fr in zip(gt, seq_frames)]
    if tracking:
        for g, p, fr in zip(gt, pred, seq_frames):
            if fr:  # a sequence without labeled people is not evaluated (as in poseval)
                _check_tracking(g, p, fr)
    frames = [f for fr in seq_frames for f in fr]
    matched = [m for ms in seq_matched for m in ms]
    ap = _average_precision(frames, matched)
    mot = None
    seq_results: dict[str, dict] = {}
    if tracking:
        counts = np.zeros((len(COUNT_NAMES), _J), np.int64)
        sum_d = np.zeros(_J)
        for g, fr, ms in zip(gt, seq_frames, seq_matched):
            if not fr:
                continue
            c, s = _accumulate(fr, ms)
            counts += c
            sum_d += s
            if per_sequence:
                seq_results.setdefault(g.name, {})["mot"] = _mot_result(c, s)
        mot = _mot_result(counts, sum_d)
    if per_sequence:
        for g, fr, ms in zip(gt, seq_frames, seq_matched):
            if fr:
                seq_results.setdefault(g.name, {})["ap"] = _average_precision(fr, ms)
        seq_results = {k: seq_results[k] for k in sorted(seq_results)}
    stats = {
        "sequences": len(gt),
        "frames": sum(len(g) for g in gt),
        "evaluated_frames": len(frames),
        "gt_poses": sum(len(f.gt_has) for f in frames),
        "predicted_poses": sum(len(f.pr_has) for f in frames),
        "gt_joints": int(sum(f.gt_has.sum() for f in frames)),
        "predicted_joints": int(sum(f.pr_has.sum() for f in frames)),
    }
    return PoseTrackEvaluation(ap, mot, stats, seq_results)


# -- helpers --------------------------------------------------------------------------------


def _nanmean(values) -> float:
    v = np.array([x for x in values if not math.isnan(x)], np.float64)
    return float(v.mean()) if len(v) else float("nan")


def _groups(per_joint: dict[str, float]) -> dict[str, float]:
    # Plain means (NaN in, NaN out), as poseval prints them.
    return {g: float(np.mean([per_joint[j] for j in joints])) for g, joints in GROUPS}


def _clean(obj):
    """NaN/inf -> None so that the dict is valid JSON."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
