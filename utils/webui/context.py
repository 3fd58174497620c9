"""What the WebUI's tabs share: the context (config, path rule, training job, loaded voice) and small helpers.

Nothing here builds widgets; the tab modules (utils/webui/tabs/<tab>.py) do, inside functions.
"""

from __future__ import annotations

import datetime
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from utils.errors import UserInputError
from utils.webui.jobs import TrainingJobs
from utils.webui.paths import PathPolicy, PathRefused, WebUIConfig
from utils.webui.run_history import RunHistories
from utils.webui.scoring import ScorerCache
from utils.xtts import EVAL_CSV, LANG_FILE, MODEL_FILE, TRAIN_CSV, VOCAB_FILE

# What a handler shows as a sentence on the page: the user's input is wrong (UserInputError: CheckpointError,
# DatasetError, PathRefused, ...), a value refused (ValueError) or a file that cannot be read or written (OSError).
# Anything else (a RuntimeError, out of memory) is a bug or a fault: Gradio shows it as an error.
ANTICIPATED = (UserInputError, ValueError, OSError)
LABEL_SCORES = (("cer", "CER", 2), ("speaker_similarity", "similarity", 2), ("mos", "MOS", 1))
BASE_CHOICE = ("Base model (no checkpoint): fine-tune its weights from step 0", "")


@dataclass
class VoiceCache:
    """The last voice loaded on the Test tab, kept so that a second sentence does not load it again."""

    key: tuple[str, float, str] | None = None
    voice: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, path: Path, vocab: Path | None):
        from utils.voice.inference import load_voice, model_file

        source = model_file(path)
        key = (str(source), source.stat().st_mtime, str(vocab or ""))
        with self.lock:
            if key != self.key:
                self.voice, self.key = None, None  # free the old model before loading the next
                self.voice, self.key = load_voice(path, vocab=vocab), key
            return self.voice


@dataclass
class WebUIContext:
    """Everything a handler needs besides its inputs; one per running WebUI (no module globals)."""

    config: WebUIConfig
    policy: PathPolicy
    jobs: TrainingJobs
    voices: VoiceCache = field(default_factory=VoiceCache)
    histories: RunHistories = field(default_factory=RunHistories)  # the Train tab's plots: whole runs
    scorer: ScorerCache = field(default_factory=ScorerCache)  # the Test tab's scores, loaded on first use

    @classmethod
    def create(cls, config: WebUIConfig, jobs: TrainingJobs | None = None) -> WebUIContext:
        """The context of a starting WebUI: jobs are kept in its own folder, and a training job an earlier WebUI
        left running there is taken over."""
        jobs = jobs or TrainingJobs()
        jobs.attach(config.jobs_dir)
        jobs.adopt_running()
        return cls(config, PathPolicy.for_config(config), jobs)

    def base_vocab(self, base_dir: str | Path | None = None) -> Path | None:
        """The base folder's vocab.json, when it is there."""
        vocab = Path(base_dir or self.config.base_dir) / VOCAB_FILE
        return vocab if vocab.is_file() else None

    def dataset_language(self, default: str = "en") -> str:
        lang = self.config.dataset_dir / LANG_FILE
        return (lang.read_text(encoding="utf-8").strip() if lang.is_file() else "") or default


def error_text(e: BaseException | str) -> str:
    """One line a person reads: the exception's own sentence (our errors are written for people)."""
    text = str(e).strip() or type(e).__name__
    return f"⚠️ {text}"


def size_text(size: int) -> str:
    units = ["B", "KB", "MB", "GB", "TB"]
    value, unit = float(size), 0
    while value >= 1000 and unit < len(units) - 1:
        value, unit = value / 1000, unit + 1
    return f"{value:.0f} {units[unit]}" if unit < 2 else f"{value:.1f} {units[unit]}"


def checkpoint_label(info: Any, root: Path | None = None) -> str:
    """'checkpoint_8.pth (run X) · step 8 · epoch 1 · eval 6.950 · 2026-01-02 10:00 · 310 MB · resume'."""
    path = Path(info.path)
    where = path.parent.name if root is None else str(path.parent.relative_to(root)) if path.is_relative_to(root) \
        else str(path.parent)
    if info.mode is None:  # an UnusableCheckpoint: the row says why
        return f"{path.name} ({where}) · unusable: {info.error}"
    parts = [f"{path.name} ({where})", f"step {info.step}"]
    if info.epoch is not None:
        parts.append(f"epoch {info.epoch}")
    if info.eval_loss is not None:
        parts.append(f"eval {info.eval_loss:.3f}")
    parts += [f"{name} {getattr(info, key):.{digits}f}" for key, name, digits in LABEL_SCORES
              if isinstance(getattr(info, key, None), int | float)]  # the quality scores it recorded, if any
    parts.append(datetime.datetime.fromtimestamp(info.mtime).strftime("%Y-%m-%d %H:%M"))
    parts.append(size_text(info.size_bytes))
    parts.append({"resume": "resume", "base": "weights only", "extend_vocab": "extend vocabulary"}[info.mode])
    return " · ".join(parts)


def checkpoint_choices(folder: Path, vocab: Path | None = None) -> tuple[list[tuple[str, str]], list[Any]]:
    """(label, path) choices for every checkpoint under `folder`, newest first, and their CheckpointInfo (or
    UnusableCheckpoint: a row saying why that file cannot be used)."""
    from utils.checkpoints.classify import list_checkpoints

    infos = list_checkpoints(folder, vocab, include_unusable=True) if folder.is_dir() else []
    return [(checkpoint_label(i, folder), i.path) for i in infos], infos


def preselect(infos: list[Any]) -> str:
    """The newest training checkpoint (not best_model.pth, which starts a new run folder), else the newest."""
    for info in infos:
        if info.mode == "resume" and Path(info.path).name != "best_model.pth":
            return info.path
    usable = [info for info in infos if info.mode is not None]
    return usable[0].path if usable else ""


def dataset_clips(dataset_dir: Path, policy: PathPolicy, limit: int = 500) -> list[tuple[str, str]]:
    """(label, absolute path) of the dataset's clips, for picking a reference speaker clip. A CSV line naming
    audio outside the work folders of a restricted WebUI is left out before its file is looked at, so the list
    never tells whether such a file exists."""
    from utils.data.metadata import read_metadata, resolve_audio

    clips: list[tuple[str, str]] = []
    for name in (TRAIN_CSV, EVAL_CSV):
        csv_path = dataset_dir / name
        if not csv_path.is_file():
            continue
        try:
            rows = read_metadata(csv_path)
        except ValueError:
            continue
        for row in rows:
            try:
                audio = policy.check(resolve_audio(dataset_dir, row.audio_file), "Reference clip")
            except PathRefused:
                continue
            if audio.is_file() and len(clips) < limit:
                clips.append((f"{row.audio_file}: {row.text[:60]}", str(audio)))
    return clips


def model_choices(config: WebUIConfig) -> list[tuple[str, str]]:
    """Choices for the Test and Export tabs: the export folder (if any), then every checkpoint."""
    choices = []
    if (config.export_dir / MODEL_FILE).is_file():
        choices.append((f"Export: {config.export_dir}", str(config.export_dir)))
    return choices + checkpoint_choices(config.output)[0]
