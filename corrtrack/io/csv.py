"""A flat CSV of tracked joints: ``frame,time,track_id,joint,x,y,score``.

One row per present joint (score > 0), for spreadsheets and pandas. ``frame`` is
the frame's index in the source, ``time`` its time in seconds (empty if
unknown), ``joint`` the layout's joint name. Rows of one person are
consecutive and in the layout's joint order; ``read_csv`` relies on that to
tell apart untracked people (track_id -1) of the same frame.

The CSV keeps only joints: people without a present joint and frames without
people are not written, and on reading boxes and person scores are rebuilt
from the joints (tight box, mean joint score).
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np

from corrtrack.errors import CorrtrackError
from corrtrack.io.atomic import atomic_open
from corrtrack.layouts import KeypointLayout, get_layout
from corrtrack.structures import FrameInfo, Poses, PoseSequence

COLUMNS = ("frame", "time", "track_id", "joint", "x", "y", "score")


def write_csv(path: str | os.PathLike, seq: PoseSequence) -> int:
    """Write ``seq`` as one row per present joint; returns the number of rows."""
    rows = 0
    with atomic_open(path, "w") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLUMNS)
        for frame, poses in seq:
            time = "" if frame.time is None else f"{frame.time:.6f}"
            names = poses.layout.joints
            for kp, tid in zip(poses.keypoints, poses.track_ids):
                for j in np.flatnonzero(kp[:, 2] > 0):
                    x, y, s = kp[j]
                    w.writerow((frame.index, time, int(tid), names[j], f"{x:.3f}", f"{y:.3f}", f"{s:.5f}"))
                    rows += 1
    return rows


def read_csv(path: str | os.PathLike, layout: str | KeypointLayout, name: str | None = None) -> PoseSequence:
    """Read a CSV written by ``write_csv`` back into a PoseSequence in ``layout``."""
    path = Path(path)
    layout = get_layout(layout)
    if not path.is_file():
        raise CorrtrackError(f"{path}: no such file")
    joint_index = {j: i for i, j in enumerate(layout.joints)}
    # frame -> (time, list of people); a person is [track_id, last joint index, keypoints]
    frames: dict[int, tuple[float | None, list]] = {}
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise CorrtrackError(f"{path}: not a corrtrack CSV; missing column(s) {', '.join(missing)}")
            for row in reader:
                line = reader.line_num
                try:
                    index, tid = int(row["frame"]), int(row["track_id"])
                    x, y, score = float(row["x"]), float(row["y"]), float(row["score"])
                    time = float(row["time"]) if row["time"] not in ("", None) else None
                except (TypeError, ValueError):
                    raise CorrtrackError(f"{path}: line {line}: bad number in {dict(row)}") from None
                j = joint_index.get(row["joint"])
                if j is None:
                    raise CorrtrackError(f"{path}: line {line}: joint {row['joint']!r} is not in layout {layout.name}")
                if not all(map(math.isfinite, (x, y, score))):
                    raise CorrtrackError(f"{path}: line {line}: x, y and score must be finite")
                _, people = frames.setdefault(index, (time, []))
                last = people[-1] if people else None
                if last is None or last[0] != tid or j <= last[1]:
                    last = [tid, -1, np.zeros((layout.num_joints, 3))]
                    people.append(last)
                last[1] = j
                last[2][j] = (x, y, score)
    except UnicodeDecodeError:
        raise CorrtrackError(f"{path}: not a UTF-8 text file") from None
    infos, poses = [], []
    for index in sorted(frames):
        time, people = frames[index]
        infos.append(FrameInfo(index=index, time=time))
        if people:
            poses.append(Poses(np.stack([p[2] for p in people]), layout, track_ids=[p[0] for p in people]))
        else:
            poses.append(Poses.empty(layout))
    return PoseSequence(name or path.stem, infos, poses)
