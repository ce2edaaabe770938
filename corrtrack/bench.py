"""Benchmarks of the whole pipeline on this machine: speed per stage and a small tracking-quality check.

``corrtrack bench`` runs the quick version (a short vtest.avi clip and a tiny
synthetic suite); ``benchmarks/bench_speed.py`` adds scenes with 1..24 people
and writes BENCHMARKS.md. Both use what is here.

Speed: the real pipeline (``corrtrack.pipeline.run.track_sequence``, default
settings: NanoDet, MoveNet ``auto``, correspondences with recovery) tracks the
first ``frames`` frames of a video after an untimed warm-up; its own per-stage
timers are grouped into the stages below, and everything it does not time
(NMS, bookkeeping, progress) is ``other``, so the stages add up to the
end-to-end wall time.

Quality: a tiny ``corrtrack data synth`` suite (exact ground truth); detector
and pose estimator run once per frame and every similarity tracks those same
poses (recovery off, as in the paper's Table 2), then ``corrtrack eval``.
"""
from __future__ import annotations

import datetime
import math
import os
import platform
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from corrtrack import openmp
from corrtrack.errors import CorrtrackError

# Report stages <- the pipeline's timer names (run.py's _Timer and Tracker.timings).
STAGES = ("detect", "pose", "correspondence", "association", "io", "other")
STAGE_OF = {"detect": "detect", "pose": "pose", "pose (recovery)": "pose", "correspondence": "correspondence",
            "association": "association", "decode": "io", "io": "io"}
SPEED_COLUMNS = ("input", "size", "people", "detected/frame", "propagated/frame", "frames", *(f"{s} ms" for s in STAGES),
                 "total ms", "FPS", "tracking %", "CPU ms", "peak RSS MB")
QUALITY_COLUMNS = ("method", "MOTA", "IDSW", "mAP")

# Targets of issue 8 (2 CPU cores).
TARGET_FPS = 25.0
TARGET_TRACKING_SHARE = 15.0
TARGET_IDSW_RATIO = 0.5  # corr's ID switches / the OKS baseline's


@dataclass(frozen=True)
class BenchConfig:
    frames: int = 40  # frames timed per speed input
    warmup: int = 3  # frames tracked first and not counted (lazy allocation, oneDNN kernel choice)
    video: str | None = None  # the real video of the speed run; None = the shared vtest.avi
    people: tuple[int, ...] = ()  # synthetic scenes with these person counts (scaling rows); () = none
    quality: bool = True
    # Pairs hiding each other, and running people under a shaking camera: where switches happen.
    quality_presets: tuple[str, ...] = ("crossing", "fast")
    quality_sequences: int = 2
    quality_frames: int = 60
    similarities: tuple[str, ...] = ("corr", "oks")
    seed: int = 0
    device: str | None = None  # None = CUDA if available
    threads: int | None = None  # torch CPU threads; None = torch's default
    cpu_runtime: str = "onnx"  # the networks' CPU runtime (RunConfig.cpu_runtime)
    detect_every: tuple[int, ...] = ()  # the video again with the detector on every n-th frame only
    no_refinement: bool = False  # the video again with the Siamese maps (TrackerConfig.use_refinement off)

    def validate(self) -> None:
        if self.frames < 2 or self.warmup < 0:
            raise CorrtrackError(f"bench: frames must be >= 2 and warmup >= 0, got {self.frames}, {self.warmup}")
        if any(n < 1 for n in self.people):
            raise CorrtrackError(f"bench: person counts must be >= 1, got {list(self.people)}")
        if self.quality and (self.quality_sequences < 1 or self.quality_frames < 3 or not self.similarities):
            raise CorrtrackError("bench: the quality check needs >= 1 sequence of >= 3 frames and a similarity")
        if any(n < 2 for n in self.detect_every):
            raise CorrtrackError(f"bench: detect_every intervals must be >= 2, got {list(self.detect_every)}")
        if self.threads is not None and self.threads < 1:
            raise CorrtrackError(f"bench: threads must be >= 1, got {self.threads}")


