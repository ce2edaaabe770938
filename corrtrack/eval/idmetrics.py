"""Identity metrics for pose tracking: IDF1 / IDP / IDR and keypoint HOTA.

* **IDF1, IDP, IDR** (Ristani et al. 2016) on the same per-joint matching as
  our MOTA (``corrtrack.eval.posetrack``): per sequence and joint one
  ``motmetrics.MOTAccumulator`` whose objects are the GT joints (id = track
  id), hypotheses the predicted joints, and a pair may match where the
  head-normalised distance is <= 0.5. ``motmetrics`` computes IDTP / IDFP /
  IDFN of each accumulator; the totals are computed from the counts summed
  over joints and sequences (as motmetrics' ``OVERALL`` row does). Frames,
  joints and ignore regions are MOTA's (GT frames with people, poseval's
  joint presence), but every such frame counts (poseval's "leave out the
  last frame" is a quirk of its MOTA only) and a frame with GT but no
  prediction counts its real misses, not poseval's one stand-in per joint.
* **Keypoint HOTA** as PoseTrack21 defines it (``HOTAeypoints`` in
  github.com/anDoer/PoseTrack21, eval/posetrack21): TrackEval's HOTA run per
  joint, where the similarity of a GT and a predicted joint is
  ``max(0, 1 - d / 0.5001)`` (d = distance / head size; 0.5001 so that the
  PCKh match d <= 0.5 keeps a positive similarity), the per-frame assignment
  is the Hungarian one on that similarity, and DetA, AssA, LocA, HOTA are
  taken per alpha = 0.05, 0.10, ..., 0.95 and averaged over the alphas.
  Frames = the GT's ``is_labeled`` frames; a joint is present when x > 0 and
  y > 0; ignore regions remove the joints inside them (and people left
  without joints). Per sequence, each joint gets its numbers and "total" is
  their mean; over sequences the counts are summed and AssA / LocA weighted
  by true positives (PoseTrack21's ``combine_sequences``), which makes the
  total DetA the one pooled over joints.

  One deliberate difference: PoseTrack21's code counts a labeled frame
  without predictions as missing the *whole sequence's* GT joints (and a
  frame without GT as that many false positives); we count that frame's
  joints, as its code does for every other frame.

No torch here (``corrtrack eval --id-metrics`` stays light).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from corrtrack.errors import CorrtrackError
from corrtrack.eval.posetrack import (
    HEAD_SIZE_FACTOR,
    JOINTS,
    _clean,
    _Frame,
    _match,
    _Matched,
    _outside,
    _polygons,
    _prepare,
    _where,
)
from corrtrack.layouts import POSEVAL15
from corrtrack.structures import PoseSequence

_J = len(JOINTS)
ALPHAS = np.arange(0.05, 0.99, 0.05)  # TrackEval's alpha thresholds, exactly as it builds them
SIM_SCALE = 0.5001  # PoseTrack21's distance2sim: sim = max(0, 1 - d / 0.5001)
_EPS = np.finfo("float").eps
ID_COUNT_NAMES = ("idtp", "idfp", "idfn")
HOTA_FIELDS = ("HOTA", "DetA", "AssA", "LocA", "DetRe", "DetPr", "AssRe", "AssPr")


# -- IDF1 ---------------------------------------------------------------------------


@dataclass
class IDResult:
    """IDF1 / IDP / IDR in %, per joint and in total (from the summed counts)."""

    counts: dict[str, dict[str, int]]  # ID_COUNT_NAMES -> joint -> count

    def totals(self) -> dict[str, int]:
        return {k: int(sum(v.values())) for k, v in self.counts.items()}

    @staticmethod
    def _scores(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
        idf1 = 100 * 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn > 0 else math.nan
        idp = 100 * tp / (tp + fp) if tp + fp > 0 else math.nan
        idr = 100 * tp / (tp + fn) if tp + fn > 0 else math.nan
        return idf1, idp, idr

    @property
    def IDF1(self) -> float:
        return self._scores(*self.totals().values())[0]

    @property
    def IDP(self) -> float:
        return self._scores(*self.totals().values())[1]

    @property
    def IDR(self) -> float:
        return self._scores(*self.totals().values())[2]

    def per_joint(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {"IDF1": {}, "IDP": {}, "IDR": {}}
        for j in JOINTS:
            f1, p, r = self._scores(*(self.counts[k][j] for k in ID_COUNT_NAMES))
            out["IDF1"][j], out["IDP"][j], out["IDR"][j] = f1, p, r
        return out

    def to_dict(self) -> dict:
        per = self.per_joint()
        return _clean({"IDF1": self.IDF1, "IDP": self.IDP, "IDR": self.IDR,
                       "idf1_per_joint": per["IDF1"], "idp_per_joint": per["IDP"], "idr_per_joint": per["IDR"],
                       "id_counts_total": self.totals(), "id_counts_per_joint": self.counts})


def _id_inputs(f: _Frame, m: _Matched, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GT ids, predicted ids and distances (NaN = may not pair) of joint j in one frame."""
    g, p = f.gt_has[:, j], f.pr_has[:, j]
    d = np.where(m.match[:, :, j], m.dist[:, :, j], np.nan)[p][:, g].T
    return f.gt_ids[g], f.pr_ids[p], d


