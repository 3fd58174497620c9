"""A small espeak-ng dataset with planted faults, for the quality gate's tests and its benchmark.

One speaker ("alice", espeak's en-us voice) says clean sentences; among them are a line whose text is another
sentence, a clip of noise, a clipped clip, a mostly silent clip, a clip in another espeak voice under alice's
name, and a clip with babble after its sentence. `FAULTS` names the flag each fault must get."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from tests import speech

CLEAN_SENTENCES = (
    *speech.SENTENCES,
    "My grandmother grows tomatoes and beans in her small garden.",
    "The train to the city leaves at seven every morning.",
)
OTHER_TEXT = "Yesterday the library closed early because of the storm."
SHORT_BABBLE = "Seven green apples were sitting on the kitchen table."
SPEAKER = "alice"
# clip name -> the flag the gate must give it
FAULTS = {
    "mismatch": "transcript_mismatch",
    "noise": "noisy",
    "clipped": "clipped",
    "silent": "silence",
    "other_voice": "other_speaker",
    "babble": "speaking_rate",
}


@dataclass
class FaultyDataset:
    """The dataset folder, and for each clip name its CSV, line and audio_file."""

    folder: Path
    lines: dict[str, tuple[str, int, str]] = field(default_factory=dict)

    @property
    def clean(self) -> list[str]:
        return [name for name in self.lines if name not in FAULTS]


def _clipped(source: Path, path: Path, gain: float = 8.0) -> Path:
    audio, rate = sf.read(source, dtype="float32")
    sf.write(path, np.clip(audio * gain, -1.0, 1.0), rate)
    return path


def _padded(source: Path, path: Path, seconds: float) -> Path:
    audio, rate = sf.read(source, dtype="float32")
    sf.write(path, np.concatenate([audio, np.zeros(int(seconds * rate), dtype=np.float32)]), rate)
    return path


def build(folder: Path) -> FaultyDataset:
    """Write the clips into `folder/wavs` and the CSVs (train: every fault and four clean clips; eval: two clean
    clips) and lang.txt; returns where each clip's line is."""
    wavs = folder / "wavs"
    wavs.mkdir(parents=True, exist_ok=True)
    tmp = folder / "parts"
    tmp.mkdir(exist_ok=True)
    clips: dict[str, tuple[Path, str]] = {}
    for i, sentence in enumerate(CLEAN_SENTENCES):  # at least 3.2 s: XTTS conditions on 3 s
        spoken = speech.speak(sentence, tmp / f"clean{i}.wav")
        clips[f"clean{i}"] = (_padded(spoken, wavs / f"clean{i}.wav", max(0.0, 3.2 - sf.info(spoken).duration)),
                              sentence)
    clips["mismatch"] = (speech.speak(speech.SENTENCES[1], wavs / "mismatch.wav"), OTHER_TEXT)
    clips["noise"] = (speech.noise(wavs / "noise.wav", seconds=3.0, rate=22050), speech.SENTENCES[2])
    clips["clipped"] = (_clipped(speech.speak(speech.SENTENCES[3], tmp / "c.wav"), wavs / "clipped.wav"),
                        speech.SENTENCES[3])
    hello = speech.speak("Hello there.", tmp / "hello.wav")
    clips["silent"] = (_padded(hello, wavs / "silent.wav", 3.0), "Hello there.")
    clips["other_voice"] = (speech.speak(speech.SENTENCES[2], wavs / "other_voice.wav", voice="en-us+f3", pitch=70),
                            speech.SENTENCES[2])
    babble = speech.speak(SHORT_BABBLE, tmp / "babble.wav")
    clips["babble"] = (speech.concatenate([speech.speak(speech.SENTENCES[0], tmp / "b0.wav"), babble],
                                          wavs / "babble.wav"), speech.SENTENCES[0])
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()
    eval_names = ["clean4", "clean5"]
    train_names = [n for n in clips if n not in eval_names]
    dataset = FaultyDataset(folder)
    for csv_name, names in (("metadata_train.csv", train_names), ("metadata_eval.csv", eval_names)):
        lines = ["audio_file|text|speaker_name"]
        for name in names:
            path, text = clips[name]
            audio_file = f"wavs/{path.name}"
            lines.append(f"{audio_file}|{text}|{SPEAKER}")
            dataset.lines[name] = (csv_name, len(lines), audio_file)
        (folder / csv_name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "lang.txt").write_text("en\n", encoding="utf-8")
    return dataset
