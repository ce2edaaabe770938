"""Online multi-person pose tracking (paper §5) and its offline post-processing.

Per frame t, :meth:`Tracker.step` takes the detected poses of t and

1. propagates the last pose of every live track to t (correspondences for
   ``corr``, DIS optical flow for ``flow``; nothing for ``oks``/``iou``/``reid``),
2. recovers people the detector missed (:func:`recover_missed`): tracks seen at
   t-1 whose propagated pose no detection explains get a pose re-estimated in a
   box around the propagated keypoints; OKS-NMS over detected + recovered,
3. scores tracks x candidates with the configured similarity (a confirmed track
   whose person is hidden also by OKS at the place its velocity carries it:
   ``motion_prior``) and matches them greedily (highest first, above a
   threshold; confirmed tracks before tentative ones: ``confirmed_first``; a
   track not matched for a few frames goes after a fresher one on a near tie:
   ``recency_penalty``); a track whose match turns out a duplicate (step 4) is
   matched again among the rest (``DuplicateConfig.rematch``); a confirmed
   track still unmatched takes a detection left over at its last box
   (``last_box_iou``), then one that looks like its last view, even one a
   tentative track was given (``appearance``, ``appearance_over_tentative``;
   when an embedder is given),
4. removes duplicates (second detections of a matched person),
5. starts a new track for every remaining detected candidate. A track that is
   not matched stays alive for ``keep_alive`` frames (per similarity: corr 50,
   the others 25), so a person who
   re-appears gets the old id back.

With ``detect_every`` n > 1 only every n-th frame is detected; on the frames
in between ``step`` gets no candidates and step 2 alone follows the people of
t-1 (``wants_detections`` says which frames to detect).

Joint thresholding of what is written, dropping short tracks and merging
(:func:`merge_tracks`, eq. 8) happen once the sequence is complete
(:func:`track_frame_counts`, :func:`finalize_frame`).

The networks come in as callables (``correspond``, ``estimate``, ``embed``,
``flow``), so everything here runs with fakes in tests.
"""
from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol, Sequence

import numpy as np

from corrtrack.pipeline.matching import (
    DuplicateConfig,
    NMSConfig,
    greedy_match,
    match_without_duplicates,
    oks_nms,
)
from corrtrack.pipeline.similarity import (
    FrameContext,
    correspondence_votes,
    dis_flow,
    flow_propagate,
    get_similarity,
    iou_matrix,
    keypoint_votes,
    oks_matrix,
    propagation_confidence,
)
from corrtrack.structures import RECOVERED, Poses

# Match thresholds per similarity. corr: 0.07 (the released code uses 0.3 with
# its own maps): eq. 6 of the right consecutive-frame match on the synthetic
# suite is median 0.54, 10th percentile 0.29, wrong matches' 99th percentile
# 0.056 (an earlier model, refined maps). On the quick suite (seed 0, 800 frames,
# benchmarks/bench_tracking.py) the threshold gave ID switches 0.3: 476,
# 0.2: 373, 0.15: 309, 0.1: 264, 0.05: 277 (MOTA 31.8 -> 32.6): below the
# right match's spread, a person who is not missed never starts a new track.
# With corr's keep-alive of 50 (DEFAULT_KEEP_ALIVE) a track waits for a person
# hidden up to 2 s and meets them again at a lower score: on vtest.avi a walker
# who passed behind the sign came back 4 frames later at 0.097 and took a new
# id. On the validation suite (seed 321, 10 sequences) 0.07 gave 525 -> 496 ID
# switches at keep-alive 50 (at 25: 0.05 570, 0.07 548, 0.1 567, 0.15 588).
# oks/flow: the released code's tracking OKS 0.2; iou: the usual 0.3 of box
# trackers (SORT); reid: cosine of ImageNet MobileNetV2 crop features, which
# is high for any two people: on vtest.avi the same person in consecutive
# frames scores median 0.91 (5th percentile 0.79), two different people median
# 0.72 (95th percentile 0.79).
DEFAULT_THRESHOLDS = {"corr": 0.07, "oks": 0.2, "flow": 0.2, "iou": 0.3, "reid": 0.8}

# Frames an unmatched track waits for its person to re-appear, per similarity. Most ID switches
# left on the synthetic suite come after gaps longer than 10 frames; 25 cut them for every
# similarity (quick suite, bench_tracking.py). Longer waits pay only for corr: a track kept alive
# is propagated from the frame it was last seen in, so eq. 6 compares the person's appearance
# then with the new frame, which stays valid over a long gap, while OKS and flow compare a pose
# that grows stale. On the validation suite (seed 321, 10 sequences, not the benchmark's seed 0)
# corr's ID switches for keep-alive 25 / 35 / 40 / 50 / 75 were 567 / 550 / 539 / 525 / 511; OKS's
# 1240 / 1280 / - / 1303 / -. 50 (2 s at 25 fps) takes most of the gain; every extra frame keeps
# more tracks propagated and more frame features in memory.
DEFAULT_KEEP_ALIVE = {"corr": 50, "oks": 25, "flow": 25, "iou": 25, "reid": 25}


class Propagator(Protocol):
    """Moves ``poses`` seen in frame ``src`` to frame ``dst``.

    Returns the moved poses (joint score = confidence of the move) and an
    opaque object the similarity may read (``FrameContext.corr_maps``).
    """

    def __call__(self, src_index: int, src_image: np.ndarray, dst_index: int, dst_image: np.ndarray,
                 poses: Poses) -> tuple[Poses, Any]: ...


Estimator = Callable[[np.ndarray, np.ndarray], Poses]  # (image RGB, boxes (N, 4)) -> N poses
Embedder = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (image RGB, boxes (N, 4)) -> (N, D) unit rows


