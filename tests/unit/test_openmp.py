"""The OpenMP wait default: a short spin unless the user chose."""
from corrtrack.openmp import SPIN_COUNT, describe, set_openmp_defaults


def test_short_spin_when_nothing_is_set():
    env = {}
    assert set_openmp_defaults(env) == {"GOMP_SPINCOUNT": SPIN_COUNT}
    assert env == {"GOMP_SPINCOUNT": SPIN_COUNT} and describe(env) == f"GOMP_SPINCOUNT={SPIN_COUNT}"


def test_the_users_choice_wins():
    for chosen in ({"OMP_WAIT_POLICY": "PASSIVE"}, {"GOMP_SPINCOUNT": "0"}, {"OMP_WAIT_POLICY": ""}):
        env = dict(chosen)
        assert set_openmp_defaults(env) == chosen and env == chosen
    assert describe({}) == "OpenMP default wait"


def test_the_command_sets_it_before_torch_loads():
    import subprocess
    import sys

    code = ("import os, sys; os.environ.pop('OMP_WAIT_POLICY', None); os.environ.pop('GOMP_SPINCOUNT', None); "
            "sys.argv = ['corrtrack', '--help']; from corrtrack.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(os.environ.get('GOMP_SPINCOUNT'), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == f"{SPIN_COUNT} False"
