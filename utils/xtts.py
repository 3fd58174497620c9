"""Facts about XTTS-v2 and its files that every part of the tool relies on, each stated once: sample rates,
the trainer's limits, the languages coqui knows and the one rule for a language code, the dataset's and the
base model's file names. A leaf module: it imports nothing of ours and nothing heavy."""

from __future__ import annotations

import re

from utils.errors import InvalidValue

SAMPLE_RATE = 22050  # XTTS's input rate: training clips, the DVAE and conditioning audio
OUTPUT_SAMPLE_RATE = 24000  # what the HiFi-GAN decoder produces
MEL_CHANNELS = 80

MIN_AUDIO_SECONDS = 0.5  # XTTS's dataset refuses shorter clips (tts/layers/xtts/trainer/dataset.py)
MAX_TEXT_TOKENS = 200  # GPTArgs.max_text_length: longer lines are skipped by the trainer
DEFAULT_MIN_CONDITIONING_SAMPLES = 66150  # GPTArgs.min_conditioning_length, 3 s at SAMPLE_RATE

# Languages whose text coqui-tts 0.28's VoiceBpeTokenizer.preprocess_text cleans itself (it raises for others),
# in the order coqui's XTTS-v2 config lists them.
COQUI_LANGUAGES = ("en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru", "nl", "cs", "ar", "zh", "hu", "ko", "ja", "hi")
# VoiceBpeTokenizer.char_limits: XTTS warns (and may truncate audio) above these; 250 for any other language.
CHAR_LIMITS = {
    "en": 250, "de": 253, "fr": 273, "es": 239, "it": 213, "pt": 203, "pl": 224, "zh": 82, "ar": 166, "cs": 186,
    "ru": 182, "nl": 251, "tr": 226, "ja": 71, "hu": 224, "ko": 95, "hi": 150,
}
DEFAULT_CHAR_LIMIT = 250

# A language code: a lowercase primary tag of 2-8 letters, then subtags of 1-8 letters or digits ("en",
# "pt-br", "zh-cn", "es-419", "am"). The tokenizer uses the primary tag alone, except zh, which it writes zh-cn.
_LANGUAGE_CODE = re.compile(r"[a-z]{2,8}(?:-[a-z0-9]{1,8})*")
LANGUAGE_TOKEN = re.compile(r"^\[[a-z]{2,8}(?:-[a-z0-9]{1,8})*\]$")  # a vocabulary's language token, e.g. [en]

# The vocabulary's special tokens, at the ids XTTS's dataset asserts.
STOP_TOKEN, UNK_TOKEN, SPACE_TOKEN, START_TOKEN = "[STOP]", "[UNK]", "[SPACE]", "[START]"
REQUIRED_TOKENS = {STOP_TOKEN: 0, UNK_TOKEN: 1, SPACE_TOKEN: None, START_TOKEN: None}

# A dataset folder, as the popular XTTS fine-tuning WebUI lays it out.
TRAIN_CSV = "metadata_train.csv"
EVAL_CSV = "metadata_eval.csv"
LANG_FILE = "lang.txt"
CLIPS_DIR = "wavs"
CSV_COLUMNS = ("audio_file", "text", "speaker_name")
CSV_DELIMITER = "|"
DEFAULT_SPEAKER = "coqui"

# A base model folder (the files of coqui/XTTS-v2 on the Hugging Face hub).
MODEL_FILE = "model.pth"
CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
DVAE_FILE = "dvae.pth"
MEL_STATS_FILE = "mel_stats.pth"
SPEAKERS_FILE = "speakers_xtts.pth"


def is_language_code(code: str | None) -> bool:
    return bool(code) and _LANGUAGE_CODE.fullmatch(code) is not None


def check_language_code(code: str) -> str:
    """`code` when it is a language code, else an InvalidValue naming it."""
    if not is_language_code(code):
        raise InvalidValue(f"Language code {code!r} is not valid: use a lowercase code such as 'en', 'am', "
                             f"'pt-br' or 'es-419'.")
    return code


def primary_language(code: str) -> str:
    """The tag the tokenizer's cleaners use: the primary subtag ('pt-br' -> 'pt')."""
    return code.split("-")[0]


def language_token(code: str) -> str:
    """The token XTTS's tokenizer puts before text of `code` (region dropped, zh written zh-cn, as coqui)."""
    primary = primary_language(check_language_code(code))
    return "[zh-cn]" if primary == "zh" else f"[{primary}]"


def char_limit(code: str) -> int:
    return CHAR_LIMITS.get(primary_language(code), DEFAULT_CHAR_LIMIT)