@dataclass
class SpeedRow:
    input: str
    width: int
    height: int
    people: int | None  # people in the scene (synthetic input); None for a real video
    detected: float  # mean person boxes per frame the pose network ran on
    propagated: float  # mean track poses per frame moved by the correspondence network (live tracks)
    frames: int
    stage_ms: dict[str, float]  # STAGES -> ms per frame
    total_ms: float  # end-to-end wall time per frame
    fps: float
    peak_rss_mb: float  # resident memory peak of this process while this input ran
    # CPU time of the process (all threads) per frame. Unlike the wall time it hardly grows when other jobs
    # share the cores, so on an otherwise idle machine with T threads the wall time lies between cpu_ms / T
    # and cpu_ms.
    cpu_ms: float = math.nan

    @property
    def tracking_share(self) -> float:
        """Correspondence + association, % of the per-frame time."""
        return 100 * (self.stage_ms["correspondence"] + self.stage_ms["association"]) / self.total_ms

    def cells(self) -> list[str]:
        return [self.input, f"{self.width}×{self.height}", "–" if self.people is None else str(self.people),
                f"{self.detected:.1f}", f"{self.propagated:.1f}", str(self.frames), *(f"{self.stage_ms[s]:.1f}" for s in STAGES),
                f"{self.total_ms:.1f}", f"{self.fps:.2f}", f"{self.tracking_share:.1f}", f"{self.cpu_ms:.0f}",
                f"{self.peak_rss_mb:.0f}"]

    def to_dict(self) -> dict:
        return {**asdict(self), "tracking_share": self.tracking_share}


@dataclass(frozen=True)
class ModelSize:
    name: str
    role: str
    path: str
    bytes: int
    params: int
    used: bool  # whether this run's pipeline uses it


@dataclass
class BenchReport:
    environment: dict
    speed: list[SpeedRow] = field(default_factory=list)
    quality: dict | None = None  # {"methods": {sim: {MOTA, IDSW, mAP}}, "sequences", "frames", "gt_poses", ...}
    models: list[ModelSize] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"environment": self.environment, "speed": [r.to_dict() for r in self.speed],
                "quality": self.quality, "models": [asdict(m) for m in self.models]}

    @classmethod
    def from_dict(cls, data: dict) -> "BenchReport":
        """Inverse of ``to_dict`` (re-render a saved run's tables and plots)."""
        speed = [SpeedRow(**{k: v for k, v in r.items() if k != "tracking_share"}) for r in data.get("speed", [])]
        return cls(data["environment"], speed, data.get("quality"), [ModelSize(**m) for m in data.get("models", [])])


# -- measuring -------------------------------------------------------------------------------

