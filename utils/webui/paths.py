"""Where the WebUI may read and write: the work folders, and the rule for paths a user types.

On loopback (the default) the person at the browser is the person at the machine: any local path is accepted.
Served beyond loopback (`--share`, or `--host` other than a loopback address), every path a user gives is
resolved (symbolic links followed) and must lie inside a work folder: the output folder, the base model folder
or Gradio's upload folder. The same folders are Gradio's `allowed_paths`, the only files it serves.
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from utils.errors import UserInputError
from utils.options import TrainOptions

ROOT = Path(__file__).resolve().parents[2]  # the repository: relative paths a user types start here
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5003  # the port of the popular XTTS fine-tuning WebUI, so bookmarks keep working
PATH_OPTIONS = ("train_csv", "eval_csv", "output_path", "base_model_dir", "custom_model", "vocab", "progress_jsonl")


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


@dataclass(frozen=True)
class WebUIConfig:
    """How the WebUI was started (its command line)."""

    output: Path
    base_dir: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    share: bool = False

    @property
    def restricted(self) -> bool:
        """Served beyond loopback: paths are limited to the work folders."""
        return self.share or not is_loopback(self.host)

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
                f"{what} {value} is outside the work folders ({folders}): this WebUI is served beyond this computer, "
                f"so it only uses files inside them. Copy the file into the output folder, or run the WebUI on "
                f"127.0.0.1 to use any path.")
        return resolved

    def check_options(self, values: dict[str, Any]) -> TrainOptions:
        """TrainOptions from a JSON-like dict, every path option checked; blank optional paths mean None."""
        values = dict(values)
        for name in PATH_OPTIONS:
            value = values.get(name)
            if isinstance(value, str) and not value.strip():
                values[name] = None if name not in ("train_csv", "eval_csv", "output_path") else ""
            elif value is not None:
                values[name] = str(self.check(value, f"--{name}"))
        return TrainOptions.from_dict(values)

