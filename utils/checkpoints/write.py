"""Write checkpoints atomically and durably: a crash at any instant leaves the old file or the complete new one,
and the fsync that makes a file durable runs in the background so training is not held up by it."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import torch

from utils.checkpoints.keys import PARTIAL_SUFFIX, CheckpointWriteError
from utils.fsio import fsync_file, fsync_folder, partial_path


def _write_partial(state: dict[str, Any], path: Path) -> Path:
    """Serialise `state` to `<path>.tmp` (into the page cache; nothing is durable yet) and return that name."""
    tmp = partial_path(path)
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
    except (OSError, RuntimeError) as e:
        tmp.unlink(missing_ok=True)
        io_error = e if isinstance(e, OSError) else e.__context__  # torch's zip writer wraps the OSError
        if not isinstance(io_error, OSError):
            raise
        raise _write_error(path, io_error) from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _make_durable(tmp: Path, path: Path) -> None:
    """fsync `tmp`, rename it to `path`, fsync the folder: from here a crash leaves the complete new file."""
    try:
        fsync_file(tmp)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise _write_error(path, e) from e
    fsync_folder(path.parent)


def _write_error(path: Path, e: OSError) -> CheckpointWriteError:
    return CheckpointWriteError(
        f"Could not write {path} ({e.strerror or e}): nothing there was replaced. Free disk space "
        f"or fix the folder's permissions, then resume from the newest checkpoint."
    )


def save_atomic(state: dict[str, Any], path: str | Path) -> Path:
    """Write `state` to `path` so that a crash at any instant leaves either the old file or the complete new
    one: write `<path>.tmp`, fsync, rename, fsync the folder."""
    path = Path(path)
    _make_durable(_write_partial(state, path), path)
    return path


class CheckpointWriter:
    """Atomic saves that hold training up only while the state is serialised: the fsync, rename and folder
    fsync that make each file durable run on a background thread while training goes on (on this kind of
    disk they cost as much again as the serialisation). Files become visible in order, each only once
    durable; `poll`/`wait` return those that did, and raise CheckpointWriteError for one that failed."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._done: list[Path] = []
        self._error: Exception | None = None

    def save(self, state: dict[str, Any], path: Path) -> list[Path]:
        """Serialise `state` for `path` now and finish it in the background; returns the files that became
        durable before it (the previous save is always finished first)."""
        done = self.wait()
        try:
            tmp = _write_partial(state, path)
        except BaseException:
            self._done = done + self._done  # the previous file is durable: the next poll/wait still reports it
            raise
        self._thread = threading.Thread(target=self._finish, args=(tmp, path), name=f"durable {path.name}")
        self._thread.start()
        return done

    def _finish(self, tmp: Path, path: Path) -> None:
        try:
            _make_durable(tmp, path)
            self._done.append(path)
        except Exception as e:  # handed to the training thread, which raises it at its next poll/wait
            self._error = e

    def poll(self) -> list[Path]:
        """Files that became durable since the last call, without waiting."""
        if self._thread is not None and self._thread.is_alive():
            return []
        return self.wait()

    def wait(self) -> list[Path]:
        """Wait for the save in flight; the files that became durable since the last call."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        done, self._done = self._done, []
        return done


def remove_partial_files(folder: Path) -> list[Path]:
    """Delete leftovers of interrupted writes (`*.pth.tmp`) in `folder`; returns what was removed."""
    stale = sorted(folder.glob(f"*.pth{PARTIAL_SUFFIX}"))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale

