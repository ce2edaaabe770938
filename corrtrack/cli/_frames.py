"""The frame loop shared by the per-frame commands (``detect``, ``pose``).

Streams a source, runs one function per frame, and writes the annotated frames
as an MP4 (video/folder sources) or an image (image sources), atomically.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

from corrtrack.errors import CorrtrackError

T = TypeVar("T")


def check_range(source: Path, start: int, end: int | None, step: int) -> None:
    if start < 0 or step < 1 or (end is not None and end < start):
        raise CorrtrackError(f"{source}: bad frame range --start {start} --end {end} --step {step}")


def for_each_frame(source: Path, out: Path, tag: str, process: Callable[..., tuple[T, np.ndarray | None]], *,
                   start: int = 0, end: int | None = None, step: int = 1,
                   annotate: bool = True, progress: bool = True) -> tuple[object, list[T]]:
    """Call ``process(frame) -> (result, annotated RGB image or None)`` on every frame.

    Annotated frames go to ``OUT/<name>.<tag>.mp4`` (or ``.png``/``.jpg`` for an
    image source). A progress bar shows on a terminal unless ``progress`` is off. Returns the opened
    source (for its name and size) and the results.
    """
    import cv2
    from tqdm import tqdm

    from corrtrack.io.atomic import atomic_path
    from corrtrack.io.video import VideoWriter, open_source

    check_range(source, start, end, step)
    src = open_source(source, start=start, end=end, step=step)
    results: list[T] = []
    writer = None
    if annotate and src.kind != "image":
        writer = VideoWriter(out / f"{src.name}.{tag}.mp4", fps=src.fps or 10.0)
    try:
        with src:
            bar = tqdm(src, total=src.expected_frames, unit="frame", disable=not (progress and sys.stderr.isatty()))
            for frame in bar:
                result, vis = process(frame)
                results.append(result)
                if not annotate or vis is None:
                    continue
                if writer is not None:
                    writer.write(vis)
                else:
                    suffix = ".jpg" if src.path.suffix.lower() in (".jpg", ".jpeg") else ".png"
                    with atomic_path(out / f"{src.name}.{tag}{suffix}", suffix=suffix) as tmp:
                        if not cv2.imwrite(str(tmp), cv2.cvtColor(vis, cv2.COLOR_RGB2BGR)):
                            raise CorrtrackError(f"{out}: cannot write the annotated image")
        if writer is not None:
            writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return src, results


def pose_config(model: str | None):
    """PoseConfig for ``--pose-model``: a MoveNet name or a PoseNet checkpoint (``corrtrack train pose``)."""
    import dataclasses

    from corrtrack.pipeline.pose import AUTO, MODELS, PoseConfig

    config = PoseConfig()
    if model is None:
        return config
    if model not in (AUTO, *MODELS) and not Path(model).is_file():
        raise CorrtrackError(f"{model}: not a pose model (one of {AUTO}, {', '.join(MODELS)} or a PoseNet .pt file)")
    return dataclasses.replace(config, model=model)
