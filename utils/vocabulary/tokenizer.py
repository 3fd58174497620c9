"""XTTS text vocabularies: read, check and fingerprint a vocab.json, and the tokenizer training uses.

A vocabulary is identified by the hash of its token -> id mapping (not of the file's bytes, which change
with formatting), so two files that tokenize the same way compare equal. The tokenizer is coqui's
VoiceBpeTokenizer, extended to accept languages coqui's list lacks: validation and training both encode with it.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
import re
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from utils import xtts
from utils.errors import UserInputError
from utils.xtts import COQUI_LANGUAGES, DEFAULT_CHAR_LIMIT, REQUIRED_TOKENS, SPACE_TOKEN, UNK_TOKEN, language_token

if TYPE_CHECKING:
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

__all__ = ["UNK_TOKEN", "VocabError", "clean_text", "encode_tokens", "language_token", "load_vocab", "make_tokenizer",
           "matching_vocab", "read_transcripts", "text_token_count", "vocab_sha256"]
_WHITESPACE = re.compile(r"\s+")


class VocabError(UserInputError, ValueError):
    """A vocabulary file that XTTS's tokenizer cannot use."""


# ---------------------------------------------------------------------------------------------------------------
# Reading and fingerprinting


def load_vocab(path: str | Path):
    """Open `path` as a BPE tokenizer and check the tokens XTTS relies on; returns a `tokenizers.Tokenizer`."""
    from tokenizers import Tokenizer

    path = Path(path)
    if not path.is_file():
        raise VocabError(f"Vocabulary file {path} does not exist: pass an XTTS vocab.json with --vocab.")
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise VocabError(f"Vocabulary file {path} is not JSON ({e}): pass an XTTS vocab.json.") from e
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as e:  # the tokenizers library raises a bare Exception for malformed files
        raise VocabError(f"Vocabulary file {path} is not a tokenizer file ({e}): pass an XTTS vocab.json.") from e
    if type(tokenizer.model).__name__ != "BPE":
        raise VocabError(f"Vocabulary file {path} is not a BPE tokenizer: XTTS needs one like XTTS-v2's vocab.json.")
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    missing = [t for t in REQUIRED_TOKENS if t not in vocab]
    if missing:
        raise VocabError(f"Vocabulary file {path} lacks {', '.join(missing)}: XTTS's tokenizer needs these tokens.")
    wrong = [f"{t} (id {vocab[t]}, must be {i})" for t, i in REQUIRED_TOKENS.items() if i is not None and vocab[t] != i]
    if wrong:
        raise VocabError(f"Vocabulary file {path} has {', '.join(wrong)}: XTTS's dataset requires these ids.")
    return tokenizer


def text_token_count(path: str | Path) -> int:
    """Number of text rows a GPT needs for this vocabulary: highest id + 1, as XTTS computes it."""
    return max(load_vocab(path).get_vocab(with_added_tokens=True).values()) + 1


