"""Restart after a crash: which ended training processes are crashes worth a restart, and where a restart
continues from (the newest checkpoint of the crashed run's own folder, so it writes on in that folder).

A crash is a process that had started training (its `start` event was written), ended non-zero, and was not
asked to stop: killed by a signal (the kernel's out-of-memory killer sends SIGKILL), out of memory, or an
unexpected exception. Not crashes: a start refused for bad input (exit 1 before any `start` event), a requested
stop, and a divergence stop (exit 3, the NaN guard's: a restart would diverge again).
"""

from __future__ import annotations

import dataclasses
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils.checkpoints.keys import run_checkpoints
from utils.options import TrainOptions
from utils.training.guard import DIVERGED_EXIT

DEFAULT_RESTARTS = 3  # the Train tab's and the API's default; README's Train section says why
MAX_RESTARTS = 100
CRASH_LOG_LINES = 20  # how much of a crash's console output the page keeps
# Exit statuses that are stops someone asked for outside the page (SIGINT/SIGTERM to the trainer, or the shell's
# 128 + signal), and the divergence stop: never restarted.
NOT_CRASHES = frozenset({DIVERGED_EXIT, -signal.SIGINT, -signal.SIGTERM, 128 + signal.SIGINT, 128 + signal.SIGTERM})


@dataclass(frozen=True)
class Crash:
    """One crash that was restarted: how the process ended, at which update, the end of its console output, and
    the checkpoint the restart continued from (None: the job's own first start again, no checkpoint yet)."""

    returncode: int
    step: int
    log_tail: str
    resumed_from: str | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_restarts(value: Any) -> int:
    """The `restarts` setting as a whole number of restarts; ValueError naming it otherwise."""
    if value is None or value == "":
        return DEFAULT_RESTARTS
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not number.is_integer() or not 0 <= number <= MAX_RESTARTS:
        raise ValueError(f"restarts (Restart after a crash) must be a whole number between 0 and {MAX_RESTARTS}, "
                         f"got {value!r}.")
    return int(number)


def is_crash(returncode: int | None, started: bool, stop_asked: bool) -> bool:
    """Whether a process that ended with `returncode` crashed (and may be restarted): it had started training,
    nobody asked it to stop, and it ended neither cleanly nor as a divergence stop."""
    if returncode is None or returncode == 0 or stop_asked or not started:
        return False
    return returncode not in NOT_CRASHES


def restart_options(opts: TrainOptions, run_dir: str | None) -> tuple[TrainOptions, Path | None]:
    """The options a restart runs with, and the checkpoint it continues from: the newest complete checkpoint of
    the crashed run's folder, resumed in that folder. None when the run saved none yet: the job's own start again
    (nothing of it was kept)."""
    own = run_checkpoints(Path(run_dir)) if run_dir and Path(run_dir).is_dir() else []
    if not own:
        return opts, None
    return dataclasses.replace(opts, custom_model=str(own[-1]), restart=False), own[-1]


def ended_text(returncode: int) -> str:
    """How a process ended, in words: 'killed by signal 9 (SIGKILL)' or 'exit status 1'."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            return f"killed by signal {-returncode}"
        return f"killed by signal {-returncode} ({name})"
    return f"exit status {returncode}"
