"""Tracking quality on the synthetic suite, every tracker on the same noisy ground-truth poses.

    .venv/bin/python benchmarks/bench_quality.py [--suite-dir DIR] [--sequences N] [--length N]
        [--quick] [--jitter 0.02] [--drop 0.1] [--score-noise 0.15] [--seed 0] [--no-write]

**Input = ground-truth poses with noise, not our detector + pose estimator.**
This isolates the association step: every method gets exactly the same
per-frame "detections", made from the synthetic suite's exact ground truth:

* each GT pose is missed with probability ``--drop`` (i.i.d. per pose and frame);
* every annotated joint moves by N(0, (jitter x s)^2) per axis, s = sqrt(GT box
  area) (``--jitter 0.02``: ~1.7 px for a 130 px tall person, whose PCKh
  threshold is ~5 px); joint scores ~ N(0.8, 0.1^2), clipped to [0.01, 1];
* the box is the GT box with each corner moved by the same jitter; the person
  score is the mean joint score + N(0, ``--score-noise``^2), clipped.

Joints GT does not annotate (hidden ones) are not predicted, and there are no
false-positive people: a real pose estimator does worse on both. The lead
replaces this input with the real pipeline's later.

Methods: the peers of ``corrtrack.pipeline.peers`` (norfair, ByteTrack, SORT,
where their packages are installed) and our tracker's baselines
(``corrtrack.pipeline.tracker.Tracker`` with similarity oks / iou / flow,
recovery off: it needs the pose network), corr with the shipped correspondence
model (and corr-eq6: without ``TrackerConfig.corr_oks``). Every method's output goes
through the pipeline's write step: joints below 0.3 are not written, poses
with fewer than 2 joints dropped; ours also drops tracks shorter than 3
frames, as the pipeline does.

Metrics: MOTA, ID switches (summed over joints), mAP from ``corrtrack.eval``
(poseval's definitions), IDF1 and keypoint HOTA / DetA / AssA from
``corrtrack.eval.idmetrics``; ms/frame is the tracker's own time (no decoding,
no evaluation). Prints one table per preset and the total, writes the section
"Tracking quality (GT poses with noise)" of BENCHMARKS.md and the plot
docs/img/bench_quality_gt_noise.png (unless ``--no-write``).

Peer packages (their metadata conflicts with ours, see pyproject's ``bench``):
    .venv/bin/pip install --no-deps norfair==2.3.0 filterpy==1.4.5 trackers==2.6.1 supervision==0.31.2
    .venv/bin/pip install -e '.[bench]'
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from corrtrack.synth.config import PRESETS as SYNTH_PRESETS  # noqa: E402

SECTION = "Tracking quality (GT poses with noise)"
PLOT = ROOT / "docs" / "img" / "bench_quality_gt_noise.png"
OUTPUT_JOINT_THRESH = 0.3  # TrackerConfig.output_joint_thresh: what the pipeline writes
MIN_KEYPOINTS = 2


# -- input: noisy ground truth ---------------------------------------------------------


@dataclass(frozen=True)
class Noise:
    jitter: float = 0.02
    drop: float = 0.1
    score_noise: float = 0.15


def noisy_detections(gt_poses, noise: Noise, rng: np.random.Generator):
    """The "detections" of one frame made from its GT poses (see the module doc)."""
    from corrtrack.structures import DETECTED, Poses

    keep = rng.random(len(gt_poses)) >= noise.drop
    g = gt_poses[keep]
    n = len(g)
    if n == 0:
        return Poses.empty(gt_poses.layout)
    wh = np.clip(g.boxes[:, 2:] - g.boxes[:, :2], 1, None)
    s = np.sqrt(wh.prod(1))[:, None]
    has = ~((g.keypoints[..., 0] == 0) & (g.keypoints[..., 1] == 0))
    kp = np.zeros_like(g.keypoints)
    kp[..., :2] = g.keypoints[..., :2] + rng.normal(0, 1, g.keypoints[..., :2].shape) * (noise.jitter * s)[:, :, None]
    kp[..., 2] = np.clip(rng.normal(0.8, 0.1, has.shape), 0.01, 1.0)
    kp[~has] = 0
    boxes = g.boxes + rng.normal(0, 1, (n, 4)) * noise.jitter * s
    mean_score = np.array([k[h, 2].mean() if h.any() else 0.0 for k, h in zip(kp, has)])
    scores = np.clip(mean_score + rng.normal(0, noise.score_noise, n), 0.01, 1.0)
    return Poses(kp, g.layout, boxes=boxes, scores=scores, origin=np.full(n, DETECTED))


def make_inputs(gt_seqs, noise: Noise, seed: int):
    """Noisy detections per sequence, the same for every method."""
    out = []
    for i, g in enumerate(gt_seqs):
        rng = np.random.default_rng([seed, i])
        out.append([noisy_detections(p, noise, rng) for p in g.poses])
    return out


# -- methods ------------------------------------------------------------------------------


def written(poses):
    """The pipeline's write step for one frame (joint threshold, enough joints)."""
    p = poses.threshold_joints(OUTPUT_JOINT_THRESH)
    return p[p.num_visible(0.0) >= MIN_KEYPOINTS]


