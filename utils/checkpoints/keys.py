"""Every key of the checkpoints we write, the names of checkpoint files, and the three start modes.

Our checkpoints keep the coqui trainer's layout (`config`, `model` with `xtts.`-prefixed keys, `optimizer` as a
list, `scheduler`, `scaler`, `step`, `epoch`, `date`, `model_loss`) so coqui's own tools still read them, and
add our keys beside those (KEY_FORMAT and after). A leaf module: nothing heavy, nothing of ours but leaves.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

from utils.errors import UserInputError
from utils.fsio import PARTIAL_SUFFIX

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
RUN_STATE_QUALITY = "quality"  # in run_state: the latest quality scores, the --best_by tracker, the reference
KEY_OPTIMIZER_NAME = "optimizer_name"  # "adamw" or "adamw8bit": which optimizer's state KEY_OPTIMIZER holds
FORMAT_VERSION = 1

TEXT_EMBEDDING_SUFFIX = "gpt.text_embedding.weight"
BEST_MODEL = "best_model.pth"  # the run's best checkpoint so far, beside checkpoint_<step>.pth

__all__ = ["PARTIAL_SUFFIX"]


class Mode(StrEnum):
    """How a start uses its checkpoint (str-valued: JSON, the API and progress events carry the plain strings)."""

    RESUME = "resume"  # a training checkpoint: everything restored from exactly that file
    BASE = "base"  # weights only, text rows fit the vocabulary: fresh optimizer, step 0
    EXTEND_VOCAB = "extend_vocab"  # weights only, another vocabulary: text rows expanded once, then base


class CheckpointError(UserInputError, ValueError):
    """A file that is not a usable XTTS checkpoint; the message names the file."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, read-only folder); the previous files are intact."""


# The coqui config classes a checkpoint may pickle (see read._released_xtts_v2_globals), by name: what the
# metadata reader allows without importing coqui.
ALLOWED_CONFIG_NAMES = (
    "TTS.tts.configs.xtts_config.XttsConfig", "TTS.tts.configs.xtts_config.XttsArgs",
    "TTS.tts.configs.xtts_config.XttsAudioConfig", "TTS.config.shared_configs.BaseDatasetConfig",
    "TTS.config.shared_configs.BaseAudioConfig", "TTS.tts.models.xtts.XttsArgs", "TTS.tts.models.xtts.XttsAudioConfig",
)


def text_embedding_key(model_state: dict[str, Any]) -> str | None:
    """The key of the GPT's text embedding, whichever prefix the file uses (`xtts.gpt.` or `gpt.`)."""
    return next((k for k in model_state if k.endswith(TEXT_EMBEDDING_SUFFIX)), None)


def gpt_layers(model_state: dict[str, Any]) -> int:
    """Number of GPT blocks in a model state (any key prefix)."""
    return len({k.split("gpt.gpt.h.")[1].split(".")[0] for k in model_state if "gpt.gpt.h." in k})


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