def _id_counts(frames: list[_Frame], matched: list[_Matched]) -> np.ndarray:
    """(3, 15) IDTP, IDFP, IDFN of one sequence."""
    import motmetrics as mm

    mh = mm.metrics.create()
    out = np.zeros((len(ID_COUNT_NAMES), _J), np.int64)
    for j in range(_J):
        acc = mm.MOTAccumulator(auto_id=True)
        n = 0
        for f, m in zip(frames, matched):
            oids, hids, dist = _id_inputs(f, m, j)
            acc.update(oids, hids, dist)
            n += len(oids) + len(hids)
        if n == 0:
            continue  # nobody has this joint: all counts 0 (motmetrics cannot summarise an empty log)
        r = mh.compute(acc, metrics=list(ID_COUNT_NAMES), return_dataframe=False)
        out[:, j] = [int(r[k]) for k in ID_COUNT_NAMES]
    return out


def _id_result(counts: np.ndarray) -> IDResult:
    return IDResult({k: {n: int(v) for n, v in zip(JOINTS, row)} for k, row in zip(ID_COUNT_NAMES, counts)})


# -- keypoint HOTA ---------------------------------------------------------------------


@dataclass
class _HotaFrame:
    gt_ids: np.ndarray  # (G,)
    gt_valid: np.ndarray  # (G, 15)
    pr_ids: np.ndarray  # (P,)
    pr_valid: np.ndarray  # (P, 15)
    sim: np.ndarray  # (G, P, 15)


def _hota_frames(gt: PoseSequence, pred: PoseSequence) -> list[_HotaFrame]:
    """PoseTrack21's preparation: labeled frames, joints with x > 0 and y > 0, ignore regions."""
    if len(pred) != len(gt):
        raise CorrtrackError(f"{_where(pred)}: {len(pred)} frames, but the ground truth {_where(gt)} has "
                             f"{len(gt)} (frames are paired by position)")
    out = []
    for k, (info, g) in enumerate(gt):
        if not info.is_labeled:
            continue
        g = g.to_layout(POSEVAL15)
        p = pred.poses[k].to_layout(POSEVAL15)
        gxy, pxy = g.keypoints[..., :2], p.keypoints[..., :2]
        gv = (gxy[..., 0] > 0) & (gxy[..., 1] > 0)
        pv = (pxy[..., 0] > 0) & (pxy[..., 1] > 0)
        gk, pk = np.ones(len(g), bool), np.ones(len(p), bool)
        if info.ignore_regions:
            polys = _polygons(info.ignore_regions)
            gv &= _outside(polys, gxy)
            pv &= _outside(polys, pxy)
            gk, pk = gv.any(1), pv.any(1)
        gxy, gv, pxy, pv = gxy[gk], gv[gk], pxy[pk], pv[pk]
        hb = g.head_boxes[gk]
        head = HEAD_SIZE_FACTOR * np.sqrt((hb[:, 2] - hb[:, 0]) ** 2 + (hb[:, 3] - hb[:, 1]) ** 2)
        G, P = len(gxy), len(pxy)
        sim = np.zeros((G, P, _J))
        if G and P:
            if np.isnan(head).any():
                raise CorrtrackError(f"{_where(gt)}: frame {k}: a ground-truth person has no head box "
                                     "(bbox_head), which the keypoint distance needs")
            d = np.linalg.norm(gxy[:, None] - pxy[None], axis=-1) / head[:, None, None]
            d = np.where(gv[:, None] & pv[None], d, np.inf)
            sim = np.maximum(1 - d / SIM_SCALE, 0.0)
        out.append(_HotaFrame(g.track_ids[gk], gv, p.track_ids[pk], pv, sim))
    return out


