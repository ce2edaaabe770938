"""COCO person keypoints: ground-truth files and results lists with ``track_id``.

Ground truth (``read_coco_keypoints``): one ``(FrameInfo, Poses)`` per image, in
the file's image order, COCO-17 layout, origin GROUND_TRUTH. Visibility 0 -> joint
score 0 (absent), 1 or 2 (occluded / visible) -> 1. ``iscrowd`` annotations are
not people: their boxes become the frame's ``ignore_regions`` (COCO evaluation
ignores detections inside crowd regions, as PoseTrack does with its ignore
regions). The raw annotation dicts (area, segmentation, ...) stay available
through ``load_coco_annotations``.

Results (``write_coco_results`` / ``read_coco_results``): the list format the
COCO evaluator reads, one entry per person: image_id, category_id 1, keypoints
(flat x, y, score), score, bbox (x, y, w, h), plus ``track_id``.
"""
from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from corrtrack.errors import CorrtrackError
from corrtrack.io.atomic import JsonStream, write_json
from corrtrack.layouts import COCO17, POSETRACK18, KeypointLayout, get_layout
from corrtrack.structures import DETECTED, GROUND_TRUTH, FrameInfo, Poses, PoseSequence

PERSON_CATEGORY_ID = 1
FramePoses = tuple[FrameInfo, Poses]


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise CorrtrackError(f"{path}: no such file")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except UnicodeDecodeError:
        raise CorrtrackError(f"{path}: not a JSON text file") from None
    except json.JSONDecodeError as e:
        raise CorrtrackError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None


def _load_gt(path: str | os.PathLike) -> tuple[Path, dict]:
    """Load and check a COCO person-keypoints annotation file."""
    path = Path(path)
    data = _read_json(path)
    if isinstance(data, list):
        raise CorrtrackError(f"{path}: is a list (a results file?), not a COCO annotation file; "
                             "use read_coco_results")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise CorrtrackError(f"{path}: not a COCO annotation file (needs 'images' and 'annotations' lists)")
    cats = [c for c in data.get("categories") or [] if isinstance(c, dict) and c.get("keypoints")]
    has_kpts = any(isinstance(a, dict) and "keypoints" in a for a in data["annotations"])
    if not cats and not has_kpts:
        raise CorrtrackError(f"{path}: not a COCO person-keypoints file (no category or annotation has keypoints)")
    for cat in cats:
        names = tuple(cat["keypoints"])
        if names == COCO17.joints:
            continue
        if names == POSETRACK18.joints:
            raise CorrtrackError(f"{path}: keypoints are in the PoseTrack-18 layout (head_bottom, head_top); "
                                 "read it with read_posetrack")
        raise CorrtrackError(f"{path}: category {cat.get('name', cat.get('id'))!r} has {len(names)} keypoints "
                             f"({', '.join(map(str, names[:4]))}, ...); only the COCO-17 layout is supported")
    return path, data


def _keypoint_cat_ids(data: dict) -> set | None:
    """Ids of the categories with keypoints (None: no categories listed, take every annotation)."""
    cats = [c for c in data.get("categories") or [] if isinstance(c, dict) and c.get("keypoints")]
    return {c.get("id") for c in cats} if cats else None


def load_coco_annotations(path: str | os.PathLike) -> dict[int, list[dict]]:
    """The raw annotation dicts of each image (crowd ones included), keyed by image id.

    For fields ``read_coco_keypoints`` does not carry: area, segmentation,
    num_keypoints, ids. Images without annotations map to an empty list.
    """
    path, data = _load_gt(path)
    cat_ids = _keypoint_cat_ids(data)
    out: dict[int, list[dict]] = {img["id"]: [] for img in data["images"]}
    for ann in data["annotations"]:
        if cat_ids is not None and ann.get("category_id") not in cat_ids:
            continue
        if ann.get("image_id") not in out:
            raise CorrtrackError(f"{path}: annotation {ann.get('id')} refers to image {ann.get('image_id')}, "
                                 "which is not in 'images'")
        out[ann["image_id"]].append(ann)
    return out


