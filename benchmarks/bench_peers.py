"""Peers and ours on the same detected poses: one table (issue 8).

    .venv/bin/python benchmarks/bench_peers.py [--suite-dir out/bench_tracking/suite_all_s0]
        [--subset N] [--peers norfair,bytetrack,sort] [--ours corr,oks,iou,flow,reid]
        [--detection-tag TAG] [--json PATH] [--no-write]

The peers of ``corrtrack.pipeline.peers`` (norfair on the keypoints; ByteTrack
and SORT of the ``trackers`` package on the pose boxes) step through the very
per-frame poses that ``benchmarks/bench_tracking.py`` cached for a suite
(NanoDet + MoveNet, ``<suite-dir>/detections/<seq>.npz``); their output is
finalised and written by the pipeline's own code (``write_tracked``: short
tracks dropped, joint threshold 0.3), as ours is, to
``<suite-dir>/runs/peer-<name>-<hash>/posetrack/<seq>.json``. Our methods are
not re-run: their runs are read from ``<suite-dir>/runs/<method>-<hash>``
(see :func:`pick_runs`), so run ``bench_tracking.py`` on the suite first. Both
are scored by bench_tracking's ``score`` (MOTA, IDSW, mAP, IDF1, HOTA, ...);
one table per preset and the total, printed and written between
``<!-- peers:start -->`` and ``<!-- peers:end -->`` in BENCHMARKS.md.

Detections are never computed here: a sequence without cached detections under
the detection tag (default: bench_tracking's for the current configs;
``--detection-tag`` for an older cache) is skipped with a message, and the
scoring then asks for a ``--subset`` its runs cover.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import inspect
import math
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # the machine is shared: no spinning threads

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_tracking as bt

PEERS = ("norfair", "bytetrack", "bytetrack-tuned", "sort")
OURS = bt.TABLE2
PEER_PACKAGES = ("norfair", "trackers", "supervision", "filterpy")
_RUN = re.compile(r"^(?P<method>.+)-(?P<hash>[0-9a-f]{10})$")


# -- our runs on disk ---------------------------------------------------------------------

def split_run_name(folder: str) -> tuple[str, str] | None:
    """``corr+rec-0123456789`` -> (``corr+rec``, ``0123456789``); None for other names."""
    m = _RUN.match(folder)
    return (m["method"], m["hash"]) if m else None


def run_age(run: Path, names: list[str]) -> float | None:
    """When the run's output for ``names`` was last written (newest posetrack file's mtime);
    None when a sequence's file is missing."""
    newest = 0.0
    for n in names:
        p = run / "posetrack" / f"{n}.json"
        if not p.is_file():
            return None
        newest = max(newest, p.stat().st_mtime)
    return newest


def pick_runs(runs_dir: Path, methods: list[str], names: list[str],
              preferred: dict[str, Path] | None = None) -> tuple[dict[str, Path], dict[str, str]]:
    """Each method's run folder that has every sequence of ``names``: the ``preferred`` one (the
    folder the current config would write to) when complete, else the most recently written
    complete ``<method>-<hash>`` folder. Returns (method -> folder, method -> why none)."""
    preferred = preferred or {}
    found: dict[str, list[tuple[float, Path]]] = {m: [] for m in methods}
    if runs_dir.is_dir():
        for d in runs_dir.iterdir():
            parsed = split_run_name(d.name)
            if parsed and parsed[0] in found and d.is_dir():
                age = run_age(d, names)
                if age is not None:
                    found[parsed[0]].append((age, d))
    picked, missing = {}, {}
    for m in methods:
        pref = preferred.get(m)
        if pref is not None and run_age(pref, names) is not None:
            picked[m] = pref
        elif found[m]:
            picked[m] = max(found[m])[1]
        else:
            missing[m] = f"no {m}-<hash> folder under {runs_dir} has all {len(names)} sequences' posetrack files"
    return picked, missing


# -- the peers ----------------------------------------------------------------------------

def cached_tag(path: Path) -> str | None:
    """The detection tag of a cached ``detections/<seq>.npz``; None when there is none."""
    from corrtrack.errors import CorrtrackError

    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            return str(z["tag"])
    except (OSError, KeyError, ValueError) as e:
        raise CorrtrackError(f"{path}: unreadable cached detections ({e})") from None


