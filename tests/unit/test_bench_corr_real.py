"""benchmarks/bench_corr.py: set (c)'s frames and identities, and set (b)'s failure modes."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_corr.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_corr", _PATH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the file executes
    spec.loader.exec_module(mod)
    return mod


def test_anchors_avoid_training_frames(bench):
    a = bench.real_anchors(795, 48)
    assert len(a) == 48 and a == sorted(set(a))
    for x in a:
        assert x + 10 < 795 and all((x + d) % 4 for d in (0, 1, 5, 10))
    assert a[0] < 20 and a[-1] > 770  # spread over the whole video
    # Short videos give what fits: a 5-frame source only a gap-1 pair from frame 1 (0 and 4 were trained on).
    assert bench.real_anchors(5, 48) == [1]
    short = bench.real_anchors(8, 48)
    assert short == [1, 5] and all((x + g) % 4 for x in short for g in (1, 5) if x + g < 8)
    assert bench.real_anchors(30, 100) == [1, 5, 9, 13, 17]


def _box(cx, cy, w=40, h=100):
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def test_unambiguous_matches(bench):
    m = bench.unambiguous_matches
    diag = np.hypot(40, 100)  # 107.7
    one = np.array([_box(100, 100)])
    assert m(one, [0.9], np.array([_box(120, 100)]), [0.8]) == [(0, 0)]  # one person in view
    # Moved more than 0.75 diagonals: not trusted to be the same person.
    assert m(one, [0.9], np.array([_box(100 + 0.8 * diag, 100)]), [0.8]) == []
    # A low-confidence subject is not scored (but still a neighbour of others).
    assert m(one, [0.45], np.array([_box(100, 100)]), [0.9]) == []
    two_far = np.array([_box(100, 100), _box(100 + 1.6 * diag, 100)])
    assert m(two_far, [0.9, 0.9], two_far, [0.9, 0.9]) == [(0, 0), (1, 1)]
    two_near = np.array([_box(100, 100), _box(100 + 1.4 * diag, 100)])
    assert m(two_near, [0.9, 0.9], two_near, [0.9, 0.9]) == []
    # Far apart in frame a but a neighbour close in frame b: ambiguous there, so not scored.
    b = np.array([_box(100, 100), _box(100 + diag, 100), _box(100 + 3 * diag, 100)])
    a = np.array([_box(100, 100), _box(100 + 3 * diag, 100)])
    assert m(a, [0.9, 0.9], b, [0.9, 0.41, 0.9]) == [(1, 2)]
    assert m(a, [0.9, 0.9], np.zeros((0, 4)), []) == []


def test_paired_bootstrap(bench):
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 10)
    h = rng.random(400) < 0.8
    assert bench.paired_bootstrap(h, h, groups) == (0.0, 0.0, 0.0)
    better = h | (rng.random(400) < 0.5)
    d, lo, hi = bench.paired_bootstrap(better, h, groups)
    assert d > 0 and 0 < lo < d < hi
    # A gain on whole people (all 10 joints of 10 of the 40) is less evidence than the same gain on
    # 100 independent joints: the interval over people must be wider than one over joints.
    gain = groups < 10
    none = np.zeros(400, bool)
    d_p, lo_p, hi_p = bench.paired_bootstrap(gain, none, groups)
    d_j, lo_j, hi_j = bench.paired_bootstrap(gain, none, np.arange(400))
    assert d_p == d_j == 25.0 and hi_p - lo_p > 1.5 * (hi_j - lo_j)


def test_failure_modes_name_the_first_fitting_mode(bench):
    flip = np.arange(4)
    flip[[0, 1]] = [1, 0]  # joints 0 and 1 are a left/right pair
    truth = np.zeros((2, 4, 3))
    truth[0, :, :2] = [[0, 0], [50, 0], [0, 50], [50, 50]]
    truth[1, :, :2] = [[300, 0], [350, 0], [300, 50], [350, 50]]
    truth[..., 2] = 1
    truth[1, 3, 2] = 0  # hidden in b: no mode
    side = np.array([100.0, 100.0])
    pred = truth[..., :2].copy()
    pred[0, 0] = [5, 5]        # 0.07 of the box: correct
    pred[0, 1] = [2, 1]        # on its own mirrored joint (0)
    pred[0, 2] = [301, 49]     # on the other person's joint 2
    pred[0, 3] = [50, 65]      # 0.15 of the box away
    pred[1, 0] = [349, 2]      # on own joint 1, which is its mirror: mirrored wins over "another own joint"
    pred[1, 1] = [301, 51]     # on own joint 2
    pred[1, 2] = [600, 600]    # nowhere
    modes = bench.failure_modes(pred, truth, side, flip)
    names = [[bench.FAILURE_MODES[m] if m >= 0 else None for m in row] for row in modes]
    assert names == [["correct", "own mirrored joint", "on another person", "0.1-0.2 of the box away"],
                     ["own mirrored joint", "on another own joint", "elsewhere", None]]
    # A hidden joint of another person is not a confusion target.
    truth[1, 2, 2] = 0
    assert bench.FAILURE_MODES[bench.failure_modes(pred, truth, side, flip)[0, 2]] == "elsewhere"


def test_truth_in_top_peaks_counts_only_real_peaks(bench):
    import torch
    from corrtrack.models.corr_codec import Letterbox, grid_to_image

    lb = Letterbox.fit(64, 64, 64)
    maps = torch.zeros((1, 2, 16, 16))
    maps[0, 0, 2, 3], maps[0, 0, 10, 12], maps[0, 0, 5, 5] = 0.5, 0.3, 0.1  # three peaks: (x, y) = (3, 2) ...
    maps[0, 0, 14, 1] = 0.05  # a fourth, lower peak
    maps[0, 1, 8, 8] = 0.9
    side = np.array([40.0])
    at = lambda x, y: grid_to_image(np.array([x, y], float), lb, 4)  # noqa: E731
    truth = np.stack([at(12, 10), at(1, 14)])[None]  # joint 0 on its 2nd peak; joint 1 far from its only peak
    assert bench.truth_in_top_peaks(maps, truth, side, lb, 4).tolist() == [[True, False]]
    truth[0, 0] = at(1, 14)  # the 4th peak is not among the top 3
    assert bench.truth_in_top_peaks(maps, truth, side, lb, 4).tolist() == [[False, False]]
    truth[0, 1] = at(0, 0)  # zero map values are not peaks, even where the map is flat
    assert not bench.truth_in_top_peaks(maps, truth, side, lb, 4)[0, 1]


def test_failure_mode_table_has_one_column_per_mode(bench, capsys):
    modes = {("m", 5): [0, 0, 2, 5], ("m", 10): [1, 3]}
    bench.print_failure_modes(["m"], modes, (5, 10))
    lines = capsys.readouterr().out.splitlines()
    widths = {line.count("|") for line in lines}
    assert len(lines) == 4 and widths == {len(bench.FAILURE_MODES) + 2}  # method, gap, the misses
    assert lines[2] == "| m | 5 | 0.0 | 25.0 | 0.0 | 0.0 | 25.0 |"
    bench.print_failure_modes(["m"], modes, (5,), top3={("m", 5): [True, False]})
    lines = capsys.readouterr().out.splitlines()
    assert {line.count("|") for line in lines} == {len(bench.FAILURE_MODES) + 3} and lines[2].endswith(" 50.0 |")
