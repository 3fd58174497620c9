"""Checkpoint files: read safely, inspect cheaply, classify by content, list, and write atomically.

This module owns every key of the checkpoints we write. They keep the coqui trainer's layout (`config`,
`model` with `xtts.`-prefixed keys, `optimizer` as a list, `scheduler`, `scaler`, `step`, `epoch`, `date`,
`model_loss`) so coqui's own tools still read them, and add our keys beside those (see KEY_*).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import threading
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from utils.checkpoint_meta import RefusedGlobal, TensorMeta, can_read_meta, read_meta

# The coqui trainer's keys.
KEY_CONFIG = "config"
KEY_MODEL = "model"
KEY_OPTIMIZER = "optimizer"
KEY_SCHEDULER = "scheduler"
KEY_SCALER = "scaler"
KEY_STEP = "step"  # in our files: optimizer updates applied (coqui's own files: its batch counter)
KEY_EPOCH = "epoch"
KEY_DATE = "date"
KEY_LOSS = "model_loss"
# Ours.
KEY_FORMAT = "xtts_ft_format"  # int: version of what we add; its presence marks a file we wrote
KEY_VOCAB_SHA = "vocab_sha256"  # fingerprint of the vocabulary the weights were trained with
KEY_RUN_STATE = "run_state"  # dict: RNG states, data position, best loss, source (see training code)
FORMAT_VERSION = 1

MODES = ("resume", "base", "extend_vocab")
TEXT_EMBEDDING_SUFFIX = "gpt.text_embedding.weight"
PARTIAL_SUFFIX = ".tmp"  # files being written: checkpoint_N.pth.tmp, renamed when complete


class CheckpointError(ValueError):
    """A file that is not a usable XTTS checkpoint; the message names the file."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, read-only folder); the previous files are intact."""


def _coqui_config_classes() -> list:
    """Config classes a released XTTS-v2 model.pth pickles; allowed, and nothing else, when reading one."""
    from TTS.config.shared_configs import BaseAudioConfig, BaseDatasetConfig
    from TTS.tts.configs.xtts_config import XttsArgs, XttsAudioConfig, XttsConfig

    return [XttsConfig, XttsArgs, XttsAudioConfig, BaseDatasetConfig, BaseAudioConfig]


def _released_xtts_v2_globals() -> list:
    """Compatibility shim for the released XTTS-v2 model.pth (coqui-tts < 0.22 layout): it pickles XttsArgs and
    XttsAudioConfig under their old module, TTS.tts.models.xtts. Map those names to today's classes."""
    from TTS.tts.configs.xtts_config import XttsArgs, XttsAudioConfig

    legacy = [(cls, f"TTS.tts.models.xtts.{cls.__qualname__}") for cls in (XttsArgs, XttsAudioConfig)]
    return _coqui_config_classes() + legacy


# The coqui config classes a checkpoint may pickle (see _released_xtts_v2_globals), by name: what the metadata
# reader allows without importing coqui.
ALLOWED_CONFIG_NAMES = (
    "TTS.tts.configs.xtts_config.XttsConfig", "TTS.tts.configs.xtts_config.XttsArgs",
    "TTS.tts.configs.xtts_config.XttsAudioConfig", "TTS.config.shared_configs.BaseDatasetConfig",
    "TTS.config.shared_configs.BaseAudioConfig", "TTS.tts.models.xtts.XttsArgs", "TTS.tts.models.xtts.XttsAudioConfig",
)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise CheckpointError(f"Checkpoint {path} does not exist: check the path.")
    if path.is_dir():
        raise CheckpointError(f"Checkpoint {path} is a folder: pass a .pth file inside it.")
    if path.stat().st_size == 0:
        raise CheckpointError(f"Checkpoint {path} is empty (0 bytes): it was never written completely; pick another.")


def _refused(path: Path, e: Exception) -> CheckpointError:
    return CheckpointError(
        f"Checkpoint {path} was refused: it holds objects other than tensors and coqui configs "
        f"(loading it could run code). Use a checkpoint written by XTTS training. ({str(e).splitlines()[0]})"
    )


def _unreadable(path: Path, e: Exception) -> CheckpointError:
    return CheckpointError(
        f"Checkpoint {path} is not a readable PyTorch file (truncated or corrupt?): {str(e).splitlines()[0]}"
    )


def _check_xtts(path: Path, data: Any) -> dict[str, Any]:
    if isinstance(data, torch.Tensor | TensorMeta):
        raise CheckpointError(f"Checkpoint {path} holds a bare tensor, not an XTTS checkpoint.")
    if not isinstance(data, dict) or not isinstance(data.get(KEY_MODEL), dict):
        raise CheckpointError(f"Checkpoint {path} is not an XTTS checkpoint: it has no 'model' state dict.")
    if text_embedding_key(data[KEY_MODEL]) is None:
        raise CheckpointError(f"Checkpoint {path} is not an XTTS checkpoint: it has no GPT text embedding.")
    return data