@dataclass(frozen=True)
class RecoveryConfig:
    enabled: bool = True
    propagation_conf: float = 0.1  # a propagated joint counts when its affinity is at least this
    max_oks_to_detection: float = 0.6  # recover only when no detection explains the person better
    min_keypoints: int = 2  # confident propagated joints needed to place a box
    box_enlarge: float = 1.25  # box around the propagated joints, scaled about its centre
    min_box_size: float = 8.0  # pixels; smaller boxes are not worth a pose estimate
    min_pose_score: float = 0.2  # a re-estimated pose below this is the background, not the person
    max_consecutive: int = 5  # frames a track may live on recovered poses alone (no drift forever)


@dataclass(frozen=True)
class MergeConfig:
    max_gap: int = 30  # frames between the end of one tracklet and the start of the next
    oks_thresh: float = 0.5  # mean OKS of eq. 8 needed to merge
    joint_thresh: float = 0.1


@dataclass(frozen=True)
class TrackerConfig:
    similarity: str = "corr"
    threshold: float | None = None  # None: DEFAULT_THRESHOLDS[similarity]
    # Frames an unmatched track waits for its person to re-appear; None: DEFAULT_KEEP_ALIVE of the
    # similarity (corr 50, the others 25; see there). Earlier, with the first correspondence model,
    # 25 had cut switches for every similarity on the quick suite (corr: seed 0 264 -> 248, seed 1
    # 322 -> 270; oks 282 -> 257, 346 -> 332) and 50 was worse again for corr (254 on seed 0).
    keep_alive: int | None = None
    # A track with fewer than min_track_length matches waits only this many frames (at most
    # keep_alive). Such a track is dropped from the output unless it is matched again, and most
    # are one-off false detections (vtest.avi's sign starts one every few frames); each live
    # track costs a propagation per frame. Validation suite (12 sequences, corr): ID switches
    # 520 -> 519, MOTA 27.29 -> 27.36; vtest.avi: live tracks per frame 10.9 -> 8.3.
    tentative_keep_alive: int = 5
    joint_thresh: float = 0.1  # joints below this are ignored while tracking
    output_joint_thresh: float = 0.3  # joints below this are not written (paper, Table 3)
    min_keypoints: int = 2  # poses with fewer joints are neither tracked nor written
    min_track_length: int = 3  # shorter tracks are dropped at the end (offline)
    nms: NMSConfig = NMSConfig()  # OKS-NMS over detected + recovered poses
    duplicate_removal: bool = True
    duplicate: DuplicateConfig = DuplicateConfig()
    recovery: RecoveryConfig = RecoveryConfig()
    merge: bool = False
    merging: MergeConfig = MergeConfig()
    use_refinement: bool = True
    # Propagated joints: weight each map by a Gaussian around where the person's joints went as a
    # whole (median shift), sigma = this x the person's size (0: off; ``propagate``'s ``prior``).
    # Why: where people cross, a joint's map can peak higher on the other person than on its own
    # place (docs/models/corrnet.md, "A motion prior for the maps").
    corr_prior: float = 0.0
    corr_joint_conf: float = 0.1  # eq. 6 counts only affinities above this
    # corr: also score OKS between the track's propagated joints (scored by their map maxima) and
    # the candidate, and take the larger (False: the paper's eq. 6 alone). Eq. 6 reads the refined
    # maps, Gaussians of 1 cell, at the candidate's joints: a pose estimate a few pixels off reads
    # ~0 there, where OKS tolerates it. On 12 suite sequences with real detections (bench_tracking.py
    # --subset 3) ID switches fell from 1093 to 871 (OKS 884, flow 904) and IDF1 rose 51.8 -> 58.9.
    corr_oks: bool = True
    # Greedy matching takes pairs in the order of score - recency_penalty x (frames since the track
    # was last matched - 1); the threshold applies to the score alone. Why: a track kept alive
    # while its person is hidden is propagated from an older frame, and its maps can land on the
    # person in front, who is matched by a fresher track; with equal footing the two tracks take
    # that person in turns (an ID switch each frame). OKS compares with the last pose, which
    # favours the fresher track by itself. (DeepSORT's matching cascade, softened.)
    recency_penalty: float = 0.03
    # Confirmed tracks (matched >= min_track_length times) are matched before tentative ones, which
    # get only the candidates left (DeepSORT's cascade: confirmed tracks first, then unconfirmed).
    # Why: a second, partial detection of a person starts a tentative track beside the person's own;
    # when the person's own track is kept alive for a frame or two, the tentative one could outscore
    # it and take the person for good. On vtest.avi a lower-body detection of the man at the sign
    # (frame 157) took him at 160 from his 133-frame track and they swapped ids until frame 173.
    # Validation suite (seed 321, 12 sequences), ID switches without -> with: corr 497 -> 459,
    # corr+rec 572 -> 537, OKS 1062 -> 956, flow 794 -> 731 (a soft version, a penalty of 0.15 /
    # 0.3 on tentative pairs in the greedy order, gave corr 475 / 476: the strict order is best).
    confirmed_first: bool = True
    # Run the detector on every n-th frame only (1: every frame, the paper). In between, each person
    # tracked in the previous frame is followed the way recovery follows a missed person: pose
    # propagated by the correspondences, re-estimated in a box around it. Detection and the pose
    # network's calls on low-score candidates are most of a frame's time on a CPU; new people are
    # picked up at the next detection frame. (MediaPipe's pose tracking and DeepStream's detector
    # `interval` make the same trade.) Detection also runs whenever nobody can be followed.
    detect_every: int = 1
    # A confirmed track (matched >= min_track_length times) kept alive while its person is hidden is
    # also scored by OKS with its last pose moved on at its velocity (``motion_window`` matches,
    # least squares), the higher score counting. Why: behind a static occluder the last pose is
    # often weak and partly on the occluder, so the correspondences propagate the occluder, not the
    # person, and the person re-appears metres away under a new id; a walker keeps walking.
    # Validation suite (seed 321, 12 sequences): ID switches corr 519 -> 497, corr+rec 622 -> 572,
    # OKS 1240 -> 1062, flow 997 -> 794; 18 benchmark sequences: corr 874 -> 745, corr+rec 972 -> 874.
    # Tentative tracks are left out: on vtest.avi a traffic cone starts one every few frames.
    motion_prior: bool = True
    motion_window: int = 8
    # A second matching stage (OC-SORT's observation-centric recovery, stricter): a confirmed track
    # left unmatched takes a detection left over whose box overlaps the track's last box by IoU >= this
    # (0: off). Why: a person who stops while hidden re-appears where they vanished, but the motion
    # prior has moved the track on and the correspondences of the last pose can land on whoever
    # passed in front. On vtest.avi (frame 696) a man stood behind the pole while a walker passed:
    # his track scored 0.05 against him at IoU 0.87 with his last box, and he got a new id.
    # Validation suite (seed 321 / 777, 12 sequences each), ID switches: at 0.8 corr 453 / 478 and
    # corr+rec 531 / 527 unchanged, OKS 956 -> 956 / 917 -> 910, flow unchanged; lower values cost
    # corr (0.7: 453 -> 463, 0.5: 471: where two people overlap, the one in front can be the leftover).
    last_box_iou: float = 0.8
    # A third stage (DeepSORT's appearance cue, for lost tracks only): a confirmed track whose
    # person has been hidden a frame or more, still unmatched, takes a detection left over whose
    # crop looks like the track's last view, by cosine similarity of ImageNet MobileNetV2 crop
    # embeddings (``CropEmbedder``, the re-ID baseline's), at least this, both being each other's
    # best (0: off; the stage needs ``Tracker.embed``). Why: a person hidden for a while can come
    # back where neither the correspondences of the last pose nor the motion prior reach, e.g.
    # after turning round behind someone; looks are the cue left. On vtest.avi (frame 358) a walker
    # hidden 9 frames (the sign, a passer-by) came back turned towards the camera: his track scored 0.06
    # (threshold 0.07) and he got a new id; his crops' cosine is 0.80 (others <= 0.74).
    # Validation suites (seed 321 / 777, 12 sequences each), ID switches without -> 0.8 -> 0.75:
    # corr 453 -> 442 -> 433 / 478 -> 472 -> 469, corr+rec 531 -> 531 -> 507 / 527 -> 523 -> 523,
    # OKS 956 -> 800 -> 771 / 910 -> 927 -> 974, flow 731 -> 649 -> 580 / 737 -> 643 -> 610
    # (0.7: corr 443, 0.85: 453 on seed 321). Only embedded when both sides have someone left.
    appearance: float = 0.75
    # The appearance stage may also take a detection that a tentative track was given in the first
    # stage (with ``confirmed_first``: every stage of the confirmed tracks before the tentative ones).
    # Why: a second detection of a hidden person starts a tentative track that takes the person
    # when they come out, before their own, lost track is looked for. On vtest.avi (frames 38 - 41)
    # a man turning round behind the sign got a new id that way; at 41 his lost track's last view
    # has cosine 0.78 with him. Validation suites (seed 321 / 777), ID switches without -> with:
    # corr 433 -> 436 / 469 -> 469, corr+rec 507 -> 508 / 523 -> 523, OKS 771 -> 712 / 974 -> 731,
    # flow 580 -> 552 / 610 -> 558.
    appearance_over_tentative: bool = True
    # A detection left unmatched starts no track where its box overlaps, by IoU >= this, a recovered
    # pose that continues a track this frame (0: off). Why: recovery re-estimates a person's pose
    # in a box around their propagated joints when the detector's pose there does not match them;
    # the detector's box is then the same person, with joints that stray onto whoever overlaps
    # them. As a new track that second pose competes with the person's own track once the two
    # cross. On vtest.avi (frame 498) a walker passing between two men got a detection whose head
    # was on the man behind: his track kept its recovered pose (box IoU 0.86 with the detection),
    # the detection started a track that took him at 500 and for good at 503, and his old id went to
    # the man in black.
    recovered_overlap_iou: float = 0.5
    # A track whose person has been hidden a frame or more (gap >= 2 frames since its last match)
    # scores 0 against candidates whose box centre is farther from its last box's centre than
    # (1 + reach x gap) box heights (the taller of the two boxes; 0: off). Why: the maps of a pose
    # propagated from a frame where the person was leaving or hidden land partly on anyone, and
    # eq. 6 with OKS then passes the low threshold for a stranger across the frame. A walker covers
    # about 0.03 of his height per frame (vtest.avi), so 0.2 leaves room for fast people and gaps.
    # Validation suites (seed 321 / 777), ID switches without -> with: corr+rec 510 -> 482 / 525 ->
    # 513 (IDF1 +0.3 / +0.1); corr, OKS and flow unchanged (436 / 469, 712, 552 on seed 321). 0.1
    # gave corr 436 -> 450 on seed 321.
    reach: float = 0.2

    def __post_init__(self) -> None:
        if self.similarity not in DEFAULT_THRESHOLDS:
            raise ValueError(f"unknown similarity {self.similarity!r}; known: {', '.join(DEFAULT_THRESHOLDS)}")
        if self.tentative_keep_alive < 0:
            raise ValueError(f"tentative_keep_alive must be >= 0, got {self.tentative_keep_alive}")
        if self.corr_prior < 0:
            raise ValueError(f"corr_prior must be >= 0, got {self.corr_prior}")
        if self.detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {self.detect_every}")
        if self.motion_window < 2:
            raise ValueError(f"motion_window must be >= 2, got {self.motion_window}")

    @property
    def needs_correspondence(self) -> bool:
        """Whether the tracker needs a correspondence propagator (corr similarity, recovery, following)."""
        return self.similarity == "corr" or self.needs_estimator

    @property
    def uses_correspondence_net(self) -> bool:
        """Whether a run needs the correspondence network at all: in the tracker, or to merge tracks."""
        return self.needs_correspondence or self.merge

    @property
    def needs_estimator(self) -> bool:
        """Whether the tracker itself estimates poses (recovery, following between detection frames)."""
        return self.recovery.enabled or self.detect_every > 1

    @property
    def match_threshold(self) -> float:
        return DEFAULT_THRESHOLDS[self.similarity] if self.threshold is None else self.threshold

    @property
    def max_age(self) -> int:
        """Frames an unmatched track stays alive (``keep_alive`` or the similarity's default)."""
        return DEFAULT_KEEP_ALIVE[self.similarity] if self.keep_alive is None else self.keep_alive

    def confirmed(self, hits: int) -> bool:
        """Whether a track matched ``hits`` times is confirmed (else tentative: it waits less, gets no
        motion prior and is matched after the confirmed ones)."""
        return hits >= self.min_track_length

    def track_max_age(self, hits: int) -> int:
        """Frames an unmatched track with ``hits`` matches stays alive (tentative tracks: fewer)."""
        return self.max_age if self.confirmed(hits) else min(self.max_age, self.tentative_keep_alive)


