"""Track a video end to end: detect -> pose -> recover -> associate -> dedupe -> write.

``track_video`` streams the frames of one input (a video, a folder of frames or
a PoseTrack annotation file) through the models and the :class:`Tracker`,
spooling each frame's tracked poses to a temporary file so that memory stays
flat however long the video is. At the end it finalises the tracks (drops
short ones, optional merging, joint threshold), writes the outputs atomically
and optionally renders an MP4 by reading the source a second time::

    OUTDIR/posetrack/<name>.json   PoseTrack 2018 (what `corrtrack eval` reads)
    OUTDIR/coco/<name>.json        COCO keypoint results with track_id
    OUTDIR/csv/<name>.csv          one row per joint
    OUTDIR/video/<name>.mp4        with --render
    OUTDIR/summary/<name>.json     frames, tracks, per-stage seconds; written last

A sequence whose summary (and every output it lists) exists is complete and is
skipped by batch runs (``track_many``: serial, worker processes or Ray tasks, all
through ``track_one``), so an interrupted batch can be resumed. Ctrl-C during
tracking stops at the current frame and writes the outputs of the frames done.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pickle
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from corrtrack.errors import CorrtrackError
from corrtrack.pipeline.similarity import propagation_confidence
from corrtrack.pipeline.tracker import (
    Tracker,
    TrackerConfig,
    Tracklet,
    final_id_map,
    finalize_frame,
    merge_candidates,
    merge_tracks,
    output_view,
)
from corrtrack.structures import FrameInfo, Poses, PoseSequence

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
OUTPUTS = {"posetrack": ("posetrack", ".json"), "coco": ("coco", ".json"), "csv": ("csv", ".csv"),
           "video": ("video", ".mp4"), "summary": ("summary", ".json")}


@dataclass(frozen=True)
class RunConfig:
    tracker: TrackerConfig = TrackerConfig()
    detector: Any = None  # corrtrack.pipeline.detector.DetectorConfig; None = its defaults
    pose: Any = None  # corrtrack.pipeline.pose.PoseConfig; None = its defaults
    render: bool = False
    start: int = 0
    end: int | None = None  # exclusive
    device: str | None = None
    progress: bool = True
    fps: float | None = None  # frame rate for folders / PoseTrack files (times, rendering)
    corr_weights: str | None = None  # correspondence model file; None = the shipped one
    # Longer side of the correspondence network's input, a multiple of 32; None = the model's own (512)
    corr_input_size: int | None = None
    # How the networks run on a CPU: "onnx" (ONNX Runtime: the correspondence stage ~20%, the detector ~15%
    # and MoveNet ~10% faster) or "torchscript" (frozen traces; also the fallback without onnxruntime).
    # corrtrack.models.frozen
    cpu_runtime: str = "onnx"


def output_path(out_dir: str | os.PathLike, kind: str, name: str) -> Path:
    folder, ext = OUTPUTS[kind]
    return Path(out_dir) / folder / f"{name}{ext}"


# -- inputs -------------------------------------------------------------------

@dataclass
class InputSequence:
    """One sequence to track: where its frames come from and what is known about them."""

    name: str
    path: Path
    kind: str  # "video" | "folder" | "posetrack"
    gt: PoseSequence | None = None  # for "posetrack": the annotation file (its frames, image ids)
    root: Path | None = None  # for "posetrack": the folder its file names are relative to

    def frames(self, start: int = 0, end: int | None = None, fps: float | None = None
               ) -> Iterator[tuple[FrameInfo, np.ndarray | None]]:
        """(frame info, RGB image or None when unreadable) for frames start..end-1."""
        if self.kind == "posetrack":
            from corrtrack.io.video import read_image

            for info in self.gt.frames[start:end]:
                info = replace(info, ignore_regions=list(info.ignore_regions))
                path = self.root / info.file_name
                try:
                    image = read_image(path)
                except CorrtrackError as e:
                    log.warning("%s; tracking goes on without this frame", e)
                    image = None
                if image is not None:
                    info.height, info.width = image.shape[:2]
                yield info, image
            return
        from corrtrack.io.video import open_source

        with open_source(self.path, start=start, end=end, fps=fps) as src:
            for fr in src:
                h, w = fr.image.shape[:2]
                yield FrameInfo(fr.index, fr.time, fr.name, w, h), fr.image

    def expected_frames(self, start: int = 0, end: int | None = None) -> int | None:
        if self.kind == "posetrack":
            return len(self.gt.frames[start:end])
        from corrtrack.io.video import open_source

        with open_source(self.path, start=start, end=end) as src:
            return src.expected_frames

    def fps(self) -> float | None:
        if self.kind == "video":
            from corrtrack.io.video import open_source

            with open_source(self.path) as src:
                return src.fps
        return None


def _posetrack_input(path: Path) -> InputSequence:
    from corrtrack.io.posetrack import read_posetrack

    seq = read_posetrack(path)
    if not seq.frames:
        raise CorrtrackError(f"{path}: PoseTrack file lists no frames")
    names = [f.file_name for f in seq.frames]
    if any(not n for n in names):
        raise CorrtrackError(f"{path}: a frame has no file_name, so its image cannot be found")
    # Image paths are relative to the dataset root, some folder above the annotation file.
    for root in path.resolve().parents:
        if (root / names[0]).is_file():
            break
    else:
        raise CorrtrackError(f"{path}: image {names[0]} not found under any folder above the file")
    return InputSequence(path.stem, path, "posetrack", gt=seq, root=root)


def discover_inputs(path: str | os.PathLike) -> list[InputSequence]:
    """The sequences an INPUT stands for (a folder of videos or of PoseTrack files gives several)."""
    from corrtrack.io.video import IMAGE_EXTENSIONS, natural_key

    path = Path(path)
    if not path.exists():
        raise CorrtrackError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() == ".json":
            return [_posetrack_input(path)]
        return [InputSequence(path.stem, path, "video")]
    if (path / "suite.json").is_file() and (path / "videos").is_dir():  # a `corrtrack data synth` suite
        path = path / "videos"
    files = sorted((p for p in path.iterdir() if p.is_file()), key=lambda p: natural_key(p.name))
    if any(p.suffix.lower() in IMAGE_EXTENSIONS for p in files):
        return [InputSequence(path.name, path, "folder")]
    videos = [p for p in files if p.suffix.lower() in VIDEO_EXTENSIONS]
    if videos:
        return [InputSequence(p.stem, p, "video") for p in videos]
    jsons = [p for p in files if p.suffix.lower() == ".json"]
    if jsons:
        return [_posetrack_input(p) for p in jsons]
    raise CorrtrackError(f"{path}: folder holds no images, videos ({', '.join(VIDEO_EXTENSIONS)}) "
                         "or PoseTrack files")


# -- models -------------------------------------------------------------------

class CropEmbedder:
    """Re-ID baseline: MobileNetV2 (ImageNet) features of each person crop, pooled, unit length."""

    size = (128, 256)  # crop (width, height): the 1:2 of a standing person

    def __init__(self, device: str | None = None):
        import torch

        from corrtrack.models.mobilenetv2 import IMAGENET_MEAN, IMAGENET_STD, MobileNetV2Features, load_imagenet_weights

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.net = MobileNetV2Features(17)
        load_imagenet_weights(self.net)
        self.net.to(self.device).eval()
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        import cv2
        import torch

        h, w = image.shape[:2]
        crops = []
        for x1, y1, x2, y2 in np.asarray(boxes, np.float64).reshape(-1, 4):
            x1, y1 = int(np.clip(np.floor(x1), 0, w - 1)), int(np.clip(np.floor(y1), 0, h - 1))
            x2, y2 = int(np.clip(np.ceil(x2), x1 + 1, w)), int(np.clip(np.ceil(y2), y1 + 1, h))
            crops.append(cv2.resize(image[y1:y2, x1:x2], self.size, interpolation=cv2.INTER_LINEAR))
        if not crops:
            return np.zeros((0, 1280), np.float32)
        with torch.inference_mode():
            x = torch.from_numpy(np.stack(crops)).to(self.device).permute(0, 3, 1, 2).float().div_(255)
            f = self.net((x - self.mean) / self.std, (16,))[-1]
            e = self.net.head(f).mean((2, 3))
            return torch.nn.functional.normalize(e, dim=1).cpu().numpy()


@dataclass
class Parts:
    """The networks of a run, built once per process and shared by its sequences."""

    detect: Any
    estimate: Any
    correspond: Any = None
    embed: Any = None


def build_parts(config: RunConfig) -> Parts:
    from corrtrack.pipeline.detector import Detector, DetectorConfig
    from corrtrack.pipeline.pose import PoseConfig, TopDownPoseEstimator

    tc = config.tracker
    detect = Detector(config.detector or DetectorConfig(), device=config.device, runtime=config.cpu_runtime)
    estimate = TopDownPoseEstimator(config.pose or PoseConfig(), device=config.device, runtime=config.cpu_runtime)
    correspond = None
    if tc.uses_correspondence_net:
        correspond = CorrPropagator.load(config.corr_weights, config.device, runtime=config.cpu_runtime,
                                         input_size=config.corr_input_size, **CorrPropagator.settings(tc))
    embed = CropEmbedder(config.device) if (tc.similarity == "reid" or tc.appearance > 0) else None
    return Parts(detect, estimate, correspond, embed)


def parts_for(parts: Parts, tracker: TrackerConfig) -> Parts:
    """``parts`` with a correspondence propagator set as ``tracker`` asks (refinement, joint threshold,
    prior, feature cache), sharing the loaded network: one build serves runs of different settings."""
    if not isinstance(parts.correspond, CorrPropagator):
        return parts
    return dataclasses.replace(parts, correspond=CorrPropagator(parts.correspond.net, **CorrPropagator.settings(tracker)))


class PoseTracker:
    """Online pose tracking in Python, one frame at a time: ``corrtrack track`` without the files.

    ::

        tracker = PoseTracker()              # the defaults of `corrtrack track`; builds the networks once
        for image in frames:                 # RGB uint8 (H, W, 3), in order
            people = tracker(image)          # Poses: boxes, keypoints (x, y, score), track_ids

    A call returns the frame's people as tracked online: joints below the output threshold
    removed, as ``corrtrack track`` writes them. What only the end of a sequence can decide
    is not applied: ``track`` also drops tracks shorter than ``min_track_length`` frames
    (the first frames of a track are returned before anyone knows whether it will last),
    numbers the tracks it keeps 0, 1, ... (online ids can skip numbers) and merges tracks
    with ``merge``. ``reset()`` starts a new sequence (ids start again at 0).
    ``step(index, image)`` is the same with explicit frame indices (gaps allowed) and
    returns every tracked pose untouched. ``timings`` adds up seconds per stage.
    """

    def __init__(self, config: RunConfig | None = None, parts: Parts | None = None):
        self.config = config or RunConfig()
        # Parts built for another config (one build shared by many runs) get a propagator set as
        # this config's tracker asks: its refinement, joint threshold and prior are fixed at build.
        self.parts = parts_for(parts, self.config.tracker) if parts else build_parts(self.config)
        self.reset()

    def reset(self) -> None:
        from corrtrack.pipeline.pose import CandidateMemory, PoseConfig

        tc, pc = self.config.tracker, self.config.pose or PoseConfig()
        self.memory = CandidateMemory(pc.candidate_memory, pc.candidate_memory_iou)
        # boxes the detector found / the pose network estimated, over the frames so far
        self.counts = {"detected": 0, "estimated": 0}
        self.tracker = Tracker(tc, correspond=self.parts.correspond if tc.needs_correspondence else None,
                               estimate=self.parts.estimate, embed=self.parts.embed)
        if hasattr(self.parts.correspond, "reset"):
            self.parts.correspond.reset()  # its feature cache is keyed by frame index
        self._next = 0
        self._timings: dict[str, float] = defaultdict(float)

    @property
    def timings(self) -> dict[str, float]:
        """Seconds per stage so far: detect, pose, and the tracker's (correspondence, association, ...)."""
        out = defaultdict(float, self._timings)
        for stage, sec in self.tracker.timings.items():
            out[stage] += sec
        return dict(out)

    def step(self, index: int, image: np.ndarray) -> Poses:
        """Track frame ``index`` (RGB uint8): every tracked pose, unthresholded, with its track id."""
        poses = None  # not detected: the tracker follows the people of the last frame (detect_every)
        if self.tracker.wants_detections(index):
            t0 = time.perf_counter()
            boxes = self.parts.detect(image)
            asked = self.memory.filter(index, boxes)
            t1 = time.perf_counter()
            poses = self.parts.estimate(image, asked)
            self.memory.update(index, asked, poses)
            self.counts["detected"] += len(boxes)
            self.counts["estimated"] += len(asked)
            self._timings["detect"] += t1 - t0
            self._timings["pose"] += time.perf_counter() - t1
        self._next = index + 1
        return self.tracker.step(index, poses, image)

    def __call__(self, image: np.ndarray) -> Poses:
        from corrtrack.pipeline.detector import as_rgb_uint8

        return output_view(self.step(self._next, as_rgb_uint8(image)), self.config.tracker)


