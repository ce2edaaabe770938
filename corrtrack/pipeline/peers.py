"""Peer trackers: what a user would pick instead of ours, run on the same per-frame poses.

Each works like :class:`corrtrack.pipeline.tracker.Tracker`: one instance per
sequence, ``step(index, poses, image=None)`` takes the detected poses of frame
``index`` and returns those it tracks with their ``track_ids`` (poses the
peer does not report, e.g. tracks still being confirmed, are left out).

* ``norfair`` — tryolabs' norfair with the keypoint-voting distance and the
  settings of its OpenPose demo (``demos/openpose/src/demo.py``): a joint
  votes when it is within ``image height / 40`` px of the track's Kalman
  estimate, distance = 1 / (1 + votes) < 0.4, joints below 0.1 ignored,
  4 frames to confirm a track, 30 to lose it.
* ``bytetrack``, ``sort`` — Roboflow's ``trackers`` package on the pose boxes
  with its default settings (frame rate = the sequence's); a pose follows its
  box.

The packages are optional (``pip install -e '.[bench]'`` lists them); their
metadata asks for things this project cannot take (norfair 2.3 pins
numpy < 2; ``trackers`` / ``supervision`` want ``opencv-python`` beside our
``opencv-python-headless``), so install them with ``--no-deps`` — see
``benchmarks/bench_quality.py``. Nothing here needs torch.
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, ClassVar

import numpy as np

from corrtrack.errors import CorrtrackError
from corrtrack.structures import Poses

INSTALL_HINT = ("pip install --no-deps norfair==2.3.0 filterpy==1.4.5 trackers==2.6.1 supervision==0.31.2 "
                "&& pip install 'pydeprecate<0.14' defusedxml pyyaml requests")


@dataclass(frozen=True)
class PeerConfig:
    fps: float = 25.0  # frame rate of the sequence (Kalman time steps, lost-track buffers)
    image_height: int = 576  # norfair's keypoint threshold is image height / 40 (its pose demo)


class PeerTracker(ABC):
    """One sequence's tracker: ``step`` per frame, in order (frames may be skipped)."""

    name: ClassVar[str]
    # A box tracker: its thresholds are for a detector's box confidence, not a person score.
    takes_boxes: ClassVar[bool] = False

    def __init__(self, config: PeerConfig = PeerConfig()) -> None:
        self.config = config

    def step(self, index: int, candidates: Poses, image: np.ndarray | None = None) -> Poses:
        ids = self._assign(index, candidates)
        keep = ids >= 0
        return candidates[keep].replace(track_ids=ids[keep])

    @abstractmethod
    def _assign(self, index: int, poses: Poses) -> np.ndarray:
        """Track id of each pose of frame ``index`` (-1: not reported)."""


_PEERS: dict[str, type[PeerTracker]] = {}


def register_peer(name: str) -> Callable[[type[PeerTracker]], type[PeerTracker]]:
    def deco(cls: type[PeerTracker]) -> type[PeerTracker]:
        if name in _PEERS:
            raise ValueError(f"peer tracker {name!r} registered twice")
        cls.name = name
        _PEERS[name] = cls
        return cls

    return deco


def peer_names() -> tuple[str, ...]:
    return tuple(_PEERS)


def make_peer(name: str, config: PeerConfig = PeerConfig()) -> PeerTracker:
    """A fresh peer tracker by name; ``CorrtrackError`` when unknown or its package is missing."""
    if name not in _PEERS:
        raise CorrtrackError(f"peer tracker {name!r}: unknown; known: {', '.join(_PEERS)}")
    return _PEERS[name](config)


def peer_available(name: str) -> str | None:
    """None when ``name`` can run here, else why not (one line)."""
    try:
        make_peer(name)
    except CorrtrackError as e:
        return str(e)
    return None


def _require(module: str, peer: str):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise CorrtrackError(f"peer tracker {peer}: needs the PyPI package of module {module!r} ({e}); "
                             f"install: {INSTALL_HINT}") from None


@register_peer("norfair")
class NorfairPeer(PeerTracker):
    def __init__(self, config: PeerConfig = PeerConfig()) -> None:
        super().__init__(config)
        nf = _require("norfair", "norfair")
        from norfair.distances import ScalarDistance, create_keypoints_voting_distance

        self._Detection = nf.Detection
        self._tracker = nf.Tracker(distance_function="euclidean", distance_threshold=0.4, detection_threshold=0.1,
                                   initialization_delay=4, hit_counter_max=30, pointwise_hit_counter_max=10)
        # The demo's distance, set after construction: norfair logs a warning for
        # every tracker built with a plain function (this is what it builds from one).
        self._tracker.distance_function = ScalarDistance(create_keypoints_voting_distance(
            keypoint_distance_threshold=config.image_height / 40, detection_threshold=0.1))
        self._last: int | None = None

    def _assign(self, index: int, poses: Poses) -> np.ndarray:
        period = 1 if self._last is None else max(1, index - self._last)
        self._last = index
        dets = [self._Detection(p[:, :2], scores=p[:, 2], data=i) for i, p in enumerate(poses.keypoints)]
        ids = np.full(len(poses), -1, np.int64)
        mine = {id(d) for d in dets}
        for obj in self._tracker.update(dets, period=period):
            if id(obj.last_detection) in mine:  # matched in this frame (not only predicted)
                ids[obj.last_detection.data] = obj.id
        return ids


class _BoxPeer(PeerTracker):
    """A ``trackers`` box tracker; the pose's box and person score go in, ids come back per box."""

    takes_boxes = True

    def __init__(self, config: PeerConfig = PeerConfig()) -> None:
        super().__init__(config)
        self._sv = _require("supervision", self.name)
        self._tracker = self._make(_require("trackers", self.name))

    @abstractmethod
    def _make(self, trackers_module): ...

    def _assign(self, index: int, poses: Poses) -> np.ndarray:
        n = len(poses)
        dets = self._sv.Detections(xyxy=poses.boxes.reshape(n, 4).astype(np.float32),
                                   confidence=poses.scores.astype(np.float32), data={"row": np.arange(n)})
        out = self._tracker.update(dets, timestamp=index / self.config.fps)
        ids = np.full(n, -1, np.int64)
        if len(out):
            ids[np.asarray(out.data["row"], np.int64)] = np.asarray(out.tracker_id, np.int64)
        return ids


@register_peer("bytetrack")
class ByteTrackPeer(_BoxPeer):
    thresholds: ClassVar[dict[str, float]] = {}  # the package's defaults: start a track at 0.7, first pass 0.6

    def _make(self, trackers_module):
        return trackers_module.ByteTrackTracker(frame_rate=self.config.fps, **self.thresholds)


@register_peer("bytetrack-tuned")
class ByteTrackTunedPeer(ByteTrackPeer):
    """ByteTrack with its two confidence thresholds set for NanoDet's boxes (which start at 0.4, where
    ByteTrack's defaults are made for detectors whose people score 0.7 and more): the pair with the
    best MOTA on the validation suite (seed 321, never the benchmark's seed 0; ``benchmarks/
    bench_peers.py --tune-bytetrack``)."""

    thresholds: ClassVar[dict[str, float]] = {"track_activation_threshold": 0.5, "high_conf_det_threshold": 0.5}


@register_peer("sort")
class SortPeer(_BoxPeer):
    def _make(self, trackers_module):
        return trackers_module.SORTTracker(frame_rate=self.config.fps)
