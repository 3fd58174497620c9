"""Dataset preparation on real audio files made here: recordings -> clips + CSVs, import, the CLI (validation:
tests/test_dataset_validation.py).

The only stand-in is `ScriptedTranscriber`: it returns known, word-timed segments for known audio (matched by
the file's content), so that clip cutting, the split and the CSVs are checked without Whisper weights.
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from dataset_files import read_rows

from utils.data.cli import main
from utils.data.clips import plan_clips
from utils.data.errors import DatasetError
from utils.data.folder import dataset_dir_for
from utils.data.importers import import_dataset
from utils.data.metadata import load_samples
from utils.data.options import ImportOptions, PrepareOptions
from utils.data.prepare import prepare_from_audio
from utils.data.progress import Progress
from utils.data.transcribe import Segment, Transcript, Word
from utils.data.validate import validate_dataset
from utils.fsio import file_sha256
from utils.testbed import SENTENCES, synth_clip
from utils.xtts import SAMPLE_RATE

ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------------------------- helpers


class ScriptedTranscriber:
    """Returns the segments registered for a file's content; records which files it was asked about."""

    def __init__(self, language: str = "en") -> None:
        self.language = language
        self.scripts: dict[str, tuple[list[Segment], float]] = {}
        self.calls: list[str] = []

    def register(self, path: Path, segments: list[Segment], duration: float) -> None:
        self.scripts[file_sha256(path)] = (segments, duration)

    def transcribe(self, path, language=None, *, on_progress=None) -> Transcript:
        self.calls.append(Path(path).name)
        segments, duration = self.scripts[file_sha256(Path(path))]
        for seg in segments:
            if on_progress:
                on_progress(seg.end)
        return Transcript(language or self.language, segments, duration)


def script(sentences: list[str], start: float = 0.4, word_s: float = 0.36, gap: float = 0.08, pause: float = 0.8
           ) -> tuple[list[Segment], float]:
    """Word-timed segments, one per sentence, and the length of audio they need."""
    segments, t = [], start
    for sentence in sentences:
        words = []
        for token in sentence.split():
            words.append(Word(round(t, 3), round(t + word_s, 3), " " + token, 0.9))
            t += word_s + gap
        segments.append(Segment(words[0].start, words[-1].end, sentence, tuple(words)))
        t += pause
    return segments, t + 0.3


# What torchcodec says when this machine cannot encode a format: FFmpeg's libraries absent, a container this FFmpeg
# does not know, no encoder for its codec. Any other error is a fault of the test or the code: it fails the test.
ENCODER_UNAVAILABLE = ("Could not load libtorchcodec", "Couldn't allocate AVFormatContext", "Codec not found")


def encode(path: Path, samples: np.ndarray, rate: int) -> Path:
    """Write `samples` (frames[, channels]) in the format the suffix names; skip the test, saying so, where this
    machine has no encoder for it (and only then)."""
    ext = path.suffix.lower()
    if ext in (".wav", ".flac"):  # libsndfile always has these
        sf.write(path, samples, rate)
    elif ext == ".ogg" and "VORBIS" in sf.available_subtypes("OGG"):
        sf.write(path, samples, rate, format="OGG", subtype="VORBIS")
    elif ext == ".mp3" and "MPEG_LAYER_III" in sf.available_subtypes("MP3"):
        sf.write(path, samples, rate, format="MP3", subtype="MPEG_LAYER_III")
    else:  # m4a (AAC), or ogg/mp3 where libsndfile lacks them: FFmpeg through torchcodec
        try:
            import torch
            from torchcodec.encoders import AudioEncoder

            data = torch.from_numpy(np.ascontiguousarray(samples.T if samples.ndim > 1 else samples[None, :]))
            AudioEncoder(data, sample_rate=rate).to_file(str(path))
        except (ImportError, RuntimeError) as e:
            if not isinstance(e, ImportError) and not any(m in str(e) for m in ENCODER_UNAVAILABLE):
                raise
            pytest.skip(f"no {ext} encoder on this machine ({str(e).splitlines()[0]}): the {ext} input path is NOT "
                        "tested here")
    return path


def voices(seconds: float, seed: int, channels: int, rate: int) -> np.ndarray:
    """A voice-like signal per channel, each channel a different one (frames[, channels]): a downmix that keeps one
    channel, or sums them, gives other samples than their mean."""
    if channels == 1:
        return synth_clip(seconds, seed=seed, sample_rate=rate)
    return np.stack([synth_clip(seconds, seed=seed + c, sample_rate=rate) for c in range(channels)], axis=1)


def recording(folder: Path, name: str, sentences: list[str], transcriber: ScriptedTranscriber, *, seed: int,
              channels: int = 1, rate: int = 44100, **timing) -> Path:
    """A voice-like recording long enough for `sentences`, registered with the transcriber."""
    segments, seconds = script(sentences, **timing)
    path = encode(folder / name, voices(seconds, seed, channels, rate), rate)
    transcriber.register(path, segments, sf.info(path).duration if path.suffix != ".m4a" else seconds)
    return path


FAST = PrepareOptions(language="en", min_clip_seconds=3.0, max_clip_seconds=11.0, seed=7)


# ----------------------------------------------------------------------------------------------- from recordings


def test_recordings_become_22khz_mono_clips_and_csvs(tmp_path, vocab):
    t = ScriptedTranscriber()
    src = tmp_path / "src"
    src.mkdir()
    stereo = recording(src, "interview.wav", SENTENCES[:4], t, seed=1, channels=2, rate=44100)
    flac = recording(src, "reading.flac", SENTENCES[4:7], t, seed=2, rate=16000)
    events: list[Progress] = []
    out = tmp_path / "out"
    summary = prepare_from_audio([src], dataset_dir_for(out), t, FAST, events.append)

    dataset = out / "dataset"
    assert summary.dataset_dir == dataset and summary.language == "en"
    assert sorted(t.calls) == ["interview.wav", "reading.flac"]
    assert summary.clips_added == 7 and sorted(summary.files_added) == [str(stereo.resolve()), str(flac.resolve())]
    assert (dataset / "lang.txt").read_text().strip() == "en"
    train, evals = read_rows(dataset / "metadata_train.csv"), read_rows(dataset / "metadata_eval.csv")
    assert train[0] == evals[0] == ["audio_file", "text", "speaker_name"]
    rows = train[1:] + evals[1:]
    assert len(evals) - 1 == 1 and len(train) - 1 == 6  # 15% of 7, rounded, at least one
    assert sorted(r[1] for r in rows) == sorted(SENTENCES[:7])  # one sentence per clip, text as spoken
    for rel, _, speaker in rows:
        assert speaker == "coqui" and rel.startswith("wavs/") and not Path(rel).is_absolute()
        info = sf.info(dataset / rel)
        assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
        assert 3.0 <= info.duration <= 11.0
    report = validate_dataset(dataset / "metadata_train.csv", vocab_path=vocab)
    assert report.ok and not report.warnings, report.format()

    assert events[0].files_done == 0 and events[-1].files_done == events[-1].files_total == 2
    assert events[-1].clips == 7 and events[-1].remaining_s == 0.0
    assert all(e.elapsed_s >= 0 for e in events) and any(e.remaining_s not in (None, 0.0) for e in events)
    assert "files 2/2, clips 7" in str(events[-1])


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equally long signals."""
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def clips_against_source(dataset: Path, transcriber: ScriptedTranscriber, rec: Path, source: np.ndarray, rate: int
                         ) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Each clip of `rec` in the dataset, and the same stretch of `source` (the samples `rec` was made from,
    mono) resampled to 22.05 kHz by scipy's polyphase filter: a reference independent of the code's soxr."""
    from scipy.signal import resample_poly

    reference = resample_poly(source.astype(np.float64), SAMPLE_RATE, rate)
    plans = plan_clips(Transcript("en", *transcriber.scripts[file_sha256(rec)])).clips
    rows = read_rows(dataset / "metadata_train.csv")[1:] + read_rows(dataset / "metadata_eval.csv")[1:]
    assert sorted(r[1] for r in rows) == sorted(p.text for p in plans)
    out = []
    for rel, text, _ in rows:
        clip, clip_rate = sf.read(dataset / rel, dtype="float32")
        assert clip_rate == SAMPLE_RATE and clip.ndim == 1
        start = math.floor(next(p for p in plans if p.text == text).start * SAMPLE_RATE)
        assert start + len(clip) <= len(reference)
        out.append((rel, clip, reference[start: start + len(clip)]))
    return out


