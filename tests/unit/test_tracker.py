"""The online tracker, recovery, finalising and merging on generated scenes with fake networks."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from corrtrack.pipeline.matching import DuplicateConfig
from corrtrack.pipeline.tracker import (
    MergeConfig,
    RecoveryConfig,
    Tracker,
    TrackerConfig,
    boxes_around,
    final_id_map,
    finalize_frame,
    merge_tracks,
    recover_missed,
    track_frame_counts,
    tracklets_from_frames,
)
from corrtrack.structures import RECOVERED, Poses

TEMPLATE = np.array([  # a standing person, COCO-17, in body heights about the hip centre
    (0, -.45), (.02, -.47), (-.02, -.47), (.04, -.46), (-.04, -.46), (.1, -.33), (-.1, -.33),
    (.13, -.15), (-.13, -.15), (.14, 0), (-.14, 0), (.07, 0), (-.07, 0), (.07, .25), (-.07, .25),
    (.07, .48), (-.07, .48)])
HEIGHT = 100.0
IMAGE = np.zeros((480, 640, 3), np.uint8)


def pose_at(x, y, score=0.9) -> Poses:
    kp = np.zeros((1, 17, 3))
    kp[0, :, :2] = TEMPLATE * HEIGHT + (x, y)
    kp[0, :, 2] = score
    return Poses(kp, "coco17")


def poses_at(centres) -> Poses:
    return Poses.concat([pose_at(x, y) for x, y in centres], layout="coco17")


def gaussian_maps(poses: Poses, sigma: float):
    """Refined-style CorrMaps of ``poses`` on IMAGE: a Gaussian of ``sigma`` cells (peak 0.9) at every
    joint (the trained model's are about one cell wide)."""
    import torch

    from corrtrack.models.corr_codec import Letterbox, encode_targets, image_to_grid
    from corrtrack.pipeline.propagate import CorrMaps

    lb = Letterbox.fit(IMAGE.shape[1], IMAGE.shape[0], 512)
    valid = poses.keypoints[..., 2] > 0
    g = torch.as_tensor(image_to_grid(poses.keypoints[..., :2], lb, 4))
    maps = 0.9 * encode_targets(g, torch.as_tensor(valid), 128, 128, sigma).float()
    return CorrMaps(maps, lb, 4, valid, True)


class World:
    """Ground-truth people per frame: ``pos[frame][gt_id] = (x, y)``; fakes read it."""

    def __init__(self, pos: dict[int, dict[int, tuple[float, float]]]):
        self.pos = pos
        self.frame = 0

    def detections(self, f, missing=()) -> tuple[Poses, list[int]]:
        gts = [g for g in sorted(self.pos[f]) if g not in missing]
        return poses_at([self.pos[f][g] for g in gts]), gts

    def _nearest(self, f, xy):
        if not self.pos.get(f):
            return None
        g = min(self.pos[f], key=lambda g: np.hypot(*np.subtract(self.pos[f][g], xy)))
        return g if np.hypot(*np.subtract(self.pos[f][g], xy)) < 30 else None

    def correspond(self, src, _src_image, dst, _dst_image, poses):
        """Moves each pose with the person it belongs to; confidence 0 if that person left."""
        kp = poses.keypoints.copy()
        for i in range(len(poses)):
            centre = kp[i, 11:13, :2].mean(0)
            g = self._nearest(src, centre)
            if g is not None and g in self.pos.get(dst, {}):
                kp[i, :, :2] += np.subtract(self.pos[dst][g], self.pos[src][g])
            else:
                kp[i, :, 2] = 0.0
        return poses.replace(keypoints=kp), None

    def correspond_maps(self, src, src_image, dst, dst_image, poses):
        """Like ``correspond``, plus eq. 6 maps: a Gaussian (peak 0.9) at every moved joint."""
        moved, _ = self.correspond(src, src_image, dst, dst_image, poses)
        return moved, gaussian_maps(moved, sigma=1.5)

    def estimate(self, _image, boxes):
        """The person whose centre lies in the box, else a low-scoring guess."""
        out = []
        for b in boxes:
            inside = [xy for xy in self.pos.get(self.frame, {}).values()
                      if b[0] <= xy[0] <= b[2] and b[1] <= xy[1] <= b[3]]
            c = ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
            out.append(pose_at(*inside[0]) if inside else pose_at(*c, score=0.05))
        return Poses.concat(out, layout="coco17")


def run(world: World, tracker: Tracker, frames, missing=None, detected: list | None = None) -> dict[int, dict[int, int]]:
    """gt id -> {frame: track id} for every written pose (matched to GT by position).

    Frames are detected where the tracker wants it (``detect_every``); ``detected`` collects them.
    """
    seen: dict[int, dict[int, int]] = defaultdict(dict)
    for f in frames:
        world.frame = f
        det = None
        if tracker.wants_detections(f):
            det, _ = world.detections(f, (missing or {}).get(f, ()))
            if detected is not None:
                detected.append(f)
        out = tracker.step(f, det, IMAGE)
        for i in range(len(out)):
            g = world._nearest(f, out.keypoints[i, 11:13, :2].mean(0))
            assert g is not None, f"frame {f}: a pose where nobody is"
            assert f not in seen[g], f"frame {f}: two poses for person {g}"
            seen[g][f] = int(out.track_ids[i])
    return seen


NO_RECOVERY = RecoveryConfig(enabled=False)


@pytest.mark.parametrize("similarity", ["oks", "iou"])
def test_two_people_crossing_keep_their_ids(similarity):
    world = World({f: {0: (50 + 10 * f, 200), 1: (250 - 10 * f, 230)} for f in range(21)})
    tracker = Tracker(TrackerConfig(similarity=similarity, recovery=NO_RECOVERY))
    seen = run(world, tracker, range(21))
    assert len(seen[0]) == len(seen[1]) == 21
    ids0, ids1 = set(seen[0].values()), set(seen[1].values())
    assert len(ids0) == len(ids1) == 1 and ids0 != ids1


def test_corr_follows_the_correspondences():
    # People swap places between frames 4 and 5 (like a crossing seen at a low frame rate):
    # positions mislead OKS, the correspondences (here: exact) keep the ids.
    pos = {f: {0: (100, 200), 1: (130, 200)} if f < 5 else {0: (130, 200), 1: (100, 200)} for f in range(10)}
    world = World(pos)
    tracker = Tracker(TrackerConfig(), correspond=world.correspond_maps, estimate=world.estimate)
    seen = run(world, tracker, range(10))
    assert all(len(set(v.values())) == 1 for v in seen.values()) and seen[0][0] != seen[1][0]
    assert tracker.timings["correspondence"] > 0


def test_swapping_people_need_appearance():
    # The two people swap places between frames 4 and 5: position-based similarity
    # must swap ids, an embedding of their appearance must not.
    pos = {f: {0: (100, 200), 1: (130, 200)} if f < 5 else {0: (130, 200), 1: (100, 200)} for f in range(10)}
    world = World(pos)

    def embed(_image, boxes):
        e = np.zeros((len(boxes), 2))
        for i, b in enumerate(boxes):
            g = world._nearest(world.frame, ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2 + 0.005 * HEIGHT))
            e[i, g] = 1.0
        return e

    reid = run(world, Tracker(TrackerConfig(similarity="reid", recovery=NO_RECOVERY), embed=embed), range(10))
    assert all(len(set(v.values())) == 1 for v in reid.values())
    oks = run(World(pos), Tracker(TrackerConfig(similarity="oks", recovery=NO_RECOVERY)), range(10))
    assert all(len(set(v.values())) == 2 for v in oks.values())


