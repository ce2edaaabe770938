"""``corrtrack detect IMAGE_OR_VIDEO``: person boxes per frame as JSON + an annotated copy."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def detect_cmd(
    source: Path = typer.Argument(..., help="An image, a video or a folder of images."),
    out: Path = typer.Option(Path("out"), "-o", "--out", help="Output folder."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Person score threshold "
                                              "(default: DetectorConfig's)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1 ... (default: CUDA if available)."),
    start: int = typer.Option(0, "--start", help="First frame index."),
    end: Optional[int] = typer.Option(None, "--end", help="Stop before this frame index."),
    step: int = typer.Option(1, "--step", help="Use every STEP-th frame."),
    annotate: bool = typer.Option(True, "--annotate/--no-annotate", help="Also write an annotated image/video."),
) -> None:
    """Detect people in every frame; write OUT/<name>.detections.json and an annotated image or video."""
    import dataclasses
    import sys

    import cv2
    import numpy as np
    from tqdm import tqdm

    from corrtrack.errors import CorrtrackError
    from corrtrack.io.atomic import atomic_path, write_json
    from corrtrack.io.video import VideoWriter, open_source
    from corrtrack.pipeline.detector import Detector, DetectorConfig
    from corrtrack.viz.draw import draw_poses

    config = DetectorConfig()
    if threshold is not None:
        if not 0 <= threshold < 1:
            raise CorrtrackError(f"--threshold must be in [0, 1), got {threshold}")
        config = dataclasses.replace(config, score_threshold=threshold)
    if start < 0 or step < 1 or (end is not None and end < start):
        raise CorrtrackError(f"{source}: bad frame range --start {start} --end {end} --step {step}")
    src = open_source(source, start=start, end=end, step=step)
    detector = Detector(config, device=device)
    stem = src.name
    json_path = out / f"{stem}.detections.json"
    frames = []
    writer = None
    if annotate and src.kind != "image":
        writer = VideoWriter(out / f"{stem}.detections.mp4", fps=src.fps or 10.0)
    try:
        with src:
            for frame in tqdm(src, total=src.expected_frames, unit="frame", disable=not sys.stderr.isatty()):
                poses = detector(frame.image)
                frames.append(dict(index=frame.index, time=frame.time, file_name=frame.name,
                                   boxes=np.round(poses.boxes, 2).tolist(), scores=np.round(poses.scores, 4).tolist()))
                if not annotate:
                    continue
                vis = draw_poses(frame.image, poses, show_ids=False)
                for (x1, y1, _, _), s in zip(poses.boxes, poses.scores):
                    cv2.putText(vis, f"{s:.2f}", (int(x1), max(12, int(y1) - 3)), cv2.FONT_HERSHEY_SIMPLEX,
                                0.45, (255, 255, 0), 1, cv2.LINE_AA)
                if writer is not None:
                    writer.write(vis)
                else:
                    suffix = ".jpg" if src.path.suffix.lower() in (".jpg", ".jpeg") else ".png"
                    with atomic_path(out / f"{stem}.detections{suffix}", suffix=suffix) as tmp:
                        if not cv2.imwrite(str(tmp), cv2.cvtColor(vis, cv2.COLOR_RGB2BGR)):
                            raise CorrtrackError(f"{out}: cannot write the annotated image")
        if writer is not None:
            writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    write_json(json_path, dict(source=str(source), model="nanodet", config=dataclasses.asdict(config),
                               width=src.width, height=src.height, frames=frames))
    people = sum(len(f["scores"]) for f in frames)
    typer.echo(f"{len(frames)} frames, {people} person detections -> {json_path}")


def register(app: typer.Typer) -> None:
    app.command("detect")(detect_cmd)
