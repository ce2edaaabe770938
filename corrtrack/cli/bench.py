"""``corrtrack bench``: how fast the pipeline runs on this machine, and a small tracking-quality check."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from corrtrack.cli.track import CpuRuntime, cpu_runtime_option
from corrtrack.errors import CorrtrackError


def parse_counts(text: str | None, option: str = "--people") -> tuple[int, ...]:
    """"1,6,24" -> (1, 6, 24)."""
    if not text:
        return ()
    try:
        counts = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise CorrtrackError(f"{option}: expected comma-separated counts like 1,6,24, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise CorrtrackError(f"{option}: counts must be >= 1, got {text!r}")
    return counts


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench_command(
        frames: int = typer.Option(40, "--frames", min=2, help="Frames timed per input."),
        video: Optional[Path] = typer.Option(None, "--video",
                                             help="Video for the speed run (default: the shared vtest.avi)."),
        people: Optional[str] = typer.Option(None, "--people",
                                             help="Also synthetic scenes with these person counts, e.g. 1,6,24."),
        quality: bool = typer.Option(True, "--quality/--no-quality",
                                     help="Track a tiny synthetic suite with exact ground truth (corr vs oks)."),
        quality_frames: int = typer.Option(60, "--quality-frames", min=3, help="Frames per quality sequence."),
        quality_sequences: int = typer.Option(2, "--quality-sequences", min=1,
                                              help="Quality sequences per preset (crossing, fast)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the synthetic scenes."),
        device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda if available)."),
        threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch CPU threads (default: torch's)."),
        cpu_runtime: CpuRuntime = cpu_runtime_option(),
        detect_every: Optional[str] = typer.Option(None, "--detect-every",
                                                   help="Also time the video with the detector on every n-th "
                                                   "frame only, for each n given, e.g. 2,3."),
        no_refinement: bool = typer.Option(False, "--no-refinement",
                                           help="Also time the video tracked with the Siamese maps "
                                           "(corrtrack track --no-refinement)."),
        json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the results as JSON here."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress messages."),
    ) -> None:
        """Time every stage of the pipeline on a short vtest.avi clip and check tracking quality (a few minutes).

        Speed: end-to-end FPS and ms per frame for detect, pose, correspondence, association and I/O
        (default settings). Quality: MOTA / ID switches / mAP of corr vs oks on a tiny synthetic suite.
        """
        import sys

        from corrtrack.bench import BenchConfig, check_finite, format_report, run_bench

        if json_path is not None and json_path.is_dir():
            raise CorrtrackError(f"{json_path}: is a folder; --json takes a file path")
        config = BenchConfig(frames=frames, video=str(video) if video else None, people=parse_counts(people),
                             quality=quality, quality_frames=quality_frames, quality_sequences=quality_sequences,
                             seed=seed, device=device, threads=threads, cpu_runtime=cpu_runtime.value,
                             detect_every=parse_counts(detect_every, "--detect-every"), no_refinement=no_refinement)

        def log(msg: str) -> None:
            if not quiet:
                print(msg, file=sys.stderr, flush=True)

        report = run_bench(config, progress=not quiet and sys.stderr.isatty(), log=log)
        check_finite(report)
        typer.echo(format_report(report))
        if json_path is not None:
            from corrtrack.io.atomic import write_json

            write_json(json_path, report.to_dict(), indent=1)
            typer.echo(f"wrote {json_path}")