@pytest.mark.parametrize("keep_alive, same_id", [(10, True), (3, False)])
def test_person_who_comes_back_within_keep_alive_keeps_the_id(keep_alive, same_id):
    pos = {f: {1: (400, 200)} for f in range(21)}
    for f in range(21):
        if not 10 <= f <= 13:
            pos[f][0] = (100 + (4 if f >= 14 else 0), 200)
    world = World(pos)
    cfg = TrackerConfig(similarity="oks", keep_alive=keep_alive, recovery=NO_RECOVERY)
    seen = run(world, Tracker(cfg), range(21))
    assert sorted(seen[0]) == [f for f in range(21) if not 10 <= f <= 13]
    assert len(set(seen[1].values())) == 1
    assert (len(set(seen[0].values())) == 1) is same_id


def test_recovery_fills_missed_detections_with_the_same_id():
    world = World({f: {0: (50 + 8 * f, 200), 1: (500, 200)} for f in range(12)})
    missing = {5: {0}, 6: {0}}
    tracker = Tracker(TrackerConfig(similarity="oks"), correspond=world.correspond, estimate=world.estimate)
    seen = run(world, tracker, range(12), missing)
    assert sorted(seen[0]) == list(range(12))
    assert len(set(seen[0].values())) == 1
    # Without recovery those frames are lost (and OKS to a pose 3 frames old fails at this speed).
    seen = run(World(world.pos), Tracker(TrackerConfig(similarity="oks", recovery=NO_RECOVERY)), range(12), missing)
    assert sorted(seen[0]) == [0, 1, 2, 3, 4, 7, 8, 9, 10, 11]


def test_recovery_stops_when_the_person_is_gone_and_never_starts_tracks():
    # Person 0 leaves after frame 3; the fake estimator finds only background there.
    world = World({f: ({0: (100, 200)} if f <= 3 else {}) | {1: (400, 200)} for f in range(8)})
    tracker = Tracker(TrackerConfig(similarity="oks"), correspond=world.correspond, estimate=world.estimate)
    seen = run(world, tracker, range(8))
    assert sorted(seen[0]) == [0, 1, 2, 3]
    assert sorted(seen[1]) == list(range(8))


def test_recovery_is_capped_by_max_consecutive():
    # Nobody detects person 0 after frame 1, but the fakes would recover it forever.
    world = World({f: {0: (100 + 5 * f, 200)} for f in range(10)})
    missing = {f: {0} for f in range(2, 10)}
    cfg = TrackerConfig(similarity="oks", recovery=RecoveryConfig(max_consecutive=3))
    seen = run(world, Tracker(cfg, correspond=world.correspond, estimate=world.estimate), range(10), missing)
    assert sorted(seen[0]) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("similarity", ["oks", "corr"])
def test_detect_every_follows_people_between_detection_frames(similarity):
    # Person 0 walks through; person 1 enters at frame 4 (found at the next detection frame, 6),
    # person 2 leaves after frame 7 (followed until then, never drawn where nobody is).
    pos = {f: {0: (50 + 8 * f, 200)} | ({1: (400, 100 + 3 * f)} if f >= 4 else {})
           | ({2: (550, 300)} if f <= 7 else {}) for f in range(12)}
    world = World(pos)
    detected: list[int] = []
    cfg = TrackerConfig(similarity=similarity, detect_every=3, recovery=NO_RECOVERY)
    correspond = world.correspond_maps if similarity == "corr" else world.correspond
    seen = run(world, Tracker(cfg, correspond=correspond, estimate=world.estimate), range(12), detected=detected)
    assert detected == [0, 3, 6, 9]
    assert sorted(seen[0]) == list(range(12)) and len(set(seen[0].values())) == 1
    assert sorted(seen[1]) == [6, 7, 8, 9, 10, 11] and len(set(seen[1].values())) == 1
    assert sorted(seen[2]) == list(range(8)) and len(set(seen[2].values())) == 1
    assert len({*seen[0].values(), *seen[1].values(), *seen[2].values()}) == 3


def test_detect_every_leaves_kept_alive_tracks_alone_between_detection_frames():
    # Person 0 is hidden in frames 4-7 (kept alive); person 1 is followed. Without detections only
    # person 1's track is propagated; person 0 gets the old id back at the next detection frame.
    world = World({f: ({0: (100, 200)} if not 4 <= f <= 7 else {}) | {1: (400, 200 + 2 * f)} for f in range(12)})
    calls = []

    def correspond(src, src_image, dst, dst_image, poses):
        calls.append((src, dst, len(poses)))
        return world.correspond_maps(src, src_image, dst, dst_image, poses)

    detected: list[int] = []
    cfg = TrackerConfig(similarity="corr", detect_every=3, recovery=NO_RECOVERY)
    seen = run(world, Tracker(cfg, correspond=correspond, estimate=world.estimate), range(12), detected=detected)
    assert detected == [0, 3, 6, 9]
    skipped = [c for c in calls if c[1] not in detected]
    assert skipped and all(src == dst - 1 for src, dst, _ in skipped)
    assert all(n == 1 for _, dst, n in skipped if 5 <= dst <= 8)  # person 0 was last seen at 3
    assert (3, 6, 1) in calls  # kept-alive person 0 looked for at the detection frame
    assert sorted(seen[0]) == [0, 1, 2, 3, 9, 10, 11] and len(set(seen[0].values())) == 1
    assert sorted(seen[1]) == list(range(12)) and len(set(seen[1].values())) == 1


