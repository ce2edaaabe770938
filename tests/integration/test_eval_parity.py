"""Parity of ``corrtrack.eval`` with the official PoseTrack evaluator, run live.

The reference (``shared/tools/poseval_ref``: the official poseval, pinned
environment) is copied to ``.cache/poseval_ref`` (``shared`` may be read-only)
and set up once (its own venv from PyPI). Then, for

* every fixture of the reference (each ``pred_*`` and GT against GT; the real
  one-frame mmpose files against themselves, AP only),
* the same GT and predictions converted to PoseTrack 2017 by poseval's converter,
* 24 random perturbations generated here with the reference's ``perturb.py``
  (seeds, drop rates, id swaps, jitter, false positives) plus edits it cannot
  make (missing scores, empty prediction frames, an empty prediction file,
  shuffled ids and person order, near duplicates, visibility 0 on predicted and
  GT joints, a GT frame emptied by an ignore region), batched into one
  reference run as separate sequences,

our per-joint AP, mAP, per-joint MOTA, MOTA, MOTP, precision, recall (within
0.1 points) and IDSW / miss / FP / object / match counts (exactly) must equal
the reference's, in total and per sequence.
"""
from __future__ import annotations

import copy
import json
import os
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest

from corrtrack.errors import CorrtrackError
from corrtrack.eval import JOINTS, evaluate
from corrtrack.io.posetrack import read_posetrack
from poseval_ref import run_reference

pytestmark = pytest.mark.integration

TOL = 0.1  # points
COUNTS = ("num_switches", "num_misses", "num_false_positives", "num_objects", "num_detections")
FIXTURE_PREDS = ("gt", "pred_jitter3", "pred_drop20", "pred_swap", "pred_perturbed", "pred_all_fp")


# -- comparison ----------------------------------------------------------------------------


def _close(ours: float | None, ref: float, what: str, errors: list[str]) -> None:
    ours = np.nan if ours is None else ours
    if np.isnan(ref) and np.isnan(ours):
        return
    if not abs(ours - ref) <= TOL:
        errors.append(f"{what}: ours {ours} vs official {ref}")


def _compare_ap(ap, ref_ap: dict, where: str, errors: list[str]) -> None:
    for j, name in enumerate(JOINTS):
        _close(ap.ap[name], ref_ap["ap"][j], f"{where} AP {name}", errors)
        _close(ap.precision[name], ref_ap["pre"][j], f"{where} AP-precision {name}", errors)
        _close(ap.recall[name], ref_ap["rec"][j], f"{where} AP-recall {name}", errors)
    _close(ap.mAP, ref_ap["ap"][15], f"{where} mAP", errors)


def _compare_mot(mot, ref_mot: dict, where: str, errors: list[str]) -> None:
    for j, name in enumerate(JOINTS):
        _close(mot.mota[name], ref_mot["mota"][j], f"{where} MOTA {name}", errors)
        _close(mot.motp[name], ref_mot["motp"][j], f"{where} MOTP {name}", errors)
        _close(mot.precision[name], ref_mot["pre"][j], f"{where} Prec {name}", errors)
        _close(mot.recall[name], ref_mot["rec"][j], f"{where} Rec {name}", errors)
        for c in COUNTS:
            if mot.counts[c][name] != ref_mot[c][j]:
                errors.append(f"{where} {c} {name}: ours {mot.counts[c][name]} vs official {ref_mot[c][j]}")
    for key, ours in (("mota", mot.MOTA), ("motp", mot.MOTP), ("pre", mot.Prec), ("rec", mot.Rec)):
        _close(ours, ref_mot[key][15], f"{where} total {key}", errors)


def evaluate_like_reference(gt_dir: Path, pred_dir: Path, ref: dict, tracking: bool = True):
    names = ref["order"]
    gt = [read_posetrack(gt_dir / f"{n}.json") for n in names]
    pred = [read_posetrack(pred_dir / f"{n}.json") for n in names]
    return evaluate(gt, pred, tracking=tracking, per_sequence=True)


def compare(ours, ref: dict, label: str) -> None:
    errors: list[str] = []
    _compare_ap(ours.ap, ref["ap"], f"{label} total", errors)
    for name, r in ours.per_sequence.items():
        _compare_ap(r["ap"], ref["seq_ap"][name], f"{label} {name}", errors)
    assert set(ours.per_sequence) == set(ref["seq_ap"]), label
    if "mot" in ref:
        _compare_mot(ours.mot, ref["mot"], f"{label} total", errors)
        for name, r in ours.per_sequence.items():
            _compare_mot(r["mot"], ref["seq_mot"][name], f"{label} {name}", errors)
    assert not errors, f"{len(errors)} differences from the official evaluator:\n" + "\n".join(errors[:40])


# -- the fixtures ----------------------------------------------------------------------------


