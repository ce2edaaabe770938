"""How torch's OpenMP threads wait for work: set once, before torch is imported.

Between two parallel regions an OpenMP thread either spins (burns its core,
ready at once) or sleeps (the OS wakes it, slower). The pipeline runs many
short regions - a MoveNet crop, a correspondence propagation - so waking is a
real cost, but a spinning thread steals the core from anyone else. Measured on
this 2-core machine, vtest.avi end to end, 2 torch threads
(``benchmarks/bench_openmp.py``: bench_speed, 40 frames; two runs an hour
apart, ms per frame - the machine itself was 1.5x slower in the second):

==================  ===============  ====================================
GNU OpenMP waits    alone            beside a busy process on one core
==================  ===============  ====================================
PASSIVE (sleep)     249 / 375        334 / 388
spin 2000, sleep    204 / 313        375 / 515
spin 20000, sleep   183 / 253        1113 / 1315
default (300000)    182 / 265        851 / 1281
==================  ===============  ====================================

A short spin keeps most of the gain when the process has the cores
(1.2x faster than PASSIVE) and loses less when it shares them (1.1-1.3x
slower) than the default spin does (2.5-3.3x); so it is
what ``corrtrack`` sets unless the user has chosen (``OMP_WAIT_POLICY`` or
``GOMP_SPINCOUNT`` in the environment win). Worker processes
(``--workers``) split the cores between them and inherit the same setting.
"""
from __future__ import annotations

import os
from collections.abc import MutableMapping

SPIN_COUNT = "2000"


def set_openmp_defaults(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Set a short OpenMP spin in ``environ`` unless the user chose a wait policy; returns what is in effect."""
    if "OMP_WAIT_POLICY" not in environ and "GOMP_SPINCOUNT" not in environ:
        environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    return {k: environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in environ}


def describe(environ: MutableMapping[str, str] = os.environ) -> str:
    """The wait setting in effect, for benchmark reports: e.g. 'GOMP_SPINCOUNT=2000'."""
    parts = [f"{k}={environ[k]}" for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in environ]
    return ", ".join(parts) or "OpenMP default wait"