@dataclass
class _HotaSeq:
    """Raw per-alpha, per-joint (A, 15) numbers of one sequence (before the final fields)."""

    tp: np.ndarray
    fn: np.ndarray
    fp: np.ndarray
    ass_a: np.ndarray
    ass_re: np.ndarray
    ass_pr: np.ndarray
    loc_a: np.ndarray


def _hota_sequence(frames: list[_HotaFrame]) -> _HotaSeq:
    """PoseTrack21's ``HOTAeypoints.eval_sequence``, vectorised over alphas."""
    A = len(ALPHAS)
    def zeros() -> np.ndarray:
        return np.zeros((A, _J))

    tp, fn, fp = zeros(), zeros(), zeros()
    gt_u = np.unique(np.concatenate([f.gt_ids for f in frames])) if frames else np.zeros(0, np.int64)
    pr_u = np.unique(np.concatenate([f.pr_ids for f in frames])) if frames else np.zeros(0, np.int64)
    n_gt = sum(int(f.gt_valid.sum()) for f in frames)
    n_pr = sum(int(f.pr_valid.sum()) for f in frames)
    if n_pr == 0 or n_gt == 0:
        # Nothing can match: every joint is a miss or a false positive; LocA 1 as TrackEval sets it.
        for f in frames:
            fn += f.gt_valid.sum(0)
            fp += f.pr_valid.sum(0)
        return _HotaSeq(tp, fn, fp, zeros(), zeros(), zeros(), np.ones((A, _J)))
    gid_count = np.zeros((len(gt_u), _J))
    tid_count = np.zeros((len(pr_u), _J))
    matches = np.zeros((A, len(gt_u), len(pr_u), _J))
    loc = zeros()
    for f in frames:
        gi = np.searchsorted(gt_u, f.gt_ids)
        ti = np.searchsorted(pr_u, f.pr_ids)
        np.add.at(gid_count, gi, f.gt_valid)
        np.add.at(tid_count, ti, f.pr_valid)
        n_g, n_p = f.gt_valid.sum(0), f.pr_valid.sum(0)
        if len(gi) == 0 or len(ti) == 0:
            fn += n_g
            fp += n_p
            continue
        from scipy.optimize import linear_sum_assignment

        for j in range(_J):
            s = f.sim[:, :, j]
            rows, cols = linear_sum_assignment(-s)
            ok = s[rows, cols][None, :] >= ALPHAS[:, None] - _EPS  # (A, pairs)
            m = ok.sum(1)
            tp[:, j] += m
            fn[:, j] += n_g[j] - m
            fp[:, j] += n_p[j] - m
            loc[:, j] += (ok * s[rows, cols][None, :]).sum(1)
            for k, (r, c) in enumerate(zip(rows, cols)):
                matches[:, gi[r], ti[c], j] += ok[:, k]
    ass_a, ass_re, ass_pr = zeros(), zeros(), zeros()
    g_cnt, t_cnt = gid_count[:, None, :], tid_count[None, :, :]  # (G, 1, J), (1, T, J)
    for a in range(A):
        mc = matches[a]
        denom = np.maximum(1, tp[a])
        ass_a[a] = (mc * mc / np.maximum(1, g_cnt + t_cnt - mc)).sum((0, 1)) / denom
        ass_re[a] = (mc * mc / np.maximum(1, g_cnt)).sum((0, 1)) / denom
        ass_pr[a] = (mc * mc / np.maximum(1, t_cnt)).sum((0, 1)) / denom
    loc = np.maximum(1e-10, loc) / np.maximum(1e-10, tp)
    return _HotaSeq(tp, fn, fp, ass_a, ass_re, ass_pr, loc)