def test_detect_every_keeps_the_motion_prior_to_detection_frames():
    # Person 0 walks right at 20 px per frame and vanishes after frame 3; at frame 5 (no detection)
    # its velocity carries its kept-alive track onto person 1, who stands there and is followed.
    # A kept-alive track is not scored between detection frames, so it cannot take him.
    world = World({f: ({0: (100 + 20 * f, 200)} if f <= 3 else {}) | {1: (200, 200)} for f in range(8)})

    def estimate(image, boxes):  # a re-estimate a few pixels off, alternating (pose jitter)
        poses = world.estimate(image, boxes)
        kp = poses.keypoints.copy()
        kp[..., 0] += 6 if world.frame % 2 else -6
        return poses.replace(keypoints=kp)

    cfg = TrackerConfig(similarity="corr", detect_every=3, recovery=NO_RECOVERY)
    assert cfg.motion_prior
    seen = run(world, Tracker(cfg, correspond=world.correspond_maps, estimate=estimate), range(8))
    assert sorted(seen[1]) == list(range(8)) and len(set(seen[1].values())) == 1


def test_detect_every_detects_whenever_nobody_can_be_followed():
    # Nobody until frame 2, then one person: detection on every frame until she is found.
    world = World({f: ({0: (100 + 5 * f, 200)} if f >= 2 else {}) for f in range(9)})
    detected: list[int] = []
    cfg = TrackerConfig(similarity="oks", detect_every=4, recovery=NO_RECOVERY)
    seen = run(world, Tracker(cfg, correspond=world.correspond, estimate=world.estimate), range(9),
               detected=detected)
    assert detected == [0, 1, 2, 6]
    assert sorted(seen[0]) == list(range(2, 9)) and len(set(seen[0].values())) == 1


def test_detect_every_needs_the_networks_and_a_positive_interval():
    with pytest.raises(ValueError, match="detect_every"):
        TrackerConfig(detect_every=0)
    with pytest.raises(ValueError, match="detect_every"):
        Tracker(TrackerConfig(similarity="oks", detect_every=2, recovery=NO_RECOVERY))
    tracker = Tracker(TrackerConfig(similarity="oks", recovery=NO_RECOVERY))
    assert tracker.wants_detections(0)
    with pytest.raises(ValueError, match="without detections"):
        tracker.step(0, None, IMAGE)


def test_recover_missed_only_where_no_detection_explains_the_person():
    world = World({0: {0: (100, 200), 1: (300, 200)}, 1: {0: (110, 200), 1: (310, 200)}})
    world.frame = 1
    prev, _ = world.detections(0)
    det, _ = world.detections(1, missing={1})

    def propagate(p):
        return world.correspond(0, None, 1, None, p)[0]

    rec = recover_missed(prev, det, IMAGE, propagate=propagate, estimate=world.estimate)
    assert len(rec) == 1 and rec.origin.tolist() == [RECOVERED]
    np.testing.assert_allclose(rec.keypoints[0, 11:13, :2].mean(0), (310, 200))
    # A detection of person 1 explains it: nothing to recover.
    det_all, _ = world.detections(1)
    assert len(recover_missed(prev, det_all, IMAGE, propagate=propagate, estimate=world.estimate)) == 0


def test_boxes_around_enlarges_and_clips():
    kp = np.array([[[10, 20, 0.9], [30, 60, 0.9], [500, 500, 0.05]]])
    np.testing.assert_allclose(boxes_around(kp, 0.1, 1.5), [[5, 10, 35, 70]])
    np.testing.assert_allclose(boxes_around(kp, 0.1, 3.0, image_size=(40, 100)), [[0, 0, 39, 99]])


@pytest.mark.parametrize("similarity", ["oks", "corr"])
def test_duplicate_removal_in_the_tracker(similarity):
    one = pose_at(200, 200)
    dup = pose_at(200, 200)
    dup.keypoints[0, 11:, :2] += (60, 0)  # shares 11 of 17 joints: OKS below NMS's 0.7, votes above 0.6
    dup.scores[:] = 0.5
    frame1 = Poses.concat([one, dup])
    world = World({0: {0: (200, 200)}, 1: {0: (200, 200)}})
    for dedupe, expected in [(True, 1), (False, 2)]:
        tracker = Tracker(TrackerConfig(similarity=similarity, recovery=NO_RECOVERY, duplicate_removal=dedupe),
                          correspond=world.correspond_maps)
        tracker.step(0, one, IMAGE)
        out = tracker.step(1, frame1, IMAGE)
        assert len(out) == expected
        assert out.track_ids[0] == 0


def big_person(x: float, y: float = 240.0) -> Poses:
    """A 250 px person seen from the back (no face joints)."""
    kp = np.zeros((1, 17, 3))
    kp[0, :, :2] = TEMPLATE * 250 + (x, y)
    kp[0, 5:, 2] = 0.9
    return Poses(kp, "coco17")


def test_duplicate_a_few_pixels_off_the_sharp_maps_is_removed_with_corr_oks():
    """Refined maps are Gaussians of one cell (paper eq. 3; 5 px on this 640 px frame): a second
    detection of a 250 px person whose joints sit 12 px off the propagated ones reads ~0 on them, but
    by keypoint similarity most of its joints still land there."""
    def still(src, _a, dst, _b, poses):  # nobody moves
        return poses, gaussian_maps(poses, sigma=1.0)

    one, dup = big_person(300), big_person(312)
    dup.keypoints[0, 15:, :2] += (60, 0)  # ankles elsewhere: OKS to `one` below NMS's 0.7
    dup.scores[:] = 0.5
    for corr_oks, expected in [(True, 1), (False, 2)]:
        tracker = Tracker(TrackerConfig(recovery=NO_RECOVERY, corr_oks=corr_oks), correspond=still)
        tracker.step(0, one, IMAGE)
        out = tracker.step(1, Poses.concat([one, dup]), IMAGE)
        assert len(out) == expected, corr_oks
        assert out.track_ids[0] == 0