def current_rss_bytes() -> int | None:
    """Resident set size of this process now (Linux /proc), or None where it cannot be read."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def lifetime_peak_rss_bytes() -> int:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if platform.system() == "Darwin" else peak * 1024  # macOS: bytes, Linux: KiB


class PeakRSS:
    """Peak resident memory while the block runs, sampled every ``interval`` s by a thread.

    ``ru_maxrss`` alone is the process's lifetime peak (an earlier, larger input
    would hide a later one's); where /proc is missing it is the fallback.
    """

    def __init__(self, interval: float = 0.01):
        self.interval, self.peak = interval, 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, current_rss_bytes() or 0)
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakRSS":
        if current_rss_bytes() is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.peak = max(self.peak, current_rss_bytes() or 0)
        else:
            self.peak = lifetime_peak_rss_bytes()


class _CountingPropagator:
    """The correspondence propagator, counting the track poses it moves (its cost grows with them)."""

    def __init__(self, inner):
        self.inner, self.poses = inner, 0

    def reset(self) -> None:
        if hasattr(self.inner, "reset"):
            self.inner.reset()

    def __call__(self, src_index, src_image, dst_index, dst_image, poses):
        self.poses += len(poses)
        return self.inner(src_index, src_image, dst_index, dst_image, poses)


def stage_ms(timings: dict[str, float], frames: int, total_s: float) -> dict[str, float]:
    """Pipeline timer seconds -> ms per frame of STAGES; the untimed rest of ``total_s`` is ``other``."""
    out = dict.fromkeys(STAGES, 0.0)
    for name, sec in timings.items():
        out[STAGE_OF.get(name, "other")] += sec
    out["other"] += max(0.0, total_s - sum(timings.values()))
    return {k: 1000 * v / frames for k, v in out.items()}


def measure_speed(source: str | os.PathLike, parts, config, frames: int, label: str | None = None,
                  people: int | None = None, warmup: int = 0) -> SpeedRow:
    """Track the first ``frames`` frames of ``source`` end to end and time every stage.

    ``parts`` are the built networks (``build_parts(config)``), shared across inputs;
    the first ``warmup`` frames are tracked once before, untimed.
    """
    from corrtrack.pipeline.run import Parts, discover_inputs, track_sequence

    seqs = discover_inputs(source)
    if len(seqs) != 1:
        raise CorrtrackError(f"{source}: holds {len(seqs)} sequences; the speed run takes one video")
    seq = seqs[0]
    available = seq.expected_frames(0, frames)
    if available is not None and available < frames:
        raise CorrtrackError(f"{source}: has {available} frames, the speed run needs {frames}")
    moved = _CountingPropagator(parts.correspond) if parts.correspond is not None else None
    timed = Parts(parts.detect, parts.estimate, moved, parts.embed)
    with tempfile.TemporaryDirectory(prefix="corrtrack_bench_") as tmp:
        if warmup:
            track_sequence(seq, Path(tmp) / "warmup", replace(config, start=0, end=warmup, progress=False), parts)
        cpu0 = time.process_time()
        with PeakRSS() as rss:
            result = track_sequence(seq, Path(tmp) / "timed", replace(config, start=0, end=frames), timed)
        cpu = time.process_time() - cpu0
    if result.frames == 0:
        raise CorrtrackError(f"{source}: no frame could be decoded")
    first = next(seq.frames(0, 1), None)
    h, w = first[1].shape[:2] if first is not None and first[1] is not None else (0, 0)
    ms = stage_ms(result.timings, result.frames, result.seconds)
    total = 1000 * result.seconds / result.frames
    return SpeedRow(label or seq.name, w, h, people, result.counts["estimated"] / result.frames,
                    (moved.poses if moved else 0) / result.frames, result.frames, ms,
                    total, 1000 / total, rss.peak / 2 ** 20, 1000 * cpu / result.frames)


def usable_people() -> int:
    """How many different people the synthetic generator's default source gives."""
    from corrtrack.synth.people import load_cutouts
    from corrtrack.synth.suite import default_sources

    return len(load_cutouts(default_sources()["people"][0]))


def people_scene(outdir: str | os.PathLike, people: int, frames: int, seed: int = 0,
                 distinct: int | None = None) -> Path:
    """A synthetic sequence with exactly ``people`` people on the vtest.avi background; its video.

    The ``crowd`` motion (people wander between random points and stay in view),
    at the walk preset's depths (4.5-13 m: people 90-265 px tall) so that nobody
    falls under the ignore height. Above the ``distinct`` people the source has,
    the rest are look-alikes (recoloured copies).
    """
    from corrtrack.synth.suite import generate_suite

    distinct = usable_people() if distinct is None else distinct
    overrides = {"num_sequences": 1, "num_frames": frames, "people": (people, people),
                 "lookalikes": people - min(people, distinct), "z_range": (4.5, 13.0)}
    generate_suite(outdir, "crowd", seed=seed, overrides=overrides, progress=False)
    videos = sorted((Path(outdir) / "videos").glob("*.mp4"))
    if len(videos) != 1:
        raise CorrtrackError(f"{outdir}: expected one synthetic video, found {len(videos)}")
    return videos[0]


def model_sizes(parts=None, corr_weights: str | os.PathLike | None = None) -> list[ModelSize]:
    """File size and parameter count of every installed model (nothing is fetched)."""
    from corrtrack.models.corrnet import DEFAULT_WEIGHTS, CorrespondenceNet
    from corrtrack.models.registry import MODELS, load_model, weights_path

    used_pose = getattr(getattr(parts, "estimate", None), "variant", None)
    rows = []
    for name in MODELS:
        path = weights_path(name)
        if not path.is_file():
            continue
        role = "detector" if name == "nanodet" else "pose"
        used = parts is not None and (name == "nanodet" or name == f"movenet-{used_pose}")
        net = load_model(name, "cpu")
        rows.append(ModelSize(name, role, str(path), path.stat().st_size, sum(p.numel() for p in net.parameters()),
                              used))
    path = Path(corr_weights or DEFAULT_WEIGHTS)
    net = CorrespondenceNet.load(path, "cpu")
    rows.append(ModelSize("corrnet", "correspondence", str(path), path.stat().st_size,
                          sum(p.numel() for p in net.parameters()), getattr(parts, "correspond", None) is not None))
    return rows


