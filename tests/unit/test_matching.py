"""Greedy matching, OKS-NMS and duplicate removal on generated inputs."""
from __future__ import annotations

import numpy as np

from corrtrack.pipeline.matching import DuplicateConfig, greedy_match, match_without_duplicates, oks_nms, remove_duplicates
from corrtrack.structures import Poses

TEMPLATE = np.array([  # a standing person, COCO-17, in body heights about the hip centre
    (0, -.45), (.02, -.47), (-.02, -.47), (.04, -.46), (-.04, -.46), (.1, -.33), (-.1, -.33),
    (.13, -.15), (-.13, -.15), (.14, 0), (-.14, 0), (.07, 0), (-.07, 0), (.07, .25), (-.07, .25),
    (.07, .48), (-.07, .48)])


def people(*centres, height=100.0) -> Poses:
    kp = np.zeros((len(centres), 17, 3))
    for i, (x, y) in enumerate(centres):
        kp[i, :, :2] = TEMPLATE * height + (x, y)
        kp[i, :, 2] = 0.9
    return Poses(kp, "coco17")


def test_greedy_takes_the_highest_pair_first():
    s = np.array([[0.9, 0.8],
                  [0.85, 0.1]])
    # Greedy: (0,0)=0.9 first, then row 1 only has 0.1 left (< threshold).
    # (An optimal assignment would pick (0,1)+(1,0) = 1.65 instead.)
    assert greedy_match(s, 0.3) == [(0, 0)]
    assert greedy_match(s, 0.05) == [(0, 0), (1, 1)]


def test_greedy_threshold_and_shapes():
    s = np.array([[0.2, 0.5, 0.4],
                  [0.6, 0.45, 0.1]])
    assert greedy_match(s, 0.3) == [(1, 0), (0, 1)]
    assert greedy_match(s, 0.7) == []
    assert greedy_match(np.zeros((0, 3)), 0.3) == []
    assert greedy_match(np.zeros((2, 0)), 0.3) == []
    assert greedy_match(np.array([[0.3]]), 0.3) == [(0, 0)]  # the threshold itself matches


def test_greedy_priority_orders_but_the_score_thresholds():
    s = np.array([[0.9, 0.8],
                  [0.85, 0.1]])
    prio = s - np.array([[0.1], [0.0]])  # row 0 penalised: (1,0)=0.85 now goes before (0,0)=0.8
    assert greedy_match(s, 0.3, prio) == [(1, 0), (0, 1)]
    assert greedy_match(s, 0.3, s) == greedy_match(s, 0.3) == [(0, 0)]
    assert greedy_match(s, 0.3, np.ones_like(s)) == [(0, 0)]  # equal priority: row-major; (1,1)=0.1 < 0.3


def test_greedy_tiers_go_before_scores_and_priority():
    s = np.array([[0.9, 0.4],
                  [0.5, 0.2]])
    # row 0 in the later tier: row 1 takes column 0 first, row 0 gets what is left
    assert greedy_match(s, 0.3, tier=np.array([1, 0])) == [(1, 0), (0, 1)]
    assert greedy_match(s, 0.3, tier=np.array([0, 0])) == greedy_match(s, 0.3) == [(0, 0)]
    # priority orders within a tier; the threshold still applies to the score
    assert greedy_match(s, 0.45, s, np.array([1, 0])) == [(1, 0)]


def test_greedy_ties_are_deterministic():
    s = np.full((3, 3), 0.5)
    assert greedy_match(s, 0.3) == [(0, 0), (1, 1), (2, 2)]


def test_oks_nms_keeps_the_best_of_overlapping_poses():
    p = people((100, 100), (101, 100), (300, 100), (102, 101))
    p.scores[:] = [0.5, 0.9, 0.7, 0.6]
    keep = oks_nms(p, joint_thresh=0.05, oks_thresh=0.7)
    assert keep.tolist() == [1, 2]  # best first; 0 and 3 duplicate 1
    assert oks_nms(p, oks_thresh=1.0).tolist() == [1, 2, 3, 0]  # nothing exceeds OKS 1
    assert oks_nms(people()).tolist() == []


