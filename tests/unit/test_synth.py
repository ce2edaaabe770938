"""The synthetic benchmark generator on tiny generated scenes (no shared data needed).

People here are drawn stick figures with polygon masks in a generated COCO
file; frames are 320x240 so that every test runs in well under a second or two.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from corrtrack.errors import CorrtrackError
from corrtrack.layouts import COCO17, POSETRACK18
from corrtrack.synth.baseline import box_iou, greedy_iou_tracks
from corrtrack.synth.config import SynthConfig
from corrtrack.synth.motion import PersonPlan
from corrtrack.synth.people import CutoutFilter, load_cutouts
from corrtrack.synth.render import HEAD_CENTRE_SHIFT, HEAD_DIAGONAL, K_PT, Actor, render_frame, transform

W, H = 320, 240
TINY = dict(width=W, height=H, focal=300.0, z_range=(4.5, 9.0), num_frames=40, num_sequences=1, min_height=40.0)
FILTER = CutoutFilter(min_height=100, min_keypoints=8, min_mask_pixels=500)


# -- a generated COCO file with stick-figure people ------------------------------------------

def _person(cx: float, top: float, sign: int = 1) -> tuple[list[list[float]], np.ndarray]:
    """Polygons and COCO-17 keypoints (x, y, 2) of a 180 px tall figure; ``sign`` mirrors the raised arm."""
    def quad(x0, y0, x1, y1, w0, w1):  # a limb from (x0, y0) to (x1, y1) with end widths w0, w1
        return [x0 - w0, y0, x0 + w0, y0, x1 + w1, y1, x1 - w1, y1]

    head = [v for a in np.linspace(0, 2 * np.pi, 12, endpoint=False)
            for v in (cx + 15 * np.cos(a), top + 15 + 15 * np.sin(a))]
    torso = [cx - 20, top + 30, cx + 20, top + 30, cx + 16, top + 96, cx - 16, top + 96]
    arm_l = quad(cx + 18, top + 32, cx + 22 + 12 * sign, top + 100 - 40 * (sign > 0), 7, 5)
    arm_r = quad(cx - 18, top + 32, cx - 26, top + 100, 7, 5)
    leg_l = quad(cx + 9, top + 90, cx + 11, top + 178, 8, 6)
    leg_r = quad(cx - 9, top + 90, cx - 11, top + 178, 8, 6)
    wl = (cx + 22 + 12 * sign, top + 96 - 40 * (sign > 0))
    kp = np.array([
        [cx, top + 16], [cx + 5, top + 11], [cx - 5, top + 11], [cx + 11, top + 15], [cx - 11, top + 15],
        [cx + 16, top + 36], [cx - 16, top + 36],
        [(cx + 18 + wl[0]) / 2, (top + 34 + wl[1]) / 2], [cx - 22, top + 66], [wl[0], wl[1]], [cx - 25, top + 96],
        [cx + 10, top + 92], [cx - 10, top + 92], [cx + 10, top + 134], [cx - 10, top + 134],
        [cx + 11, top + 172], [cx - 11, top + 172]])
    return [head, torso, arm_l, arm_r, leg_l, leg_r], np.column_stack([kp, np.full(17, 2.0)])


@pytest.fixture(scope="module")
def coco_file(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("coco")
    rng = np.random.default_rng(0)
    img = rng.integers(0, 60, (220, 640, 3), dtype=np.uint8)
    anns = []
    for i in range(6):
        cx = 55 + 105 * i
        polys, kp = _person(cx, 20, sign=1 if i % 2 else -1)
        color = np.array(cv2.cvtColor(np.uint8([[[i * 30, 200, 220]]]), cv2.COLOR_HSV2BGR)[0, 0], int)
        for p in polys:
            pts = np.array(p).reshape(-1, 2).round().astype(np.int32)
            cv2.fillPoly(img, [pts], color.tolist())
        img[::7, :] //= 2  # stripes: texture that shows any resampling error
        anns.append({"id": 100 + i, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": polys,
                     "keypoints": kp.reshape(-1).tolist(), "num_keypoints": 17, "area": 5000.0,
                     "bbox": [cx - 30, 20, 60, 180]})
    cv2.imwrite(str(d / "people.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    data = {"images": [{"id": 1, "file_name": "people.jpg", "width": 640, "height": 220}], "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": list(COCO17.joints), "skeleton": []}]}
    (d / "people.json").write_text(json.dumps(data))
    return d / "people.json"


@pytest.fixture(scope="module")
def background_file(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bg")
    y, x = np.mgrid[0:H, 0:W]
    img = np.dstack([x * 255 // W, y * 255 // H, np.full_like(x, 90)]).astype(np.uint8)
    cv2.imwrite(str(d / "bg.png"), img)
    return d / "bg.png"


@pytest.fixture(scope="module")
def cutouts(coco_file):
    return load_cutouts(coco_file, filt=FILTER)


def _suite(out: Path, coco_file, background_file, preset="crowd", seed=0, **knobs):
    from corrtrack.synth.suite import generate_suite

    return generate_suite(out, preset, seed=seed, overrides={**TINY, **knobs}, people_file=coco_file,
                          backgrounds=[background_file], cache_dir=out.parent / "cache", progress=False)


def _scene(cutouts, background_file, scenario="crowd", seed=0, **knobs):
    from corrtrack.synth.backgrounds import load_background
    from corrtrack.synth.scene import build_scene

    cfg = SynthConfig(**{**TINY, "scenario": scenario, **knobs})
    cfg.validate()
    bg = load_background(background_file, (W, H))
    return build_scene(cfg, cutouts, bg, seed, (9, 0), "009001_mpiinew_test", 9001)


# -- people -------------------------------------------------------------------------------

def test_cutouts_keep_joints_on_their_mask(cutouts):
    assert len(cutouts) == 6
    for c in cutouts:
        assert c.mask.shape == c.rgb.shape[:2] and c.mask.sum() > 3000
        assert (c.keypoints[:, 2] > 0).all()  # every drawn joint lies on its polygon
        px = np.floor(c.keypoints[:, :2] + 0.5).astype(int)
        assert c.mask[px[:, 1], px[:, 0]].all()
        assert (c.rgb[~c.mask] == 0).all()  # nothing of the source background survives
        assert 170 < c.height_px < 200


def test_joint_off_the_mask_is_dropped(coco_file, tmp_path):
    data = json.loads(coco_file.read_text())
    kp = data["annotations"][0]["keypoints"]
    kp[9 * 3], kp[9 * 3 + 1] = 1.0, 1.0  # left wrist moved onto the background
    (tmp_path / "people.json").write_text(json.dumps(data))
    (tmp_path / "people.jpg").write_bytes((coco_file.parent / "people.jpg").read_bytes())
    c = load_cutouts(tmp_path / "people.json", filt=FILTER)[0]
    assert c.keypoints[9, 2] == 0 and c.labelled[9, 2] == 1
    assert (c.keypoints[np.arange(17) != 9, 2] > 0).all()


@pytest.mark.parametrize("drop, message", [("segmentation", "no segmentation masks"),
                                           ("keypoints", "no COCO-17 person keypoints")])
def test_coco_file_without_masks_or_keypoints(coco_file, tmp_path, drop, message):
    data = json.loads(coco_file.read_text())
    for a in data["annotations"]:
        del a[drop]
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(CorrtrackError, match=message):
        load_cutouts(tmp_path / "bad.json")


def test_rle_masks_are_read(coco_file, tmp_path):
    from pycocotools import mask as mask_utils

    data = json.loads(coco_file.read_text())
    for a in data["annotations"]:
        rle = mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], 220, 640))
        a["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}
    (tmp_path / "people.json").write_text(json.dumps(data))
    (tmp_path / "people.jpg").write_bytes((coco_file.parent / "people.jpg").read_bytes())
    rle_cuts = load_cutouts(tmp_path / "people.json", filt=FILTER)
    poly_cuts = load_cutouts(coco_file, filt=FILTER)
    assert all((a.mask == b.mask).all() for a, b in zip(rle_cuts, poly_cuts))


# -- geometry of one frame ----------------------------------------------------------------------

def _still(x_m: float, z_m: float, frames: int = 1) -> PersonPlan:
    return PersonPlan(np.full(frames, x_m), np.full(frames, z_m), 1.0, 0.0, 50.0, 0.0)


def test_joint_covered_by_nearer_person_is_invisible(cutouts, background_file):
    cfg = SynthConfig(**TINY)
    cam = cfg.camera
    far, near = Actor(0, cutouts[0], _still(0.0, 8.0)), Actor(1, cutouts[1], _still(0.05, 5.0))
    bg = np.zeros((H, W, 3), np.uint8)
    Ms = [transform(a, cam, 0, False) for a in (far, near)]
    heights = [300 * 1.7 / 8.0, 300 * 1.7 / 5.0]
    _, truths = render_frame(bg, [far, near], Ms, heights, [False, False])
    near_mask = cv2.warpAffine(near.cutout.mask.astype(np.uint8) * 255, Ms[1], (W, H)) >= 128
    px = np.floor(truths[0].points + 0.5).astype(int)
    under = near_mask[px[:, 1].clip(0, H - 1), px[:, 0].clip(0, W - 1)]
    assert under[:K_PT].sum() >= 5  # the setup really hides joints
    assert not truths[0].visible[under].any()
    assert truths[0].occluded[under & far.keep].all()
    assert truths[1].visible[:K_PT][near.keep[:K_PT]].all()  # the near one is fully visible
    assert truths[0].covered_by.get(1, 0) > 0 and truths[0].visible_pixels < truths[0].own_pixels
    # Swapping depths swaps who hides whom.
    far2, near2 = Actor(0, cutouts[0], _still(0.0, 5.0)), Actor(1, cutouts[1], _still(0.05, 8.0))
    Ms2 = [transform(a, cam, 0, False) for a in (far2, near2)]
    _, truths2 = render_frame(bg, [far2, near2], Ms2, heights[::-1], [False, False])
    assert truths2[0].visible[:K_PT][far2.keep[:K_PT]].all()


def test_flip_swaps_left_and_right_labels(cutouts):
    cfg = SynthConfig(**TINY)
    a = Actor(0, cutouts[0], _still(0.0, 6.0))
    M = transform(a, cfg.camera, 0, True)
    assert np.linalg.det(M[:, :2]) < 0  # mirrored
    _, (t,) = render_frame(np.zeros((H, W, 3), np.uint8), [a], [M], [85.0], [True])
    src = a.points[:K_PT] @ M[:, :2].T + M[:, 2]
    perm = POSETRACK18.flip_permutation()
    lw, rw = POSETRACK18.index("left_wrist"), POSETRACK18.index("right_wrist")
    assert np.allclose(t.points[lw], src[rw], atol=0.01) and np.allclose(t.points[rw], src[lw], atol=0.01)
    assert np.allclose(t.points[:K_PT], src[perm], atol=0.01)


def test_head_box_follows_head_points(cutouts):
    cfg = SynthConfig(**TINY)
    a = Actor(0, cutouts[2], PersonPlan(np.zeros(1), np.full(1, 6.0), 1.0, 3.0, 50.0, 1.0))  # rotated 2.5 deg
    M = transform(a, cfg.camera, 0, False)
    _, (t,) = render_frame(np.zeros((H, W, 3), np.uint8), [a], [M], [85.0], [False])
    hb, ht = t.points[POSETRACK18.index("head_bottom")], t.points[POSETRACK18.index("head_top")]
    L = np.hypot(*(ht - hb))
    x1, y1, x2, y2 = t.head_box
    assert np.hypot(x2 - x1, y2 - y1) == pytest.approx(HEAD_DIAGONAL * L, abs=0.05)
    centre = (hb + ht) / 2 + HEAD_CENTRE_SHIFT * (ht - hb)
    assert np.allclose([(x1 + x2) / 2, (y1 + y2) / 2], centre, atol=0.02)


def test_visible_joints_lie_on_their_own_transformed_mask(cutouts, background_file):
    """Checked against an independent full-frame warp of each mask and an independent depth order."""
    from corrtrack.synth.scene import render_scene

    scene = _scene(cutouts, background_file, "crowd", people=(5, 6), lookalikes=0, z_range=(4.5, 7.0))
    cam = scene.cfg.camera
    n_visible = n_hidden = 0
    for j, _, truths in render_scene(scene):
        k = scene.base_frames[j]
        Ms = [transform(a, cam, k, bool(scene.flips[i, k])) for i, a in enumerate(scene.actors)]
        masks = [cv2.warpAffine(a.cutout.mask.astype(np.uint8) * 255, M, (W, H)) >= 128
                 for a, M in zip(scene.actors, Ms)]
        foot = [(M @ np.array([*a.cutout.anchor, 1.0]))[1] for a, M in zip(scene.actors, Ms)]
        for i, t in enumerate(truths):
            px = np.floor(t.points + 0.5).astype(int)
            for q in np.flatnonzero(t.visible):
                x, y = px[q]
                assert masks[i][y, x], f"frame {j}: visible joint {q} of {i} off its mask"
                nearer = [m for m, f in zip(masks, foot) if f > foot[i]]
                assert not any(m[y, x] for m in nearer), f"frame {j}: visible joint {q} of {i} is covered"
                n_visible += 1
            for q in np.flatnonzero(t.occluded):
                x, y = px[q]
                assert any(m[y, x] for m, f in zip(masks, foot) if f > foot[i])
                n_hidden += 1
    assert n_visible > 500 and n_hidden > 10  # the scene is crowded enough to test occlusion


# -- whole sequences ----------------------------------------------------------------------------

def test_gt_against_itself_is_perfect_and_names_follow_posetrack(coco_file, background_file, tmp_path):
    from corrtrack.eval.posetrack import evaluate
    from corrtrack.io.posetrack import read_posetrack_dir

    _suite(tmp_path / "out", coco_file, background_file, "all", people=(2, 4), lookalikes=1, occlusion_frames=(3, 6))
    gts = read_posetrack_dir(tmp_path / "out" / "posetrack")
    assert [g.name for g in gts] == ["001001_mpiinew_walk", "002001_mpiinew_crossing", "003001_mpiinew_crowd",
                                     "004001_mpiinew_reentry", "005001_mpiinew_fast", "006001_mpiinew_occluders"]
    g = gts[2]
    assert g.frames[3].file_name == "images/val/003001_mpiinew_crowd/000003.jpg"
    assert g.frames[3].image_id == 30030010003 and g.meta["vid_id"] == "003001" and g.meta["nframes"] == 40
    r = evaluate(gts, gts)
    assert r.ap.mAP == pytest.approx(100) and r.mot.MOTA == pytest.approx(100)
    assert r.mot.totals()["num_switches"] == 0 and r.stats["gt_joints"] > 1000
    for seq in gts:
        for p in seq.poses:
            assert (p.num_visible() > 0).all() and not np.isnan(p.head_boxes).any()
            assert len(set(p.track_ids.tolist())) == len(p)


def test_coco_file_matches_posetrack_file(coco_file, background_file, tmp_path):
    from corrtrack.io.coco import read_coco_keypoints
    from corrtrack.io.posetrack import read_posetrack

    _suite(tmp_path / "out", coco_file, background_file, "crowd", people=(4, 4))
    name = "003001_mpiinew_crowd"
    pt = read_posetrack(tmp_path / "out" / "posetrack" / f"{name}.json")
    coco = read_coco_keypoints(tmp_path / "out" / "coco" / f"{name}.json")
    raw = json.loads((tmp_path / "out" / "coco" / f"{name}.json").read_text())
    assert {a["keypoints"][i] for a in raw["annotations"] for i in range(2, 51, 3)} <= {0, 1, 2}
    assert any(a["keypoints"][i] == 1 for a in raw["annotations"] for i in range(2, 51, 3))  # hidden joints
    body = [COCO17.index(n) for n in COCO17.joints[5:]]
    for (info, cp), p in zip(coco, pt.poses):
        ann = {a["track_id"]: np.array(a["keypoints"]).reshape(17, 3) for a in raw["annotations"]
               if a["image_id"] == info.image_id and not a["iscrowd"]}
        for i, tid in enumerate(p.track_ids):
            # The same body joints are visible (v=2) in both files, at the same place.
            vis_pt = p.keypoints[i, 5:, 2] > 0
            assert (ann[tid][body, 2] == 2).tolist() == vis_pt.tolist()
            assert np.allclose(ann[tid][body][vis_pt, :2], p.keypoints[i, 5:][vis_pt, :2])
        assert set(cp.track_ids.tolist()) >= set(p.track_ids.tolist())


def test_same_seed_same_bytes_other_seed_other_bytes(coco_file, background_file, tmp_path):
    a = _suite(tmp_path / "a", coco_file, background_file, "crossing", seed=3, num_frames=25)
    _suite(tmp_path / "b", coco_file, background_file, "crossing", seed=3, num_frames=25)
    c = _suite(tmp_path / "c", coco_file, background_file, "crossing", seed=4, num_frames=25)
    name = a["sequences"][0]["name"]
    for sub in ("posetrack", "coco", "manifests"):
        fa, fb, fc = ((tmp_path / d / sub / f"{name}.json").read_bytes() for d in "abc")
        assert fa == fb, sub
        assert fa != fc, sub
    assert (tmp_path / "a" / "suite.json").read_bytes() == (tmp_path / "b" / "suite.json").read_bytes()
    assert c["sequences"][0]["name"] == name


def test_ids_stable_through_exits_and_reentries(cutouts, background_file):
    """After every exit and re-entry, the id is on the same person: its joints are that actor's joints."""
    from corrtrack.synth.gt import GroundTruth
    from corrtrack.synth.scene import render_scene

    scene = _scene(cutouts, background_file, "reentry", people=(3, 3), reentry_gap=(4, 8), num_frames=120,
                   speed=(1.6, 2.0), pause_prob=0.0)
    gt = GroundTruth(scene)
    cam = scene.cfg.camera
    for j, _, truths in render_scene(scene):
        gt.add(j, truths)
        k = scene.base_frames[j]
        p = gt.poses[-1]
        for i, tid in enumerate(p.track_ids):
            a = scene.actors[int(tid)]
            assert a.track_id == tid
            M = transform(a, cam, k, bool(scene.flips[tid, k]))
            expected = np.round(a.points[:K_PT] @ M[:, :2].T + M[:, 2], 2)
            if scene.flips[tid, k]:
                expected = expected[POSETRACK18.flip_permutation()]
            vis = p.keypoints[i, :, 2] > 0
            assert np.allclose(p.keypoints[i, vis, :2], expected[vis])
    ev = gt.events()
    assert ev["counts"]["reentries"] >= 2
    for r in ev["reentries"]:
        before = [f for f in range(r["frame"]) if r["id"] in gt.poses[f].track_ids]
        after = [f for f in range(r["frame"], len(gt.poses)) if r["id"] in gt.poses[f].track_ids]
        assert before and after


