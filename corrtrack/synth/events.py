"""Events of a generated sequence, measured on what was rendered (not on the plan).

* in view: at least half of a person's mask lies inside the frame;
* occluded: in view, and nearer people or static occluders cover more than
  half of its pixels in the frame (the main occluder is the one covering most
  of them: a track id, or ``"occluder J"`` for static occluder J);
* behind occluders (only counted for sequences with static occluders): in
  view, and static occluders alone cover more than half of its pixels;
* crossing: two people in view swap their left-right order (feet more than
  2 px apart before and after) while their whole-mask boxes overlap;
* exit / re-entry: a person goes out of view / comes back into view after
  having been in view before (with the number of frames it was away);
* ground-truth gap: frames in which a person that was annotated before and
  will be again is not annotated (hidden, out of view or too small) — every
  such gap is a chance for a tracker to lose the id.
"""
from __future__ import annotations

import numpy as np

IN_VIEW = 0.5
OCCLUDED = 0.5
CROSS_MARGIN_PX = 2.0


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(start, end inclusive) of the runs of True."""
    d = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), (np.flatnonzero(d == -1) - 1).tolist()))


def _in_view(own: np.ndarray, expected: np.ndarray) -> np.ndarray:
    return own >= IN_VIEW * np.maximum(expected, 1)


def _main_cover(by: dict) -> int | str:
    """Who covers the most pixels; on a tie a person (the lowest id) before a static occluder."""
    return max(by, key=lambda k: (by[k], isinstance(k, int), -k if isinstance(k, int) else 0))


def occluder_frames(own: np.ndarray, expected: np.ndarray, covered: list[list[dict]]) -> int:
    """Person-frames in view with more than half of its pixels behind static occluders (string keys of ``covered``)."""
    behind = np.array([[sum(px for who, px in c.items() if isinstance(who, str)) for c in row] for row in covered],
                      np.float64).reshape(own.shape)
    return int((_in_view(own, expected) & (behind > OCCLUDED * np.maximum(own, 1))).sum())


def measure_events(ids: list[int], own: np.ndarray, visible: np.ndarray, expected: np.ndarray, foot_u: np.ndarray,
                   full_boxes: np.ndarray, covered: list[list[dict]], annotated: np.ndarray) -> dict:
    """Events from per-frame arrays of shape (T, N) (``full_boxes`` (T, N, 4), NaN when out)."""
    T, N = own.shape
    in_view = _in_view(own, expected)
    occluded = in_view & (visible < (1 - OCCLUDED) * np.maximum(own, 1))

    occlusions = []
    for i in range(N):
        for a, b in _runs(occluded[:, i]):
            by: dict[int, int] = {}
            for t in range(a, b + 1):
                for tid, px in covered[t][i].items():
                    by[tid] = by.get(tid, 0) + px
            occlusions.append({"id": ids[i], "start": a, "end": b, "frames": b - a + 1,
                               "by": _main_cover(by) if by else None})

    crossings = []
    for i in range(N):
        for j in range(i + 1, N):
            side = 0
            for t in range(T):
                if not (in_view[t, i] and in_view[t, j]):
                    side = 0
                    continue
                d = foot_u[t, i] - foot_u[t, j]
                if abs(d) <= CROSS_MARGIN_PX:
                    continue
                s = 1 if d > 0 else -1
                if side and s != side:
                    bi, bj = full_boxes[t, i], full_boxes[t, j]
                    if min(bi[2], bj[2]) > max(bi[0], bj[0]) and min(bi[3], bj[3]) > max(bi[1], bj[1]):
                        crossings.append({"frame": t, "ids": [ids[i], ids[j]],
                                          "front": ids[i] if bi[3] >= bj[3] else ids[j]})
                side = s
    crossings.sort(key=lambda c: (c["frame"], c["ids"]))

    exits, reentries = [], []
    for i in range(N):
        runs = _runs(in_view[:, i])
        for (a0, b0), (a1, _) in zip(runs[:-1], runs[1:]):
            exits.append({"id": ids[i], "frame": b0 + 1})
            reentries.append({"id": ids[i], "frame": a1, "away": a1 - b0 - 1})
        if runs and runs[-1][1] < T - 1:
            exits.append({"id": ids[i], "frame": runs[-1][1] + 1})
    exits.sort(key=lambda e: (e["frame"], e["id"]))
    reentries.sort(key=lambda e: (e["frame"], e["id"]))

    gaps = []
    for i in range(N):
        runs = _runs(annotated[:, i])
        for (_, b0), (a1, _) in zip(runs[:-1], runs[1:]):
            gaps.append({"id": ids[i], "start": b0 + 1, "end": a1 - 1, "frames": a1 - b0 - 1})
    gaps.sort(key=lambda g: (g["start"], g["id"]))

    return {
        "counts": {"crossings": len(crossings), "occlusions": len(occlusions),
                   "occlusion_frames": int(occluded.sum()), "exits": len(exits), "reentries": len(reentries),
                   "gt_gaps": len(gaps), "annotated_poses": int(annotated.sum())},
        "crossings": crossings, "occlusions": occlusions, "exits": exits, "reentries": reentries, "gt_gaps": gaps,
    }
