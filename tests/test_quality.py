"""The voice-quality scorers on real speech (espeak-ng) with the real models (packaged tiny.en, resemblyzer,
DNSMOS), and the `python utils/quality.py` command."""

from __future__ import annotations

import json
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import soundfile as sf

from tests import speech
from utils.quality import text as qtext
from utils.quality.errors import ModelUnavailable

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = ROOT / "utils" / "quality.py"
KEYS = ["cer", "transcript", "speaker_similarity", "mos", "duration_ratio"]


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    """espeak-ng clips: s0..s3 (one voice, the four sentences), other (another voice saying s0), ref (the
    first voice saying s1, as a reference), noisy (s0 with white noise), padded (s0 then babble), framed (s0
    with 1.5 s of silence before and after), noise, silence."""
    folder = tmp_path_factory.mktemp("speech")
    out = {f"s{i}": speech.speak(s, folder / f"s{i}.wav") for i, s in enumerate(speech.SENTENCES)}
    out["other"] = speech.speak(speech.SENTENCES[0], folder / "other.wav", voice="en-us+f3", pitch=70)
    out["ref"] = out["s1"]
    out["noisy"] = speech.with_noise(out["s0"], folder / "noisy.wav", snr_db=0.0)
    babble = speech.speak(speech.BABBLE, folder / "babble.wav")
    out["padded"] = speech.concatenate([out["s0"], babble], folder / "padded.wav")
    quiet = speech.silence(folder / "quiet.wav", seconds=1.5, rate=sf.info(out["s0"]).samplerate)
    out["framed"] = speech.concatenate([quiet, out["s0"], quiet], folder / "framed.wav")
    out["noise"] = speech.noise(folder / "noise.wav")
    out["silence"] = speech.silence(folder / "silence.wav")
    return out


@pytest.fixture(scope="session")
def scorer():
    """One Scorer for the whole session, every model loaded."""
    from utils.quality.scorer import Scorer

    return Scorer().load()


def test_normalize_ignores_unicode_form_case_and_punctuation():
    nfc = "Café déjà-vu, NAÏVE!"
    nfd = unicodedata.normalize("NFD", "café  déjà vu naïve")
    assert nfc != nfd
    assert qtext.normalize(nfc) == qtext.normalize(nfd) == "café déjà vu naïve"
    assert qtext.normalize("  Don't   STOP... ") == "dont stop"
    assert qtext.cer(nfc, nfd) == 0.0


def test_cer_counts_characters_and_is_one_when_nothing_is_heard():
    assert qtext.cer("hello world", "hello world") == 0.0
    assert qtext.cer("hello world", "hello word") == pytest.approx(1 / 11)
    assert qtext.cer("hello world", "") == 1.0
    assert qtext.cer("hi", "a much longer hallucinated sentence") == 1.0  # capped
    assert qtext.letters("Hello, world!") == 10


def test_cer_of_a_clip_is_low_against_its_own_text_and_high_against_another(scorer, clips):
    for i, sentence in enumerate(speech.SENTENCES):
        own = scorer.score(clips[f"s{i}"], sentence)
        other = scorer.score(clips[f"s{i}"], speech.SENTENCES[(i + 1) % len(speech.SENTENCES)])
        assert own.cer < 0.3, (sentence, own.transcript)
        assert other.cer > 0.5, (sentence, other.transcript)
        assert own.transcript == other.transcript


@pytest.mark.parametrize("name", ["noise", "silence"])
def test_no_speech_scores_cer_one_and_nulls(scorer, clips, name):
    scores = scorer.score(clips[name], speech.SENTENCES[0], clips["ref"])
    assert scores.to_dict() == {"cer": 1.0, "transcript": "", "speaker_similarity": None, "mos": None,
                                "duration_ratio": None}


def test_same_voice_is_more_similar_than_another_voice(scorer, clips):
    same = scorer.score(clips["s0"], speech.SENTENCES[0], clips["ref"]).speaker_similarity
    other = scorer.score(clips["other"], speech.SENTENCES[0], clips["ref"]).speaker_similarity
    assert same is not None and other is not None
    assert same > other + 0.1, (same, other)
    assert scorer.score(clips["s0"], speech.SENTENCES[0]).speaker_similarity is None  # no reference