# --tune-bytetrack: (track activation, high-confidence) thresholds tried; NanoDet's people start at 0.4
BYTETRACK_GRID = [(a, h) for a in (0.4, 0.5, 0.6, 0.7) for h in (0.4, 0.5, 0.6) if h <= a]


def box_confidence(poses):
    """The detector's box confidence of each cached pose: the estimator stores person score =
    box score x mean joint score, and the box trackers' thresholds (ByteTrack: 0.7 to start a
    track, 0.6 for its first association) are set for a detector's confidence, which none of the
    products (<= ~0.5) reaches."""
    mean = poses.keypoints[..., 2].mean(1)
    return np.where(mean > 0, poses.scores / np.where(mean > 0, mean, 1.0), poses.scores)


def step_peer(tracker, index: int, poses):
    """One frame of a peer; box peers see the box confidence, and the poses they return get their
    person score back (it ranks them for mAP, as it does ours)."""
    if not tracker.takes_boxes:
        return tracker.step(index, poses)
    out = tracker.step(index, poses.replace(scores=box_confidence(poses)))
    return out.replace(scores=out.scores * out.keypoints[..., 2].mean(1))


def peer_versions() -> str:
    import importlib.metadata as md

    out = []
    for pkg in PEER_PACKAGES:
        try:
            out.append(f"{pkg} {md.version(pkg)}")
        except md.PackageNotFoundError:
            pass
    return ", ".join(out)


def peer_dir(suite_dir: Path, peer: str, tag: str) -> Path:
    """Keyed like bench_tracking's ``run_dir``: what decides the output (peer code version, the
    detections, the finalisation config)."""
    from corrtrack.pipeline import peers

    code = hashlib.sha1(Path(peers.__file__).read_bytes()).hexdigest()  # the peers' settings live there
    here = hashlib.sha1((inspect.getsource(box_confidence) + inspect.getsource(step_peer)).encode()).hexdigest()
    key = f"{peer}|{code}|{here}|{peer_versions()}|{tag}|{finalise_config()!r}"
    return suite_dir / "runs" / f"peer-{peer}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def finalise_config():
    """The TrackerConfig whose output fields (short tracks, joint threshold, min joints) the
    pipeline's writing applies: the same for the peers as for our methods."""
    from corrtrack.pipeline.tracker import RecoveryConfig, TrackerConfig

    return TrackerConfig(similarity="oks", recovery=RecoveryConfig(enabled=False))


def track_peers(suite_dir: Path, peers: list[str], names: list[str], tag: str, progress: bool
                ) -> tuple[dict[str, Path], dict[str, float], list[str]]:
    """Track every sequence with every peer (what is not on disk yet). Returns peer -> run folder,
    peer -> seconds spent in its ``step`` here, and the sequences skipped for lack of detections."""
    from tqdm import tqdm

    from corrtrack.pipeline.peers import PeerConfig, make_peer
    from corrtrack.pipeline.run import (
        InputSequence,
        Parts,
        RunConfig,
        output_path,
        write_tracked,
    )

    dirs = {p: peer_dir(suite_dir, p, tag) for p in peers}
    spent = {p: 0.0 for p in peers}
    skipped = []
    for name in tqdm(names, desc="sequences", disable=not progress):
        todo = [p for p in peers if not output_path(dirs[p], "posetrack", name).is_file()]
        if not todo:
            continue
        npz = suite_dir / "detections" / f"{name}.npz"
        have = cached_tag(npz)
        if have != tag:
            why = "none cached" if have is None else f"cached under tag {have}"
            print(f"{name}: skipped - detections {why}, not {tag} (bench_tracking.py makes them; "
                  f"--detection-tag picks another cache)", flush=True)
            skipped.append(name)
            continue
        video = suite_dir / "videos" / f"{name}.mp4"
        dets = bt.load_detections(suite_dir, name, video, {}, progress)  # the cache: tag checked above
        seq = InputSequence(name, video, "video")
        fps = seq.fps() or 25.0
        trackers: dict = {}
        tracked: dict[str, list] = {p: [] for p in todo}
        for info, image in seq.frames():  # decoded once for every peer: FrameInfo as our runs write them
            for p in todo:
                if p not in trackers:
                    trackers[p] = make_peer(p, PeerConfig(fps=fps, image_height=info.height or 576))
                t0 = time.perf_counter()
                tracked[p].append((info, step_peer(trackers[p], info.index, dets[info.index])))
                spent[p] += time.perf_counter() - t0
        if len(tracked[todo[0]]) != len(dets):
            from corrtrack.errors import CorrtrackError

            raise CorrtrackError(f"{video}: {len(tracked[todo[0]])} frames decoded but {npz} holds {len(dets)}")
        for p in todo:
            write_tracked(seq, tracked[p], dirs[p], RunConfig(tracker=finalise_config(), progress=False),
                          Parts(None, None))
        print(f"{name}: {', '.join(todo)} tracked ({len(dets)} frames)", flush=True)
    return dirs, spent, skipped


