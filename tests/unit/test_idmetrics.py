"""IDF1 / IDP / IDR and keypoint HOTA on cases computed by hand, and ``corrtrack eval --id-metrics``."""
from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

from corrtrack.errors import CorrtrackError
from corrtrack.eval import combine_id_metrics, evaluate, evaluate_id_metrics
from corrtrack.eval.idmetrics import ALPHAS, SIM_SCALE
from corrtrack.io.posetrack import write_posetrack
from corrtrack.layouts import POSEVAL15
from corrtrack.structures import DETECTED, GROUND_TRUTH, FrameInfo, Poses, PoseSequence

HEAD = [0.0, 0.0, 100.0, 100.0]
HEAD_SIZE = 0.6 * math.hypot(100, 100)  # 84.85 px: PCKh match within 42.4 px


def people(xs, ids, gt=False, dx=0.0) -> Poses:
    """People with all 15 joints in a row starting at (x + dx, 200)."""
    n = len(xs)
    kp = np.zeros((n, 15, 3))
    for i, x in enumerate(xs):
        kp[i, :, 0] = x + dx + 3 * np.arange(15)
        kp[i, :, 1] = 200
        kp[i, :, 2] = 1.0
    return Poses(kp, POSEVAL15, track_ids=ids, origin=np.full(n, GROUND_TRUTH if gt else DETECTED),
                 head_boxes=np.tile(HEAD, (n, 1)) if gt else None)


def seq(name, frames, regions=None) -> PoseSequence:
    info = [FrameInfo(index=i, ignore_regions=(regions or {}).get(i, [])) for i in range(len(frames))]
    return PoseSequence(name, info, frames)


def two_people(n=10):
    return seq("s", [people([100, 400], [0, 1], gt=True) for _ in range(n)])


def offset_for(sim: float) -> float:
    """Pixels of offset that give a joint similarity ``sim`` against the GT above."""
    return (1 - sim) * SIM_SCALE * HEAD_SIZE


def test_perfect_tracking():
    gt = two_people()
    pred = seq("s", [people([100, 400], [7, 3]) for _ in range(10)])
    r = evaluate_id_metrics([gt], [pred])
    assert (r.id.IDF1, r.id.IDP, r.id.IDR) == (100, 100, 100)
    assert r.id.totals() == {"idtp": 2 * 10 * 15, "idfp": 0, "idfn": 0}
    assert r.hota.HOTA == pytest.approx(100) and r.hota.DetA == pytest.approx(100)
    assert r.hota.AssA == pytest.approx(100) and r.hota.LocA == pytest.approx(100)
    d = r.to_dict()
    assert d["IDF1"] == 100 and d["HOTA"] == pytest.approx(100) and d["hota_per_joint"]["nose"] == pytest.approx(100)
    json.dumps(d)


def test_id_swap_after_three_of_ten_frames():
    # A is predicted as 1 in frames 0-2 and as 2 in frames 3-9; B the other way round.
    # IDF1: best one-to-one mapping A<->2, B<->1 explains 7 + 7 of 20 joint detections per joint
    # -> IDTP 14, IDFP 6, IDFN 6, IDF1 = 28 / 40 = 70 %.
    gt = two_people()
    pred = seq("s", [people([100, 400], [1, 2] if t < 3 else [2, 1]) for t in range(10)])
    r = evaluate_id_metrics([gt], [pred])
    assert r.id.IDF1 == pytest.approx(70) and r.id.IDP == pytest.approx(70) and r.id.IDR == pytest.approx(70)
    assert r.id.totals() == {"idtp": 14 * 15, "idfp": 6 * 15, "idfn": 6 * 15}
    assert r.id.per_joint()["IDF1"]["left_knee"] == pytest.approx(70)
    # HOTA: every joint is detected exactly (DetA 1 at all alphas); association counts
    # 3, A-2: 7, B-2: 3, B-1: 7, each id 10 frames -> Ass-IoU 3/17 and 7/13,
    # AssA = (3 * 3/17 + 7 * 7/13) * 2 / 20 at every alpha.
    ass = (3 * 3 / 17 + 7 * 7 / 13) * 2 / 20
    assert r.hota.DetA == pytest.approx(100)
    assert r.hota.AssA == pytest.approx(100 * ass)
    assert r.hota.HOTA == pytest.approx(100 * math.sqrt(ass))
    # the same swap is 2 ID switches per joint for MOTA
    assert evaluate([gt], [pred]).mot.totals()["num_switches"] == 2 * 15


