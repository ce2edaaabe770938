"""Memory of the full tracking pipeline on a long input: RSS every N frames, the peak, flat or growing.

    nice -n 10 .venv/bin/python benchmarks/bench_memory.py [--video ../shared/data/opencv/vtest.avi]
        [--frames 1600] [--every 50] [--pose-model auto] [--similarity corr] [--threads 1]
        [--no-trim] [--out out/bench_memory]

The long input is ``--video`` played in a loop, virtually (nothing is written):
loop k, frame i is frame ``k * n + i`` of the input, so the tracker sees one
long sequence (at each wrap the people jump, so their tracks end and new ones
start, as in a cut). Everything else is ``corrtrack track``'s own code
(``track_sequence`` with the real detector, pose model and correspondence
network, recovery, duplicate removal), writing all outputs at the end.

RSS (VmRSS of /proc/self/status) is read every ``--every`` frames as the frames
are decoded, and every 0.2 s by a thread, so the end of the run (finalising the
tracks from the spool, writing the JSON / CSV outputs) is covered too; VmHWM
gives the true peak. glibc keeps freed heap memory mapped (RSS stays at the
high-water mark of the busiest frames and wanders with fragmentation), which
hides a slow leak in the noise; so each per-frame sample is also taken after
``malloc_trim(0)`` has returned the free heap to the system (``--no-trim`` to
leave the allocator alone): the leak verdict reads those. It fits a line to the
samples after the warm-up (the first loop of the video when the run has 1.5
loops or more, else the first quarter: model buffers, the correspondence
feature cache and the tracker's keep-alive window fill up there, and the
allocator reaches the working set of the busiest frames) and extrapolates it,
with its 2-sigma bound, to one hour of video at the input's frame rate:
"flat" if the bound is under 50 MB per hour, "growing" if the slope is
significantly above 0 and over that, else "not resolved at this length".
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # the machine is shared: no spinning threads

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from corrtrack.io.video import open_source
from corrtrack.pipeline.run import InputSequence
from corrtrack.structures import FrameInfo

# Growth below this over one hour of video counts as flat; a few MB of it is
# allocator noise even after malloc_trim (arenas of other threads, fragmentation).
FLAT_MB_PER_HOUR = 50.0


def rss_mb(key: str = "VmRSS") -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"/proc/self/status has no {key}")


def malloc_trim() -> float:
    """Give glibc's free heap back to the system; RSS afterwards, in MB."""
    import ctypes

    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss_mb()


@dataclass
class Probe:
    """RSS samples: per frame (from the frame loop) and over time (from a thread)."""

    every: int
    trim: bool = True
    per_frame: list[tuple[int, float, float, float]] = field(default_factory=list)  # frame, s, MB, MB trimmed
    timeline: list[tuple[float, float]] = field(default_factory=list)  # seconds, MB
    tracking_done: float | None = None  # seconds at which the last frame was handed out
    t0: float = field(default_factory=time.perf_counter)

    def frame(self, index: int) -> None:
        if index % self.every == 0:
            t, mb = time.perf_counter() - self.t0, rss_mb()
            trimmed = malloc_trim() if self.trim else mb
            self.per_frame.append((index, t, mb, trimmed))
            fps = index / t if t > 0 else 0.0
            print(f"frame {index:>6}  RSS {mb:8.1f} MB  trimmed {trimmed:8.1f} MB  {t:8.1f} s  {fps:5.2f} frames/s",
                  flush=True)

    def sample_forever(self, stop: threading.Event, period: float = 0.2) -> None:
        while not stop.wait(period):
            self.timeline.append((time.perf_counter() - self.t0, rss_mb()))


@dataclass
class LoopedVideo(InputSequence):
    """``path`` played ``loops`` times in a row as one sequence with continuing frame indices."""

    length: int = 0  # frames of one loop
    total: int = 0  # frames of the long input
    probe: Probe | None = None

    def frames(self, start: int = 0, end: int | None = None, fps: float | None = None
               ) -> Iterator[tuple[FrameInfo, np.ndarray | None]]:
        stop = self.total if end is None else min(end, self.total)
        index = start
        while index < stop:
            loop, first = divmod(index, self.length)
            with open_source(self.path, start=first, end=min(self.length, first + stop - index)) as src:
                for fr in src:
                    index = loop * self.length + fr.index
                    if self.probe:
                        self.probe.frame(index)
                    h, w = fr.image.shape[:2]
                    t = None if fr.time is None else fr.time + loop * self.length / (src.fps or 1.0)
                    yield FrameInfo(index, t, fr.name, w, h), fr.image
            index = (loop + 1) * self.length
        if self.probe:
            self.probe.tracking_done = time.perf_counter() - self.probe.t0

    def expected_frames(self, start: int = 0, end: int | None = None) -> int | None:
        return max(0, (self.total if end is None else min(end, self.total)) - start)


