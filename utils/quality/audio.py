"""Reading the clips to score: any file soundfile reads (WAV, FLAC, OGG, MP3), or samples already in memory,
made mono float32 at the 16 kHz all the scoring models take."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from utils.quality.errors import AudioUnreadable, detail

SAMPLE_RATE = 16000
AudioInput = str | Path | tuple[np.ndarray, int]
"""A clip: a file path, or (samples, sample rate) with samples of shape (n,) or (n, channels)."""


def describe(source: AudioInput) -> str:
    """A short name for a clip in messages: its path, or 'audio in memory'."""
    return str(source) if isinstance(source, str | Path) else "audio in memory"


def load(source: AudioInput) -> np.ndarray:
    """The clip as mono float32 samples at 16 kHz, within [-1, 1]. Raises `AudioUnreadable` for a missing
    or undecodable file."""
    if isinstance(source, str | Path):
        samples, rate = _read(Path(source))
    else:
        samples, rate = np.asarray(source[0], dtype=np.float32), int(source[1])
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    samples = np.nan_to_num(samples.astype(np.float32, copy=False))
    if rate != SAMPLE_RATE and len(samples):
        import soxr

        samples = soxr.resample(samples, rate, SAMPLE_RATE).astype(np.float32, copy=False)
    return np.clip(samples, -1.0, 1.0)


def _read(path: Path) -> tuple[np.ndarray, int]:
    if not path.is_file():
        raise AudioUnreadable(f"Audio file {path} does not exist: pass the path of a WAV (or FLAC, OGG, MP3) file.")
    import soundfile

    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, ValueError) as e:  # soundfile.LibsndfileError is a RuntimeError
        raise AudioUnreadable(f"Audio file {path} cannot be read ({detail(e)}): "
                              "convert it to WAV (e.g. ffmpeg -i FILE out.wav) and pass that.") from e
    return samples, int(rate)
