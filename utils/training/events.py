"""Progress events as typed records: what training writes to progress.jsonl (one JSON object per line) and
what the WebUI reads back. Each kind keeps the field names of the JSON it becomes (see README, progress.jsonl)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar


@dataclass
class Event:
    """Fields every event has: where training stood when it happened."""

    kind: ClassVar[str] = ""
    step: int = 0  # optimizer updates applied
    total: int | None = None  # updates the run will have when it completes
    epoch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        fields = {k: v for k, v in dataclasses.asdict(self).items() if v is not None or k not in self.omit_if_none}
        return {"event": self.kind, **fields}

    omit_if_none: ClassVar[tuple[str, ...]] = ()


@dataclass
class StartEvent(Event):
    kind: ClassVar[str] = "start"
    mode: str = ""
    run_dir: str = ""
    lr: float = 0.0
    message: str = ""


@dataclass
class UpdateEvent(Event):
    kind: ClassVar[str] = "update"
    loss: float | None = None
    avg_loss: float | None = None
    avg_loss_text_ce: float | None = None
    avg_loss_mel_ce: float | None = None
    lr: float | None = None
    eta_s: float | None = None  # seconds to the end at the rate so far (set by EventLog)


@dataclass
class EvalEvent(Event):
    kind: ClassVar[str] = "eval"
    eval_loss: float | None = None


@dataclass
class CheckpointEvent(Event):
    """A checkpoint became durable (written, fsynced, renamed into place)."""

    kind: ClassVar[str] = "checkpoint"
    path: str = ""


@dataclass
class BestEvent(Event):
    """best_model.pth became durable; it carries what it was chosen by (eval_loss, else train_loss; with
    --best_by quality the quality means)."""

    kind: ClassVar[str] = "best"
    omit_if_none: ClassVar[tuple[str, ...]] = ("eval_loss", "train_loss", "cer", "speaker_similarity", "mos",
                                               "duration_ratio")
    path: str = ""
    eval_loss: float | None = None
    train_loss: float | None = None
    cer: float | None = None  # --best_by quality: the scores it was chosen by
    speaker_similarity: float | None = None
    mos: float | None = None
    duration_ratio: float | None = None


@dataclass
class QualityEvent(Event):
    """Samples synthesised and scored at `step`: the means over the sentences and each sample (path, text,
    transcript, its scores, and whether it ran into the length cap)."""

    kind: ClassVar[str] = "quality"
    cer: float | None = None
    speaker_similarity: float | None = None
    mos: float | None = None
    duration_ratio: float | None = None
    reference: str = ""
    samples: list[dict[str, Any]] = dataclasses.field(default_factory=list)


@dataclass
class WarningEvent(Event):
    kind: ClassVar[str] = "warning"
    message: str = ""


@dataclass
class EndEvent(Event):
    kind: ClassVar[str] = "end"
    reason: str = ""  # "completed", "reached --max_steps N", "stop requested", ...
    run_dir: str = ""
    path: str | None = None  # the newest checkpoint, if any


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls for cls in (StartEvent, UpdateEvent, EvalEvent, CheckpointEvent, BestEvent, QualityEvent,
                              WarningEvent, EndEvent)
}


def event_from_dict(data: dict[str, Any]) -> Event | None:
    """A progress.jsonl line's event as its record (unknown kinds: None; unknown fields are ignored, so a reader
    keeps working when later versions add fields)."""
    cls = EVENT_TYPES.get(data.get("event", ""))
    if cls is None:
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


class EventLog:
    """JSON-lines progress (for the WebUI) and one-line facts on the console (for people)."""

    def __init__(self, paths: list[Path], callback: Callable[[dict[str, Any]], None] | None) -> None:
        self.paths = paths
        self.callback = callback
        self.started = time.time()
        self.first_step: int | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, UpdateEvent):
            if self.first_step is None:
                self.first_step = event.step - 1
            done = event.step - self.first_step
            rate = (time.time() - self.started) / max(done, 1)
            event.eta_s = round(rate * max((event.total or 0) - event.step, 0), 1)
        line = {"time": round(time.time(), 3), **event.to_dict()}
        text = json.dumps(line, default=str)
        for path in self.paths:
            with open(path, "a") as f:
                f.write(text + "\n")
        if isinstance(event, StartEvent | CheckpointEvent | QualityEvent | EndEvent | WarningEvent):
            print(human_line(event), flush=True)
        if self.callback is not None:
            self.callback(line)


def human_line(event: Event) -> str:
    """The console's line for an event."""
    if isinstance(event, CheckpointEvent):
        return f"Saved {Path(event.path).name}: step {event.step}, epoch {event.epoch}"
    if isinstance(event, QualityEvent):
        return (f"Quality at step {event.step}: CER {_num(event.cer)}, speaker similarity "
                f"{_num(event.speaker_similarity)}, MOS {_num(event.mos)}, duration ratio {_num(event.duration_ratio)}")
    if isinstance(event, EndEvent):
        return f"Training ended ({event.reason}): step {event.step}, epoch {event.epoch}, run {event.run_dir}"
    return getattr(event, "message", "")


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
