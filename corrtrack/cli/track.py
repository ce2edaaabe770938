"""``corrtrack track INPUT``: pose estimation and tracking of every person in a video."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from corrtrack.errors import CorrtrackError
from corrtrack.pipeline.matching import DuplicateConfig  # numpy only: cheap to import for the defaults
from corrtrack.pipeline.pose import PoseConfig  # likewise
from corrtrack.pipeline.tracker import TrackerConfig  # likewise


class Similarity(str, Enum):
    corr = "corr"
    oks = "oks"
    iou = "iou"
    flow = "flow"
    reid = "reid"


class CpuRuntime(str, Enum):  # RunConfig.cpu_runtime
    onnx = "onnx"
    torchscript = "torchscript"


def cpu_runtime_option():
    """``--cpu-runtime``, the same in every command that runs the networks."""
    return typer.Option(CpuRuntime.onnx, "--cpu-runtime",
                        help="How the networks run on a CPU: ONNX Runtime (faster) or frozen TorchScript.")


def load_ground_truth(gt: Path, names: list[str], start: int, end: int | None):
    """GT sequences for the tracked ``names``: a PoseTrack file, a folder of them matched by name,
    or a synthetic-benchmark folder (its ``posetrack/``)."""
    from corrtrack.io.posetrack import read_posetrack, read_posetrack_dir

    if gt.is_file():
        seqs = [read_posetrack(gt)]
        if len(names) == 1:  # one GT file for one input: pair them whatever their names
            seqs[0].name = names[0]
    elif gt.is_dir():
        seqs = read_posetrack_dir(gt / "posetrack" if (gt / "posetrack").is_dir() else gt)
    else:
        raise CorrtrackError(f"{gt}: no such ground-truth file or folder")
    by_name = {s.name: s for s in seqs}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise CorrtrackError(f"{gt}: no ground truth for tracked sequence {missing[0]}")
    out = []
    for n in names:
        s = by_name[n]
        s.frames, s.poses = s.frames[start:end], s.poses[start:end]
        out.append(s)
    return out


def register(app: typer.Typer) -> None:
    @app.command("track")
    def track_command(
        input: Path = typer.Argument(..., help="A video, a folder of frames, a PoseTrack annotation file "
                                               "(its frames), or a folder of videos / PoseTrack files."),
        out_dir: Path = typer.Option(Path("out"), "-o", "--out", help="Output folder."),
        similarity: Similarity = typer.Option(Similarity.corr, "--similarity",
                                              help="How tracks and poses are compared."),
        threshold: Optional[float] = typer.Option(None, "--threshold",
                                                  help="Match threshold (default per similarity)."),
        no_recovery: bool = typer.Option(False, "--no-recovery", help="Do not recover missed people."),
        no_refinement: bool = typer.Option(False, "--no-refinement",
                                           help="Correspondences without the refinement module."),
        corr_prior: float = typer.Option(TrackerConfig.corr_prior, "--corr-prior", min=0.0,
                                         help="Weight each propagated joint's map by where the person went as a "
                                         "whole (sigma as a share of the person's size; 0: off)."),
        no_corr_oks: bool = typer.Option(False, "--no-corr-oks",
                                         help="corr: the paper's eq. 6 alone, without OKS of the propagated joints."),
        no_duplicate_removal: bool = typer.Option(False, "--no-duplicate-removal", help="Keep duplicate poses."),
        rematch: bool = typer.Option(DuplicateConfig.rematch, "--rematch/--no-rematch",
                                     help="Match a track whose match was removed as a duplicate again, among "
                                     "the people left."),
        duplicate_ratio: float = typer.Option(DuplicateConfig.ratio, "--duplicate-ratio", min=0.0, max=1.0,
                                              help="Share of a matched track's joints that must land on a second "
                                              "pose for it to be dropped as the same person's duplicate."),
        merge: bool = typer.Option(False, "--merge", help="Merge broken tracks at the end (paper eq. 8)."),
        render: bool = typer.Option(False, "--render", help="Also write an MP4 with skeletons and ids."),
        start: int = typer.Option(0, "--start", min=0, help="First frame (index in the source)."),
        end: Optional[int] = typer.Option(None, "--end", min=1, help="Stop before this frame."),
        keep_alive: Optional[int] = typer.Option(None, "--keep-alive", min=0,
                                                 help="Frames an unmatched track waits for its person "
                                                 "(default per similarity: corr 50, the others 25)."),
        tentative_keep_alive: int = typer.Option(TrackerConfig.tentative_keep_alive, "--tentative-keep-alive", min=0,
                                                 help="Frames a track matched fewer than 3 times waits (at most "
                                                 "--keep-alive): mostly one-off false detections."),
        recency_penalty: float = typer.Option(TrackerConfig.recency_penalty, "--recency-penalty", min=0.0,
                                              help="Matching order: score minus this per frame a track has "
                                              "not been matched (0: score alone)."),
        confirmed_first: bool = typer.Option(TrackerConfig.confirmed_first, "--confirmed-first/--any-order",
                                             help="Match tracks seen at least 3 times before newer ones, which "
                                             "get the people left (--any-order: score order alone)."),
        detect_every: int = typer.Option(TrackerConfig.detect_every, "--detect-every", min=1,
                                         help="Detect people on every n-th frame only and follow them by "
                                         "correspondences in between (faster; new people are found at the "
                                         "next detection frame)."),
        motion_prior: bool = typer.Option(TrackerConfig.motion_prior, "--motion-prior/--no-motion-prior",
                                          help="Also score a confirmed track whose person is hidden by OKS with its "
                                          "last pose moved on at its velocity."),
        last_box_iou: float = typer.Option(TrackerConfig.last_box_iou, "--last-box-iou", min=0.0, max=1.0,
                                           help="A confirmed track left unmatched takes a detection left over "
                                           "whose box overlaps its last box at least this much (0: off)."),
        appearance: float = typer.Option(TrackerConfig.appearance, "--appearance", min=0.0, max=1.0,
                                         help="A confirmed track whose person is hidden takes a detection left "
                                         "over that looks like its last view (cosine of crop embeddings, "
                                         "mutual best) at least this much (0: off)."),
        recovered_overlap_iou: float = typer.Option(TrackerConfig.recovered_overlap_iou, "--recovered-overlap-iou",
                                                    min=0.0, max=1.0,
                                                    help="A detection left over whose box overlaps a recovered "
                                                    "pose that continues a track at least this much starts no "
                                                    "track: it is the same person (0: off)."),
        reach: float = typer.Option(TrackerConfig.reach, "--reach", min=0.0,
                                    help="A track whose person has been hidden scores 0 against anyone farther "
                                    "than (1 + REACH x frames hidden) box heights from its last box (0: off)."),
        joint_threshold: float = typer.Option(TrackerConfig.output_joint_thresh, "--joint-threshold", min=0.0, max=1.0,
                                              help="Joints below this score are not written."),
        pose_model: str = typer.Option("auto", "--pose-model",
                                       help="auto (thunder on GPU, lightning on CPU), thunder, lightning, "
                                       "or a PoseNet file (corrtrack train pose)."),
        candidate_memory: int = typer.Option(PoseConfig.candidate_memory, "--candidate-memory", min=0,
                                             help="Frames a place where a low-score detector box was no person "
                                             "is not looked at again (faster; 0: estimate every box)."),
        eval_gt: Optional[Path] = typer.Option(None, "--eval",
                                               help="Evaluate against this ground truth (PoseTrack file or folder)."),
        workers: int = typer.Option(1, "--workers", min=1, help="Processes for a folder of videos."),
        ray_address: Optional[str] = typer.Option(
            None, "--ray", metavar="ADDRESS",
            help="Track a folder of videos as Ray tasks (pip install 'corrtrack\\[ray]'). ADDRESS goes to "
                 "ray.init: local (a new local cluster for this run), auto (the running cluster or $RAY_ADDRESS), "
                 "host:port or ray://host:10001."),
        ray_gpus: float = typer.Option(0.0, "--ray-gpus", min=0.0, help="GPUs each Ray task asks for."),
        force: bool = typer.Option(False, "--force", help="Track again sequences whose outputs are complete."),
        corr_weights: Optional[Path] = typer.Option(None, "--corr-weights",
                                                    help="Correspondence model file (default: the shipped one)."),
        corr_input_size: Optional[int] = typer.Option(None, "--corr-input-size", min=64,
                                                      help="Longer side of the correspondence network's input, a "
                                                      "multiple of 32 (default: the model's, 512)."),
        device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda if available)."),
        cpu_runtime: CpuRuntime = cpu_runtime_option(),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or timing table."),
    ) -> None:
        """Estimate the pose of every person in a video and track them with keypoint correspondences.

        Writes OUTDIR/posetrack/NAME.json (PoseTrack 2018), OUTDIR/coco/NAME.json (COCO results with
        track_id), OUTDIR/csv/NAME.csv and, with --render, OUTDIR/video/NAME.mp4.
        """
        import logging
        from dataclasses import replace

        from corrtrack.pipeline.run import RayConfig, RunConfig, discover_inputs, format_timings, track_many
        from corrtrack.pipeline.tracker import RecoveryConfig

        logging.basicConfig(level=logging.WARNING, format="corrtrack: warning: %(message)s")
        if end is not None and end <= start:
            raise CorrtrackError(f"--end {end} must be after --start {start}")
        seqs = discover_inputs(input)
        if eval_gt is not None:  # fail before hours of tracking, not after
            load_ground_truth(eval_gt, [s.name for s in seqs], start, end)
        from corrtrack.cli._frames import pose_config

        tracker = TrackerConfig(
            similarity=similarity.value, threshold=threshold, keep_alive=keep_alive,
            tentative_keep_alive=tentative_keep_alive,
            output_joint_thresh=joint_threshold, duplicate_removal=not no_duplicate_removal,
            duplicate=replace(DuplicateConfig(), rematch=rematch, ratio=duplicate_ratio),
            recovery=replace(RecoveryConfig(), enabled=not no_recovery), merge=merge,
            use_refinement=not no_refinement, corr_prior=corr_prior, corr_oks=not no_corr_oks, recency_penalty=recency_penalty,
            detect_every=detect_every, motion_prior=motion_prior, confirmed_first=confirmed_first,
            last_box_iou=last_box_iou, appearance=appearance, recovered_overlap_iou=recovered_overlap_iou,
            reach=reach)
        config = RunConfig(tracker=tracker, pose=replace(pose_config(pose_model), candidate_memory=candidate_memory),
                           render=render, start=start,
                           end=end, device=device, progress=not quiet,
                           corr_weights=str(corr_weights) if corr_weights else None, corr_input_size=corr_input_size,
                           cpu_runtime=cpu_runtime.value)
        ray = None if ray_address is None else RayConfig(address=ray_address, gpus_per_task=ray_gpus)
        results = track_many(seqs, out_dir, config, workers=workers, skip_complete=not force, ray=ray)
        for r in results:
            if r.error:
                typer.echo(f"{r.name}: not tracked ({r.error})", err=True)
                continue
            if r.skipped:
                typer.echo(f"{r.name}: outputs complete, skipped (--force to track again)")
                continue
            typer.echo(f"{r.name}: {r.frames} frames, {r.tracks} tracks, {r.poses} poses -> "
                       f"{r.outputs['posetrack'].parent.parent}" + (" (interrupted)" if r.interrupted else ""))
            if r.frames and not r.poses:
                typer.echo(f"{r.name}: no people found in {r.frames} frames; its outputs are written empty")
            if not quiet:
                typer.echo(format_timings(r.timings, r.frames, r.seconds))
        if any(r.interrupted for r in results):
            raise CorrtrackError("interrupted; the outputs hold the frames tracked so far", exit_code=130)
        failed = [r.name for r in results if r.error]
        if failed:
            raise CorrtrackError(f"{input}: {len(failed)} of {len(results)} sequences could not be tracked "
                                 f"({', '.join(failed)})")
        if eval_gt is not None:
            from corrtrack.cli.eval import print_report
            from corrtrack.eval.posetrack import evaluate
            from corrtrack.io.atomic import write_json
            from corrtrack.io.posetrack import read_posetrack
            from corrtrack.pipeline.run import output_path

            names = [s.name for s in seqs]
            gt = load_ground_truth(eval_gt, names, start, end)
            pred = [read_posetrack(output_path(out_dir, "posetrack", n)) for n in names]
            # MOT needs two labelled frames with people (poseval's rule); AP does not.
            tracking = all(sum(1 for f, p in g if f.is_labeled and len(p)) >= 2 for g in gt)
            if not tracking:
                typer.echo("note: a ground-truth sequence has fewer than 2 labelled frames with people; "
                           "reporting AP only (no MOTA)")
            result = evaluate(gt, pred, tracking=tracking, per_sequence=len(names) > 1)
            print_report(result)
            write_json(out_dir / "eval.json", result.to_dict(), indent=1)
            typer.echo(f"wrote {out_dir / 'eval.json'}")
