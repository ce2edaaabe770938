"""PoseTrack 2017 (``annolist``) and 2018 (``images``/``annotations``) files.

Reading keeps everything the official evaluator (poseval) looks at, in our
containers:

* 2018 files become ``POSETRACK18`` poses (17 slots), 2017 files ``POSEVAL15``.
* Joint presence follows poseval: a joint is absent only when x, y and the
  visibility flag are all 0. An absent joint is stored as (0, 0, 0); a present
  one as (x, y, score) with the per-joint ``scores`` when the person has them
  (2017: each point's ``score``), else the visibility flag (2017: 1).
* ``meta`` holds ``format`` (2017/2018), ``path``, and for 2018 the file's
  ``categories`` and, when given, ``vid_id``, ``nframes`` and ``frame_ids``.
* A person without per-joint scores gets origin ``GROUND_TRUTH`` (this is how
  the evaluator knows poseval would give its joints the fallback score -9999).
* Head boxes (``bbox_head`` [x, y, w, h] or 2017 ``x1, y1, x2, y2``) become
  xyxy ``head_boxes``; ``bbox`` becomes xyxy ``boxes``; a missing ``track_id``
  becomes -1.

Writing produces the 2018 format poseval reads. Frames without an
``image_id`` get PoseTrack's own id (``posetrack18_fname2id`` in poseval)::

    image_id = T * 10**10 + S * 10**4 + F

with ``T`` the source of the sequence (1 mpii, 2 bonn, 3 mpiinew; 1 when the
name does not say), ``S`` the sequence number (the leading digits of the
sequence name or ``vid_id``; 0 when there are none) and ``F`` the frame number
(the stem of ``file_name`` when it is an integer, else the frame index). E.g.
frame 0 of ``012834_mpii_test`` is 10128340000. Person ``i`` of a frame gets
annotation id ``image_id * 100 + i`` (as poseval's own converter does).
"""
from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from corrtrack.errors import CorrtrackError
from corrtrack.io.atomic import JsonStream, write_json
from corrtrack.layouts import POSETRACK18, POSEVAL15
from corrtrack.structures import DETECTED, GROUND_TRUTH, FrameInfo, Poses, PoseSequence

# PoseTrack's sequence sources as encoded in the leading digit of an image id.
_SOURCES = {"mpii": 1, "bonn": 2, "mpiinew": 3}
# The 15 joints poseval needs in a 2018 file's category.
_REQUIRED_JOINTS = set(POSEVAL15.joints)


def _fail(path: str | os.PathLike, problem: str) -> CorrtrackError:
    return CorrtrackError(f"{path}: {problem}")


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise _fail(path, "no such file" if not path.exists() else "not a file")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _fail(path, f"not a valid JSON file ({e})") from None
    except OSError as e:
        raise _fail(path, f"cannot read ({e.strerror})") from None


# -- reading -------------------------------------------------------------------


def read_posetrack(path: str | os.PathLike) -> PoseSequence:
    """Read one PoseTrack 2017 or 2018 annotation/prediction file (one sequence)."""
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, dict) or not ("annolist" in data or "images" in data):
        raise _fail(path, "not a PoseTrack annotation file (no 'images'/'annotations' or 'annolist')")
    try:
        if "annolist" in data:
            return _read_2017(path, data)
        return _read_2018(path, data)
    except CorrtrackError:
        raise
    except (KeyError, IndexError, TypeError, ValueError) as e:
        what = f"missing key {e}" if isinstance(e, KeyError) else str(e)
        raise _fail(path, f"malformed PoseTrack file ({what})") from None


def read_posetrack_dir(folder: str | os.PathLike) -> list[PoseSequence]:
    """Read every ``*.json`` in ``folder`` (sorted by name); sequence name = file stem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise _fail(folder, "no such folder" if not folder.exists() else "not a folder")
    files = sorted(folder.glob("*.json"))
    if not files:
        raise _fail(folder, "no *.json files")
    return [read_posetrack(f) for f in files]


def _joint_table(path: Path, categories: Any) -> list[int | None]:
    """For each keypoint name of the file's category, its slot in POSETRACK18 (or None)."""
    if not isinstance(categories, list) or len(categories) != 1 or not isinstance(categories[0], dict):
        raise _fail(path, "'categories' must hold exactly one category (person)")
    names = categories[0].get("keypoints")
    if not isinstance(names, list):
        raise _fail(path, "the category has no 'keypoints' list")
    missing = _REQUIRED_JOINTS - set(names)
    if missing:
        raise _fail(path, f"the category's keypoints lack {', '.join(sorted(missing))}")
    return [POSETRACK18.index(n) if n in POSETRACK18.joints else None for n in names]


