"""``corrtrack eval GT_DIR PRED_DIR``: the PoseTrack evaluation (AP + CLEAR-MOT)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from corrtrack.errors import CorrtrackError


def load_pairs(gt_dir: Path, pred_dir: Path):
    """GT sequences of ``gt_dir`` (sorted by name) and the prediction file of the same name for each."""
    from corrtrack.io.posetrack import read_posetrack, read_posetrack_dir

    gt = read_posetrack_dir(gt_dir)
    if not pred_dir.is_dir():
        raise CorrtrackError(f"{pred_dir}: {'no such folder' if not pred_dir.exists() else 'not a folder'}")
    files = {p.stem: p for p in pred_dir.glob("*.json")}
    names = {g.name for g in gt}
    for g in gt:
        if g.name not in files:
            raise CorrtrackError(f"{pred_dir / (g.name + '.json')}: no prediction file for ground-truth sequence "
                                 f"{g.name}")
    for name in sorted(set(files) - names):
        raise CorrtrackError(f"{files[name]}: prediction for sequence {name}, which has no ground truth in {gt_dir}")
    return gt, [read_posetrack(files[g.name]) for g in gt]


def _fmt(v: float | None) -> str:
    return "-" if v is None or v != v else f"{v:.1f}"


def print_report(result, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    from corrtrack.eval.posetrack import GROUPS

    console = console or Console()
    groups = [g for g, _ in GROUPS]
    table = Table(title="PoseTrack evaluation (official poseval definitions)", title_justify="left")
    table.add_column("")
    for g in groups + ["Total"]:
        table.add_column(g, justify="right")
    ap = result.ap
    table.add_row("AP", *[_fmt(v) for v in ap.groups().values()], _fmt(ap.mAP))
    m = result.mot
    if m is not None:
        table.add_row("MOTA", *[_fmt(v) for v in m.groups().values()], _fmt(m.MOTA))
    console.print(table)
    if m is not None:
        console.print(f"MOTA {_fmt(m.MOTA)}  MOTP {_fmt(m.MOTP)}  Prec {_fmt(m.Prec)}  Rec {_fmt(m.Rec)}")
    s = result.stats
    console.print(f"{s['sequences']} sequences, {s['evaluated_frames']} of {s['frames']} frames evaluated "
                  f"(GT frames with people), {s['gt_poses']} GT poses, {s['predicted_poses']} predicted poses "
                  f"in them")
    if result.mot is not None:
        c = result.mot.totals()
        console.print(f"summed over joints: IDSW {c['num_switches']}  misses {c['num_misses']}  "
                      f"FP {c['num_false_positives']}  GT joints {c['num_objects']}  matched {c['num_detections']}")
    if result.per_sequence:
        seq = Table(title="per sequence", title_justify="left")
        for col in ["sequence", "mAP"] + (["MOTA", "IDSW", "misses", "FP"] if result.mot is not None else []):
            seq.add_column(col, justify="left" if col == "sequence" else "right")
        for name, r in result.per_sequence.items():
            row = [name, _fmt(r["ap"].mAP)]
            if r.get("mot") is not None:
                t = r["mot"].totals()
                row += [_fmt(r["mot"].MOTA), str(t["num_switches"]), str(t["num_misses"]),
                        str(t["num_false_positives"])]
            seq.add_row(*row)
        console.print(seq)


def print_id_report(result, console=None) -> None:
    """IDF1 / IDP / IDR and keypoint HOTA (``corrtrack.eval.idmetrics``), totals and per sequence."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    i, h = result.id, result.hota
    console.print(f"IDF1 {_fmt(i.IDF1)}  IDP {_fmt(i.IDP)}  IDR {_fmt(i.IDR)}   (summed over joints: "
                  + "  ".join(f"{k.upper()} {v}" for k, v in i.totals().items()) + ")")
    console.print(f"HOTA {_fmt(h.HOTA)}  DetA {_fmt(h.DetA)}  AssA {_fmt(h.AssA)}  LocA {_fmt(h.LocA)}   "
                  "(keypoint HOTA as PoseTrack21 defines it)")
    if result.per_sequence:
        seq = Table(title="identity metrics per sequence", title_justify="left")
        for col in ("sequence", "IDF1", "IDP", "IDR", "HOTA", "DetA", "AssA"):
            seq.add_column(col, justify="left" if col == "sequence" else "right")
        for name, r in result.per_sequence.items():
            i, h = r["id"], r["hota"]
            seq.add_row(name, *[_fmt(v) for v in (i.IDF1, i.IDP, i.IDR, h.HOTA, h.DetA, h.AssA)])
        console.print(seq)


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_command(
        gt_dir: Path = typer.Argument(..., help="Folder of ground-truth PoseTrack files, one *.json per sequence."),
        pred_dir: Path = typer.Argument(..., help="Folder with a prediction file of the same name for each."),
        json_out: Optional[Path] = typer.Option(None, "--json", help="Also write all numbers to this JSON file."),
        no_tracking: bool = typer.Option(False, "--no-tracking", help="Only per-joint AP (no MOTA)."),
        per_sequence: bool = typer.Option(False, "--per-sequence", help="Also report each sequence."),
        id_metrics: bool = typer.Option(False, "--id-metrics",
                                        help="Also IDF1 / IDP / IDR and keypoint HOTA (PoseTrack21)."),
    ) -> None:
        """PoseTrack evaluation: per-joint AP (PCKh@0.5) and CLEAR-MOT MOTA, equal to the official poseval.

        Files may be PoseTrack 2018 (images/annotations) or 2017 (annolist); prediction frames are paired with GT frames by position. See docs/evaluation.md.
        """
        from corrtrack.eval.posetrack import evaluate
        from corrtrack.io.atomic import write_json

        if id_metrics and no_tracking:
            raise CorrtrackError("--id-metrics: identity metrics need tracking; leave out --no-tracking")
        gt, pred = load_pairs(gt_dir, pred_dir)
        result = evaluate(gt, pred, tracking=not no_tracking, per_sequence=per_sequence)
        print_report(result)
        numbers = result.to_dict()
        if id_metrics:
            from corrtrack.eval.idmetrics import evaluate_id_metrics

            ids = evaluate_id_metrics(gt, pred, per_sequence=per_sequence)
            print_id_report(ids)
            extra = ids.to_dict()
            for name, values in extra.pop("per_sequence", {}).items():
                numbers.setdefault("per_sequence", {}).setdefault(name, {}).update(values)
            numbers.update(extra)
        if json_out is not None:
            write_json(json_out, numbers, indent=1)
            typer.echo(f"wrote {json_out}")