class CorrPropagator:
    """The correspondence network as the tracker's ``Propagator``.

    Features of a frame are computed once and kept for the ``cache_size`` most recently
    used frames (a track kept alive propagates from the frame it was last seen in).
    Frame indices key the cache, so call ``reset()`` between sequences.
    """

    def __init__(self, net, use_refinement: bool = True, joint_thresh: float = 0.1, cache_size: int = 12,
                 prior: float = 0.0):
        self.net, self.use_refinement, self.joint_thresh, self.prior = net, use_refinement, joint_thresh, prior
        self.cache_size = cache_size
        self._feats: dict[int, Any] = {}

    @classmethod
    def load(cls, weights: str | os.PathLike | None = None, device: str | None = None, runtime: str = "onnx",
             input_size: int | None = None, **kw) -> "CorrPropagator":
        import torch

        from corrtrack.models.corrnet import DEFAULT_WEIGHTS, CorrespondenceNet

        dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
        net = CorrespondenceNet.load(weights or DEFAULT_WEIGHTS, map_location=dev).to(dev).eval()
        # Trained on square canvases, but fully convolutional: a canvas fitted to the frame drops the
        # padding, 25% of the work on 4:3 video and 44% on 16:9, for the same PCK on set (b)
        # (512 square 99.6 / 92.0 / 82.0 at gaps 1 / 5 / 10, fitted 99.6 / 91.9 / 82.0).
        if input_size is not None and input_size < 64:  # CorrNetConfig checks that it is a multiple of 32
            raise CorrtrackError(f"correspondence input size must be >= 64, got {input_size}")
        net.config = dataclasses.replace(net.config, square=False, input_size=input_size or net.config.input_size)
        return cls(net.freeze_for_cpu(runtime=runtime), **kw)  # CPU inference path (corrtrack.models.frozen)

    @staticmethod
    def settings(tracker: TrackerConfig) -> dict[str, Any]:
        """The keyword arguments a tracker config gives a propagator."""
        return dict(use_refinement=tracker.use_refinement, joint_thresh=tracker.joint_thresh,
                    prior=tracker.corr_prior, cache_size=tracker.max_age + 2)

    def reset(self) -> None:
        self._feats.clear()

    def features(self, index: int, image: np.ndarray):
        from corrtrack.pipeline.propagate import frame_features

        feats = self._feats.pop(index, None)
        if feats is None:
            feats = frame_features(self.net, image)
        self._feats[index] = feats  # least recently used first: merging asks for old frames out of order
        while len(self._feats) > self.cache_size:
            del self._feats[next(iter(self._feats))]
        return feats

    def __call__(self, src_index, src_image, dst_index, dst_image, poses):
        from corrtrack.pipeline.propagate import propagate

        fa, fb = self.features(src_index, src_image), self.features(dst_index, dst_image)
        return propagate(self.net, None, None, poses, fa, fb, use_refinement=self.use_refinement,
                         joint_thresh=self.joint_thresh, prior=self.prior)


