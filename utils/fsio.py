"""File-system helpers every part shares: atomic writes (a crash leaves the old file or the complete new one),
the sha256 of a file, and fsync of a folder (so a rename survives a power cut)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

PARTIAL_SUFFIX = ".tmp"  # a file being written: <name>.tmp, renamed over <name> once complete
CHUNK_BYTES = 1 << 20


def partial_path(path: Path) -> Path:
    """Where `path` is written before it is complete (torch.save refuses names starting with a dot)."""
    return path.with_name(path.name + PARTIAL_SUFFIX)


def fsync_path(path: Path) -> None:
    """Make a file's bytes, or a folder's entries (a rename, a new file), durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


fsync_file = fsync_folder = fsync_path  # the names say which the caller means


def write_text_atomic(path: str | Path, text: str, *, durable: bool = True) -> None:
    write_atomic_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), durable=durable)


def write_json_atomic(path: str | Path, data: Any, *, indent: int | None = 2, durable: bool = True,
                      ensure_ascii: bool = True) -> None:
    write_text_atomic(path, json.dumps(data, indent=indent, ensure_ascii=ensure_ascii, default=str) + "\n",
                      durable=durable)


def write_atomic_with(path: str | Path, write: Callable[[Path], None], *, durable: bool = True) -> None:
    """Atomic write for writers that take a file name (soundfile, zipfile): `write(tmp)`, then rename."""
    path = Path(path)
    tmp = partial_path(path)
    try:
        write(tmp)
        if durable:
            fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_folder(path.parent)


def update_sha256(digest: Any, path: str | Path) -> Any:
    """Feed the file's bytes into `digest` (a hashlib object) and return it."""
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    return update_sha256(hashlib.sha256(), path).hexdigest()