def test_small_people_become_ignore_regions(coco_file, background_file, tmp_path):
    from corrtrack.io.posetrack import read_posetrack

    _suite(tmp_path / "out", coco_file, background_file, "crowd", people=(5, 5), z_range=(4.5, 14.0),
           min_height=60.0, num_frames=20)
    seq = read_posetrack(tmp_path / "out" / "posetrack" / "003001_mpiinew_crowd.json")
    regions = [r for f in seq.frames for r in f.ignore_regions]
    assert regions, "the far people should be ignore regions"
    for f, p in zip(seq.frames, seq.poses):
        for r in f.ignore_regions:
            (x1, y1), (x2, y2) = r.min(0), r.max(0)
            xy = p.keypoints[..., :2][p.keypoints[..., 2] > 0]
            assert not ((xy[:, 0] > x1) & (xy[:, 0] < x2) & (xy[:, 1] > y1) & (xy[:, 1] < y2)).any()
        # annotated people are all tall enough: their head boxes are not tiny
        for hb in p.head_boxes:
            assert hb[3] - hb[1] > 4


def test_frame_step_and_effects(coco_file, background_file, tmp_path):
    s = _suite(tmp_path / "out", coco_file, background_file, "walk", people=(2, 2), frame_step=3, num_frames=12,
               brightness=0.3, blur=0.5, jpeg_quality=40, shake=2.0)
    man = json.loads((tmp_path / "out" / "manifests" / f"{s['sequences'][0]['name']}.json").read_text())
    assert man["fps"] == pytest.approx(25 / 3) and man["knobs"]["frame_step"] == 3
    cap = cv2.VideoCapture(str(tmp_path / "out" / "videos" / f"{s['sequences'][0]['name']}.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(25 / 3, abs=0.01)


def test_impossible_knobs(coco_file, background_file, tmp_path):
    with pytest.raises(CorrtrackError, match="more people than fit"):
        _suite(tmp_path / "o", coco_file, background_file, "crowd", people=(40, 40), z_range=(4.5, 6.0))
    with pytest.raises(CorrtrackError, match="different people but the people source has only 6"):
        _suite(tmp_path / "o", coco_file, background_file, "crowd", people=(9, 9), lookalikes=0)
    with pytest.raises(CorrtrackError, match="could not place"):
        _suite(tmp_path / "o", coco_file, background_file, "crowd", people=(6, 6), lookalikes=0, max_contact=0.0)
    with pytest.raises(CorrtrackError, match="unknown preset"):
        _suite(tmp_path / "o", coco_file, background_file, "nope")


def test_unreadable_background(coco_file, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(CorrtrackError, match="broken.mp4"):
        _suite(tmp_path / "o", coco_file, bad, "walk")


def test_stale_sequences_in_outdir_are_refused(coco_file, background_file, tmp_path):
    _suite(tmp_path / "o", coco_file, background_file, "walk", num_frames=5)
    with pytest.raises(CorrtrackError, match="would not write"):
        _suite(tmp_path / "o", coco_file, background_file, "reentry", num_frames=5)


def test_cli_synth_and_one_line_errors(coco_file, background_file, tmp_path):
    from typer.testing import CliRunner

    from corrtrack.cli import app

    runner = CliRunner()
    args = ["data", "synth", str(tmp_path / "o"), "-p", "walk", "--people-from", str(coco_file),
            "--background", str(background_file), "--size", "320x240", "--length", "8", "--sequences", "1",
            "--depth", "4.5-9", "--people", "2", "--preview", "--frames"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "o" / "previews" / "001001_mpiinew_walk.mp4").is_file()
    assert len(list((tmp_path / "o" / "images" / "val" / "001001_mpiinew_walk").glob("*.jpg"))) == 8
    r = runner.invoke(app, args[:3] + ["--people", "3-1"])
    assert isinstance(r.exception, CorrtrackError) and "LO > HI" in str(r.exception)


# -- background, baseline ------------------------------------------------------------------------

def test_empty_scene_from_a_video_with_walkers(tmp_path):
    from corrtrack.io.video import VideoWriter
    from corrtrack.synth.backgrounds import load_background

    rng = np.random.default_rng(1)
    scene = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    scene = cv2.GaussianBlur(scene, (5, 5), 0)
    with VideoWriter(tmp_path / "walkers.mp4", 10) as w:
        for t in range(80):
            f = scene.copy()
            if t < 60:  # someone stands still for 20 frames, then walks around; the scene is empty at the end
                x = 5 if t < 20 else (t * 3) % 60
                f[10:40, x:x + 8] = (255, 0, 0)
            w.write(f)
    bg = load_background(tmp_path / "walkers.mp4", (64, 48), tmp_path / "cache", frames=40)
    assert np.abs(bg.image.astype(int) - scene).mean() < 8
    assert (tmp_path / "cache").is_dir() and len(list((tmp_path / "cache").glob("*.png"))) == 1
    again = load_background(tmp_path / "walkers.mp4", (64, 48), tmp_path / "cache", frames=40)
    assert (again.image == bg.image).all() and again.method == bg.method


def test_greedy_iou_baseline_switches_ids_after_a_gap():
    from corrtrack.structures import FrameInfo, Poses, PoseSequence

    def frame(boxes, ids):
        kp = np.zeros((len(boxes), 17, 3))
        return Poses(kp, POSETRACK18, boxes=np.array(boxes, float).reshape(-1, 4), track_ids=np.array(ids))

    a, b = [0, 0, 10, 20], [30, 0, 40, 20]
    seq = PoseSequence("s", [FrameInfo(i) for i in range(4)],
                       [frame([a, b], [0, 1]), frame([a, [31, 0, 41, 20]], [0, 1]), frame([a], [0]),
                        frame([a, b], [0, 1])])
    out = greedy_iou_tracks(seq)
    assert [p.track_ids.tolist() for p in out.poses] == [[0, 1], [0, 1], [0], [0, 2]]
    assert box_iou(np.array([a], float), np.array([a, b], float)).tolist() == [[1.0, 0.0]]


# -- static occluders ------------------------------------------------------------------------------

def _render_digest(scene) -> str:
    """sha256 of a scene's frames and per-person truth."""
    import hashlib

    from corrtrack.synth.scene import render_scene

    h = hashlib.sha256()
    for _, image, truths in render_scene(scene):
        h.update(image.tobytes())
        for t in truths:
            h.update(t.points.tobytes() + t.visible.tobytes() + t.occluded.tobytes())
            h.update(repr((t.own_pixels, t.visible_pixels, sorted(t.covered_by.items()))).encode())
    return h.hexdigest()


def _occluder(kind: str, X: float, Z: float, half_width: float, top: float):
    """One rectangle standing on the ground at (X, Z): a pole or a board down to the ground."""
    from corrtrack.synth.occluders import Occluder, Part

    return Occluder(kind, X, Z, (Part(kind, -half_width, half_width, 0.0, top),), (32, 86, 160), 1)


def test_joints_behind_a_static_occluder_are_invisible_and_people_in_front_stay_visible(cutouts):
    from corrtrack.synth.occluders import draw_occluder

    cam = SynthConfig(**TINY).camera
    far, near = Actor(0, cutouts[0], _still(0.0, 8.0)), Actor(1, cutouts[1], _still(0.0, 4.6))
    Ms = [transform(a, cam, 0, False) for a in (far, near)]
    bg = np.zeros((H, W, 3), np.uint8)
    _, before = render_frame(bg, [far, near], Ms, [64.0, 111.0], [False, False])
    # A pole 5 m away in the image column of the far person's left hip (8 m away).
    hip = POSETRACK18.index("left_hip")
    u = before[0].points[hip, 0]
    pole = draw_occluder(_occluder("pole", (u - W / 2) * 5.0 / cam.focal, 5.0, 0.1, 3.0), cam)
    _, after = render_frame(bg, [far, near], Ms, [64.0, 111.0], [False, False], occluders=[(pole, pole.transform())])
    assert before[0].visible[hip] and not after[0].visible[hip] and after[0].occluded[hip]
    assert after[0].covered_by.get("occluder 0", 0) > 0 and after[0].visible_pixels < before[0].visible_pixels
    off_pole = np.abs(before[0].points[:, 0] - u) > 10
    assert before[0].visible[off_pole].any()
    assert (after[0].visible[off_pole] == before[0].visible[off_pole]).all()  # only what the pole covers is hidden
    # The near person stands in front of the pole: nothing of it is hidden, and it is drawn over the pole.
    assert (after[1].visible == before[1].visible).all() and after[1].visible_pixels == before[1].visible_pixels
    assert "occluder 0" not in after[1].covered_by
    # Alone in the frame, the pole is as large as its depth makes it (0.2 x 3 m), stands on its foot row, is solid.
    alone, _ = render_frame(bg, [], [], [], [], occluders=[(pole, pole.transform())])
    ys, xs = np.nonzero(alone.any(2))
    ppm = cam.pixels_per_metre(5.0)
    assert abs(xs.max() - xs.min() + 1 - 0.2 * ppm) <= 2.5 and abs(ys.max() + 1 - ys.min() - 3.0 * ppm) <= 2.5
    assert abs(ys.max() + 1 - pole.foot[1]) <= 1.5
    assert alone[ys.min() + 2:ys.max() - 2, int(pole.foot[0])].min() > 40


def test_person_entirely_behind_an_occluder_has_no_gt_pose(cutouts, background_file):
    """Walking behind a board: no pose while wholly hidden (a GT gap), as when a nearer person hides it."""
    from corrtrack.synth.backgrounds import load_background
    from corrtrack.synth.gt import GroundTruth
    from corrtrack.synth.scene import Scene, render_scene

    T = 13
    cfg = SynthConfig(**{**TINY, "num_frames": T})
    walker = PersonPlan(np.linspace(-3.0, 3.0, T), np.full(T, 8.0), 1.0, 0.0, 50.0, 0.0)
    front = _still(0.3, 4.6, T)
    actors = [Actor(0, cutouts[0], walker), Actor(1, cutouts[1], front)]
    scene = Scene("009001_mpiinew_test", 9001, cfg, load_background(background_file, (W, H)), actors,
                  np.zeros((2, T), bool), np.zeros((T, 2)), np.ones(T), {}, 1, [_occluder("board", 0.0, 5.0, 1.0, 2.2)])
    gt = GroundTruth(scene)
    for j, _, truths in render_scene(scene):
        gt.add(j, truths)
    present = [0 in p.track_ids.tolist() for p in gt.poses]
    hidden = np.abs(walker.X) <= 1.0  # the board hides |X| < ~1.3 m at the walker's depth
    assert not any(np.array(present)[hidden]) and present[0] and present[-1]
    assert all(1 in p.track_ids.tolist() for p in gt.poses)  # the one in front is always annotated
    for a in gt.coco_annotations:  # behind the board its joints are known but hidden (COCO v = 1)
        if a["track_id"] == 0 and a["image_id"] % 10**4 == T // 2:
            assert set(a["keypoints"][2::3]) <= {0, 1}
    ev = gt.events()
    assert [(g["id"], g["start"] <= T // 2 <= g["end"]) for g in ev["gt_gaps"]] == [(0, True)]
    assert ev["counts"]["occluder_frames"] >= hidden.sum()
    assert [o["by"] for o in ev["occlusions"] if o["id"] == 0] == ["occluder 0"]


def test_without_occluders_scenes_render_as_before(cutouts, background_file):
    # Digests of the renderer before static occluders existed (same OpenCV build): asking for none
    # must not change a pixel or a joint.
    assert _render_digest(_scene(cutouts, background_file, "walk")) == \
        "98983ce9b9d28ca04593eccf77ac3b0d2eeaea312716c5778b52c9a3a9907bb7"
    crowd = _scene(cutouts, background_file, "crowd", people=(5, 6), shake=3.0, blur=0.5, brightness=0.2)
    assert _render_digest(crowd) == "498d6c5fa81f51595cf78088046b258513c9d869bcc1b24738cd9b26309b59bc"
    # Occluders come from a stream of their own: the people, their paths and the camera do not change.
    plain = _scene(cutouts, background_file, "walk", people=(3, 3))
    with_occ = _scene(cutouts, background_file, "walk", people=(3, 3), occluders=(2, 2))
    assert plain.occluders == [] and len(with_occ.occluders) == 2
    for a, b in zip(plain.actors, with_occ.actors):
        assert a.cutout.source == b.cutout.source and (a.plan.X == b.plan.X).all() and (a.plan.Z == b.plan.Z).all()
    assert (plain.flips == with_occ.flips).all() and (plain.shake == with_occ.shake).all()
    assert _render_digest(plain) != _render_digest(with_occ)


@pytest.mark.parametrize("occluders", [(2, 1), (-1, 2), (0, 11)])
def test_bad_occluder_range(occluders):
    with pytest.raises(CorrtrackError, match="--occluders must be N or LO-HI") as e:
        SynthConfig(**TINY, occluders=occluders).validate()
    assert "\n" not in str(e.value)


def test_same_seed_same_occluders_each_hiding_somebody(cutouts, background_file):
    from corrtrack.synth.occluders import draw_occluder
    from corrtrack.synth.scene import render_scene

    knobs = dict(people=(3, 3), occluders=(3, 3), max_contact=0.1, pause_prob=0.15)
    a = _scene(cutouts, background_file, "walk", seed=5, **knobs)
    b = _scene(cutouts, background_file, "walk", seed=5, **knobs)
    c = _scene(cutouts, background_file, "walk", seed=6, **knobs)
    assert a.occluders == b.occluders and a.occluders != c.occluders
    cam = a.cfg.camera
    assert all((draw_occluder(o, cam).rgba == draw_occluder(p, cam).rgba).all()
               for o, p in zip(a.occluders, b.occluders))
    lo, hi = a.cfg.z_range
    assert all(lo <= o.Z <= hi for o in a.occluders)
    for o in a.occluders:  # placed in the image column of a farther person at some frame: it passes behind
        u = cam.project(o.X, o.Z)[0]
        assert any((np.isclose(cam.project(p.plan.X, p.plan.Z)[0], u, atol=1e-6) & (p.plan.Z > o.Z + 0.5)).any()
                   for p in a.actors)
    hiding = set()
    for _, _, truths in render_scene(a):
        hiding |= {k for t in truths for k in t.covered_by if isinstance(k, str)}
    assert hiding == {f"occluder {j}" for j in range(3)}


def test_occluders_preset_records_them(coco_file, background_file, tmp_path):
    from corrtrack.synth.config import PRESETS, SUITES

    assert SUITES["all"] == tuple(p for p in PRESETS if p != "standing") and "occluders" in PRESETS
    s = _suite(tmp_path / "o", coco_file, background_file, "occluders", num_frames=20)
    man = json.loads((tmp_path / "o" / "manifests" / f"{s['sequences'][0]['name']}.json").read_text())
    assert man["knobs"]["occluders"] == [2, 3] and 2 <= len(man["occluders"]) <= 3
    for o in man["occluders"]:
        x1, y1, x2, y2 = o["box"]
        assert 0 <= x1 < x2 <= W and 0 <= y1 < y2 <= H and o["kind"] in ("pole", "sign", "board")
        assert {p["part"] for p in o["parts"]} <= {"pole", "leg", "board"}
    assert "occluder_frames" in s["sequences"][0]["counts"]
    plain = _suite(tmp_path / "w", coco_file, background_file, "walk", num_frames=5)
    man = json.loads((tmp_path / "w" / "manifests" / f"{plain['sequences'][0]['name']}.json").read_text())
    assert "occluders" not in man and "occluders" not in man["knobs"]


def test_cli_occluders_flag(coco_file, background_file, tmp_path):
    from typer.testing import CliRunner

    from corrtrack.cli import app

    args = ["data", "synth", str(tmp_path / "o"), "-p", "walk", "--people-from", str(coco_file), "--background",
            str(background_file), "--size", "320x240", "--length", "4", "--sequences", "1", "--depth", "4.5-9", "-q"]
    r = CliRunner().invoke(app, args + ["--occluders", "1"])
    assert r.exit_code == 0, r.output
    man = json.loads((tmp_path / "o" / "manifests" / "001001_mpiinew_walk.json").read_text())
    assert man["knobs"]["occluders"] == [1, 1] and len(man["occluders"]) == 1
    r = CliRunner().invoke(app, args + ["--occluders", "3-1"])
    assert isinstance(r.exception, CorrtrackError) and "LO > HI" in str(r.exception)


# -- people standing still -------------------------------------------------------------------------

def test_standing_people_stand_still_beside_the_walkers_who_are_unchanged(cutouts, background_file):
    plain = _scene(cutouts, background_file, "walk", people=(2, 2))
    group = _scene(cutouts, background_file, "walk", people=(2, 2), standing=(3, 3))
    assert len(plain.actors) == 2 and len(group.actors) == 5
    # drawn from a stream of their own: the walkers, their paths and the camera do not change
    for a, b in zip(plain.actors, group.actors):
        assert a.cutout.source == b.cutout.source and (a.plan.X == b.plan.X).all() and (a.plan.Z == b.plan.Z).all()
    standing = group.actors[2:]
    assert [a.track_id for a in standing] == [2, 3, 4]
    walkers = {id(a.cutout) for a in group.actors[:2]}
    assert len({id(a.cutout) for a in standing} | walkers) == 5  # five different people
    lo, hi = group.cfg.z_range
    for a in standing:
        assert np.ptp(a.plan.X) == 0 and np.ptp(a.plan.Z) == 0 and lo <= a.plan.Z[0] <= hi
    gaps = np.diff(sorted(a.plan.X[0] for a in standing))
    assert ((gaps >= 0.5 - 1e-9) & (gaps <= 1.2 + 1e-9)).all()  # a group, side by side
    again = _scene(cutouts, background_file, "walk", people=(2, 2), standing=(3, 3))
    assert [a.plan.X[0] for a in again.actors[2:]] == [a.plan.X[0] for a in standing]


def test_standing_preset_and_flag(coco_file, background_file, tmp_path):
    from typer.testing import CliRunner

    from corrtrack.cli import app
    from corrtrack.io.posetrack import read_posetrack

    s = _suite(tmp_path / "s", coco_file, background_file, "standing", people=(2, 2), num_frames=10)
    name = s["sequences"][0]["name"]
    assert name == "007001_mpiinew_standing"
    man = json.loads((tmp_path / "s" / "manifests" / f"{name}.json").read_text())
    assert man["knobs"]["standing"] == [2, 3]
    gt = read_posetrack(tmp_path / "s" / "posetrack" / f"{name}.json")
    ids = set().union(*(p.track_ids.tolist() for p in gt.poses))
    assert 4 <= len(ids) <= 5  # 2 walkers + 2-3 standing, all annotated
    plain = _suite(tmp_path / "w", coco_file, background_file, "walk", num_frames=5)
    man = json.loads((tmp_path / "w" / "manifests" / f"{plain['sequences'][0]['name']}.json").read_text())
    assert "standing" not in man["knobs"]
    args = ["data", "synth", str(tmp_path / "c"), "-p", "walk", "--people-from", str(coco_file), "--background",
            str(background_file), "--size", "320x240", "--length", "4", "--sequences", "1", "--depth", "4.5-9", "-q",
            "--people", "2"]
    r = CliRunner().invoke(app, args + ["--standing", "2"])
    assert r.exit_code == 0, r.output
    man = json.loads((tmp_path / "c" / "manifests" / "001001_mpiinew_walk.json").read_text())
    assert man["knobs"]["standing"] == [2, 2]
    r = CliRunner().invoke(app, args + ["--standing", "9"])
    assert isinstance(r.exception, CorrtrackError) and "--standing must be" in str(r.exception)
    with pytest.raises(CorrtrackError, match="different people"):  # the test source has 6 people
        _scene(load_cutouts(coco_file, filt=FILTER), background_file, "walk", people=(4, 4), standing=(4, 4))