# -- the spool: per-frame results on disk while tracking -----------------------

class _Spool:
    """Append-only file of (FrameInfo, Poses) records; read back in order."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=folder, prefix=".spool.", suffix=".part")
        self.path = Path(name)
        self._f = os.fdopen(fd, "wb")
        self.count = 0

    def add(self, info: FrameInfo, poses: Poses) -> None:
        rec = (info, poses.layout.name, poses.keypoints.astype(np.float32), poses.boxes.astype(np.float32),
               poses.scores.astype(np.float32), poses.track_ids, poses.origin)
        pickle.dump(rec, self._f, protocol=pickle.HIGHEST_PROTOCOL)
        self.count += 1

    def close_writing(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __iter__(self) -> Iterator[tuple[FrameInfo, Poses]]:
        self.close_writing()
        with open(self.path, "rb") as f:
            for _ in range(self.count):
                info, layout, kp, boxes, scores, ids, origin = pickle.load(f)
                yield info, Poses(kp.astype(np.float64), layout, boxes.astype(np.float64),
                                  scores.astype(np.float64), ids, origin)

    def remove(self) -> None:
        self.close_writing()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class _FinalPoses(Sequence):
    """The written poses of every frame, finalised on the fly from the spool (never all in memory)."""

    def __init__(self, spool: _Spool, id_map: dict[int, int], config: TrackerConfig):
        self.spool, self.id_map, self.config = spool, id_map, config

    def __len__(self) -> int:
        return self.spool.count

    def __iter__(self) -> Iterator[Poses]:
        for _, poses in self.spool:
            yield finalize_frame(poses, self.id_map, self.config)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        for j, p in enumerate(self):
            if j == (i % len(self)):
                return p
        raise IndexError(i)


# -- results ---------------------------------------------------------------------

@dataclass
class TrackResult:
    name: str
    frames: int
    tracks: int
    poses: int
    outputs: dict[str, Path]
    timings: dict[str, float]
    seconds: float
    interrupted: bool = False
    skipped: bool = False
    error: str | None = None  # a batch member that could not be read
    counts: dict[str, int] = dataclasses.field(default_factory=dict)  # PoseTracker.counts

    def summary(self) -> dict:
        return {"name": self.name, "frames": self.frames, "tracks": self.tracks, "poses": self.poses,
                "seconds": round(self.seconds, 3), "interrupted": self.interrupted,
                "timings": {k: round(v, 4) for k, v in self.timings.items()}, "boxes": self.counts,
                "outputs": {k: str(v) for k, v in self.outputs.items()}}


def is_complete(out_dir: str | os.PathLike, name: str, render: bool = False) -> bool:
    """Whether a previous run wrote every output of ``name`` (its summary is written last)."""
    import json

    summary = output_path(out_dir, "summary", name)
    if not summary.is_file():
        return False
    try:
        data = json.loads(summary.read_text(encoding="utf-8"))
        files = [Path(p) for p in data["outputs"].values()]
        if render:
            files.append(output_path(out_dir, "video", name))
        return not data.get("interrupted") and all(p.is_file() for p in files)
    except (ValueError, KeyError, TypeError, OSError):
        return False


class _Timer:
    def __init__(self):
        self.t: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.t[stage] += time.perf_counter() - t0


# -- one sequence ------------------------------------------------------------------

def track_sequence(seq: InputSequence, out_dir: str | os.PathLike, config: RunConfig = RunConfig(),
                   parts: Parts | None = None) -> TrackResult:
    """Track one input sequence and write its outputs into ``out_dir``."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    t_start = time.perf_counter()
    tracker = PoseTracker(config, parts)
    parts = tracker.parts
    timer = _Timer()
    spool = _Spool(out_dir / "summary")
    interrupted = False
    try:
        total = seq.expected_frames(config.start, config.end)
        bar = tqdm(total=total, unit="frame", desc=seq.name, disable=not config.progress, dynamic_ncols=True,
                   leave=False)
        frames = seq.frames(config.start, config.end, config.fps)
        last = None
        try:
            while True:
                with timer("decode"):
                    item = next(frames, None)
                if item is None:
                    break
                info, image = item
                for missing in range(last + 1, info.index) if last is not None else ():
                    # An undecodable frame is written empty, so frames stay aligned with the source.
                    spool.add(FrameInfo(missing), Poses.empty("coco17"))
                last = info.index
                if image is None:
                    with timer("io"):
                        spool.add(info, Poses.empty("coco17"))
                    bar.update(1)
                    continue
                tracked = tracker.step(info.index, image)
                with timer("io"):
                    spool.add(info, tracked)
                bar.update(1)
        except KeyboardInterrupt:
            interrupted = True
            log.warning("%s: interrupted after %d frames; writing their outputs", seq.name, spool.count)
        finally:
            bar.close()
            frames.close()
        spool.close_writing()
        for stage, sec in tracker.timings.items():
            timer.t[stage] += sec
        result = _write_outputs(seq, spool, out_dir, config, parts, timer, interrupted)
        result.counts = dict(tracker.counts)
    finally:
        spool.remove()
    result.seconds = time.perf_counter() - t_start
    _write_summary(out_dir, result)
    return result