@pytest.mark.parametrize("similarity", ["oks", "corr"])
def test_an_old_track_does_not_live_on_through_a_duplicate_detection(similarity):
    """Two detections of one person in frame 0 start two tracks; the second one waits (kept alive)
    and, when the duplicate shows up again in frame 2, would take it and put a second id on the
    person. With ``duplicate.matched`` it is dropped like an unmatched duplicate."""
    def still(src, _a, dst, _b, poses):
        return poses, gaussian_maps(poses, sigma=1.0)

    one = pose_at(200, 200)
    dup = pose_at(200, 200)
    dup.keypoints[0, 11:, :2] += (60, 0)  # shares 11 of 17 joints: OKS below NMS's 0.7, votes above 0.6
    dup.scores[:] = 0.5
    both = Poses.concat([one, dup])
    for matched, expected in [(True, [0]), (False, [0, 1])]:
        cfg = TrackerConfig(similarity=similarity, recovery=NO_RECOVERY,
                            duplicate=DuplicateConfig(matched=matched))
        tracker = Tracker(cfg, correspond=still)
        assert list(tracker.step(0, both, IMAGE).track_ids) == [0, 1]
        assert list(tracker.step(1, one, IMAGE).track_ids) == [0]
        assert list(tracker.step(2, both, IMAGE).track_ids) == expected, matched
        # The old track was not matched: it still waits from frame 0.
        assert {t.id: t.frame for t in tracker._tracks.values()}[1] == (0 if matched else 2)


def test_a_track_whose_match_was_a_duplicate_is_matched_again():
    """Frame 2 has one pose over two people (person 0's upper body, person 1's legs), like one tall
    detector box over both: it is person 1's track's best match (OKS 0.35 against 0.26 for person 1,
    who moved 12 px), but a duplicate of person 0, whose track is matched first. Dropped as such, it
    leaves person 1's track without a match; with ``rematch`` the track takes person 1 again, without
    it person 1 starts a new track."""
    p, q = pose_at(200, 200), pose_at(300, 200)
    over_both = pose_at(200, 200)
    over_both.keypoints[0, 11:, :2] = q.keypoints[0, 11:, :2]  # shares 11 of 17 joints with p
    over_both.scores[:] = 0.5
    frame2 = Poses.concat([p, over_both, pose_at(312, 200)])
    for rematch, expected in [(True, [0, 1]), (False, [0, 2])]:
        cfg = TrackerConfig(similarity="oks", recovery=NO_RECOVERY, motion_prior=False,
                            duplicate=DuplicateConfig(rematch=rematch))
        tracker = Tracker(cfg)
        for f in range(2):
            assert list(tracker.step(f, Poses.concat([p, q]), IMAGE).track_ids) == [0, 1]
        assert list(tracker.step(2, frame2, IMAGE).track_ids) == expected, rematch


def test_a_person_who_stopped_while_hidden_gets_the_id_back_at_the_last_box():
    """A walker (10 px a frame) is hidden in frames 4 - 8 and, seen again in frame 9, stands where he
    vanished. The motion prior has moved his track on 60 px and the correspondences of his last pose
    land elsewhere (as on someone who passed in front): only his last box, at IoU 1, finds him."""
    def moves(src, _a, dst, _b, poses):
        kp = poses.keypoints.copy()
        kp[..., 0] += 10.0 if dst - src == 1 else 200.0
        moved = poses.replace(keypoints=kp)
        return moved, gaussian_maps(moved, sigma=1.0)

    for iou, expected in [(0.8, [0]), (0.0, [1])]:
        tracker = Tracker(TrackerConfig(recovery=NO_RECOVERY, last_box_iou=iou), correspond=moves)
        for f in range(4):
            assert list(tracker.step(f, pose_at(150 + 10 * f, 200), IMAGE).track_ids) == [0]
        for f in range(4, 9):
            assert len(tracker.step(f, Poses.empty("coco17"), IMAGE)) == 0
        assert list(tracker.step(9, pose_at(180, 200), IMAGE).track_ids) == expected, iou


def test_a_person_back_out_of_reach_of_pose_and_box_gets_the_id_back_by_appearance():
    """A walker (10 px a frame) is hidden in frames 4 - 8 and comes back in frame 9 behind where he
    vanished (turned round): the correspondences of his last pose land 200 px off, the motion prior
    is 60 px beyond, his last box does not overlap. The embedder tells people by their x at frame 0
    (a stand-in for their looks): only the appearance stage finds him. A stranger who looks
    different, in the same place, still gets a new id."""
    def moves(src, _a, dst, _b, poses):
        kp = poses.keypoints.copy()
        kp[..., 0] += 10.0 if dst - src == 1 else 200.0
        moved = poses.replace(keypoints=kp)
        return moved, gaussian_maps(moved, sigma=1.0)

    looks = {}  # frame -> unit embedding of whoever is in it (one person per frame here)

    def embed(image, boxes):
        return np.stack([looks[int(image[0, 0, 0])]] * len(boxes))

    def frame(f):  # the image carries its frame number, so that the embedder can look it up
        im = IMAGE.copy()
        im[0, 0, 0] = f
        return im

    walker, stranger = np.array([1.0, 0.0]), np.array([0.6, 0.8])
    for appearance, who, expected in [(0.75, walker, [0]), (0.0, walker, [1]), (0.75, stranger, [1])]:
        tracker = Tracker(TrackerConfig(recovery=NO_RECOVERY, appearance=appearance), correspond=moves, embed=embed)
        for f in range(4):
            looks[f] = walker
            assert list(tracker.step(f, pose_at(150 + 10 * f, 200), frame(f)).track_ids) == [0]
        for f in range(4, 9):
            assert len(tracker.step(f, Poses.empty("coco17"), frame(f))) == 0
        looks[9] = who
        assert list(tracker.step(9, pose_at(120, 200), frame(9)).track_ids) == expected, (appearance, who)


def test_a_lost_track_takes_its_person_back_from_a_tentative_track_by_appearance():
    """The walker of the test above is hidden in frames 4 - 7; at 8 a partial detection of him (which
    looks different: 0.6) starts a tentative track, which in frame 9 takes him in the first stage.
    Confirmed tracks go first: the appearance stage lets his own lost track take him back."""
    def moves(src, _a, dst, _b, poses):
        kp = poses.keypoints.copy()
        kp[..., 0] += (10.0 if src < 4 else 0.0) if dst - src == 1 else 200.0
        moved = poses.replace(keypoints=kp)
        return moved, gaussian_maps(moved, sigma=1.0)

    looks = {f: np.array([1.0, 0.0]) for f in range(10)}
    looks[8] = np.array([0.6, 0.8])

    def embed(image, boxes):
        return np.stack([looks[int(image[0, 0, 0])]] * len(boxes))

    def frame(f):
        im = IMAGE.copy()
        im[0, 0, 0] = f
        return im

    for over, expected in [(True, [0]), (False, [1])]:
        cfg = TrackerConfig(recovery=NO_RECOVERY, appearance_over_tentative=over)
        tracker = Tracker(cfg, correspond=moves, embed=embed)
        for f in range(4):
            assert list(tracker.step(f, pose_at(150 + 10 * f, 200), frame(f)).track_ids) == [0]
        for f in range(4, 8):
            assert len(tracker.step(f, Poses.empty("coco17"), frame(f))) == 0
        assert list(tracker.step(8, pose_at(120, 200), frame(8)).track_ids) == [1]
        assert list(tracker.step(9, pose_at(120, 200), frame(9)).track_ids) == expected, over


