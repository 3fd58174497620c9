"""Options as dataclasses, and the one conversion of such a dataclass to argparse flags, WebUI widget kinds,
a subprocess argv and JSON. `TrainOptions` is what `python utils/gpt_train.py` accepts; the dataset commands
declare theirs with the same `opt()`."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
LATEST = "latest"  # --custom_model latest: the newest checkpoint under --output_path (utils/checkpoints/latest.py)
BEST_BY = ("eval_loss", "quality")  # what best_model.pth follows: the eval loss or the quality scores
WEBUI_QUALITY_EVERY = 1000  # the WebUI starts runs with quality evaluations on, every this many updates
MAX_UPDATES = 1_000_000_000  # bound of the update counts (no run takes a billion updates): refuses typos only


def opt(help_text: str, *aliases: str, ui: bool = True, choices: Sequence[str] | None = None,
        low: float | None = None, high: float | None = None, words: Sequence[str] = ()) -> dict[str, Any]:
    """Field metadata: the help text, extra flag spellings, whether the WebUI shows it, and its allowed values
    (`choices`, or the range `low`..`high`, inclusive; `words`: strings a number field also takes, e.g. 'auto')."""
    return {"help": help_text, "aliases": aliases, "ui": ui, "choices": tuple(choices) if choices else None,
            "low": low, "high": high, "words": tuple(words)}


def field_kind(f: dataclasses.Field) -> type:
    """The value type of a field: int, float, bool or str (annotations are strings: 'int | None', 'float')."""
    kind = str(f.type)
    return next((t for name, t in (("int", int), ("float", float), ("bool", bool)) if kind.startswith(name)), str)


def is_optional(f: dataclasses.Field) -> bool:
    return "None" in str(f.type)


def fields_of(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def range_text(f: dataclasses.Field) -> str:
    """The allowed values as README and --help state them: 'between 1 and 1024', 'at least 0', 'auto, cpu or
    cuda'."""
    meta = f.metadata
    if meta.get("choices"):
        *head, last = meta["choices"]
        return f"{', '.join(head)} or {last}" if head else last
    words = "".join(f"{w} or a number " for w in meta.get("words", ()))
    low, high = meta.get("low"), meta.get("high")
    if low is not None and high is not None:
        return f"{words}between {_number(low)} and {_number(high)}"
    if low is not None:
        return f"{words}at least {_number(low)}"
    return words.strip() if high is None else f"{words}at most {_number(high)}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def check_value(f: dataclasses.Field, value: Any) -> None:
    """ValueError naming the option when `value` lies outside its declared choices or range."""
    if value is None or value in f.metadata.get("words", ()):
        return
    meta = f.metadata
    if meta.get("choices") and value not in meta["choices"]:
        raise ValueError(f"--{f.name} must be {range_text(f)}, got {value!r}.")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    low, high = meta.get("low"), meta.get("high")
    if (low is not None and not value >= low) or (high is not None and not value <= high):
        raise ValueError(f"--{f.name} must be {range_text(f)}, got {value!r}.")


def check_ranges(obj: Any) -> None:
    for f in dataclasses.fields(obj):
        check_value(f, getattr(obj, f.name))


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, *,
                  dashed: bool = False, show_defaults: bool = False, only: Sequence[str] | None = None) -> None:
    """One flag per field of `cls` (with its aliases; `dashed`: also --with-dashes; `only`: these fields alone).
    Booleans take --flag and --no-flag."""
    for f in dataclasses.fields(cls):
        if only is not None and f.name not in only:
            continue
        meta = f.metadata
        flags = [f"--{f.name}", *meta.get("aliases", ())]
        if dashed and "_" in f.name:
            flags.insert(1, f"--{f.name.replace('_', '-')}")
        allowed = range_text(f)
        help_text = meta.get("help", "") + (f" ({allowed})" if allowed and not meta.get("choices") else "")
        if show_defaults:
            help_text += f" (default: {f.default})"
        kwargs: dict[str, Any] = {"dest": f.name, "default": f.default, "help": help_text}
        if field_kind(f) is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = _number_or_word(f) if meta.get("words") else field_kind(f)
            if meta.get("choices"):
                kwargs["choices"] = meta["choices"]
        parser.add_argument(*flags, **kwargs)


