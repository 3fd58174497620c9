"""Where the WebUI may read and write: the work folders, and the rule for paths a user types.

On loopback (the default) the person at the browser is the person at the machine: any local path is accepted.
Served beyond loopback (`--share`, or `--host` other than a loopback address), or with `--restrict_paths` (a
loopback server behind a reverse proxy or tunnel), every path a user gives, and every audio path a CSV names,
is resolved (symbolic links followed) and must lie inside a work folder: the output folder, the base model
folder or Gradio's upload folder. The same folders are Gradio's `allowed_paths`, the only files it serves.
"""

from __future__ import annotations

import ipaddress
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from utils.errors import UserInputError
from utils.options import TrainOptions
from utils.xtts import EVAL_CSV, TRAIN_CSV

ROOT = Path(__file__).resolve().parents[2]  # the repository: relative paths a user types start here
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5003  # the port of the popular XTTS fine-tuning WebUI, so bookmarks keep working
JOBS_SUBDIR = Path("run") / "webui"  # under the output folder: the training jobs' records, logs, progress
DEFAULT_MAX_FILE_SIZE = "2gb"  # per upload (Gradio's notation): an hour of 44.1 kHz stereo WAV is 635 MB
PATH_OPTIONS = ("train_csv", "eval_csv", "output_path", "base_model_dir", "custom_model", "vocab", "progress_jsonl",
                "quality_sentences", "reference_wav")


class PathRefused(UserInputError, ValueError):
    """A path outside the work folders while the WebUI is served beyond loopback."""


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: only this machine can connect."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def gradio_upload_dir() -> Path:
    """Where Gradio stores uploaded files (GRADIO_TEMP_DIR, else <temp>/gradio)."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")


def _broad_places() -> set[Path]:
    """Folders far too wide to be an upload folder: the root, the top-level system folders, the home folder."""
    places = {Path("/"), Path.home().resolve(), Path(tempfile.gettempdir()).resolve()}
    places |= {p.resolve() for p in Path("/").iterdir() if p.is_dir()}
    return places


def prepare_upload_dir(folder: Path | None = None) -> Path:
    """Gradio's upload folder, refused if it resolves to a broad place (a link to / or to the home folder),
    belongs to another user or is writable by everyone; created private to this user (mode 0700) when missing.
    Returns it resolved."""
    folder = folder or gradio_upload_dir()
    resolved = folder.resolve()
    fix = "set GRADIO_TEMP_DIR to a folder of your own, e.g. ~/.cache/xtts-finetune/uploads"
    if resolved in _broad_places():
        raise PathRefused(f"Upload folder {folder} resolves to {resolved}, far too broad a place to serve files "
                          f"from: {fix}.")
    if not resolved.exists():
        resolved.mkdir(mode=0o700, parents=True)
    if not resolved.is_dir():
        raise PathRefused(f"Upload folder {folder} is not a folder: {fix}.")
    if resolved.stat().st_uid != os.getuid():
        raise PathRefused(f"Upload folder {folder} belongs to another user (uid {resolved.stat().st_uid}), who could "
                          f"read and replace what is uploaded: {fix}.")
    if resolved.stat().st_mode & stat.S_IWOTH:
        raise PathRefused(f"Upload folder {folder} is writable by every user, who could replace what is uploaded "
                          f"(chmod o-w it), or {fix}.")
    return resolved


def parse_auth(pairs: list[str] | None, auth_file: str | Path | None) -> list[tuple[str, str]]:
    """(user, password) pairs from `--auth USER:PASSWORD` values and an `--auth_file` (one user:password a line,
    blank lines and # comments skipped); ValueError naming the entry that has no ':'."""
    entries = [("--auth", value) for value in pairs or []]
    if auth_file:
        path = Path(auth_file).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise ValueError(f"--auth_file {path} cannot be read ({e.strerror}): give a file of user:password "
                             f"lines.") from e
        entries += [(f"--auth_file {path} line {n}", line.strip()) for n, line in enumerate(lines, 1)
                    if line.strip() and not line.lstrip().startswith("#")]
    found = []
    for where, value in entries:
        user, sep, password = value.partition(":")
        if not sep or not user.strip() or not password:
            raise ValueError(f"{where} is not USER:PASSWORD (a name, a colon, a password): fix it.")
        found.append((user.strip(), password))
    return found


def check_file_size(value: str) -> str:
    """`value` when it is a positive size in Gradio's notation (a number and b, kb, mb, gb or tb); ValueError
    naming it otherwise, before anything is served."""
    from gradio.utils import _parse_file_size

    try:
        size = _parse_file_size(value)
    except ValueError:
        size = None
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"--max_file_size {value} is not a size such as 500mb or 2gb (a positive number and b, kb, "
                         f"mb, gb or tb): fix it.")
    return value


