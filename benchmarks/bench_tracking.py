"""The paper's Table 2 (similarities) and its ablation, on the synthetic suite, with our own detections.

    .venv/bin/python benchmarks/bench_tracking.py [--suite all] [--seed 0] [--quick]
        [--sequences N] [--length N] [--subset N] [--until HH:MM] [--methods corr,oks,...] [--set key=value ...]
        [--cache-dir out/bench_tracking] [--threads 2] [--no-write]

What it does, all cached under ``--cache-dir`` so that a second run (or one
after an interruption) only does what is missing:

1. the suite: ``corrtrack data synth --preset SUITE --seed SEED`` (``--quick``:
   2 sequences per preset of 100 frames), made once per (preset, seed, size);
2. detections: NanoDet + MoveNet thunder (``--pose-model``) run once per
   sequence; the per-frame poses go to ``detections/<seq>.npz``;
3. every method tracks those same poses (the paper's protocol for Table 2:
   "the same detected poses"); all methods step through one decode of each
   video together. Networks run through caches shared by the methods and kept
   on disk: the correspondence network's answers per (source frame,
   destination frame, source pose) - the propagated joints and the maps' values
   at every detection of the destination frame, keyed by the weights' sha256,
   so a retrained model is picked up by re-running this script -, the pose
   re-estimates of recovery and the re-ID embeddings per (frame, box);
4. the tracked poses are finalised and written by the pipeline's own code
   (``corrtrack.pipeline.run.write_tracked``: short tracks dropped, merging,
   joint threshold 0.3) to ``runs/<method>-<hash>/posetrack/<seq>.json``;
5. ``corrtrack.eval``: MOTA, ID switches (summed over the 15 joints), mAP,
   IDF1 and keypoint HOTA / AssA; one table per preset and the total, printed,
   and written between ``<!-- tracking:start -->`` and ``<!-- tracking:end -->``
   in BENCHMARKS.md (unless ``--no-write``).

Methods (recovery and merging off unless named; the TrackerConfig defaults
otherwise): Table 2 - ``corr`` (the default: eq. 6 or OKS of the propagated
joints, whichever is larger; ``TrackerConfig.corr_oks``), ``oks``, ``iou``,
``flow`` (DIS optical flow moving the track's joints, then OKS), ``reid``
(ImageNet MobileNetV2 crop embeddings); ablation - ``corr-eq6`` (the paper's
eq. 6 alone), ``corr-noref`` (Siamese softmax maps instead of the
refined ones), ``corr-nodup`` (no duplicate removal), ``corr-nomotion`` (no
motion prior for tracks kept alive, ``TrackerConfig.motion_prior``), ``corr+rec`` (recovery of
missed people, paper 5.1), ``corr+merge`` and ``corr+rec+merge`` (eq. 8);
speed option - ``corr+every2``, ``corr+every3`` (``TrackerConfig.detect_every``:
the detections of every 2nd / 3rd frame only, people followed by
correspondences and re-estimated poses in between), ``corr+rec+every2`` (with
recovery on the detected frames: the CLI's defaults with ``--detect-every 2``).

``--set key=value`` changes a TrackerConfig field for every method (dotted
for nested configs: ``--set recovery.min_pose_score=0.3``), for tuning.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # the machine is shared: no spinning threads

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from corrtrack.models.cache import file_sha256  # noqa: E402  (no torch: cheap to import)
from corrtrack.synth.config import PRESETS as _SYNTH_PRESETS  # noqa: E402

PRESETS = tuple(_SYNTH_PRESETS)
TABLE2 = ("corr", "oks", "iou", "flow", "reid")
ABLATION = ("corr-eq6", "corr-noref", "corr-nodup", "corr-nomotion", "corr+rec", "corr+merge", "corr+rec+merge")
# detector on every 2nd / 3rd frame only (the speed option); +rec: as `corrtrack track --detect-every 2` runs
INTERVAL = ("corr+every2", "corr+every3", "corr+rec+every2")
ALL_METHODS = TABLE2 + ABLATION + INTERVAL
COLUMNS = ("MOTA", "IDSW", "mAP", "IDF1", "HOTA", "AssA", "Prec", "Rec")
FEATURE_FRAMES = 400  # correspondence features kept per sequence (~2 MB a frame): the synth presets have <= 200


# -- methods ----------------------------------------------------------------------------

def method_config(name: str, sets: dict[str, object]):
    """The TrackerConfig of a method name (see the module doc), with ``--set`` overrides."""
    from corrtrack.pipeline.tracker import RecoveryConfig, TrackerConfig

    sim = name.split("-")[0].split("+")[0]
    cfg = TrackerConfig(similarity=sim, recovery=RecoveryConfig(enabled=False))
    cfg = apply_sets(cfg, sets)
    if name.endswith("-noref"):
        cfg = replace(cfg, use_refinement=False)
    if name.endswith("-nodup"):
        cfg = replace(cfg, duplicate_removal=False)
    if "+rec" in name:
        cfg = replace(cfg, recovery=replace(cfg.recovery, enabled=True))
    if name.endswith("+merge"):
        cfg = replace(cfg, merge=True)
    if name.endswith("-eq6"):
        cfg = replace(cfg, corr_oks=False)
    if name.endswith("-nomotion"):
        cfg = replace(cfg, motion_prior=False)
    if "+every" in name:  # corr+everyN: detect every N-th frame, follow people in between
        cfg = replace(cfg, detect_every=int(name.rpartition("+every")[2]))
    return cfg


def apply_sets(cfg, sets: dict[str, object]):
    for key, value in sets.items():
        head, _, rest = key.partition(".")
        if not any(f.name == head for f in dataclasses.fields(cfg)):
            raise SystemExit(f"--set {key}: {type(cfg).__name__} has no field {head!r}")
        if rest:
            cfg = replace(cfg, **{head: apply_sets(getattr(cfg, head), {rest: value})})
        else:
            old = getattr(cfg, head)
            # A value of the wrong type would run silently as something else ("False" is a true string).
            if old is not None and (isinstance(old, bool) != isinstance(value, bool)
                                    or isinstance(old, (int, float)) != isinstance(value, (int, float))
                                    or (isinstance(old, str) and not isinstance(value, str))):
                raise SystemExit(f"--set {key}={value!r}: {head} is a {type(old).__name__} (default {old!r})")
            cfg = replace(cfg, **{head: value})
    return cfg


PYTHON_LITERALS = {"True": True, "False": False, "None": None}  # --set takes these as well as JSON's


def parse_sets(items: list[str]) -> dict[str, object]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item}: expected key=value")
        try:
            out[key] = PYTHON_LITERALS[value] if value in PYTHON_LITERALS else json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


# -- the suite and its detections -------------------------------------------------------

def ensure_suite(cache: Path, suite: str, seed: int, sequences: int | None, length: int | None) -> Path:
    """The synthetic suite for (preset, seed, size), generated on first use.

    A suite made before a preset was added to it gets the missing presets' sequences only: a
    sequence depends on (seed, preset, index) alone, so the result is the suite a fresh run makes,
    and the detections and network caches of the sequences already there stay valid.
    """
    from corrtrack.io.atomic import write_json
    from corrtrack.synth.config import SUITES
    from corrtrack.synth.suite import generate_suite

    name = f"suite_{suite}_s{seed}" + (f"_n{sequences}" if sequences else "") + (f"_l{length}" if length else "")
    out = cache / name
    overrides = {k: v for k, v in (("num_sequences", sequences), ("num_frames", length)) if v}
    progress = sys.stderr.isatty()
    if (out / "suite.json").is_file():
        summary = json.loads((out / "suite.json").read_text())
        missing = [p for p in SUITES[suite] if p not in summary["presets"]]
        for preset in missing:
            part = cache / f"{name}.part-{preset}"
            shutil.rmtree(part, ignore_errors=True)
            t0 = time.perf_counter()
            added = generate_suite(part, preset, seed=seed, overrides=overrides, progress=progress)
            for seq in added["sequences"]:
                for rel in seq["files"].values():
                    (out / rel).parent.mkdir(parents=True, exist_ok=True)
                    (part / rel).rename(out / rel)
            summary["sequences"] += added["sequences"]
            summary["presets"][preset] = added["presets"][preset]
            write_json(out / "suite.json", summary, indent=1)
            shutil.rmtree(part)
            print(f"added preset {preset} to {out} in {time.perf_counter() - t0:.0f} s", flush=True)
        return out
    part = cache / (name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    t0 = time.perf_counter()
    generate_suite(part, suite, seed=seed, overrides=overrides, progress=progress)
    part.rename(out)
    print(f"generated {out} in {time.perf_counter() - t0:.0f} s", flush=True)
    return out


POSE_MODEL = "thunder"  # set from --pose-model in main()


def pose_config():
    from corrtrack.pipeline.pose import PoseConfig

    return PoseConfig(model=POSE_MODEL)


def detection_tag() -> str:
    from corrtrack.pipeline.detector import DetectorConfig

    return hashlib.sha1(f"{DetectorConfig()!r}|{pose_config()!r}".encode()).hexdigest()[:10]


def load_detections(suite_dir: Path, name: str, video: Path, models: dict, progress: bool) -> list:
    """Per-frame detected poses of one sequence (NanoDet + MoveNet thunder), computed once."""
    from tqdm import tqdm

    from corrtrack.io.atomic import atomic_path
    from corrtrack.io.video import open_source
    from corrtrack.structures import Poses

    path = suite_dir / "detections" / f"{name}.npz"
    tag = detection_tag()
    if path.is_file():
        z = np.load(path)
        if str(z["tag"]) == tag:
            out, start = [], 0
            for n in z["counts"]:
                sl = slice(start, start + int(n))
                out.append(Poses(z["keypoints"][sl].astype(np.float64), "coco17", z["boxes"][sl].astype(np.float64),
                                 z["scores"][sl].astype(np.float64)))
                start += int(n)
            return out
    if "detect" not in models:
        from corrtrack.pipeline.detector import Detector
        from corrtrack.pipeline.pose import TopDownPoseEstimator

        models["detect"], models["estimate"] = Detector(), TopDownPoseEstimator(pose_config())
    out = []
    with open_source(video) as src:
        for fr in tqdm(src, total=src.expected_frames, desc=f"detect {name}", disable=not progress, leave=False):
            out.append(models["estimate"](fr.image, models["detect"](fr.image)))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, tag=tag, counts=np.array([len(p) for p in out]),
                                keypoints=np.concatenate([p.keypoints for p in out]).astype(np.float32),
                                boxes=np.concatenate([p.boxes for p in out]).astype(np.float32),
                                scores=np.concatenate([p.scores for p in out]).astype(np.float32))
    return load_detections(suite_dir, name, video, models, progress)  # exactly what a cached run sees


# -- networks behind caches shared by the methods -----------------------------------------

def _pose_key(poses, i: int, joint_thresh: float) -> bytes:
    kp = poses.keypoints[i]
    valid = kp[:, 2] > joint_thresh
    return np.where(valid[:, None], kp[:, :2], 0.0).tobytes() + valid.tobytes()


class _CachedMaps:
    """Stands in for ``CorrMaps``: values at the destination frame's detections come from the
    cache; other poses (recovered ones) make it compute the real maps once."""

    def __init__(self, values: list[dict[bytes, np.ndarray]], source_valid: np.ndarray, compute, num_joints: int,
                 joint_thresh: float):
        self._values, self.source_valid, self._compute = values, source_valid, compute
        self._k, self._jt = num_joints, joint_thresh
        self._real = None
        self.refined = None

    def __len__(self) -> int:
        return len(self.source_valid)

    def values_at(self, poses) -> np.ndarray:
        n, m = len(self), len(poses)
        out = np.zeros((n, m, self._k))
        keys = [poses.keypoints[j].tobytes() for j in range(m)]
        # Entries are per source pose and may come from runs with other detections (the store is kept
        # across detector changes: the propagated joints do not depend on them), so each may lack a
        # different candidate.
        missing = [j for j, key in enumerate(keys) if any(key not in v for v in self._values)] if n else []
        for j, key in enumerate(keys):
            if j not in missing:
                for i in range(n):
                    out[i, j] = self._values[i][key]
        if missing:
            if self._real is None:
                self._real = self._compute()
            out[:, missing] = self._real.values_at(poses[np.asarray(missing)])
            for i in range(n):  # remembered with the entry (the dicts are the store's)
                for j in missing:
                    self._values[i][keys[j]] = out[i, j]
        return out


class CorrStore:
    """The correspondence network as the tracker's ``Propagator``, remembering its answers.

    For each (source frame, destination frame, source pose) it keeps the
    propagated joints and the maps' values at every detection of the
    destination frame (``values_at``), which is all the tracker and merging read
    when the candidates are detections. Features are computed only on a miss.
    """

    def __init__(self, propagator, refined: bool, detections: list, path: Path, prior: float = 0.0):
        self.prop = propagator  # corrtrack.pipeline.run.CorrPropagator: the net and its per-frame features
        self.refined, self.prior = refined, prior
        self.dets = detections
        self.path = path
        self.entries: dict[tuple, tuple[np.ndarray, dict[bytes, np.ndarray]]] = {}
        if path.is_file():
            with open(path, "rb") as f:
                self.entries = pickle.load(f)
        self.computed = 0
        self.features_computed = 0  # backbone passes this store caused (diagnostic, printed per sequence)

    def reset(self) -> None:  # run.py's merging calls it; the cache is keyed by frame and pose, so keep it
        pass

    def __call__(self, src_index, src_image, dst_index, dst_image, poses):
        from corrtrack.structures import RECOVERED, Poses

        jt = self.prop.joint_thresh
        keys = [(src_index, dst_index, _pose_key(poses, i, jt)) for i in range(len(poses))]
        todo = [i for i, k in enumerate(keys) if k not in self.entries]
        dst_dets = self.dets[dst_index] if 0 <= dst_index < len(self.dets) else None

        def real(rows=None):
            from corrtrack.pipeline.propagate import propagate

            sub = poses if rows is None else poses[np.asarray(rows, np.int64)]
            self.features_computed += (src_index not in self.prop._feats) + (dst_index not in self.prop._feats)
            fa, fb = self.prop.features(src_index, src_image), self.prop.features(dst_index, dst_image)
            return propagate(self.prop.net, None, None, sub, fa, fb, use_refinement=self.refined, joint_thresh=jt,
                             prior=self.prior)

        if todo:
            moved, maps = real(todo)
            self.computed += len(todo)
            if dst_dets is not None and len(dst_dets):
                vals = maps.values_at(dst_dets)  # (T, C, K)
                det_keys = [dst_dets.keypoints[j].tobytes() for j in range(len(dst_dets))]
            else:
                vals, det_keys = np.zeros((len(todo), 0, poses.layout.num_joints)), []
            for t, i in enumerate(todo):
                self.entries[keys[i]] = (moved.keypoints[t].astype(np.float64),
                                         {dk: vals[t, c] for c, dk in enumerate(det_keys)})
        kp = np.stack([self.entries[k][0] for k in keys]) if keys else np.zeros((0, poses.layout.num_joints, 3))
        moved = Poses(kp, poses.layout, track_ids=poses.track_ids.copy(), origin=np.full(len(poses), RECOVERED, np.int8))
        valid = poses.keypoints[..., 2] > jt
        maps = _CachedMaps([self.entries[k][1] for k in keys], valid, lambda: real()[1],
                           poses.layout.num_joints, jt)
        maps.refined = self.refined
        return moved, maps

    def save(self) -> None:
        from corrtrack.io.atomic import atomic_open

        # Values at recovered poses are added to loaded entries too, so always write.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(self.path, "wb") as f:
            pickle.dump(self.entries, f, protocol=pickle.HIGHEST_PROTOCOL)


class RowCache:
    """``fn(image, boxes)`` (pose estimator, embedder) remembered per (frame, box).

    Call ``see(index, image)`` on every frame first: the frame is looked up by the image object,
    since the tracker also embeds crops of frames before the current one (the appearance stage).
    """

    def __init__(self, fn, path: Path, history: int = 64):
        self.fn, self.path, self.history = fn, path, history
        self._frames: dict[int, tuple[int, np.ndarray]] = {}  # id(image) -> (index, image kept alive)
        self.rows: dict[tuple[int, bytes], object] = {}
        if path.is_file():
            with open(path, "rb") as f:
                self.rows = pickle.load(f)
        self._loaded = len(self.rows)

    def see(self, index: int, image: np.ndarray) -> None:
        self._frames[id(image)] = (index, image)
        while len(self._frames) > self.history:
            self._frames.pop(next(iter(self._frames)))

    def __call__(self, image, boxes):
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        if id(image) not in self._frames:
            raise KeyError(f"{self.path.name}: an image older than the last {self.history} frames seen")
        index = self._frames[id(image)][0]
        keys = [(index, b.tobytes()) for b in boxes]
        todo = [i for i, k in enumerate(keys) if k not in self.rows]
        if todo:
            got = self.fn()(image, boxes[todo])
            for t, i in enumerate(todo):
                self.rows[keys[i]] = got[t] if not isinstance(got, np.ndarray) else got[t].copy()
        items = [self.rows[k] for k in keys]
        if items and not isinstance(items[0], np.ndarray):
            from corrtrack.structures import Poses

            return Poses.concat(items)
        return np.stack(items) if items else np.zeros((0, 1280), np.float32)

    def save(self) -> None:
        from corrtrack.io.atomic import atomic_open

        if len(self.rows) == self._loaded:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(self.path, "wb") as f:
            pickle.dump(self.rows, f, protocol=pickle.HIGHEST_PROTOCOL)
        self._loaded = len(self.rows)


class Models:
    """The networks, each loaded on first use."""

    def __init__(self, weights: Path, runtime: str = "onnx", input_size: int | None = None):
        from corrtrack.models.frozen import effective_runtime

        self.weights, self.input_size = weights, input_size
        self.runtime = effective_runtime(runtime)
        # Keys the cached correspondence answers and the runs: the runtimes agree to ~1e-4, enough to
        # move an argmax now and then. TorchScript keeps the bare weights hash (the caches made before ORT).
        self.weights_sha = file_sha256(weights)[:12]
        self.weights_tag = self.weights_sha + ("" if self.runtime == "torchscript" else f"-{self.runtime}")
        if input_size is not None:  # RunConfig.corr_input_size: other maps, other answers
            self.weights_tag += f"-in{input_size}"
        self._m: dict = {}

    def corr(self):
        """One propagator (net + feature cache) serves refined and softmax maps alike."""
        from corrtrack.pipeline.run import CorrPropagator

        if "corr" not in self._m:
            from corrtrack.pipeline.tracker import TrackerConfig

            self._m["corr"] = CorrPropagator.load(self.weights, "cpu", runtime=self.runtime, input_size=self.input_size,
                                                  cache_size=TrackerConfig().max_age + 2)
            # Merging (eq. 8) propagates from a tracklet's start and centre, often far behind the
            # current frame, and every corr variant and both merges go through this one cache: a
            # window of keep_alive frames made merging recompute the backbone for most of its
            # requests. Features are a pure function of the frame, so holding every frame of a
            # sequence (set per sequence in track_suite, 2 MB each at 512 px) changes no result.
            self._m["corr"].cache_size = FEATURE_FRAMES
        return self._m["corr"]

    def estimator(self):
        if "estimate" not in self._m:
            from corrtrack.pipeline.pose import TopDownPoseEstimator

            self._m["estimate"] = TopDownPoseEstimator(pose_config())
        return self._m["estimate"]

    def embedder(self):
        if "embed" not in self._m:
            from corrtrack.pipeline.run import CropEmbedder

            self._m["embed"] = CropEmbedder("cpu")
        return self._m["embed"]


# -- tracking ---------------------------------------------------------------------------

# Options that came after runs were cached, each with the test for "left out of the cache key":
# at the value that tracks as before the option existed, so the runs made before keep their
# folders and a new option costs no re-run of the old methods. (detect_every came before the motion
# prior and is left out only where the prior's two fields are: the keys cached since have it.)
LATER_OPTIONS = {
    "detect_every": lambda c: c.detect_every == 1 and not c.motion_prior and c.motion_window == 8,
    "confirmed_first": lambda c: not c.confirmed_first,
    "motion_prior": lambda c: not c.motion_prior and c.motion_window == 8,
    "motion_window": lambda c: not c.motion_prior and c.motion_window == 8,
    "rematch": lambda c: not c.rematch,
    "last_box_iou": lambda c: c.last_box_iou == 0,
    "appearance": lambda c: c.appearance == 0,
    "appearance_over_tentative": lambda c: not c.appearance_over_tentative,
    "recovered_overlap_iou": lambda c: c.recovered_overlap_iou == 0,
    "reach": lambda c: c.reach == 0,
    "corr_prior": lambda c: c.corr_prior == 0,
}


def config_key(obj) -> str:
    """``repr(obj)`` with every option of LATER_OPTIONS at its old behaviour left out (dataclasses, nested)."""
    if not dataclasses.is_dataclass(obj):
        return repr(obj)
    fields = [f"{f.name}={config_key(getattr(obj, f.name))}" for f in dataclasses.fields(obj)
              if f.repr and not (f.name in LATER_OPTIONS and LATER_OPTIONS[f.name](obj))]
    return f"{type(obj).__qualname__}({', '.join(fields)})"


def store_tag(refined: bool, prior: float) -> str:
    """Name of a CorrStore's propagations (file and log): the maps they were read from."""
    return ("refined" if refined else "softmax") + (f"-prior{prior:g}" if prior > 0 else "")