@pytest.mark.parametrize("pred", FIXTURE_PREDS)
def test_fixture_parity(poseval_ref, tmp_path, pred):
    fx = poseval_ref / "fixtures"
    ref = run_reference(poseval_ref, fx / "gt", fx / pred, tmp_path / "ref")
    ours = evaluate_like_reference(fx / "gt", fx / pred, ref)
    compare(ours, ref, pred)
    # the headline numbers of the reference's own summary.json
    s = ref["summary"]
    assert abs(ours.ap.mAP - s["mAP"]) <= TOL and abs(ours.mot.MOTA - s["MOTA"]) <= TOL
    assert ours.mot.totals() == s["counts_total"]
    if pred == "gt":
        assert ours.ap.mAP == 100 and ours.mot.MOTA == 100


def test_mmpose_one_frame_files_ap_parity(poseval_ref, tmp_path):
    fx = poseval_ref / "fixtures" / "mmpose_val"
    ref = run_reference(poseval_ref, fx, fx, tmp_path / "ref", ap_only=True)
    ours = evaluate_like_reference(fx, fx, ref, tracking=False)
    compare(ours, ref, "mmpose_val")
    assert ours.ap.mAP == 100
    with pytest.raises(CorrtrackError, match="only one labeled frame"):
        evaluate_like_reference(fx, fx, ref, tracking=True)


def test_posetrack17_format_parity(poseval_ref, tmp_path):
    """2017 files (made by poseval's own converter) read and score like the official."""
    fx = poseval_ref / "fixtures"
    py = str(poseval_ref / ".venv" / "bin" / "python")
    env = dict(os.environ, PYTHONPATH=str(poseval_ref / "src"))
    for name in ("gt", "pred_all_fp"):
        subprocess.run([py, "-m", "poseval.convert", str(fx / name), "--out_fp", str(tmp_path / name)],
                       check=True, capture_output=True, env=env, timeout=120)
    assert "annolist" in json.loads(next((tmp_path / "gt").glob("*.json")).read_text())
    ref = run_reference(poseval_ref, tmp_path / "gt", tmp_path / "pred_all_fp", tmp_path / "ref")
    ours = evaluate_like_reference(tmp_path / "gt", tmp_path / "pred_all_fp", ref)
    compare(ours, ref, "2017 pred_all_fp")


# -- random perturbations ----------------------------------------------------------------------

# (seed, perturb.py options, extra edit made here)
PERTURBATIONS = [
    (10, ["--jitter", "1"], None),
    (11, ["--jitter", "5"], None),
    (12, ["--jitter", "10"], None),
    (13, ["--jitter", "20"], None),
    (14, ["--drop", "0.1"], None),
    (15, ["--drop", "0.5"], None),
    (16, ["--drop", "0.9"], None),
    (17, ["--swap"], None),
    (18, ["--swap", "--jitter", "4"], None),
    (19, ["--fp", "0.3"], None),
    (20, ["--fp", "0.6", "--jitter", "2"], None),
    (21, ["--drop", "0.3", "--fp", "0.3", "--swap", "--jitter", "6"], None),
    (22, ["--drop", "0.2", "--jitter", "3"], "no_scores"),
    (23, ["--jitter", "3", "--fp", "0.2"], "half_no_scores"),
    (24, ["--drop", "0.1"], "empty_frames"),
    (25, ["--jitter", "2"], "empty_scores_lists"),
    (26, ["--jitter", "3"], "vis0_and_dropped_joints"),
    (27, ["--jitter", "3", "--fp", "0.5"], "shuffle_ids"),
    (28, [], "empty_file"),
    (29, ["--jitter", "3"], "gt_frame_ignored"),
    (30, ["--jitter", "4", "--drop", "0.3"], "shuffle_people"),
    (31, ["--jitter", "2"], "near_duplicates"),
    (32, ["--jitter", "3"], "exact_duplicates"),
    (33, ["--jitter", "2"], "gt_vis0"),
]


