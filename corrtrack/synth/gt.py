"""Ground truth files of a generated sequence: PoseTrack 2018 and COCO with track ids.

Names follow PoseTrack so that the official evaluator accepts the files:
sequence ``SSSSSS_mpiinew_<preset>``, frames ``images/val/<sequence>/FFFFFF.jpg``,
image id = frame id = ``3 * 10**10 + S * 10**4 + F`` (3 = "mpiinew"), ``vid_id``
= ``SSSSSS``.

Who is annotated in a frame:

* A person shorter than ``min_height`` px (far away) is not annotated; the box
  of its visible pixels (+2 px) becomes an ignore region, as PoseTrack marks
  people too small to annotate.
* Joints strictly inside an ignore region are left out (the evaluators drop
  them anyway; leaving them out keeps GT-vs-GT exact).
* PoseTrack file: a person is listed when at least one of its joints is
  visible (see ``corrtrack.synth.render``); invisible joints are (0, 0, 0).
* COCO file (COCO-17 joints, the source's eyes and ears included): visibility
  2 = visible, 1 = in the frame but hidden behind a nearer person or a static
  occluder (its exact position is known), 0 = not there. A person is listed
  when any joint is 1 or 2; ``bbox`` and ``area`` are those of its visible
  pixels. Ignore regions are ``iscrowd`` annotations.
"""
from __future__ import annotations

import numpy as np

from corrtrack.layouts import COCO17, POSETRACK18
from corrtrack.structures import GROUND_TRUTH, FrameInfo, Poses, PoseSequence
from corrtrack.synth.events import measure_events, occluder_frames
from corrtrack.synth.render import K_PT, PersonTruth
from corrtrack.synth.scene import Scene

SOURCE_CODE = 3  # "mpiinew" in PoseTrack image ids
IGNORE_PAD = 2.0


def sequence_name(number: int, tag: str) -> str:
    return f"{number:06d}_mpiinew_{tag}"


def image_id(number: int, frame: int) -> int:
    return SOURCE_CODE * 10**10 + number * 10**4 + frame


def frame_file(name: str, frame: int) -> str:
    return f"images/val/{name}/{frame:06d}.jpg"


def _coco_categories() -> list[dict]:
    return [{"supercategory": "person", "id": 1, "name": "person", "keypoints": list(COCO17.joints),
             "skeleton": [[a + 1, b + 1] for a, b in COCO17.skeleton]}]


def _box_list(b: np.ndarray) -> list[float]:
    return [round(float(b[0]), 2), round(float(b[1]), 2), round(float(b[2] - b[0]), 2), round(float(b[3] - b[1]), 2)]