def read_checkpoint(path: str | Path, *, mmap: bool = True) -> dict[str, Any]:
    """Load a checkpoint with weights_only (no code from the file runs); memory-mapped by default, so that tensor
    data is read only when touched. Raises CheckpointError naming the file for anything that is not an XTTS
    checkpoint."""
    path = Path(path)
    _check_file(path)
    try:
        with torch.serialization.safe_globals(_released_xtts_v2_globals()):
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and zipfile.is_zipfile(path))
    except pickle.UnpicklingError as e:
        raise _refused(path, e) from e
    except Exception as e:  # torch raises many types for corrupt files (RuntimeError, EOFError, IndexError...)
        raise _unreadable(path, e) from e
    return _check_xtts(path, data)


def read_checkpoint_meta(path: str | Path) -> dict[str, Any]:
    """A checkpoint's keys, scalars and tensor shapes (TensorMeta in place of tensors), without building any
    tensor: milliseconds even for a 5.6 GB file. Refuses exactly what read_checkpoint refuses."""
    path = Path(path)
    _check_file(path)
    if not can_read_meta(path):
        return read_checkpoint(path)  # a legacy (pre-zip) or broken file: the full reader decides
    try:
        data = read_meta(path)
    except RefusedGlobal as e:
        raise _refused(path, e) from e
    except Exception as e:  # zipfile and pickle raise many types for corrupt files
        raise _unreadable(path, e) from e
    return _check_xtts(path, data)


def text_embedding_key(model_state: dict[str, Any]) -> str | None:
    """The key of the GPT's text embedding, whichever prefix the file uses (`xtts.gpt.` or `gpt.`)."""
    return next((k for k in model_state if k.endswith(TEXT_EMBEDDING_SUFFIX)), None)


def optimizer_updates(optimizer_state: Any) -> int:
    """Updates applied, read from the optimizer's per-parameter `step` (the truth for any coqui checkpoint)."""
    states = optimizer_state if isinstance(optimizer_state, list) else [optimizer_state]
    steps = [
        int(param_state["step"])
        for opt in states
        if isinstance(opt, dict)
        for param_state in opt.get("state", {}).values()
        if isinstance(param_state, dict) and "step" in param_state
    ]
    return max(steps, default=0)


def has_optimizer_state(data: dict[str, Any]) -> bool:
    """True for a training checkpoint: one that carries optimizer state to resume from."""
    opt = data.get(KEY_OPTIMIZER)
    states = opt if isinstance(opt, list) else [opt]
    return any(isinstance(s, dict) and "param_groups" in s for s in states)


@dataclass
class CheckpointInfo:
    """What a checkpoint holds and what starting from it will do."""

    path: str
    mode: str  # "resume", "base" or "extend_vocab"
    step: int  # optimizer updates the file holds (0 for weights-only files)
    epoch: int | None
    checkpoint_text_tokens: int  # rows of the GPT text embedding
    tokenizer_text_tokens: int | None  # text tokens of the vocabulary it was compared with
    vocab_sha256: str | None  # the vocabulary the file records, if any
    train_loss: float | None
    eval_loss: float | None
    date: str | None
    size_bytes: int
    mtime: float
    gpt_layers: int
    model_dim: int
    written_by_us: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line saying what starting from this file will do."""
        name = Path(self.path).name
        if self.mode == "resume":
            epoch = "?" if self.epoch is None else self.epoch
            return f"Resume {name}: step {self.step}, epoch {epoch}"
        if self.mode == "extend_vocab":
            return (
                f"Fine-tune from {name} with an extended vocabulary: text rows {self.checkpoint_text_tokens} -> "
                f"{self.tokenizer_text_tokens}, step 0"
            )
        return f"Fine-tune from {name}: weights only, fresh optimizer, step 0"


def _loss(value: Any, key: str) -> float | None:
    if isinstance(value, dict):
        value = value.get(key)
    elif key == "train_loss":
        value = None
    return float(value) if isinstance(value, int | float) and value == value and value != float("inf") else None


def _gpt_layers(model_state: dict[str, Any]) -> int:
    layers = {k.split("gpt.gpt.h.")[1].split(".")[0] for k in model_state if "gpt.gpt.h." in k}
    return len(layers)


def info_from_state(path: Path, data: dict[str, Any], vocab_path: str | Path | None) -> CheckpointInfo:
    """Classify an already-loaded checkpoint dict (see classify_checkpoint)."""
    from utils.vocab import text_token_count, vocab_sha256

    model_state = data[KEY_MODEL]
    rows, dim = model_state[text_embedding_key(model_state)].shape
    recorded_sha = data.get(KEY_VOCAB_SHA)
    written_by_us = KEY_FORMAT in data
    tokenizer_tokens = text_token_count(vocab_path) if vocab_path is not None else None
    if has_optimizer_state(data):
        mode = "resume"
        step = int(data[KEY_STEP]) if written_by_us else optimizer_updates(data[KEY_OPTIMIZER])
        epoch = data.get(KEY_EPOCH)
    else:
        step, epoch = 0, None
        mode = "base"
        if vocab_path is not None:
            differs = (recorded_sha != vocab_sha256(vocab_path)) if recorded_sha else (rows != tokenizer_tokens)
            mode = "extend_vocab" if differs else "base"
    stat = path.stat()
    return CheckpointInfo(
        path=str(path),
        mode=mode,
        step=step,
        epoch=int(epoch) if isinstance(epoch, int) else None,
        checkpoint_text_tokens=int(rows),
        tokenizer_text_tokens=tokenizer_tokens,
        vocab_sha256=recorded_sha,
        train_loss=_loss(data.get(KEY_LOSS), "train_loss"),
        eval_loss=_loss(data.get(KEY_LOSS), "eval_loss"),
        date=data.get(KEY_DATE) if isinstance(data.get(KEY_DATE), str) else None,
        size_bytes=stat.st_size,
        mtime=stat.st_mtime,
        gpt_layers=_gpt_layers(model_state),
        model_dim=int(dim),
        written_by_us=written_by_us,
    )


def classify_checkpoint(path: str | Path, vocab_path: str | Path | None = None) -> CheckpointInfo:
    """Decide from the file's content how training starts from it: optimizer state -> "resume"; weights only
    and a vocabulary that differs from the one the weights were trained with -> "extend_vocab"; else "base".
    Reads only the pickled structure and a few scalars (read_checkpoint_meta), so it is fast on multi-GB files."""
    path = Path(path)
    return info_from_state(path, read_checkpoint_meta(path), vocab_path)


def checkpoint_path(folder: Path, step: int) -> Path:
    """Where a run keeps the checkpoint after `step` optimizer updates."""
    return folder / f"checkpoint_{step}.pth"


def run_checkpoints(folder: Path) -> list[Path]:
    """A run folder's own complete checkpoint_<step>.pth files, by step (the name we write; see checkpoint_path)."""
    found = [(int(p.stem.removeprefix("checkpoint_")), p) for p in folder.glob("checkpoint_*.pth")
             if p.stem.removeprefix("checkpoint_").isdigit()]
    return [p for _, p in sorted(found)]


