"""``corrtrack train corr``: self-supervised training of the correspondence network."""
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
    seed: int = typer.Option(0, help="Seed: same seed and data give the same model."),
    device: str = typer.Option("auto", help="auto, cpu, cuda."),
    workers: int = typer.Option(2, help="Data loading processes."),
    checkpoint_every: int = typer.Option(250, help="Write a checkpoint every N steps."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue from OUT/checkpoint.pt if it exists."),
    stop_after: Optional[int] = typer.Option(None, help="Stop after this global step (checkpointed)."),
) -> None:
    """Train on single images with person keypoints; the second image is a random affine warp.

    Writes OUT/checkpoint.pt, OUT/metrics.csv and, when done, OUT/corrnet.pt.
    Run under torchrun for several GPUs.
    """
    import dataclasses

    from corrtrack.errors import CorrtrackError
    from corrtrack.models.corrnet import CorrNetConfig
    from corrtrack.train.corr import CorrTrainConfig, train_corr

    if len(annotations) != len(images):
        raise CorrtrackError(f"{annotations[0]}: give one --images folder per --annotations file")
    if not resume and (out / "checkpoint.pt").exists():
        (out / "checkpoint.pt").unlink()
    net = dataclasses.replace(CorrNetConfig(), backbone=backbone, input_size=input_size)
    cfg = CorrTrainConfig(annotations=tuple(map(str, annotations)), images=tuple(map(str, images)), out_dir=str(out),
                          net=net, steps_siamese=steps_siamese, steps_refine=steps_refine, batch_size=batch_size,
                          lr=lr, seed=seed, device=device, workers=workers, checkpoint_every=checkpoint_every)
    path = train_corr(cfg, resume=resume, stop_after=stop_after)
    if path.is_file():
        typer.echo(f"model: {path}")
    else:
        typer.echo(f"checkpoint: {out / 'checkpoint.pt'} (not finished; run again to continue)")


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