def tune_bytetrack(suite_dir: Path, names: list[str], tag: str, subset: int | None, progress: bool) -> None:
    """Track with ByteTrack at every threshold pair of ``BYTETRACK_GRID`` and print MOTA / IDSW / recall:
    how ``bytetrack-tuned``'s thresholds were chosen (on the validation suite, never the benchmark)."""
    from corrtrack.pipeline.peers import ByteTrackPeer, peer_names, register_peer

    grid = {}
    for a, h in BYTETRACK_GRID:
        name = f"bytetrack-{a:g}-{h:g}"
        if name not in peer_names():
            register_peer(name)(type(name, (ByteTrackPeer,), {
                "thresholds": {"track_activation_threshold": a, "high_conf_det_threshold": h}}))
        grid[name] = (a, h)
    dirs, _, skipped = track_peers(suite_dir, list(grid), names, tag, progress)
    if skipped:
        raise SystemExit(f"{len(skipped)} sequences have no cached detections under tag {tag}")
    results, _ = bt.score(suite_dir, dirs, progress, subset)
    print("| track activation | high confidence | MOTA | IDSW | Rec |\n| ---: | ---: | ---: | ---: | ---: |")
    for name, (a, h) in grid.items():
        r = results["total"][name]
        print(f"| {a:g} | {h:g} | {r['MOTA']:.1f} | {r['IDSW']} | {r['Rec']:.1f} |")


# -- the report ---------------------------------------------------------------------------

def idsw_summary(total: dict[str, dict], peers: list[str]) -> str:
    """The issue-8 target on the total table: corr's ID switches <= 0.5x OKS and fewer than flow,
    re-ID, norfair and ByteTrack."""
    sw = {m: r["IDSW"] for m, r in total.items()}
    if "corr" not in sw:
        return "`corr` is not in the table, so the ID-switch target cannot be checked."
    c = sw["corr"]
    parts = []
    if "oks" in sw and sw["oks"] > 0:
        ratio, half = c / sw["oks"], sw["oks"] / 2
        verdict = "met" if ratio <= 0.5 else f"missed by {c - half:.0f} switches"
        parts.append(f"`corr` has {c} ID switches against {sw['oks']} for OKS-greedy ({ratio:.2f}x; target "
                     f"<= 0.5x: {verdict})")
    else:
        parts.append(f"`corr` has {c} ID switches")
    versus = [m for m in ("flow", "reid", *peers) if m in sw]
    beat = [f"`{m}` {sw[m]}" for m in versus if c < sw[m]]
    lost = [f"`{m}` {sw[m]}" for m in versus if c >= sw[m]]
    if beat:
        parts.append("fewer than " + ", ".join(beat))
    if lost:
        parts.append("not fewer than " + ", ".join(lost))
    rec = {m: r.get("Rec") for m, r in total.items()}
    low = [m for m in versus if c >= sw[m] and rec[m] is not None and rec["corr"] is not None
           and rec[m] < rec["corr"] - 5]
    if low:
        # Switches are counted on matched joints: a tracker that reports fewer people has fewer to switch.
        # Per recalled joint the comparison is fairer, and still favours the low-recall tracker: the people
        # it misses are the hard ones (small, occluded), where switches happen.
        per = {m: sw[m] / rec[m] if rec[m] else math.inf for m in ("corr", *low)}
        parts.append(", ".join(f"`{m}` recalls {rec[m]:.0f} % of the joints against {rec['corr']:.0f} % for `corr` "
                               f"(MOTA {total[m]['MOTA']:.1f} vs {total['corr']['MOTA']:.1f})" for m in low)
                     + ", so part of its lower count is people it does not track; per recalled joint (ID switches "
                     "per % of recall) `corr` " + f"{per['corr']:.1f} against "
                     + ", ".join(f"`{m}` {per[m]:.1f}" for m in low))
    targets = [m for m in ("flow", "reid", "norfair", "bytetrack") if m in sw]
    ok = all(c < sw[m] for m in targets) and "oks" in sw and sw["oks"] > 0 and c <= 0.5 * sw["oks"]
    return "; ".join(parts) + (". Issue-8 ID-switch target (<= 0.5x OKS, fewer than "
                              + ", ".join(targets) + f"): **{'met' if ok else 'not met'}** on this suite.")