def test_appearance_pairs_only_lost_tracks_and_mutual_best_leftovers():
    """Pure stage: a track seen in the previous frame is not lost (its person is not hidden);
    pairs must be each other's best, above the threshold; matched rows and columns stay out."""
    from corrtrack.pipeline.tracker import _Track, appearance_matches

    tracks = [_Track(i, pose_at(100 + 50 * i, 200), frame, hits=5) for i, frame in enumerate([8, 9, 5, 5])]
    cands = Poses.concat([pose_at(100 + 50 * i, 200) for i in range(4)])
    e = np.eye(4)
    te = np.stack([e[0], e[1], 0.9 * e[2] + 0.436 * e[3], 0.8 * e[2] + 0.6 * e[3]])
    ce = np.stack([e[0], e[1], e[2], e[3]])
    asked = []

    def rows_emb(rows):
        asked.append(rows)
        return te[rows]

    got = appearance_matches(tracks, cands, [(0, 0)], np.ones(4, bool), TrackerConfig(appearance=0.75), 10,
                             rows_emb, lambda cols: ce[cols])
    # row 1 was seen at frame 9 (not lost); rows 2 and 3 both like candidate 2 best, row 2 more:
    # row 3's best is taken, and candidate 3 (0.6 < 0.75 for row 3) stays unmatched.
    assert got == [(2, 2)] and asked == [[2, 3]]
    assert appearance_matches(tracks, cands, [(0, 0)], np.ones(4, bool), TrackerConfig(appearance=0.95), 10,
                              rows_emb, lambda cols: ce[cols]) == []
    # Rows 2 and 3 both look most like candidate 2; once row 2 has it, row 3's 0.8 with candidate 3 is
    # above the threshold but not its best: a look-alike, left unmatched rather than guessed.
    te[3] = 0.9 * e[2] + 0.436 * e[3]
    te[2] = e[2]
    ce[3] = 0.6 * e[2] + 0.8 * e[3]
    sim = te[[2, 3]] @ ce[[2, 3]].T
    assert sim[1, 1] > 0.75 and sim[1].argmax() == 0
    assert appearance_matches(tracks, cands, [(0, 0)], np.ones(4, bool), TrackerConfig(appearance=0.75), 10,
                              rows_emb, lambda cols: ce[cols]) == [(2, 2)]


def test_a_fresher_track_wins_a_near_tie_against_one_kept_alive():
    """Person 0 is hidden from frame 1 on; its kept-alive track's maps land exactly on person 1 in
    front, whose own track (matched in frame 1) moves 2 px off: without the recency penalty the
    hidden person's track would take person 1 (an ID switch)."""
    c = big_person(400)

    def moves(src, _a, dst, _b, poses):  # frame 1: nobody moves; frame 2: both tracks land on c
        kp = poses.keypoints.copy()
        if dst == 2:
            kp[..., :2] = c.keypoints[0, :, :2] + (0.0 if src == 0 else 2.0)
        moved = poses.replace(keypoints=kp)
        return moved, gaussian_maps(moved, sigma=1.0)

    for penalty, winner in [(0.03, 1), (0.0, 0)]:
        tracker = Tracker(TrackerConfig(recovery=NO_RECOVERY, recency_penalty=penalty), correspond=moves)
        assert list(tracker.step(0, Poses.concat([big_person(150), big_person(400)]), IMAGE).track_ids) == [0, 1]
        assert list(tracker.step(1, big_person(400), IMAGE).track_ids) == [1]
        assert list(tracker.step(2, c, IMAGE).track_ids) == [winner], penalty


def test_a_confirmed_track_is_matched_before_a_tentative_one():
    """A partial second detection of person 0 (legs only) in frame 2 starts a tentative track beside
    the person's own. Both wait through frame 3; in frame 4 only the legs are detected, which fit
    the tentative track best (OKS ~1 against 6/17): without the cascade it takes the person's id."""
    whole = pose_at(200, 200)
    legs = pose_at(200, 200)
    legs.keypoints[0, :11, 2] = 0.0  # hips, knees and ankles only
    legs.scores[:] = 0.5
    for confirmed_first, expected in [(True, [0]), (False, [1])]:
        cfg = TrackerConfig(similarity="oks", recovery=NO_RECOVERY, motion_prior=False,
                            confirmed_first=confirmed_first)
        tracker = Tracker(cfg)
        for f in range(2):
            assert list(tracker.step(f, whole, IMAGE).track_ids) == [0]
        assert list(tracker.step(2, Poses.concat([whole, legs]), IMAGE).track_ids) == [0, 1]
        assert len(tracker.step(3, Poses.empty("coco17"), IMAGE)) == 0
        assert list(tracker.step(4, legs, IMAGE).track_ids) == expected, confirmed_first


def test_tracker_checks_its_parts():
    with pytest.raises(ValueError, match="correspondence propagator"):
        Tracker(TrackerConfig(similarity="corr", recovery=NO_RECOVERY))
    with pytest.raises(ValueError, match="recovery needs"):
        Tracker(TrackerConfig(similarity="oks"))
    with pytest.raises(ValueError, match="embedder"):
        Tracker(TrackerConfig(similarity="reid", recovery=NO_RECOVERY))
    with pytest.raises(ValueError, match="unknown similarity"):
        TrackerConfig(similarity="nope")
    with pytest.raises(ValueError, match="image"):
        Tracker(TrackerConfig(similarity="flow", recovery=NO_RECOVERY)).step(0, pose_at(1, 1))
    assert TrackerConfig().match_threshold == 0.07 and TrackerConfig(similarity="oks").match_threshold == 0.2
    assert TrackerConfig(similarity="iou", threshold=0.5).match_threshold == 0.5


def test_poses_with_too_few_joints_are_not_tracked():
    p = pose_at(100, 100)
    p.keypoints[0, 1:, 2] = 0.05
    out = Tracker(TrackerConfig(similarity="oks", recovery=NO_RECOVERY)).step(0, p)
    assert len(out) == 0


