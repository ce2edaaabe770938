"""add_distractors: a second, false peak in the refinement's training maps (train/corr.py)."""
import numpy as np
import torch

from corrtrack.layouts import COCO17
from corrtrack.train.corr import add_distractors

H = W = 32


def _peaks(places):
    """One-hot maps (1, P, K, H, W) at places (P, K, 2) given as (x, y) cells."""
    p, k = places.shape[:2]
    maps = torch.zeros(1, p, k, H, W)
    for s in range(p):
        for j in range(k):
            x, y = places[s, j]
            maps[0, s, j, y, x] = 1.0
    return maps


def _scene():
    k = len(COCO17.joints)
    g = np.zeros((2, k, 2), int)
    side = np.array([0 if n == "nose" else (-1 if n.startswith("left") else 1) for n in COCO17.joints])
    g[0, :, 0], g[0, :, 1] = 6 + 4 * side, np.arange(k)  # person 0: left joints at x = 2, right at 10
    g[1, :, 0], g[1, :, 1] = 25, np.arange(k)  # person 1: all in column 25
    return g


def test_a_false_peak_lands_on_another_persons_joint_or_the_mirrored_one():
    g = _scene()
    maps = _peaks(g)
    present = torch.ones(1, 2, g.shape[1], dtype=torch.bool)
    flip = COCO17.flip_permutation()
    out = add_distractors(maps, torch.from_numpy(g[None]).float(), present, 1.0, flip, np.random.default_rng(0))
    moved, mirrored = 0, 0
    for s in range(2):
        for j in range(g.shape[1]):
            m = out[0, s, j]
            x, y = g[s, j]
            allowed = {(int(g[1 - s, j, 0]), int(g[1 - s, j, 1])), (int(g[s, flip[j], 0]), int(g[s, flip[j], 1]))}
            rest = {(int(xx), int(yy)) for yy, xx in zip(*np.nonzero(m.numpy())) if (xx, yy) != (x, y)}
            assert rest <= allowed, (s, j, rest)
            if rest:
                moved += 1
                mirrored += (int(g[s, flip[j], 0]), int(g[s, flip[j], 1])) in rest
                assert 0.25 <= 1 - float(m[y, x]) <= 0.75  # the true peak keeps 1 - lam
                assert abs(float(m.sum()) - 1.0) < 1e-6
    assert moved >= g.shape[1]  # the other person is 15+ cells away: always a candidate
    assert 0 < mirrored < moved  # person 0's mirrored joints are 8 cells away: sometimes chosen
    assert torch.equal(maps, _peaks(g))  # the input is left alone


def test_nothing_changes_at_prob_zero_or_without_a_candidate():
    g = _scene()
    maps = _peaks(g)
    flip = COCO17.flip_permutation()
    present = torch.ones(1, 2, g.shape[1], dtype=torch.bool)
    out = add_distractors(maps, torch.from_numpy(g[None]).float(), present, 0.0, flip, np.random.default_rng(0))
    assert torch.equal(out, maps)
    # One person, joints one cell apart (mirrored joints closer than min_shift): no candidate.
    one = present.clone()
    one[0, 1] = False
    out = add_distractors(maps, torch.from_numpy(g[None]).float(), one, 1.0, flip, np.random.default_rng(0),
                          min_shift=20)
    assert torch.equal(out, maps)


def test_a_shift_past_the_border_does_not_wrap_around():
    maps = torch.zeros(1, 2, 1, H, W)
    maps[0, 0, 0, 0, 30] = maps[0, 1, 0, 0, 2] = 1.0  # person 0 at x = 30; person 1 at x = 2
    g = torch.tensor([[[[30.0, 0.0]], [[2.0, 0.0]]]])
    present = torch.ones(1, 2, 1, dtype=torch.bool)
    out = add_distractors(maps, g, present, 1.0, np.arange(1), np.random.default_rng(1))
    assert float(out[0, 0, 0, 0, 2]) > 0.2  # moved 28 cells left onto person 1's joint
    assert float(out[0, 0, 0].sum()) <= 1.0 + 1e-6