@dataclass
class HOTAResult:
    """Keypoint HOTA (PoseTrack21), in %.

    ``arrays[field]`` is (19 alphas, 16): the 15 joints, then "total".
    Reported values are means over the alphas.
    """

    arrays: dict[str, np.ndarray]

    def value(self, name: str, joint: str | None = None) -> float:
        col = _J if joint is None else JOINTS.index(joint)
        return float(100 * np.mean(self.arrays[name][:, col]))

    @property
    def HOTA(self) -> float:
        return self.value("HOTA")

    @property
    def DetA(self) -> float:
        return self.value("DetA")

    @property
    def AssA(self) -> float:
        return self.value("AssA")

    @property
    def LocA(self) -> float:
        return self.value("LocA")

    def counts(self) -> dict[str, int]:
        """TP / FN / FP at alpha 0.05, summed over joints."""
        return {k: int(self.arrays[k][0, _J]) for k in ("HOTA_TP", "HOTA_FN", "HOTA_FP")}

    def to_dict(self) -> dict:
        out: dict = {f: self.value(f) for f in HOTA_FIELDS}
        out["HOTA(0)"] = float(100 * self.arrays["HOTA"][0, _J])
        out["LocA(0)"] = float(100 * self.arrays["LocA"][0, _J])
        out["HOTA_counts_alpha0.05"] = self.counts()
        for f in ("HOTA", "DetA", "AssA", "LocA"):
            out[f"{f.lower()}_per_joint"] = {j: self.value(f, j) for j in JOINTS}
        out["hota_per_alpha"] = {f"{a:.2f}": float(100 * v) for a, v in zip(ALPHAS, self.arrays["HOTA"][:, _J])}
        return _clean(out)


