"""Real speech with known text for tests: espeak-ng speaks sentences to WAV, numpy mixes in noise and pads.

espeak-ng comes from Debian (`make setup` installs it); without it these helpers fail the test, telling so,
rather than letting it skip silently."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "She sells sea shells by the sea shore every summer morning.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "A large red balloon floated slowly above the quiet village.",
)
BABBLE = ("Seven green apples were sitting on the kitchen table, next to an old blue teapot, "
          "while the radio played music from another century.")


def espeak_binary() -> str:
    """The espeak-ng executable; fails the calling test when it is not installed."""
    found = shutil.which("espeak-ng")
    if found is None:
        pytest.fail("espeak-ng is missing: run `make setup` (it installs espeak-ng and sox with apt-get).")
    return found


def speak(text: str, path: Path, voice: str = "en-us", pitch: int | None = None, speed: int | None = None) -> Path:
    """`text` spoken by espeak-ng's `voice` into the WAV file `path` (22050 Hz mono, as espeak writes it)."""
    command = [espeak_binary(), "-v", voice, "-w", str(path)]
    if pitch is not None:
        command += ["-p", str(pitch)]
    if speed is not None:
        command += ["-s", str(speed)]
    subprocess.run([*command, text], check=True, capture_output=True, timeout=60)
    return path


def with_noise(source: Path, path: Path, snr_db: float = 0.0, seed: int = 0) -> Path:
    """`source` with white noise mixed in at `snr_db` (signal to noise, by RMS), written to `path`."""
    audio, rate = sf.read(source, dtype="float32")
    rms = float(np.sqrt(np.mean(audio**2)))
    noise = np.random.default_rng(seed).standard_normal(len(audio)).astype(np.float32)
    noise *= rms / (10 ** (snr_db / 20))
    mixed = audio + noise
    sf.write(path, mixed / max(1.0, float(np.abs(mixed).max())), rate)
    return path


def noise(path: Path, seconds: float = 3.0, rate: int = 16000, level: float = 0.3, seed: int = 0) -> Path:
    """White noise only, `seconds` long."""
    audio = np.random.default_rng(seed).standard_normal(int(seconds * rate)).astype(np.float32) * level
    sf.write(path, np.clip(audio, -1.0, 1.0), rate)
    return path


def silence(path: Path, seconds: float = 3.0, rate: int = 16000) -> Path:
    """Digital silence, `seconds` long."""
    sf.write(path, np.zeros(int(seconds * rate), dtype=np.float32), rate)
    return path


def concatenate(parts: list[Path], path: Path, gap_s: float = 0.2) -> Path:
    """The clips `parts` (one sample rate) one after another with `gap_s` of silence between, as `path`."""
    clips = [sf.read(p, dtype="float32") for p in parts]
    rate = clips[0][1]
    gap = np.zeros(int(gap_s * rate), dtype=np.float32)
    joined = [piece for audio, _ in clips for piece in (audio, gap)][:-1]
    sf.write(path, np.concatenate(joined), rate)
    return path
