"""Decide how a start uses its checkpoint, before anything is built: the one planning function behind training,
`--dry_run` and the WebUI's line under the "Resume from checkpoint" picker.

Given any checkpoint, what it contains decides: optimizer state -> resume everything from exactly that file;
weights only -> fine-tune from them with a fresh optimizer; weights trained with another vocabulary -> expand
their text rows by token string once, then fine-tune.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils.base_model.folder import default_base_dir, missing_files
from utils.checkpoints.classify import CheckpointInfo, classify_checkpoint
from utils.checkpoints.keys import Mode
from utils.checkpoints.latest import latest_checkpoint
from utils.errors import RunError
from utils.options import LATEST, TrainOptions
from utils.training.run_folder import RUN_VOCAB, is_newest_in_own_run
from utils.vocabulary.tokenizer import matching_vocab, text_token_count, vocab_sha256
from utils.xtts import MODEL_FILE, VOCAB_FILE


@dataclass
class StartPlan:
    """How this start uses its checkpoint, decided before any model is built."""

    mode: Mode
    source: Path  # the file the weights (and state) come from
    info: CheckpointInfo
    vocab_path: Path  # the vocabulary this run trains with
    source_vocab_path: Path  # the vocabulary the source's weights were trained with
    run_dir: Path | None  # None: a new run folder is made once the data is checked
    continues_run: bool  # True: writing on in the source's own run folder
    latest: bool = False  # --custom_model latest was asked for
    latest_found: bool = False  # ... and found the source (else: a start from the base)

    @property
    def step(self) -> int:
        """The update count training starts from."""
        return self.info.step if self.mode is Mode.RESUME else 0

    @property
    def epoch(self) -> int:
        return (self.info.epoch or 0) if self.mode is Mode.RESUME else 0

    def describe(self) -> str:
        """One line saying what this start will do (the picker's line, and --dry_run's)."""
        line = self._describe()
        if not self.latest:
            return line
        return f"--custom_model latest is {self.source}. {line}" if self.latest_found else (
            f"--custom_model latest: no checkpoint yet. {line}")

    def _describe(self) -> str:
        name = self.source.name
        if self.mode is Mode.RESUME:
            where = ("continues in its own run folder" if self.continues_run
                     else "in a new run folder: it is not the newest checkpoint of its run")
            return f"{self.info.describe()} ({where})"
        if self.info.mode is Mode.RESUME:
            return f"Start over from {name}: weights only, fresh optimizer, step 0 (a new run folder)"
        if self.mode is Mode.EXTEND_VOCAB:
            return (f"Fine-tune from {name} with an extended vocabulary: text rows {self.info.checkpoint_text_tokens}"
                    f" -> {text_token_count(self.vocab_path)}, step 0 (a new run folder)")
        return f"Fine-tune from {name}: weights only, fresh optimizer, step 0 (a new run folder)"

    def to_dict(self) -> dict[str, Any]:
        """The plan as --dry_run --json prints it (with --custom_model latest: whether it found a checkpoint)."""
        plan = {"mode": str(self.mode), "source": str(self.source), "step": self.step, "epoch": self.epoch,
                "vocab": str(self.vocab_path), "run_dir": str(self.run_dir) if self.run_dir else None,
                "continues_run": self.continues_run}
        return {**plan, "latest_found": self.latest_found} if self.latest else plan


@dataclass
class BaseToDownload:
    """A start from the default base model that is not downloaded yet: nothing to classify until it is."""

    folder: Path

    def describe(self) -> str:
        return f"Fine-tune from the XTTS-v2 base model (downloaded into {self.folder} if missing): step 0"

    def to_dict(self) -> dict[str, Any]:
        return {"mode": str(Mode.BASE), "source": str(self.folder / MODEL_FILE), "step": 0, "epoch": 0,
                "vocab": str(self.folder / VOCAB_FILE), "run_dir": None, "continues_run": False}


def find_source_vocab(source: Path, info: CheckpointInfo, candidates: list[Path]) -> Path:
    """The vocabulary the source's weights were trained with: the one whose fingerprint the file records
    (looked for beside the file, then among `candidates`), else the base folder's (the last candidate)."""
    if not info.vocab_sha256:
        return candidates[-1]
    found = matching_vocab(info.vocab_sha256, [source.parent / RUN_VOCAB, *candidates])
    if found is not None:
        return found
    raise RunError(
        f"{source} was trained with a vocabulary (sha256 {info.vocab_sha256[:12]}...) that is neither beside it nor "
        f"given: pass that vocab.json with --vocab."
    )


def plan_start(opts: TrainOptions, base_vocab: Path, base_model: Path) -> StartPlan:
    """Classify the start file (its pickled structure only: no tensor data) and decide mode, vocabularies and
    run folder."""
    found = latest_checkpoint(opts.output_path) if opts.custom_model == LATEST else None
    custom = str(found) if found else (None if opts.custom_model == LATEST else opts.custom_model)
    source = Path(custom) if custom else base_model
    info = classify_checkpoint(source, opts.vocab or base_vocab)
    candidates = [Path(opts.vocab)] if opts.vocab else []
    source_vocab = find_source_vocab(source, info, [*candidates, base_vocab])
    mode = info.mode
    if mode is Mode.RESUME and not opts.restart:
        if opts.vocab and vocab_sha256(opts.vocab) != vocab_sha256(source_vocab):
            raise RunError(
                f"--vocab {opts.vocab} differs from the vocabulary {source.name} was trained with ({source_vocab}): "
                f"resume without --vocab, or use --restart to fine-tune its weights with a new vocabulary."
            )
        vocab = source_vocab
        continues = is_newest_in_own_run(source)
    else:
        vocab = Path(opts.vocab) if opts.vocab else base_vocab
        mode = Mode.BASE if vocab_sha256(vocab) == vocab_sha256(source_vocab) else Mode.EXTEND_VOCAB
        continues = False
    return StartPlan(mode, source, info, vocab, source_vocab, source.parent if continues else None, continues,
                     latest=opts.custom_model == LATEST, latest_found=found is not None)


def base_folder(opts: TrainOptions) -> Path:
    """The base model folder a start uses: --base_model_dir, else the default (download) folder."""
    return Path(opts.base_model_dir) if opts.base_model_dir else default_base_dir()


def preview_start(opts: TrainOptions) -> StartPlan | BaseToDownload:
    """The plan training would make for `opts`, with no side effect (nothing downloaded, created or changed)."""
    folder = base_folder(opts)
    from_base = not opts.custom_model or (opts.custom_model == LATEST and latest_checkpoint(opts.output_path) is None)
    if from_base and not opts.base_model_dir and missing_files(folder):
        return BaseToDownload(folder)
    return plan_start(opts, folder / VOCAB_FILE, folder / MODEL_FILE)


def start_line(opts: TrainOptions) -> str:
    """One line saying what starting with `opts` will do ('Resume checkpoint_17000.pth: step 17000, ...')."""
    return preview_start(opts).describe()
