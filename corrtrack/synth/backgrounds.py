"""Empty real scenes for synthetic sequences.

A fixed-camera video (or a folder of frames) becomes one empty frame: the
median of the sampled frames that show the scene with nobody in it (see
``empty_scene``). An image is used as it is. Either is scaled to cover the
output size and centre-cropped. Results are cached by the file's content hash
and the size, so a suite regenerates without decoding the videos again.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from corrtrack.errors import CorrtrackError
from corrtrack.models.cache import file_sha256

SAMPLED_FRAMES = 100


@dataclass(frozen=True)
class Background:
    image: np.ndarray  # (H, W, 3) uint8 RGB, already the output size
    source: str  # path as given
    sha256: str  # of the source file (or "generated")
    method: str  # "median of N frames" / "image"

    def describe(self) -> dict:
        return {"source": self.source, "sha256": self.sha256, "method": self.method}


def fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale to cover ``size`` (width, height) keeping the aspect, then centre-crop."""
    import cv2

    w, h = size
    ih, iw = image.shape[:2]
    s = max(w / iw, h / ih)
    nw, nh = max(w, round(iw * s)), max(h, round(ih * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    scaled = cv2.resize(image, (nw, nh), interpolation=interp) if (nw, nh) != (iw, ih) else image
    x0, y0 = (nw - w) // 2, (nh - h) // 2
    return np.ascontiguousarray(scaled[y0:y0 + h, x0:x0 + w])


def empty_scene(path: str | os.PathLike, size: tuple[int, int], frames: int = SAMPLED_FRAMES) -> tuple[np.ndarray, str]:
    """The empty scene of a fixed-camera video (or frame folder), at ``size``.

    ``frames`` frames spread over the video are compared at low resolution;
    the frame whose near-identical frames (mean difference below twice the
    typical nearest-neighbour difference, i.e. the codec noise) come back
    most often, in separate stretches of time, shows the scene as it is when
    nobody stands in it: people who stay somewhere for a while give one
    stretch, the empty scene returns between them. The per-pixel median of
    that frame's near-identical frames is the background (of all sampled
    frames when fewer than 5 qualify: then nobody stays long anywhere and the
    median removes them, as in vtest.avi).
    """
    import cv2

    from corrtrack.io.video import open_source

    src = open_source(path)
    total = src.expected_frames
    step = max(1, (total or frames) // frames)
    with open_source(path, step=step) as s:
        stack = [fit(f.image, size) for _, f in zip(range(frames), s)]
    if not stack:
        raise CorrtrackError(f"{path}: no frames could be decoded for a background")
    small = np.stack([cv2.resize(im, (96, 72), interpolation=cv2.INTER_AREA) for im in stack]).astype(np.float32)
    dist = np.abs(small[:, None] - small[None]).mean(axis=(2, 3, 4))
    if len(stack) < 2:
        return stack[0], "one frame"
    tau = 2 * np.median(np.sort(dist, 1)[:, 1]) + 0.5
    best_key, chosen = (0, 0), np.arange(len(stack))
    for i in range(len(stack)):
        near = np.flatnonzero(dist[i] < tau)
        key = (1 + int((np.diff(near) > 1).sum()), len(near))
        if key > best_key:
            best_key, chosen = key, near
    if len(chosen) < 5:
        chosen = np.arange(len(stack))
    median = np.median(np.stack([stack[i] for i in chosen]), axis=0).astype(np.uint8)
    return median, f"median of {len(chosen)} of {len(stack)} sampled frames (empty scene)"


def load_background(path: str | os.PathLike, size: tuple[int, int], cache_dir: str | os.PathLike | None = None,
                    frames: int = SAMPLED_FRAMES) -> Background:
    """An empty scene of ``size`` (width, height) from a video, frame folder or image."""
    import cv2
    import json

    from corrtrack.io.atomic import atomic_path, write_json
    from corrtrack.io.video import IMAGE_EXTENSIONS, read_image

    path = Path(path)
    if not path.exists():
        raise CorrtrackError(f"{path}: background not found")
    is_image = path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS
    digest = file_sha256(path) if path.is_file() else hashlib.sha256(
        "\n".join(sorted(p.name for p in path.iterdir())).encode()).hexdigest()
    if is_image:
        return Background(fit(read_image(path), size), str(path), digest, "image")
    stem = f"{digest[:20]}_{size[0]}x{size[1]}_{frames}"
    cached = Path(cache_dir) / f"{stem}.png" if cache_dir is not None else None
    if cached is not None and cached.is_file() and cached.with_suffix(".json").is_file():
        bgr = cv2.imread(str(cached), cv2.IMREAD_COLOR)
        if bgr is not None and bgr.shape[:2] == (size[1], size[0]):
            method = json.loads(cached.with_suffix(".json").read_text())["method"]
            return Background(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), str(path), digest, method)
    image, method = empty_scene(path, size, frames)
    if cached is not None:
        with atomic_path(cached, suffix=".png") as tmp:
            cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        write_json(cached.with_suffix(".json"), {"source": str(path), "sha256": digest, "method": method})
    return Background(image, str(path), digest, method)