def run_peer(name: str, dets, fps: float, height: int):
    from corrtrack.pipeline.peers import PeerConfig, make_peer

    tr = make_peer(name, PeerConfig(fps=fps, image_height=height))
    t0 = time.perf_counter()
    out = [tr.step(t, p) for t, p in enumerate(dets)]
    return [written(p) for p in out], time.perf_counter() - t0


_CORR: dict = {}  # the shipped correspondence network and the crop embedder, loaded once for all sequences


def run_ours(method: str, dets, video: Path | None):
    """Our online tracker + the pipeline's offline finalisation (run.py's ``_write_outputs``).

    ``method``: a similarity name, or ``corr-eq6`` (corr without ``TrackerConfig.corr_oks``)."""
    from dataclasses import replace

    from corrtrack.pipeline.tracker import RecoveryConfig, Tracker, TrackerConfig, final_id_map, finalize_frame

    similarity = method.split("-")[0]
    cfg = TrackerConfig(similarity=similarity, recovery=RecoveryConfig(enabled=False), corr_oks=method != "corr-eq6")
    correspond = None
    if similarity == "corr":
        from corrtrack.pipeline.run import CorrPropagator

        if "net" not in _CORR:
            _CORR["net"] = CorrPropagator.load(None, "cpu", cache_size=cfg.max_age + 2)
        correspond = _CORR["net"]
        correspond.reset()  # its features are keyed by frame index
    embed = None
    if cfg.appearance > 0 and video is not None:  # the appearance stage (TrackerConfig.appearance)
        from corrtrack.pipeline.run import CropEmbedder

        if "embed" not in _CORR:
            _CORR["embed"] = CropEmbedder("cpu")
        embed = _CORR["embed"]
    tracker = Tracker(cfg, correspond=correspond, embed=embed)
    frames = _video_frames(video) if similarity in ("flow", "corr") or embed is not None else None
    spent = 0.0
    out = []
    for t, p in enumerate(dets):
        image = next(frames) if frames is not None else None
        t0 = time.perf_counter()
        out.append(tracker.step(t, p, image))
        spent += time.perf_counter() - t0
    t0 = time.perf_counter()
    cfg = replace(cfg, min_track_length=max(1, min(cfg.min_track_length, len(dets))))
    counts: dict[int, int] = {}
    for p in out:
        ok = p.num_visible(cfg.output_joint_thresh - 1e-12) >= cfg.min_keypoints
        for tid in p.track_ids[ok]:
            counts[int(tid)] = counts.get(int(tid), 0) + 1
    id_map = final_id_map(counts, cfg, list(counts))
    final = [finalize_frame(p, id_map, cfg) for p in out]
    return final, spent + time.perf_counter() - t0


def _video_frames(path: Path):
    from corrtrack.io.video import VideoSource

    with VideoSource(path) as src:
        for frame in src:
            yield frame.image


def available_methods() -> tuple[list[str], dict[str, str]]:
    """Methods that run here, and why the others do not."""
    from corrtrack.pipeline.peers import peer_available, peer_names

    methods, skipped = [], {}
    for name in peer_names():
        why = peer_available(name)
        if why is None:
            methods.append(name)
        else:
            skipped[name] = why
    try:
        from corrtrack.pipeline.tracker import Tracker, TrackerConfig  # noqa: F401

        methods += ["ours-oks", "ours-iou", "ours-flow", "ours-corr", "ours-corr-eq6"]
    except Exception as e:  # noqa: BLE001 - a tracker module being written may not import yet
        skipped["ours"] = f"corrtrack.pipeline.tracker does not import: {e}"
    return methods, skipped


# -- evaluation -------------------------------------------------------------------------------


