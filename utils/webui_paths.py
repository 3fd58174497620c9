"""Where the WebUI may read and write: the work folders, and the rule for paths a user types.

On loopback (the default) the person at the browser is the person at the machine: any local path is accepted.
Served beyond loopback (`--share`, or `--host` other than a loopback address), every path a user gives is
resolved (symbolic links followed) and must lie inside a work folder: the output folder, the base model folder
or Gradio's upload folder. The same folders are Gradio's `allowed_paths`, the only files it serves.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from utils.options import TrainOptions

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5003  # the port of the popular XTTS fine-tuning WebUI, so bookmarks keep working
PATH_OPTIONS = ("train_csv", "eval_csv", "output_path", "base_model_dir", "custom_model", "vocab", "progress_jsonl")


class PathRefused(ValueError):
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

    def check_optional(self, value: str | Path | None, what: str) -> Path | None:
        return None if value is None or not str(value).strip() else self.check(value, what)

    def check_options(self, values: dict[str, Any]) -> TrainOptions:
        """TrainOptions from a JSON-like dict, every path option checked; blank optional paths mean None."""
        values = dict(values)
        for name in PATH_OPTIONS:
            value = values.get(name)
            if isinstance(value, str) and not value.strip():
                values[name] = None if name not in ("train_csv", "eval_csv", "output_path") else ""
            elif value is not None:
                values[name] = str(self.check(value, f"--{name}"))
        run_name = values.get("run_name")
        if isinstance(run_name, str) and (not run_name.strip() or "/" in run_name or "\\" in run_name
                                          or ".." in run_name):
            raise ValueError(f"--run_name '{run_name}' must be a plain folder-name prefix (no '/', '\\' or '..').")
        return TrainOptions.from_dict({name: coerce_option(name, value) for name, value in values.items()})


def option_kind(f: dataclasses.Field) -> type:
    """The Python type of a TrainOptions field (its annotation is a string: 'int | None', 'float', ...)."""
    kind = str(f.type)
    return next((t for name, t in (("int", int), ("float", float), ("bool", bool)) if kind.startswith(name)), str)


def coerce_option(name: str, value: Any) -> Any:
    """A JSON or widget value as the type the option takes (10.0 -> 10 for an int); ValueError naming it."""
    fields = {f.name: f for f in dataclasses.fields(TrainOptions)}
    if name not in fields:
        return value  # from_dict names unknown options
    f = fields[name]
    optional = "None" in str(f.type)
    if value is None or (optional and isinstance(value, str) and not value.strip()):
        if optional:
            return None
        if value is None:
            return f.default
    kind = option_kind(f)
    try:
        if kind is bool:
            if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.strip().lower() in ("true", "1", "yes")
            if isinstance(value, bool | int):
                return bool(value)
            raise ValueError
        if kind is int:
            number = float(value)
            if number != int(number):
                raise ValueError
            return int(number)
        if kind is float:
            return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"--{name} must be {'true or false' if kind is bool else f'a number ({kind.__name__})'}, "
                         f"got {value!r}.") from None
    return str(value)