def _read_2018(path: Path, data: dict) -> PoseSequence:
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise _fail(path, f"not a PoseTrack 2018 file (no '{key}')")
    table = _joint_table(path, data["categories"])
    nk = len(table)
    images = data["images"]
    if not isinstance(images, list) or not isinstance(data["annotations"], list):
        raise _fail(path, "'images' and 'annotations' must be lists")

    frames: list[FrameInfo] = []
    frame_ids: list[int | None] = []
    position: dict[Any, int] = {}
    for i, im in enumerate(images):
        if not isinstance(im, dict) or "id" not in im:
            raise _fail(path, f"image {i} has no 'id'")
        position.setdefault(im["id"], i)  # poseval uses the first image of an id
        regions = []
        rx, ry = im.get("ignore_regions_x") or [], im.get("ignore_regions_y") or []
        if len(rx) != len(ry):
            raise _fail(path, f"image {im['id']}: ignore_regions_x and _y differ in length")
        for xs, ys in zip(rx, ry):
            if len(xs) != len(ys):
                raise _fail(path, f"image {im['id']}: an ignore region has {len(xs)} x but {len(ys)} y values")
            regions.append(np.column_stack([np.asarray(xs, np.float64), np.asarray(ys, np.float64)]).reshape(-1, 2))
        frames.append(FrameInfo(
            index=i, file_name=im.get("file_name"), width=im.get("width"), height=im.get("height"),
            image_id=im["id"], is_labeled=bool(im.get("is_labeled", True)), ignore_regions=regions))
        frame_ids.append(im.get("frame_id"))

    people: list[list[dict]] = [[] for _ in images]
    for a in data["annotations"]:
        if not isinstance(a, dict) or "image_id" not in a:
            raise _fail(path, "an annotation has no 'image_id'")
        if a["image_id"] in position:  # poseval silently drops the others
            people[position[a["image_id"]]].append(a)

    poses = [_poses_2018(path, anns, table, nk) for anns in people]
    meta: dict = {"format": 2018, "path": str(path), "categories": data["categories"]}
    first = images[0] if images else {}
    for key in ("vid_id", "nframes"):
        if key in first:
            meta[key] = first[key]
    if any(f is not None for f in frame_ids):
        meta["frame_ids"] = frame_ids
    return PoseSequence(path.stem, frames, poses, meta)


def _poses_2018(path: Path, anns: list[dict], table: list[int | None], nk: int) -> Poses:
    n = len(anns)
    kp = np.zeros((n, POSETRACK18.num_joints, 3))
    boxes = np.full((n, 4), np.nan)
    head = np.full((n, 4), np.nan)
    scores = np.full(n, np.nan)
    tids = np.full(n, -1, np.int64)
    origin = np.full(n, DETECTED, np.int8)
    slots = np.array([j if j is not None else -1 for j in table])
    keep = slots >= 0
    for i, a in enumerate(anns):
        raw = np.asarray(a.get("keypoints", []), np.float64)
        if raw.size != 3 * nk:
            raise _fail(path, f"annotation {a.get('id', i)} has {raw.size} keypoint values, expected {3 * nk}")
        raw = raw.reshape(nk, 3)
        present = ~((raw[:, 0] == 0) & (raw[:, 1] == 0) & (raw[:, 2] == 0))
        js = a.get("scores")
        if js:  # poseval treats [] like a missing list
            js = np.asarray(js, np.float64)
            if js.size != nk:
                raise _fail(path, f"annotation {a.get('id', i)} has {js.size} scores, expected {nk}")
            raw = np.column_stack([raw[:, :2], js])
        else:
            origin[i] = GROUND_TRUTH
        raw[~present] = 0
        kp[i, slots[keep]] = raw[keep]
        if a.get("bbox") is not None:
            x, y, w, h = a["bbox"]
            boxes[i] = [x, y, x + w, y + h]
        if a.get("bbox_head") is not None:
            x, y, w, h = a["bbox_head"]
            head[i] = [x, y, x + w, y + h]
        if a.get("score") is not None:
            scores[i] = a["score"]
        if a.get("track_id") is not None:
            tids[i] = int(a["track_id"])
    return _make_poses(kp, POSETRACK18, boxes, scores, tids, origin, head)