def test_finalize_drops_short_tracks_thresholds_joints_and_renumbers():
    a, b = pose_at(100, 100), pose_at(300, 100)
    a.keypoints[0, :3, 2] = 0.2  # below the written threshold 0.3
    frames = [Poses.concat([a, b]).replace(track_ids=[5, 7]), a.replace(track_ids=[5]),
              a.replace(track_ids=[5]), b.replace(track_ids=[9])]
    cfg = TrackerConfig()
    counts = track_frame_counts(frames, cfg)
    assert counts == {5: 3, 7: 1, 9: 1}
    id_map = final_id_map(counts, cfg)
    assert id_map == {5: 0}
    out = finalize_frame(frames[0], id_map, cfg)
    assert out.track_ids.tolist() == [0]
    assert (out.keypoints[0, :3] == 0).all() and (out.keypoints[0, 3:, 2] == 0.9).all()
    assert len(finalize_frame(frames[3], id_map, cfg)) == 0


def test_merge_tracks_joins_tracklets_that_propagate_onto_each_other():
    # Track 0 walks right frames 0..9, is lost, and comes back as track 1 at frames 15..24;
    # track 2 is someone else further away; track 3 overlaps track 0 in time.
    def x(f):
        return 100 + 5 * f

    frames, idx = [], list(range(25))
    for f in idx:
        people, ids = [], []
        if f <= 9:
            people.append(pose_at(x(f), 200)), ids.append(0)
        if f >= 15:
            people += [pose_at(x(f), 200), pose_at(500, 300)]
            ids += [1, 2]
        if 5 <= f <= 12:
            people.append(pose_at(x(f), 320)), ids.append(3)
        frames.append(Poses.concat(people, layout="coco17").replace(track_ids=ids))
    tracklets = tracklets_from_frames(idx, frames)
    calls = []

    def propagate(src, dst, pose):  # the "network": people walk right at 5 px / frame
        calls.append((src, dst))
        kp = pose.keypoints.copy()
        kp[..., 0] += 5 * (dst - src)
        return pose.replace(keypoints=kp)

    mapping = merge_tracks(tracklets, propagate, MergeConfig(max_gap=30))
    assert mapping == {0: 0, 1: 0, 2: 2, 3: 3}
    assert (0, 15) in calls and (9, 15) in calls and (5, 15) in calls  # start, centre, end of track 0
    assert merge_tracks(tracklets, propagate, MergeConfig(max_gap=4)) == {0: 0, 1: 1, 2: 2, 3: 3}


# -- the run loop (corrtrack.pipeline.run) with fake networks on a generated frame folder --

def _frame_folder(tmp_path, world: World, n: int):
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    for f in range(n):
        img = np.full((480, 640, 3), 40, np.uint8)
        img[0, 0] = f  # the fakes read the frame number here (PNG is lossless)
        cv2.imwrite(str(folder / f"{f:06d}.png"), img)
    return folder


class _Fakes:
    """Detector + estimator answering from a World (the frame number is in pixel (0, 0))."""

    def __init__(self, world: World, interrupt_at: int | None = None):
        self.world, self.interrupt_at = world, interrupt_at

    def detect(self, image):
        f = int(image[0, 0, 0])
        if f == self.interrupt_at:
            raise KeyboardInterrupt
        self.world.frame = f
        det, _ = self.world.detections(f)
        return det

    def estimate(self, image, boxes):
        return boxes if isinstance(boxes, Poses) else self.world.estimate(image, boxes)


def _run_parts(world, **kw):
    from corrtrack.pipeline.run import Parts

    fakes = _Fakes(world, **kw)
    return Parts(fakes.detect, fakes.estimate, correspond=world.correspond)


def test_track_sequence_writes_all_outputs_and_skips_when_complete(tmp_path):
    from corrtrack.io.posetrack import read_posetrack
    from corrtrack.pipeline.run import RunConfig, discover_inputs, is_complete, output_path, track_many

    world = World({f: {0: (100 + 5 * f, 200), 1: (400, 200 + 2 * f)} | ({2: (500, 100)} if f < 2 else {})
                   for f in range(8)})
    seqs = discover_inputs(_frame_folder(tmp_path, world, 8))
    assert [s.kind for s in seqs] == ["folder"]
    out = tmp_path / "out"
    cfg = RunConfig(tracker=TrackerConfig(similarity="oks"), progress=False)
    from corrtrack.pipeline import run as run_mod

    res = run_mod.track_sequence(seqs[0], out, cfg, _run_parts(world))
    assert res.frames == 8 and res.tracks == 2  # person 2 lives 2 frames < min_track_length 3
    seq = read_posetrack(output_path(out, "posetrack", "frames"))
    assert len(seq) == 8 and [len(p) for p in seq.poses] == [2] * 8
    assert seq.track_ids() == [0, 1]
    for kind in ("coco", "csv", "summary"):
        assert output_path(out, kind, "frames").is_file()
    assert not list((out / "summary").glob(".spool*"))  # the spool is gone
    assert is_complete(out, "frames")
    # A batch run skips the complete sequence (without building any model).
    [skipped] = track_many(seqs, out, cfg)
    assert skipped.skipped


def test_interrupt_writes_the_frames_done(tmp_path):
    from corrtrack.io.posetrack import read_posetrack
    from corrtrack.pipeline import run as run_mod
    from corrtrack.pipeline.run import RunConfig, discover_inputs, is_complete, output_path

    world = World({f: {0: (100 + 5 * f, 200)} for f in range(8)})
    seqs = discover_inputs(_frame_folder(tmp_path, world, 8))
    out = tmp_path / "out"
    cfg = RunConfig(tracker=TrackerConfig(similarity="oks"), progress=False)
    res = run_mod.track_sequence(seqs[0], out, cfg, _run_parts(world, interrupt_at=5))
    assert res.interrupted and res.frames == 5
    seq = read_posetrack(output_path(out, "posetrack", "frames"))
    assert len(seq) == 5 and seq.track_ids() == [0]
    assert not is_complete(out, "frames")  # a later batch run tracks it again


def test_discover_inputs_rejects_what_it_cannot_track(tmp_path):
    from corrtrack.errors import CorrtrackError
    from corrtrack.pipeline.run import discover_inputs

    with pytest.raises(CorrtrackError, match="no such file"):
        discover_inputs(tmp_path / "nope.mp4")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CorrtrackError, match="holds no images, videos"):
        discover_inputs(tmp_path)
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "b.avi").write_bytes(b"")
    assert [s.name for s in discover_inputs(tmp_path)] == ["a", "b"]


