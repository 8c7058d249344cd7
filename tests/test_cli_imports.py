"""The commands that only list or read records start without torch, Lightning or lightly; the
help and the listings also without scikit-learn, SciPy, pandas and matplotlib. How fast they
start is a benchmark (``tests/test_microbench.py``, group "cli start"), not a timed test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "pytorch_lightning", "lightning", "lightly", "timm")
TABLES = ("sklearn", "scipy", "pandas", "matplotlib")
"""What the help and the listings must not import either: the record commands read tables."""
LISTINGS = (["--help"], ["methods"], ["tasks"])

PROBE = """
import sys
from fetalbench.cli import main
try:
    status = main({argv!r})
except SystemExit as exit:
    status = exit.code
heavy = [name for name in {heavy!r} if name in sys.modules]
print("HEAVY", heavy, "STATUS", status)
"""


@pytest.mark.parametrize("argv", [["--help"], ["methods"], ["tasks"], ["leaderboard", "--check"],
                                  ["validate"]])
def test_listing_and_record_commands_import_no_torch(argv: list[str]) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)],
                          cwd=REPOSITORY, capture_output=True, text=True, timeout=120)
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("HEAVY [] STATUS 0"), (last, done.stderr[-2000:])


@pytest.mark.parametrize("argv", LISTINGS)
def test_help_and_listings_import_no_table_or_statistics_library(argv: list[str]) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv, heavy=TABLES)],
                          cwd=REPOSITORY, capture_output=True, text=True, timeout=120)
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("HEAVY [] STATUS 0"), (last, done.stderr[-2000:])


def test_methods_lists_every_built_in_with_its_description_without_importing_it() -> None:
    done = subprocess.run([sys.executable, "-m", "fetalbench", "methods"], cwd=REPOSITORY,
                          capture_output=True, text=True, timeout=120, check=True)
    lines = done.stdout.splitlines()
    assert any(line.split()[0] == "byol_imagenet" and "imagenet init" in line for line in lines)
    assert any(line.split()[0] == "dual_task" and "dual task" in line for line in lines)