class GroundTruth:
    """Collects the truth of each rendered frame; produces the files' content and the events."""

    def __init__(self, scene: Scene):
        self.scene = scene
        self.ids = [a.track_id for a in scene.actors]
        self.frames: list[FrameInfo] = []
        self.poses: list[Poses] = []
        self.coco_images: list[dict] = []
        self.coco_annotations: list[dict] = []
        self._stats: dict[str, list] = {k: [] for k in ("own", "visible", "expected", "foot_u", "full_boxes",
                                                          "covered", "annotated")}
        self.ignore_regions = 0
        self.hidden_joints: list[list[np.ndarray]] = []  # per frame, per actor: PT joints covered by others

    def add(self, j: int, truths: list[PersonTruth]) -> None:
        cfg, sc = self.scene.cfg, self.scene
        W, H = cfg.width, cfg.height
        iid = image_id(sc.number, j)
        small = [t.in_frame and t.visible_pixels > 0 and t.height_px < cfg.min_height for t in truths]
        regions = []
        for t, s in zip(truths, small):
            if s:
                x1, y1, x2, y2 = t.box
                x1, y1 = max(0.0, x1 - IGNORE_PAD), max(0.0, y1 - IGNORE_PAD)
                x2, y2 = min(float(W), x2 + IGNORE_PAD), min(float(H), y2 + IGNORE_PAD)
                regions.append(np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]]))

        def outside_regions(pts: np.ndarray) -> np.ndarray:
            ok = np.ones(len(pts), bool)
            for r in regions:
                (x1, y1), (x2, y2) = r[0], r[2]
                ok &= ~((pts[:, 0] > x1) & (pts[:, 0] < x2) & (pts[:, 1] > y1) & (pts[:, 1] < y2))
            return ok

        self.ignore_regions += len(regions)
        kps, boxes, heads, tids = [], [], [], []
        annotated = np.zeros(len(truths), bool)
        hidden = []
        for i, (t, s) in enumerate(zip(truths, small)):
            ok = np.zeros(len(t.points), bool) if s else outside_regions(t.points)
            vis = t.visible & ok
            occ = t.occluded & ok
            hidden.append(np.where(occ[:K_PT, None], t.points[:K_PT], np.nan))
            pt = np.zeros((K_PT, 3))
            pt[vis[:K_PT]] = np.column_stack([t.points[:K_PT][vis[:K_PT]], np.ones(vis[:K_PT].sum())])
            if vis[:K_PT].any():
                annotated[i] = True
                kps.append(pt)
                boxes.append(t.box)
                heads.append(t.head_box)
                tids.append(self.ids[i])
            flags = np.where(vis[K_PT:], 2, np.where(occ[K_PT:], 1, 0))
            if flags.any():
                xy = np.where(flags[:, None] > 0, t.points[K_PT:], 0.0)
                box = t.box if t.box is not None else t.full_box
                self.coco_annotations.append({
                    "id": iid * 1000 + i, "image_id": iid, "category_id": 1, "track_id": self.ids[i],
                    "keypoints": [v for (x, y), f in zip(xy.tolist(), flags.tolist()) for v in (x, y, int(f))],
                    "num_keypoints": int((flags > 0).sum()), "bbox": _box_list(box),
                    "area": int(t.visible_pixels), "iscrowd": 0})
        for r_i, r in enumerate(regions):
            x1, y1, x2, y2 = r[0, 0], r[0, 1], r[2, 0], r[2, 1]
            self.coco_annotations.append({
                "id": iid * 1000 + 500 + r_i, "image_id": iid, "category_id": 1, "keypoints": [0] * 51,
                "num_keypoints": 0, "bbox": _box_list(np.array([x1, y1, x2, y2])),
                "area": int(round((x2 - x1) * (y2 - y1))), "iscrowd": 1})
        n = len(kps)
        self.poses.append(Poses(np.array(kps).reshape(n, K_PT, 3), POSETRACK18,
                                boxes=np.array(boxes).reshape(n, 4), scores=np.ones(n),
                                track_ids=np.array(tids, np.int64), origin=np.full(n, GROUND_TRUTH),
                                head_boxes=np.array(heads).reshape(n, 4)))
        self.frames.append(FrameInfo(index=j, time=round(j / cfg.output_fps, 6), file_name=frame_file(sc.name, j),
                                     width=W, height=H, image_id=iid, is_labeled=True, ignore_regions=regions))
        self.coco_images.append({"id": iid, "file_name": frame_file(sc.name, j), "width": W, "height": H,
                                 "frame_id": iid, "vid_id": f"{sc.number:06d}", "frame_index": j})
        self.hidden_joints.append(hidden)
        st = self._stats
        st["own"].append([t.own_pixels for t in truths])
        st["visible"].append([t.visible_pixels for t in truths])
        st["expected"].append([a.mask_area * (t.height_px / a.cutout.height_px) ** 2
                               for a, t in zip(sc.actors, truths)])
        st["foot_u"].append([t.foot[0] for t in truths])
        st["full_boxes"].append([t.full_box if t.full_box is not None else np.full(4, np.nan) for t in truths])
        st["covered"].append([t.covered_by for t in truths])
        st["annotated"].append(annotated)

    def posetrack(self) -> PoseSequence:
        sc = self.scene
        return PoseSequence(sc.name, self.frames, self.poses,
                            {"vid_id": f"{sc.number:06d}", "nframes": len(self.frames)})

    def coco(self) -> dict:
        sc = self.scene
        return {"info": {"description": f"corrtrack synthetic sequence {sc.name}", "version": "1"},
                "images": self.coco_images, "annotations": self.coco_annotations,
                "categories": _coco_categories()}

    def events(self) -> dict:
        st = {k: np.array(v) for k, v in self._stats.items() if k != "covered"}
        ev = measure_events(self.ids, st["own"], st["visible"], st["expected"], st["foot_u"],
                            st["full_boxes"], self._stats["covered"], st["annotated"])
        ev["counts"]["ignore_regions"] = self.ignore_regions
        if self.scene.occluders:  # only then: the counts (and files) of sequences without occluders stay as they were
            ev["counts"]["occluder_frames"] = occluder_frames(st["own"], st["expected"], self._stats["covered"])
        return ev
