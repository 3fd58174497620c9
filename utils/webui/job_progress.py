"""What a training job's files say: its progress events (the CLI's JSON lines) and its console log."""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from utils.training.events import (
    BestEvent,
    CheckpointEvent,
    EndEvent,
    EvalEvent,
    StartEvent,
    UpdateEvent,
    WarningEvent,
    event_from_dict,
)

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
MAX_PLOT_POINTS = 2000


@dataclass(kw_only=True)
class RunView:
    """What a job's progress events say of its run, as the page and `/training_status` show it: Progress gathers
    these from the events, and JobStatus carries them (one declaration for both)."""

    mode: str | None = None
    run_dir: str | None = None
    start_step: int | None = None
    step: int = 0
    total: int | None = None
    epoch: int | None = None
    loss: float | None = None
    avg_loss: float | None = None
    eval_loss: float | None = None
    lr: float | None = None
    eta_s: float | None = None
    checkpoint: str | None = None
    best_checkpoint: str | None = None
    warnings: list[str] = field(default_factory=list)
    events: int = 0

    def run_view(self) -> dict[str, Any]:
        """These fields alone, lists copied (a status taken now does not change as more events arrive)."""
        return {f.name: copy.copy(getattr(self, f.name)) for f in fields(RunView)}


@dataclass
class Progress(RunView):
    """What the progress events of one job say so far."""

    message: str = ""
    end_reason: str | None = None
    train_points: list[tuple[int, float]] = field(default_factory=list)
    eval_points: list[tuple[int, float]] = field(default_factory=list)
    starts: int = 0  # start events: one per process of the job (a restart writes its own)

    def apply(self, line: dict[str, Any]) -> None:
        """Take in one progress.jsonl line (an event record; unknown kinds only count)."""
        self.events += 1
        event = event_from_dict(line)
        if event is None:
            return
        for key in ("step", "total", "epoch"):
            if getattr(event, key) is not None:
                setattr(self, key, getattr(event, key))
        if getattr(event, "run_dir", None):
            self.run_dir = event.run_dir
        if isinstance(event, StartEvent):
            self.starts += 1
            self.end_reason = None
            self.mode, self.start_step, self.lr, self.message = event.mode, event.step, event.lr, event.message
        elif isinstance(event, UpdateEvent):
            self.loss, self.avg_loss, self.lr, self.eta_s = event.loss, event.avg_loss, event.lr, event.eta_s
            if isinstance(event.loss, int | float):
                self.train_points.append((event.step, float(event.loss)))
        elif isinstance(event, EvalEvent) and isinstance(event.eval_loss, int | float):
            self.eval_loss = float(event.eval_loss)
            self.eval_points.append((event.step, self.eval_loss))
        elif isinstance(event, CheckpointEvent):
            self.checkpoint = event.path
        elif isinstance(event, BestEvent):
            self.best_checkpoint = event.path
        elif isinstance(event, WarningEvent):
            self.warnings.append(event.message)
        elif isinstance(event, EndEvent):
            self.end_reason = event.reason
            self.checkpoint = event.path or self.checkpoint


def error_line(log_path: Path) -> str:
    """The CLI's one-sentence error (the last 'Error: ...' line), else the last line of its output."""
    lines = [line.strip() for line in log_tail(log_path, 60).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    return (errors[-1].removeprefix("Error:").strip() if errors else lines[-1]) if lines else ""


def log_tail(path: Path, lines: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    text = ANSI.sub("", text).replace("\r\n", "\n")
    rows = [row.rsplit("\r", 1)[-1] for row in text.split("\n")]  # progress bars redraw with \r
    return "\n".join(rows[-lines:]).strip("\n")


def thin(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """At most MAX_PLOT_POINTS points, evenly spaced, the last one kept (what a plot takes)."""
    if len(points) <= MAX_PLOT_POINTS:
        return list(points)
    stride = len(points) / MAX_PLOT_POINTS
    return [points[int(i * stride)] for i in range(MAX_PLOT_POINTS - 1)] + [points[-1]]