def test_clip_audio_is_the_stretch_of_the_recording_resampled(tmp_path):
    """A clip holds the recording's samples between its words' times (plus padding), resampled from 44.1 kHz:
    the same stretch of an independently resampled reference, sample for sample."""
    t = ScriptedTranscriber()
    rec = recording(tmp_path, "a.wav", SENTENCES[:2], t, seed=5, rate=44100)
    prepare_from_audio([rec], tmp_path / "ds", t, FAST)
    original, rate = sf.read(rec, dtype="float32")
    assert rate == 44100
    for rel, clip, reference in clips_against_source(tmp_path / "ds", t, rec, original, rate):
        np.testing.assert_allclose(clip, reference, atol=0.01, err_msg=rel)  # the filters differ near 11 kHz
        assert correlation(clip, reference) > 0.9999, rel


@pytest.mark.parametrize("suffix", [".mp3", ".ogg", ".m4a"])
def test_compressed_recordings(tmp_path, suffix):
    """Stereo 44.1 kHz mp3, ogg and m4a (a different voice in each channel) become mono 22.05 kHz clips that sound
    like their stretch of the channels' mean: correlation with it above 0.99 and the same level within 5% (the
    codecs lose a little; a garbled decode, a wrong stretch or one channel only scores < 0.8, a sum is 2x as loud)."""
    t = ScriptedTranscriber()
    rec = recording(tmp_path, f"voice{suffix}", SENTENCES[:2], t, seed=9, channels=2, rate=44100)
    summary = prepare_from_audio([rec], tmp_path / "ds", t, FAST)
    assert summary.clips_added == 2
    _, seconds = script(SENTENCES[:2])
    source = voices(seconds, 9, 2, 44100).mean(axis=1)  # what was encoded, downmixed
    for rel, clip, reference in clips_against_source(tmp_path / "ds", t, rec, source, 44100):
        assert correlation(clip, reference) > 0.99, rel
        level = float(np.sqrt(np.mean(clip.astype(np.float64) ** 2) / np.mean(reference**2)))
        assert 0.95 < level < 1.05, (rel, level)


def test_encode_fails_rather_than_skips_on_a_real_error(tmp_path):
    """The test helper skips only where this machine has no encoder: a bad call is a failure, not a skip."""
    try:
        encode(tmp_path / "many.m4a", np.zeros((1000, 300), dtype=np.float32), 44100)  # 300 channels
    except RuntimeError:
        pass
    except pytest.skip.Exception as skipped:
        pytest.fail(f"encode turned a real error into a skip: {skipped}")
    else:
        pytest.fail("encode wrote 300 channels of AAC without a word")


def test_split_is_deterministic_for_a_seed(tmp_path):
    t = ScriptedTranscriber()
    recs = [recording(tmp_path, f"r{i}.wav", SENTENCES[i * 3:(i + 1) * 3], t, seed=i, rate=22050) for i in range(4)]

    def eval_texts(folder: str, seed: int, order: list[Path]) -> set[str]:
        opts = PrepareOptions(language="en", seed=seed, eval_fraction=0.25)
        prepare_from_audio(order, tmp_path / folder, t, opts)
        return {r[1] for r in read_rows(tmp_path / folder / "metadata_eval.csv")[1:]}

    first = eval_texts("a", 1, recs)
    assert len(first) == 3  # 25% of 12
    assert eval_texts("b", 1, recs[::-1]) == first  # same seed, other order: same split
    assert any(eval_texts(f"c{s}", s, recs) != first for s in (2, 3, 4))


def test_adding_recordings_redoes_no_old_ones(tmp_path):
    t = ScriptedTranscriber()
    a = recording(tmp_path, "a.wav", SENTENCES[:3], t, seed=1, rate=22050)
    b = recording(tmp_path, "b.ogg", SENTENCES[3:6], t, seed=2, rate=44100)
    ds = tmp_path / "ds"
    prepare_from_audio([a], ds, t, FAST)
    before = {p.name: p.read_bytes() for p in (ds / "wavs").iterdir()}
    old_train = read_rows(ds / "metadata_train.csv")
    old_eval = read_rows(ds / "metadata_eval.csv")
    t.calls.clear()

    copy_of_a = tmp_path / "again" / "a_renamed.wav"
    copy_of_a.parent.mkdir()
    copy_of_a.write_bytes(a.read_bytes())
    copy_of_b = tmp_path / "again" / "b_copy.ogg"
    copy_of_b.write_bytes(b.read_bytes())
    summary = prepare_from_audio([a, copy_of_a, b, copy_of_b], ds, t, FAST)
    assert t.calls == ["b.ogg"]  # only the new recording was transcribed, and its copy not at all
    assert summary.files_skipped == [str(a.resolve()), str(copy_of_a.resolve()), str(copy_of_b.resolve())]
    assert summary.clips_added == 3 and summary.train_lines + summary.eval_lines == 6
    assert {p.name: p.read_bytes() for p in (ds / "wavs").iterdir() if p.name in before} == before
    assert read_rows(ds / "metadata_train.csv")[: len(old_train)] == old_train  # old lines stay where they were
    assert read_rows(ds / "metadata_eval.csv")[: len(old_eval)] == old_eval

    t.calls.clear()
    prepare_from_audio([a, b], ds, t, FAST)
    assert t.calls == []
    manifest = json.loads((ds / "sources.json").read_text())["sources"]
    assert len(manifest) == 2 and all(len(v["clips"]) == 3 for v in manifest.values())


def test_language_is_detected_then_kept(tmp_path):
    t = ScriptedTranscriber(language="de")
    a = recording(tmp_path, "a.wav", SENTENCES[:2], t, seed=1, rate=22050)
    b = recording(tmp_path, "b.wav", SENTENCES[2:4], t, seed=2, rate=22050)
    summary = prepare_from_audio([a], tmp_path / "ds", t, PrepareOptions())  # language: detect
    assert summary.language == "de" and (tmp_path / "ds" / "lang.txt").read_text().strip() == "de"
    with pytest.raises(DatasetError, match=r"is in 'de'.*not 'en'.*another output folder"):
        prepare_from_audio([b], tmp_path / "ds", t, PrepareOptions(language="en"))


def test_bad_inputs_and_options_are_named(tmp_path):
    t = ScriptedTranscriber()
    with pytest.raises(DatasetError, match=r"nowhere\.wav does not exist"):
        prepare_from_audio([tmp_path / "nowhere.wav"], tmp_path / "ds", t, FAST)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="No audio files"):
        prepare_from_audio([tmp_path / "empty"], tmp_path / "ds", t, FAST)
    broken = tmp_path / "broken.mp3"
    broken.write_text("this is not audio")
    with pytest.raises(DatasetError, match=r"broken\.mp3 cannot be read"):
        prepare_from_audio([broken], tmp_path / "ds", t, FAST)
    for bad, name in (({"eval_fraction": 0.0}, "eval_fraction"), ({"max_clip_seconds": 2.0}, "max_clip_seconds"),
                      ({"speaker_name": "a|b"}, "speaker_name"), ({"language": "English"}, "language")):
        with pytest.raises(ValueError, match=name):
            prepare_from_audio([broken], tmp_path / "ds", t, PrepareOptions(**bad))
    assert not (tmp_path / "ds").exists()


# ----------------------------------------------------------------------------------------------- clip planning


def test_long_sentences_are_split_and_short_ones_joined():
    long_sentence = " ".join(SENTENCES[0].rstrip(".").split() * 3) + "."  # ~11.9 s of words
    segments, seconds = script([long_sentence, "yes.", "of course.", SENTENCES[1]])
    planning = plan_clips(Transcript("en", segments, seconds), min_seconds=3.0, max_seconds=11.0)
    clips, left_out = planning.clips, planning.left_out
    assert not left_out
    assert all(3.0 <= c.seconds <= 11.0 for c in clips), [c.seconds for c in clips]
    assert len(clips) == 3
    assert " ".join(c.text for c in clips[:2]) == long_sentence
    assert clips[2].text == "yes. of course. " + SENTENCES[1]  # the short ones joined with their neighbour
    for a, b in itertools.pairwise(clips):
        assert a.end <= b.start  # no clip reaches into the next one


