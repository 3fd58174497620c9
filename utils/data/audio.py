"""Audio in and out: decode any file to float32 (libsndfile, then FFmpeg through torchcodec), mono at a rate,
its header facts, clips written as 16-bit WAV, and the audio files among the user's inputs."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.data.errors import DatasetError, short_reason
from utils.fsio import write_atomic_with
from utils.xtts import SAMPLE_RATE

AUDIO_EXTENSIONS = (".wav", ".mp3", ".flac", ".ogg", ".m4a", ".opus", ".aac", ".wma", ".webm", ".mp4")


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    seconds: float


def decode(path: Path) -> tuple[np.ndarray, int]:
    """Decode a whole file to float32 (frames, channels) and its sample rate: libsndfile first (wav, flac, ogg,
    mp3), then FFmpeg through torchcodec (m4a, and anything libsndfile refuses)."""
    import soundfile as sf

    if not path.is_file():
        raise DatasetError(f"Audio file {path} does not exist.")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        if data.size:
            return data, int(rate)
    except (RuntimeError, ValueError, TypeError):
        pass  # not a format libsndfile reads: FFmpeg below
    try:
        from torchcodec.decoders import AudioDecoder

        samples = AudioDecoder(str(path)).get_all_samples()
        data = samples.data.numpy().T.astype(np.float32, copy=False)
        rate = int(samples.sample_rate)
    except Exception as e:  # torchcodec raises RuntimeError/ValueError/IndexError for broken or foreign files
        reason = short_reason(re.sub(r"^.*?\.cpp:\d+,\s*", "", str(e)).replace(str(path), "the file"), 120)
        raise DatasetError(f"Audio file {path} cannot be read ({reason}): it is not audio in a format FFmpeg "
                           "decodes, or it is damaged; re-export it as WAV or FLAC.") from e
    if data.size == 0:
        raise DatasetError(f"Audio file {path} holds no samples: re-export it.")
    return data, rate


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A file as mono float32 at `sample_rate` (channels averaged, resampled with soxr); raises DatasetError."""
    data, rate = decode(Path(path))
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return resample(mono, rate, sample_rate)


def resample(mono: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    """`mono` (float32) from `rate` to `sample_rate`, with soxr's high quality."""
    if rate != sample_rate:
        import soxr

        mono = soxr.resample(mono, rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def audio_info(path: str | Path) -> AudioInfo:
    """Sample rate, channels and duration, from the header where possible; raises DatasetError."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"Audio file {path} does not exist.")
    try:
        info = sf.info(str(path))
        if info.frames > 0 and info.samplerate > 0:
            return AudioInfo(int(info.samplerate), int(info.channels), info.frames / info.samplerate)
    except (RuntimeError, ValueError, TypeError):
        pass
    try:
        from torchcodec.decoders import AudioDecoder

        meta = AudioDecoder(str(path)).metadata
        if meta.duration_seconds and meta.sample_rate and meta.num_channels:
            return AudioInfo(int(meta.sample_rate), int(meta.num_channels), float(meta.duration_seconds))
    except Exception:  # any failure here: the full decode below says what is wrong
        pass
    data, rate = decode(path)
    return AudioInfo(rate, data.shape[1], data.shape[0] / rate)


def write_clip(path: Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write 16-bit PCM WAV atomically (a crash leaves no half-written clip)."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    clipped = np.clip(samples, -1.0, 1.0)
    write_atomic_with(path, lambda tmp: sf.write(str(tmp), clipped, sample_rate, subtype="PCM_16", format="WAV"))


def find_audio_files(inputs: Iterable[str | Path]) -> list[Path]:
    """The audio files among `inputs` (files, or folders searched recursively), in a stable order."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS))
        elif path.is_file():
            found.append(path)
        else:
            raise DatasetError(f"Audio input {path} does not exist: pass audio files or folders that hold them.")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise DatasetError(f"No audio files ({', '.join(AUDIO_EXTENSIONS)}) found in "
                           f"{', '.join(str(i) for i in inputs)}.")
    return unique