def test_track_sequence_merges_broken_tracks(tmp_path):
    from corrtrack.io.posetrack import read_posetrack
    from corrtrack.pipeline import run as run_mod
    from corrtrack.pipeline.run import RunConfig, discover_inputs, output_path

    # Person 0 walks, is gone for frames 6..9 (longer than keep_alive) and comes back further on.
    pos = {f: {1: (500, 300)} | ({0: (100 + 10 * f, 200)} if not 6 <= f <= 9 else {}) for f in range(16)}
    world = World(pos)
    seqs = discover_inputs(_frame_folder(tmp_path, world, 16))
    no_rec = dict(similarity="oks", keep_alive=2, recovery=NO_RECOVERY)
    for merge, tracks in [(False, 3), (True, 2)]:
        out = tmp_path / f"out{merge}"
        cfg = RunConfig(tracker=TrackerConfig(merge=merge, **no_rec), progress=False)
        res = run_mod.track_sequence(seqs[0], out, cfg, _run_parts(World(pos)))
        assert res.tracks == tracks
        seq = read_posetrack(output_path(out, "posetrack", "frames"))
        first = {int(p.track_ids[np.argmin(p.keypoints[:, 11, 0])]) for f, p in enumerate(seq.poses) if len(p) == 2}
        assert len(first) == (1 if merge else 2)


def test_a_corrupt_frame_is_skipped_and_ids_continue(tmp_path, caplog):
    from corrtrack.io.posetrack import read_posetrack
    from corrtrack.pipeline import run as run_mod
    from corrtrack.pipeline.run import RunConfig, discover_inputs, output_path

    world = World({f: {0: (100 + 3 * f, 200), 1: (400, 250)} for f in range(10)})
    folder = _frame_folder(tmp_path, world, 10)
    (folder / "000004.png").write_bytes(b"not a png")
    cfg = RunConfig(tracker=TrackerConfig(similarity="oks"), progress=False)
    res = run_mod.track_sequence(discover_inputs(folder)[0], tmp_path / "out", cfg, _run_parts(world))
    assert res.frames == 10 and res.tracks == 2
    assert "000004.png" in caplog.text
    seq = read_posetrack(output_path(tmp_path / "out", "posetrack", "frames"))
    # The bad frame is written empty, so the frames stay aligned with the source.
    assert len(seq) == 10 and len(seq.poses[4]) == 0
    assert all(p.track_ids.tolist() == [0, 1] for i, p in enumerate(seq.poses) if i != 4)


def test_corr_propagator_keeps_features_of_frames_asked_out_of_order(monkeypatch):
    from corrtrack.pipeline import propagate
    from corrtrack.pipeline.run import CorrPropagator

    computed = []
    monkeypatch.setattr(propagate, "frame_features", lambda net, image: computed.append(int(image[0, 0, 0])) or
                        int(image[0, 0, 0]))
    prop = CorrPropagator(net=None, cache_size=2)
    frame = lambda i: np.full((4, 4, 3), i, np.uint8)  # noqa: E731
    assert [prop.features(i, frame(i)) for i in (5, 6, 0)] == [5, 6, 0]  # merging goes back to frame 0
    assert prop.features(6, frame(6)) == 6 and computed == [5, 6, 0]  # 6 was kept, 5 (least recent) went
    prop.features(5, frame(5))
    assert computed == [5, 6, 0, 5]


def test_write_tracked_finalises_like_track_sequence(tmp_path):
    from corrtrack.io.posetrack import read_posetrack
    from corrtrack.pipeline.run import RunConfig, discover_inputs, output_path, track_sequence, write_tracked

    world = World({f: {0: (100 + 5 * f, 200), 1: (400, 200 + 2 * f)} | ({2: (500, 100)} if f < 2 else {})
                   for f in range(8)})
    [seq] = discover_inputs(_frame_folder(tmp_path, world, 8))
    cfg = RunConfig(tracker=TrackerConfig(similarity="oks"), progress=False)
    track_sequence(seq, tmp_path / "a", cfg, _run_parts(world))
    tracker = Tracker(cfg.tracker, correspond=world.correspond, estimate=world.estimate)
    online = []
    for info, image in seq.frames():
        world.frame = info.index
        online.append((info, tracker.step(info.index, world.detections(info.index)[0], image)))
    res = write_tracked(seq, online, tmp_path / "b", cfg)
    assert res.frames == 8 and res.tracks == 2
    a, b = (read_posetrack(output_path(tmp_path / d, "posetrack", "frames")) for d in "ab")
    for pa, pb in zip(a.poses, b.poses):
        np.testing.assert_allclose(pa.keypoints, pb.keypoints)
        np.testing.assert_array_equal(pa.track_ids, pb.track_ids)


def test_keep_alive_defaults_per_similarity_and_an_explicit_value_wins():
    from corrtrack.pipeline.tracker import DEFAULT_KEEP_ALIVE

    assert TrackerConfig().max_age == DEFAULT_KEEP_ALIVE["corr"] == 50
    assert TrackerConfig(similarity="oks").max_age == 25
    assert TrackerConfig(similarity="corr", keep_alive=7).max_age == 7
    assert TrackerConfig(similarity="iou", keep_alive=0).max_age == 0


@pytest.mark.parametrize("seen_frames, tentative, same_id", [
    (2, 5, False),   # matched twice, gone 8 frames: a tentative track is forgotten after 5
    (2, 10, True),   # ... unless tentative tracks wait as long as the gap
    (3, 5, True),    # matched min_track_length times: the full keep-alive applies
])
def test_tentative_tracks_wait_less(seen_frames, tentative, same_id):
    # Person 0 is seen in the first `seen_frames` frames, gone 8 frames, then back at the same place.
    back = seen_frames + 8
    pos = {f: {1: (400, 200)} for f in range(back + 3)}
    for f in [*range(seen_frames), *range(back, back + 3)]:
        pos[f][0] = (100, 200)
    cfg = TrackerConfig(similarity="oks", keep_alive=25, tentative_keep_alive=tentative, recovery=NO_RECOVERY)
    seen = run(World(pos), Tracker(cfg), range(back + 3))
    assert (len(set(seen[0].values())) == 1) is same_id
    assert len(set(seen[1].values())) == 1