def preset_of(name: str) -> str:
    return name.rsplit("_", 1)[-1]


def score_groups(gt_seqs, preds, groups: dict[str, list[int]]) -> dict[str, dict]:
    """Metrics of one method for each group of sequences (indices into ``gt_seqs``).

    The expensive per-joint motmetrics work runs once per sequence; groups sum
    the counts (what ``evaluate`` does over several sequences) and pool AP.
    """
    from corrtrack.eval import JOINTS, combine_id_metrics, evaluate, evaluate_id_metrics

    mot = evaluate(gt_seqs, preds, per_sequence=True).per_sequence
    idm = [evaluate_id_metrics([g], [p]) for g, p in zip(gt_seqs, preds)]
    out = {}
    for group, idx in groups.items():
        sub_gt, sub_pr = [gt_seqs[i] for i in idx], [preds[i] for i in idx]
        m_ap = evaluate(sub_gt, sub_pr, tracking=False).ap.mAP
        counts = {k: np.array([sum(mot[gt_seqs[i].name]["mot"].counts[k][j] for i in idx if gt_seqs[i].name in mot)
                               for j in JOINTS], float)
                  for k in ("num_switches", "num_misses", "num_false_positives", "num_objects")}
        with np.errstate(divide="ignore", invalid="ignore"):
            # corrtrack.eval's MOTA: per joint from the summed counts, then the mean over joints
            mota = 100 * (1 - (counts["num_misses"] + counts["num_switches"] + counts["num_false_positives"])
                          / np.where(counts["num_objects"] > 0, counts["num_objects"], np.nan))
        i = combine_id_metrics([idm[k] for k in idx])
        out[group] = {"MOTA": float(np.nanmean(mota)), "IDSW": int(counts["num_switches"].sum()), "mAP": m_ap,
                      "IDF1": i.id.IDF1, "HOTA": i.hota.HOTA, "DetA": i.hota.DetA, "AssA": i.hota.AssA}
    return out


COLUMNS = ("MOTA", "IDSW", "mAP", "IDF1", "HOTA", "DetA", "AssA", "ms/frame")


def fmt(col: str, v) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return str(int(v)) if col == "IDSW" else f"{v:.1f}" if col != "ms/frame" else f"{v:.2f}"


