"""The synthetic benchmark made from the real shared data (COCO people, vtest / intel backgrounds).

* GT against itself gives mAP 100 / MOTA 100 in ``corrtrack eval`` and in the
  official evaluator (shared/tools/poseval_ref), which must accept every file.
* The benchmark separates trackers: greedy frame-to-frame IoU matching of the
  GT boxes makes ID switches on ``crossing`` and ``reentry``; the true ids none.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

# The reference evaluator's set-up fixture and runner live with the evaluator's parity test.
from poseval_ref import run_reference

from corrtrack.eval.posetrack import evaluate
from corrtrack.io.posetrack import read_posetrack_dir
from corrtrack.synth.baseline import greedy_iou_tracks

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def suite(shared_data, tmp_path_factory):
    """crossing and reentry (3 sequences of 100 frames each), walk and crowd short (1 each)."""
    from corrtrack.synth.suite import default_sources, generate_suite

    src = default_sources()
    for p in src["people"] + src["backgrounds"]:
        if not p.exists():
            pytest.skip(f"{p} not found")
    out = tmp_path_factory.mktemp("synth")
    cache = Path(__file__).resolve().parents[2] / ".cache" / "synth_backgrounds"  # kept between runs
    summaries = {}
    for preset, knobs in (("crossing", {"num_sequences": 3, "num_frames": 100}),
                          ("reentry", {"num_sequences": 3, "num_frames": 100}),
                          ("walk", {"num_sequences": 1, "num_frames": 60}),
                          ("crowd", {"num_sequences": 1, "num_frames": 60}),
                          ("fast", {"num_sequences": 1, "num_frames": 40})):
        summaries[preset] = generate_suite(out / preset, preset, seed=0, overrides=knobs, cache_dir=cache,
                                           progress=False)
    return out, summaries


def test_real_people_and_backgrounds_are_used(suite):
    out, summaries = suite
    s = summaries["crowd"]
    assert s["usable_people"] >= 9  # of test_coco's 14: the tiny and mostly-unannotated ones are skipped
    assert [b["source"].endswith("vtest.avi") and b["method"].startswith("median of") for b in s["backgrounds"]] \
        == [True]
    man = json.loads((out / "crowd" / "manifests" / "003001_mpiinew_crowd.json").read_text())
    assert 8 <= len(man["people"]) <= 12
    assert sum(p["lookalike_of"] is not None for p in man["people"]) == 2
    assert {p["source"]["file_name"] for p in man["people"]} <= {
        "000000000785.jpg", "000000040083.jpg", "000000196141.jpg", "000000197388.jpg"}


def test_empty_scene_of_the_intel_video(shared_data, tmp_path):
    """People stand at the table in most frames: a plain median keeps them, the empty-scene search does not."""
    import cv2

    from corrtrack.io.video import open_source
    from corrtrack.synth.backgrounds import fit, load_background

    video = shared_data / "intel_sample_videos" / "one-by-one-person-detection.mp4"
    if not video.is_file():
        pytest.skip(f"{video} not found")
    bg = load_background(video, (768, 576), Path(__file__).resolve().parents[2] / ".cache" / "synth_backgrounds")
    assert bg.method.startswith("median of") and "of 100 sampled" in bg.method
    with open_source(video, end=1) as src:  # frame 0: nobody in the room
        empty = fit(next(iter(src)).image, (768, 576)).astype(int)
    with open_source(video, step=14) as src:
        plain = np.median(np.stack([fit(f.image, (768, 576)) for f in src]), axis=0)
    err = np.abs(bg.image.astype(int) - empty).mean()
    assert err < 4 and err < np.abs(plain - empty).mean() / 2
    assert cv2.absdiff(bg.image, empty.astype(np.uint8)).max(axis=2).__ge__(60).mean() < 0.002


def _all_gt(out):
    """Every sequence of the test suites in one folder (the official tool reads one folder)."""
    folder = out / "all_gt"
    folder.mkdir(exist_ok=True)
    for preset in ("crossing", "reentry", "walk", "crowd"):
        for f in sorted((out / preset / "posetrack").glob("*.json")):
            (folder / f.name).write_bytes(f.read_bytes())
    return folder


def test_gt_against_itself_is_perfect_in_corrtrack_eval(suite):
    out, _ = suite
    gts = read_posetrack_dir(_all_gt(out))
    assert len(gts) == 8
    r = evaluate(gts, gts)
    assert r.ap.mAP == pytest.approx(100) and r.mot.MOTA == pytest.approx(100)
    assert r.mot.totals()["num_switches"] == 0 and r.stats["gt_joints"] > 20000


def test_gt_against_itself_is_perfect_in_the_official_evaluator(suite, poseval_ref, tmp_path):
    out, _ = suite
    folder = _all_gt(out)
    ref = run_reference(poseval_ref, folder, folder, tmp_path / "ref")
    s = ref["summary"]
    assert s["mAP"] == pytest.approx(100) and s["MOTA"] == pytest.approx(100)
    assert s["counts_total"]["num_switches"] == 0 and s["counts_total"]["num_misses"] == 0
    assert len(ref["order"]) == 8  # every file was read and evaluated


def test_greedy_iou_matching_switches_ids_where_true_ids_do_not(suite):
    out, summaries = suite
    for preset in ("crossing", "reentry"):
        counts = summaries[preset]["presets"][preset]["counts"]
        assert counts["crossings" if preset == "crossing" else "reentries"] >= 3
        gts = read_posetrack_dir(out / preset / "posetrack")
        iou = [greedy_iou_tracks(g) for g in gts]
        ours = evaluate(gts, iou)
        truth = evaluate(gts, gts)
        assert ours.mot.totals()["num_switches"] > 0, preset
        assert truth.mot.totals()["num_switches"] == 0
        assert ours.ap.mAP == pytest.approx(100)  # same poses: only the ids differ


def _median_step(gt) -> float:
    """Median distance a visible joint moves between consecutive frames, in px."""
    steps = []
    for a, b in zip(gt.poses, gt.poses[1:]):
        for i, t in enumerate(a.track_ids):
            j = np.flatnonzero(b.track_ids == t)
            if len(j):
                ka, kb = a.keypoints[i], b.keypoints[j[0]]
                ok = (ka[:, 2] > 0) & (kb[:, 2] > 0)
                steps += np.linalg.norm(kb[ok, :2] - ka[ok, :2], axis=1).tolist()
    return float(np.median(steps))


def test_fast_preset_moves_people_much_further_per_frame(suite):
    """The fast preset exists to test large motion (paper 6.2): running people at half the frame rate."""
    out, summaries = suite
    man = json.loads((out / "fast" / "manifests" / "005001_mpiinew_fast.json").read_text())
    assert man["fps"] == pytest.approx(12.5) and man["knobs"]["shake"] > 0 and man["knobs"]["blur"] > 0
    fast = _median_step(read_posetrack_dir(out / "fast" / "posetrack")[0])
    walk = _median_step(read_posetrack_dir(out / "walk" / "posetrack")[0])
    assert fast > 3 * walk and fast > 10, (fast, walk)


def test_visible_joints_of_real_people_lie_on_their_masks(suite):
    """Spot check on real cut-outs (the unit tests check every frame of tiny scenes)."""
    import cv2

    from corrtrack.synth.backgrounds import Background
    from corrtrack.synth.config import PRESETS
    from corrtrack.synth.people import load_cutouts
    from corrtrack.synth.render import transform
    from corrtrack.synth.scene import build_scene, render_scene
    from corrtrack.synth.suite import default_sources

    cfg = dataclasses.replace(PRESETS["crowd"].config, num_frames=12)
    cuts = load_cutouts(default_sources()["people"][0])
    bg = Background(np.zeros((cfg.height, cfg.width, 3), np.uint8), "black", "-", "test")
    scene = build_scene(cfg, cuts, bg, 5, (3, 0), "003001_mpiinew_crowd", 3001)
    checked = 0
    for j, _, truths in render_scene(scene):
        for i, (a, t) in enumerate(zip(scene.actors, truths)):
            M = transform(a, cfg.camera, j, bool(scene.flips[i, j]))
            mask = cv2.warpAffine(a.cutout.mask.astype(np.uint8) * 255, M, (cfg.width, cfg.height)) >= 128
            px = np.floor(t.points[t.visible] + 0.5).astype(int)
            assert mask[px[:, 1], px[:, 0]].all()
            checked += len(px)
    assert checked > 1000