def run_dir(suite_dir: Path, name: str, cfg, models: Models) -> Path:
    uses_corr = cfg.uses_correspondence_net
    # The resolved threshold and keep-alive too: the config holds None for "the similarity's
    # default", so a changed default would otherwise reuse runs made with the old one.
    tag = (f"{config_key(cfg)}|{cfg.match_threshold}|{cfg.max_age}|{detection_tag()}|"
           f"{models.weights_tag if uses_corr else ''}")
    return suite_dir / "runs" / f"{name}-{hashlib.sha1(tag.encode()).hexdigest()[:10]}"


def sequence_names(suite_dir: Path, subset: int | None = None) -> list[str]:
    """The suite's sequences, round-robin over the presets (walk 1, crossing 1, crowd 1, reentry 1,
    walk 2, ...) so that an interrupted run has tracked every preset alike; ``subset``: only the
    first N sequences of each preset."""
    names = sorted(p.stem for p in (suite_dir / "posetrack").glob("*.json"))
    by_preset: dict[str, list[str]] = {}
    for n in names:
        by_preset.setdefault(preset_of(n), []).append(n)
    rank = {n: i for ns in by_preset.values() for i, n in enumerate(ns)}
    order = {p: i for i, p in enumerate(PRESETS)}
    names = sorted(names, key=lambda n: (rank[n], order.get(preset_of(n), len(order)), n))
    return [n for n in names if subset is None or rank[n] < subset]


