"""Every training option in one dataclass; the CLI's parser and the WebUI's widgets are both built from it."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def opt(help_text: str, *aliases: str, ui: bool = True) -> dict[str, Any]:
    """Field metadata: the help text, extra flag spellings, and whether the WebUI shows it."""
    return {"help": help_text, "aliases": aliases, "ui": ui}


@dataclass
class TrainOptions:
    """What `python utils/gpt_train.py` accepts. Paths are strings so the object round-trips through JSON."""

    train_csv: str = field(default="", metadata=opt("training CSV, coqui format: audio_file|text|speaker_name"))
    eval_csv: str = field(default="", metadata=opt("evaluation CSV, same format"))
    output_path: str = field(default="", metadata=opt("work folder; runs go to <it>/run/training/", "--out_path"))
    base_model_dir: str | None = field(
        default=None, metadata=opt("XTTS-v2 base folder (model.pth, config.json, vocab.json, dvae.pth, mel_stats.pth)")
    )
    custom_model: str | None = field(
        default=None, metadata=opt("checkpoint to start from; its content decides: resume, base or extend_vocab")
    )
    vocab: str | None = field(default=None, metadata=opt("vocabulary to train with (default: the base folder's)"))
    language: str = field(default="en", metadata=opt("language code of the dataset"))
    num_epochs: int = field(default=10, metadata=opt("epochs to train in total"))
    batch_size: int = field(default=2, metadata=opt("samples per batch"))
    grad_accum: int = field(default=1, metadata=opt("batches per optimizer update", "--grad_acumm"))
    lr: float = field(default=5e-6, metadata=opt("learning rate"))
    save_step: int = field(default=1000, metadata=opt("save a checkpoint every N optimizer updates"))
    max_steps: int | None = field(
        default=None, metadata=opt("stop after N optimizer updates in total (counting the checkpoint's)")
    )
    seed: int = field(default=1, metadata=opt("training seed"))
    num_workers: int = field(default=0, metadata=opt("data loader worker processes"))
    restart: bool = field(
        default=False, metadata=opt("use a training checkpoint's weights only: fresh optimizer, step 0")
    )
    max_audio_length: float = field(default=11.0, metadata=opt("longest training clip in seconds"))
    keep_checkpoints: int = field(default=2, metadata=opt("newest checkpoints to keep (the best is kept besides)"))
    mixed_precision: bool = field(default=False, metadata=opt("fp16/bf16 training on a GPU"))
    print_step: int = field(
        default=25, metadata=opt("print training stats every N batches (--debug: every batch)", ui=False)
    )
    debug: bool = field(default=False, metadata=opt("show tracebacks and the trainer's debug output", ui=False))
    run_name: str = field(default="GPT_XTTS_FT", metadata=opt("prefix of new run folder names", ui=False))
    progress_jsonl: str | None = field(
        default=None, metadata=opt("also append JSON-lines progress events to this file", ui=False)
    )

    def validate(self) -> None:
        """Refuse bad values before any model loads: a ValueError naming the option."""
        for name in ("train_csv", "eval_csv", "output_path"):
            if not getattr(self, name):
                raise ValueError(f"--{name} is required.")
        positive = ("num_epochs", "batch_size", "grad_accum", "save_step", "keep_checkpoints", "print_step")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, got {getattr(self, name)}.")
        if self.max_steps is not None and self.max_steps < 0:
            raise ValueError(f"--max_steps must be 0 or more, got {self.max_steps}.")
        if self.num_workers < 0:
            raise ValueError(f"--num_workers must be 0 or more, got {self.num_workers}.")
        if not self.lr > 0:
            raise ValueError(f"--lr must be positive, got {self.lr}.")
        if not self.max_audio_length > 0:
            raise ValueError(f"--max_audio_length must be positive (seconds), got {self.max_audio_length}.")
        if self.restart and not self.custom_model:
            raise ValueError("--restart needs --custom_model: the checkpoint whose weights to start over from.")
        out = Path(self.output_path)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--output_path {out} is a file: pass a folder.")

    def to_argv(self) -> list[str]:
        """The command-line arguments that reproduce these options (for launching the CLI as a subprocess)."""
        argv: list[str] = []
        defaults = TrainOptions()
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None or value == getattr(defaults, f.name):
                continue
            if isinstance(value, bool):
                argv.append(f"--{f.name}")
            else:
                argv += [f"--{f.name}", str(value)]
        return argv

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainOptions:
        """Build from a JSON-like dict, refusing unknown keys by name."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"Unknown training option(s): {', '.join(unknown)}.")
        return cls(**values)


def _value_type(f: dataclasses.Field) -> type:
    kind = str(f.type)
    for name, t in (("int", int), ("float", float), ("bool", bool)):
        if kind.startswith(name):
            return t
    return str


def add_options(parser: argparse.ArgumentParser) -> None:
    """Add one flag per TrainOptions field (with its aliases) to `parser`."""
    for f in dataclasses.fields(TrainOptions):
        flags = [f"--{f.name}", *f.metadata["aliases"]]
        kind = _value_type(f)
        if kind is bool:
            parser.add_argument(*flags, dest=f.name, action="store_true", help=f.metadata["help"])
        else:
            parser.add_argument(*flags, dest=f.name, type=kind, default=f.default, help=f.metadata["help"])


def options_from_namespace(ns: argparse.Namespace) -> TrainOptions:
    return TrainOptions(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(TrainOptions)})
