"""Greedy matching, OKS non-maximum suppression and duplicate removal.

All pure functions over arrays / ``Poses``; thresholds in small frozen configs
with the values of the authors' released inference code (METHOD.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from corrtrack.pipeline.similarity import mirror_oks_matrix
from corrtrack.structures import RECOVERED, Poses


def greedy_match(scores: np.ndarray, threshold: float, priority: np.ndarray | None = None,
                 tier: np.ndarray | None = None) -> list[tuple[int, int]]:
    """Pairs (row, col), highest score first, each row and column used once, score >= threshold.

    ``priority`` (same shape), when given, sets the order instead of ``scores``;
    the threshold still applies to ``scores``. ``tier`` (one int per row), when
    given, goes before both: every pair of a lower tier is taken before any
    pair of a higher one (a matching cascade). Ties go to the lower row, then
    the lower column (a stable sort), so the result does not depend on
    floating-point noise in the order of equal scores.
    """
    scores = np.asarray(scores, np.float64)
    if scores.size == 0:
        return []
    rows, cols = np.nonzero(scores >= threshold)
    key = scores if priority is None else np.asarray(priority, np.float64)
    order = np.argsort(-key[rows, cols], kind="stable")
    if tier is not None:
        order = order[np.argsort(np.asarray(tier)[rows[order]], kind="stable")]
    used_r: set[int] = set()
    used_c: set[int] = set()
    pairs = []
    for i in order:
        r, c = int(rows[i]), int(cols[i])
        if r in used_r or c in used_c:
            continue
        used_r.add(r)
        used_c.add(c)
        pairs.append((r, c))
    return pairs


@dataclass(frozen=True)
class NMSConfig:
    joint_thresh: float = 0.05  # joints at or below this score are ignored by OKS
    oks_thresh: float = 0.7  # a pose with OKS above this to a better one is dropped


def oks_nms(poses: Poses, joint_thresh: float = 0.05, oks_thresh: float = 0.7,
            prefer_detected: bool = False) -> np.ndarray:
    """Indices of the poses kept by OKS-NMS, best score first.

    OKS is measured with the kept (higher-scoring) pose as the reference, and a mirrored
    copy (left and right swapped) counts as the same person (``mirror_oks_matrix``). With
    ``prefer_detected``, every detected pose goes before every recovered one:
    a recovered pose only fills in where no detection explains the person.
    """
    n = len(poses)
    if n == 0:
        return np.zeros(0, np.int64)
    order = np.lexsort((-poses.scores, poses.origin == RECOVERED)) if prefer_detected else \
        np.argsort(-poses.scores, kind="stable")
    oks = mirror_oks_matrix(poses, poses, joint_thresh)
    keep: list[int] = []
    suppressed = np.zeros(n, bool)
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        suppressed |= oks[i] > oks_thresh
    return np.asarray(keep, np.int64)


@dataclass(frozen=True)
class DuplicateConfig:
    # Fraction of a track's joints that must land on a second candidate for it to be a duplicate.
    # 0.4, not 0.6 (2026-11-29): a second pose of one person holding 7-10 of the track's 17 joints got
    # through and took ids, most often with recovery on (its re-estimated poses sit beside the
    # detections). Validation suites (bench_tracking.py --subset 2 --methods corr+rec, 12 sequences
    # each; seeds 321 / 777 to choose among 0.2-0.6, 4242 held out): ID switches 468 -> 387,
    # 489 -> 426, 615 -> 566, MOTA +0.2 / +0.2 / +0.3, IDF1 +1.3 / +0.4 / +1.1, recall -0.1 / -0.1 /
    # 0.0 points; without recovery (seed 321) corr 425 -> 405, OKS 712 -> 692, flow 552 -> 536.
    ratio: float = 0.4
    # Also drop a duplicate that a weaker match gave to another track (see remove_duplicates). Why:
    # the largest kind of ID switch on the benchmark suite was one person taking two ids in turns:
    # a duplicate detection had started a second track, which, kept alive, took the duplicate again
    # whenever it came back. Validation suite (seed 321, 2 sequences per preset): 496 -> 482 ID switches.
    matched: bool = True
    # A track whose match was dropped as a duplicate (``matched``) is matched again among the
    # candidates left, rather than left unmatched while its own person, if detected, starts a new
    # track. On vtest.avi (frame 631) one tall box over two people was the best match of both
    # tracks; the far person's track lost it as a duplicate, and the far person, detected on his
    # own beside it, got a new id. Validation suite (seed 321 / 777, 12 sequences each), ID
    # switches without -> with: corr 459 -> 453 / 484 -> 478, corr+rec 537 -> 531 / 524 -> 527,
    # OKS and flow unchanged.
    rematch: bool = True


def remove_duplicates(matches: list[tuple[int, int]], votes: np.ndarray, ratio: float = 0.4,
                      matched: bool = True) -> np.ndarray:
    """Keep-mask over candidates after dropping duplicates of matched ones (paper, App. B).

    ``votes[t, c]`` is the fraction of track ``t``'s confident joints whose
    correspondence lands on candidate ``c``'s joint. When track ``t`` was
    matched to ``c`` and an *unmatched* candidate ``c2`` also holds at least
    ``ratio`` of ``t``'s joints, ``c2`` is a second detection of the same
    person: without this it would start a spurious new track.

    With ``matched``, ``c2`` is dropped too when a later (weaker) pair of
    ``matches``, which is in greedy order, gave it to another track ``t2``: an
    old track kept alive would otherwise live on through the second detection
    and take the person in turns with ``t``. The caller leaves ``t2`` unmatched or, with
    ``DuplicateConfig.rematch``, matches it again among the candidates kept.
    """
    votes = np.asarray(votes, np.float64)
    keep = np.ones(votes.shape[1], bool)
    rank = {c: i for i, (_, c) in enumerate(matches)}
    for i, (t, c) in enumerate(matches):
        if not keep[c]:
            continue  # itself dropped as a duplicate: its votes do not count
        for c2 in np.nonzero(votes[t] >= ratio)[0]:
            r2 = rank.get(int(c2))
            if r2 is None or (matched and r2 > i):
                keep[c2] = False
    return keep


def match_without_duplicates(scores: np.ndarray, threshold: float, priority: np.ndarray | None,
                             tier: np.ndarray | None, votes: np.ndarray,
                             config: DuplicateConfig | None) -> tuple[list[tuple[int, int]], np.ndarray]:
    """``greedy_match``, then ``remove_duplicates`` (``config`` None: nothing removed).

    With ``config.rematch`` the matching runs again without the dropped candidates until no match
    is a duplicate, so a track whose match was dropped can take another candidate. Returns the
    matches of kept candidates and the keep-mask over candidates.
    """
    keep = np.ones(np.shape(scores)[1], bool)
    while True:
        matches = greedy_match(np.where(keep, scores, -np.inf), threshold, priority, tier)
        if config is None:
            return matches, keep
        keep &= remove_duplicates(matches, votes, config.ratio, config.matched)
        if not config.rematch or all(keep[c] for _, c in matches):
            return [(r, c) for r, c in matches if keep[c]], keep