def track_suite(suite_dir: Path, methods: dict[str, object], models: Models, progress: bool,
                subset: int | None = None, until: float | None = None,
                shard: tuple[int, int] | None = None) -> tuple[dict[str, Path], int | None]:
    """Track every sequence with every method (what is not on disk yet): method -> its run folder, and
    (when ``until``, a time.time(), stopped it before the end) how many sequences of every preset are done.
    ``shard`` (k, n) tracks only the sequences k, k + n, ... of that order."""
    from tqdm import tqdm

    from corrtrack.pipeline.run import InputSequence, Parts, RunConfig, output_path, write_tracked
    from corrtrack.pipeline.tracker import Tracker

    dirs = {m: run_dir(suite_dir, m, cfg, models) for m, cfg in methods.items()}
    names = sequence_names(suite_dir, subset)
    det_models: dict = {}
    cache = suite_dir / "cache"
    stopped = False
    took: dict[str, float] = {}  # preset -> seconds its last sequence took here (detections included)
    rounds = [sequence_names(suite_dir, r + 1)[len(sequence_names(suite_dir, r)):] for r in range(len(names))]
    for pos, name in enumerate(tqdm(names, desc="sequences", disable=not progress)):
        if shard is not None and pos % shard[1] != shard[0]:
            continue
        todo = {m: cfg for m, cfg in methods.items() if not output_path(dirs[m], "posetrack", name).is_file()}
        if not todo:
            continue
        if until is not None:
            # Only whole rounds are scored: do not start one that the last round's times say ends past `until`.
            rest = next(r for r in rounds if name in r)
            rest = rest[rest.index(name):]
            if time.time() + 1.15 * sum(took.get(preset_of(n), 0.0) for n in rest) > until:
                stopped = True
                break
        t_seq = time.perf_counter()
        video = suite_dir / "videos" / f"{name}.mp4"
        dets = load_detections(suite_dir, name, video, det_models, progress)
        online: dict[object, list[str]] = {}  # merging is offline: methods differing only by it share a run
        for m, cfg in todo.items():
            online.setdefault(replace(cfg, merge=False), []).append(m)
        stores: dict[tuple[bool, float], CorrStore] = {}

        def store(refined: bool, prior: float) -> CorrStore:
            if (refined, prior) not in stores:
                stores[refined, prior] = CorrStore(models.corr(), refined, dets, cache / models.weights_tag
                                                   / f"{name}.{store_tag(refined, prior)}.pkl", prior)
            return stores[refined, prior]

        if any(cfg.uses_correspondence_net for cfg in todo.values()):
            models.corr().reset()  # its features are keyed by frame index
            models.corr().cache_size = max(min(len(dets) + 2, FEATURE_FRAMES),
                                           max(cfg.max_age for cfg in todo.values()) + 2)
        history = max(cfg.max_age for cfg in todo.values()) + 2  # the oldest frame a live track was seen in
        est = RowCache(models.estimator, cache / f"{name}.recovery.{detection_tag()}.pkl", history)
        emb = RowCache(models.embedder, cache / f"{name}.reid.pkl", history)
        trackers = {}
        for cfg in online:
            corr = store(cfg.use_refinement, cfg.corr_prior) if cfg.needs_correspondence else None
            trackers[cfg] = Tracker(cfg, correspond=corr,
                                    estimate=est if cfg.needs_estimator else None,
                                    embed=emb if cfg.similarity == "reid" or cfg.appearance > 0 else None)
        seq = InputSequence(name, video, "video")
        tracked = {cfg: [] for cfg in online}
        t0 = time.perf_counter()
        for info, image in tqdm(seq.frames(), total=len(dets), desc=name, disable=not progress, leave=False):
            est.see(info.index, image)
            emb.see(info.index, image)
            for cfg, tr in trackers.items():
                cand = dets[info.index] if tr.wants_detections(info.index) else None
                tracked[cfg].append((info, tr.step(info.index, cand, image)))
        for cfg, ms in online.items():
            for m in ms:
                corr = store(todo[m].use_refinement, todo[m].corr_prior) if todo[m].merge else None
                write_tracked(seq, tracked[cfg], dirs[m], RunConfig(tracker=todo[m], progress=False),
                              Parts(None, est, correspond=corr))
        for s in stores.values():
            s.save()
        est.save()
        emb.save()
        computed = {store_tag(*key): s.computed for key, s in stores.items()}
        feats = sum(s.features_computed for s in stores.values())
        took[preset_of(name)] = time.perf_counter() - t_seq
        print(f"{name}: {', '.join(todo)} in {time.perf_counter() - t0:.0f} s "
              f"(propagations computed {computed}, frame features computed {feats})", flush=True)
    if not stopped:
        return dirs, None
    done = {n: all(output_path(d, "posetrack", n).is_file() for d in dirs.values()) for n in names}
    complete = 0  # names are round-robin: count whole rounds
    while True:
        rnd = sequence_names(suite_dir, complete + 1)[len(sequence_names(suite_dir, complete)):]
        if not rnd or not all(done.get(n, False) for n in rnd) or (subset is not None and complete >= subset):
            break
        complete += 1
    print(f"--until reached: {complete} sequences of every preset done", flush=True)
    return dirs, complete