def test_tentative_keep_alive_is_capped_by_keep_alive():
    cfg = TrackerConfig(similarity="oks", keep_alive=3, tentative_keep_alive=5)
    assert cfg.track_max_age(1) == 3 and cfg.track_max_age(cfg.min_track_length) == 3
    assert TrackerConfig().track_max_age(1) == 5 and TrackerConfig().track_max_age(3) == 50
    with pytest.raises(ValueError, match="tentative_keep_alive"):
        TrackerConfig(tentative_keep_alive=-1)


@pytest.mark.parametrize("motion_prior, seen_frames, same_id", [
    (False, 6, False),  # gone 10 frames, 100 px on: OKS with the last pose is ~0
    (True, 6, True),    # its last pose moved on at its velocity lands on the person
    (True, 2, False),   # a tentative track (matched < 3 times) has no motion prior
])
def test_motion_prior_finds_a_walker_after_an_occluder(motion_prior, seen_frames, same_id):
    # Person 0 walks right at 10 px per frame and is hidden for 10 frames after `seen_frames`.
    gone = range(seen_frames, seen_frames + 10)
    n = seen_frames + 13
    pos = {f: {1: (500, 300)} for f in range(n)}
    for f in range(n):
        if f not in gone:
            pos[f][0] = (100 + 10 * f, 150)
    cfg = TrackerConfig(similarity="oks", keep_alive=25, tentative_keep_alive=25, recovery=NO_RECOVERY,
                        motion_prior=motion_prior)
    seen = run(World(pos), Tracker(cfg), range(n))
    assert sorted(seen[0]) == [f for f in range(n) if f not in gone]
    assert (len(set(seen[0].values())) == 1) is same_id
    assert len(set(seen[1].values())) == 1


def test_velocity_is_the_least_squares_slope_of_the_path():
    from corrtrack.pipeline.tracker import velocity

    assert velocity([]) is None and velocity([(3, 1.0, 2.0)]) is None
    np.testing.assert_allclose(velocity([(0, 0, 0), (1, 2, -1), (3, 6, -3)]), [2, -1])
    # noise on one point is averaged over the window, not taken whole
    np.testing.assert_allclose(velocity([(0, 0, 0), (1, 10, 0), (2, 20, 0), (3, 36, 0)]), [11.8, 0])
    with pytest.raises(ValueError, match="motion_window"):
        TrackerConfig(motion_window=1)


def test_a_detection_over_a_recovered_pose_starts_no_track():
    """Pure rule: only unmatched detected candidates, only over a *matched* recovered pose, at IoU >= the
    threshold; 0 turns it off."""
    from corrtrack.pipeline.tracker import covered_by_recovered

    cands = Poses.concat([pose_at(100, 200), pose_at(104, 200), pose_at(300, 200), pose_at(500, 200),
                          pose_at(503, 200)])
    cands = cands.replace(origin=np.array([0, RECOVERED, 0, RECOVERED, 0], np.int8))
    keep = np.ones(5, bool)
    # 0 lies over matched recovered 1; 2 is alone; 4 lies over recovered 3, which no track took.
    got = covered_by_recovered(cands, [(0, 1)], keep, TrackerConfig())
    assert got.tolist() == [True, False, False, False, False]
    assert not covered_by_recovered(cands, [(0, 1), (1, 0)], keep, TrackerConfig()).any()  # 0 is matched
    assert not covered_by_recovered(cands, [(0, 1)], keep, TrackerConfig(recovered_overlap_iou=0)).any()
    assert not covered_by_recovered(cands, [(0, 1)], keep, TrackerConfig(recovered_overlap_iou=0.99)).any()


@pytest.mark.parametrize("rule", [True, False])
def test_a_stray_detection_of_a_recovered_person_is_not_a_second_person(rule):
    """The detector's pose of person 0 at frame 5 has its upper body on someone behind him (shifted
    up): it does not match his track, so recovery re-estimates him in his propagated box and his track
    takes that. The stray detection covers the same box: it starts no track (else a second id for him)."""
    world = World({f: {0: (100 + 5 * f, 200)} for f in range(8)})
    cfg = TrackerConfig(similarity="oks", recovered_overlap_iou=0.5 if rule else 0.0)
    tracker = Tracker(cfg, correspond=world.correspond, estimate=world.estimate)
    for f in range(8):
        world.frame = f
        det, _ = world.detections(f)
        if f == 5:
            kp = det.keypoints.copy()
            kp[0, :11, 1] -= 35  # head, shoulders, arms
            det = Poses(kp, "coco17")  # its box around the joints: IoU ~0.7 with the recovered pose's
        out = tracker.step(f, det, IMAGE)
        if f == 5:
            assert RECOVERED in out.origin.tolist()  # the track kept its person through recovery
            assert len(out) == (1 if rule else 2)
        else:
            assert len(out) == 1 and out.track_ids[0] == 0


def test_a_lost_track_cannot_take_someone_farther_than_its_person_can_have_walked():
    from corrtrack.pipeline.tracker import _Track, out_of_reach

    # box height 100 (pose_at): a track seen 1 frame ago is never gated; one lost for 5 frames reaches
    # (1 + 0.2 x 5) = 2 heights, i.e. 200 px
    tracks = [_Track(0, pose_at(100, 200), 9), _Track(1, pose_at(100, 200), 5)]
    cands = Poses.concat([pose_at(290, 200), pose_at(320, 200)])
    got = out_of_reach(tracks, cands, np.array([1.0, 5.0]), 0.2)
    assert got.tolist() == [[False, False], [False, True]]
    # In the tracker: person 0 is hidden for 5 frames while a stranger appears 300 px away, and the
    # correspondences of the lost track land on him. With the gate he gets a new id.
    for reach, same in ((0.2, False), (0.0, True)):
        world = World({f: ({0: (100, 200)} if f < 3 else {}) | ({1: (400, 200)} if f >= 8 else {}) for f in range(10)})

        def correspond(src, _si, dst, _di, poses):
            kp = poses.keypoints.copy()
            if dst >= 8:
                kp[:, :, 0] += 300  # the maps of a long-lost pose "land on anyone"
            moved = poses.replace(keypoints=kp)
            return moved, gaussian_maps(moved, sigma=1.5)

        cfg = TrackerConfig(reach=reach, recovery=NO_RECOVERY, motion_prior=False, appearance=0)
        tracker = Tracker(cfg, correspond=correspond)
        ids = {}
        for f in range(10):
            det, gts = world.detections(f)
            out = tracker.step(f, det, IMAGE)
            ids.update({(g, f): int(t) for g, t in zip(gts, out.track_ids)})
        assert (ids[(1, 8)] == ids[(0, 0)]) == same, reach
