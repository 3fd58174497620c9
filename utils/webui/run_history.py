"""A run's whole history for the WebUI's plots: the loss and quality events of its run folder across every stop
and resume, continued from the run it was resumed from when it started in a new folder.

A resume of a folder's newest checkpoint appends to that folder's progress.jsonl; updates recorded after the
checkpoint it resumed from (trained, then lost by a kill) are dropped at its `start` event, since the resumed
run trains them again. A resume from an older checkpoint starts a new run folder whose run.json names the source:
the source run's history up to the source step comes first."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from utils.checkpoints.keys import Mode
from utils.training.events import EvalEvent, QualityEvent, StartEvent, UpdateEvent, event_from_dict
from utils.training.run_folder import PROGRESS_FILE, RUN_RECORD
from utils.webui.job_progress import thin

MAX_SOURCE_DEPTH = 50  # runs resumed from runs resumed from ...: a loop of hand-edited run.json files ends here
CACHED_RUNS = 8
EVENT_START = b'{"time": '  # every progress line begins so (EventLog)


@dataclass(frozen=True)
class Evaluation:
    """One quality evaluation as a run recorded it, and the run folder its samples lie in."""

    run_dir: Path
    event: QualityEvent

    @property
    def step(self) -> int:
        return self.event.step


@dataclass
class History:
    """(update, loss) pairs of training and eval losses and the quality evaluations, each in update order."""

    train: list[tuple[int, float]] = field(default_factory=list)
    evals: list[tuple[int, float]] = field(default_factory=list)
    quality: list[Evaluation] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # sentences saying what could not be read

    def cut(self, step: int) -> History:
        """The history up to and including update `step`."""
        return History([p for p in self.train if p[0] <= step], [p for p in self.evals if p[0] <= step],
                       [q for q in self.quality if q.step <= step], list(self.problems))

    def then(self, later: History) -> History:
        return History(self.train + later.train, self.evals + later.evals, self.quality + later.quality,
                       self.problems + later.problems)

    def losses(self) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """(train, eval) losses thinned to at most MAX_PLOT_POINTS each, as the loss plot takes them."""
        return thin(self.train), thin(self.evals)

    def evaluation(self, step: int) -> Evaluation | None:
        """The evaluation at update `step` (the latest recorded, should there be two)."""
        found = [q for q in self.quality if q.step == step]
        return found[-1] if found else None


class RunHistory:
    """Reads one run folder's progress.jsonl as it grows (each call reads only what was added) on top of the
    history of the run it was resumed from, read once."""

    def __init__(self, run_dir: Path, _depth: int = 0) -> None:
        self.run_dir = Path(run_dir)
        self.earlier = earlier_history(self.run_dir, _depth)
        self.own = History()
        self._offset = 0

    def read(self) -> History:
        """The whole history so far: the source run's (if any), then this folder's."""
        try:
            with open(self.run_dir / PROGRESS_FILE, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            data = b""
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next read
        self._offset += len(complete)
        for line in complete.splitlines():
            record = parse_line(line)
            if record is not None:
                self._apply(record)
        return self.earlier.then(self.own)

    def _apply(self, record: dict[str, Any]) -> None:
        event = event_from_dict(record)
        if isinstance(event, StartEvent):  # a resume at this step: what came after it was trained again
            self.own = self.own.cut(event.step)
        elif isinstance(event, UpdateEvent) and _is_number(event.loss):
            self.own.train.append((event.step, float(event.loss)))
        elif isinstance(event, EvalEvent) and _is_number(event.eval_loss):
            self.own.evals.append((event.step, float(event.eval_loss)))
        elif isinstance(event, QualityEvent):
            self.own.quality = [q for q in self.own.quality if q.step != event.step]
            self.own.quality.append(Evaluation(self.run_dir, event))


def parse_line(line: bytes) -> dict[str, Any] | None:
    """One progress line as a dict; a line a crash cut short and the next start wrote onto is read from where
    that start's record begins; None for a line that holds no record."""
    for candidate in (line, line[line.rfind(EVENT_START):] if EVENT_START in line else b""):
        try:
            record = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(record, dict):
            return record
    return None


def earlier_history(run_dir: Path, depth: int = 0) -> History:
    """What the run this folder was resumed from recorded up to the resumed update (and before that, its own
    source's); empty for a run that began at step 0 or a folder without run.json (coqui's own runs)."""
    record_path = run_dir / RUN_RECORD
    if not record_path.is_file():
        return History()
    try:
        first = json.loads(record_path.read_text(encoding="utf-8"))["starts"][0]
        mode, source, step = first["mode"], Path(first["source"]), int(first["step"])
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        return History(problems=[f"{record_path} cannot be read ({type(e).__name__}: {e}): the plots show this "
                                 f"folder's updates only."])
    source_dir = source.parent
    if mode != Mode.RESUME or source_dir.resolve() == run_dir.resolve() or not (source_dir / PROGRESS_FILE).is_file():
        return History()
    if depth >= MAX_SOURCE_DEPTH:
        return History(problems=[f"{run_dir}: more than {MAX_SOURCE_DEPTH} runs resumed one from another (run.json "
                                 f"files naming each other?): the plots leave out the oldest."])
    return RunHistory(source_dir, depth + 1).read().cut(step)


class RunHistories:
    """The readers of the runs the page shows, kept so each poll reads only new lines; safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readers: dict[Path, RunHistory] = {}

    def read(self, run_dir: str | Path) -> History:
        """The whole history of `run_dir` as it is now."""
        key = Path(run_dir).resolve()
        with self._lock:
            reader = self._readers.pop(key, None) or RunHistory(key)
            self._readers[key] = reader  # most recently used last
            while len(self._readers) > CACHED_RUNS:
                self._readers.pop(next(iter(self._readers)))
            return reader.read()


def is_run_folder(folder: Path) -> bool:
    """A folder training wrote progress into (one of ours)."""
    return (folder / PROGRESS_FILE).is_file()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