# -- recovery (paper §5.1) --------------------------------------------------

def boxes_around(keypoints: np.ndarray, min_score: float, enlarge: float,
                 image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Box around each pose's joints with score >= ``min_score``, scaled by ``enlarge`` about its centre."""
    kp = np.asarray(keypoints, np.float64)
    ok = kp[..., 2] >= min_score
    lo = np.where(ok[..., None], kp[..., :2], np.inf).min(1)
    hi = np.where(ok[..., None], kp[..., :2], -np.inf).max(1)
    none = ~ok.any(1)
    lo[none], hi[none] = 0.0, 0.0
    c, half = (lo + hi) / 2, (hi - lo) / 2 * enlarge
    boxes = np.concatenate([c - half, c + half], axis=1)
    if image_size is not None:
        w, h = image_size
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w - 1)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h - 1)
    return boxes


def carry_boxes(src: Poses, moved: Poses) -> Poses:
    """``moved`` with ``src``'s boxes shifted by the mean move of the joints (OKS needs a person-sized box)."""
    ok = (src.keypoints[..., 2] > 0) & (moved.keypoints[..., 2] > 0)
    d = np.where(ok[..., None], moved.keypoints[..., :2] - src.keypoints[..., :2], 0.0)
    shift = d.sum(1) / np.maximum(ok.sum(1), 1)[:, None]
    return moved.replace(boxes=src.boxes + np.concatenate([shift, shift], axis=1))


def recover_missed(prev: Poses, detections: Poses, image: np.ndarray, *,
                   propagate: Callable[[Poses], Poses], estimate: Estimator,
                   config: RecoveryConfig = RecoveryConfig()) -> Poses:
    """Poses of people seen in t-1 (``prev``) that no detection of t explains (paper §5.1).

    ``propagate`` moves ``prev`` to frame t (joint score = affinity confidence);
    ``estimate`` re-estimates a pose in each box. Returns the new poses with
    origin RECOVERED (not yet NMS-ed against ``detections``).
    """
    layout = detections.layout
    if len(prev) == 0:
        return Poses.empty(layout)
    moved = carry_boxes(prev, propagate(prev)).threshold_joints(config.propagation_conf)
    enough = moved.num_visible(0.0) >= config.min_keypoints
    if len(detections):
        # Reference = the propagated pose, so its few confident joints decide.
        best = oks_matrix(moved, detections, joint_thresh=0.0).max(1)
    else:
        best = np.zeros(len(moved))
    need = enough & (best <= config.max_oks_to_detection)
    if not need.any():
        return Poses.empty(layout)
    h, w = image.shape[:2]
    boxes = boxes_around(moved.keypoints[need], config.propagation_conf, config.box_enlarge, (w, h))
    big = ((boxes[:, 2:] - boxes[:, :2]) >= config.min_box_size).all(1)
    if not big.any():
        return Poses.empty(layout)
    est = estimate(image, boxes[big]).to_layout(layout)
    if len(est) != int(big.sum()):
        raise ValueError(f"pose estimator returned {len(est)} poses for {int(big.sum())} boxes")
    est = est.replace(origin=np.full(len(est), RECOVERED, np.int8), track_ids=np.full(len(est), -1))
    return est[est.scores >= config.min_pose_score]


# -- the online tracker -----------------------------------------------------

@dataclass
class _Track:
    id: int
    pose: Poses  # the last matched pose (one person)
    frame: int  # index of the frame it was matched in
    hits: int = 1
    recovered_run: int = 0  # consecutive detection frames matched on recovered poses
    embedding: np.ndarray | None = None  # of the crop of ``pose`` in frame ``embedded``
    embedded: int = -1
    path: list[tuple[int, float, float]] = field(default_factory=list)  # (frame, box centre) of recent matches

    def remember(self, window: int) -> None:
        b = self.pose.boxes[0]
        self.path = self.path[-(window - 1):] + [(self.frame, (b[0] + b[2]) / 2, (b[1] + b[3]) / 2)]