def test_clip_edges_stay_between_words():
    segments, seconds = script(SENTENCES[:3], gap=0.05, pause=0.1)  # sentences close together
    clips = plan_clips(Transcript("en", segments, seconds), padding_seconds=0.5).clips
    words = [w for s in segments for w in s.words]
    for clip in clips:
        inside = [w for w in words if w.start < clip.end and w.end > clip.start]
        assert all(clip.start <= w.start and w.end <= clip.end for w in inside), clip
        assert "".join(w.text for w in inside).strip() == clip.text


def test_segments_without_words_and_leftovers():
    segments = [Segment(0.5, 4.5, " A sentence without word times."), Segment(6.0, 6.8, "Hm."),
                Segment(9.0, 22.0, "A run-on stretch without any word times at all.")]
    planning = plan_clips(Transcript("en", segments, 23.0))
    clips, left_out = planning.clips, planning.left_out
    assert [c.text for c in clips] == ["A sentence without word times. Hm."]
    assert len(left_out) == 1 and "longer than 11 s" in left_out[0]


def shifted(segment: Segment, by: float, text: str | None = None) -> Segment:
    """`segment` moved `by` seconds, its words too; with other words when `text` is given."""
    tokens = text.split() if text else [w.text for w in segment.words]
    words = tuple(Word(w.start + by, w.end + by, t if t.startswith(" ") else " " + t, w.probability)
                  for w, t in zip(segment.words, tokens, strict=False))
    return Segment(segment.start + by, words[-1].end, text or segment.text, words)


def test_segments_whose_times_cannot_be_true_are_left_out_and_counted(tmp_path):
    """What real and random Whisper models emit now and then: a segment past the end of the audio, one that
    goes back over words already heard, one whose words run backwards, one without text, and a last word ending
    a little past the end. Only the true sentences become clips, each inside the audio, and the summary says
    how many segments were left out and why."""
    t = ScriptedTranscriber()
    good, _ = script(SENTENCES[:3])
    seconds = good[-1].end - 0.3  # the last sentence's last word ends 0.3 s past the end of the audio
    after = good[1].end
    backwards = Segment(after + 0.2, after + 1.0, "Backwards words.", (
        Word(after + 0.6, after + 1.0, " Backwards"), Word(after + 0.5, after + 0.2, " words.")))
    segments = [good[0], good[1],
                shifted(good[0], 0.5, "never said here by anyone at all"),  # overlaps the first: out of order
                backwards,
                good[2],
                shifted(good[0], 23.0 - good[0].start, "words past the end of the audio."),  # 23-27 s of a 19 s file
                Segment(seconds - 0.1, seconds, " \u266a", ())]  # music notes: no text
    path = encode(tmp_path / "a.wav", synth_clip(seconds, seed=4, sample_rate=SAMPLE_RATE), SAMPLE_RATE)
    t.register(path, segments, seconds)
    summary = prepare_from_audio([path], tmp_path / "ds", t, FAST)

    rows = read_rows(tmp_path / "ds" / "metadata_train.csv")[1:] + read_rows(tmp_path / "ds" / "metadata_eval.csv")[1:]
    assert sorted(r[1] for r in rows) == sorted(SENTENCES[:3])
    for rel, _, _ in rows:
        info = sf.info(tmp_path / "ds" / rel)
        assert 3.0 <= info.duration <= 11.0
    assert summary.left_out == [
        f"a.wav: 4 segment(s) left out, their times or text cannot be true: 1 outside the audio (0-{seconds:.2f} s), "
        "2 out of order or overlapping the one before, 1 without text; 1 segment(s) ending up to 0.5 s past the end "
        "of the audio cut at its end."]
    planning = plan_clips(Transcript("en", segments, seconds), duration=seconds)
    assert (planning.timing.outside, planning.timing.out_of_order, planning.timing.empty) == (1, 2, 1)
    assert all(0.0 <= c.start < c.end <= seconds for c in planning.clips)
    assert validate_dataset(tmp_path / "ds" / "metadata_train.csv").ok


