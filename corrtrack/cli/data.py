"""``corrtrack data ...``: make data sets. ``data synth`` writes the synthetic tracking benchmark,
``data pseudolabel`` labels real videos with our detector + pose model (training data for ``train corr``)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from corrtrack.errors import CorrtrackError

data_app = typer.Typer(help="Make data sets (synthetic tracking benchmark, ...).", no_args_is_help=True)


def parse_range(text: str, what: str, cast=int) -> tuple:
    """"N" -> (N, N); "LO-HI" -> (LO, HI)."""
    try:
        parts = [cast(p) for p in text.split("-", 1)] if "-" in text.strip()[1:] else [cast(text)] * 2
    except ValueError:
        raise CorrtrackError(f"{what}: expected N or LO-HI, got {text!r}") from None
    if parts[1] < parts[0]:
        raise CorrtrackError(f"{what}: range {text!r} has LO > HI")
    return tuple(parts)


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise CorrtrackError(f"--size: expected WIDTHxHEIGHT (e.g. 768x576), got {text!r}") from None
    return w, h


@data_app.command("synth")
def synth_cmd(
    outdir: Path = typer.Argument(..., help="Folder to write the suite into (posetrack/, coco/, videos/, ...)."),
    preset: str = typer.Option("all", "--preset", "-p",
                               help="walk, crossing, crowd, reentry, fast, occluders, standing or all."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same knobs -> byte-identical ground truth."),
    sequences: Optional[int] = typer.Option(None, "--sequences", help="Sequences per preset (preset: 8)."),
    length: Optional[int] = typer.Option(None, "--length", help="Frames per sequence (preset: 150)."),
    people: Optional[str] = typer.Option(None, "--people", help="People per sequence: N or LO-HI."),
    lookalikes: Optional[int] = typer.Option(None, "--lookalikes",
                                             help="People who are a recoloured copy of another."),
    occlusion_frames: Optional[str] = typer.Option(None, "--occlusion-frames",
                                                   help="crossing: frames both stop, one hiding the other (N or LO-HI)."),
    reentry_gap: Optional[str] = typer.Option(None, "--reentry-gap", help="reentry: frames out of view (N or LO-HI)."),
    occluders: Optional[str] = typer.Option(None, "--occluders",
                                            help="Static occluders (poles, signs) per sequence (N or LO-HI)."),
    standing: Optional[str] = typer.Option(None, "--standing",
                                           help="People standing still the whole sequence, on top of --people "
                                           "(N or LO-HI)."),
    depth: Optional[str] = typer.Option(None, "--depth", help="Depth range people walk at, metres (LO-HI)."),
    speed: Optional[str] = typer.Option(None, "--speed", help="Walking speed range, m/s (LO-HI)."),
    fps: Optional[float] = typer.Option(None, "--fps", help="Frame rate motion is planned at (25)."),
    frame_step: Optional[int] = typer.Option(None, "--frame-step", help="Keep every k-th frame (frame dropping)."),
    size: Optional[str] = typer.Option(None, "--size", help="Frame size WIDTHxHEIGHT (768x576)."),
    min_height: Optional[float] = typer.Option(None, "--min-height",
                                               help="People shorter (px) become ignore regions."),
    brightness: Optional[float] = typer.Option(None, "--brightness", help="Slow brightness change amplitude (0.2)."),
    blur: Optional[float] = typer.Option(None, "--blur", help="Motion blur: exposure fraction of a frame (0.5)."),
    jpeg_quality: Optional[int] = typer.Option(None, "--jpeg-quality",
                                               help="Re-encode frames as JPEG (e.g. 30)."),
    shake: Optional[float] = typer.Option(None, "--shake", help="Camera shake amplitude, px."),
    people_from: Optional[Path] = typer.Option(None, "--people-from",
                                               help="COCO person-keypoints JSON with masks (default: shared test_coco)."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder of that file's images (default: beside it)."),
    background: Optional[list[Path]] = typer.Option(None, "--background",
                                                    help="Background video/frame folder/image (repeatable; default: shared vtest.avi)."),
    preview: bool = typer.Option(False, "--preview", help="Also render previews/ with the ground truth drawn."),
    frames: bool = typer.Option(False, "--frames", help="Also write the frames as JPEGs under images/val/."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Write a synthetic pose-tracking benchmark with exact ground truth, made from real people.

    Per sequence: videos/<seq>.mp4, posetrack/<seq>.json (PoseTrack 2018 GT: run
    `corrtrack eval OUTDIR/posetrack PRED_DIR`), coco/<seq>.json, manifests/<seq>.json.
    See docs/synth.md.
    """
    import sys

    from corrtrack.synth.suite import generate_suite

    overrides: dict = {}
    if sequences is not None:
        overrides["num_sequences"] = sequences
    if length is not None:
        overrides["num_frames"] = length
    if people is not None:
        overrides["people"] = parse_range(people, "--people")
    if lookalikes is not None:
        overrides["lookalikes"] = lookalikes
    if occlusion_frames is not None:
        overrides["occlusion_frames"] = parse_range(occlusion_frames, "--occlusion-frames")
    if reentry_gap is not None:
        overrides["reentry_gap"] = parse_range(reentry_gap, "--reentry-gap")
    if occluders is not None:
        overrides["occluders"] = parse_range(occluders, "--occluders")
    if standing is not None:
        overrides["standing"] = parse_range(standing, "--standing")
    if depth is not None:
        overrides["z_range"] = parse_range(depth, "--depth", float)
    if speed is not None:
        overrides["speed"] = parse_range(speed, "--speed", float)
    if size is not None:
        overrides["width"], overrides["height"] = parse_size(size)
    for key, value in (("fps", fps), ("frame_step", frame_step), ("min_height", min_height),
                       ("brightness", brightness), ("blur", blur), ("jpeg_quality", jpeg_quality), ("shake", shake)):
        if value is not None:
            overrides[key] = value
    summary = generate_suite(outdir, preset, seed=seed, overrides=overrides, people_file=people_from,
                             image_dir=images, backgrounds=background, preview=preview, frames=frames,
                             progress=not quiet and sys.stderr.isatty())
    _print_summary(summary, outdir)