def velocity(path: Sequence[tuple[int, float, float]]) -> np.ndarray | None:
    """Least-squares velocity (px per frame, x and y) through ``(frame, x, y)`` points; None for < 2 frames."""
    if len(path) < 2:
        return None
    a = np.asarray(path, np.float64)
    t = a[:, 0] - a[:, 0].mean()
    if not (t ** 2).sum():
        return None
    return (t[:, None] * (a[:, 1:] - a[:, 1:].mean(0))).sum(0) / (t ** 2).sum()


def motion_scores(tracks: Sequence[_Track], index: int, candidates: Poses, config: TrackerConfig) -> np.ndarray:
    """OKS of each confirmed, kept-alive track's last pose moved on at its velocity to frame
    ``index`` with each candidate; 0 for the other tracks (``TrackerConfig.motion_prior``)."""
    out = np.zeros((len(tracks), len(candidates)))
    for r, tr in enumerate(tracks):
        gap = index - tr.frame
        v = velocity(tr.path) if gap > 1 and config.confirmed(tr.hits) else None
        if v is not None and len(candidates):
            out[r] = oks_matrix(tr.pose.translate(*(v * gap)), candidates, config.joint_thresh)[0]
    return out


def out_of_reach(tracks: Sequence[_Track], candidates: Poses, gaps: np.ndarray, reach: float) -> np.ndarray:
    """(tracks, candidates): whether a track unmatched for a frame or more (``gaps`` >= 2) is farther
    from the candidate than its person can have walked: box centres more than (1 + ``reach`` x gap)
    box heights apart, the taller box's (``TrackerConfig.reach``)."""
    tb = np.stack([tr.pose.boxes[0] for tr in tracks])
    cb = candidates.boxes
    dist = np.linalg.norm((tb[:, None, :2] + tb[:, None, 2:]) / 2 - (cb[None, :, :2] + cb[None, :, 2:]) / 2, axis=-1)
    height = np.maximum((tb[:, 3] - tb[:, 1])[:, None], (cb[:, 3] - cb[:, 1])[None])
    return (gaps >= 2)[:, None] & (dist > (1 + reach * gaps)[:, None] * height)


def free_detections(candidates: Poses, matches: list[tuple[int, int]], keep: np.ndarray) -> list[int]:
    """Columns of detected (not recovered) candidates neither in ``matches`` nor dropped."""
    used = {c for _, c in matches}
    return [c for c in range(len(candidates)) if c not in used and keep[c] and candidates.origin[c] != RECOVERED]


def leftovers(tracks: Sequence[_Track], candidates: Poses, matches: list[tuple[int, int]],
              keep: np.ndarray, config: TrackerConfig) -> tuple[list[int], list[int]]:
    """What a later matching stage may pair: rows of confirmed tracks not in ``matches``, columns of
    detected candidates neither matched nor dropped."""
    used_r = {r for r, _ in matches}
    rows = [r for r, tr in enumerate(tracks) if r not in used_r and config.confirmed(tr.hits)]
    return rows, free_detections(candidates, matches, keep)


def last_box_matches(tracks: Sequence[_Track], candidates: Poses, matches: list[tuple[int, int]],
                     keep: np.ndarray, config: TrackerConfig) -> list[tuple[int, int]]:
    """Second stage (``TrackerConfig.last_box_iou``): pairs (row, col) of ``leftovers`` by box IoU
    with the track's last box, greedily, at least ``last_box_iou``."""
    rows, cols = leftovers(tracks, candidates, matches, keep, config)
    if not rows or not cols:
        return []
    iou = iou_matrix(np.stack([tracks[r].pose.boxes[0] for r in rows]), candidates.boxes[cols])
    return [(rows[i], cols[j]) for i, j in greedy_match(iou, config.last_box_iou)]


def covered_by_recovered(candidates: Poses, matches: list[tuple[int, int]], keep: np.ndarray,
                         config: TrackerConfig) -> np.ndarray:
    """Columns of detected candidates left unmatched whose box overlaps a matched recovered pose's
    box by IoU >= ``recovered_overlap_iou`` (``TrackerConfig.recovered_overlap_iou``): they start
    no track."""
    out = np.zeros(len(candidates), bool)
    rec = [c for _, c in matches if candidates.origin[c] == RECOVERED]
    free = free_detections(candidates, matches, keep)
    if config.recovered_overlap_iou > 0 and rec and free:
        iou = iou_matrix(candidates.boxes[free], candidates.boxes[rec])
        out[np.asarray(free)[iou.max(1) >= config.recovered_overlap_iou]] = True
    return out


def appearance_matches(tracks: Sequence[_Track], candidates: Poses, matches: list[tuple[int, int]],
                       keep: np.ndarray, config: TrackerConfig, index: int,
                       track_embeddings: Callable[[list[int]], np.ndarray],
                       candidate_embeddings: Callable[[list[int]], np.ndarray]) -> list[tuple[int, int]]:
    """Third stage (``TrackerConfig.appearance``): pairs (row, col) of ``leftovers`` whose track was
    not seen at ``index`` - 1, by cosine similarity of crop embeddings (unit rows of the given rows
    / cols, asked for only when both are non-empty), greedily, at least ``appearance``, each the
    other's best."""
    rows, cols = leftovers(tracks, candidates, matches, keep, config)
    rows = [r for r in rows if index - tracks[r].frame >= 2]
    if not rows or not cols:
        return []
    sim = track_embeddings(rows) @ candidate_embeddings(cols).T
    return [(rows[i], cols[j]) for i, j in greedy_match(sim, config.appearance)
            if sim[i].argmax() == j and sim[:, j].argmax() == i]