@pytest.mark.parametrize(("past_end", "kept"), [(0.0, True), (0.4, True), (0.6, False), (4.0, False)])
def test_a_segment_ending_past_the_end_is_cut_there_or_left_out(past_end, kept):
    """The issue's mislabelled clip: words at 23-27 s of a 20 s file must not become a clip 17-20 s. A segment
    ending within half a second of the end is cut at the end; further past, its times cannot be true."""
    words = (Word(16.0, 17.5, " Four"), Word(17.6, 18.8, " words"), Word(18.9, 19.5, " are"),
             Word(19.6, 20.0 + past_end, " spoken."))
    planning = plan_clips(Transcript("en", [Segment(16.0, 20.0 + past_end, "Four words are spoken.", words)], 20.0),
                          duration=20.0)
    if kept:
        assert [(c.text, c.end) for c in planning.clips] == [("Four words are spoken.", 20.0)]
    else:
        assert planning.clips == [] and planning.timing.outside == 1
    late = plan_clips(Transcript("en", [shifted(Segment(16.0, 20.0, "Four words are spoken.", words), 7.0)], 20.0),
                      duration=20.0)
    assert late.clips == [] and late.timing.outside == 1 and late.timing.describe(20.0).startswith("1 segment(s)")


# ----------------------------------------------------------------------------------------------- import


def ljspeech(folder: Path, rate: int = 44100) -> Path:
    (folder / "wavs").mkdir(parents=True)
    lines = []
    for i, sentence in enumerate(SENTENCES[:8]):
        seconds = 1.0 if i == 7 else 3.2 + 0.2 * i  # the last one is too short for conditioning
        sf.write(folder / "wavs" / f"LJ001-{i:04d}.wav", synth_clip(seconds, seed=i, sample_rate=rate), rate)
        raw = f'"{sentence.capitalize()}" said Dr. Smith' if i == 0 else sentence.upper()
        lines.append(f"LJ001-{i:04d}|{raw}|{sentence}")
    lines.append("LJ001-0099|a line whose audio is gone.|a line whose audio is gone.")
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_import_ljspeech_copies_and_resamples(tmp_path, vocab):
    src = ljspeech(tmp_path / "LJSpeech-1.1")
    summary = import_dataset(src, tmp_path / "out" / "dataset", ImportOptions(language="en", seed=3))
    ds = tmp_path / "out" / "dataset"
    assert summary.clips_added == 7 and summary.train_lines == 6 and summary.eval_lines == 1
    assert any("line 8" in r and "outside 3-11 s" in r for r in summary.left_out)
    assert any("line 9" in r and "does not exist" in r for r in summary.left_out)
    rows = read_rows(ds / "metadata_train.csv")[1:] + read_rows(ds / "metadata_eval.csv")[1:]
    assert {r[1] for r in rows} == set(SENTENCES[:7])  # the normalized column
    for rel, _, speaker in rows:
        assert rel.startswith("wavs/LJ001-") and speaker == "coqui"
        assert sf.info(ds / rel).samplerate == SAMPLE_RATE
    assert validate_dataset(ds, vocab_path=vocab).ok

    again = import_dataset(src, ds, ImportOptions(language="en", seed=3))
    assert again.clips_added == 0 and len(again.files_skipped) == 7
    assert (again.train_lines, again.eval_lines) == (6, 1)


def test_import_ljspeech_raw_text_in_place(tmp_path):
    src = ljspeech(tmp_path / "lj", rate=SAMPLE_RATE)
    ds = tmp_path / "ds"
    import_dataset(src / "metadata.csv", ds, ImportOptions(language="en", copy_audio=False,
                                                                 ljspeech_text="raw", speaker_name="narrator"))
    assert not (ds / "wavs").exists()
    samples = load_samples(ds / "metadata_train.csv") + load_samples(ds / "metadata_eval.csv")
    texts = {s["text"] for s in samples}
    assert '"The quick brown fox jumps over the lazy dog." said Dr. Smith' in texts  # quotes kept as written
    for s in samples:
        assert Path(s["audio_file"]).parent == (src / "wavs").resolve() and s["speaker_name"] == "narrator"