def _final_fields(r: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """TrackEval's ``_compute_final_fields`` (DetRe, DetPr, DetA, HOTA) on arrays of any shape."""
    tp, fn, fp = r["HOTA_TP"], r["HOTA_FN"], r["HOTA_FP"]
    r["DetRe"] = tp / np.maximum(1, tp + fn)
    r["DetPr"] = tp / np.maximum(1, tp + fp)
    r["DetA"] = tp / np.maximum(1, tp + fn + fp)
    r["HOTA"] = np.sqrt(r["DetA"] * r["AssA"])
    return r


def _seq_arrays(s: _HotaSeq) -> dict[str, np.ndarray]:
    """One sequence's fields with the "total" column appended (mean of floats, sum of counts)."""
    r = _final_fields({"HOTA_TP": s.tp, "HOTA_FN": s.fn, "HOTA_FP": s.fp, "AssA": s.ass_a, "AssRe": s.ass_re,
                       "AssPr": s.ass_pr, "LocA": s.loc_a})
    out = {}
    for k, v in r.items():
        total = v.sum(1, keepdims=True) if k.startswith("HOTA_") else v.mean(1, keepdims=True)
        out[k] = np.concatenate([v, total], axis=1)
    return out


def _combine(seqs: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """PoseTrack21's ``combine_sequences``: counts summed, AssA/AssRe/AssPr/LocA weighted by TP."""
    r = {k: sum(s[k] for s in seqs) for k in ("HOTA_TP", "HOTA_FN", "HOTA_FP")}
    for k in ("AssA", "AssRe", "AssPr"):
        r[k] = sum(s[k] * s["HOTA_TP"] for s in seqs) / np.maximum(1.0, r["HOTA_TP"])
    r["LocA"] = np.maximum(1e-10, sum(s["LocA"] * s["HOTA_TP"] for s in seqs)) / np.maximum(1e-10, r["HOTA_TP"])
    return _final_fields(r)


# -- the whole evaluation ------------------------------------------------------------------


@dataclass
class IDEvaluation:
    """Result of :func:`evaluate_id_metrics`; ``to_dict()`` gives JSON-ready numbers."""

    id: IDResult
    hota: HOTAResult
    per_sequence: dict[str, dict] = field(default_factory=dict)  # name -> {"id": IDResult, "hota": HOTAResult}

    def to_dict(self) -> dict:
        out = {**self.id.to_dict(), **self.hota.to_dict()}
        if self.per_sequence:
            out["per_sequence"] = {name: {**r["id"].to_dict(), **r["hota"].to_dict()}
                                   for name, r in self.per_sequence.items()}
        return out


def combine_id_metrics(results: Sequence[IDEvaluation]) -> IDEvaluation:
    """Evaluations of disjoint sets of sequences as one evaluation of all of them.

    ID counts are summed; HOTA is combined as PoseTrack21 combines sequences
    (counts summed, AssA / LocA weighted by TP), which gives the same numbers
    as evaluating everything at once. ``per_sequence`` entries are merged.
    """
    if not results:
        raise CorrtrackError("nothing to combine")
    counts = sum(np.array([[r.id.counts[k][j] for j in JOINTS] for k in ID_COUNT_NAMES], np.int64) for r in results)
    per_seq: dict[str, dict] = {}
    for r in results:
        per_seq.update(r.per_sequence)
    return IDEvaluation(_id_result(counts), HOTAResult(_combine([r.hota.arrays for r in results])),
                        {k: per_seq[k] for k in sorted(per_seq)})


def _check_ids(seq: PoseSequence, what: str) -> None:
    for k, p in enumerate(seq.poses):
        if (p.track_ids < 0).any():
            raise CorrtrackError(f"{_where(seq)}: frame {k}: a {what} person has no track_id, which the identity "
                                 "metrics need")
        if len(np.unique(p.track_ids)) != len(p.track_ids):
            raise CorrtrackError(f"{_where(seq)}: frame {k}: track_id used twice in one frame")


def evaluate_id_metrics(gt: Sequence[PoseSequence], pred: Sequence[PoseSequence], *,
                        per_sequence: bool = False) -> IDEvaluation:
    """IDF1 / IDP / IDR and keypoint HOTA of ``pred`` against ``gt`` (``gt[i]`` with ``pred[i]``).

    Takes the same sequences as :func:`corrtrack.eval.evaluate`; raises
    ``CorrtrackError`` for input it cannot use (missing track ids, different
    frame counts, GT people without head box).
    """
    if len(gt) != len(pred):
        raise CorrtrackError(f"{len(gt)} ground-truth sequences but {len(pred)} predictions")
    if not gt:
        raise CorrtrackError("nothing to evaluate: no ground-truth sequences")
    counts = np.zeros((len(ID_COUNT_NAMES), _J), np.int64)
    hota_seqs = []
    seq_results: dict[str, dict] = {}
    for i, (g, p) in enumerate(zip(gt, pred)):
        _check_ids(g, "ground-truth")
        _check_ids(p, "predicted")
        frames = _prepare(g, p, i)
        matched = [_match(f, _where(g)) for f in frames]
        c = _id_counts(frames, matched)
        counts += c
        h = _seq_arrays(_hota_sequence(_hota_frames(g, p)))
        hota_seqs.append(h)
        if per_sequence:
            seq_results[g.name] = {"id": _id_result(c), "hota": HOTAResult(h)}
    seq_results = {k: seq_results[k] for k in sorted(seq_results)}
    return IDEvaluation(_id_result(counts), HOTAResult(_combine(hota_seqs)), seq_results)
