"""``corrtrack pose IMAGE_OR_VIDEO``: detector + MoveNet per frame (no tracking), written as a
COCO keypoint results list and an annotated copy, to see what the models see."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from corrtrack.cli.track import CpuRuntime, cpu_runtime_option


def pose_cmd(
    source: Path = typer.Argument(..., help="An image, a video or a folder of images."),
    out: Path = typer.Option(Path("out"), "-o", "--out", help="Output folder."),
    model: Optional[str] = typer.Option(None, "--model", "--pose-model",
                                        help="MoveNet size: auto (default: thunder on GPU, lightning on CPU), lightning "
                                        "(fast), thunder (accurate), or a PoseNet checkpoint from `corrtrack train pose`."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Person detection score threshold "
                                              "(default: DetectorConfig's)."),
    joint_threshold: float = typer.Option(0.3, "--joint-threshold",
                                          help="Joints below this score are not drawn (all are written)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1 ... (default: CUDA if available)."),
    start: int = typer.Option(0, "--start", help="First frame index."),
    end: Optional[int] = typer.Option(None, "--end", help="Stop before this frame index."),
    step: int = typer.Option(1, "--step", help="Use every STEP-th frame."),
    annotate: bool = typer.Option(True, "--annotate/--no-annotate", help="Also write an annotated image/video."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    cpu_runtime: CpuRuntime = cpu_runtime_option(),
) -> None:
    """Detect people and estimate their poses in every frame (no tracking).

    Writes OUT/<name>.poses.json — a COCO keypoint results list (image_id = frame
    index, COCO-17 keypoints x, y, score; track_id -1) — and an annotated image or video.
    """
    import dataclasses

    from corrtrack.cli._frames import for_each_frame
    from corrtrack.cli._frames import pose_config as pose_config_for
    from corrtrack.errors import CorrtrackError
    from corrtrack.io.coco import write_coco_results
    from corrtrack.pipeline.detector import Detector, DetectorConfig
    from corrtrack.pipeline.pose import TopDownPoseEstimator
    from corrtrack.structures import FrameInfo
    from corrtrack.viz.draw import draw_poses

    det_config = DetectorConfig()
    if threshold is not None:
        if not 0 <= threshold < 1:
            raise CorrtrackError(f"--threshold must be in [0, 1), got {threshold}")
        det_config = dataclasses.replace(det_config, score_threshold=threshold)
    pose_config = pose_config_for(model)
    detector = Detector(det_config, device=device, runtime=cpu_runtime.value)
    estimator = TopDownPoseEstimator(pose_config, device=device, runtime=cpu_runtime.value)

    def process(frame):
        poses = estimator(frame.image, detector(frame.image))
        info = FrameInfo(index=frame.index, time=frame.time, file_name=frame.name,
                         width=frame.image.shape[1], height=frame.image.shape[0])
        vis = draw_poses(frame.image, poses, joint_threshold=joint_threshold, show_ids=False) if annotate else None
        return (info, poses), vis

    src, results = for_each_frame(source, out, "poses", process, start=start, end=end, step=step,
                                  annotate=annotate, progress=not quiet)
    json_path = out / f"{src.name}.poses.json"
    people = write_coco_results(json_path, results)
    name = getattr(estimator, "variant", pose_config.model)
    typer.echo(f"{len(results)} frames, {people} poses ({name}) -> {json_path}")


def register(app: typer.Typer) -> None:
    app.command("pose")(pose_cmd)