class FlowPropagator:
    """The FlowTrack baseline's propagation: DIS flow from the track's frame to the current one."""

    def __init__(self) -> None:
        self._cache: tuple[tuple[int, int], np.ndarray] | None = None

    def __call__(self, src_index, src_image, dst_index, dst_image, poses):
        key = (src_index, dst_index)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, dis_flow(src_image, dst_image))
        return flow_propagate(poses, self._cache[1]), None


@dataclass
class Tracker:
    """Online tracker; one instance per sequence. See the module doc for the steps."""

    config: TrackerConfig = field(default_factory=TrackerConfig)
    correspond: Propagator | None = None  # correspondence network (corr similarity, recovery)
    estimate: Estimator | None = None  # top-down pose estimator (recovery)
    embed: Embedder | None = None  # person-crop embedder (reid; the appearance stage, skipped without one)
    flow: Propagator | None = None  # optical flow (flow similarity); DIS when None
    timings: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def __post_init__(self) -> None:
        cfg = self.config
        if cfg.similarity == "corr" and self.correspond is None:
            raise ValueError("the corr similarity needs a correspondence propagator")
        if cfg.needs_estimator and (self.correspond is None or self.estimate is None):
            what = "recovery" if cfg.recovery.enabled else f"detect_every={cfg.detect_every}"
            raise ValueError(f"{what} needs a correspondence propagator and a pose estimator")
        if cfg.similarity == "reid" and self.embed is None:
            raise ValueError("the reid similarity needs an embedder")
        if cfg.similarity == "flow" and self.flow is None:
            self.flow = FlowPropagator()
        self._similarity = get_similarity(cfg.similarity)
        self._uses_appearance = cfg.appearance > 0 and self.embed is not None
        self._tracks: dict[int, _Track] = {}
        self._images: dict[int, np.ndarray] = {}
        self._next_id = 0
        self._layout = "coco17"  # of the last candidates; a frame without detections has none
        self._since_detection: int | None = None  # frames stepped since the last one with detections

    @property
    def live_track_ids(self) -> list[int]:
        return sorted(self._tracks)

    def wants_detections(self, index: int) -> bool:
        """Whether frame ``index`` needs detected poses (``detect_every``); if not, ``step(index, None, image)``.

        True on every ``detect_every``-th frame, and whenever no person of frame index - 1 can be
        followed (nobody tracked there, or only people already followed on recovered poses alone
        for ``recovery.max_consecutive`` detection frames).
        """
        if self._since_detection is None or self._since_detection + 1 >= self.config.detect_every:
            return True
        return not any(t.frame == index - 1 and self._followable(t) for t in self._tracks.values())

    def _followable(self, track: _Track) -> bool:
        """Whether recovery may carry ``track`` on (not on recovered poses alone for too long)."""
        return track.recovered_run < self.config.recovery.max_consecutive

    def _timed(self, stage: str, fn: Callable, *args):
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.timings[stage] += time.perf_counter() - t0

    def step(self, index: int, candidates: Poses | None, image: np.ndarray | None = None) -> Poses:
        """Track the poses of frame ``index``; returns the kept poses with their track ids.

        ``candidates`` None: the frame was not detected (``wants_detections``); the people of
        frame index - 1 are followed by recovery alone.
        """
        cfg = self.config
        detected = candidates is not None
        if not detected and (self.correspond is None or self.estimate is None):
            raise ValueError("a frame without detections needs a correspondence propagator and a pose estimator")
        needs_image = (cfg.similarity in ("corr", "flow", "reid") or cfg.recovery.enabled or not detected
                       or self._uses_appearance)
        if needs_image and image is None:
            raise ValueError(f"the {cfg.similarity} tracker (recovery {cfg.recovery.enabled}, appearance stage "
                             f"{self._uses_appearance}) needs the frame image")
        if detected:
            self._layout, self._since_detection = candidates.layout, 0
        else:
            candidates = Poses.empty(self._layout)
            self._since_detection = (self._since_detection or 0) + 1
        # Forget tracks whose person has been gone longer than keep_alive (tentative ones sooner).
        self._tracks = {i: t for i, t in self._tracks.items() if index - t.frame <= cfg.track_max_age(t.hits)}
        if image is not None:
            self._images[index] = image
        candidates = candidates[candidates.num_visible(cfg.joint_thresh) >= cfg.min_keypoints]
        live = list(self._tracks.values())
        groups: dict[int, list[int]] = defaultdict(list)  # last-seen frame -> rows of `live`
        for row, tr in enumerate(live):
            groups[tr.frame].append(row)
        if not detected:
            # The only candidates will be the followed people of t-1: a track kept alive has nobody of
            # its own to find, so it is neither propagated (time) nor scored (it could only take a
            # followed person's pose, an ID switch).
            groups = {index - 1: groups[index - 1]} if index - 1 in groups else {}
        group_poses = {src: Poses.concat([live[r].pose for r in rows]) for src, rows in groups.items()}

        moved: dict[int, tuple[Poses, Any]] = {}
        mover = {"corr": self.correspond, "flow": self.flow}.get(cfg.similarity)
        if mover is not None:
            stage = "correspondence" if cfg.similarity == "corr" else "flow"
            for src, poses in group_poses.items():
                m, maps = self._timed(stage, mover, src, self._images[src], index, image, poses)
                moved[src] = (carry_boxes(poses, propagation_confidence(m, maps)), maps)

        if (cfg.recovery.enabled or not detected) and index - 1 in groups:
            candidates = self._recover(index, image, live, groups, group_poses, moved, candidates)
        candidates = candidates[np.sort(oks_nms(candidates, cfg.nms.joint_thresh, cfg.nms.oks_thresh,
                                                prefer_detected=True))]

        cand_emb = None
        if cfg.similarity == "reid":
            cand_emb = self._timed("reid", self.embed, image, candidates.boxes) if len(candidates) else np.zeros((0, 1))
        t0, embedding_before = time.perf_counter(), self.timings.get("appearance", 0.0)
        scores = np.zeros((len(live), len(candidates)))
        votes = np.zeros_like(scores)
        size = (image.shape[1], image.shape[0]) if image is not None else None
        for src, rows in groups.items():
            m = moved.get(src)
            ctx = FrameContext(
                image=image, prev_image=self._images.get(src), image_size=size,
                propagated=None if m is None else m[0], corr_maps=None if m is None else m[1],
                track_embeddings=None if cand_emb is None else np.stack([live[r].embedding for r in rows]),
                candidate_embeddings=cand_emb, joint_thresh=cfg.joint_thresh, corr_joint_conf=cfg.corr_joint_conf,
                corr_oks=cfg.corr_oks)
            if len(candidates):
                scores[rows] = self._similarity(group_poses[src], candidates, ctx)
                if cfg.duplicate_removal and ctx.corr_maps is not None:
                    votes[rows] = correspondence_votes(ctx.corr_maps, candidates, cfg.joint_thresh,
                                                       cfg.corr_joint_conf)
                    if cfg.corr_oks:
                        # As for the similarity: a second detection a few pixels off the sharp
                        # refined maps reads ~0 there, but its joints sit on the propagated ones.
                        votes[rows] = np.maximum(votes[rows], keypoint_votes(m[0], candidates, cfg.joint_thresh))
                elif cfg.duplicate_removal:
                    # Without maps, a joint's correspondence is where the track's joint moved to (or stayed).
                    ref = group_poses[src] if m is None else m[0]
                    votes[rows] = keypoint_votes(ref, candidates, cfg.joint_thresh)
        if cfg.motion_prior:  # only the tracks scored this frame (not kept-alive ones between detections)
            rows = [r for rs in groups.values() for r in rs]
            scores[rows] = np.maximum(scores[rows], motion_scores([live[r] for r in rows], index, candidates, cfg))
        gaps = np.array([index - tr.frame for tr in live], np.float64)
        if cfg.reach > 0 and len(candidates) and len(live):
            scores = np.where(out_of_reach(live, candidates, gaps, cfg.reach), 0.0, scores)
        tier = np.array([cfg.confirmed_first and not cfg.confirmed(tr.hits) for tr in live], np.int64)
        priority = scores - cfg.recency_penalty * (gaps - 1)[:, None]
        matches, keep = match_without_duplicates(scores, cfg.match_threshold, priority, tier, votes,
                                                 cfg.duplicate if cfg.duplicate_removal else None)
        if cfg.last_box_iou > 0:
            matches += last_box_matches(live, candidates, matches, keep, cfg)
        if self._uses_appearance:
            def track_embeddings(rows: list[int]) -> np.ndarray:
                for tr in (live[r] for r in rows):
                    if tr.embedded != tr.frame:  # its last view: kept in _images while the track lives
                        tr.embedding, tr.embedded = self._timed("appearance", self.embed, self._images[tr.frame],
                                                                tr.pose.boxes[:1])[0], tr.frame
                return np.stack([live[r].embedding for r in rows])

            firm = [(r, c) for r, c in matches if not (cfg.appearance_over_tentative and tier[r])]
            def candidate_embeddings(cols: list[int]) -> np.ndarray:
                if cand_emb is not None:  # the reid similarity embedded every candidate already
                    return cand_emb[cols]
                return self._timed("appearance", self.embed, image, candidates.boxes[cols])

            found = appearance_matches(live, candidates, firm, keep, cfg, index, track_embeddings,
                                       candidate_embeddings)
            taken = {c for _, c in found}
            matches = [(r, c) for r, c in matches if c not in taken] + found
        keep &= ~covered_by_recovered(candidates, matches, keep, cfg)
        ids = np.full(len(candidates), -1, np.int64)
        for r, c in matches:
            tr = live[r]
            tr.pose, tr.frame, tr.hits = candidates[c], index, tr.hits + 1
            tr.remember(cfg.motion_window)
            if detected:  # counts detection frames: following between them is no missed detection
                tr.recovered_run = tr.recovered_run + 1 if candidates.origin[c] == RECOVERED else 0
            if cand_emb is not None:
                tr.embedding, tr.embedded = cand_emb[c], index
            ids[c] = tr.id
        for c in range(len(candidates)):
            # A recovered pose that continues no track is not a person we saw.
            if ids[c] < 0 and keep[c] and candidates.origin[c] != RECOVERED:
                tr = _Track(self._next_id, candidates[c], index, embedding=None if cand_emb is None else cand_emb[c],
                            embedded=-1 if cand_emb is None else index)
                tr.remember(cfg.motion_window)
                self._tracks[tr.id] = tr
                self._next_id += 1
                ids[c] = tr.id
        keep &= ids >= 0
        self.timings["association"] += time.perf_counter() - t0 - (self.timings.get("appearance", 0.0) - embedding_before)
        referenced = {t.frame for t in self._tracks.values()}
        self._images = {i: im for i, im in self._images.items() if i in referenced}
        return candidates[keep].replace(track_ids=ids[keep])

    def _recover(self, index, image, live, groups, group_poses, moved, candidates) -> Poses:
        cfg = self.config.recovery
        rows = [r for r in groups[index - 1] if self._followable(live[r])]
        if not rows:
            return candidates
        sel = np.array([groups[index - 1].index(r) for r in rows])
        prev = group_poses[index - 1][sel]
        if self.config.similarity == "corr":
            already = moved[index - 1][0][sel]

            def propagate(_p: Poses) -> Poses:
                return already
        else:
            def propagate(p: Poses) -> Poses:
                return propagation_confidence(*self._timed("correspondence", self.correspond, index - 1,
                                                           self._images[index - 1], index, image, p))
        def estimate(im: np.ndarray, boxes: np.ndarray) -> Poses:
            return self._timed("pose (recovery)", self.estimate, im, boxes)

        rec = recover_missed(prev, candidates, image, propagate=propagate, estimate=estimate, config=cfg)
        rec = rec[rec.num_visible(self.config.joint_thresh) >= self.config.min_keypoints]
        return Poses.concat([candidates, rec]) if len(rec) else candidates