def write_tracked(seq: InputSequence, tracked: Iterable[tuple[FrameInfo, Poses]], out_dir: str | os.PathLike,
                  config: RunConfig = RunConfig(), parts: Parts | None = None) -> TrackResult:
    """Finalise and write what some driver already tracked online (``Tracker.step`` per frame).

    The offline half of :func:`track_sequence` (dropping short tracks, merging,
    joint threshold, writing): for drivers that step several trackers over one
    decode of the frames, e.g. ``benchmarks/bench_tracking.py``. Merging reads
    the source again and needs ``parts.correspond``.
    """
    out_dir = Path(out_dir)
    t_start = time.perf_counter()
    timer = _Timer()
    spool = _Spool(out_dir / "summary")
    try:
        for info, poses in tracked:
            spool.add(info, poses)
        spool.close_writing()
        result = _write_outputs(seq, spool, out_dir, config, parts or Parts(None, None), timer, False)
    finally:
        spool.remove()
    result.seconds = time.perf_counter() - t_start
    _write_summary(out_dir, result)
    return result


def _track_frames(spool: _Spool) -> dict[int, list[int]]:
    frames_of: dict[int, list[int]] = defaultdict(list)
    for info, poses in spool:
        for t in poses.track_ids:
            if t >= 0:
                frames_of[int(t)].append(info.index)
    return frames_of


