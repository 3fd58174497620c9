"""The transcriber interface and the faster-whisper implementation, for everything that runs without weights.

Whisper weights cannot be downloaded on the machines these tests run on, so transcription with real weights
is not tested here: `python utils/formatter.py transcribe --whisper_model <folder>` is the manual check.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf

from utils.data import transcribe as tr
from utils.testbed import synth_clip


def fw_segment(start, end, text, words):
    """A real faster-whisper Segment, as `WhisperModel.transcribe` yields it."""
    from faster_whisper.transcribe import Segment as FwSegment

    return FwSegment(id=1, seek=0, start=start, end=end, text=text, tokens=[50364, 440], avg_logprob=-0.2,
                     compression_ratio=1.3, no_speech_prob=0.01, words=words, temperature=0.0)


def fw_word(start, end, word, probability=0.9):
    from faster_whisper.transcribe import Word as FwWord

    return FwWord(start=start, end=end, word=word, probability=probability)


def test_convert_segments_keeps_times_text_and_words():
    segments = [
        fw_segment(0.0, 1.2, " Hello there.", [fw_word(0.0, 0.5, " Hello"), fw_word(0.6, 1.2, " there.", 0.75)]),
        fw_segment(1.5, 2.0, " Bye.", None),  # word_timestamps off: no words
    ]
    seen = []
    out = tr.convert_segments(iter(segments), on_progress=seen.append)
    assert out[0] == tr.Segment(0.0, 1.2, "Hello there.", (tr.Word(0.0, 0.5, " Hello", 0.9),
                                                            tr.Word(0.6, 1.2, " there.", 0.75)))
    assert out[1] == tr.Segment(1.5, 2.0, "Bye.", ())
    assert isinstance(out[0].start, float) and isinstance(out[0].words[0].probability, float)
    assert "".join(w.text for w in out[0].words).strip() == "Hello there."
    assert seen == [1.2, 2.0]


def test_faster_whisper_transcriber_is_a_transcriber():
    assert isinstance(tr.FasterWhisperTranscriber("tiny"), tr.Transcriber)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"model": "huge"}, ["'huge'", "large-v3", "tiny"]),
        ({"model": ""}, ["whisper_model", "empty"]),
        ({"model": "./no/such/folder"}, ["./no/such/folder", "folder"]),
        ({"model": "tiny", "device": "tpu"}, ["'tpu'", "cpu"]),
        ({"model": "tiny", "compute_type": "int3"}, ["'int3'", "int8"]),
        ({"model": "tiny", "beam_size": 0}, ["beam_size"]),
        ({"model": "tiny", "cpu_threads": -1}, ["cpu_threads"]),
    ],
)
def test_bad_arguments_name_the_option(kwargs, words):
    with pytest.raises(ValueError) as info:
        tr.FasterWhisperTranscriber(**kwargs)
    for word in words:
        assert word in str(info.value)


def test_good_arguments_load_nothing(tmp_path):
    for model in ("tiny", "large-v3", "turbo", "Systran/faster-whisper-small", str(tmp_path)):
        t = tr.FasterWhisperTranscriber(model, device="cpu", compute_type="int8")
        assert t._model is None


def test_transcribe_options():
    t = tr.FasterWhisperTranscriber("tiny", beam_size=2, vad_filter=False)
    assert t.transcribe_options("en") == {"language": "en", "task": "transcribe", "beam_size": 2,
                                          "word_timestamps": True, "vad_filter": False}
    assert t.transcribe_options(None)["language"] is None  # detect
    assert t.transcribe_options("")["language"] is None
    assert t.transcribe_options("zh-cn")["language"] == "zh"  # XTTS's code -> Whisper's
    assert t.transcribe_options("am")["language"] == "am"  # Amharic: Whisper knows it, XTTS does not
    with pytest.raises(ValueError, match="'xx'"):
        t.transcribe_options("xx")


def test_missing_model_offline_says_which_and_what_to_do(tmp_path):
    t = tr.FasterWhisperTranscriber("small", download_root=tmp_path / "cache", allow_download=False)
    with pytest.raises(tr.TranscriberUnavailable) as info:
        t.transcribe(_wav(tmp_path), "en")
    message = str(info.value)
    assert "Whisper model 'small' is not available offline" in message
    assert "Systran/faster-whisper-small" in message  # where to get it
    assert "--whisper_model" in message  # and how to pass it
    assert str(tmp_path / "cache") in message


def test_hf_offline_turns_downloads_off(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t = tr.FasterWhisperTranscriber("tiny", download_root=tmp_path)
    assert not t.downloads_allowed
    with pytest.raises(tr.TranscriberUnavailable, match=r"Whisper model 'tiny'.*downloads are off"):
        t.load()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert t.downloads_allowed


def test_failed_download_says_why(tmp_path):
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE:
        pytest.skip("huggingface_hub was imported without HF_HUB_OFFLINE=1: a download would really be tried")
    t = tr.FasterWhisperTranscriber("base", download_root=tmp_path, allow_download=True)
    with pytest.raises(tr.TranscriberUnavailable, match=r"Whisper model 'base'.*downloading it failed"):
        t.load()


def test_model_folder_without_model_files(tmp_path):
    t = tr.FasterWhisperTranscriber(str(tmp_path))
    with pytest.raises(tr.TranscriberUnavailable, match=r"lacks model\.bin, config\.json"):
        t.load()


def test_corrupt_model_folder_is_a_clear_error(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"not a model")
    (tmp_path / "config.json").write_text("{}")
    t = tr.FasterWhisperTranscriber(str(tmp_path), device="cpu")
    with pytest.raises(tr.TranscriberUnavailable, match="could not be loaded on device 'cpu'"):
        t.load()


def _wav(folder: Path) -> Path:
    path = folder / "speech.wav"
    sf.write(path, synth_clip(2.0, seed=3, sample_rate=16000), 16000)
    return path


def test_missing_audio_file(tmp_path):
    t = tr.FasterWhisperTranscriber("tiny", download_root=tmp_path, allow_download=False)
    with pytest.raises(FileNotFoundError, match=r"nope\.wav"):
        t.transcribe(tmp_path / "nope.wav", "en")