def vocab_sha256(path: str | Path) -> str:
    """Fingerprint of the token -> id mapping of `path`."""
    vocab = load_vocab(path).get_vocab(with_added_tokens=True)
    canonical = json.dumps(sorted(vocab.items(), key=lambda kv: kv[1]), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def matching_vocab(recorded_sha256: str | None, paths: list[Path | None]) -> Path | None:
    """The first of `paths` that exists and whose fingerprint is `recorded_sha256` (any that exists when nothing
    is recorded): where to find the vocabulary a checkpoint was trained with."""
    for path in paths:
        if path is not None and path.is_file() and (not recorded_sha256 or vocab_sha256(path) == recorded_sha256):
            return path
    return None


def read_transcripts(csv_path: str | Path) -> list[str]:
    """The `text` column of a coqui dataset CSV (`audio_file|text|speaker_name`, with header), empty rows skipped."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise VocabError(f"Dataset CSV {csv_path} does not exist: pass the {xtts.TRAIN_CSV} of your dataset.")
    try:
        with csv_path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter=xtts.CSV_DELIMITER)
            if reader.fieldnames is None or "text" not in reader.fieldnames:
                raise VocabError(
                    f"Dataset CSV {csv_path} has no 'text' column in its header: "
                    "expected coqui's format, audio_file|text|speaker_name."
                )
            texts = [row["text"].strip() for row in reader if (row.get("text") or "").strip()]
    except UnicodeDecodeError as e:
        raise VocabError(f"Dataset CSV {csv_path} is not UTF-8 text ({e}): save it as UTF-8.") from e
    if not texts:
        raise VocabError(f"Dataset CSV {csv_path} holds no transcripts: check that the dataset was built.")
    return texts


# ---------------------------------------------------------------------------------------------------------------
# A tokenizer that accepts any language


def clean_text_neutral(text: str) -> str:
    """Language-neutral cleaning for languages coqui does not know: NFC, lowercase (where the script has case),
    whitespace collapsed and stripped."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", text.lower())).strip()


class CharLimits(dict):
    """coqui's per-language character limits, with coqui's default (250) for other languages: Xtts.inference
    indexes `tokenizer.char_limits[language]` when splitting text, which fails for a new language."""

    def __missing__(self, language: str) -> int:
        return DEFAULT_CHAR_LIMIT


@functools.cache
def _tokenizer_class() -> type:
    """Define XttsTokenizer on first use, so that importing this module does not import coqui-tts."""
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

    class XttsTokenizer(VoiceBpeTokenizer):
        """coqui's VoiceBpeTokenizer that also accepts languages outside its list, cleaning their text neutrally."""

        def __init__(self, vocab_file: str | os.PathLike[str]):
            super().__init__(vocab_file)
            self.vocab_path = str(vocab_file)
            self.char_limits = CharLimits(self.char_limits)

        def preprocess_text(self, txt: str, lang: str) -> str:
            """Coqui's cleaning for the languages it knows; clean_text_neutral for any other."""
            if lang in COQUI_LANGUAGES:
                return super().preprocess_text(txt, lang)
            return clean_text_neutral(txt)

        def encode(self, txt: str, lang: str) -> list[int]:
            """Coqui's encode; refuses a language outside coqui's list whose token the vocabulary lacks."""
            if lang.split("-")[0] not in COQUI_LANGUAGES:
                token = language_token(lang)
                if self.tokenizer.token_to_id(token) is None:
                    raise VocabError(
                        f"Vocabulary file {self.vocab_path} has no token {token} for language '{lang}': "
                        "extend it with utils/vocab.py first."
                    )
            return super().encode(txt, lang)

    XttsTokenizer.__qualname__ = "XttsTokenizer"  # picklable as this module's XttsTokenizer (see __getattr__)
    return XttsTokenizer


def __getattr__(name: str) -> Any:
    """Module attribute `XttsTokenizer`, created lazily (PEP 562)."""
    if name == "XttsTokenizer":
        return _tokenizer_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_tokenizer(vocab_path: str | Path) -> VoiceBpeTokenizer:
    """An XttsTokenizer for `vocab_path`, checked first (VocabError for unusable files)."""
    load_vocab(vocab_path)
    return _tokenizer_class()(str(vocab_path))


def clean_text(tokenizer: VoiceBpeTokenizer, text: str, language: str) -> str:
    """`text` as `tokenizer.encode` sees it after cleaning, before the language token and [SPACE]."""
    return tokenizer.preprocess_text(text, language.split("-")[0])


def encode_tokens(tokenizer: VoiceBpeTokenizer, text: str, language: str) -> list[str]:
    """Token strings of `text` as XTTS encodes it, also when the vocabulary lacks the language token (preview)."""
    prepared = f"{language_token(language)}{clean_text(tokenizer, text, language)}".replace(" ", SPACE_TOKEN)
    return tokenizer.tokenizer.encode(prepared).tokens