def test_hota_constant_offset_and_switch():
    # One GT track over 4 frames; the prediction is off by a constant offset (joint similarity
    # s = 0.62) and changes id after frame 1. For alpha <= 0.62 (0.05..0.60: 12 of 19 alphas)
    # every joint matches: DetA 1, AssA = (2 * 2/4 + 2 * 2/4) / 4 = 1/2, HOTA = sqrt(1/2);
    # above, nothing matches: DetA = AssA = HOTA = 0 and LocA 1 (TrackEval's value without matches).
    s = 0.62
    gt = seq("s", [people([100], [0], gt=True) for _ in range(4)])
    pred = seq("s", [people([100], [1 if t < 2 else 2], dx=offset_for(s)) for t in range(4)])
    r = evaluate_id_metrics([gt], [pred])
    n = int(np.sum(ALPHAS <= s))
    assert n == 12
    assert r.hota.DetA == pytest.approx(100 * n / 19)
    assert r.hota.AssA == pytest.approx(100 * 0.5 * n / 19)
    assert r.hota.HOTA == pytest.approx(100 * math.sqrt(0.5) * n / 19)
    assert r.hota.LocA == pytest.approx(100 * (n * s + (19 - n)) / 19)
    d = r.to_dict()
    assert d["HOTA(0)"] == pytest.approx(100 * math.sqrt(0.5))
    assert d["hota_per_alpha"]["0.60"] == pytest.approx(100 * math.sqrt(0.5)) and d["hota_per_alpha"]["0.65"] == 0
    # IDF1: within PCKh 0.5, so every joint pairs; one id explains 2 of 4 frames -> 2 * 2 / (4 + 4) = 50 %
    assert r.id.IDF1 == pytest.approx(50)


def test_frame_without_predictions_counts_its_own_misses():
    # Prediction exact in frames 0-2, nothing in frame 3: per joint and alpha TP 3, FN 1, FP 0
    # -> DetA 3/4; association 3 of (4 + 3 - 3) -> AssA 3/4; HOTA 3/4.
    gt = seq("s", [people([100], [0], gt=True) for _ in range(4)])
    pred = seq("s", [people([100], [5]) for _ in range(3)] + [Poses.empty(POSEVAL15)])
    r = evaluate_id_metrics([gt], [pred])
    assert r.hota.DetA == pytest.approx(75) and r.hota.AssA == pytest.approx(75) and r.hota.HOTA == pytest.approx(75)
    assert r.hota.counts() == {"HOTA_TP": 3 * 15, "HOTA_FN": 15, "HOTA_FP": 0}
    # IDTP 3, IDFN 1, IDFP 0
    assert r.id.IDR == pytest.approx(75) and r.id.IDP == pytest.approx(100)
    assert r.id.IDF1 == pytest.approx(100 * 6 / 7)


def test_sequences_combine_like_posetrack21():
    # seq a perfect (4 frames), seq b as above: counts are pooled (TP 7, FN 1 -> DetA 7/8),
    # AssA is weighted by TP ((4 * 1 + 3 * 3/4) / 7).
    gt_a = seq("a", [people([100], [0], gt=True) for _ in range(4)])
    gt_b = seq("b", [people([100], [0], gt=True) for _ in range(4)])
    pr_a = seq("a", [people([100], [0]) for _ in range(4)])
    pr_b = seq("b", [people([100], [0]) for _ in range(3)] + [Poses.empty(POSEVAL15)])
    r = evaluate_id_metrics([gt_a, gt_b], [pr_a, pr_b], per_sequence=True)
    det, ass = 7 / 8, (4 + 3 * 0.75) / 7
    assert r.hota.DetA == pytest.approx(100 * det) and r.hota.AssA == pytest.approx(100 * ass)
    assert r.hota.HOTA == pytest.approx(100 * math.sqrt(det * ass))
    assert r.per_sequence["a"]["hota"].HOTA == pytest.approx(100)
    assert r.per_sequence["b"]["hota"].HOTA == pytest.approx(75)
    assert r.per_sequence["b"]["id"].IDF1 == pytest.approx(100 * 6 / 7)
    assert set(r.to_dict()["per_sequence"]) == {"a", "b"}
    # evaluating the sequences one by one and combining gives the same numbers
    c = combine_id_metrics([evaluate_id_metrics([gt_a], [pr_a]), evaluate_id_metrics([gt_b], [pr_b])])
    assert c.hota.HOTA == pytest.approx(r.hota.HOTA) and c.hota.LocA == pytest.approx(r.hota.LocA)
    assert c.id.totals() == r.id.totals()
    for k, v in r.hota.arrays.items():
        np.testing.assert_allclose(c.hota.arrays[k], v, err_msg=k)