def quality_check(suite_dirs: Sequence[str | os.PathLike], parts, similarities: Sequence[str] = ("corr", "oks"),
                  progress: bool = False) -> dict:
    """MOTA / IDSW / mAP of each similarity on ``corrtrack data synth`` folders, the same poses for all."""
    from tqdm import tqdm

    from corrtrack.eval import evaluate
    from corrtrack.io.posetrack import read_posetrack, read_posetrack_dir
    from corrtrack.pipeline.run import InputSequence, RunConfig, output_path, write_tracked
    from corrtrack.pipeline.tracker import RecoveryConfig, Tracker, TrackerConfig

    videos, gts = {}, []
    for folder in map(Path, suite_dirs):
        for gt in read_posetrack_dir(folder / "posetrack"):
            videos[gt.name] = folder / "videos" / f"{gt.name}.mp4"
            gts.append(gt)
    configs = {s: TrackerConfig(similarity=s, recovery=RecoveryConfig(enabled=False)) for s in similarities}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="corrtrack_bench_quality_") as tmp:
        for gt in gts:
            seq = InputSequence(gt.name, videos[gt.name], "video")
            if hasattr(parts.correspond, "reset"):
                parts.correspond.reset()  # its feature cache is keyed by frame index
            trackers = {s: Tracker(c, correspond=parts.correspond if s == "corr" else None, embed=parts.embed)
                        for s, c in configs.items()}
            tracked: dict[str, list] = {s: [] for s in configs}
            for info, image in tqdm(seq.frames(), total=len(gt), desc=gt.name, unit="frame", disable=not progress,
                                    leave=False):
                poses = parts.estimate(image, parts.detect(image))
                for s, tr in trackers.items():
                    tracked[s].append((info, tr.step(info.index, poses, image)))
            for s, c in configs.items():
                write_tracked(seq, tracked[s], Path(tmp) / s, RunConfig(tracker=c, progress=False))
        methods = {}
        for s in configs:
            preds = [read_posetrack(output_path(Path(tmp) / s, "posetrack", g.name)) for g in gts]
            ev = evaluate(gts, preds)
            methods[s] = {"MOTA": ev.mot.MOTA, "IDSW": ev.mot.totals()["num_switches"], "mAP": ev.ap.mAP}
    return {"methods": methods, "sequences": len(gts), "frames": sum(len(g) for g in gts),
            "gt_poses": sum(len(p) for g in gts for p in g.poses), "seconds": time.perf_counter() - t0,
            "suite": [g.name for g in gts]}


def quality_suites(outdir: str | os.PathLike, config: BenchConfig) -> list[Path]:
    """The tiny synthetic suite of the quality check, one folder per preset under ``outdir``."""
    from corrtrack.synth.suite import generate_suite

    folders = []
    for preset in config.quality_presets:
        folders.append(Path(outdir) / preset)
        generate_suite(folders[-1], preset, seed=config.seed, progress=False,
                       overrides={"num_sequences": config.quality_sequences, "num_frames": config.quality_frames})
    return folders


# -- the whole run ---------------------------------------------------------------------------

def default_video() -> Path:
    from corrtrack.synth.suite import default_sources

    path = default_sources()["backgrounds"][0]
    if not path.is_file():
        raise CorrtrackError(f"{path}: vtest.avi not found; give a video with --video (or set CORRTRACK_SHARED)")
    return path