def _make_poses(kp, layout, boxes, scores, tids, origin, head) -> Poses:
    """Poses with the container's defaults where a file did not give boxes or scores."""
    default = Poses(kp, layout)
    boxes = np.where(np.isnan(boxes), default.boxes, boxes)
    scores = np.where(np.isnan(scores), default.scores, scores)
    return Poses(kp, layout, boxes, scores, tids, origin, head)


def _one(v: Any) -> Any:
    """2017 files wrap every value in a one-element list."""
    return v[0] if isinstance(v, list) else v


def _read_2017(path: Path, data: dict) -> PoseSequence:
    annolist = data["annolist"]
    if not isinstance(annolist, list):
        raise _fail(path, "'annolist' must be a list")
    frames, poses = [], []
    for i, entry in enumerate(annolist):
        image = entry.get("image")
        name = _one(image).get("name") if image else None
        regions = []
        for r in entry.get("ignore_regions") or []:
            pts = r.get("point") or []
            regions.append(np.array([[_one(p["x"]), _one(p["y"])] for p in pts], np.float64).reshape(-1, 2))
        labeled = entry.get("is_labeled")
        frames.append(FrameInfo(index=i, file_name=name, is_labeled=bool(_one(labeled)) if labeled is not None else True,
                                ignore_regions=regions))
        rects = [r for r in entry.get("annorect") or [] if _has_points(r)]
        n = len(rects)
        kp = np.zeros((n, POSEVAL15.num_joints, 3))
        head = np.full((n, 4), np.nan)
        scores = np.full(n, np.nan)
        tids = np.full(n, -1, np.int64)
        origin = np.full(n, GROUND_TRUTH, np.int8)
        for p, r in enumerate(rects):
            for pt in r["annopoints"][0]["point"]:
                j = int(_one(pt["id"]))
                if not 0 <= j < POSEVAL15.num_joints:
                    raise _fail(path, f"frame {i}: joint id {j} outside 0..14")
                if kp[p, j].any():
                    continue  # poseval takes the first point of an id
                s = pt.get("score")
                if s is not None:
                    origin[p] = DETECTED
                kp[p, j] = [_one(pt["x"]), _one(pt["y"]), _one(s) if s is not None else 1.0]
            if all(k in r for k in ("x1", "y1", "x2", "y2")):
                head[p] = [_one(r["x1"]), _one(r["y1"]), _one(r["x2"]), _one(r["y2"])]
            if r.get("score") is not None:
                scores[p] = _one(r["score"])
            if r.get("track_id") is not None:
                tids[p] = int(_one(r["track_id"]))
        poses.append(_make_poses(kp, POSEVAL15, np.full((n, 4), np.nan), scores, tids, origin, head))
    return PoseSequence(path.stem, frames, poses, {"format": 2017, "path": str(path)})


def _has_points(rect: dict) -> bool:
    """poseval keeps a 2017 person only when it has ``annopoints[0].point``."""
    ap = rect.get("annopoints")
    return bool(ap) and isinstance(ap[0], dict) and "point" in ap[0]


# -- writing -------------------------------------------------------------------


def _sequence_code(seq: PoseSequence) -> tuple[int, int]:
    """(T, S) of PoseTrack image ids from the sequence name (or vid_id)."""
    name = seq.name
    if seq.frames and seq.frames[0].file_name:
        name = PurePosixPath(seq.frames[0].file_name).parent.name or name
    tok = name.split("_")
    digits = tok[0] if tok[0].isdigit() else str(seq.meta.get("vid_id", ""))
    s = int(digits) if digits.isdigit() else 0
    t = _SOURCES.get(tok[1], 1) if len(tok) > 1 else 1
    return t, s


def posetrack_image_id(seq: PoseSequence, frame: FrameInfo) -> int:
    """The frame's image id: its own, or PoseTrack's rule (see module doc)."""
    if frame.image_id is not None:
        return int(frame.image_id)
    t, s = _sequence_code(seq)
    f = frame.index
    if frame.file_name:
        stem = PurePosixPath(frame.file_name).stem
        if stem.isdigit():
            f = int(stem)
    return t * 10**10 + s * 10**4 + f


def _num(v: float) -> float | int:
    """Plain JSON numbers: integral floats as ints keep files small and diffable."""
    v = float(v)
    return int(v) if v.is_integer() and abs(v) < 2**53 else v