def _keypoints(path: Path, ann: dict, layout: KeypointLayout) -> np.ndarray:
    flat = ann.get("keypoints")
    k = layout.num_joints
    try:
        kp = np.asarray(flat, dtype=np.float64)
    except (TypeError, ValueError):
        kp = np.zeros(0)
    if kp.shape != (k * 3,) or not np.isfinite(kp).all():
        n = len(flat) if isinstance(flat, list) else 0
        raise CorrtrackError(f"{path}: annotation {ann.get('id', '?')} (image {ann.get('image_id')}) has "
                             f"{n} keypoint values, expected {k * 3} finite numbers for {layout.name}")
    return kp.reshape(k, 3)


def _xyxy(path: Path, ann: dict) -> np.ndarray | None:
    box = ann.get("bbox")
    if box is None:
        return None
    try:
        x, y, w, h = (float(v) for v in box)
    except (TypeError, ValueError):
        raise CorrtrackError(f"{path}: annotation {ann.get('id', '?')} has a bad bbox {box!r}") from None
    return np.array([x, y, x + w, y + h])


def read_coco_keypoints(path: str | os.PathLike, image_root: str | os.PathLike | None = None) -> list[FramePoses]:
    """One ``(FrameInfo, Poses)`` per image of a COCO person-keypoints file.

    ``image_root``, if given, is joined to each image's file name.
    """
    path, data = _load_gt(path)
    by_image = load_coco_annotations(path)
    out: list[FramePoses] = []
    for index, img in enumerate(data["images"]):
        file_name = img.get("file_name")
        if image_root is not None and file_name is not None:
            file_name = str(Path(image_root) / file_name)
        info = FrameInfo(index=index, file_name=file_name, width=img.get("width"), height=img.get("height"),
                         image_id=img["id"])
        kps, boxes, tids = [], [], []
        for ann in by_image[img["id"]]:
            box = _xyxy(path, ann)
            if ann.get("iscrowd"):
                if box is not None:
                    x1, y1, x2, y2 = box
                    info.ignore_regions.append(np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]]))
                continue
            kp = _keypoints(path, ann, COCO17)
            kp[:, 2] = (kp[:, 2] > 0).astype(np.float64)
            kps.append(kp)
            boxes.append(box)
            tids.append(int(ann["track_id"]) if ann.get("track_id") is not None else -1)
        out.append((info, _poses(kps, boxes, [1.0] * len(kps), tids, GROUND_TRUTH, COCO17)))
    return out


def _poses(kps: list, boxes: list, scores: list, tids: list, origin: int, layout: KeypointLayout) -> Poses:
    """Poses from per-person lists; a None box or score keeps the Poses default (from the joints)."""
    if not kps:
        return Poses.empty(layout)
    kp = np.stack(kps)
    poses = Poses(kp, layout, track_ids=np.array(tids), origin=np.full(len(kps), origin))
    for i, (box, score) in enumerate(zip(boxes, scores)):
        if box is not None:
            poses.boxes[i] = box
        if score is not None:
            poses.scores[i] = score
    return poses


# -- results ----------------------------------------------------------------

ResultsInput = PoseSequence | Sequence[PoseSequence] | Sequence[FramePoses]


def _frame_items(data: ResultsInput) -> Iterable[tuple[int, FramePoses]]:
    """(sequence number, (frame, poses)) for every frame of the accepted inputs."""
    if isinstance(data, PoseSequence):
        data = [data]
    for s, item in enumerate(data):
        if isinstance(item, PoseSequence):
            for fp in item:
                yield s, fp
        else:
            frame, poses = item
            yield 0, (frame, poses)


def _num(v: float, digits: int) -> float:
    return round(float(v), digits) if math.isfinite(v) else 0.0