@dataclass(frozen=True)
class WebUIConfig:
    """How the WebUI was started (its command line)."""

    output: Path
    base_dir: Path
    host: str = DEFAULT_HOST
    port: int | None = DEFAULT_PORT  # None: Gradio takes the first free port from 7860 (read it back after launch)
    share: bool = False
    restrict_paths: bool = False  # the path policy on a loopback server (behind a reverse proxy or tunnel)
    auth: tuple[tuple[str, str], ...] = ()  # sign-in pairs; empty: no sign-in
    max_file_size: str = DEFAULT_MAX_FILE_SIZE
    train_defaults: tuple[tuple[str, Any], ...] = ()  # (option, value): the Train tab's starting values

    @property
    def restricted(self) -> bool:
        """Served beyond loopback, or asked for: paths are limited to the work folders."""
        return self.restrict_paths or self.share or not is_loopback(self.host)

    @property
    def beyond_this_machine(self) -> bool:
        """Others can reach the page: a share link or a non-loopback address."""
        return self.share or not is_loopback(self.host)

    @property
    def jobs_dir(self) -> Path:
        """Where the WebUI keeps its training jobs' records, logs and progress files."""
        return self.output / JOBS_SUBDIR

    @property
    def dataset_dir(self) -> Path:
        return self.output / "dataset"

    @property
    def export_dir(self) -> Path:
        return self.output / "ready"

    def work_folders(self) -> list[Path]:
        return [self.output.resolve(), self.base_dir.expanduser().resolve(), gradio_upload_dir().resolve()]


@dataclass(frozen=True)
class PathPolicy:
    """Resolves user-given paths and, when `restricted`, refuses those outside `roots`."""

    roots: list[Path] = field(default_factory=list)
    restricted: bool = False

    @classmethod
    def for_config(cls, config: WebUIConfig) -> PathPolicy:
        return cls(config.work_folders(), config.restricted)

    def check(self, value: str | Path, what: str) -> Path:
        """The path, resolved; PathRefused naming it when it is outside the work folders and that matters."""
        path = Path(str(value).strip()).expanduser()
        if not path.is_absolute():
            path = ROOT / path
        resolved = path.resolve()
        if self.restricted and not any(resolved.is_relative_to(root) for root in self.roots):
            folders = ", ".join(str(r) for r in self.roots)
            raise PathRefused(
                f"{what} {value} is outside the work folders ({folders}): this WebUI is shared (or started with "
                f"--restrict_paths), so it only uses files inside them. Copy the file into the output folder, or "
                f"run the WebUI on 127.0.0.1 without --restrict_paths to use any path.")
        return resolved

    def check_csv_audio(self, csv_path: str | Path) -> None:
        """When restricted: PathRefused naming the line of a CSV whose audio path lies outside the work folders
        (refused before anything is read from it, so the answer never tells whether such a file exists)."""
        if not self.restricted:
            return
        from utils.data.metadata import read_metadata, resolve_audio

        csv_path = Path(csv_path)
        for row in read_metadata(csv_path):
            self.check(resolve_audio(csv_path.parent, row.audio_file),
                       f"{csv_path.name} line {row.line}: audio")

    def check_dataset_audio(self, dataset_dir: Path) -> None:
        """`check_csv_audio` on the dataset folder's train and eval CSVs (those that exist)."""
        for name in (TRAIN_CSV, EVAL_CSV):
            if (dataset_dir / name).is_file():
                self.check_csv_audio(dataset_dir / name)

    def check_options(self, values: dict[str, Any]) -> TrainOptions:
        """TrainOptions from a JSON-like dict, every path option checked; blank optional paths mean None."""
        values = dict(values)
        for name in PATH_OPTIONS:
            value = values.get(name)
            if isinstance(value, str) and not value.strip():
                values[name] = None if name not in ("train_csv", "eval_csv", "output_path") else ""
            elif value is not None:
                values[name] = str(self.check(value, f"--{name}"))
        for name in ("train_csv", "eval_csv"):
            if values.get(name) and Path(values[name]).is_file():
                self.check_csv_audio(values[name])
        whisper = values.get("whisper_model")
        if isinstance(whisper, str):
            values["whisper_model"] = self.check_whisper_model(whisper) if whisper.strip() else None
        return TrainOptions.from_dict(values)

    def whisper_hint(self) -> str:
        """What a Whisper model box takes under this policy (the widget's hint says what check_whisper_model allows)."""
        return "a model name (this shared WebUI takes names only)" if self.restricted else \
            "a size, or the folder of a converted model"

    def check_whisper_model(self, value: str) -> str:
        """A Whisper model name, or (unrestricted only) a converted model's folder. Restricted, anything but a
        known name is refused without looking at the file system."""
        from utils.data.transcribe import whisper_model_names

        name = value.strip()
        if name in whisper_model_names() or not self.restricted:
            return name
        raise PathRefused(f"Whisper model '{name}' is not one of the model names this shared WebUI accepts "
                          f"({', '.join(whisper_model_names())}): pick one of them.")