def write_posetrack(path: str | os.PathLike, seq: PoseSequence, *, ground_truth: bool = False) -> None:
    """Write ``seq`` as a PoseTrack 2018 file (atomically) that poseval reads.

    Predictions carry per-joint ``scores``; with ``ground_truth=True`` the file
    is a GT file instead: visibility flags 1/0, ``bbox_head``, ignore regions,
    ``num_keypoints``. A track id of -1 is left out (poseval then refuses the
    file for evaluation: it needs ids even for AP).
    """
    vid_id = seq.meta.get("vid_id")
    if vid_id is None:
        t, s = _sequence_code(seq)
        vid_id = f"{s:06d}"
    nframes = seq.meta.get("nframes", len(seq))
    frame_ids = seq.meta.get("frame_ids")
    if not frame_ids or len(frame_ids) != len(seq):
        frame_ids = [None] * len(seq)

    def images():
        for fi, frame in enumerate(seq.frames):
            image_id = posetrack_image_id(seq, frame)
            file_name = frame.file_name or f"images/{seq.name}/{frame.index:06d}.jpg"
            im: dict[str, Any] = {"id": image_id, "file_name": file_name, "vid_id": vid_id,
                                  "frame_id": frame_ids[fi] if frame_ids[fi] is not None else image_id,
                                  "nframes": nframes, "is_labeled": bool(frame.is_labeled)}
            if frame.width is not None:
                im["width"] = int(frame.width)
            if frame.height is not None:
                im["height"] = int(frame.height)
            if frame.ignore_regions or ground_truth:
                im["ignore_regions_x"] = [[_num(v) for v in r[:, 0]] for r in frame.ignore_regions]
                im["ignore_regions_y"] = [[_num(v) for v in r[:, 1]] for r in frame.ignore_regions]
            yield im

    def annotations():  # a second pass over the poses: a tracker's poses stream from disk
        for frame, poses in seq:
            image_id = posetrack_image_id(seq, frame)
            pt = poses.to_layout(POSETRACK18)
            for i in range(len(pt)):
                yield _annotation(pt, i, image_id, ground_truth)

    categories = seq.meta.get("categories") if seq.meta.get("format") == 2018 else None
    if not categories:
        categories = [{"supercategory": "person", "id": 1, "name": "person",
                       "keypoints": list(POSETRACK18.joints),
                       "skeleton": [[a + 1, b + 1] for a, b in POSETRACK18.skeleton]}]
    elif list(categories[0].get("keypoints", [])) != list(POSETRACK18.joints):
        categories = [dict(categories[0], keypoints=list(POSETRACK18.joints))]
    write_json(path, {"images": JsonStream(images()), "annotations": JsonStream(annotations()),
                      "categories": categories})


def _annotation(pt: Poses, i: int, image_id: int, ground_truth: bool) -> dict:
    kp = pt.keypoints[i]
    present = ~((kp[:, 0] == 0) & (kp[:, 1] == 0) & (kp[:, 2] == 0))
    flat = []
    for (x, y, s), p in zip(kp, present):
        flat += [_num(x), _num(y), 1 if p else 0] if p else [0, 0, 0]
    x1, y1, x2, y2 = pt.boxes[i]
    a: dict[str, Any] = {"image_id": image_id, "category_id": 1, "id": image_id * 100 + i,
                         "keypoints": flat, "bbox": [_num(x1), _num(y1), _num(x2 - x1), _num(y2 - y1)],
                         "score": _num(pt.scores[i])}
    if pt.track_ids[i] >= 0:
        a["track_id"] = int(pt.track_ids[i])
    if ground_truth or pt.origin[i] == GROUND_TRUTH:
        # No per-joint scores: the third value is the visibility flag. A GT flag
        # can be 0 on a present joint (poseval still counts it), so GT keeps its own.
        if pt.origin[i] == GROUND_TRUTH:
            for j in np.flatnonzero(present):
                a["keypoints"][3 * j + 2] = _num(kp[j, 2])
        a["scores"] = []
        a["num_keypoints"] = int(present.sum())
    else:
        a["scores"] = [_num(s) if p else 0 for s, p in zip(kp[:, 2], present)]
    hb = pt.head_boxes[i]
    if not np.isnan(hb).any():
        a["bbox_head"] = [_num(hb[0]), _num(hb[1]), _num(hb[2] - hb[0]), _num(hb[3] - hb[1])]
    elif ground_truth:
        raise CorrtrackError(f"image {image_id}: person {i} has no head box, which PoseTrack ground truth needs")
    return a