def _write_outputs(seq: InputSequence, spool: _Spool, out_dir: Path, config: RunConfig, parts: Parts,
                   timer: _Timer, interrupted: bool) -> TrackResult:
    tc = config.tracker
    # A clip shorter than min_track_length would otherwise lose everybody.
    tc = replace(tc, min_track_length=max(1, min(tc.min_track_length, spool.count)))
    with timer("merge" if tc.merge else "io"):
        roots = _merge(seq, spool, config, parts) if tc.merge and not interrupted else {}
    counts: dict[int, int] = defaultdict(int)
    order: list[int] = []
    for _, poses in spool:
        ok = poses.num_visible(tc.output_joint_thresh - 1e-12) >= tc.min_keypoints
        for t in poses.track_ids[ok]:
            r = roots.get(int(t), int(t))
            if r not in counts:
                order.append(r)
            counts[r] += 1
    root_map = final_id_map(counts, tc, order)
    id_map = {}
    for _, poses in spool:
        for t in poses.track_ids:
            r = roots.get(int(t), int(t))
            if r in root_map:
                id_map[int(t)] = root_map[r]
    frames = [info for info, _ in spool]
    if seq.gt is not None:
        meta = {k: v for k, v in seq.gt.meta.items() if k != "frame_ids"}  # a --start/--end range shifts them
        if len(frames) == len(seq.gt.frames):
            meta["frame_ids"] = seq.gt.meta.get("frame_ids")
    else:
        meta = {"nframes": len(frames)}
    out_seq = PoseSequence(seq.name, frames, _FinalPoses(spool, id_map, tc), meta)
    outputs = {k: output_path(out_dir, k, seq.name) for k in ("posetrack", "coco", "csv")}
    from corrtrack.io.coco import write_coco_results
    from corrtrack.io.csv import write_csv
    from corrtrack.io.posetrack import write_posetrack

    with timer("io"):
        write_posetrack(outputs["posetrack"], out_seq)
        write_coco_results(outputs["coco"], out_seq)
        write_csv(outputs["csv"], out_seq)
    if config.render and not interrupted:
        outputs["video"] = output_path(out_dir, "video", seq.name)
        with timer("render"):
            _render(seq, out_seq, outputs["video"], config)
    n_poses = sum(len(p) for p in out_seq.poses)
    return TrackResult(seq.name, len(frames), len(root_map), n_poses, outputs, dict(timer.t), 0.0, interrupted)


