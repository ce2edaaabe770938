"""Generate a suite of synthetic sequences and write its files.

Layout of OUTDIR::

    suite.json                      what was generated, with per-preset event counts
    posetrack/<sequence>.json       PoseTrack 2018 ground truth (``corrtrack eval OUTDIR/posetrack PRED``)
    coco/<sequence>.json            COCO-17 ground truth with track_id (visibility 2 / 1 / 0)
    videos/<sequence>.mp4           the frames
    manifests/<sequence>.json       seed, knobs, people, background, events with frame numbers
    previews/<sequence>.mp4         with --preview: ground truth drawn over the frames
    images/val/<sequence>/*.jpg     with --frames: the frames, where the PoseTrack file names point

Sequence numbers are ``preset code * 1000 + index`` (walk 1001.., crossing
2001.., crowd 3001.., reentry 4001.., fast 5001.., occluders 6001..), so a
suite's sequences never collide.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from corrtrack.errors import CorrtrackError
from corrtrack.synth.backgrounds import Background
from corrtrack.synth.config import PRESETS, SUITES, SynthConfig
from corrtrack.synth.people import Cutout

GENERATOR_VERSION = 1


def default_sources() -> dict[str, list[Path]]:
    """The shared real data, when this checkout has it: COCO people and a background video.

    Only vtest.avi by default: its elevated outdoor view fits the ground-plane
    camera. The indoor one-by-one-person-detection.mp4 gives a clean empty
    scene too (``--background``), but people pasted there stand on the wall.
    """
    root = Path(os.environ.get("CORRTRACK_SHARED", Path(__file__).resolve().parents[2].parent / "shared")) / "data"
    return {"people": [root / "mmpose" / "coco" / "test_coco.json"],
            "backgrounds": [root / "opencv" / "vtest.avi"]}


@dataclass
class SequenceResult:
    name: str
    preset: str
    frames: int
    seconds: float
    files: dict[str, str]
    counts: dict


def suite_configs(suite: str, overrides: dict | None = None) -> list[tuple[str, int, SynthConfig]]:
    """(preset name, code, config) of every preset of ``suite``, with ``overrides`` applied."""
    if suite not in SUITES:
        raise CorrtrackError(f"synth: unknown preset {suite!r}; known: {', '.join(SUITES)}")
    out = []
    for name in SUITES[suite]:
        p = PRESETS[name]
        cfg = dataclasses.replace(p.config, **(overrides or {}))
        cfg.validate()
        out.append((name, p.code, cfg))
    return out


def write_sequence(outdir: Path, preset: str, code: int, index: int, cfg: SynthConfig, cutouts: list[Cutout],
                   background: Background, seed: int, preview: bool = False, frames: bool = False,
                   on_frame: Callable[[], None] | None = None) -> SequenceResult:
    """Generate sequence ``index`` of a preset and write all its files."""
    import time

    import cv2

    from corrtrack.io.atomic import atomic_path, write_json
    from corrtrack.io.posetrack import write_posetrack
    from corrtrack.io.video import VideoWriter
    from corrtrack.synth.gt import GroundTruth, sequence_name
    from corrtrack.synth.preview import draw_preview
    from corrtrack.synth.scene import build_scene, render_scene

    t0 = time.perf_counter()
    number = code * 1000 + index + 1
    name = sequence_name(number, preset)
    scene = build_scene(cfg, cutouts, background, seed, (code, index), name, number)
    gt = GroundTruth(scene)
    files = {"posetrack": f"posetrack/{name}.json", "coco": f"coco/{name}.json", "video": f"videos/{name}.mp4",
             "manifest": f"manifests/{name}.json"}
    if preview:
        files["preview"] = f"previews/{name}.mp4"
    if frames:
        files["frames"] = f"images/val/{name}"
    fps = cfg.output_fps
    writers = [VideoWriter(outdir / files["video"], fps)]
    if preview:
        writers.append(VideoWriter(outdir / files["preview"], fps))
    try:
        for j, image, truths in render_scene(scene):
            gt.add(j, truths)
            writers[0].write(image)
            if preview:
                hidden = gt.hidden_joints[-1]
                writers[1].write(draw_preview(image, gt.poses[-1], gt.frames[-1], hidden, gt.ids))
            if frames:
                path = outdir / gt.frames[-1].file_name
                with atomic_path(path, suffix=".jpg") as tmp:
                    cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
            if on_frame:
                on_frame()
        for w in writers:
            w.close()
    except BaseException:
        for w in writers:
            w.abort()
        raise
    seq = gt.posetrack()
    write_posetrack(outdir / files["posetrack"], seq, ground_truth=True)
    _write_json_fast(outdir / files["coco"], gt.coco())
    events = gt.events()
    manifest = {
        "name": name, "preset": preset, "generator_version": GENERATOR_VERSION,
        "seed": scene.seed, "plan_tries": scene.plan_tries,
        "knobs": cfg.knobs(), "frames": cfg.num_frames, "fps": fps, "size": [cfg.width, cfg.height],
        "background": background.describe(),
        "people": [{"track_id": a.track_id, "source": a.cutout.source, "cutout_sha256": a.cutout.digest(),
                    "lookalike_of": a.lookalike_of, "height_factor": round(a.plan.height_factor, 4),
                    "planned": a.plan.notes,
                    "turns": _turn_frames(scene.flips[i], cfg)}
                   for i, a in enumerate(scene.actors)],
        "events": events,
        "files": files,
    }
    if scene.occluders:  # a key of its own, so that manifests without occluders keep their bytes
        manifest["occluders"] = [o.describe(cfg.camera) for o in scene.occluders]
    write_json(outdir / files["manifest"], manifest, indent=1)
    return SequenceResult(name, preset, cfg.num_frames, time.perf_counter() - t0, files, events["counts"])


def _write_json_fast(path: Path, obj) -> None:
    """Atomic JSON with the C encoder (json.dump's streaming encoder is pure Python, ~5x slower)."""
    import json

    from corrtrack.io.atomic import atomic_open

    text = json.dumps(obj)
    with atomic_open(path, "w") as f:
        f.write(text)


def _turn_frames(flips, cfg: SynthConfig) -> list[int]:
    """Output frames at which a person is first drawn mirrored the other way."""
    changes = (flips[1:] != flips[:-1]).nonzero()[0] + 1
    return sorted({int(-(-k // cfg.frame_step)) for k in changes.tolist() if -(-k // cfg.frame_step) < cfg.num_frames})


def generate_suite(outdir: str | os.PathLike, suite: str = "all", seed: int = 0, overrides: dict | None = None,
                   people_file: str | os.PathLike | None = None, image_dir: str | os.PathLike | None = None,
                   backgrounds: list[str | os.PathLike] | None = None, preview: bool = False, frames: bool = False,
                   cache_dir: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """Generate every sequence of ``suite`` into ``outdir``; returns the suite summary (also suite.json)."""
    import time

    from tqdm import tqdm

    from corrtrack.io.atomic import write_json
    from corrtrack.synth.backgrounds import load_background
    from corrtrack.synth.people import load_cutouts

    configs = suite_configs(suite, overrides)
    outdir = Path(outdir)
    defaults = default_sources()
    people_file = Path(people_file) if people_file is not None else defaults["people"][0]
    bg_paths = [Path(b) for b in backgrounds] if backgrounds else defaults["backgrounds"]
    if people_file is None or not people_file.exists():
        raise CorrtrackError(f"{people_file}: people source not found; give a COCO person-keypoints file with masks "
                             "(--people-from)")
    names = [f"{c * 1000 + i + 1:06d}_mpiinew_{p}" for p, c, cfg in configs for i in range(cfg.num_sequences)]
    stale = sorted(p.name for p in (outdir / "posetrack").glob("*.json") if p.stem not in names) \
        if (outdir / "posetrack").is_dir() else []
    if stale:
        raise CorrtrackError(f"{outdir / 'posetrack'}: holds sequences this run would not write ({stale[0]}, ...); "
                             "use an empty OUTDIR so that the folder is one suite")
    for b in bg_paths:
        if not b.exists():
            raise CorrtrackError(f"{b}: background not found; give a video or image with --background")
    cutouts = load_cutouts(people_file, image_dir)
    if cache_dir is None:
        from corrtrack.models.cache import models_home

        cache_dir = models_home() / "synth" / "backgrounds"
    size = (configs[0][2].width, configs[0][2].height)
    bgs = {}
    for b in bg_paths:
        key = (str(b), size)
        if key not in bgs:
            bgs[key] = load_background(b, size, cache_dir)
    t0 = time.perf_counter()
    total = sum(cfg.num_sequences * cfg.num_frames for _, _, cfg in configs)
    results: list[SequenceResult] = []
    with tqdm(total=total, unit="frame", desc=f"synth {suite}", disable=not progress) as bar:
        for preset, code, cfg in configs:
            for i in range(cfg.num_sequences):
                if (cfg.width, cfg.height) != size:
                    raise CorrtrackError("synth: all presets of a suite must share one frame size")
                bg = bgs[(str(bg_paths[i % len(bg_paths)]), size)]
                bar.set_postfix_str(f"{preset} {i + 1}/{cfg.num_sequences}")
                results.append(write_sequence(outdir, preset, code, i, cfg, cutouts, bg, seed, preview, frames,
                                              on_frame=lambda: bar.update(1)))
    seconds = time.perf_counter() - t0
    per_preset = {}
    for preset, _, cfg in configs:
        rs = [r for r in results if r.preset == preset]
        counts: dict[str, int] = {}
        for r in rs:
            for k, v in r.counts.items():
                counts[k] = counts.get(k, 0) + v
        per_preset[preset] = {"sequences": len(rs), "frames": sum(r.frames for r in rs), "counts": counts}
    summary = {
        "suite": suite, "seed": seed, "generator_version": GENERATOR_VERSION,
        "size": list(size), "people_source": str(people_file), "usable_people": len(cutouts),
        "backgrounds": [bgs[(str(b), size)].describe() for b in bg_paths],
        "sequences": [{"name": r.name, "preset": r.preset, "frames": r.frames, "files": r.files, "counts": r.counts}
                      for r in results],
        "presets": per_preset,
    }
    write_json(outdir / "suite.json", summary, indent=1)
    summary["seconds"] = seconds  # kept out of suite.json: the same seed must give the same bytes
    return summary