def environment(config: BenchConfig) -> dict:
    import importlib.metadata as md

    import torch

    from corrtrack.models.frozen import effective_runtime
    from corrtrack.pipeline.pose import PoseConfig

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    versions = {}
    for pkg in ("corrtrack", "torch", "numpy", "opencv-python-headless", "opencv-python", "motmetrics"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": platform.machine(), "cpu": cpu, "cpus": os.cpu_count(), "system": platform.system(),
            "python": platform.python_version(), "versions": versions, "device": device,
            "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None,
            "torch_threads": torch.get_num_threads(), "openmp": openmp.describe(),
            "load_start": list(os.getloadavg()), **_default_keep_alive(),
            "candidate_memory": PoseConfig().candidate_memory,
            "cpu_runtime": effective_runtime(config.cpu_runtime) if device == "cpu" else None}


def _default_keep_alive() -> dict[str, int]:
    from corrtrack.pipeline.tracker import TrackerConfig

    cfg = TrackerConfig()
    return {"keep_alive": cfg.max_age, "tentative_keep_alive": cfg.track_max_age(1)}


def run_bench(config: BenchConfig = BenchConfig(), progress: bool = False, log=print) -> BenchReport:
    """Speed on the video (+ synthetic scenes of ``config.people``), model sizes and the quality check."""
    import torch

    from corrtrack.pipeline.run import RunConfig, build_parts, parts_for

    config.validate()
    video = Path(config.video) if config.video else default_video()
    if not video.exists():
        raise CorrtrackError(f"{video}: no such video")
    if config.threads:
        torch.set_num_threads(config.threads)
    report = BenchReport(environment(config))
    # On a GPU the first call with each new batch shape builds cuDNN kernels (~2 s each on an H100,
    # models/buckets.py): the whole input is tracked once untimed so the table shows the steady state.
    device = report.environment["device"]  # config.device, or CUDA if available
    warmup = config.frames if device.startswith("cuda") else config.warmup
    report.environment.update(frames=config.frames, warmup=warmup)
    run_config = RunConfig(device=device, progress=progress, cpu_runtime=config.cpu_runtime)
    log("loading the models")
    parts = build_parts(run_config)
    with tempfile.TemporaryDirectory(prefix="corrtrack_bench_") as tmp:
        for n in config.people:
            log(f"synthetic scene with {n} people: generating {config.frames} frames")
            src = people_scene(Path(tmp) / f"people{n}", n, config.frames, seed=config.seed)
            label = f"synthetic, {n} {'person' if n == 1 else 'people'}"
            row = measure_speed(src, parts, run_config, config.frames, label, n, warmup)
            log(f"  {row.fps:.2f} FPS, {row.detected:.1f} people detected per frame")
            report.speed.append(row)
        variants = [(video.name, {})]
        if config.no_refinement:
            variants.append((f"{video.name}, --no-refinement", {"use_refinement": False}))
        variants += [(f"{video.name}, --detect-every {n}", {"detect_every": n}) for n in config.detect_every]
        for label, changes in variants:
            log(f"{label}: tracking {config.frames} frames")
            rc = replace(run_config, tracker=replace(run_config.tracker, **changes))
            row = measure_speed(video, parts_for(parts, rc.tracker), rc, config.frames, label, None, warmup)
            log(f"  {row.fps:.2f} FPS")
            report.speed.append(row)
        report.models = model_sizes(parts)
        if config.quality:
            log(f"quality: synthetic suite {'+'.join(config.quality_presets)}, {config.quality_sequences} "
                f"sequence(s) x {config.quality_frames} frames per preset")
            suites = quality_suites(Path(tmp) / "quality", config)
            report.quality = quality_check(suites, parts, config.similarities, progress)
            report.quality["presets"] = list(config.quality_presets)
    report.environment["load_end"] = list(os.getloadavg())
    return report


# -- output ----------------------------------------------------------------------------------

def speed_table(rows: Sequence[SpeedRow]) -> tuple[tuple[str, ...], list[list[str]]]:
    return SPEED_COLUMNS, [r.cells() for r in rows]


def quality_table(quality: dict) -> tuple[tuple[str, ...], list[list[str]]]:
    rows = [[m, f"{r['MOTA']:.1f}", str(int(r["IDSW"])), f"{r['mAP']:.1f}"] for m, r in quality["methods"].items()]
    return QUALITY_COLUMNS, rows


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """The first ``left`` columns left-aligned, the (numeric) rest right-aligned."""
    head = "| " + " | ".join(columns) + " |"
    rule = "| " + " | ".join("---" if i < left else "---:" for i in range(len(columns))) + " |"
    return "\n".join([head, rule, *("| " + " | ".join(r) + " |" for r in rows)])


