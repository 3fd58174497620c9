"""Dataset validation on real files made here: each fault reported at its line, CSV faults, the samples the
trainer gets, and `python utils/formatter.py validate`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
from dataset_files import write_csv

from utils.data.cli import main
from utils.data.errors import DatasetError
from utils.data.metadata import load_samples
from utils.data.validate import validate_dataset
from utils.testbed import SENTENCES, synth_clip
from utils.xtts import SAMPLE_RATE

ROOT = Path(__file__).resolve().parent.parent
ETHIOPIC = "ሰላም ለዓለም እንዴት ነህ"


# ----------------------------------------------------------------------------------------------- validation


@pytest.fixture(scope="module")
def faulty(tmp_path_factory) -> Path:
    """A dataset with one fault of each kind per line (line numbers: header = 1)."""
    folder = tmp_path_factory.mktemp("faulty")
    wavs = folder / "wavs"
    wavs.mkdir()

    def clip(name: str, seconds: float, rate: int = SAMPLE_RATE, channels: int = 1) -> str:
        sf.write(wavs / name, synth_clip(seconds, seed=len(name), channels=channels, sample_rate=rate), rate)
        return f"wavs/{name}"

    good = clip("good.wav", 4.0)
    (wavs / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(50))
    long_text = " ".join([SENTENCES[0]] * 7)  # 314 characters
    write_csv(folder / "metadata_train.csv", [
        (good, SENTENCES[0], "coqui"),                          # 2: fine
        ("wavs/missing.wav", SENTENCES[1], "coqui"),            # 3: missing audio
        ("wavs/broken.wav", SENTENCES[2], "coqui"),             # 4: unreadable audio
        (clip("short.wav", 1.5), SENTENCES[3], "coqui"),        # 5: too short for conditioning
        (clip("long.wav", 12.5), SENTENCES[4], "coqui"),        # 6: too long
        (clip("quiet.wav", 4.0), "   ", "coqui"),               # 7: empty text
        (clip("amharic.wav", 4.0), ETHIOPIC, "coqui"),          # 8: Ethiopic: a script the vocabulary lacks
        (clip("spanish.wav", 4.0), "el niño comió ñoquis", "coqui"),  # 9: Latin letters the vocabulary lacks
        (good, SENTENCES[5], "coqui"),                          # 10: same audio as line 2
        (clip("cd.wav", 4.0, rate=44100, channels=2), SENTENCES[6], "coqui"),  # 11: 44.1 kHz, stereo
        (clip("chatty.wav", 9.0), long_text, "coqui"),          # 12: text over the character limit
    ])
    write_csv(folder / "metadata_eval.csv", [
        (clip("eval.wav", 5.0), SENTENCES[7], "coqui"),         # 2: fine
        (good, SENTENCES[0], "coqui"),                          # 3: also in train
    ])
    (folder / "lang.txt").write_text("en\n")
    return folder


EXPECTED = [  # (severity, kind, csv, line, audio, words in the message)
    ("error", "missing_audio", "metadata_train.csv", 3, "wavs/missing.wav", ["does not exist"]),
    ("error", "unreadable_audio", "metadata_train.csv", 4, "wavs/broken.wav", ["cannot be read"]),
    ("error", "too_short", "metadata_train.csv", 5, "wavs/short.wav", ["1.50 s", "3 s"]),
    ("error", "too_long", "metadata_train.csv", 6, "wavs/long.wav", ["12.50 s", "max_audio_length 11 s"]),
    ("error", "empty_text", "metadata_train.csv", 7, "wavs/quiet.wav", ["empty text"]),
    ("error", "unknown_chars", "metadata_train.csv", 8, "wavs/amharic.wav", ["'ሰ' (U+1230)", "extend the vocabulary"]),
    ("error", "unknown_chars", "metadata_train.csv", 9, "wavs/spanish.wav", ["'ñ' (U+00F1)", "replace or remove"]),
    ("warning", "duplicate", "metadata_train.csv", 10, "wavs/good.wav", ["line 2"]),
    ("warning", "sample_rate", "metadata_train.csv", 11, "wavs/cd.wav", ["44100 Hz", "22050 Hz"]),
    ("warning", "channels", "metadata_train.csv", 11, "wavs/cd.wav", ["2 channels"]),
    ("warning", "long_text", "metadata_train.csv", 12, "wavs/chatty.wav", ["314 characters", "250"]),
    ("error", "long_text", "metadata_train.csv", 12, "wavs/chatty.wav", ["tokens", "max_text_length of 200"]),
    ("warning", "train_eval_overlap", "metadata_eval.csv", 3, "wavs/good.wav", ["metadata_train.csv line 2"]),
]


def test_validation_reports_each_fault_at_its_line(faulty, vocab):
    report = validate_dataset(faulty / "metadata_train.csv", faulty / "metadata_eval.csv", vocab_path=vocab)
    found = {(i.severity, i.kind, Path(i.csv).name if i.csv else None, i.line, i.audio): i for i in report.issues}
    for severity, kind, csv_name, line, audio, words in EXPECTED:
        issue = found.get((severity, kind, csv_name, line, audio))
        assert issue is not None, f"no {severity} {kind} at {csv_name}:{line}\n{report.format()}"
        for word in words:
            assert word in issue.message, issue
    new_script = [i for i in report.errors if i.kind == "new_script"]
    assert len(new_script) == 1 and "Ethiopic (1 line)" in new_script[0].message
    assert "utils/vocab.py" in new_script[0].message
    expected_lines = {(e[2], e[3]) for e in EXPECTED}
    unexpected = [i for i in report.issues if i.line is not None and (Path(i.csv).name, i.line) not in expected_lines]
    assert not unexpected, unexpected  # the fine lines are not reported
    assert (report.train_lines, report.eval_lines) == (11, 2) and not report.ok

    text = report.format()
    assert "9 error(s), 5 warning(s)" in text and "Training refuses this dataset" in text
    assert text.splitlines()[2].startswith("ERROR dataset: the vocabulary has no tokens for the Ethiopic")
    assert "ERROR metadata_train.csv line 3 (wavs/missing.wav): names audio that does not exist" in text
    assert "warning metadata_eval.csv line 3 (wavs/good.wav): is also in metadata_train.csv line 2" in text

    with pytest.raises(DatasetError) as info:
        report.raise_if_errors()
    message = str(info.value)
    assert message.startswith("The dataset has 9 error(s), so training does not start")
    assert "dataset: the vocabulary has no tokens for the Ethiopic (1 line) script" in message  # the fix first
    assert "metadata_train.csv line 3 (wavs/missing.wav)" in message
    assert "metadata_train.csv line 4 (wavs/broken.wav)" in message
    assert "line 5" not in message and "and 6 more" in message


def test_validation_without_vocab_checks_everything_else(faulty):
    report = validate_dataset(faulty)  # folder given: both CSVs, language from lang.txt
    assert report.language == "en"
    kinds = {i.kind for i in report.issues}
    assert "unknown_chars" not in kinds and {"missing_audio", "too_short", "too_long", "empty_text"} <= kinds


def test_token_limit_needs_the_vocab(tmp_path, vocab):
    folder = tmp_path / "ds"
    (folder / "wavs").mkdir(parents=True)
    sf.write(folder / "wavs" / "a.wav", synth_clip(6.0, seed=1), SAMPLE_RATE)
    sf.write(folder / "wavs" / "b.wav", synth_clip(4.0, seed=2), SAMPLE_RATE)
    write_csv(folder / "metadata_train.csv", [("wavs/a.wav", SENTENCES[0] + " " + SENTENCES[1], "coqui")])
    write_csv(folder / "metadata_eval.csv", [("wavs/b.wav", SENTENCES[2], "coqui")])
    report = validate_dataset(folder, vocab_path=vocab, language="en", max_text_tokens=40)
    assert len(report.errors) == 1, report.format()
    [issue] = report.errors
    assert issue.kind == "long_text" and issue.line == 2 and "max_text_length of 40" in issue.message
    assert validate_dataset(folder, vocab_path=vocab, language="en").ok


def test_new_language_without_its_token(tmp_path, vocab):
    folder = tmp_path / "ds"
    (folder / "wavs").mkdir(parents=True)
    for name in ("a", "b"):
        sf.write(folder / "wavs" / f"{name}.wav", synth_clip(4.0, seed=1), SAMPLE_RATE)
    write_csv(folder / "metadata_train.csv", [("wavs/a.wav", ETHIOPIC, "coqui")])
    write_csv(folder / "metadata_eval.csv", [("wavs/b.wav", ETHIOPIC + " ።", "coqui")])
    report = validate_dataset(folder, vocab_path=vocab, language="am")
    assert any(i.kind == "language_token" and "[am]" in i.message for i in report.warnings)
    [script] = [i for i in report.errors if i.kind == "new_script"]
    assert "Ethiopic (2 lines)" in script.message and "extend the vocabulary" in script.message


CSV_FAULTS = [  # (file bytes, kind, line, words)
    (b"audio_file|text|speaker_name\nwavs/a.wav|caf\xe9 au lait|coqui\n", "encoding", 2, ["not UTF-8", "0xe9"]),
    (b"audio_file,text,speaker_name\nwavs/a.wav,hello,coqui\n", "delimiter", 1, ["commas", "'|'"]),
    (b"audio_file\ttext\tspeaker_name\nwavs/a.wav\thello\tcoqui\n", "delimiter", 1, ["tabs"]),
    (b"wavs/a.wav|hello there|coqui\n", "header", 1, ["no header line", "audio_file|text|speaker_name"]),
    (b"LJ001-0001|Printing, in the only sense|Printing, in the only sense\n", "header", 1, ["LJSpeech", "import"]),
    (b"file|words\nwavs/a.wav|hello\n", "header", 1, ["not the header"]),
    (b"audio_file|text|speaker_name\nwavs/a.wav|hello|there|coqui\n", "columns", 2, ["4 columns", "header has 3"]),
    (b"", "empty_csv", 1, ["is empty"]),
    (b"audio_file|text|speaker_name\n", "empty_csv", None, ["no lines after its header"]),
]


@pytest.mark.parametrize(("data", "kind", "line", "words"), CSV_FAULTS, ids=[f"{c[1]}-{i}" for i, c in
                                                                             enumerate(CSV_FAULTS)])
def test_csv_faults(tmp_path, data, kind, line, words):
    (tmp_path / "wavs").mkdir()
    sf.write(tmp_path / "wavs" / "a.wav", synth_clip(4.0, seed=1), SAMPLE_RATE)
    train = tmp_path / "metadata_train.csv"
    train.write_bytes(data)
    write_csv(tmp_path / "metadata_eval.csv", [("wavs/a.wav", "hello", "coqui")])
    report = validate_dataset(train, language="en")
    issue = next((i for i in report.errors if i.kind == kind), None)
    assert issue is not None, report.format()
    assert issue.line == line and Path(issue.csv) == train
    for word in words:
        assert word in issue.message
    with pytest.raises(DatasetError) as info:
        load_samples(train, "en")
    assert str(train) in str(info.value)
    if line is not None:
        assert f"line {line}" in str(info.value)


def test_missing_csv(tmp_path):
    report = validate_dataset(tmp_path / "metadata_train.csv")
    assert [i.kind for i in report.errors] == ["missing_csv", "missing_csv"]
    assert "does not exist" in report.format()
    with pytest.raises(DatasetError, match=r"metadata_train\.csv: does not exist"):
        load_samples(tmp_path / "metadata_train.csv", "en")


# ----------------------------------------------------------------------------------------------- samples


def test_load_samples_gives_the_trainer_its_dicts(tiny_dataset):
    samples = load_samples(tiny_dataset.train_csv)
    assert len(samples) == 8
    root = str(tiny_dataset.folder.resolve())
    for s in samples:
        assert set(s) == {"text", "audio_file", "speaker_name", "language", "root_path", "audio_unique_name"}
        assert Path(s["audio_file"]).is_absolute() and Path(s["audio_file"]).is_file()
        assert s["language"] == "en" and s["root_path"] == root and s["speaker_name"] == "speaker"
        assert s["audio_unique_name"] == f"{tiny_dataset.folder.name}#wavs/{Path(s['audio_file']).stem}"
    assert load_samples(tiny_dataset.eval_csv, "de")[0]["language"] == "de"


def test_load_samples_faults(tmp_path):
    (tmp_path / "wavs").mkdir()
    sf.write(tmp_path / "wavs" / "a.wav", synth_clip(4.0, seed=1), SAMPLE_RATE)
    csv_path = write_csv(tmp_path / "metadata_train.csv", [("wavs/a.wav", "hello", "coqui"),
                                                           ("wavs/gone.wav", "bye", "coqui")])
    with pytest.raises(DatasetError, match=r"language of .* is unknown"):
        load_samples(csv_path)
    with pytest.raises(DatasetError, match=r"line 3 names wavs/gone\.wav, which does not exist"):
        load_samples(csv_path, "en")
    write_csv(csv_path, [("wavs/a.wav", " ", "coqui")])
    with pytest.raises(DatasetError, match=r"line 2 \(wavs/a\.wav\) has empty text"):
        load_samples(csv_path, "en")




# ----------------------------------------------------------------------------------------------- CLI

def test_cli_validate(faulty, tiny_dataset, capsys):
    assert main(["validate", str(faulty)]) == 1
    out = capsys.readouterr().out
    assert "ERROR metadata_train.csv line 3 (wavs/missing.wav)" in out and "Traceback" not in out
    assert main(["validate", str(tiny_dataset.train_csv), "--json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    report = events[-1]
    assert report["event"] == "report" and report["ok"] and report["train_lines"] == 8
    assert events[-2]["event"] == "progress" and events[-2]["files_done"] == 10  # lines checked
