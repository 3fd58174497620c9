"""Changing a dataset's CSVs together: a command killed at any moment leaves the complete old set or the
complete new set, never a mix, and the next command finishes or rolls back an interrupted change.

How (`replace_files`): each new file is written beside its target as `<name>.staged` (atomically, fsynced);
then a journal `csv_change.journal.json` naming every target, every file to remove and every folder to remove
is written atomically: from that moment the change is decided. Then each staged file is renamed over its
target, the removals happen, and the journal goes. `recover` (run by every dataset command before it reads the
CSVs) rolls a change forward when its journal is there (a staged file already renamed is simply gone), and
removes staged files left without a journal (the change was never decided: the old set stands).

The backup of the CSVs as they were before the first filter lives in `metadata_backup/`, made once
(`ensure_backup`), complete or absent (written as `metadata_backup.tmp/`, renamed when complete).

One change at a time: `changing(folder)` holds a lock (`csv_change.lock`, released by the kernel when its holder
dies) for a whole read-decide-write; a second command is refused, and `recover` leaves alone a change whose
command is still running."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from utils.data.errors import DatasetError, short_reason
from utils.fsio import fsync_file, fsync_folder, write_atomic_with, write_json_atomic
from utils.xtts import EVAL_CSV, TRAIN_CSV

JOURNAL = "csv_change.journal.json"
LOCK = "csv_change.lock"
STAGED_SUFFIX = ".staged"
DROPPED_CSV = "metadata_dropped.csv"
BACKUP_DIR = "metadata_backup"
ABSENT_MARK = ".absent"  # in the backup: this CSV did not exist before the first filter
SET_FILES = (TRAIN_CSV, EVAL_CSV, DROPPED_CSV)  # the files a filter changes together
PAUSE_ENV = "XTTS_CSV_CHANGE_PAUSE"  # tests: a file is written "<stage>" here and the change waits at that stage


def _pause(stage: str) -> None:
    """Wait at `stage` when a test asked for it (it kills the process there), else return at once."""
    where = os.environ.get(PAUSE_ENV)
    if not where or not where.endswith(f":{stage}"):
        return
    import time

    Path(where.rsplit(":", 1)[0]).write_text(stage)
    while True:
        time.sleep(0.05)


def _staged(path: Path) -> Path:
    return path.with_name(path.name + STAGED_SUFFIX)


@contextlib.contextmanager
def _lock(folder: Path) -> Iterator[bool]:
    """Hold the folder's change lock; yields False (holding nothing) when another process holds it."""
    with open(Path(folder) / LOCK, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def changing(folder: Path) -> Iterator[None]:
    """Hold the lock for one change of the CSVs (an interrupted one finished first); DatasetError when another
    command is changing them now."""
    with _lock(folder) as held:
        if not held:
            raise DatasetError(f"Another command is changing the CSVs in {folder} right now: wait for it to finish, "
                               "then try again.")
        _recover(Path(folder))
        yield


def replace_files(folder: Path, new: Mapping[str, bytes], remove: Iterable[str] = (),
                  remove_dirs: Iterable[str] = ()) -> None:
    """Replace the files `new` (name -> bytes) in `folder`, remove the files `remove` and the folders
    `remove_dirs`, all as one change. The caller holds `changing(folder)`."""
    folder = Path(folder)
    for name, data in new.items():
        write_atomic_with(_staged(folder / name), lambda tmp, data=data: tmp.write_bytes(data))
    _pause("staged")
    write_json_atomic(folder / JOURNAL, {"replace": sorted(new), "remove": sorted(remove),
                                         "remove_dirs": sorted(remove_dirs)})
    _pause("journal")
    _roll_forward(folder, json.loads((folder / JOURNAL).read_text(encoding="utf-8")))


def _roll_forward(folder: Path, journal: dict) -> None:
    for i, name in enumerate(journal["replace"]):
        staged = _staged(folder / name)
        if staged.exists():
            os.replace(staged, folder / name)
        if i == 0:
            _pause("renaming")
    for name in journal["remove"]:
        (folder / name).unlink(missing_ok=True)
    for name in journal["remove_dirs"]:
        if (folder / name).is_dir():
            shutil.rmtree(folder / name)
    fsync_folder(folder)
    (folder / JOURNAL).unlink()
    fsync_folder(folder)


def _leftovers(folder: Path) -> list[Path]:
    found = [*folder.glob(f"*{STAGED_SUFFIX}"), *folder.glob(f"*{STAGED_SUFFIX}.tmp"), folder / JOURNAL,
             folder / f"{BACKUP_DIR}.tmp"]
    return [p for p in found if p.exists()]


def recover(folder: Path) -> str | None:
    """Finish (journal present) or roll back (staged files without a journal) a change a killed command left;
    returns a sentence saying which, or None when there was nothing to do (or the change's command is still
    running). Touches nothing, and takes no lock, when there is nothing to do."""
    folder = Path(folder)
    if not folder.is_dir() or not _leftovers(folder):
        return None
    with _lock(folder) as held:
        return _recover(folder) if held else None


def _recover(folder: Path) -> str | None:
    journal_path = folder / JOURNAL
    if journal_path.is_file():
        try:
            journal = json.loads(journal_path.read_text(encoding="utf-8"))
            _roll_forward(folder, journal)
        except (ValueError, KeyError, TypeError, OSError) as e:
            raise DatasetError(f"{journal_path} records an interrupted change of the CSVs that cannot be finished "
                               f"({short_reason(e, 100)}): restore the CSVs from {folder / BACKUP_DIR} by hand, "
                               "then delete the journal.") from e
        return f"Finished an interrupted change of the CSVs in {folder}."
    leftovers = _leftovers(folder)
    for path in leftovers:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    if leftovers:
        fsync_folder(folder)
        return f"Rolled back an interrupted change of the CSVs in {folder}: the CSVs are as they were."
    return None


def ensure_backup(folder: Path) -> bool:
    """Keep the set's CSVs as they are now in `metadata_backup/`, unless a backup is there already (it holds
    the CSVs from before the first filter). Returns whether it was made now. The caller holds `changing`."""
    folder = Path(folder)
    backup = folder / BACKUP_DIR
    if backup.is_dir():
        return False
    tmp = folder / f"{BACKUP_DIR}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    for name in SET_FILES:
        source = folder / name
        target = tmp / (name if source.is_file() else name + ABSENT_MARK)
        if source.is_file():
            shutil.copyfile(source, target)
        else:
            target.write_bytes(b"")
        fsync_file(target)
    fsync_folder(tmp)
    os.replace(tmp, backup)
    fsync_folder(folder)
    return True


def restore_backup(folder: Path) -> list[str]:
    """Give back the CSVs exactly as the backup holds them (and remove the backup), as one change; returns the
    names restored. Raises DatasetError when there is no backup."""
    folder = Path(folder)
    with changing(folder):
        return _restore(folder)


def _restore(folder: Path) -> list[str]:
    backup = folder / BACKUP_DIR
    if not backup.is_dir():
        raise DatasetError(f"{folder} has no {BACKUP_DIR}/ folder: it was never filtered (or was restored "
                           "already), so there is nothing to restore.")
    new = {name: (backup / name).read_bytes() for name in SET_FILES if (backup / name).is_file()}
    absent = [name for name in SET_FILES if (backup / (name + ABSENT_MARK)).is_file()]
    missing = [name for name in SET_FILES if name not in new and name not in absent]
    if missing:
        raise DatasetError(f"The backup {backup} lacks {', '.join(missing)}: restore the CSVs by hand.")
    replace_files(folder, new, remove=absent, remove_dirs=[BACKUP_DIR])
    return sorted(new)