def _edit(kind: str | None, gt: dict, pred: dict, rng: random.Random) -> None:
    """Edits perturb.py cannot make (in place)."""
    anns = pred["annotations"]
    if kind == "no_scores":
        for a in anns:
            del a["scores"]
    elif kind == "half_no_scores":
        # the others get scores around 0 (some negative), so that -9999 ranks differently from 0
        for a in anns:
            if rng.random() < 0.5:
                del a["scores"]
            else:
                a["scores"] = [round(s - 0.75, 4) if s else 0.0 for s in a["scores"]]
    elif kind == "empty_scores_lists":
        for a in anns:
            if rng.random() < 0.3:
                a["scores"] = []
    elif kind == "empty_frames":
        ids = [im["id"] for im in pred["images"]]
        gone = {ids[2], ids[len(ids) // 2 + 1]}
        pred["annotations"] = [a for a in anns if a["image_id"] not in gone]
    elif kind == "empty_file":
        pred["annotations"] = []
    elif kind == "vis0_and_dropped_joints":
        for a in anns:
            kp = a["keypoints"]
            for j in range(0, len(kp), 3):
                if kp[j + 2] and rng.random() < 0.2:
                    kp[j + 2] = 0  # still predicted: x, y are not 0
                elif kp[j + 2] and rng.random() < 0.1:
                    kp[j:j + 3] = [0, 0, 0]
                    a["scores"][j // 3] = 0.0
    elif kind == "shuffle_ids":
        by_image: dict = {}
        for a in anns:
            by_image.setdefault(a["image_id"], []).append(a)
        for people in by_image.values():
            ids = [a["track_id"] for a in people]
            rng.shuffle(ids)
            for a, t in zip(people, ids):
                a["track_id"] = t
    elif kind == "shuffle_people":
        rng.shuffle(anns)
    elif kind in ("near_duplicates", "exact_duplicates"):
        next_id = 1 + max([a["track_id"] for a in anns] + [0])
        for a in list(anns):
            if rng.random() < 0.4:
                b = copy.deepcopy(a)
                b["track_id"] = next_id + a["track_id"]
                if kind == "near_duplicates":
                    for j in range(0, len(b["keypoints"]), 3):
                        if b["keypoints"][j + 2]:
                            b["keypoints"][j] += rng.gauss(0, 6)
                            b["keypoints"][j + 1] += rng.gauss(0, 6)
                    b["scores"] = [round(s * rng.uniform(0.6, 1.2), 4) for s in b["scores"]]
                anns.append(b)
    elif kind == "gt_frame_ignored":
        # an ignore region over the whole of frame 4: predictions there meet no GT
        im = gt["images"][4]
        im["ignore_regions_x"] = list(im.get("ignore_regions_x") or []) + [[-1, 5000, 5000, -1]]
        im["ignore_regions_y"] = list(im.get("ignore_regions_y") or []) + [[-1, -1, 5000, 5000]]
    elif kind == "gt_vis0":
        for a in gt["annotations"]:
            kp = a["keypoints"]
            for j in range(0, len(kp), 3):
                if kp[j + 2] and rng.random() < 0.15:
                    kp[j + 2] = 0  # still annotated for poseval: x, y are not 0
    elif kind is not None:
        raise ValueError(kind)


@pytest.fixture(scope="module")
def perturbed(poseval_ref, tmp_path_factory) -> tuple[Path, Path, dict]:
    """All perturbations as sequences of one GT/prediction folder pair, and the reference's results."""
    root = tmp_path_factory.mktemp("perturbed")
    gt_dir, pred_dir, work = root / "gt", root / "pred", root / "work"
    gt_dir.mkdir()
    pred_dir.mkdir()
    fx = poseval_ref / "fixtures" / "gt"
    py = str(poseval_ref / ".venv" / "bin" / "python")
    for k, (seed, opts, kind) in enumerate(PERTURBATIONS):
        out = work / f"c{k:02d}"
        subprocess.run([py, str(poseval_ref / "perturb.py"), str(fx), str(out), "--seed", str(seed), *opts],
                       check=True, capture_output=True, timeout=60)
        rng = random.Random(1000 + seed)
        for f in sorted(fx.glob("*.json")):
            gt = json.loads(f.read_text())
            pred = json.loads((out / f.name).read_text())
            _edit(kind, gt, pred, rng)
            (gt_dir / f"c{k:02d}_{f.name}").write_text(json.dumps(gt))
            (pred_dir / f"c{k:02d}_{f.name}").write_text(json.dumps(pred))
    ref = run_reference(poseval_ref, gt_dir, pred_dir, root / "ref")
    assert len(ref["order"]) == 3 * len(PERTURBATIONS)
    return gt_dir, pred_dir, ref


def test_random_perturbations_parity(perturbed):
    gt_dir, pred_dir, ref = perturbed
    ours = evaluate_like_reference(gt_dir, pred_dir, ref)
    compare(ours, ref, "perturbations")
    # the cases do exercise what they are meant to
    assert ours.mot.totals()["num_switches"] > 0 and ours.mot.totals()["num_false_positives"] > 0
    assert any(r["mot"].totals()["num_switches"] == 0 for r in ours.per_sequence.values())


def test_missing_track_ids_ap_only(perturbed, tmp_path):
    """Without track ids poseval cannot run at all; we give AP (equal to the same
    predictions with ids) and refuse tracking with a clear message."""
    gt_dir, pred_dir, ref = perturbed
    names = [n for n in ref["order"] if n.startswith("c11_")]
    for n in names:
        data = json.loads((pred_dir / f"{n}.json").read_text())
        for a in data["annotations"]:
            del a["track_id"]
        (tmp_path / f"{n}.json").write_text(json.dumps(data))
    gt = [read_posetrack(gt_dir / f"{n}.json") for n in names]
    pred = [read_posetrack(tmp_path / f"{n}.json") for n in names]
    ours = evaluate(gt, pred, tracking=False, per_sequence=True)
    errors: list[str] = []
    for n in names:
        _compare_ap(ours.per_sequence[n]["ap"], ref["seq_ap"][n], n, errors)
    assert not errors, "\n".join(errors)
    with pytest.raises(CorrtrackError, match="no track_id"):
        evaluate(gt, pred, tracking=True)
