"""Progress events of the dataset commands, for the console and the WebUI, with a remaining-time estimate."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """A progress event for the console and the WebUI. `remaining_s` is None until it can be estimated."""

    stage: str
    files_done: int
    files_total: int
    clips: int
    elapsed_s: float
    remaining_s: float | None
    current: str = ""

    def __str__(self) -> str:
        remaining = "?" if self.remaining_s is None else clock(self.remaining_s)
        current = f" - {self.current}" if self.current else ""
        return (f"[{self.stage}] files {self.files_done}/{self.files_total}, clips {self.clips}, "
                f"elapsed {clock(self.elapsed_s)}, remaining {remaining}{current}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


ProgressCallback = Callable[[Progress], None]


class ProgressTracker:
    """Turns work done (seconds of audio, or lines) into Progress events with a remaining-time estimate."""

    def __init__(self, stage: str, files_total: int, work_total: float, callback: ProgressCallback | None) -> None:
        self.stage, self.files_total, self.work_total, self.callback = stage, files_total, work_total, callback
        self.started = time.monotonic()
        self.last_report = -math.inf
        self.files_done = 0
        self.clips = 0
        self.work_done = 0.0

    def report(self, current: str = "", work_in_file: float = 0.0, *, force: bool = True) -> None:
        """Send an event; unforced ones (within a file) at most twice a second."""
        now = time.monotonic()
        if self.callback is None or (not force and now - self.last_report < 0.5):
            return
        self.last_report = now
        elapsed = now - self.started
        done = self.work_done + work_in_file
        remaining = None
        if done > 0 and self.work_total > 0:
            remaining = max(0.0, elapsed * (self.work_total - done) / done)
        if self.files_done >= self.files_total:
            remaining = 0.0
        self.callback(Progress(self.stage, self.files_done, self.files_total, self.clips, elapsed, remaining, current))


def clock(seconds: float) -> str:
    """'h:mm:ss'."""
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
