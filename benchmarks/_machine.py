"""What a benchmark's JSON records of the machine it ran on (shared by the bench scripts)."""

from __future__ import annotations

import os
import platform


def machine_record(note: str = "") -> dict:
    """Platform, core count, the caller's note on the conditions, and the load at start.

    Examples
    --------
    >>> sorted(machine_record("idle"))
    ['cpus', 'load_avg_at_start', 'note', 'platform']
    """
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "note": note,
        "load_avg_at_start": os.getloadavg(),
    }