def _write_summary(out_dir: Path, result: TrackResult) -> None:
    from corrtrack.io.atomic import write_json

    result.outputs["summary"] = output_path(out_dir, "summary", result.name)
    write_json(result.outputs["summary"], result.summary(), indent=1)


def _render(seq: InputSequence, out_seq: PoseSequence, path: Path, config: RunConfig) -> None:
    from corrtrack.io.video import VideoWriter
    from corrtrack.viz.draw import draw_poses

    fps = seq.fps() or config.fps or 10.0
    written = iter(zip(out_seq.frames, out_seq.poses))
    with VideoWriter(path, fps) as writer:
        pending = next(written, None)
        for info, image in seq.frames(config.start, config.end, config.fps):
            while pending is not None and pending[0].index < info.index:
                pending = next(written, None)
            if image is None:
                continue
            poses = pending[1] if pending is not None and pending[0].index == info.index else None
            writer.write(image if poses is None else draw_poses(image, poses, config.tracker.output_joint_thresh))


def _merge(seq: InputSequence, spool: _Spool, config: RunConfig, parts: Parts) -> dict[int, int]:
    """Eq. 8 over the spooled tracklets; track id -> merged id. Streams the source once more."""
    tc = config.tracker
    frames_of = _track_frames(spool)
    if len(frames_of) < 2:
        return {}
    skeleton = {t: Tracklet(t, tuple(f), {}) for t, f in frames_of.items()}
    requests = merge_candidates(skeleton, tc.merging.max_gap)
    if not requests:
        return {}
    wanted: dict[int, set[int]] = defaultdict(set)  # frame -> tracks whose pose there is needed
    for a, b, srcs, dst in requests:
        for s in srcs:
            wanted[s].add(a)
        wanted[dst].add(b)
    poses: dict[int, dict[int, Poses]] = defaultdict(dict)
    for info, p in spool:
        for i, t in enumerate(p.track_ids):
            if int(t) in wanted.get(info.index, ()):
                poses[int(t)][info.index] = p[i]
    tracklets = {t: Tracklet(t, tuple(f), poses[t]) for t, f in frames_of.items()}
    # Propagate every (source frame -> destination frame) pose in one streaming pass,
    # keeping a source image only until its last destination has been seen.
    jobs: dict[int, list[tuple[int, int]]] = defaultdict(list)  # dst -> [(src, track)]
    last_use: dict[int, int] = {}
    for a, b, srcs, dst in requests:
        for s in srcs:
            jobs[dst].append((s, a))
            last_use[s] = max(last_use.get(s, -1), dst)
    done: dict[tuple[int, int, int], Poses] = {}
    images: dict[int, np.ndarray] = {}
    if hasattr(parts.correspond, "reset"):
        parts.correspond.reset()
    for info, image in seq.frames(config.start, config.end, config.fps):
        f = info.index
        if image is None:
            continue
        if f in last_use:
            images[f] = image
        for s, a in jobs.get(f, ()):
            if (s, f, a) not in done and s in images:
                done[(s, f, a)] = propagation_confidence(*parts.correspond(s, images[s], f, image,
                                                                           tracklets[a].poses[s]))
        images = {k: v for k, v in images.items() if last_use.get(k, -1) > f}
        if f >= max(jobs):
            break

    def propagate(src: int, dst: int, pose: Poses) -> Poses:
        track = int(pose.track_ids[0])
        return done.get((src, dst, track), pose.replace(keypoints=np.zeros_like(pose.keypoints)))

    return merge_tracks(tracklets, propagate, tc.merging)