# -- evaluation -------------------------------------------------------------------------

def preset_of(name: str) -> str:
    return name.rsplit("_", 1)[-1]


def score(suite_dir: Path, dirs: dict[str, Path], progress: bool,
          subset: int | None = None) -> tuple[dict[str, dict[str, dict]], dict]:
    """group (presets + total) -> method -> metrics."""
    from tqdm import tqdm

    from corrtrack.eval import JOINTS, evaluate
    from corrtrack.io.posetrack import read_posetrack
    from corrtrack.pipeline.run import output_path

    try:
        from corrtrack.eval import combine_id_metrics, evaluate_id_metrics
    except ImportError:  # the identity metrics are optional
        combine_id_metrics = evaluate_id_metrics = None
    names = sorted(sequence_names(suite_dir, subset))
    gts = [read_posetrack(suite_dir / "posetrack" / f"{n}.json") for n in names]
    presets = [p for p in PRESETS if any(preset_of(n) == p for n in names)]
    groups = {p: [i for i, n in enumerate(names) if preset_of(n) == p] for p in presets}
    groups["total"] = list(range(len(names)))
    results: dict[str, dict[str, dict]] = {g: {} for g in groups}
    for m, d in tqdm(dirs.items(), desc="evaluating", disable=not progress):
        preds = [read_posetrack(output_path(d, "posetrack", n)) for n in names]
        per = evaluate(gts, preds, per_sequence=True).per_sequence
        idm = [evaluate_id_metrics([g], [p]) for g, p in zip(gts, preds)] if evaluate_id_metrics else None
        for g, idx in groups.items():
            c = {k: np.array([sum(per[names[i]]["mot"].counts[k][j] for i in idx if names[i] in per) for j in JOINTS],
                             float)
                 for k in ("num_switches", "num_misses", "num_false_positives", "num_objects", "num_detections")}
            with np.errstate(divide="ignore", invalid="ignore"):
                obj = np.where(c["num_objects"] > 0, c["num_objects"], np.nan)
                mota = 100 * (1 - (c["num_misses"] + c["num_switches"] + c["num_false_positives"]) / obj)
                prec = 100 * c["num_detections"] / (c["num_detections"] + c["num_false_positives"])
                rec = 100 * c["num_detections"] / obj
            r = {"MOTA": float(np.nanmean(mota)), "IDSW": int(c["num_switches"].sum()),
                 "mAP": evaluate([gts[i] for i in idx], [preds[i] for i in idx], tracking=False).ap.mAP,
                 "Prec": float(np.nanmean(prec)), "Rec": float(np.nanmean(rec))}
            if idm is not None:
                comb = combine_id_metrics([idm[i] for i in idx])
                r.update(IDF1=comb.id.IDF1, HOTA=comb.hota.HOTA, AssA=comb.hota.AssA)
            results[g][m] = r
    info = {"sequences": len(names), "frames": sum(len(g.frames) for g in gts),
            "gt_poses": sum(len(p) for g in gts for p in g.poses),
            "per_group": {g: len(idx) for g, idx in groups.items()}, "idmetrics": evaluate_id_metrics is not None}
    return results, info


