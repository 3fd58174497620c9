"""Classify a checkpoint by its content (what starting from it will do) and list a folder's checkpoints."""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from utils.checkpoints.keys import (
    KEY_DATE,
    KEY_EPOCH,
    KEY_FORMAT,
    KEY_LOSS,
    KEY_MODEL,
    KEY_OPTIMIZER,
    KEY_RUN_STATE,
    KEY_STEP,
    KEY_VOCAB_SHA,
    RUN_STATE_QUALITY,
    CheckpointError,
    Mode,
    gpt_layers,
    is_complete_checkpoint_name,
    text_embedding_key,
)
from utils.checkpoints.read import read_checkpoint_meta, unreadable_error
from utils.errors import UserInputError
from utils.vocabulary.tokenizer import text_token_count, vocab_sha256


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
    mode: Mode
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
    cer: float | None = None  # the latest quality scores of the run at this checkpoint (--quality_every)
    speaker_similarity: float | None = None
    mos: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line saying what starting from this file will do."""
        name = Path(self.path).name
        if self.mode is Mode.RESUME:
            epoch = "?" if self.epoch is None else self.epoch
            return f"Resume {name}: step {self.step}, epoch {epoch}"
        if self.mode is Mode.EXTEND_VOCAB:
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


def info_from_state(path: Path, data: dict[str, Any], vocab_path: str | Path | None) -> CheckpointInfo:
    """Classify an already-loaded checkpoint dict (see classify_checkpoint)."""
    model_state = data[KEY_MODEL]
    rows, dim = model_state[text_embedding_key(model_state)].shape
    recorded_sha = data.get(KEY_VOCAB_SHA)
    written_by_us = KEY_FORMAT in data
    tokenizer_tokens = text_token_count(vocab_path) if vocab_path is not None else None
    if has_optimizer_state(data):
        mode = Mode.RESUME
        step = int(data[KEY_STEP]) if written_by_us else optimizer_updates(data[KEY_OPTIMIZER])
        epoch = data.get(KEY_EPOCH)
    else:
        step, epoch = 0, None
        mode = Mode.BASE
        if vocab_path is not None:
            differs = (recorded_sha != vocab_sha256(vocab_path)) if recorded_sha else (rows != tokenizer_tokens)
            mode = Mode.EXTEND_VOCAB if differs else Mode.BASE
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
        gpt_layers=gpt_layers(model_state),
        model_dim=int(dim),
        written_by_us=written_by_us,
        **quality_scores(data),
    )


def quality_scores(data: dict[str, Any]) -> dict[str, float | None]:
    """cer, speaker_similarity and mos of the latest quality evaluation a checkpoint records (None without)."""
    run_state = data.get(KEY_RUN_STATE)
    quality = run_state.get(RUN_STATE_QUALITY) if isinstance(run_state, dict) else None
    latest = quality.get("latest") if isinstance(quality, dict) else None
    latest = latest if isinstance(latest, dict) else {}
    return {name: _score(latest.get(name)) for name in ("cer", "speaker_similarity", "mos")}


def _score(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and value == value else None


def classify_checkpoint(path: str | Path, vocab_path: str | Path | None = None) -> CheckpointInfo:
    """Decide from the file's content how training starts from it: optimizer state -> "resume"; weights only
    and a vocabulary that differs from the one the weights were trained with -> "extend_vocab"; else "base".
    Reads only the pickled structure and a few scalars (read_checkpoint_meta), so it is fast on multi-GB files."""
    path = Path(path)
    data = read_checkpoint_meta(path)
    try:
        return info_from_state(path, data, vocab_path)
    except UserInputError:
        raise  # the vocabulary's own error, naming it
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:  # a scalar (the step) read from a corrupt record
        raise unreadable_error(path, e) from e
    except (ValueError, AttributeError, TypeError, KeyError, IndexError, OverflowError) as e:
        raise CheckpointError(f"Checkpoint {path} is not an XTTS checkpoint: {type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else 'a value of the wrong kind'}.") from e


@dataclass
class UnusableCheckpoint:
    """A .pth file under a listed folder that cannot be classified, and why: one row of the listing."""

    path: str
    error: str
    size_bytes: int
    mtime: float
    mode: None = None
    step: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return self.error


def list_checkpoints(folder: str | Path, vocab_path: str | Path | None = None, *,
                     include_unusable: bool = False) -> list[Any]:
    """Every readable checkpoint under `folder` (recursively), newest first, as CheckpointInfo. Files still being
    written carry a `.tmp` suffix and are never listed; a .pth file that cannot be classified is left out, or,
    with `include_unusable`, listed as an UnusableCheckpoint saying why (the rest of the list is unaffected)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found: list[Any] = []
    for path in folder.rglob("*.pth"):
        if not path.is_file() or not is_complete_checkpoint_name(path):
            continue
        try:
            found.append(classify_checkpoint(path, vocab_path))
        except (CheckpointError, OSError) as e:
            if include_unusable and path.is_file():  # a file pruned meanwhile is simply gone
                stat = path.stat()
                found.append(UnusableCheckpoint(str(path), str(e), stat.st_size, stat.st_mtime))
    return sorted(found, key=lambda i: (i.mtime, i.step), reverse=True)