def section(results, info, cols, runs, notes, args, tag, load, models, peers) -> str:
    cmd = " ".join(["python benchmarks/bench_peers.py", *sys.argv[1:]])
    lines = [
        "## Peers and ours on the same detections (synthetic suite)",
        "",
        f"* Command: `{cmd}`.",
        f"* {bt.environment(models, load)} Peer packages: {peer_versions()}.",
        f"* Suite: `{bt._rel(args.suite_dir)}`" + (f", first {args.subset} sequences of each preset" if args.subset
                                                  else "")
        + f": {info['sequences']} sequences, {info['frames']} frames, {info['gt_poses']} GT poses.",
        (f"* Input to every method: the per-frame poses `bench_tracking.py` cached (NanoDet + MoveNet, detection "
        f"tag `{tag}`). Peers: `norfair` (keypoint-voting distance, its OpenPose demo's settings), `bytetrack` and "
        "`sort` (`trackers` package, default settings, on the pose boxes with the detector's box confidence; a pose "
        "follows its box; ByteTrack's defaults start a track only at a confidence >= 0.7, which part of NanoDet's "
        "people, accepted from 0.4, never reach); `bytetrack-tuned`: ByteTrack with both thresholds (track "
        "activation, high-confidence detections) at 0.5, the best MOTA of a grid on the validation suite (seed 321, "
        "20 sequences; `bench_peers.py --tune-bytetrack`: MOTA 24.3 and recall 49.9 % there against 8.8 and "
        "27.4 % with the defaults). Ours (recovery and merging off): `corr` (correspondences: "
        "eq. 6 or OKS of the propagated joints, whichever is larger), `oks` (OKS-greedy), `iou`, `flow` (DIS "
        "optical flow + OKS), `reid` (crop embeddings). Every output is finalised by the pipeline's "
        "`write_tracked` (tracks shorter than 3 frames dropped, joints below 0.3 not written)."),
        "* Runs read: " + ", ".join(f"`{m}` = `runs/{d.name}`" + (f" ({notes[m]})" if m in notes else "")
                                    for m, d in runs.items()) + ".",
        ("* MOTA / IDSW / mAP / Prec / Rec: `corrtrack eval` (IDSW summed over the 15 joints); IDF1 and keypoint "
        "HOTA / AssA: `corrtrack.eval.idmetrics`. All in %."),
        "",
        idsw_summary(results["total"], peers),
    ]
    for g, rows in results.items():
        lines += ["", f"**{g}** ({info['per_group'][g]} sequences)", "", bt.table_md(rows, cols)]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite-dir", type=Path, default=ROOT / "out" / "bench_tracking" / "suite_all_s0")
    ap.add_argument("--subset", type=int, default=None, help="only the first N sequences of each preset")
    ap.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated subset of {PEERS}")
    ap.add_argument("--ours", default=",".join(OURS),
                    help=f"our methods whose runs are read (any of {bt.ALL_METHODS})")
    ap.add_argument("--detection-tag", default=None,
                    help="use detections cached under this tag (default: bench_tracking's for the current "
                         "configs); our runs are then looked up for it too")
    ap.add_argument("--pose-model", default="thunder", help="as bench_tracking's --pose-model (for the tag)")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    ap.add_argument("--no-write", action="store_true", help="only print; leave BENCHMARKS.md alone")
    ap.add_argument("--tune-bytetrack", action="store_true",
                    help="only print ByteTrack's MOTA / IDSW over a grid of its two thresholds (run it on the "
                         "validation suite: --suite-dir of a seed other than the benchmark's)")
    args = ap.parse_args()

    from corrtrack.errors import CorrtrackError
    from corrtrack.models.corrnet import DEFAULT_WEIGHTS
    from corrtrack.pipeline.peers import peer_available

    progress = sys.stderr.isatty()
    bt.POSE_MODEL = args.pose_model
    if args.detection_tag:
        # bench_tracking keys its detection cache and run folders by detection_tag(); pinning it
        # here makes load_detections accept that cache and run_dir name the runs made from it.
        bt.detection_tag = lambda: args.detection_tag
    tag = bt.detection_tag()
    suite_dir = args.suite_dir
    if not (suite_dir / "suite.json").is_file():
        raise SystemExit(f"{suite_dir}: not a suite folder of bench_tracking.py (no suite.json)")
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    ours = [m.strip() for m in args.ours.split(",") if m.strip()]
    bad = [p for p in peers if p not in PEERS] + [m for m in ours if m not in bt.ALL_METHODS]
    if bad:
        raise SystemExit(f"unknown methods {bad}; peers: {PEERS}, ours: {bt.ALL_METHODS}")
    for p in peers:
        why = peer_available(p)
        if why:
            raise SystemExit(why)
    names = bt.sequence_names(suite_dir, args.subset)
    if args.tune_bytetrack:
        return tune_bytetrack(suite_dir, names, tag, args.subset, progress)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    pdirs, spent, skipped = track_peers(suite_dir, peers, names, tag, progress)
    print(f"peers tracked in {time.perf_counter() - t0:.0f} s (their step: "
          + ", ".join(f"{p} {s:.1f} s" for p, s in spent.items()) + f"; load {os.getloadavg()[0]:.1f})", flush=True)
    if skipped:
        raise SystemExit(f"{len(skipped)} sequences have no cached detections under tag {tag} ({skipped[:4]}...): "
                         "run bench_tracking.py on them or pass a --subset they are outside")

    models = bt.Models(DEFAULT_WEIGHTS)
    current = {m: bt.run_dir(suite_dir, m, bt.method_config(m, {}), models) for m in ours}
    odirs, missing = pick_runs(suite_dir / "runs", ours, names, current)
    if missing:
        raise SystemExit("; ".join(missing.values()) + " - run bench_tracking.py on this suite (same --subset) first")
    notes = {m: "not the current default config's run: the latest complete one" for m, d in odirs.items()
             if d != current[m]}
    for m, d in odirs.items():
        print(f"{m}: {d.name}" + (f" ({notes[m]})" if m in notes else ""))
    runs = {**odirs, **{p: pdirs[p] for p in peers}}
    try:
        results, info = bt.score(suite_dir, runs, progress, args.subset)
    except CorrtrackError as e:
        raise SystemExit(str(e)) from None
    load = (load0, os.getloadavg()[0])
    cols = [c for c in bt.COLUMNS if info["idmetrics"] or c not in ("IDF1", "HOTA", "AssA")]
    for g, rows in results.items():
        bt.print_table(f"{g} ({info['per_group'][g]} sequences)", rows, cols)
    summary = idsw_summary(results["total"], peers)
    print("\n" + summary)
    if args.json:
        from corrtrack.io.atomic import write_json

        write_json(args.json, {"results": results, "info": info, "detection_tag": tag, "summary": summary,
                               "runs": {m: str(d) for m, d in runs.items()}, "notes": notes,
                               "peer_step_seconds": spent, "date": datetime.datetime.now(
                                   datetime.UTC).isoformat(timespec="seconds"), "load": load}, indent=1)
    if not args.no_write:
        from corrtrack.bench import write_marked_section

        body = section(results, info, cols, runs, notes, args, tag, load, models, peers)
        write_marked_section(ROOT / "BENCHMARKS.md", "peers", body)
        print(f"wrote the peers section of {ROOT / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