def fmt(col: str, v) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return str(int(v)) if col == "IDSW" else f"{v:.1f}"


def table_md(rows: dict[str, dict], cols) -> str:
    lines = ["| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for m, r in rows.items():
        lines.append(f"| {m} | " + " | ".join(fmt(c, r.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def print_table(title: str, rows: dict[str, dict], cols) -> None:
    print(f"\n{title}")
    w = max(len(m) for m in rows) + 2
    print("method".ljust(w) + "".join(c.rjust(8) for c in cols))
    for m, r in rows.items():
        print(m.ljust(w) + "".join(fmt(c, r.get(c)).rjust(8) for c in cols))


def write_section(md: Path, body: str) -> None:
    """Replace only the text between this benchmark's markers (re-read right before writing)."""
    from corrtrack.bench import write_marked_section

    write_marked_section(md, "tracking", body)


def environment(models: Models, load: tuple[float, float]) -> str:
    import importlib.metadata as md

    import torch

    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or "?"
    except OSError:
        commit = "?"
    vers = ", ".join(f"{p} {md.version(p)}" for p in ("numpy", "opencv-python-headless", "motmetrics")
                     if _has(p))
    return (f"Date {datetime.date.today().isoformat()}; corrtrack at git {commit} (+ working tree); machine "
            f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} CPU with "
            f"{torch.get_num_threads()} threads, Python {platform.python_version()}, {vers}; 1-minute load "
            f"average {load[0]:.1f} at the start, {load[1]:.1f} at the end (shared machine). Correspondence "
            f"weights `{_rel(models.weights)}` sha256 {models.weights_sha}…, run by {models.runtime} on the CPU.")


def _has(pkg: str) -> bool:
    import importlib.metadata as md

    try:
        md.version(pkg)
        return True
    except md.PackageNotFoundError:
        return False


def _rel(p: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def headline(results) -> list[str]:
    """One line: corr's ID switches against OKS and flow per group, and the issue-7 target."""
    if not all(m in rows for rows in results.values() for m in ("corr", "oks")):
        return []
    ratio = ", ".join(f"{g} {rows['corr']['IDSW'] / max(rows['oks']['IDSW'], 1):.2f}x"
                      for g, rows in results.items())
    tot = results["total"]
    line = (f"* **`corr` ID switches / `oks` ID switches**: {ratio} (target: at most 0.5x, the paper's "
            f"\"about half\"). Total: `corr` {tot['corr']['IDSW']}, `oks` {tot['oks']['IDSW']}")
    if "flow" in tot:
        line += f", `flow` {tot['flow']['IDSW']}"
    return ["", line + "."]


def section(results, info, args, models: Models, load, sets) -> str:
    cmd = " ".join(["python benchmarks/bench_tracking.py", *sys.argv[1:]])
    cols = [c for c in COLUMNS if info["idmetrics"] or c not in ("IDF1", "HOTA", "AssA")]
    lines = [
        "## Tracking on the synthetic suite: the paper's Table 2 and ablation",
        "",
        f"* Command: `{cmd}`" + (f" (TrackerConfig changes: {sets})" if sets else "") + ".",
        f"* {environment(models, load)}",
        f"* Suite: `corrtrack data synth --preset {args.suite} --seed {args.seed}"
        + (f" --sequences {args.sequences}" if args.sequences else "")
        + (f" --length {args.length}" if args.length else "")
        + "`" + (f", only the first {args.subset} sequences of each preset ("
                  + ("`--until` stopped the run there" if getattr(args, "stopped", False)
                     else f"`--subset {args.subset}`") + ")"
                  if args.subset else "")
        + f": {info['sequences']} sequences, {info['frames']} frames, {info['gt_poses']} GT poses.",
        f"* Input to every method: the same per-frame poses from our NanoDet detector + MoveNet {args.pose_model} "
        "(`--pose-model`; also re-estimates recovered people), computed once. Recovery and merging only where "
        "named.",
        "* MOTA / IDSW / mAP / Prec / Rec: `corrtrack eval` (poseval's definitions; IDSW summed over the 15 "
        "joints)" + ("; IDF1 and keypoint HOTA / AssA: `corrtrack.eval.idmetrics`" if info["idmetrics"] else "")
        + ". All in %.",
        "* Methods: Table 2 = `corr` (the default: the larger of eq. 6 and OKS of the propagated joints, "
        "`TrackerConfig.corr_oks`), `oks`, `iou`, `flow` (DIS optical flow + OKS), `reid` (ImageNet "
        "MobileNetV2 crop embeddings); ablation = `corr-eq6` (the paper's eq. 6 alone), `corr-noref` (Siamese "
        "softmax maps, no refinement), "
        "`corr-nodup` (no duplicate removal), `corr-nomotion` (no motion prior: every method but this one "
        "also scores a confirmed track kept alive by OKS with its last pose moved on at its velocity, "
        "`TrackerConfig.motion_prior`), `corr+rec` (recovery of missed people), `+merge` (eq. 8); "
        "speed option = `corr+every2`, `corr+every3` (`--detect-every 2 / 3`: the detections of every 2nd / 3rd "
        "frame only; in between, the people of the previous frame are followed by correspondences and their "
        "poses re-estimated), `corr+rec+every2` (and recovery on the detected frames: what `corrtrack track "
        "--detect-every 2` runs).",
    ]
    lines += headline(results)
    for g, rows in results.items():
        n = info["per_group"][g]
        lines += ["", f"**{g}** ({n} sequences)", "", table_md(rows, cols)]
    lines += ["", "![ID switches and MOTA per method and preset](docs/img/bench_tracking.png)", "",
              "(The plot: `python benchmarks/plot_tracking.py JSON` on this run's `--json`.)"]
    if args.notes:
        lines += ["", args.notes.read_text(encoding="utf-8").strip()]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="all", choices=("all",) + PRESETS)
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic suite")
    ap.add_argument("--quick", action="store_true", help="2 sequences per preset of 100 frames")
    ap.add_argument("--sequences", type=int, default=None, help="sequences per preset (preset default: 8)")
    ap.add_argument("--length", type=int, default=None, help="frames per sequence (preset default: 150/200)")
    ap.add_argument("--subset", type=int, default=None,
                    help="track and score only the first N sequences of each preset of the suite (its caches are "
                         "the full suite's; unlike --sequences, which generates a smaller suite)")
    ap.add_argument("--until", default=None, metavar="HH:MM",
                    help="UTC time by which tracking must end: no sequence is started that the previous round's "
                         "times say cannot finish its round by then; the whole rounds done (sequences are taken "
                         "walk 1, crossing 1, crowd 1, reentry 1, walk 2, ...) are scored, as --subset")
    ap.add_argument("--shard", default=None, metavar="K/N",
                    help="only track sequences K, K+N, K+2N, ... (0-based) and stop before scoring: run N shards "
                         "in parallel, then once without --shard to score them all from what they wrote")
    ap.add_argument("--methods", default=",".join(ALL_METHODS), help=f"comma-separated subset of {ALL_METHODS}")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="TrackerConfig field for every method (dotted for nested configs)")
    ap.add_argument("--pose-model", default="thunder",
                    help="PoseConfig.model for detections and recovery (default thunder: the better MoveNet; "
                         "the pipeline's CPU default 'auto' means lightning)")
    ap.add_argument("--weights", type=Path, default=None, help="correspondence weights (default: the shipped ones)")
    ap.add_argument("--cache-dir", type=Path, default=ROOT / "out" / "bench_tracking")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cpu-runtime", choices=("onnx", "torchscript"), default="onnx",
                    help="how the correspondence network runs (RunConfig.cpu_runtime; part of the cache keys)")
    ap.add_argument("--corr-input-size", type=int, default=None,
                    help="longer side of the correspondence network's input (RunConfig.corr_input_size; part of "
                         "the cache keys); default: the model's")
    ap.add_argument("--notes", type=Path, default=None,
                    help="markdown file appended to the written section (what the numbers mean)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--no-write", action="store_true", help="only print; leave BENCHMARKS.md alone")
    args = ap.parse_args()
    if args.quick:
        args.sequences, args.length = args.sequences or 2, args.length or 100

    import torch

    torch.set_num_threads(args.threads)
    global POSE_MODEL
    POSE_MODEL = args.pose_model
    from corrtrack.models.corrnet import DEFAULT_WEIGHTS

    progress = sys.stderr.isatty()
    sets = parse_sets(args.sets)
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in names if m not in ALL_METHODS]
    if bad:
        raise SystemExit(f"unknown methods {bad}; known: {ALL_METHODS}")
    methods = {m: method_config(m, sets) for m in names}
    models = Models(args.weights or DEFAULT_WEIGHTS, args.cpu_runtime, args.corr_input_size)
    load0 = os.getloadavg()[0]
    suite_dir = ensure_suite(args.cache_dir, args.suite, args.seed, args.sequences, args.length)
    t0 = time.perf_counter()
    until = None
    if args.until:
        hh, mm = (int(x) for x in args.until.split(":"))
        now = datetime.datetime.now(datetime.timezone.utc)
        until = now.replace(hour=hh, minute=mm, second=0, microsecond=0).timestamp()
    shard = None
    if args.shard:
        k, _, n = args.shard.partition("/")
        if not (k.isdigit() and n.isdigit() and int(k) < int(n)):
            raise SystemExit(f"--shard {args.shard}: expected K/N with 0 <= K < N")
        shard = (int(k), int(n))
    dirs, complete = track_suite(suite_dir, methods, models, progress, args.subset, until, shard)
    if shard:
        print(f"shard {args.shard} tracked in {time.perf_counter() - t0:.0f} s", flush=True)
        return
    args.stopped = complete is not None
    if complete is not None:
        if complete == 0:
            raise SystemExit("--until reached before one sequence of every preset was tracked; nothing to score")
        args.subset = complete
    print(f"tracked in {time.perf_counter() - t0:.0f} s", flush=True)
    results, info = score(suite_dir, dirs, progress, args.subset)
    load = (load0, os.getloadavg()[0])
    cols = [c for c in COLUMNS if info["idmetrics"] or c not in ("IDF1", "HOTA", "AssA")]
    for g, rows in results.items():
        print_table(f"{g} ({info['per_group'][g]} sequences)", rows, cols)
    if args.json:
        from corrtrack.io.atomic import write_json

        write_json(args.json, {"results": results, "info": info, "sets": sets,
                               "runs": {m: str(d) for m, d in dirs.items()}}, indent=1)
    if not args.no_write:
        write_section(ROOT / "BENCHMARKS.md", section(results, info, args, models, load, sets))
        print(f"wrote the tracking section of {ROOT / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
