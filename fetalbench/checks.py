"""Checks of user-given values, shared by the command line and the Python API.

Both refuse the same values with the same one-line words; this module stays light (no numpy,
pandas or torch) so the command line can use it before any heavy import.
"""

from __future__ import annotations

from fetalbench.errors import FetalbenchError


def check_fraction(fraction: float) -> float:
    """``fraction`` itself when it lies in (0, 1], else a one-line error."""
    if not (isinstance(fraction, int | float) and 0.0 < fraction <= 1.0):
        raise FetalbenchError(
            f"label fraction {fraction!r} is outside (0, 1]; use e.g. 0.1 for 10% of the labels"
        )
    return float(fraction)


def check_patients(patients: int) -> int:
    """``patients`` itself when it is a whole number >= 1 (a label budget of that many patients
    per class), else a one-line error."""
    if isinstance(patients, bool) or not isinstance(patients, int) or patients < 1:
        raise FetalbenchError(f"a budget of {patients!r} patients per class is not a whole number "
                              ">= 1; use e.g. --patients 4")
    return patients


def check_seed(seed: int) -> int:
    """``seed`` itself when it is a whole number >= 0, else a one-line error."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise FetalbenchError(f"seed {seed!r} is negative or not whole; use a whole number >= 0, "
                              "e.g. --seed 0")
    return seed


def check_count(value: int, what: str) -> int:
    """``value`` itself when it is a whole number >= 1 (devices, steps, a Slurm resource), else a
    one-line error naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FetalbenchError(f"{what} must be a whole number >= 1, not {value!r}")
    return value