def target_notes(report: BenchReport) -> list[str]:
    """One line per target: measured, target, by how much it is missed (or met)."""
    notes = []
    real = [r for r in report.speed if r.people is None]
    for r in real:
        if r.fps >= TARGET_FPS:
            notes.append(f"{r.input} {r.width}×{r.height}: {r.fps:.2f} FPS end to end, target ≥ {TARGET_FPS:g}: met.")
        else:
            notes.append(f"{r.input} {r.width}×{r.height}: {r.fps:.2f} FPS end to end, target ≥ {TARGET_FPS:g}: "
                         f"missed by {TARGET_FPS / r.fps:.1f}× ({r.total_ms:.0f} ms per frame, the target "
                         f"needs {1000 / TARGET_FPS:.0f} ms).")
    for r in report.speed:
        share = r.tracking_share
        verdict = "met" if share <= TARGET_TRACKING_SHARE else \
            f"missed by {share - TARGET_TRACKING_SHARE:.1f} points ({share / TARGET_TRACKING_SHARE:.1f}×)"
        notes.append(f"{r.input}: tracking (correspondence + association) {share:.1f} % of the per-frame time, "
                     f"target ≤ {TARGET_TRACKING_SHARE:g} %: {verdict}.")
    return notes


def format_report(report: BenchReport) -> str:
    """The report as plain text: environment, speed table, targets, models, quality."""
    env = report.environment
    cols, rows = speed_table(report.speed)
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    lines = [f"corrtrack bench, {env['date']}: {env['cpu']} ({env['cpus']} CPUs), device {env['device']}"
             + (f" ({env['gpu']})" if env.get("gpu") else "") + f", torch {env['versions'].get('torch', '?')} "
             f"with {env['torch_threads']} threads ({env.get('openmp', 'OpenMP wait not recorded')}); "
             f"load average {env['load_start'][0]:.1f} at the start"
             + (f", {env['load_end'][0]:.1f} at the end" if "load_end" in env else ""),
             "", "speed (ms per frame per stage, end to end):",
             "  ".join(c.rjust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in rows]
    lines += ["", *target_notes(report)]
    if report.models:
        lines += ["", "models:"]
        lines += [f"  {m.name:<18} {m.role:<15} {m.bytes / 2 ** 20:7.1f} MiB  {m.params / 1e6:6.2f} M parameters"
                  + ("  (used)" if m.used else "") for m in report.models]
    if report.quality:
        q = report.quality
        qcols, qrows = quality_table(q)
        lines += ["", f"quality on a tiny synthetic suite ({q['sequences']} sequences, {q['frames']} frames, "
                  f"{q['gt_poses']} GT poses; same detections for every method, recovery off):",
                  "  ".join(f"{c:>8}" for c in qcols)]
        lines += ["  ".join(f"{v:>8}" for v in r) for r in qrows]
        m = q["methods"]
        if "corr" in m and "oks" in m:
            if m["oks"]["IDSW"] > 0:
                ratio = m["corr"]["IDSW"] / m["oks"]["IDSW"]
                verdict = "met" if ratio <= TARGET_IDSW_RATIO else "missed"
                lines.append(f"ID switches corr / oks = {ratio:.2f}, target ≤ {TARGET_IDSW_RATIO:g}: {verdict} "
                             "(a tiny suite: see BENCHMARKS.md for the full one)")
            else:
                lines.append("oks made no ID switch on this tiny suite: no corr / oks ratio")
    return "\n".join(lines)


def check_finite(report: BenchReport) -> None:
    """CorrtrackError when a measured number is not a positive finite value (a broken run)."""
    for r in report.speed:
        checks = [("total ms", r.total_ms), ("FPS", r.fps), *((f"{s} ms", r.stage_ms[s]) for s in STAGES)]
        if r.cpu_ms == r.cpu_ms:  # NaN: not measured (an older saved report)
            checks.append(("CPU ms", r.cpu_ms))
        for name, v in checks:
            if not math.isfinite(v) or v < 0 or (name in ("total ms", "FPS") and v <= 0):
                raise CorrtrackError(f"bench: {r.input}: {name} = {v}, not a positive finite time")


# -- plots -------------------------------------------------------------------------------------

def _save_figure(fig, path: str | os.PathLike, title: str) -> Path:
    """Title, tight layout, written atomically as PNG; the figure is closed."""
    import matplotlib.pyplot as plt

    from corrtrack.io.atomic import atomic_path

    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
    return path


def plot_speed(rows: Sequence[SpeedRow], path: str | os.PathLike, title: str = "") -> Path:
    """FPS and stacked per-stage ms against the number of people (the rows with ``people``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    synth = sorted((r for r in rows if r.people is not None), key=lambda r: r.people)
    if not synth:
        raise CorrtrackError("bench: no synthetic rows to plot against the number of people")
    x = np.array([r.people for r in synth], float)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.4))
    a1.plot(x, [r.fps for r in synth], "o-", label="end-to-end FPS")
    for i, r in enumerate(r for r in rows if r.people is None):
        a1.axhline(r.fps, color=str(min(0.2 + 0.25 * i, 0.8)), ls=":",
                   label=f"{r.input} ({r.detected:.1f} detected/frame)")
    a1.axhline(TARGET_FPS, color="red", ls="--", label=f"target {TARGET_FPS:g} FPS")
    a1.set_xscale("log")
    a1.set_yscale("log")
    a1.set_xticks(x, [f"{int(v)}\n({r.detected:.1f})" for v, r in zip(x, synth)])
    a1.set_xlabel("people in the scene (detected per frame)")
    a1.set_ylabel("frames per second")
    a1.set_title("end-to-end FPS")
    a1.grid(alpha=0.3, which="both")
    a1.legend(fontsize=8)
    bottom = np.zeros(len(synth))
    for s in STAGES:
        v = np.array([r.stage_ms[s] for r in synth])
        a2.bar(np.arange(len(synth)), v, bottom=bottom, label=s)
        bottom += v
    a2.set_xticks(np.arange(len(synth)), [f"{int(v)}" for v in x])
    a2.set_xlabel("people in the scene")
    a2.set_ylabel("ms per frame")
    a2.set_title("time per stage")
    a2.legend(fontsize=8, loc="upper left")
    a2.grid(axis="y", alpha=0.3)
    return _save_figure(fig, path, title)


def plot_quality(results: dict[str, dict[str, dict[str, Any]]], path: str | os.PathLike, title: str = "",
                 metrics: Sequence[str] = ("IDSW", "MOTA")) -> Path:
    """Grouped bars of ``metrics`` per method, one group per preset: ``results[group][method][metric]``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    groups = list(results)
    methods = list(dict.fromkeys(m for g in groups for m in results[g]))
    if not groups or not methods:
        raise CorrtrackError("bench: no results to plot")
    x = np.arange(len(groups))
    w = 0.8 / len(methods)
    # The default cycle has 10 colours: more methods would share one.
    colours = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20").colors
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for k, m in enumerate(methods):
            vals = [results[g].get(m, {}).get(metric, np.nan) for g in groups]
            ax.bar(x + (k - (len(methods) - 1) / 2) * w, [np.nan if v is None else v for v in vals], w, label=m,
                   color=colours[k % len(colours)])
        ax.set_xticks(x, groups)
        ax.set_title({"IDSW": "ID switches (summed over joints)", "MOTA": "MOTA (%)"}.get(metric, metric))
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8, ncol=2)
    return _save_figure(fig, path, title)


def write_marked_section(md_path: str | os.PathLike, name: str, body: str) -> None:
    """Replace only the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` (appended when absent).

    The file is read right before the atomic write: other benchmarks write their own sections of it.
    """
    import re

    from corrtrack.io.atomic import atomic_open

    md_path = Path(md_path)
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = md_path.read_text(encoding="utf-8") if md_path.exists() else "# Benchmarks\n"
    block = f"{start}\n{body.strip()}\n{end}"
    pat = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pat.sub(lambda _: block, text) if pat.search(text) else text.rstrip() + "\n\n" + block + "\n"
    with atomic_open(md_path, "w", encoding="utf-8") as f:
        f.write(text.rstrip() + "\n")