# -- many sequences ----------------------------------------------------------------

def track_video(source: str | os.PathLike, out_dir: str | os.PathLike, config: RunConfig = RunConfig(),
                parts: Parts | None = None) -> TrackResult:
    """Track one video / frame folder / PoseTrack file; see the module doc for the outputs."""
    seqs = discover_inputs(source)
    if len(seqs) != 1:
        raise CorrtrackError(f"{source}: holds {len(seqs)} sequences; use track_many")
    return track_sequence(seqs[0], out_dir, config, parts)


PartsFactory = Callable[[RunConfig], Parts]


def _skipped(name: str) -> TrackResult:
    return TrackResult(name, 0, 0, 0, {}, {}, 0.0, skipped=True)


def _failed(name: str, error: str) -> TrackResult:
    """A batch member that could not be tracked; the batch goes on."""
    log.warning("%s; skipping it", error)
    return TrackResult(name, 0, 0, 0, {}, {}, 0.0, error=error)


@dataclass(frozen=True)
class RayConfig:
    """Run a batch as Ray tasks (``corrtrack track --ray``), one task per sequence.

    ``address`` goes to ``ray.init`` unchanged, so it means what it means to Ray:
    None = $RAY_ADDRESS, else the latest cluster started on this machine, else a
    new local one; "auto" = an existing cluster or an error; "local" = always a
    new local one; "host:port" or "ray://host:10001" = that cluster. On a
    multi-node cluster the inputs and the output folder must be on a file system
    every node sees (the tasks read and write them there) and corrtrack must be
    installed on every node.
    """

    address: str | None = None
    cpus_per_task: float = 1.0  # also torch's thread count in the task
    gpus_per_task: float = 0.0  # Ray hides GPUs from tasks that do not ask for one


def track_one(seq: InputSequence, out_dir: str | os.PathLike, config: RunConfig,
              parts_factory: PartsFactory | None = None, threads: int | None = None,
              skip_complete: bool = True) -> TrackResult:
    """One sequence of a batch, in whatever process runs it (a pool worker or a Ray task).

    A bad input becomes a result with ``error`` set rather than an exception, so
    one unreadable video does not stop the rest of the batch.
    """
    # Checked again here: a retried Ray task, or a second batch over the same
    # folder, may have completed this sequence after the batch was planned.
    if skip_complete and is_complete(out_dir, seq.name, config.render):
        return _skipped(seq.name)
    if threads:
        import torch

        torch.set_num_threads(threads)
    try:
        return track_sequence(seq, out_dir, replace(config, progress=False), _worker_parts(config, parts_factory))
    except CorrtrackError as e:
        return _failed(seq.name, str(e))


def _worker(args) -> TrackResult:
    return track_one(*args)


_PARTS_CACHE: dict = {}  # per worker process: its models, built on first use


def _worker_parts(config: RunConfig, parts_factory: PartsFactory | None = None) -> Parts:
    factory = parts_factory or build_parts
    key = (config.tracker.similarity, config.tracker.needs_correspondence, config.tracker.merge,
           config.tracker.use_refinement, config.tracker.corr_prior, repr(config.detector), repr(config.pose), config.device,
           config.corr_weights, config.corr_input_size, factory)
    if key not in _PARTS_CACHE:
        _PARTS_CACHE.clear()
        _PARTS_CACHE[key] = factory(config)
    return _PARTS_CACHE[key]