def write_coco_results(path: str | os.PathLike, data: ResultsInput,
                       layout: str | KeypointLayout | None = None) -> int:
    """Write people as a COCO results list with ``track_id``; returns the entry count.

    ``data`` is a PoseSequence, a list of them, or ``(FrameInfo, Poses)`` pairs.
    ``image_id`` is the frame's ``image_id``; frames without one use their index,
    which is only unambiguous for a single sequence. ``layout`` converts the
    keypoints first (default: keep each frame's own layout).
    """
    path = Path(path)
    count = 0

    def entries():  # streamed: a tracker's poses come from disk, never all in memory
        nonlocal count
        seen: dict[Any, int] = {}
        for seq_no, (frame, poses) in _frame_items(data):
            image_id = frame.image_id
            if image_id is None:
                if seq_no > 0:
                    raise CorrtrackError(f"{path}: frames of several sequences have no image_id; "
                                         "results could not be told apart")
                image_id = frame.index
            if seen.setdefault(image_id, seq_no) != seq_no:
                raise CorrtrackError(f"{path}: image_id {image_id} occurs in two sequences")
            if layout is not None:
                poses = poses.to_layout(layout)
            for i in range(len(poses)):
                x1, y1, x2, y2 = poses.boxes[i]
                kp = poses.keypoints[i]
                count += 1
                yield {
                    "image_id": int(image_id) if isinstance(image_id, (int, np.integer)) else image_id,
                    "category_id": PERSON_CATEGORY_ID,
                    "keypoints": [_num(v, 6 if j % 3 == 2 else 3) for j, v in enumerate(kp.reshape(-1))],
                    "score": _num(poses.scores[i], 6),
                    "bbox": [_num(x1, 3), _num(y1, 3), _num(x2 - x1, 3), _num(y2 - y1, 3)],
                    "track_id": int(poses.track_ids[i]),
                }

    write_json(path, JsonStream(entries()))
    return count


def read_coco_results(path: str | os.PathLike, layout: str | KeypointLayout = COCO17,
                      frames: Sequence[FrameInfo] | None = None) -> list[FramePoses]:
    """Read a COCO keypoint results list (``track_id`` optional, -1 if missing).

    Without ``frames``: one entry per image id that has results, sorted by id,
    with ``FrameInfo.index`` = position. With ``frames`` (e.g. from the ground
    truth): one entry per given frame, matched by ``image_id``, empty where the
    results have nobody; results for unknown image ids are an error.
    """
    path = Path(path)
    layout = get_layout(layout)
    data = _read_json(path)
    if isinstance(data, dict) and "annotations" in data:
        raise CorrtrackError(f"{path}: is a COCO annotation file, not a results list; use read_coco_keypoints")
    if not isinstance(data, list) or not all(isinstance(r, dict) and "image_id" in r and "keypoints" in r
                                             for r in data):
        raise CorrtrackError(f"{path}: not a COCO keypoint results list "
                             "(expected a JSON list of objects with image_id and keypoints)")
    groups: dict[Any, list[dict]] = defaultdict(list)
    for r in data:
        if r.get("category_id", PERSON_CATEGORY_ID) == PERSON_CATEGORY_ID:
            groups[r["image_id"]].append(r)
    if frames is None:
        try:
            ids = sorted(groups)
        except TypeError:
            ids = list(groups)
        frames = [FrameInfo(index=i, image_id=iid) for i, iid in enumerate(ids)]
    else:
        unknown = set(groups) - {f.image_id for f in frames}
        if unknown:
            raise CorrtrackError(f"{path}: results for image ids not among the frames: "
                                 f"{sorted(map(str, unknown))[:5]}")
    out = []
    for frame in frames:
        rows = groups.get(frame.image_id, [])
        kps = [_keypoints(path, r, layout) for r in rows]
        boxes = [_xyxy(path, r) for r in rows]
        scores = [float(r["score"]) if r.get("score") is not None else None for r in rows]
        tids = [int(r["track_id"]) if r.get("track_id") is not None else -1 for r in rows]
        out.append((frame, _poses(kps, boxes, scores, tids, DETECTED, layout)))
    return out
