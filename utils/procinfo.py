"""What Linux's /proc says about a process: when it started. Used to tell a reused pid apart (the WebUI's job
records) and to name a torchrun launch's run folder alike in every rank (they share the torchrun agent)."""

from __future__ import annotations

import datetime
import os
from pathlib import Path


def process_start_ticks(pid: int) -> int | None:
    """When process `pid` started (clock ticks after boot, /proc/<pid>/stat field 22). None if there is no such
    live process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) ": state is field 3, starttime field 22
    return None if fields[0] in ("Z", "X") else int(fields[19])


def process_started_at(pid: int) -> datetime.datetime | None:
    """The local wall-clock time process `pid` started, to the second; None if there is no such live process."""
    ticks = process_start_ticks(pid)
    if ticks is None:
        return None
    boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                if line.startswith("btime "))
    return datetime.datetime.fromtimestamp(boot + ticks // os.sysconf("SC_CLK_TCK"))
