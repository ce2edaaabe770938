"""Speed of the whole pipeline: per-stage ms and FPS against the number of people, vtest.avi, memory, models.

    .venv/bin/python benchmarks/bench_speed.py [--frames 50] [--people 1,3,6,12,24] [--threads 2]
        [--device cpu] [--seed 0] [--json PATH] [--no-write]

Inputs, tracked end to end by the real pipeline with its default settings
(``corrtrack.bench.measure_speed``: NanoDet, MoveNet ``auto`` = lightning on a
CPU, correspondences with recovery and refinement):

* ``synthetic, N people``: one ``corrtrack data synth`` sequence per N with
  exactly N people (``--people N``; look-alikes above the distinct people of
  the source) wandering on the vtest.avi background, 768x576
  (``corrtrack.bench.people_scene``);
* vtest.avi at its native 768x576.

The first ``--frames`` frames of each are timed after 3 untimed warm-up
frames. Prints the table, the targets (>= 25 FPS on vtest.avi, tracking <= 15 %
of the per-frame time) and the model sizes; writes them between
``<!-- speed:start -->`` and ``<!-- speed:end -->`` in BENCHMARKS.md and the
plot docs/img/bench_speed.png (unless ``--no-write``). ``corrtrack bench`` is
the quick version of the same code.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PLOT = ROOT / "docs" / "img" / "bench_speed.png"
SECTION = "speed"
# A GPU run (--device cuda, or --from-json of one) has its own section and plot beside the CPU's.
GPU_PLOT, GPU_SECTION = ROOT / "docs" / "img" / "bench_speed_gpu.png", "speed-gpu"


def section(report, plot: Path) -> str:
    from corrtrack.bench import SPEED_COLUMNS, TARGET_FPS, markdown_table, speed_table, target_notes

    env = report.environment
    cmd, seconds, frames = env["command"], env["seconds"], report.speed[0].frames
    vers = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    ls, le = env["load_start"], env["load_end"]
    busy = max(ls[0], le[0]) > (env["cpus"] or 1)
    cols, rows = speed_table(report.speed)
    assert tuple(cols) == SPEED_COLUMNS
    real = [r for r in report.speed if r.people is None]
    gpu = env["device"] != "cpu"
    keep_alive = env.get("keep_alive", 25)  # older reports: 25, then the default
    tentative = (f" ({env['tentative_keep_alive']} for tracks matched fewer than 3 times)"
                 if "tentative_keep_alive" in env else "")
    runtime = {"onnx": "ONNX Runtime", "torchscript": "frozen TorchScript"}.get(env.get("cpu_runtime"))
    runtime = f"; the correspondence network on {runtime} (`--cpu-runtime`)" if runtime else ""
    lines = [
        "## Speed on a GPU: per stage, against the number of people" if gpu else
        "## Speed: per stage, against the number of people; memory; model sizes",
        "",
        f"* Date {env['date']}; {env['cpu']}, {env['cpus']} CPUs, {env['system']} {env['machine']}; device "
        f"{env['device']}" + (f" ({env['gpu']})" if env.get("gpu") else "") + f", torch {env['torch_threads']} "
        # reports before 2026-11-26 recorded only OMP_WAIT_POLICY
        f"threads, {env.get('openmp') or 'OMP_WAIT_POLICY=' + env.get('omp_wait_policy', '?')}; "
        f"Python {env['python']}; {vers}.",
        f"* Command: `{cmd}` ({seconds / 60:.1f} min)"
        + (f"; this section and the plot written from its JSON by `{env['rendered_by']}`" if env.get("rendered_by")
           else "") + f". {frames} frames timed per input after {env.get('warmup', 3)} untimed warm-up frames"
        + (" (on a GPU the whole input is tracked once first: cuDNN builds its kernels the first time it "
           "sees each batch shape, ~2 s per shape on an H100; `corrtrack/models/buckets.py`)." if gpu else "."),
        f"* Load average (1 / 5 / 15 min) at the start {ls[0]:.1f} / {ls[1]:.1f} / {ls[2]:.1f}, at the end "
        f"{le[0]:.1f} / {le[1]:.1f} / {le[2]:.1f}."
        + ("" if gpu else " Times on this shared machine vary by up to ~1.5x between runs hours apart; compare "
           "rows of one run.")
        + (" torch's OpenMP threads spin briefly before they sleep (GOMP_SPINCOUNT=2000, what `corrtrack` "
           "sets, `corrtrack/openmp.py`); with OMP_WAIT_POLICY=PASSIVE (no spin, used for the tables before "
           "2026-11-26 12:00) vtest.avi took 249 instead of 204 ms per frame alone, 334 instead of 375 beside a busy "
           "process (`benchmarks/bench_openmp.py`)."
           if "GOMP_SPINCOUNT=2000" in env.get("openmp", "") else "")
        + (f" **The {env['cpus']} CPUs were shared with other jobs (load above {env['cpus']}): the wall "
           "times are inflated; the CPU ms column much less so.**" if busy else ""),
        "* Inputs: `synthetic, N people` = `corrtrack data synth -p crowd --people N --depth 4.5-13` (one sequence, "
        "look-alikes above the source's distinct people) on the vtest.avi background at 768×576: people wander "
        "between random points and stay in view; vtest.avi at its native 768×576"
        + ("; `vtest.avi, --detect-every N`: the same with the detector on every N-th frame only "
           "(`TrackerConfig.detect_every`; in between, the people of the previous frame are followed by "
           "correspondences and their poses re-estimated)" if any(", --detect-every" in r.input for r in real)
           else "")
        + ("; `vtest.avi, --no-refinement`: the same tracked with the Siamese affinity maps "
           "(`TrackerConfig.use_refinement` off)" if any(", --no-refinement" in r.input for r in real) else "")
        + ". Pipeline defaults: NanoDet "
        f"(auto input 416 here, default thresholds), MoveNet auto ({'thunder on a GPU' if gpu else 'lightning on a CPU'}), correspondence similarity with recovery and "
        f"refinement, keep-alive {keep_alive}{tentative}{runtime}.",
        "* Stages, ms per frame: detect; pose (MoveNet on every box, recovery re-estimates included); "
        "correspondence (the correspondence network's features of every frame and the propagation of every live "
        "track, refinement included); association (similarities, greedy matching, duplicate removal); io (decoding "
        "the video, spooling, writing the PoseTrack / COCO / CSV files); other (the rest of the wall time: OKS-NMS, "
        "bookkeeping). They add up to `total ms`, the end-to-end wall time per frame; FPS = 1000 / total. "
        "detected/frame = boxes the detector passed to the pose network, per frame tracked (its low-score "
        "candidates included, which the pose step keeps only where it finds a confident person"
        + (f"; a candidate at a place where one was rejected in the last {env['candidate_memory']} frames is "
           "not passed, `PoseConfig.candidate_memory`" if env.get("candidate_memory") else "")
        + "); propagated/frame = track poses the "
        "correspondence network moved to each frame (every live track, kept-alive ones included). tracking % = (correspondence + association) / "
        "total. CPU ms = CPU time of the process (all threads) per frame: it hardly grows when other jobs share the "
        "cores, so on an otherwise idle machine the wall time per frame would lie between CPU ms / threads and "
        "CPU ms. peak RSS = resident memory peak of the process while that input ran (models and libraries "
        "included).",
        "",
        markdown_table(cols, rows),
        "",
        "**Targets** (issue 8; set for 2 CPU cores, shown here for comparison):" if gpu else
        "**Targets** (issue 8, 2 CPU cores):",
        "",
        *(f"* {n}" for n in target_notes(report)),
    ]
    threads = env["torch_threads"] if env["device"] == "cpu" else None
    for r in real:
        if threads and r.cpu_ms == r.cpu_ms:
            lines.append(f"* {r.input} on an otherwise idle machine, from its CPU time ({r.cpu_ms:.0f} ms per frame, "
                         f"{threads} threads): between {1000 / r.cpu_ms:.1f} and {1000 * threads / r.cpu_ms:.1f} "
                         f"FPS, still {TARGET_FPS * r.cpu_ms / (1000 * threads):.1f}× short of {TARGET_FPS:g} FPS "
                         "at best.")
    for r in real:
        order = sorted(r.stage_ms.items(), key=lambda kv: -kv[1])
        lines.append(f"* Where the time goes on {r.input}: "
                     + ", ".join(f"{s} {v:.0f} ms ({100 * v / r.total_ms:.0f} %)" for s, v in order if v > 0)
                     + f". Detector + pose alone: {r.stage_ms['detect'] + r.stage_ms['pose']:.0f} ms per frame "
                     f"({1000 / (r.stage_ms['detect'] + r.stage_ms['pose']):.1f} FPS if tracking cost nothing).")
    synth = sorted((r for r in report.speed if r.people is not None), key=lambda r: r.people)
    if len(synth) >= 2 and synth[-1].propagated > synth[0].propagated:
        lo, hi = synth[0], synth[-1]
        slope = (hi.stage_ms["correspondence"] - lo.stage_ms["correspondence"]) / (hi.propagated - lo.propagated)
        lines.append(f"* From the {lo.input[len('synthetic, '):]} row to the {hi.input[len('synthetic, '):]} row: "
                     f"correspondence +{slope:.0f} ms per extra propagated track per frame on top of "
                     f"{lo.stage_ms['correspondence']:.0f} ms at {lo.propagated:.1f} propagated/frame (mostly the "
                     f"per-frame features); pose {hi.stage_ms['pose'] / hi.detected:.0f} ms per box at "
                     f"{hi.detected:.1f} boxes per frame; detect {min(r.stage_ms['detect'] for r in synth):.0f}–"
                     f"{max(r.stage_ms['detect'] for r in synth):.0f} ms whatever the number of people.")
    lines += [
        "* What limits it: the correspondence stage runs the shipped correspondence network's Siamese branch on "
        "a letterbox of every frame, longer side 512 and fitted to its aspect (512×384 on 4:3 video; stride 4: "
        "128×96 feature maps), whatever the number of people, "
        "then the refinement module on 17 full-size maps per live track, tracks kept alive for up to "
        f"{keep_alive} frames{tentative} "
        "after their person was last matched included: a fixed cost per frame plus one that grows with the "
        "number of tracks. The pose stage grows with the detected people (one MoveNet crop each).",
        "",
        "**Models** (files on disk; parameters of the loaded `nn.Module`)",
        "",
        markdown_table(("model", "role", "file", "MiB", "parameters (M)", "used by default here"),
                       [[m.name, m.role, f"`{_rel(m.path)}`", f"{m.bytes / 2 ** 20:.1f}", f"{m.params / 1e6:.2f}",
                         "yes" if m.used else "no"] for m in report.models], left=3),
        "",
        f"![FPS and per-stage time against the number of people]({_rel(plot)})",
        "",
        "The quick version for any machine: `corrtrack bench` (a 40-frame vtest.avi clip and a tiny synthetic "
        "suite for corr vs oks; `--people 1,6,24` adds scaling rows, `--json PATH` saves the numbers)."
        + (" `--device cuda` runs the same on a GPU (the next section, measured on a lent machine)." if
           env["device"] == "cpu" else ""),
    ]
    return "\n".join(lines)


def _rel(p) -> str:
    try:
        return Path(p).resolve().relative_to(ROOT).as_posix()
    except ValueError:
        home = Path.home()
        try:
            return "~/" + Path(p).resolve().relative_to(home).as_posix()
        except ValueError:
            return str(p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=50, help="frames timed per input")
    ap.add_argument("--people", default="1,3,6,12,24", help="person counts of the synthetic scenes")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (the target is for 2 cores)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic scenes")
    ap.add_argument("--video", default=None, help="the real video (default: the shared vtest.avi)")
    ap.add_argument("--cpu-runtime", choices=("onnx", "torchscript"), default="onnx",
                    help="how the correspondence network runs on a CPU (RunConfig.cpu_runtime)")
    ap.add_argument("--detect-every", default="2,3",
                    help="also time the video with the detector on every n-th frame only, for each n ('' for none)")
    ap.add_argument("--no-refinement", action="store_true",
                    help="also time the video tracked with the Siamese maps (TrackerConfig.use_refinement off)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--plot", type=Path, default=PLOT)
    ap.add_argument("--no-write", action="store_true", help="only print; leave BENCHMARKS.md and the plot alone")
    ap.add_argument("--from-json", type=Path, default=None,
                    help="do not measure: print and write what an earlier run saved with --json")
    args = ap.parse_args()
    from corrtrack.openmp import set_openmp_defaults

    set_openmp_defaults()  # what the corrtrack command runs with; before torch is imported

    from corrtrack.bench import (BenchConfig, BenchReport, check_finite, format_report, plot_speed, run_bench,
                                 write_marked_section)
    from corrtrack.cli.bench import parse_counts

    if args.from_json:
        import json

        report = BenchReport.from_dict(json.loads(args.from_json.read_text(encoding="utf-8")))
        report.environment["rendered_by"] = " ".join(["python benchmarks/bench_speed.py", *sys.argv[1:]])
    else:
        config = BenchConfig(frames=args.frames, people=parse_counts(args.people), quality=False, seed=args.seed,
                             device=args.device, threads=args.threads, video=args.video,
                             cpu_runtime=args.cpu_runtime, detect_every=parse_counts(args.detect_every,
                                                                                       "--detect-every"),
                             no_refinement=args.no_refinement)
        t0 = time.perf_counter()
        report = run_bench(config, progress=sys.stderr.isatty(), log=lambda m: print(m, flush=True))
        report.environment["seconds"] = time.perf_counter() - t0
        report.environment["command"] = " ".join(["python benchmarks/bench_speed.py", *sys.argv[1:]])
    check_finite(report)
    print(format_report(report))
    if args.json:
        from corrtrack.io.atomic import write_json

        write_json(args.json, report.to_dict(), indent=1)
        print(f"wrote {args.json}")
    if not args.no_write:
        env = report.environment
        on_gpu = env["device"] != "cpu"
        plot = GPU_PLOT if on_gpu and args.plot == PLOT else args.plot
        where = f"{env['gpu']}" if on_gpu else f"{env['cpu']}, {env['torch_threads']} threads"
        plot_speed(report.speed, plot, f"corrtrack end to end, {where} "
                   f"({report.speed[0].frames} frames per input; load average {env['load_start'][0]:.1f} → "
                   f"{env['load_end'][0]:.1f} on {env['cpus']} CPUs)")
        name = GPU_SECTION if on_gpu else SECTION
        write_marked_section(ROOT / "BENCHMARKS.md", name, section(report, plot))
        print(f"wrote {plot} and the {name} section of {ROOT / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