def track_many(seqs: list[InputSequence], out_dir: str | os.PathLike, config: RunConfig = RunConfig(),
               workers: int = 1, skip_complete: bool = True, ray: RayConfig | None = None,
               parts_factory: PartsFactory | None = None) -> list[TrackResult]:
    """Track several sequences: one by one, in ``workers`` processes, or as Ray tasks (``ray``).

    Sequences whose outputs are complete are skipped, so an interrupted batch
    resumes where it stopped. ``parts_factory`` builds the networks in each
    process (default :func:`build_parts`).
    """
    todo = [s for s in seqs if not (skip_complete and is_complete(out_dir, s.name, config.render))]
    results = [_skipped(s.name) for s in seqs if s not in todo]
    readable = []
    for s in todo:  # before loading any model: a bad file fails now, not after hours
        try:
            s.expected_frames(config.start, config.end)
            readable.append(s)
        except CorrtrackError as e:
            if len(seqs) == 1:
                raise
            results.append(_failed(s.name, str(e)))
    todo = readable
    if not todo:
        return results
    if ray is not None:
        return results + _track_on_ray(todo, out_dir, config, ray, parts_factory, skip_complete)
    if workers <= 1 or len(todo) == 1:
        parts = (parts_factory or build_parts)(config)
        for s in todo:
            try:
                results.append(track_sequence(s, out_dir, config, parts))
            except CorrtrackError as e:
                if len(seqs) == 1:
                    raise
                results.append(_failed(s.name, str(e)))  # as track_one does in a worker
        return results
    import multiprocessing as mp

    from tqdm import tqdm

    ctx = mp.get_context("spawn")  # torch and fork do not mix
    with ctx.Pool(min(workers, len(todo)), initializer=_limit_threads, initargs=(workers,)) as pool:
        it = pool.imap_unordered(_worker, [(s, out_dir, config, parts_factory, None, skip_complete) for s in todo])
        for r in tqdm(it, total=len(todo), unit="video", disable=not config.progress):
            results.append(r)
    return results


def _track_on_ray(todo: list[InputSequence], out_dir: str | os.PathLike, config: RunConfig, rc: RayConfig,
                  parts_factory: PartsFactory | None, skip_complete: bool) -> list[TrackResult]:
    """Each sequence as a Ray task running :func:`track_one`; results in the order they finish."""
    try:
        import ray
    except ImportError:
        raise CorrtrackError("--ray needs Ray, which is not installed: pip install 'corrtrack[ray]'") from None
    from tqdm import tqdm

    # Tasks may run in another working directory (or on another node): absolute paths only.
    out_dir = Path(out_dir).resolve()
    todo = [replace(s, path=s.path.resolve(), root=s.root.resolve() if s.root else None) for s in todo]
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=rc.address or None)
        except (ConnectionError, RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CorrtrackError(f"Ray cluster {rc.address or '(default)'}: cannot start or connect ({first})") \
                from None
    try:
        task = ray.remote(track_one).options(num_cpus=rc.cpus_per_task, num_gpus=rc.gpus_per_task)
        threads = max(1, int(rc.cpus_per_task))
        pending = {task.remote(s, out_dir, config, parts_factory, threads, skip_complete): s for s in todo}
        results = []
        try:
            with tqdm(total=len(pending), unit="video", disable=not config.progress) as bar:
                while pending:
                    done, _ = ray.wait(list(pending), num_returns=1)
                    for ref in done:
                        seq = pending.pop(ref)
                        try:
                            results.append(ray.get(ref))
                        except ray.exceptions.RayError as e:
                            # Not a bad input (track_one returns those) but a crash or a lost
                            # node: keep its details in the log and go on with the batch.
                            log.error("%s: Ray task failed:\n%s", seq.name, e)
                            results.append(_failed(seq.name, f"{seq.path}: Ray task failed ({type(e).__name__})"))
                        bar.update(1)
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref)  # the task writes the frames it did, marked interrupted: resumable
            raise CorrtrackError(f"interrupted; {len(results)} of {len(todo)} sequences finished, "
                                 "run again to track the rest", exit_code=130) from None
        return results
    finally:
        if started:
            ray.shutdown()


def _limit_threads(workers: int) -> None:
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def format_timings(timings: dict[str, float], frames: int, total: float) -> str:
    """Per-stage table: seconds, ms per frame, share of the run."""
    rows = [f"{'stage':<15}{'seconds':>9}{'ms/frame':>10}{'share':>8}"]
    for stage, sec in sorted(timings.items(), key=lambda kv: -kv[1]):
        rows.append(f"{stage:<15}{sec:>9.2f}{1000 * sec / max(frames, 1):>10.1f}{100 * sec / max(total, 1e-9):>7.1f}%")
    rows.append(f"{'total':<15}{total:>9.2f}{1000 * total / max(frames, 1):>10.1f}"
                f"   ({frames / max(total, 1e-9):.1f} frames/s)")
    return "\n".join(rows)