def _number_or_word(f: dataclasses.Field) -> Any:
    """argparse's type for a number field that also takes words ('auto'): the word as given, else the number."""
    def parse(text: str) -> Any:
        return coerce(f, text)

    parse.__name__ = f"{field_kind(f).__name__} or {' or '.join(f.metadata['words'])}"  # argparse's error names it
    return parse


def from_namespace(cls: type[T], ns: argparse.Namespace) -> T:
    """Build `cls` from parsed arguments; a blank string means None for an optional field."""
    values = {}
    for f in dataclasses.fields(cls):
        value = getattr(ns, f.name)
        if isinstance(value, str) and not value.strip() and is_optional(f):
            value = None
        values[f.name] = value
    return cls(**values)


def from_dict(cls: type[T], values: dict[str, Any], what: str = "") -> T:
    """Build `cls` from a JSON-like or widget dict: unknown keys refused by name ('Unknown <what> option(s)'),
    each value coerced to its field's type (10.0 -> 10 for an int, "" -> None for an optional field)."""
    known = fields_of(cls)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"Unknown {what + ' ' if what else ''}option(s): {', '.join(unknown)}.")
    return cls(**{name: coerce(known[name], value) for name, value in values.items()})


def coerce(f: dataclasses.Field, value: Any) -> Any:
    """`value` as the type field `f` takes; ValueError naming the option."""
    if value is None or (is_optional(f) and isinstance(value, str) and not value.strip()):
        return None if is_optional(f) else f.default
    if isinstance(value, str) and value.strip().lower() in f.metadata.get("words", ()):
        return value.strip().lower()
    kind = field_kind(f)
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
    except (TypeError, ValueError, OverflowError):
        words = "".join(f"{w} or " for w in f.metadata.get("words", ()))
        wanted = "true or false" if kind is bool else f"{words}a number ({kind.__name__})"
        raise ValueError(f"--{f.name} must be {wanted}, got {value!r}.") from None
    return str(value)


