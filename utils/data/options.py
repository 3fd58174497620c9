"""What the dataset commands accept: `PrepareOptions` (recordings -> dataset) and `ImportOptions` (an existing
dataset -> ours). Each field is declared once with `utils.options.opt`; argparse, the WebUI and the checks read
it from here."""

from __future__ import annotations

from dataclasses import dataclass, field

from utils.data.transcribe import DEFAULT_WHISPER_MODEL, DEVICES
from utils.errors import InvalidValue
from utils.options import check_ranges, opt
from utils.xtts import CSV_DELIMITER, DEFAULT_SPEAKER, MIN_AUDIO_SECONDS, is_language_code

LJSPEECH_TEXTS = ("normalized", "raw")


@dataclass
class PrepareOptions:
    """How recordings become a dataset. Every default lives here; the CLI and the WebUI read them from here."""

    language: str | None = field(default=None, metadata=opt(
        "language of the speech (en, de, am, ...); empty: detect it (the dataset's lang.txt wins once it exists)"))
    whisper_model: str = field(default=DEFAULT_WHISPER_MODEL, metadata=opt(
        "faster-whisper model size (tiny ... large-v3, turbo) or a folder holding a converted model"))
    device: str = field(default="auto", metadata=opt("device for Whisper", choices=DEVICES))
    compute_type: str = field(default="default", metadata=opt(
        "CTranslate2 compute type for Whisper (default, int8, float16, ...)"))
    min_clip_seconds: float = field(default=3.0, metadata=opt(
        "shortest clip kept (XTTS conditions on 3 s or more of each clip)", low=0))
    max_clip_seconds: float = field(default=11.0, metadata=opt(
        "longest clip written, padding included", "--max_audio_length"))
    padding_seconds: float = field(default=0.2, metadata=opt(
        "silence kept before and after each clip's words where there is room", low=0, high=2))
    eval_fraction: float = field(default=0.15, metadata=opt("share of the clips that goes to metadata_eval.csv"))
    seed: int = field(default=1234, metadata=opt("seed of the train/eval split (same seed and files: same split)"))
    speaker_name: str = field(default=DEFAULT_SPEAKER, metadata=opt("speaker name written in the CSVs"))

    def check(self) -> None:
        """Raise a ValueError naming the option for a bad value, before any audio is touched."""
        check_ranges(self)
        _check_bounds(self.min_clip_seconds, self.max_clip_seconds, self.eval_fraction, self.speaker_name)
        _check_language(self.language)


@dataclass
class ImportOptions:
    """How an existing dataset (LJSpeech or coqui CSVs) becomes ours."""

    language: str | None = field(default=None, metadata=opt(
        "language of the dataset; empty: the source's lang.txt"))
    copy_audio: bool = field(default=True, metadata=opt(
        "copy the audio into the dataset (as 22.05 kHz mono WAV); --no-copy_audio refers to the files where they "
        "are"))
    min_clip_seconds: float = field(default=3.0, metadata=opt(
        "lines whose audio is shorter are left out (XTTS conditions on >= 3 s)", low=0))
    max_clip_seconds: float = field(default=11.0, metadata=opt(
        "lines whose audio is longer are left out", "--max_audio_length"))
    eval_fraction: float = field(default=0.15, metadata=opt(
        "share of the lines that goes to metadata_eval.csv, when the source has no eval file"))
    seed: int = field(default=1234, metadata=opt("seed of the train/eval split"))
    speaker_name: str | None = field(default=None, metadata=opt(
        "speaker name for every line; empty: keep the source's (LJSpeech: coqui)"))
    ljspeech_text: str = field(default="normalized", metadata=opt(
        "LJSpeech column to use as text", choices=LJSPEECH_TEXTS))

    def check(self) -> None:
        """Raise a ValueError naming the option for a bad value, before any file is read."""
        check_ranges(self)
        _check_bounds(self.min_clip_seconds, self.max_clip_seconds, self.eval_fraction, self.speaker_name or "x")
        _check_language(self.language)


def _check_bounds(min_s: float, max_s: float, eval_fraction: float, speaker: str) -> None:
    """The checks that relate two options, or exclude an end of a range."""
    if not max_s > max(min_s, MIN_AUDIO_SECONDS):
        raise InvalidValue(f"max_clip_seconds ({max_s}) must be above min_clip_seconds ({min_s}) and "
                         f"{MIN_AUDIO_SECONDS} s.")
    if not 0 < eval_fraction < 1:
        raise InvalidValue(f"eval_fraction must be between 0 and 1 (the trainer needs an eval line), "
                         f"not {eval_fraction}.")
    if CSV_DELIMITER in speaker or "\n" in speaker or not speaker.strip():
        raise InvalidValue(f"speaker_name '{speaker}' must be a non-empty name without '{CSV_DELIMITER}'.")


def _check_language(language: str | None) -> None:
    """utils.xtts's rule for a language code, in a message naming the option; empty means: not given."""
    if language is not None and language.strip() and not is_language_code(language.strip()):
        raise InvalidValue(f"language '{language}' is not a language code such as en, de, zh-cn, pt-br, es-419 or am.")