def test_ignore_region_removes_people_inside():
    # A second GT person and a stray prediction inside an ignore region do not count.
    square = [np.array([[500, 150], [800, 150], [800, 250], [500, 250]], float)]
    gt = seq("s", [people([100, 600], [0, 1], gt=True) for _ in range(3)], regions={t: square for t in range(3)})
    pred = seq("s", [people([100, 650], [0, 1]) for _ in range(3)])
    r = evaluate_id_metrics([gt], [pred])
    assert r.hota.HOTA == pytest.approx(100) and r.id.IDF1 == pytest.approx(100)


def test_false_positive_track_lowers_precision():
    # An extra predicted person far from everyone in all 4 frames: IDP 1/2, IDR 1;
    # HOTA: TP 4, FP 4 -> DetA 1/2, AssA 1 -> HOTA sqrt(1/2).
    gt = seq("s", [people([100], [0], gt=True) for _ in range(4)])
    pred = seq("s", [people([100, 600], [0, 1]) for _ in range(4)])
    r = evaluate_id_metrics([gt], [pred])
    assert r.id.IDP == pytest.approx(50) and r.id.IDR == pytest.approx(100)
    assert r.hota.DetA == pytest.approx(50) and r.hota.AssA == pytest.approx(100)
    assert r.hota.HOTA == pytest.approx(100 * math.sqrt(0.5))


def test_bad_input():
    gt = seq("s", [people([100], [0], gt=True) for _ in range(3)])
    no_ids = seq("s", [people([100], [-1]) for _ in range(3)])
    with pytest.raises(CorrtrackError, match="no track_id"):
        evaluate_id_metrics([gt], [no_ids])
    dup = seq("s", [people([100, 300], [4, 4]) for _ in range(3)])
    with pytest.raises(CorrtrackError, match="used twice"):
        evaluate_id_metrics([gt], [dup])
    with pytest.raises(CorrtrackError, match="frames"):
        evaluate_id_metrics([gt], [seq("s", [people([100], [0])])])
    with pytest.raises(CorrtrackError, match="2 ground-truth sequences but 1"):
        evaluate_id_metrics([gt, gt], [gt])


def test_cli_id_metrics(tmp_path, monkeypatch, capsys):
    from corrtrack.cli import main

    gt = two_people(6)
    pred = seq("s", [people([100, 400], [1, 2] if t < 3 else [2, 1]) for t in range(6)])
    write_posetrack(tmp_path / "gt" / "s.json", gt, ground_truth=True)
    write_posetrack(tmp_path / "pred" / "s.json", pred)
    out = tmp_path / "r.json"
    monkeypatch.setattr(sys, "argv", ["corrtrack", "eval", str(tmp_path / "gt"), str(tmp_path / "pred"),
                                      "--id-metrics", "--per-sequence", "--json", str(out)])
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code
    text = capsys.readouterr()
    assert code in (0, None), text.err
    assert "IDF1" in text.out and "HOTA" in text.out
    d = json.loads(out.read_text())
    # 3 of 6 frames each way: IDF1 50 %; MOTA and mAP are still there
    assert d["IDF1"] == pytest.approx(50) and d["MOTA"] is not None and 0 < d["HOTA"] < 100
    assert d["per_sequence"]["s"]["IDF1"] == pytest.approx(50) and "MOTA" in d["per_sequence"]["s"]
