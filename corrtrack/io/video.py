"""Frame sources (a video file, a folder of images, one image) and an MP4 writer.

Sources stream: frames are decoded one at a time, so memory stays bounded on
long videos. Every frame comes out as RGB ``uint8`` with its index in the
source and its time in seconds. A frame that cannot be decoded in the middle of
a video is skipped with a warning; the following frames keep their true
indices (OpenCV's ``grab()`` fails once per bad frame and then goes on).
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from corrtrack.errors import CorrtrackError
from corrtrack.io.atomic import atomic_path

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
# After a failed grab, how many more failures in a row we tolerate before
# calling it the end of the stream (a failed grab at the real end is instant).
_MAX_CONSECUTIVE_FAILURES = 25


@dataclass
class Frame:
    """One decoded frame."""

    index: int  # position in the source, from 0
    time: float | None  # seconds from the start; None for a folder/image without a frame rate
    image: np.ndarray  # (H, W, 3) uint8 RGB
    name: str | None = None  # file name for folder and image sources


def natural_key(name: str) -> list:
    """Sort key so that "frame2" comes before "frame10"."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Gray, BGR or BGRA from OpenCV (8 or 16 bit) -> RGB uint8."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB uint8; CorrtrackError if it cannot be decoded."""
    path = Path(path)
    if not path.is_file():
        raise CorrtrackError(f"{path}: no such file")
    # IMREAD_COLOR applies EXIF orientation and turns gray/RGBA into 3 channels.
    image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if image is None:
        raise CorrtrackError(f"{path}: not an image OpenCV can decode (corrupt or unsupported format)")
    return to_rgb_uint8(image)


class VideoSource:
    """Frames of a video file, a folder of images or a single image.

    ``start``/``end``/``step`` select frames by their index in the source
    (``end`` exclusive). ``fps`` gives a frame rate to sources that have none
    (folders, images) so that frames get times; a video's own rate wins.
    Iterate to stream ``Frame``s; use as a context manager to release the
    decoder early.
    """

    def __init__(self, path: str | os.PathLike, start: int = 0, end: int | None = None, step: int = 1,
                 fps: float | None = None):
        if start < 0 or step < 1 or (end is not None and end < start):
            raise ValueError(f"bad frame range start={start} end={end} step={step}")
        self.path = Path(path)
        self.start, self.end, self.step = start, end, step
        self._generators: list = []
        self._files: list[Path] = []
        if not self.path.exists():
            raise CorrtrackError(f"{self.path}: no such file or folder")
        if self.path.is_dir():
            self.kind = "folder"
            try:
                self._files = sorted((p for p in self.path.iterdir()
                                      if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                                     key=lambda p: natural_key(p.name))
            except OSError as e:
                raise CorrtrackError(f"{self.path}: cannot list folder ({e.strerror})") from None
            if not self._files:
                raise CorrtrackError(f"{self.path}: folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            self.fps = fps
            self.num_frames: int | None = len(self._files)
        elif self.path.suffix.lower() in IMAGE_EXTENSIONS:
            self.kind = "image"
            self._files = [self.path]
            self.fps = fps
            self.num_frames = 1
        else:
            self.kind = "video"
            cap = self._open_capture()
            try:
                rate = cap.get(cv2.CAP_PROP_FPS)
                count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
            finally:
                cap.release()
            self.fps = rate if rate and math.isfinite(rate) and rate > 0 else fps
            self.num_frames = int(count) if count and math.isfinite(count) and 0 < count < 2**31 else None
        # Decode the first frame now: it proves the source is readable and gives the true size
        # (a video's header can disagree with its decoded frames, e.g. rotation).
        probe = self._frames(0, None, 1)
        try:
            first = next(probe, None)
        finally:
            probe.close()
        if first is None:
            raise CorrtrackError(f"{self.path}: contains no decodable frames")
        self.height, self.width = first.image.shape[:2]

    # -- properties ---------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name if self.kind == "folder" else self.path.stem

    @property
    def expected_frames(self) -> int | None:
        """How many frames iteration will yield (None if the source length is unknown)."""
        total = self.num_frames if self.end is None else (
            min(self.end, self.num_frames) if self.num_frames is not None else self.end)
        if total is None:
            return None
        return max(0, math.ceil((total - self.start) / self.step))

    def __repr__(self) -> str:
        return (f"VideoSource({str(self.path)!r}, kind={self.kind}, {self.width}x{self.height}, "
                f"fps={self.fps}, num_frames={self.num_frames})")

    # -- iteration ----------------------------------------------------------
    def __iter__(self) -> Iterator[Frame]:
        gen = self._frames(self.start, self.end, self.step)
        self._generators.append(gen)
        return gen

    def _frames(self, start: int, end: int | None, step: int) -> Iterator[Frame]:
        if self.kind == "video":
            yield from self._video_frames(start, end, step)
            return
        stop = len(self._files) if end is None else min(end, len(self._files))
        for index in range(start, stop, step):
            path = self._files[index]
            try:
                image = read_image(path)
            except CorrtrackError as e:
                if self.kind == "image":
                    raise
                log.warning("%s; skipping frame %d", e, index)
                continue
            yield Frame(index, index / self.fps if self.fps else None, image, path.name)

    def _open_capture(self) -> "cv2.VideoCapture":
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise CorrtrackError(f"{self.path}: not a video or image OpenCV can read (corrupt, empty or unsupported)")
        return cap

    def _video_frames(self, start: int, end: int | None, step: int) -> Iterator[Frame]:
        cap = self._open_capture()
        try:
            index = -1
            failures = 0
            while end is None or index + 1 < end:
                index += 1
                if not cap.grab():
                    failures += 1
                    if failures > _MAX_CONSECUTIVE_FAILURES:
                        break
                    continue
                if failures:
                    self._warn_skipped(index - failures, index)
                    failures = 0
                if index < start or (index - start) % step:
                    continue  # grab without retrieve: no colour conversion for skipped frames
                msec = cap.get(cv2.CAP_PROP_POS_MSEC)
                ok, image = cap.retrieve()
                if not ok or image is None:
                    self._warn_skipped(index, index + 1)
                    continue
                if msec is not None and math.isfinite(msec) and (msec > 0 or index == 0):
                    time = round(msec / 1000.0, 6)
                else:
                    time = index / self.fps if self.fps else None
                yield Frame(index, time, to_rgb_uint8(image))
            got = index - failures + 1
            if failures and self.num_frames is not None and got < self.num_frames - 1:
                log.warning("%s: stream ended after %d of %d frames (the rest could not be decoded)",
                            self.path, got, self.num_frames)
        finally:
            cap.release()

    def _warn_skipped(self, first: int, stop: int) -> None:
        which = f"frame {first}" if stop - first == 1 else f"frames {first}..{stop - 1}"
        log.warning("%s: %s could not be decoded; skipped", self.path, which)

    # -- resources ----------------------------------------------------------
    def close(self) -> None:
        """Release every decoder still open (iterations not run to the end)."""
        for gen in self._generators:
            gen.close()
        self._generators.clear()

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_source(path: str | os.PathLike, start: int = 0, end: int | None = None, step: int = 1,
                fps: float | None = None) -> VideoSource:
    """Open a video file, a folder of images or an image as a stream of ``Frame``s."""
    return VideoSource(path, start=start, end=end, step=step, fps=fps)


class VideoWriter:
    """Write RGB frames to a video (MP4 with the 'mp4v' codec by default).

    The file is written under a temporary name and renamed on ``close()``, so
    an interrupted run never leaves half a video. Leaving the ``with`` block by
    an exception discards the partial file. The frame size is taken from the
    first frame unless ``size`` (width, height) is given. MPEG-4 stores even
    sizes only: an odd width or height loses its last column or row.
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int] | None = None,
                 fourcc: str = "mp4v"):
        if not fps or fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.path = Path(path)
        self.fps = float(fps)
        self.size = size
        self.fourcc = fourcc
        self.frames_written = 0
        self._atomic: contextlib.AbstractContextManager | None = None
        self._writer: cv2.VideoWriter | None = None
        self._tmp: Path | None = None
        self._closed = False

    def _open(self, width: int, height: int) -> None:
        self._atomic = atomic_path(self.path, suffix=self.path.suffix or ".mp4")
        self._tmp = self._atomic.__enter__()
        self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps,
                                       (width, height))
        if not self._writer.isOpened():
            self.abort()
            raise CorrtrackError(f"{self.path}: cannot write video (codec {self.fourcc!r}, {width}x{height})")

    def write(self, image_rgb: np.ndarray) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: writer is closed")
        image_rgb = np.asarray(image_rgb)
        if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
            raise ValueError(f"frames must be (H, W, 3) uint8 RGB, got {image_rgb.shape} {image_rgb.dtype}")
        h, w = image_rgb.shape[:2]
        if self._writer is None:
            self.size = self.size or (w, h)
            self._open(*self.size)
        if (w, h) != tuple(self.size):
            raise ValueError(f"{self.path}: frame is {w}x{h} but the video is {self.size[0]}x{self.size[1]}")
        self._writer.write(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file and move it into place."""
        if self._closed:
            return
        if self._writer is None:
            self._closed = True
            raise CorrtrackError(f"{self.path}: no frames were written; no video created")
        self._writer.release()
        if not self._tmp.is_file() or self._tmp.stat().st_size == 0:
            self.abort()
            raise CorrtrackError(f"{self.path}: OpenCV wrote an empty video (codec {self.fourcc!r})")
        self._closed = True
        self._atomic.__exit__(None, None, None)

    def abort(self) -> None:
        """Drop the partial file; the target is left as it was."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.release()
        if self._atomic is not None:
            with contextlib.suppress(Exception):
                self._atomic.__exit__(CorrtrackError, CorrtrackError("aborted"), None)
            if self._tmp is not None:
                with contextlib.suppress(FileNotFoundError):
                    self._tmp.unlink()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.abort()