# -- offline post-processing ------------------------------------------------

def track_frame_counts(frames: Iterable[Poses], config: TrackerConfig) -> Counter:
    """Frames per track id that survive the output joint threshold (first pass of finalising)."""
    counts: Counter = Counter()
    for poses in frames:
        ok = poses.num_visible(config.output_joint_thresh - 1e-12) >= config.min_keypoints
        counts.update(int(t) for t in poses.track_ids[ok] if t >= 0)
    return counts


def final_id_map(counts: Counter, config: TrackerConfig, order: Sequence[int] | None = None) -> dict[int, int]:
    """Old id -> written id: tracks shorter than ``min_track_length`` are dropped, the rest numbered 0.. .

    ``order`` (ids by first appearance) fixes the numbering; default ascending id.
    """
    ids = order if order is not None else sorted(counts)
    kept = [i for i in ids if counts.get(i, 0) >= config.min_track_length]
    return {old: new for new, old in enumerate(kept)}


def output_view(poses: Poses, config: TrackerConfig) -> Poses:
    """Joints >= the output threshold; people left with fewer than ``min_keypoints`` dropped."""
    out = poses.threshold_joints(config.output_joint_thresh)
    return out[out.num_visible(0.0) >= config.min_keypoints]


def finalize_frame(poses: Poses, id_map: dict[int, int], config: TrackerConfig) -> Poses:
    """What is written for one frame: ``output_view``, kept tracks only, renumbered ids."""
    out = output_view(poses, config)
    out = out[np.array([int(t) in id_map for t in out.track_ids], bool).reshape(len(out))]
    return out.replace(track_ids=np.array([id_map[int(t)] for t in out.track_ids], np.int64))


# -- track merging (eq. 8) --------------------------------------------------

@dataclass(frozen=True)
class Tracklet:
    id: int
    frames: tuple[int, ...]  # sorted frame indices where it has a pose
    poses: dict  # frame index -> Poses (one person); only the frames merging looks at are needed


def tracklets_from_frames(frame_indices: Sequence[int], frames: Sequence[Poses]) -> dict[int, Tracklet]:
    """Group per-frame tracked poses into tracklets (keeps every pose; fine for merging's needs)."""
    by_id: dict[int, dict[int, Poses]] = defaultdict(dict)
    for idx, poses in zip(frame_indices, frames):
        for i, t in enumerate(poses.track_ids):
            if t >= 0:
                by_id[int(t)][int(idx)] = poses[i]
    return {t: Tracklet(t, tuple(sorted(p)), p) for t, p in by_id.items()}


def merge_candidates(tracklets: dict[int, Tracklet], max_gap: int) -> list[tuple[int, int, list[int], int]]:
    """Pairs (a, b) with a ending before b starts within ``max_gap``: (a, b, a's source frames, b's start).

    The source frames are the start, centre and end of ``a`` (eq. 8).
    """
    out = []
    for a in tracklets.values():
        fa = a.frames
        src = sorted({fa[0], fa[len(fa) // 2], fa[-1]})
        for b in tracklets.values():
            gap = b.frames[0] - fa[-1]
            if a.id != b.id and 0 < gap <= max_gap:
                out.append((a.id, b.id, src, b.frames[0]))
    return out


def merge_tracks(tracklets: dict[int, Tracklet], propagate: Callable[[int, int, Poses], Poses],
                 config: MergeConfig = MergeConfig()) -> dict[int, int]:
    """Track id -> merged id (eq. 8); ids not merged map to themselves.

    For tracklets a, b (a ends before b starts), the poses of a at its start,
    centre and end frames are propagated to b's first frame
    (``propagate(src_frame, dst_frame, pose)``) and compared with b's first pose
    by OKS; the mean is the similarity. Pairs are merged greedily, highest
    first, each tracklet getting at most one successor and one predecessor, so
    a merged track never has two poses in one frame.
    """
    scored = []
    for a, b, srcs, dst in merge_candidates(tracklets, config.max_gap):
        target = tracklets[b].poses[dst]
        sims = []
        for s in srcs:
            moved = propagate(s, dst, tracklets[a].poses[s]).threshold_joints(config.joint_thresh)
            sims.append(float(oks_matrix(moved, target, config.joint_thresh)[0, 0]) if moved.num_visible(0)[0] else 0.0)
        scored.append((float(np.mean(sims)), a, b))
    succ: dict[int, int] = {}
    pred: dict[int, int] = {}
    for score, a, b in sorted(scored, key=lambda x: (-x[0], x[1], x[2])):
        if score < config.oks_thresh or a in succ or b in pred:
            continue
        succ[a], pred[b] = b, a
    root = {}
    for t in sorted(tracklets, key=lambda t: tracklets[t].frames[0]):
        root[t] = root[pred[t]] if t in pred else t
    return root