def trend(samples: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares slope of MB over frames and its standard error."""
    frames, mb = (np.array(c, float) for c in zip(*samples))
    if len(samples) < 4:
        return float("nan"), float("nan")
    (slope, _), cov = np.polyfit(frames, mb, 1, cov=True)
    return float(slope), float(np.sqrt(cov[0, 0]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", type=Path, default=ROOT.parent / "shared" / "data" / "opencv" / "vtest.avi")
    ap.add_argument("--frames", type=int, default=1600, help="length of the long input")
    ap.add_argument("--every", type=int, default=50, help="RSS sample every N frames")
    ap.add_argument("--pose-model", default="auto")
    ap.add_argument("--similarity", default="corr")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-trim", dest="trim", action="store_false", help="no malloc_trim before the samples")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "bench_memory")
    args = ap.parse_args()

    import torch

    from corrtrack.cli._frames import pose_config
    from corrtrack.pipeline.run import RunConfig, build_parts, track_sequence
    from corrtrack.pipeline.tracker import TrackerConfig

    torch.set_num_threads(args.threads)
    with open_source(args.video) as src:
        length, fps = src.num_frames, src.fps or 10.0
        assert length, f"{args.video}: frame count unknown"
    probe = Probe(args.every, trim=args.trim)
    seq = LoopedVideo(f"{args.video.stem}_x{args.frames}", args.video, "video", length=length, total=args.frames,
                      probe=probe)
    config = RunConfig(tracker=TrackerConfig(similarity=args.similarity), pose=pose_config(args.pose_model),
                       device="cpu", progress=False)
    print(f"input: {args.video} ({length} frames at {fps:g} fps) looped to {args.frames} frames "
          f"({args.frames / fps / 60:.1f} min); similarity {args.similarity}, pose model {args.pose_model}, "
          f"{args.threads} torch thread(s); load average {os.getloadavg()[0]:.2f}", flush=True)
    rss_start = rss_mb()
    parts = build_parts(config)
    rss_models = rss_mb()
    probe.t0 = time.perf_counter()
    stop = threading.Event()
    sampler = threading.Thread(target=probe.sample_forever, args=(stop,), daemon=True)
    sampler.start()
    try:
        result = track_sequence(seq, args.out, replace(config), parts)
    finally:
        stop.set()
        sampler.join()
    elapsed = time.perf_counter() - probe.t0
    peak = rss_mb("VmHWM")

    during = [mb for t, mb in probe.timeline if probe.tracking_done is None or t <= probe.tracking_done]
    after = [mb for t, mb in probe.timeline if probe.tracking_done is not None and t > probe.tracking_done]
    warm_up = length if args.frames >= 1.5 * length else args.frames // 4
    warm = [s for s in probe.per_frame if s[0] >= warm_up]
    slope, se = trend([(f, trimmed) for f, _, _, trimmed in warm])
    per_hour, bound = slope * fps * 3600, (slope + 2 * se) * fps * 3600
    print()
    print(f"{'frame':>7} {'seconds':>9} {'RSS MB':>9} {'trimmed':>9}")
    for f, t, mb, trimmed in probe.per_frame:
        print(f"{f:>7} {t:>9.1f} {mb:>9.1f} {trimmed:>9.1f}")
    print()
    print(f"frames tracked        {result.frames} ({result.frames / fps / 60:.1f} min of video) in {elapsed:.0f} s "
          f"({result.frames / elapsed:.2f} frames/s), {result.tracks} tracks, {result.poses} poses")
    print(f"RSS before models     {rss_start:.1f} MB; with models {rss_models:.1f} MB")
    if warm:
        print(f"after warm-up         frames {warm[0][0]}..{warm[-1][0]} ({len(warm)} samples): RSS "
              f"{min(s[2] for s in warm):.1f}..{max(s[2] for s in warm):.1f} MB, trimmed "
              f"{min(s[3] for s in warm):.1f}..{max(s[3] for s in warm):.1f} MB")
    print(f"peak while tracking   {max(during, default=float('nan')):.1f} MB")
    print(f"peak while writing    {max(after, default=float('nan')):.1f} MB (finalising + JSON/CSV outputs)")
    print(f"peak (VmHWM)          {peak:.1f} MB")
    print(f"trend after warm-up   {1000 * slope:+.2f} +- {1000 * se:.2f} MB per 1000 frames -> {per_hour:+.1f} MB "
          f"per hour of video at {fps:g} fps (2-sigma bound {bound:+.1f})")
    if bound < FLAT_MB_PER_HOUR:
        verdict = f"flat (growth under {FLAT_MB_PER_HOUR:g} MB per hour)"
    elif slope - 2 * se > 0:
        verdict = "growing"
    else:
        verdict = f"not resolved at this length (a leak under {bound:.0f} MB per hour is not excluded)"
    print(f"verdict               {verdict}; load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
