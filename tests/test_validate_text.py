"""Validation checks a line's text with exactly what training does to it.

Training encodes a line with `make_tokenizer(vocab).encode(text, language)`: the language's cleaning (coqui's
cleaners, zh/ja/ko romanised, NFC and neutral cleaning for languages coqui does not know), the language token,
[SPACE]s and BPE. Each line below is one where a cleaning of its own (lowercase and spaces, no NFC, no
romanisation) would disagree with training; validation's verdict (the characters it calls unknown, the
token count, or that the language cannot be cleaned here) must be training's.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest
import soundfile as sf
from tokenizers import Tokenizer

from utils.data.options import ImportOptions, PrepareOptions
from utils.data.validate import validate_dataset
from utils.testbed import SENTENCES, build_vocab, synth_clip
from utils.vocabulary.tokenizer import VocabError, clean_text, make_tokenizer
from utils.xtts import CLIPS_DIR, COQUI_LANGUAGES, SAMPLE_RATE, UNK_TOKEN, is_language_code

VIETNAMESE = "cà phê sữa đá rất ngon"  # coqui does not know vi: training cleans it neutrally, NFC included
NFD = {"vi": unicodedata.normalize("NFD", VIETNAMESE), "en": "cafe\u0301 au lait"}
assert NFD["vi"] != VIETNAMESE and unicodedata.normalize("NFC", NFD["vi"]) == VIETNAMESE

LINES = {
    "vi": [NFD["vi"], VIETNAMESE, "phở ñ"],  # NFD known after NFC; NFC; a letter the vocabulary lacks
    "en": [NFD["en"], "caf\u00e9 au lait", "straße number 42.", "Dr. Smith paid $5.",  # coqui keeps NFD as it is
           " the sea  shore "],  # the trainer encodes the CSV's text as it is, outer spaces included
    "ko": ["안녕하세요 세계"],  # romanised by coqui's cleaner before encoding
    "zh": ["你好\uff0c世界\u3002"],  # pinyin (needs pypinyin); fullwidth comma and full stop
    "ja": ["こんにちは世界"],  # romaji (needs cutlet)
    "am": ["ሰላም ለዓለም"],  # a script and a language token the vocabulary lacks
}


@pytest.fixture(scope="module")
def vocab(tmp_path_factory) -> Path:
    """The test bed's vocabulary trained on English and NFC Vietnamese text, with a [vi] token added."""
    path = tmp_path_factory.mktemp("vocab") / "vocab.json"
    build_vocab(path, [*SENTENCES, VIETNAMESE, "a café in the street"])
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.add_special_tokens(["[vi]"])
    tokenizer.save(str(path))
    return path


def dataset(folder: Path, lines: list[str]) -> Path:
    (folder / CLIPS_DIR).mkdir(parents=True)
    rows = []
    for i, line in enumerate(lines):
        sf.write(folder / CLIPS_DIR / f"{i}.wav", synth_clip(4.0, seed=i), SAMPLE_RATE)
        rows.append(f"{CLIPS_DIR}/{i}.wav|{line}|coqui\n")
    (folder / "metadata_train.csv").write_text("audio_file|text|speaker_name\n" + "".join(rows), encoding="utf-8")
    (folder / "metadata_eval.csv").write_text("audio_file|text|speaker_name\n" + rows[0], encoding="utf-8")
    return folder / "metadata_train.csv"


def training_unknown(tokenizer, line: str, language: str) -> list[str]:
    """The characters of training's cleaned text that its BPE encodes as [UNK] (read from the token offsets)."""
    cleaned = clean_text(tokenizer, line, language)
    encoding = tokenizer.tokenizer.encode(cleaned)
    spans = [cleaned[a:b] for token, (a, b) in zip(encoding.tokens, encoding.offsets, strict=True)
             if token == UNK_TOKEN]
    return list(dict.fromkeys("".join(spans)))


def named_chars(message: str) -> list[str]:
    return [chr(int(code, 16)) for code in re.findall(r"\(U\+([0-9A-F]{4,6})\)", message)]