def table_md(rows: dict[str, dict]) -> str:
    lines = ["| method | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for m, r in rows.items():
        lines.append(f"| {m} | " + " | ".join(fmt(c, r.get(c)) for c in COLUMNS) + " |")
    return "\n".join(lines)


def print_table(title: str, rows: dict[str, dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    t.add_column("method")
    for c in COLUMNS:
        t.add_column(c, justify="right")
    for m, r in rows.items():
        t.add_row(m, *[fmt(c, r.get(c)) for c in COLUMNS])
    Console().print(t)


def plot(results: dict[str, dict[str, dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from corrtrack.io.atomic import atomic_path

    groups = list(results)  # presets + total
    methods = list(next(iter(results.values())))
    x = np.arange(len(groups))
    w = 0.8 / len(methods)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, metric in zip(axes, ("IDSW", "MOTA")):
        for k, m in enumerate(methods):
            ax.bar(x + (k - (len(methods) - 1) / 2) * w, [results[g][m][metric] for g in groups], w, label=m)
        ax.set_xticks(x, groups)
        ax.set_title(f"{metric} (GT poses with noise)" if metric == "MOTA" else
                     "ID switches, summed over joints (GT poses with noise)")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def replace_section(md_path: Path, title: str, body: str) -> None:
    """Replace (or append) the '## title' section of a markdown file, atomically."""
    from corrtrack.io.atomic import atomic_open

    text = md_path.read_text(encoding="utf-8") if md_path.exists() else "# Benchmarks\n"
    block = f"## {title}\n\n{body.strip()}\n"
    pat = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pat.sub(lambda _: block + "\n", text) if pat.search(text) else text.rstrip() + "\n\n" + block
    with atomic_open(md_path, "w", encoding="utf-8") as f:
        f.write(text.rstrip() + "\n")


def versions() -> str:
    import importlib.metadata as md

    out = []
    for pkg in ("numpy", "scipy", "motmetrics", "norfair", "trackers", "supervision", "opencv-python-headless"):
        try:
            out.append(f"{pkg} {md.version(pkg)}")
        except md.PackageNotFoundError:
            pass
    return ", ".join(out)


# -- main ---------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite-dir", type=Path, default=None,
                    help="an existing `corrtrack data synth` folder (default: generate one in a temp folder)")
    ap.add_argument("--suite", default="all")
    ap.add_argument("--sequences", type=int, default=None, help="sequences per preset when generating (preset: 8)")
    ap.add_argument("--length", type=int, default=None, help="frames per sequence when generating (preset: 150)")
    ap.add_argument("--quick", action="store_true", help="a small suite: 2 sequences per preset, 100 frames")
    ap.add_argument("--synth-seed", type=int, default=0)
    ap.add_argument("--jitter", type=float, default=Noise.jitter)
    ap.add_argument("--drop", type=float, default=Noise.drop)
    ap.add_argument("--score-noise", type=float, default=Noise.score_noise)
    ap.add_argument("--seed", type=int, default=0, help="seed of the noise")
    ap.add_argument("--methods", default=None, help="comma-separated subset (default: all that run here)")
    ap.add_argument("--no-write", action="store_true", help="only print; do not touch BENCHMARKS.md / the plot")
    args = ap.parse_args()

    from tqdm import tqdm

    from corrtrack.io.posetrack import read_posetrack_dir

    if args.quick:
        args.sequences, args.length = args.sequences or 2, args.length or 100
    tmp = None
    suite_dir = args.suite_dir
    gen_cmd = None
    if suite_dir is None:
        from corrtrack.synth.suite import generate_suite

        tmp = tempfile.TemporaryDirectory(prefix="corrtrack_bench_quality_")
        suite_dir = Path(tmp.name)
        overrides = {k: v for k, v in (("num_sequences", args.sequences), ("num_frames", args.length)) if v is not None}
        t0 = time.perf_counter()
        generate_suite(suite_dir, args.suite, seed=args.synth_seed, overrides=overrides, progress=sys.stderr.isatty())
        print(f"generated the synthetic suite in {time.perf_counter() - t0:.0f} s")
        gen_cmd = (f"corrtrack data synth DIR --preset {args.suite} --seed {args.synth_seed}"
                   + (f" --sequences {args.sequences}" if args.sequences else "")
                   + (f" --length {args.length}" if args.length else ""))
    try:
        gt_seqs = read_posetrack_dir(suite_dir / "posetrack")
        noise = Noise(args.jitter, args.drop, args.score_noise)
        dets = make_inputs(gt_seqs, noise, args.seed)
        methods, skipped = available_methods()
        if args.methods:
            wanted = args.methods.split(",")
            methods = [m for m in methods if m in wanted]
        for name, why in skipped.items():
            print(f"skipped {name}: {why}")
        fps = {g.name: _fps(suite_dir / "videos" / f"{g.name}.mp4") for g in gt_seqs}
        preds: dict[str, list] = {}
        seconds: dict[str, list[float]] = {}
        load_before = os.getloadavg()[0]
        bar = tqdm(total=len(methods) * len(gt_seqs), unit="seq", disable=not sys.stderr.isatty())
        for m in methods:
            preds[m], seconds[m] = [], []
            for g, d in zip(gt_seqs, dets):
                bar.set_description(m)
                if m.startswith("ours-"):
                    out, sec = run_ours(m[len("ours-"):], d, suite_dir / "videos" / f"{g.name}.mp4")
                else:
                    out, sec = run_peer(m, d, fps[g.name], g.frames[0].height or 576)
                preds[m].append(g.__class__(g.name, g.frames, out, {}))
                seconds[m].append(sec)
                bar.update(1)
            if bar.disable:  # in a log file: one line per method instead of the bar
                print(f"{m}: {len(gt_seqs)} sequences tracked in {sum(seconds[m]):.0f} s", flush=True)
        bar.close()
        load = (load_before, os.getloadavg()[0])

        n_frames = sum(len(g) for g in gt_seqs)
        order = list(SYNTH_PRESETS)
        presets = sorted({preset_of(g.name) for g in gt_seqs}, key=lambda p: order.index(p) if p in order else 99)
        groups = {p: [i for i, g in enumerate(gt_seqs) if preset_of(g.name) == p] for p in presets}
        groups["total"] = list(range(len(gt_seqs)))
        results: dict[str, dict[str, dict]] = {g: {} for g in groups}
        for m in tqdm(methods, desc="evaluating", disable=not sys.stderr.isatty()):
            for group, r in score_groups(gt_seqs, preds[m], groups).items():
                idx = groups[group]
                r["ms/frame"] = 1000 * sum(seconds[m][i] for i in idx) / sum(len(gt_seqs[i]) for i in idx)
                results[group][m] = r
        for group, rows in results.items():
            n_seq = sum(1 for g in gt_seqs if group == "total" or preset_of(g.name) == group)
            print_table(f"{group} ({n_seq} sequences) — GT poses with noise", rows)

        if not args.no_write:
            plot(results, PLOT)
            body = _section(results, gt_seqs, noise, args, skipped, gen_cmd, n_frames, load)
            replace_section(ROOT / "BENCHMARKS.md", SECTION, body)
            print(f"wrote {ROOT / 'BENCHMARKS.md'} and {PLOT}")
    finally:
        if tmp is not None:
            tmp.cleanup()


def _fps(video: Path) -> float:
    import cv2

    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    cap.release()
    return float(fps) if fps and fps > 0 else 25.0


def _section(results, gt_seqs, noise: Noise, args, skipped, gen_cmd, n_frames, load) -> str:
    cmd = " ".join(["python benchmarks/bench_quality.py", *sys.argv[1:]])
    lines = [
        "> **Input: ground-truth poses with noise — not the real pipeline.** Every method tracks the same",
        "> \"detections\" made from the synthetic suite's exact ground truth: each pose missed with probability "
        f"{noise.drop:g}, joints jittered by N(0, ({noise.jitter:g}·s)²) per axis (s = √ GT-box area), joint scores "
        f"~ N(0.8, 0.1²), person score = mean joint score + N(0, {noise.score_noise:g}²); no false-positive people, "
        "hidden joints not predicted. It measures association alone; our detector + pose estimator replace "
        "this input later.",
        "",
        f"* Date {datetime.date.today().isoformat()}; machine: {platform.machine()}, {os.cpu_count()} CPUs "
        f"({platform.processor() or 'cpu'}), Python {platform.python_version()}; {versions()}.",
        f"* Command: `{cmd}`" + (f" (suite generated as `{gen_cmd}`)" if gen_cmd else "") + ".",
        f"* Suite: {len(gt_seqs)} sequences, {n_frames} frames, {sum(len(p) for g in gt_seqs for p in g.poses)} GT poses.",
        "* MOTA / IDSW / mAP: `corrtrack eval` (poseval's definitions; IDSW summed over the 15 joints). "
        "IDF1: motmetrics on the same per-joint PCKh matching. HOTA / DetA / AssA: keypoint HOTA as PoseTrack21 "
        "defines it. All in %. ms/frame: the tracker's own time per frame on this machine "
        f"(1-minute load average {load[0]:.1f} before tracking, {load[1]:.1f} after, on {os.cpu_count()} CPUs: "
        "other jobs may share them, so compare methods within one run).",
        "* Methods: `norfair` (keypoint-voting distance, its OpenPose demo's settings), `bytetrack` and `sort` "
        "(Roboflow `trackers`, default settings, on the pose boxes; the pose follows its box), `bytetrack-tuned` "
        "(ByteTrack with both thresholds at 0.5, chosen for NanoDet's boxes: see the peers section), `ours-oks` / "
        "`ours-iou` / `ours-flow` / `ours-corr`: `corrtrack.pipeline.tracker` with that similarity (the shipped "
        "correspondence model with refinement for corr; `ours-corr-eq6` is corr with the paper's eq. 6 alone, without "
        "`TrackerConfig.corr_oks`; greedy matching, "
        "keep-alive, duplicate removal; recovery off, as it needs the pose network). All outputs go through the "
        "pipeline's write step (joints < 0.3 dropped; ours also drops tracks shorter than 3 frames).",
    ]
    for name, why in skipped.items():
        lines.append(f"* Not run: `{name}` — {why}.")
    for group, rows in results.items():
        n_seq = sum(1 for g in gt_seqs if group == "total" or preset_of(g.name) == group)
        lines += ["", f"**{group}** ({n_seq} sequences)", "", table_md(rows)]
    try:
        rel = PLOT.relative_to(ROOT)
    except ValueError:
        rel = PLOT
    lines += ["", f"![ID switches and MOTA per method and preset (GT poses with noise)]({rel.as_posix()})"]
    return "\n".join(lines)


if __name__ == "__main__":
    from corrtrack.errors import CorrtrackError

    try:
        main()
    except CorrtrackError as e:  # bad input (e.g. a --suite-dir without a suite): one line, no traceback
        sys.exit(f"bench_quality: {e}")