def is_complete_checkpoint_name(path: Path) -> bool:
    return path.suffix == ".pth" and not path.name.startswith(".")


def list_checkpoints(folder: str | Path, vocab_path: str | Path | None = None) -> list[CheckpointInfo]:
    """Every readable checkpoint under `folder` (recursively), newest first. Files still being written carry
    a `.tmp` suffix and are never listed; unreadable .pth files are skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.rglob("*.pth"):
        if not path.is_file() or not is_complete_checkpoint_name(path):
            continue
        with contextlib.suppress(CheckpointError):
            found.append(classify_checkpoint(path, vocab_path))
    return sorted(found, key=lambda i: (i.mtime, i.step), reverse=True)


def _write_partial(state: dict[str, Any], path: Path) -> Path:
    """Serialise `state` to `<path>.tmp` (into the page cache; nothing is durable yet) and return that name."""
    tmp = path.with_name(path.name + PARTIAL_SUFFIX)
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
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
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
        tmp = _write_partial(state, path)
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


def fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_partial_files(folder: Path) -> list[Path]:
    """Delete leftovers of interrupted writes (`*.pth.tmp`) in `folder`; returns what was removed."""
    stale = sorted(folder.glob(f"*.pth{PARTIAL_SUFFIX}"))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale




TRAINER_ONLY_PREFIXES = ("dvae.", "torch_mel_spectrogram_style_encoder.", "torch_mel_spectrogram_dvae.")


def xtts_weights(model_state: dict[str, Any]) -> dict[str, Any]:
    """The Xtts part of any checkpoint's weights: `xtts.` prefix stripped, trainer-only modules (DVAE, mel
    extractors) dropped. Works for trainer checkpoints, exports and the released model.pth alike."""
    out = {}
    for key, value in model_state.items():
        key = key.removeprefix("xtts.")
        if not key.startswith(TRAINER_ONLY_PREFIXES):
            out[key] = value
    return out


def load_xtts_weights(xtts: torch.nn.Module, model_state: dict[str, Any], source: Path) -> None:
    """Load a checkpoint's weights into an Xtts model, refusing any missing, unexpected or mis-shaped key."""
    weights = xtts_weights(model_state)
    target = xtts.state_dict()
    missing = sorted(set(target) - set(weights))
    unexpected = sorted(set(weights) - set(target))
    wrong = [k for k in target if k in weights and tuple(weights[k].shape) != tuple(target[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} tensors of another shape (e.g. {k}: {tuple(weights[k].shape)} here, "
                         f"{tuple(target[k].shape)} expected)")
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise CheckpointError(f"Checkpoint {source} does not fit the model its config describes: {'; '.join(parts)}. "
                              f"Use a checkpoint of the same XTTS size, or the matching --base_model_dir.")
    xtts.load_state_dict(weights, strict=True)
