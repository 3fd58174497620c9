"""Checking a dataset before training: every fault with its CSV line and audio file, in a report a person
reads. A line's text is checked with exactly what training does to it: the training tokenizer
(`make_tokenizer`) cleans and encodes it."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from utils.data.audio import AudioInfo, decode
from utils.data.errors import DatasetError, short_reason
from utils.data.metadata import Issue, Row, parse_csv, read_language, resolve_audio
from utils.data.progress import ProgressCallback, ProgressTracker
from utils.vocabulary.tokenizer import clean_text, clean_text_neutral, make_tokenizer
from utils.xtts import (
    EVAL_CSV,
    LANG_FILE,
    MAX_TEXT_TOKENS,
    MIN_AUDIO_SECONDS,
    SAMPLE_RATE,
    TRAIN_CSV,
    UNK_TOKEN,
    char_limit,
    is_language_code,
    language_token,
)

if TYPE_CHECKING:
    from utils.data.gate import QualityReport

EXTEND_VOCAB_HINT = (
    "extend the vocabulary with this dataset's text (utils/vocab.py: the extended-vocabulary path of training, "
    "which adds the new script's tokens and expands the base model's text rows once) and validate against "
    "the extended vocab.json"
)


@dataclass
class ValidationReport:
    """What `validate_dataset` found. Errors block training; warnings don't."""

    train_csv: Path
    eval_csv: Path
    issues: list[Issue] = field(default_factory=list)
    train_lines: int = 0
    eval_lines: int = 0
    seconds: float = 0.0
    language: str | None = None
    quality: QualityReport | None = None  # the quality gate's part (validate --quality), else None

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def format(self, max_per_kind: int = 10) -> str:
        """The report as text a person reads: a summary line, then errors and warnings grouped by kind."""
        lines = [f"Dataset check of {self.train_csv} ({self.train_lines} lines) and {self.eval_csv} "
                 f"({self.eval_lines} lines): {self.seconds / 60:.1f} min of audio"
                 + (f", language {self.language}." if self.language else ".")]
        if self.ok and not self.warnings:
            lines.append("No problems found.")
            return "\n".join(lines + ([self.quality.format()] if self.quality else []))
        lines.append(f"{len(self.errors)} error(s), {len(self.warnings)} warning(s). "
                     + ("Training refuses this dataset until the errors are fixed." if self.errors
                        else "Warnings do not stop training."))
        for severity, label in (("error", "ERROR"), ("warning", "warning")):
            by_kind: dict[str, list[Issue]] = {}
            for issue in self.issues:
                if issue.severity == severity:
                    by_kind.setdefault(issue.kind, []).append(issue)
            for issues in by_kind.values():
                lines += [f"{label} {i.where()}: {i.message}" for i in issues[:max_per_kind]]
                if len(issues) > max_per_kind:
                    lines.append(f"{label} ... and {len(issues) - max_per_kind} more line(s) like the above")
        return "\n".join(lines + ([self.quality.format()] if self.quality else []))

    def raise_if_errors(self, limit: int = 3) -> None:
        """Raise DatasetError naming the first `limit` faults when there are errors (for training to call)."""
        errors = self.errors
        if not errors:
            return
        shown = "; ".join(str(i) for i in errors[:limit])
        more = f"; and {len(errors) - limit} more" if len(errors) > limit else ""
        raise DatasetError(f"The dataset has {len(errors)} error(s), so training does not start: {shown}{more}. "
                           f"See the whole report with `python utils/formatter.py validate {self.train_csv.parent}`.")

    def to_dict(self) -> dict:
        return {"train_csv": str(self.train_csv), "eval_csv": str(self.eval_csv), "ok": self.ok,
                "train_lines": self.train_lines, "eval_lines": self.eval_lines, "seconds": self.seconds,
                "language": self.language, "issues": [dataclasses.asdict(i) for i in self.issues],
                **(self.quality.to_dict() if self.quality else {})}


@dataclass(frozen=True)
class _AudioCheck:
    info: AudioInfo | None
    error: str | None
    peak: float = 0.0


def _check_audio(path: Path) -> _AudioCheck:
    """Decode the whole file (as the trainer will) and note its rate, channels, length and loudness."""
    if not path.exists():
        return _AudioCheck(None, "missing")
    try:
        data, rate = decode(path)
    except DatasetError as e:
        return _AudioCheck(None, str(e))
    return _AudioCheck(AudioInfo(rate, data.shape[1], data.shape[0] / rate), None, float(np.abs(data).max()))