def to_argv(obj: Any) -> list[str]:
    """The command-line arguments that reproduce `obj` (fields at their default are left out)."""
    argv: list[str] = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is None or value == f.default:
            continue
        if isinstance(value, bool):
            argv.append(f"--{f.name}" if value else f"--no-{f.name}")
        else:
            argv += [f"--{f.name}", str(value)]
    return argv


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
        default=None, metadata=opt("checkpoint to start from; its content decides: resume, base or extend_vocab; "
                                   "'latest': the newest checkpoint under --output_path (none yet: the base)")
    )
    vocab: str | None = field(default=None, metadata=opt("vocabulary to train with (default: the base folder's)"))
    language: str = field(default="en", metadata=opt("language code of the dataset"))
    num_epochs: int = field(default=10, metadata=opt("epochs to train in total", low=1, high=100_000))
    batch_size: int | str = field(default=2, metadata=opt(
        "samples per batch; auto (GPU only): the largest that fits this GPU with the dataset's longest clips, found "
        "by a few trial steps before training and recorded in the run, so a resume uses the same", low=1, high=1024,
        words=("auto",)))
    grad_accum: int = field(default=1, metadata=opt("batches per optimizer update", "--grad_acumm", low=1, high=1024))
    lr: float = field(default=5e-6, metadata=opt("learning rate", low=1e-12, high=1.0))
    save_step: int = field(default=1000, metadata=opt("save a checkpoint every N optimizer updates", low=1,
                                                      high=MAX_UPDATES))
    max_steps: int | None = field(
        default=None, metadata=opt("stop after N optimizer updates in total (counting the checkpoint's)", low=0,
                                high=MAX_UPDATES)
    )
    seed: int = field(default=1, metadata=opt("training seed", low=0, high=2**32 - 1))
    num_workers: int = field(default=0, metadata=opt("data loader worker processes", low=0, high=64))
    restart: bool = field(
        default=False, metadata=opt("use a training checkpoint's weights only: fresh optimizer, step 0")
    )
    max_audio_length: float = field(default=11.0, metadata=opt("longest training clip in seconds", low=0.5,
                                                               high=60.0))
    keep_checkpoints: int = field(default=2, metadata=opt("newest checkpoints to keep (the best is kept besides)",
                                                          low=1, high=1000))
    mixed_precision: bool = field(default=False, metadata=opt("the same as --precision fp16", ui=False))
    precision: str = field(default="fp32", metadata=opt(
        "number format of the forward pass: fp16 (GPU only, with a grad scaler), bf16 (autocast without a scaler; "
        "on CPU too, on a GPU only where it supports bf16) or fp32", choices=("fp32", "fp16", "bf16")))
    gradient_checkpointing: bool = field(default=False, metadata=opt(
        "recompute the GPT's activations in the backward pass: less GPU memory, about a third more time per step"))
    optimizer: str = field(default="adamw", metadata=opt(
        "adamw (torch) or adamw8bit (bitsandbytes: moments in 8 bits, about 1/4 of adamw's optimizer memory); a "
        "resume must use the optimizer its checkpoint holds", choices=("adamw", "adamw8bit")))
    max_bad_updates: int = field(default=10, metadata=opt(
        "stop as diverged (exit 3) after this many updates in a row with a non-finite loss or gradient, each "
        "skipped; 10 absorbs a burst of fp16 overflows (the grad scaler halves its scale at each) or a bad clip "
        "drawn twice, and stops a diverged run within 10 batches", low=1, high=100_000))
    quality_every: int = field(
        default=0, metadata=opt("synthesise and score sample sentences every N optimizer updates (0: off)", low=0,
                                high=MAX_UPDATES)
    )
    whisper_model: str | None = field(
        default=None, metadata=opt("Whisper model the quality scores use: a name to download, or a folder "
                                   "(default: the packaged tiny.en for English, else large-v3)")
    )
    quality_sentences: str | None = field(
        default=None, metadata=opt("sentences to synthesise, one per line (default: eval transcripts, a short "
                                   "phrase and a long sentence)")
    )
    reference_wav: str | None = field(
        default=None, metadata=opt("the voice to synthesise in (default: picked from the training clips)")
    )
    best_by: str = field(default="eval_loss", metadata=opt("what best_model.pth follows", choices=BEST_BY))
    early_stop: int = field(
        default=0, metadata=opt("stop after N evaluations of --best_by without improvement (0: never)", low=0,
                                high=100_000)
    )
    print_step: int = field(
        default=25, metadata=opt("print training stats every N batches (--debug: every batch)", ui=False, low=1,
                                high=MAX_UPDATES)
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
        check_ranges(self)
        if self.mixed_precision and self.precision not in ("fp32", "fp16"):
            raise ValueError(f"--mixed_precision means --precision fp16, but --precision {self.precision} was given: "
                             f"pass only one of them.")
        if self.restart and not self.custom_model:
            raise ValueError("--restart needs --custom_model: the checkpoint whose weights to start over from.")
        if self.best_by == "quality" and not self.quality_every:
            raise ValueError("--best_by quality needs --quality_every N: the quality scores it follows.")
        if not self.run_name.strip() or any(s in self.run_name for s in ("/", "\\", "..")):
            raise ValueError(f"--run_name '{self.run_name}' must be a plain folder-name prefix (no '/', '\\' "
                             f"or '..').")
        out = Path(self.output_path)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--output_path {out} is a file: pass a folder.")

    @property
    def train_precision(self) -> str:
        """fp32, fp16 or bf16: --precision, with --mixed_precision as the spelling of fp16."""
        return "fp16" if self.mixed_precision else self.precision

    def to_argv(self) -> list[str]:
        """The command-line arguments that reproduce these options (for launching the CLI as a subprocess)."""
        return to_argv(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainOptions:
        """Build from a JSON-like dict, refusing unknown keys by name."""
        return from_dict(cls, values, "training")