def _print_summary(summary: dict, outdir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"synthetic suite '{summary['suite']}' (seed {summary['seed']}) in {outdir}",
                  title_justify="left")
    cols = ("preset", "sequences", "frames", "poses", "crossings", "occlusion frames", "exits", "re-entries")
    for c in cols:
        table.add_column(c, justify="left" if c == "preset" else "right")
    for name, p in summary["presets"].items():
        c = p["counts"]
        table.add_row(name, str(p["sequences"]), str(p["frames"]), str(c["annotated_poses"]), str(c["crossings"]),
                      str(c["occlusion_frames"]), str(c["exits"]), str(c["reentries"]))
    console = Console()
    console.print(table)
    frames = sum(p["frames"] for p in summary["presets"].values())
    console.print(f"{frames} frames in {summary['seconds']:.1f} s ({frames / max(summary['seconds'], 1e-9):.1f} "
                  f"frames/s); evaluate with: corrtrack eval {outdir / 'posetrack'} PRED_DIR")


@data_app.command("pseudolabel")
def pseudolabel_cmd(
    videos: list[Path] = typer.Argument(..., help="Videos, image folders or images to label."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder (annotations.json + images/)."),
    every_n: int = typer.Option(5, "--every-n", help="Label every N-th frame of each source."),
    min_score: float = typer.Option(0.3, "--min-score",
                                    help="Joints scoring below this are written as unlabelled (v = 0)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1 ... (default: CUDA if available)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Label frames with our detector + MoveNet and write a COCO person-keypoint dataset.

    Writes OUT/annotations.json and OUT/images/...: the input of
    `corrtrack train corr -a OUT/annotations.json -i OUT`.
    """
    import json
    import sys

    from corrtrack.io.video import open_source
    from corrtrack.train.pseudolabel import pseudolabel

    if every_n < 1:
        raise CorrtrackError(f"--every-n must be >= 1, got {every_n}")
    if not 0 <= min_score <= 1:
        raise CorrtrackError(f"--min-score must be in [0, 1], got {min_score}")
    if out.exists() and not out.is_dir():
        raise CorrtrackError(f"{out}: exists and is not a folder")
    for video in videos:  # every source readable before the models load and the first one is labelled
        open_source(video).close()
    path = pseudolabel(videos, out, every_n=every_n, min_score=min_score, device=device,
                       progress=not quiet and sys.stderr.isatty())
    data = json.loads(path.read_text())
    typer.echo(f"{path}: {len(data['images'])} frames, {len(data['annotations'])} people; train with: "
               f"corrtrack train corr -a {path} -i {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