@dataclass(frozen=True)
class _TextVerdict:
    """What training's tokenizer makes of one line."""

    unknown: list[str]  # characters of the cleaned text that encode to [UNK], in order of appearance
    tokens: int | None  # len(tokenizer.encode(text, language)); None where not counted
    failure: str | None = None  # why the tokenizer cannot encode the line at all


class _TextChecker:
    """A line's text as training encodes it. The tokenizer is the one training builds (`make_tokenizer`), and
    its `encode(text, language)` is what the trainer calls: the language's cleaning (coqui's cleaners, zh/ja/ko
    romanised; NFC and neutral cleaning for other languages), the language token, [SPACE]s, BPE. Characters it
    cannot encode are those of the cleaned text that encode to the vocabulary's [UNK] id.

    Raises ImportError when the language's cleaning needs a package that is not installed (training would fail
    on every line), and VocabError (a ValueError) for an unusable vocabulary."""

    TOKENIZER_LOGGER = "TTS.tts.layers.xtts.tokenizer"  # logs a warning for each line over the character limit

    def __init__(self, vocab_path: Path, language: str | None) -> None:
        self.tokenizer = make_tokenizer(vocab_path)
        self.vocab = self.tokenizer.tokenizer.get_vocab(with_added_tokens=True)
        self.unk_id = self.vocab[UNK_TOKEN]
        self.language = language if is_language_code(language) else None
        self.lang_token = None if self.language is None else language_token(self.language)
        self.counts_tokens = self.lang_token in self.vocab
        self._unknown: dict[str, bool] = {}
        self.cleaned("a")  # a cleaner whose package is missing fails here, once, not on every line

    def cleaned(self, text: str) -> str:
        """The text as the tokenizer's encode sees it after cleaning, before the language token and [SPACE]."""
        if self.language is None:  # training needs a language; the report says so, this is a best guess
            return clean_text_neutral(text)
        return clean_text(self.tokenizer, text, self.language)

    def verdict(self, text: str) -> _TextVerdict:
        """What training's tokenizer makes of `text`: its unknown characters, else its token count."""
        try:
            cleaned = self.cleaned(text)
            unknown = [ch for ch in dict.fromkeys(cleaned) if ch != " " and self._is_unknown(ch)]  # " " is [SPACE]
            if unknown or not self.counts_tokens:
                return _TextVerdict(unknown, None)
            return _TextVerdict([], len(self.tokenizer.encode(text, self.language)))
        except Exception as e:  # any error of coqui's cleaners: the trainer's dataset skips a line whose encode raises
            return _TextVerdict([], None, short_reason(e, 120))

    def _is_unknown(self, ch: str) -> bool:
        if ch not in self._unknown:
            self._unknown[ch] = self.unk_id in self.tokenizer.tokenizer.encode(ch).ids
        return self._unknown[ch]

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """Silence coqui's per-line character-limit warning while validating: the report has its own."""
        logger = logging.getLogger(self.TOKENIZER_LOGGER)
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            logger.setLevel(level)


def _script(ch: str) -> str | None:
    """The script of a letter ('Ethiopic', 'Latin', 'Cjk', ...), None for punctuation, digits and symbols."""
    if not unicodedata.category(ch).startswith(("L", "M")):
        return None
    try:
        return unicodedata.name(ch).split()[0].title()
    except ValueError:
        return None


