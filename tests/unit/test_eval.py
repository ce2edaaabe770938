"""The PoseTrack evaluator on small hand-made cases, and ``corrtrack eval``."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from corrtrack.errors import CorrtrackError
from corrtrack.eval import JOINTS, evaluate
from corrtrack.io.posetrack import write_posetrack
from corrtrack.layouts import POSEVAL15
from corrtrack.structures import DETECTED, GROUND_TRUTH, FrameInfo, Poses, PoseSequence

NOSE = POSEVAL15.index("nose")
HEAD = [0.0, 0.0, 100.0, 100.0]  # head size 0.6 * 141.42 = 84.85 px -> match within 42.4 px


def people(noses, ids, scores=None, gt=False, all_joints=False) -> Poses:
    """People with only a nose (or all 15 joints around it) at the given points."""
    n = len(noses)
    kp = np.zeros((n, 15, 3))
    for i, (x, y) in enumerate(noses):
        if all_joints:
            kp[i, :, 0] = x + np.arange(15)
            kp[i, :, 1] = y
            kp[i, :, 2] = 1.0 if scores is None else scores[i]
        else:
            kp[i, NOSE] = [x, y, 1.0 if scores is None else scores[i]]
    return Poses(kp, POSEVAL15, track_ids=ids, origin=np.full(n, GROUND_TRUTH if gt else DETECTED),
                 head_boxes=np.tile(HEAD, (n, 1)) if gt else None)


def seq(name, frames, regions=None) -> PoseSequence:
    info = [FrameInfo(index=i, ignore_regions=(regions or {}).get(i, [])) for i in range(len(frames))]
    return PoseSequence(name, info, frames)


def test_ap_by_hand():
    # frame 0: GT A (100,100), B (300,100); predictions: A+5 px (0.9), far away (0.8), B+2 px (0.7)
    # frame 1: GT C, no prediction.  Ranked: TP, FP, TP of 3 GT ->
    # precision 1, 1/2, 2/3 at recall 1/3, 1/3, 2/3 -> AP = 1/3 * 1 + 1/3 * 2/3 = 5/9
    gt = seq("s", [people([(100, 100), (300, 100)], [0, 1], gt=True), people([(100, 100)], [0], gt=True)])
    pr = seq("s", [people([(105, 100), (400, 100), (302, 100)], [0, 1, 2], scores=[0.9, 0.8, 0.7]),
                   Poses.empty(POSEVAL15)])
    r = evaluate([gt], [pr], tracking=False)
    assert r.ap.ap["nose"] == pytest.approx(500 / 9)
    assert r.ap.precision["nose"] == pytest.approx(200 / 3) and r.ap.recall["nose"] == pytest.approx(200 / 3)
    # joints without GT and without predictions score AP 0 and still count in the mean (as in poseval)
    assert r.ap.ap["head_top"] == 0
    assert r.ap.mAP == pytest.approx(500 / 9 / 15)
    assert r.ap.num_gt["nose"] == 3


def test_each_gt_keeps_its_best_prediction():
    # two predictions on the same GT: the one with the better PCKh is assigned, the other is a FP
    gt = seq("s", [people([(100, 100)], [0], gt=True, all_joints=True)])
    pr = people([(100, 100), (100, 100)], [0, 1], scores=[0.5, 0.9], all_joints=True)
    pr.keypoints[1, :8, 0] += 100  # the second is right on only 7 of 15 joints, but scores higher
    r = evaluate([gt], [seq("s", [pr])], tracking=False)
    # per joint j < 8: FP at 0.9 ranked before TP at 0.5 -> AP 50; j >= 8: the second is also
    # unassigned, so again FP(0.9) then TP(0.5) -> 50
    assert all(v == pytest.approx(50.0) for v in r.ap.ap.values())


def test_missing_scores_rank_last():
    # a prediction without per-joint scores gets poseval's -9999, below any real score
    gt = seq("s", [people([(100, 100), (300, 100)], [0, 1], gt=True)])
    pr = people([(100, 100), (600, 100)], [0, 1], scores=[0.5, -3.0])
    pr.origin[0] = GROUND_TRUTH  # "no scores": ranked below the FP at -3
    r = evaluate([gt], [seq("s", [pr])], tracking=False)
    # ranked: FP(-3), TP(-9999) of 2 GT -> AP = 1/2 * 1/2
    assert r.ap.ap["nose"] == pytest.approx(25.0)


def _swap_sequence(swap_at: int, n: int = 4):
    gt = seq("s", [people([(100, 100), (300, 100)], [0, 1], gt=True) for _ in range(n)])
    frames = []
    for t in range(n):
        ids = [1, 0] if t >= swap_at else [0, 1]
        frames.append(people([(101, 100), (301, 100)], [10 + ids[0], 10 + ids[1]], scores=[0.9, 0.9]))
    return gt, seq("s", frames)


def test_idsw_on_hand_made_swap():
    gt, pr = _swap_sequence(swap_at=2)
    r = evaluate([gt], [pr])
    m = r.mot
    # frames 0..2 are evaluated (the last frame is left out); both noses switch at frame 2
    assert m.counts["num_switches"]["nose"] == 2
    assert m.counts["num_objects"]["nose"] == 6 and m.counts["num_detections"]["nose"] == 6
    assert m.mota["nose"] == pytest.approx(100 * (1 - 2 / 6))
    assert m.MOTA == pytest.approx(100 * (1 - 2 / 6))  # joints without GT are left out
    assert m.precision["nose"] == 100 and m.recall["nose"] == 100
    assert np.isnan(m.mota["head_top"])
    assert m.totals()["num_switches"] == 2


def test_last_frame_is_not_tracked():
    gt, pr = _swap_sequence(swap_at=3)  # the swap happens only in the last frame
    assert evaluate([gt], [pr]).mot.totals()["num_switches"] == 0


def test_motp_counts_raw_distances_twice():
    # poseval sums D over all motmetrics events: each match counts twice, and
    # an unmatched pair within the threshold once
    gt = seq("s", [people([(100, 100), (130, 100)], [0, 1], gt=True) for _ in range(2)])
    pr = seq("s", [people([(100, 100), (130 + 8.485, 100)], [0, 1], scores=[1, 1]) for _ in range(2)])
    m = evaluate([gt], [pr]).mot
    h = 0.6 * np.hypot(100, 100)
    pairs = [0, 30 / h, (30 + 8.485) / h, 8.485 / h]  # the 4 pairs within 0.5 head sizes
    d = 2 * (0 + 8.485 / h) + 30 / h + (30 + 8.485) / h
    assert all(p <= 0.5 for p in pairs)
    assert m.sum_distances["nose"] == pytest.approx(sum(pairs) + (0 + 8.485 / h))
    assert m.sum_distances["nose"] == pytest.approx(d)
    assert m.motp["nose"] == pytest.approx(100 * (1 - d / 2))


def test_frame_without_prediction_counts_one_fake_object_per_joint():
    gt = seq("s", [people([(100, 100), (300, 100)], [0, 1], gt=True) for _ in range(3)])
    frames = [people([(100, 100), (300, 100)], [0, 1], scores=[1, 1]) for _ in range(3)]
    frames[1] = Poses.empty(POSEVAL15)
    m = evaluate([gt], [seq("s", frames)]).mot
    # frame 1: not 2 misses but 1 miss + 1 FP, for every joint (even those nobody has)
    assert m.counts["num_objects"]["nose"] == 3 and m.counts["num_misses"]["nose"] == 1
    assert m.counts["num_false_positives"]["nose"] == 1
    assert m.counts["num_objects"]["head_top"] == 1 and m.mota["head_top"] == pytest.approx(-100)


def test_ignore_regions():
    square = np.array([[250, 50], [350, 50], [350, 150], [250, 150]], float)
    gt = people([(100, 100), (300, 100)], [0, 1], gt=True)
    pr = people([(100, 100), (310, 110), (320, 80)], [0, 1, 2], scores=[0.9, 0.8, 0.7])
    plain = evaluate([seq("s", [gt])], [seq("s", [pr])], tracking=False)
    assert plain.ap.ap["nose"] == 100  # TP, TP, then FP (B keeps the first of two equal matches)
    assert plain.ap.num_gt["nose"] == 2
    r = evaluate([seq("s", [gt], {0: [square]})], [seq("s", [pr], {0: [square]})], tracking=False)
    # GT B and both predictions near it are inside the region: gone, not missed and not FP
    assert r.ap.num_gt["nose"] == 1 and r.ap.ap["nose"] == 100
    assert r.stats["gt_poses"] == 1 and r.stats["predicted_poses"] == 1
    # a point on the border is not "inside" (shapely contains)
    edge = people([(250, 100)], [5], gt=True)
    r = evaluate([seq("s", [edge], {0: [square]})], [seq("s", [edge])], tracking=False)
    assert r.ap.num_gt["nose"] == 1


def test_unlabeled_frames_and_pairing_by_position():
    gt = seq("s", [people([(100, 100)], [0], gt=True), Poses.empty(POSEVAL15), people([(100, 100)], [0], gt=True)])
    # a prediction in the GT frame without people is not evaluated at all
    pr = seq("s", [people([(100, 100)], [0]), people([(500, 500)], [0]), people([(100, 100)], [0])])
    r = evaluate([gt], [pr])
    assert r.stats["evaluated_frames"] == 2 and r.ap.ap["nose"] == 100 and r.mot.MOTA == 100
    with pytest.raises(CorrtrackError, match="paired by position"):
        evaluate([gt], [seq("s", pr.poses[:2])])


def test_tracking_needs_two_frames_and_ids():
    gt = seq("one", [people([(100, 100)], [0], gt=True)])
    pr = seq("one", [people([(100, 100)], [0])])
    assert evaluate([gt], [pr], tracking=False).ap.mAP == pytest.approx(100 / 15)
    with pytest.raises(CorrtrackError, match="only one labeled frame"):
        evaluate([gt], [pr])
    gt2 = seq("two", [people([(100, 100)], [0], gt=True)] * 2)
    with pytest.raises(CorrtrackError, match="no track_id"):
        evaluate([gt2], [seq("two", [people([(100, 100)], [-1])] * 2)])
    with pytest.raises(CorrtrackError, match="twice"):
        evaluate([gt2], [seq("two", [people([(100, 100), (200, 100)], [3, 3])] * 2)])


def test_to_dict_is_json(tmp_path):
    gt, pr = _swap_sequence(swap_at=1)
    d = evaluate([gt], [pr], per_sequence=True).to_dict()
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text)["counts_total"]["num_switches"] == 2
    assert set(d["ap_per_joint"]) == set(JOINTS) and "s" in d["per_sequence"]


# -- the command line --------------------------------------------------------------------


def _write_case(root, names=("a_seq", "b_seq")):
    gt_dir, pr_dir = root / "gt", root / "pred"
    for name in names:
        gt, pr = _swap_sequence(swap_at=2)
        gt.name = pr.name = name
        write_posetrack(gt_dir / f"{name}.json", gt, ground_truth=True)
        write_posetrack(pr_dir / f"{name}.json", pr)
    return gt_dir, pr_dir


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    from corrtrack.cli import main

    monkeypatch.setattr(sys, "argv", ["corrtrack", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_eval(tmp_path, monkeypatch, capsys):
    gt_dir, pr_dir = _write_case(tmp_path)
    code, out, err = run_cli(monkeypatch, capsys, "eval", gt_dir, pr_dir, "--json", tmp_path / "r.json",
                             "--per-sequence")
    assert code == 0, err
    assert "MOTA" in out and "IDSW 4" in out and "a_seq" in out
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["counts_total"]["num_switches"] == 4 and d["mAP"] == pytest.approx(100 / 15)
    code, out, _ = run_cli(monkeypatch, capsys, "eval", gt_dir, pr_dir, "--no-tracking")
    assert code == 0 and "MOTA" not in out


@pytest.mark.parametrize("problem", ["no_gt_dir", "not_posetrack", "extra_pred", "missing_pred", "one_frame"])
def test_cli_eval_bad_input(tmp_path, monkeypatch, capsys, problem):
    gt_dir, pr_dir = _write_case(tmp_path)
    culprit = None
    if problem == "no_gt_dir":
        gt_dir = culprit = tmp_path / "nothing"
    elif problem == "not_posetrack":
        culprit = pr_dir / "a_seq.json"
        culprit.write_text('{"hello": "world"}')
    elif problem == "extra_pred":
        culprit = pr_dir / "c_seq.json"
        (pr_dir / "a_seq.json").rename(culprit)
        (gt_dir / "a_seq.json").unlink()
    elif problem == "missing_pred":
        culprit = pr_dir / "b_seq.json"
        culprit.unlink()
    elif problem == "one_frame":
        culprit = gt_dir / "a_seq.json"
        g = json.loads(culprit.read_text())
        g["annotations"] = [a for a in g["annotations"] if a["image_id"] == g["images"][0]["id"]]
        culprit.write_text(json.dumps(g))
    code, out, err = run_cli(monkeypatch, capsys, "eval", gt_dir, pr_dir)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(culprit) in lines[0] and "Traceback" not in err, err