def test_import_coqui_keeps_its_split(tmp_path, tiny_dataset, vocab):
    ds = tmp_path / "ds"
    summary = import_dataset(tiny_dataset.folder, ds)
    assert summary.language == "en"  # from the source's lang.txt
    assert (summary.train_lines, summary.eval_lines) == (8, 2)
    source_eval = {r[1] for r in read_rows(tiny_dataset.eval_csv)[1:]}
    assert {r[1] for r in read_rows(ds / "metadata_eval.csv")[1:]} == source_eval
    assert validate_dataset(ds, vocab_path=vocab).ok
    # one CSV alone is split by the seed
    single = import_dataset(tiny_dataset.train_csv, tmp_path / "single", ImportOptions(eval_fraction=0.25))
    assert (single.train_lines, single.eval_lines) == (6, 2)


def test_import_refuses_unknown_sources(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        import_dataset(tmp_path / "nothing", tmp_path / "ds")
    (tmp_path / "folder").mkdir()
    with pytest.raises(DatasetError, match=r"neither metadata\.csv"):
        import_dataset(tmp_path / "folder", tmp_path / "ds")
    src = ljspeech(tmp_path / "lj")
    with pytest.raises(DatasetError, match="pass --language"):
        import_dataset(src, tmp_path / "ds")


def test_csv_round_trip_with_quotes_and_pipes(tmp_path):
    t = ScriptedTranscriber()
    text = ['he said "stop" twice, then he turned and left the room without a word.',
            'the old sign by the road read "a|b" in faded red letters today.']
    rec = recording(tmp_path, "q.wav", text, t, seed=4, rate=SAMPLE_RATE)
    prepare_from_audio([rec], tmp_path / "ds", t, PrepareOptions(language="en", eval_fraction=0.5))
    samples = load_samples(tmp_path / "ds" / "metadata_train.csv") + load_samples(
        tmp_path / "ds" / "metadata_eval.csv")
    assert sorted(s["text"] for s in samples) == sorted(text)
    from TTS.tts.datasets.formatters import coqui  # the trainer's own reader agrees

    items = coqui(str(tmp_path / "ds"), "metadata_train.csv") + coqui(str(tmp_path / "ds"), "metadata_eval.csv")
    assert sorted(i["text"] for i in items) == sorted(text)


# ----------------------------------------------------------------------------------------------- CLI



def test_cli_import_and_progress(tmp_path, capsys):
    src = ljspeech(tmp_path / "lj")
    code = main(["import", str(src), "--out_path", str(tmp_path / "out"), "--language", "en", "--json"])
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[0]["event"] == "progress" and events[-1]["event"] == "done"
    assert events[-1]["clips_added"] == 7 and {"files_done", "clips", "elapsed_s", "remaining_s"} <= set(events[0])
    assert main(["import", str(tmp_path / "missing"), "--dataset", str(tmp_path / "ds")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: Dataset") and "missing does not exist" in err and "Traceback" not in err


def test_cli_transcribe_without_whisper_model(tmp_path, capsys):
    rec = tmp_path / "a.wav"
    sf.write(rec, synth_clip(4.0, seed=1), SAMPLE_RATE)
    code = main(["transcribe", str(rec), "--dataset", str(tmp_path / "ds"), "--language", "en",
                    "--whisper_model", "tiny", "--whisper_cache", str(tmp_path / "cache")])
    assert code == 1
    err = capsys.readouterr().err
    assert "Whisper model 'tiny' is not available offline" in err and "Traceback" not in err
    assert not (tmp_path / "ds").exists()


def test_cli_runs_as_a_script_from_the_repo_root(tiny_dataset, tmp_path):
    run = subprocess.run([sys.executable, "utils/formatter.py", "validate", str(tiny_dataset.folder)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "No problems found." in run.stdout
    run = subprocess.run([sys.executable, "utils/formatter.py", "validate", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "metadata_train.csv" in run.stdout and "Traceback" not in run.stderr
