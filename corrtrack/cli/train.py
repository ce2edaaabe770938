"""``corrtrack train corr``: self-supervised training of the correspondence network.
``corrtrack train pose``: the paper's two-stage pose network (PoseNet), from labels or a teacher."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

train_app = typer.Typer(help="Train models.", no_args_is_help=True)


@train_app.command("corr")
def corr_cmd(
    annotations: List[Path] = typer.Option(..., "--annotations", "-a",
                                           help="COCO-format person keypoint file (repeat for several)."),
    images: List[Path] = typer.Option(..., "--images", "-i", help="Image folder of each annotation file, in order."),
    out: Path = typer.Option(Path("out/train_corr"), "--out", "-o", help="Output folder (checkpoint, metrics, model)."),
    backbone: str = typer.Option("mobilenetv2", help="mobilenetv2 (ImageNet init) or bninception (random init)."),
    input_size: int = typer.Option(512, help="Letterboxed input size (square canvas)."),
    steps_siamese: int = typer.Option(3000, help="Steps of the Siamese stage."),
    steps_refine: int = typer.Option(1500, help="Steps of the refinement stage (Siamese frozen)."),
    batch_size: int = typer.Option(8, help="Images per step and process."),
    lr: float = typer.Option(1e-3, help="Base learning rate (x0.1 after 75% of each stage)."),
    refine_sigma: float = typer.Option(1.0, "--refine-sigma",
                                       help="Target Gaussian of the refinement stage, in feature cells."),
    refine_channels: int = typer.Option(32, "--refine-channels", min=4,
                                        help="Width of the refinement module (its CPU cost per person grows with "
                                             "it; docs/models/corrnet.md compares 32, 64 and 128)."),
    refine_prior: bool = typer.Option(False, "--refine-prior/--no-refine-prior",
                                      help="Give the refinement a learnt motion prior: each joint's refined map "
                                           "is weighted by a Gaussian (its own learnt width) around where the "
                                           "person's joints went as a whole."),
    refine_prior_motion: str = typer.Option("shift", "--refine-prior-motion",
                                            help="With --refine-prior: the body's motion is its joints' median "
                                                 "shift (shift) or an affine fit (affine: follows turns and flips)."),
    init_from: Optional[Path] = typer.Option(None, "--init-from",
                                             help="Start from this corrnet.pt's Siamese weights (everything but "
                                                  "the refinement); e.g. with --steps-siamese 0 to train only a "
                                                  "new refinement."),
    temporal_prob: float = typer.Option(0.0, "--temporal-prob",
                                        help="Share of samples that are two labelled frames of one video "
                                             "(images need 'source' + 'frame_index', as `corrtrack data "
                                             "pseudolabel` writes); 0 = the paper's warps only."),
    temporal_max_frames: int = typer.Option(12, "--temporal-max-frames",
                                            help="Farthest apart two frames of a real pair may be."),
    occlude_prob: float = typer.Option(0.0, "--occlude-prob", min=0.0, max=1.0,
                                       help="Share of samples whose second image gets a person from another "
                                            "frame pasted over one of its people (occlusion by a passer-by)."),
    distract_prob: float = typer.Option(0.0, "--distract-prob", min=0.0, max=1.0,
                                        help="Refinement stage: share of joints whose affinity map gets a second, "
                                             "false peak (another person's same joint or the mirrored joint) "
                                             "that the refinement must remove."),
    seed: int = typer.Option(0, help="Seed: same seed and data give the same model."),
    device: str = typer.Option("auto", help="auto, cpu, cuda."),
    workers: int = typer.Option(2, help="Data loading processes."),
    checkpoint_every: int = typer.Option(250, help="Write a checkpoint every N steps."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue from OUT/checkpoint.pt if it exists."),
    stop_after: Optional[int] = typer.Option(None, help="Stop after this global step (checkpointed)."),
) -> None:
    """Train on single images with person keypoints; the second image is a random affine warp
    (or, with --temporal-prob, another labelled frame of the same video).

    Writes OUT/checkpoint.pt, OUT/metrics.csv and, when done, OUT/corrnet.pt.
    Run under torchrun for several GPUs.
    """
    import dataclasses

    from corrtrack.errors import CorrtrackError
    from corrtrack.models.corrnet import CorrNetConfig
    from corrtrack.train.corr import CorrTrainConfig, train_corr

    if len(annotations) != len(images):
        raise CorrtrackError(f"{annotations[0]}: give one --images folder per --annotations file")
    if not refine_sigma > 0:
        raise CorrtrackError(f"--refine-sigma: must be > 0, got {refine_sigma}")
    if init_from is not None and not init_from.is_file():
        raise CorrtrackError(f"{init_from}: --init-from model not found")
    if not resume and (out / "checkpoint.pt").exists():
        (out / "checkpoint.pt").unlink()
    # With --init-from every Siamese weight is overwritten: loading ImageNet weights first would be wasted.
    net = dataclasses.replace(CorrNetConfig(), backbone=backbone, input_size=input_size,
                              refine_channels=refine_channels, refine_prior=refine_prior,
                              refine_prior_motion=refine_prior_motion,
                              pretrained=init_from is None)
    cfg = CorrTrainConfig(annotations=tuple(map(str, annotations)), images=tuple(map(str, images)), out_dir=str(out),
                          net=net, steps_siamese=steps_siamese, steps_refine=steps_refine, batch_size=batch_size,
                          lr=lr, refine_sigma=refine_sigma, init_from=str(init_from) if init_from else "",
                          temporal_prob=temporal_prob, temporal_max_frames=temporal_max_frames,
                          occlude_prob=occlude_prob, distract_prob=distract_prob, seed=seed,
                          device=device, workers=workers, checkpoint_every=checkpoint_every)
    path = train_corr(cfg, resume=resume, stop_after=stop_after)
    if path.is_file():
        typer.echo(f"model: {path}")
    else:
        typer.echo(f"checkpoint: {out / 'checkpoint.pt'} (not finished; run again to continue)")


@train_app.command("pose")
def pose_cmd(
    annotations: List[Path] = typer.Option([], "--annotations", "-a",
                                           help="COCO-format keypoint file, PoseTrack file or PoseTrack folder "
                                                "(repeat for several)."),
    images: List[Path] = typer.Option([], "--images", "-i",
                                      help="Folder the image paths of each --annotations are relative to, in order."),
    teacher: Optional[str] = typer.Option(None, "--teacher",
                                          help="Learn from a teacher's labels on unlabelled --videos: "
                                               "movenet-thunder or movenet-lightning (with our NanoDet boxes)."),
    videos: List[Path] = typer.Option([], "--videos", help="Videos / frame folders for --teacher (repeat)."),
    every_n: int = typer.Option(5, "--every-n", min=1, help="With --teacher: label every N-th frame."),
    out: Path = typer.Option(Path("out/train_pose"), "--out", "-o",
                             help="Output folder (checkpoint, metrics, posenet.pt; teacher/ labels)."),
    layout: Optional[str] = typer.Option(None, help="Joints to predict: coco17 (default) or posetrack18. "
                                                    "Data in the other layout is mapped by joint name."),
    init: Optional[Path] = typer.Option(None, "--init", help="Start from this PoseNet file (e.g. the COCO model "
                                        "when fine-tuning on PoseTrack); its size options are used."),
    width: float = typer.Option(1.0, help="Channel multiplier (1.0 = BN-Inception; 0.25-0.5 for CPU experiments)."),
    input_width: int = typer.Option(288, help="Crop width (multiple of 32)."),
    input_height: int = typer.Option(384, help="Crop height (multiple of 32)."),
    steps: int = typer.Option(20000, min=1, help="Training steps."),
    batch_size: int = typer.Option(32, min=1, help="Crops per step and process."),
    lr: float = typer.Option(1e-3, help="Base learning rate (x0.1 after 75% of the steps)."),
    warmup_steps: int = typer.Option(200, min=0, help="Linear learning-rate warm-up steps."),
    no_augment: bool = typer.Option(False, "--no-augment", help="No flip / rotation / scale / colour jitter."),
    amp: bool = typer.Option(True, "--amp/--no-amp", help="Mixed precision on a GPU."),
    seed: int = typer.Option(0, help="Seed: same seed and data give the same model."),
    device: str = typer.Option("auto", help="auto, cpu, cuda."),
    workers: int = typer.Option(2, min=0, help="Data loading processes."),
    checkpoint_every: int = typer.Option(500, min=1, help="Write a checkpoint every N steps."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue from OUT/checkpoint.pt if it exists."),
    stop_after: Optional[int] = typer.Option(None, help="Stop after this global step (checkpointed)."),
) -> None:
    """Train the two-stage BN-Inception pose network (heatmaps + offsets) on person crops.

    Paper recipe: COCO first (--layout coco17), then PoseTrack as a second run
    (--layout posetrack18 --init FIRST_OUT/posenet.pt). Without labels:
    --teacher movenet-thunder --videos V1 --videos V2 labels every --every-n-th
    frame into OUT/teacher/ and learns from it. Writes OUT/checkpoint.pt,
    OUT/metrics.csv and, when done, OUT/posenet.pt (use it with
    `corrtrack track --pose-model OUT/posenet.pt`). Run under torchrun for several GPUs.
    """
    import dataclasses
    import os

    from corrtrack.errors import CorrtrackError
    from corrtrack.models.posenet import PoseNet, PoseNetConfig
    from corrtrack.train.pose import AugmentConfig, PoseTrainConfig, teacher_dataset, train_pose

    if len(annotations) != len(images):
        raise CorrtrackError(f"{annotations[0] if annotations else '--images'}: give one --images folder per "
                             "--annotations file")
    if videos and teacher is None:
        raise CorrtrackError(f"{videos[0]}: --videos needs --teacher (they have no labels)")
    data, roots = list(map(str, annotations)), list(map(str, images))
    if teacher is not None:
        ann = teacher_dataset(videos, out / "teacher", teacher, every_n, None if device == "auto" else device)
        data.append(str(ann))
        roots.append(str(ann.parent))
    if not data:
        raise CorrtrackError("train pose: give --annotations and --images, or --teacher and --videos")
    if init is not None:
        net = PoseNet.load(init).config
        if layout is not None:
            net = dataclasses.replace(net, layout=layout)
    else:
        net = PoseNetConfig(layout=layout or "coco17", width=width, input_width=input_width,
                            input_height=input_height)
    if not resume and (out / "checkpoint.pt").exists():
        (out / "checkpoint.pt").unlink()
    cfg = PoseTrainConfig(data=tuple(data), images=tuple(roots), out_dir=str(out), net=net,
                          augment=AugmentConfig.none() if no_augment else AugmentConfig(),
                          init=str(init) if init else None, steps=steps, batch_size=batch_size, lr=lr,
                          warmup_steps=warmup_steps, unlabelled_weight=1.0 if teacher else 0.0, amp=amp, seed=seed,
                          device=device, workers=workers, checkpoint_every=checkpoint_every)
    path = train_pose(cfg, resume=resume, stop_after=stop_after)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, one process reports
        return
    if path.is_file():
        typer.echo(f"model: {path}")
    else:
        typer.echo(f"checkpoint: {out / 'checkpoint.pt'} (not finished; run again to continue)")


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