@pytest.mark.parametrize("language", list(LINES))
def test_validation_sees_each_line_as_training_encodes_it(tmp_path, vocab, language):
    lines = LINES[language]
    report = validate_dataset(dataset(tmp_path, lines), vocab_path=vocab, language=language, max_text_tokens=1)
    tokenizer = make_tokenizer(vocab)  # what training builds
    unk = tokenizer.tokenizer.token_to_id(UNK_TOKEN)
    at_line = {line_no: [i for i in report.issues if i.line == line_no and i.csv.endswith("metadata_train.csv")]
               for line_no in range(2, len(lines) + 2)}
    for line_no, line in enumerate(lines, start=2):
        kinds = {i.kind: i for i in at_line[line_no]}
        try:
            ids = tokenizer.encode(line, language)
        except ImportError as e:  # training cannot clean this language on this machine: every line would fail
            assert [i.kind for i in report.errors if i.line is None] == ["language_support"], report.format()
            assert (getattr(e.__cause__, "name", None) or e.name) in report.errors[0].message
            assert "unknown_chars" not in kinds and "long_text" not in kinds
            continue
        except VocabError:  # training refuses the language: the report says the vocabulary lacks its token
            assert any(i.kind == "language_token" for i in report.warnings), report.format()
            assert named_chars(kinds["unknown_chars"].message) == training_unknown(tokenizer, line, language)
            continue
        expected = training_unknown(tokenizer, line, language)
        assert (unk in ids) == bool(expected)  # the offsets tell the same as training's ids
        if unk in ids:
            assert "unknown_chars" in kinds, (line, report.format())
            assert named_chars(kinds["unknown_chars"].message) == expected, line
        else:
            assert "unknown_chars" not in kinds, (line, report.format())
            tokens = re.search(r"takes (\d+) tokens", kinds["long_text"].message)
            assert tokens and int(tokens.group(1)) == len(ids), (line, kinds["long_text"].message)


GREETINGS = {"ar": "مرحبا بالعالم", "zh": "你好\uff0c世界\u3002", "ko": "안녕하세요", "ja": "こんにちは世界",
             "hi": "नमस्ते दुनिया", "ru": "привет мир"}


@pytest.mark.parametrize("language", COQUI_LANGUAGES)
def test_every_language_xtts_knows_is_cleaned_on_this_machine(vocab, language):
    """The set-up installs what coqui's cleaners import (pypinyin for zh, cutlet and MeCab's dictionary for ja):
    a dataset in any of XTTS-v2's languages validates and trains, instead of failing on every line."""
    cleaned = clean_text(make_tokenizer(vocab), GREETINGS.get(language, "hello world 42"), language)
    assert cleaned.strip()
    if language in ("zh", "ja", "ko"):  # romanised: pinyin, romaji, revised romanisation
        assert cleaned.isascii(), cleaned


def test_nfd_and_nfc_of_a_line_get_one_verdict_where_training_normalises(tmp_path, vocab):
    """vi: training NFC-normalises, so the decomposed line is as good as the composed one."""
    report = validate_dataset(dataset(tmp_path, [NFD["vi"], VIETNAMESE]), vocab_path=vocab, language="vi")
    assert report.ok, report.format()


def test_options_and_validation_take_the_one_language_code_rule(tmp_path):
    """utils.xtts's rule, the one the vocabulary tools use: es-419 is a code, 'English' is not."""
    for code in ("en", "am", "pt-br", "zh-cn", "es-419"):
        assert is_language_code(code)
        PrepareOptions(language=code).check()
        ImportOptions(language=code).check()
    for options in (PrepareOptions, ImportOptions):
        with pytest.raises(ValueError, match="language 'English' is not a language code"):
            options(language="English").check()
    report = validate_dataset(dataset(tmp_path, [VIETNAMESE]), language="English")
    assert [i.kind for i in report.errors if i.line is None] == ["language_code"]
