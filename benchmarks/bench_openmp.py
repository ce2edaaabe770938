"""vtest.avi end to end under torch's OpenMP wait settings, alone and beside a busy process.

    .venv/bin/python benchmarks/bench_openmp.py [--frames 40]

Each setting runs ``bench_speed.py --people 1`` in a fresh process (OpenMP reads
its environment once, when torch loads); "busy" starts a Python busy loop on
one core first, as another job sharing the machine would. Prints ms per frame
and FPS on vtest.avi; the table in ``corrtrack/openmp.py`` comes from here.
About 10 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
# Each child sees exactly one of these (inherited ones removed). An empty OMP_WAIT_POLICY is OpenMP's
# own default, and it tells bench_speed (corrtrack.openmp) that the wait was chosen: it adds no spin.
SETTINGS = {"PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
            "spin 2000 (corrtrack)": {"GOMP_SPINCOUNT": "2000"},
            "spin 20000": {"GOMP_SPINCOUNT": "20000"},
            "OpenMP default": {"OMP_WAIT_POLICY": ""}}


def vtest_ms(env: dict, frames: int, busy: bool, out: Path) -> dict:
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        subprocess.run([sys.executable, str(Path(__file__).with_name("bench_speed.py")), "--people", "1",
                        "--frames", str(frames), "--threads", "2", "--no-write", "--json", str(out)],
                       env={**{k: v for k, v in os.environ.items() if k not in WAIT_VARS}, **env},
                       check=True, capture_output=True)
    finally:
        if hog:
            hog.kill()
            hog.wait()
    return next(r for r in json.loads(out.read_text())["speed"] if r["input"] == "vtest.avi")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40)
    args = ap.parse_args()
    print("| OpenMP wait | machine | vtest.avi ms per frame | FPS |\n| --- | --- | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for busy in (False, True):
            for name, env in SETTINGS.items():
                row = vtest_ms(env, args.frames, busy, Path(tmp) / "r.json")
                print(f"| {name} | {'beside a busy process' if busy else 'alone'} | {row['total_ms']:.0f} | "
                      f"{row['fps']:.2f} |", flush=True)
                time.sleep(5)  # let the load settle between runs


if __name__ == "__main__":
    main()
