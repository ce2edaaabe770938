"""``corrtrack detect IMAGE_OR_VIDEO``: person boxes per frame as JSON + an annotated copy."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from corrtrack.cli.track import CpuRuntime, cpu_runtime_option


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
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    cpu_runtime: CpuRuntime = cpu_runtime_option(),
) -> None:
    """Detect people in every frame; write OUT/<name>.detections.json and an annotated image or video."""
    import dataclasses

    import cv2
    import numpy as np

    from corrtrack.cli._frames import for_each_frame
    from corrtrack.errors import CorrtrackError
    from corrtrack.io.atomic import write_json
    from corrtrack.pipeline.detector import Detector, DetectorConfig
    from corrtrack.viz.draw import draw_poses

    # Boxes only: no pose to verify low-score candidates with (corrtrack pose does), so show the
    # confident ones.
    config = DetectorConfig(candidate_threshold=None)
    if threshold is not None:
        if not 0 <= threshold < 1:
            raise CorrtrackError(f"--threshold must be in [0, 1), got {threshold}")
        config = dataclasses.replace(config, score_threshold=threshold)
    detector = Detector(config, device=device, runtime=cpu_runtime.value)

    def process(frame):
        poses = detector(frame.image)
        record = dict(index=frame.index, time=frame.time, file_name=frame.name,
                      boxes=np.round(poses.boxes, 2).tolist(), scores=np.round(poses.scores, 4).tolist())
        if not annotate:
            return record, None
        vis = draw_poses(frame.image, poses, show_ids=False)
        for (x1, y1, _, _), s in zip(poses.boxes, poses.scores):
            cv2.putText(vis, f"{s:.2f}", (int(x1), max(12, int(y1) - 3)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.45, (255, 255, 0), 1, cv2.LINE_AA)
        return record, vis

    src, frames = for_each_frame(source, out, "detections", process, start=start, end=end, step=step,
                                 annotate=annotate, progress=not quiet)
    json_path = out / f"{src.name}.detections.json"
    write_json(json_path, dict(source=str(source), model="nanodet", config=dataclasses.asdict(config),
                               width=src.width, height=src.height, frames=frames))
    people = sum(len(f["scores"]) for f in frames)
    typer.echo(f"{len(frames)} frames, {people} person detections -> {json_path}")


def register(app: typer.Typer) -> None:
    app.command("detect")(detect_cmd)
