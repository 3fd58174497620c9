"""The run folder: where a new one goes, the lock that keeps two trainings out of one, and its records (run.json
lists every start; data_manifest.json fingerprints the training data of the latest; vocab.json is the run's copy
of its vocabulary), each written atomically and durably (utils/fsio.py)."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from utils.checkpoints.keys import Mode, run_checkpoints
from utils.errors import RunError
from utils.fsio import write_atomic_with, write_json_atomic
from utils.training.events import Event, WarningEvent

RUN_RECORD = "run.json"  # in each run folder: where it came from and every start
MANIFEST_FILE = "data_manifest.json"  # the training data of the latest start
LOCK_FILE = ".lock"
RUN_VOCAB = "vocab.json"  # the run's own copy of the vocabulary it trains with
PROGRESS_FILE = "progress.jsonl"  # in each run folder: every event of every start, one JSON object per line
GIB = 1024**3


def is_newest_in_own_run(source: Path) -> bool:
    """True when `source` is the newest complete checkpoint of one of our run folders."""
    if not (source.parent / RUN_RECORD).is_file():
        return False
    own = run_checkpoints(source.parent)
    return bool(own) and own[-1].resolve() == source.resolve()


def runs_folder(output_path: Path) -> Path:
    return output_path / "run" / "training"


def new_run_dir(output_path: Path, run_name: str) -> Path:
    """A fresh folder under <output>/run/training/, unique even for two runs started in the same second."""
    parent = runs_folder(output_path)
    parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    for n in range(1000):
        candidate = parent / (f"{run_name}-{stamp}" + (f"-{n}" if n else ""))
        with contextlib.suppress(FileExistsError):
            candidate.mkdir()
            return candidate
    raise RunError(f"Could not create a new run folder under {parent}.")


def shared_run_dir(output_path: Path, run_name: str, group_id: str) -> Path:
    """The run folder every rank of one multi-GPU launch agrees on: named after the launch's group id."""
    folder = runs_folder(output_path) / f"{run_name}-{group_id}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def locked_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run folder; the kernel drops it when the process dies (even by SIGKILL)."""
    try:
        handle = open(run_dir / LOCK_FILE, "a")  # noqa: SIM115 - held for the whole run, closed below
    except OSError as e:
        raise RunError(f"Cannot write into the run folder {run_dir} ({e.strerror}): make it writable, or copy the "
                       f"checkpoint elsewhere and resume it from there.") from e
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunError(f"Another training is already writing into {run_dir}: stop it first, or start from "
                           f"another checkpoint (a new run folder is made).") from None
        yield


def record_start(run_dir: Path, mode: Mode, source: Path, step: int, options: dict[str, Any]) -> None:
    """Append this start to run.json (source, mode, options), creating it for a new run folder."""
    path = run_dir / RUN_RECORD
    record = json.loads(path.read_text()) if path.is_file() else {"created": _now(), "starts": []}
    record["starts"].append({"time": _now(), "mode": str(mode), "source": str(source.resolve()), "step": step,
                             "options": options})
    write_json_atomic(path, record)


def keep_vocab(run_dir: Path, vocab: Path) -> Path:
    """Copy the vocabulary a new run trains with into its folder (atomically: a crash never leaves half a
    tokenizer beside its checkpoints); returns the copy."""
    copy = run_dir / RUN_VOCAB
    write_atomic_with(copy, lambda tmp: shutil.copyfile(vocab, tmp))
    return copy


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    write_json_atomic(run_dir / MANIFEST_FILE, manifest, indent=1)


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / MANIFEST_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def check_disk_space(run_dir: Path, checkpoint_bytes: int, keep: int, events: Callable[[Event], None],
                     free_bytes: int | None = None) -> None:
    """Refuse to start when the disk cannot hold one more checkpoint besides the one being written; warn when
    it cannot hold the kept set (keep + best + one being written)."""
    free = shutil.disk_usage(run_dir).free if free_bytes is None else free_bytes
    if free < 2 * checkpoint_bytes:
        raise RunError(f"Not enough disk space in {run_dir}: {free / GIB:.1f} GiB free, each checkpoint needs "
                       f"{checkpoint_bytes / GIB:.1f} GiB (two at once while saving). Free space or pick another "
                       f"--output_path.")
    needed = (keep + 2) * checkpoint_bytes
    if free < needed:
        events(WarningEvent(step=0, total=None, epoch=0, message=(
            f"Disk space is short in {run_dir}: {free / GIB:.1f} GiB free, keeping {keep} checkpoints and the best "
            f"needs about {needed / GIB:.1f} GiB. Lower --keep_checkpoints or free space.")))