def test_white_noise_lowers_mos(scorer, clips):
    clean = scorer.score(clips["s0"], speech.SENTENCES[0]).mos
    noisy = scorer.score(clips["noisy"], speech.SENTENCES[0]).mos
    assert clean is not None and noisy is not None
    assert 1.0 <= noisy < clean - 0.3 <= 5.0, (clean, noisy)


def test_babble_past_the_sentence_raises_the_duration_ratio(scorer, clips):
    text = speech.SENTENCES[0]
    for kwargs in ({"reference": clips["ref"], "reference_text": speech.SENTENCES[1]},  # rate: R and its text
                   {"reference": clips["ref"]},  # rate: R and its transcript
                   {}):  # rate: English default
        clean = scorer.score(clips["s0"], text, **kwargs).duration_ratio
        padded = scorer.score(clips["padded"], text, **kwargs).duration_ratio
        assert clean is not None and padded is not None
        assert 0.6 < clean < 1.5 < padded, (kwargs, clean, padded)
        assert padded > clean * 2
    framed = scorer.score(clips["framed"], text).duration_ratio
    assert framed == pytest.approx(clean, rel=0.1)  # leading and trailing silence do not count


def test_references_are_analysed_once_and_audio_may_be_in_memory(scorer, clips, monkeypatch):
    scorer._references.clear()
    heard = []
    transcribe = scorer.asr.transcribe
    monkeypatch.setattr(scorer.asr, "transcribe", lambda audio, language=None: heard.append(1) or transcribe(
        audio, language))
    first = scorer.score(clips["s0"], speech.SENTENCES[0], clips["s2"])
    again = scorer.score(clips["s0"], speech.SENTENCES[0], clips["s2"])
    assert len(heard) == 3  # the reference's transcript (for its rate) once, the clip twice
    assert again == first
    samples, rate = sf.read(clips["s0"], dtype="float32")
    in_memory = scorer.score((samples, rate), speech.SENTENCES[0], (sf.read(clips["s2"], dtype="float32")))
    assert in_memory.transcript == first.transcript
    assert in_memory.speaker_similarity == pytest.approx(first.speaker_similarity, abs=1e-4)


def test_an_english_only_whisper_refuses_another_language(scorer):
    with pytest.raises(ModelUnavailable, match="English only"):
        scorer.asr.check_language("de")
    scorer.asr.check_language("en")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The launcher run as a script from another working directory."""
    return subprocess.run([sys.executable, str(LAUNCHER), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_cli_json_prints_one_line_per_clip_with_exactly_the_five_keys(clips, tmp_path):
    text = speech.SENTENCES[0]
    done = run_cli("--audio", str(clips["s0"]), "--text", text, "--audio", str(clips["silence"]), "--text", text,
                   "--reference", str(clips["ref"]), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout
    spoken, silent = map(json.loads, lines)
    assert list(spoken) == KEYS and list(silent) == KEYS
    assert spoken["cer"] < 0.3 and spoken["transcript"]
    assert all(isinstance(spoken[k], float) for k in ("speaker_similarity", "mos", "duration_ratio"))
    assert silent == {"cer": 1.0, "transcript": "", "speaker_similarity": None, "mos": None, "duration_ratio": None}


def test_cli_prints_one_human_line(clips, tmp_path):
    done = run_cli("--audio", str(clips["s0"]), "--text", speech.SENTENCES[0], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    assert line.startswith("cer 0.") and ' · transcript "' in line
    assert "speaker similarity n/a · MOS " in line and " · duration ratio " in line


@pytest.mark.parametrize("case", ["missing audio", "unreadable audio", "missing whisper folder"])
def test_cli_fails_with_one_sentence_and_no_traceback(clips, tmp_path, case):
    args = ["--audio", str(clips["s0"]), "--text", "hello"]
    if case == "missing audio":
        args[1] = str(tmp_path / "absent.wav")
    elif case == "unreadable audio":
        (tmp_path / "bad.wav").write_text("not audio")
        args[1] = str(tmp_path / "bad.wav")
    else:
        args += ["--whisper_model", str(tmp_path / "no_such_model")]
    done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    (message,) = done.stderr.strip().splitlines()
    assert str(tmp_path / ("no_such_model" if case == "missing whisper folder" else Path(args[1]).name)) in message


def test_importing_the_package_loads_no_model_library():
    code = ("import sys, utils.quality.scorer, utils.quality.cli; "
            "print([m for m in ('faster_whisper', 'resemblyzer', 'onnxruntime', 'torch') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