def validate_dataset(
    train_csv: str | Path,
    eval_csv: str | Path | None = None,
    *,
    vocab_path: str | Path | None = None,
    language: str | None = None,
    max_audio_seconds: float = 11.0,
    min_conditioning_seconds: float = 3.0,
    max_text_tokens: int = MAX_TEXT_TOKENS,
    sample_rate: int = SAMPLE_RATE,
    progress: ProgressCallback | None = None,
) -> ValidationReport:
    """Check a dataset before training and report every fault with its CSV line and audio file.

    Errors (training refuses the dataset): a missing, empty, non-UTF-8 CSV or one with a wrong delimiter or
    header; a line with the wrong number of columns; missing or unreadable audio; audio shorter than
    `min_conditioning_seconds` or longer than `max_audio_seconds`; empty text; text longer than
    `max_text_tokens` tokens, with characters the vocabulary cannot encode, or that the tokenizer cannot clean
    (these need `vocab_path`); a CSV with no lines; a language that is not a language code. Warnings: a sample
    rate other than `sample_rate`, several channels, silent or clipping audio, text over XTTS's character limit
    for the language, duplicate lines, audio in both train and eval, a language the vocabulary has no token
    for. `language` None reads lang.txt beside the train CSV.
    """
    train_csv = Path(train_csv)
    if train_csv.is_dir():
        train_csv = train_csv / TRAIN_CSV
    eval_csv = Path(eval_csv) if eval_csv is not None else train_csv.parent / EVAL_CSV
    if language is None:
        language = read_language(train_csv.parent) if train_csv.parent.is_dir() else None
    report = ValidationReport(train_csv, eval_csv, language=language)
    if language is not None and not is_language_code(language):
        report.issues.append(Issue("error", "language_code", f"the language '{language}' is not a language code "
                                   f"such as en, de, zh-cn, pt-br, es-419 or am: fix {LANG_FILE} or pass --language."))
    checks = _Checks(report, _text_checker(vocab_path, language, report), language, max_audio_seconds,
                     min_conditioning_seconds, max_text_tokens, sample_rate)
    parsed = [parse_csv(train_csv), parse_csv(eval_csv)]
    total = sum(len(p.rows) for p in parsed)
    tracker = ProgressTracker("validate", total, float(total), progress)
    with checks.quiet():
        for part in parsed:
            report.issues += part.issues
            if part.usable and not part.rows:
                report.issues.append(Issue("error", "empty_csv", "has no lines after its header: the trainer needs "
                                           "at least one clip in each of the train and eval files.", str(part.path)))
            for row in part.rows:
                tracker.files_done += 1
                tracker.work_done += 1
                tracker.report(row.audio_file, force=False)
                checks.row(row, part.path)
    report.train_lines, report.eval_lines = len(parsed[0].rows), len(parsed[1].rows)
    report.seconds = sum(c.info.seconds for c in checks.audio_cache.values() if c.info)
    new_scripts = {s: n for s, n in checks.unknown_scripts.items() if s != "Latin"}
    if new_scripts:
        names = ", ".join(f"{s} ({n} line{'s' if n > 1 else ''})" for s, n in new_scripts.items())
        # first in the report: the one fix that clears all those lines
        report.issues.insert(0, Issue("error", "new_script", f"the vocabulary has no tokens for the {names} "
                                      f"script: {EXTEND_VOCAB_HINT}."))
    tracker.report("done")
    return report


def _text_checker(vocab_path: str | Path | None, language: str | None, report: ValidationReport
                  ) -> _TextChecker | None:
    """The checker of the dataset's text, or None (the reason in the report where there is one)."""
    if vocab_path is None:
        return None
    try:
        checker = _TextChecker(Path(vocab_path), language)
    except ImportError as e:  # coqui's zh/ja cleaners import pypinyin/cutlet on first use
        package = getattr(e.__cause__, "name", None) or e.name
        fix = f"pip install {package}" if package else "install the package it names"
        report.issues.append(Issue("error", "language_support", f"XTTS's tokenizer cannot clean '{language}' text "
                                   f"on this machine ({short_reason(e, 120)}): training would fail on every line; "
                                   f"{fix}, then validate again."))
        return None
    except ValueError as e:  # VocabError
        report.issues.append(Issue("error", "vocab", str(e), None))
        return None
    if language is None:
        report.issues.append(Issue("warning", "language", f"no language given and no {LANG_FILE} beside "
                                   "the CSV: token counts are not checked; pass --language."))
    elif checker.lang_token is not None and not checker.counts_tokens:
        report.issues.append(Issue(
            "warning", "language_token", f"the vocabulary {vocab_path} has no {checker.lang_token} token for "
            f"language '{language}': {EXTEND_VOCAB_HINT}."))
    return checker


