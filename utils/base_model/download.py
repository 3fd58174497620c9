"""Download the XTTS-v2 base model into a folder: each file to <name>.part, verified by sha256, then renamed;
resumable, locked against a second download into the same folder."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import os
import re
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from utils.base_model.folder import (
    FLAG,
    OPTIONAL_FILES,
    BaseModel,
    BaseModelError,
    ProgressCallback,
    check_base_folder,
    default_base_dir,
    default_base_url,
    missing_files,
)
from utils.fsio import fsync_folder, update_sha256

PART_SUFFIX = ".part"  # a file being downloaded: <name>.part, renamed only once complete and verified
LOCK_FILE = ".download.lock"
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60.0
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

# --------------------------------------------------------------------------------------------------- download


def ensure_base_model(
    folder: str | Path | None = None,
    *,
    download: bool = True,
    base_url: str | None = None,
    progress: bool = True,
    progress_callback: ProgressCallback | None = None,
) -> BaseModel:
    """The checked base model in `folder` (default: default_base_dir()), downloading missing files if allowed."""
    folder = Path(folder) if folder is not None else default_base_dir()
    if download and missing_files(folder):
        download_base_model(folder, base_url=base_url, progress=progress, progress_callback=progress_callback)
    return check_base_folder(folder)


def download_base_model(
    dest: str | Path,
    *,
    base_url: str | None = None,
    progress: bool = True,
    progress_callback: ProgressCallback | None = None,
) -> Path:
    """Download the missing XTTS-v2 files (and speakers_xtts.pth if the server has it) into `dest`; each file is
    written to <name>.part and renamed only once complete and its checksum verified. Existing files are kept."""
    dest = Path(dest)
    url = (base_url or default_base_url()).rstrip("/") + "/"
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BaseModelError(
            f"Cannot create base model folder {dest} ({e}): pass {FLAG} DIR with a writable folder."
        ) from e
    with _download_lock(dest):
        for name in missing_files(dest):
            _fetch_required(dest, url, name, progress, progress_callback)
        for name in missing_files(dest, OPTIONAL_FILES):
            _fetch_optional(dest, url, name, progress, progress_callback)
    return dest


def _fetch_required(dest: Path, url: str, name: str, progress: bool, callback: ProgressCallback | None) -> None:
    """Download one required file; network failures become one error naming the folder, what is missing, the flag."""
    try:
        _download_file(url + name, dest / name, progress, callback)
    except (urllib.error.URLError, OSError) as e:
        reason = f"HTTP {e.code} {e.reason}" if isinstance(e, urllib.error.HTTPError) else getattr(e, "reason", e)
        missing = ", ".join(missing_files(dest))
        raise BaseModelError(
            f"Cannot download the XTTS-v2 base model into {dest}: {url + name} failed ({reason}), so {missing} "
            f"are still missing; connect to the network and run again, or pass {FLAG} DIR with a folder holding them."
        ) from e


def _fetch_optional(dest: Path, url: str, name: str, progress: bool, callback: ProgressCallback | None) -> None:
    """Download an optional file; its absence or any failure is reported on stderr and otherwise ignored."""
    try:
        _download_file(url + name, dest / name, progress, callback)
    except urllib.error.HTTPError as e:
        if e.code != 404:
            print(f"Skipped optional {name} for {dest}: {url + name} answered {e.code} {e.reason}.", file=sys.stderr)
    except (BaseModelError, urllib.error.URLError, OSError) as e:
        print(f"Skipped optional {name} for {dest}: {e}", file=sys.stderr)


@contextlib.contextmanager
def _download_lock(dest: Path) -> Iterator[None]:
    """Hold an exclusive lock on `dest` so two processes (CLI and WebUI) never write the same .part file."""
    with open(dest / LOCK_FILE, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"Waiting for another process downloading into {dest} ...", file=sys.stderr)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class _RecordingRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects like urllib does and keeps each redirect's headers: the hub sends X-Linked-ETag (the
    file's sha256) on its 302 to the CDN, not on the final response."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[Any] = []

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self.headers.append(headers)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _sha256_from_headers(all_headers: list[Any]) -> str | None:
    """The sha256 a server states for the file: X-Linked-ETag (any hop) first, then the final ETag, if 64-hex."""
    candidates = [h.get("X-Linked-ETag") for h in all_headers] + [all_headers[-1].get("ETag")]
    for value in candidates:
        if value:
            tag = value.strip().removeprefix("W/").strip('"').lower()
            if SHA256_RE.match(tag):
                return tag
    return None


def _open(url: str, offset: int) -> tuple[http.client.HTTPResponse, str | None]:
    """GET `url` from byte `offset` (a Range request when > 0); returns the response and the stated sha256."""
    redirects = _RecordingRedirects()
    opener = urllib.request.build_opener(redirects)
    request = urllib.request.Request(url, headers={"User-Agent": "xtts-finetune", "Accept-Encoding": "identity"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    response = opener.open(request, timeout=TIMEOUT_S)
    return response, _sha256_from_headers([*redirects.headers, response.headers])


def _start(url: str, part: Path) -> tuple[http.client.HTTPResponse, str | None, int, int | None]:
    """Open the download, resuming a leftover .part only when a checksum will verify the whole file afterwards;
    returns (response, expected sha256, bytes already in .part, total size or None)."""
    offset = part.stat().st_size if part.is_file() else 0
    if offset:
        try:
            response, sha = _open(url, offset)
        except urllib.error.HTTPError as e:
            if e.code != 416:  # 416: the range is past the end, so the .part is stale; start over
                raise
        else:
            expected = sha
            if response.status == 200:  # the server ignored the Range header: this is the whole file
                return response, expected, 0, _content_length(response)
            if response.status == 206 and _content_range_start(response) == offset and expected:
                return response, expected, offset, _content_range_total(response)
            response.close()  # no checksum to verify a resumed file with: start over
    response, sha = _open(url, 0)
    return response, sha, 0, _content_length(response)


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length")
    return int(value) if value and value.isdigit() else None


def _content_range_start(response: http.client.HTTPResponse) -> int | None:
    match = re.match(r"bytes (\d+)-\d+/", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _content_range_total(response: http.client.HTTPResponse) -> int | None:
    match = re.match(r"bytes \d+-\d+/(\d+)", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _download_file(
    url: str, final: Path, progress: bool, callback: ProgressCallback | None
) -> None:
    """Fetch `url` into `final` via `final`.part: resume or restart the .part, check length and sha256, then
    rename. A broken connection keeps the .part (to resume); a wrong checksum deletes it."""
    part = final.with_name(final.name + PART_SUFFIX)
    response, expected, offset, total = _start(url, part)
    with response:
        _check_free_space(final.parent, (total or 0) - offset, final.name)
        digest = update_sha256(hashlib.sha256(), part) if offset else hashlib.sha256()
        done = _stream(response, part, offset, total, digest, final.name, progress, callback)
    if total is not None and done != total:
        raise BaseModelError(
            f"Download of {final.name} into {final.parent} stopped after {done} of {total} bytes (connection "
            f"closed); run again to resume it, or pass {FLAG} DIR with a folder holding the files."
        )
    if expected and digest.hexdigest() != expected:
        part.unlink(missing_ok=True)
        raise BaseModelError(
            f"Download of {final.name} into {final.parent} is corrupt: its sha256 is {digest.hexdigest()}, the "
            f"server states {expected}; run again to download it anew, or pass {FLAG} DIR with a folder holding "
            "the files."
        )
    os.replace(part, final)
    fsync_folder(final.parent)


def _stream(
    response: http.client.HTTPResponse,
    part: Path,
    offset: int,
    total: int | None,
    digest: Any,
    name: str,
    progress: bool,
    callback: ProgressCallback | None,
) -> int:
    """Copy the response body into `part` (appending after `offset`), hashing and reporting progress; returns
    the bytes the .part holds afterwards. Transport errors are turned into a BaseModelError (the .part is kept)."""
    from tqdm import tqdm

    done = offset
    with open(part, "ab" if offset else "wb") as f, tqdm(
        total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=name, disable=not progress,
        file=sys.stderr, leave=False,
    ) as bar:
        try:
            while chunk := response.read(CHUNK_BYTES):
                f.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                bar.update(len(chunk))
                if callback is not None:
                    callback(name, done, total)
        except (http.client.HTTPException, OSError) as e:
            f.flush()
            raise BaseModelError(
                f"Download of {name} into {part.parent} broke after {done} bytes ({e or type(e).__name__}); run "
                f"again to resume it, or pass {FLAG} DIR with a folder holding the files."
            ) from e
        finally:
            f.flush()
            os.fsync(f.fileno())
    return done


def _check_free_space(folder: Path, needed: int, name: str) -> None:
    """Refuse to start a download the disk cannot hold."""
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise BaseModelError(
            f"Base model folder {folder} has {free / 1e9:.1f} GB free but {name} needs {needed / 1e9:.1f} GB: free "
            f"some space, or pass {FLAG} DIR with a folder on a larger disk."
        )