def test_oks_nms_drops_a_mirrored_copy_of_a_person():
    # A crop holding the wrong person can return them with left and right swapped (vtest.avi,
    # frame 209): plain OKS to the true pose is low, it is still the same person.
    p = people((100, 100), (100, 100), (300, 100))
    p.keypoints[1] = p.keypoints[1, p.layout.flip_permutation()]
    p.scores[:] = [0.9, 0.5, 0.7]
    from corrtrack.pipeline.similarity import oks_matrix

    assert oks_matrix(p[:1], p[1:2])[0, 0] < 0.5  # what NMS saw before
    assert oks_nms(p, joint_thresh=0.05, oks_thresh=0.7).tolist() == [0, 2]


def test_oks_nms_ignores_low_joints():
    p = people((100, 100), (100, 100))
    p.scores[:] = [0.9, 0.8]
    p.keypoints[0, :, 2] = 0.04  # below the NMS joint threshold: nothing to compare
    assert sorted(oks_nms(p, joint_thresh=0.05).tolist()) == [0, 1]


def test_remove_duplicates_drops_unmatched_sharers_only():
    votes = np.array([[1.0, 0.7, 0.5, 0.9],
                      [0.0, 0.1, 0.0, 0.95]])
    matches = [(0, 0), (1, 3)]
    keep = remove_duplicates(matches, votes, ratio=0.6, matched=False)
    # 1 shares 70 % of track 0's joints -> duplicate; 2 only 50 %; 3 is matched itself.
    assert keep.tolist() == [True, False, True, True]
    assert remove_duplicates([], votes, 0.6, matched=False).all()
    assert remove_duplicates(matches, votes, ratio=0.75, matched=False).tolist() == [True, True, True, True]


def test_remove_duplicates_can_drop_a_weaker_match_of_a_duplicate():
    # Track 0 took candidate 0 first; track 1 (an old track kept alive) then took candidate 1,
    # which holds 75 % of track 0's joints: a second detection of track 0's person.
    votes = np.array([[0.9, 0.75, 0.0],
                      [0.2, 0.3, 0.0],
                      [0.0, 0.0, 0.8]])
    matches = [(0, 0), (2, 2), (1, 1)]
    assert remove_duplicates(matches, votes, 0.6, matched=False).tolist() == [True, True, True]
    assert remove_duplicates(matches, votes, 0.6, matched=True).tolist() == [True, False, True]
    # The earlier (stronger) match is never dropped for a later one, and a dropped
    # candidate's own track does not vote others away.
    votes2 = np.array([[0.9, 0.0, 0.0],
                       [0.7, 0.9, 0.8],
                       [0.0, 0.0, 0.8]])
    assert remove_duplicates([(0, 0), (1, 1), (2, 2)], votes2, 0.6, matched=True).tolist() == [True, True, False]
    votes3 = np.array([[0.9, 0.7, 0.0],
                       [0.0, 0.9, 0.8],
                       [0.0, 0.0, 0.8]])
    assert remove_duplicates([(0, 0), (1, 1), (2, 2)], votes3, 0.6, matched=True).tolist() == [True, False, True]


def test_oks_nms_can_prefer_detections_over_recovered_poses():
    from corrtrack.structures import RECOVERED

    p = people((100, 100), (101, 100))
    p.scores[:] = [0.4, 0.9]
    p.origin[1] = RECOVERED  # the better-scoring pose was only recovered
    assert oks_nms(p).tolist() == [1]
    assert oks_nms(p, prefer_detected=True).tolist() == [0]


def test_match_without_duplicates_rematches_a_track_whose_match_was_dropped():
    # track 0 takes column 0; column 1 holds 0.8 of track 0's joints, so track 1's match (column 1)
    # is a duplicate; column 2 is track 1's next best
    scores = np.array([[0.9, 0.5, 0.0],
                       [0.0, 0.6, 0.4]])
    votes = np.array([[1.0, 0.8, 0.0],
                      [0.0, 1.0, 0.0]])
    dup = DuplicateConfig()
    assert match_without_duplicates(scores, 0.3, None, None, votes, None)[0] == [(0, 0), (1, 1)]
    matches, keep = match_without_duplicates(scores, 0.3, None, None, votes, DuplicateConfig(rematch=False))
    assert matches == [(0, 0)] and keep.tolist() == [True, False, True]
    matches, keep = match_without_duplicates(scores, 0.3, None, None, votes, dup)
    assert matches == [(0, 0), (1, 2)] and keep.tolist() == [True, False, True]

