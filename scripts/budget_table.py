#!/usr/bin/env python3
"""Write docs/budgets.md: the training budgets of every profile, dataset, task and label fraction.

The arithmetic lives in :mod:`fetalbench.devtools.budgets`; this is its command line.

Usage: python scripts/budget_table.py [--seconds FILE] [--output docs/budgets.md]

``--seconds FILE``: a JSON object ``{"profile/task/method/fraction": seconds}`` measured on this
machine, shown in the section "Seconds per run on this machine" (otherwise "not measured").
"""

from __future__ import annotations

import sys

from fetalbench.devtools.budgets import main

if __name__ == "__main__":
    sys.exit(main())