@dataclass
class _Checks:
    """The checks of each line, and what they remember across lines (audio already decoded, audio seen)."""

    report: ValidationReport
    checker: _TextChecker | None
    language: str | None
    max_audio_seconds: float
    min_conditioning_seconds: float
    max_text_tokens: int
    sample_rate: int
    audio_cache: dict[Path, _AudioCheck] = field(default_factory=dict)
    seen: dict[Path, tuple[str, int]] = field(default_factory=dict)
    unknown_scripts: dict[str, int] = field(default_factory=dict)

    def quiet(self) -> contextlib.AbstractContextManager:
        return self.checker.quiet() if self.checker is not None else contextlib.nullcontext()

    def row(self, row: Row, csv_path: Path) -> None:
        def add(severity: str, kind: str, message: str) -> None:
            self.report.issues.append(Issue(severity, kind, message, str(csv_path), row.line, row.audio_file))

        audio = resolve_audio(csv_path.parent, row.audio_file)
        if audio in self.seen:
            other_csv, other_line = self.seen[audio]
            if other_csv == str(csv_path):
                add("warning", "duplicate", f"names the same audio as line {other_line}: remove one of the two lines.")
            else:
                add("warning", "train_eval_overlap", f"is also in {Path(other_csv).name} line {other_line}: eval "
                    "losses would be measured on training audio; keep it in one file.")
        else:
            self.seen[audio] = (str(csv_path), row.line)
        self._text(row.text, add)
        if audio not in self.audio_cache:
            self.audio_cache[audio] = _check_audio(audio)
        self._audio(audio, self.audio_cache[audio], add)

    def _text(self, raw: str, add) -> None:
        """`raw` is the CSV's text as the trainer gets it (load_samples does not strip it)."""
        text = raw.strip()
        if not text:
            add("error", "empty_text", "has empty text: write what is said in the clip, or remove the line.")
            return
        limit = char_limit(self.language or "")
        if len(text) > limit:
            add("warning", "long_text", f"has {len(text)} characters, over XTTS's limit of {limit} for "
                f"'{self.language or 'en'}': split the clip, or XTTS may cut its speech short.")
        if self.checker is None:
            return
        verdict = self.checker.verdict(raw)
        if verdict.failure:
            add("error", "uncleanable_text", f"cannot be encoded by XTTS's tokenizer ({verdict.failure}): XTTS would "
                "skip the line; write numbers and symbols out as words, or remove the line.")
        elif verdict.unknown:
            unknown = verdict.unknown
            scripts = sorted({s for s in map(_script, unknown) if s})
            for s in scripts:
                self.unknown_scripts[s] = self.unknown_scripts.get(s, 0) + 1
            shown = " ".join(f"'{c}' (U+{ord(c):04X})" for c in unknown[:8]) + (" ..." if len(unknown) > 8 else "")
            hint = EXTEND_VOCAB_HINT if any(s != "Latin" for s in scripts) else \
                "replace or remove them, or extend the vocabulary"
            add("error", "unknown_chars", f"has characters the vocabulary cannot encode ([UNK]): {shown}; "
                f"XTTS would skip the line: {hint}.")
        elif verdict.tokens is not None and verdict.tokens > self.max_text_tokens:
            add("error", "long_text", f"takes {verdict.tokens} tokens, over the trainer's max_text_length of "
                f"{self.max_text_tokens}: the trainer would skip it; split the clip.")

    def _audio(self, audio: Path, check: _AudioCheck, add) -> None:
        if check.error == "missing":
            add("error", "missing_audio", f"names audio that does not exist ({audio}): restore the file or remove "
                "the line.")
            return
        if check.error:
            add("error", "unreadable_audio", f"{check.error}")
            return
        info = check.info
        assert info is not None
        if info.seconds < max(self.min_conditioning_seconds, MIN_AUDIO_SECONDS) - 0.5 / info.sample_rate:
            add("error", "too_short", f"audio lasts {info.seconds:.2f} s, shorter than the "
                f"{self.min_conditioning_seconds:g} s XTTS conditions on: join it with a neighbouring clip or remove "
                "the line.")
        elif info.seconds > self.max_audio_seconds + 0.5 / info.sample_rate:
            add("error", "too_long", f"audio lasts {info.seconds:.2f} s, longer than max_audio_length "
                f"{self.max_audio_seconds:g} s: the trainer would skip it; cut it, or raise --max_audio_length.")
        if info.sample_rate != self.sample_rate:
            add("warning", "sample_rate", f"audio is at {info.sample_rate} Hz, not {self.sample_rate} Hz: XTTS "
                "resamples it at every load; import the dataset with this tool to store it at the right rate.")
        if info.channels > 1:
            add("warning", "channels", f"audio has {info.channels} channels: XTTS mixes them to mono at every load.")
        if check.peak < 1e-4:
            add("warning", "silent", "audio is silent: check the recording.")
        elif check.peak >= 0.999:
            add("warning", "clipping", "audio reaches full scale (clipping): consider lowering its level.")
