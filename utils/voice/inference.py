"""Load a checkpoint or an export and synthesise speech with XTTS's own model classes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.checkpoints.keys import KEY_CONFIG, KEY_MODEL
from utils.checkpoints.read import load_xtts_weights, read_checkpoint
from utils.vocabulary.tokenizer import make_tokenizer
from utils.voice.export import find_vocab, xtts_config_dict
from utils.xtts import MODEL_FILE, OUTPUT_SAMPLE_RATE


@dataclass
class Voice:
    """A loaded model ready to synthesise, and where it came from."""

    model: object  # TTS.tts.models.xtts.Xtts
    source: Path
    vocab: Path


def model_file(path: str | Path) -> Path:
    """An export folder means its model.pth; a file is taken as it is."""
    path = Path(path)
    return path / MODEL_FILE if path.is_dir() else path


def load_voice(path: str | Path, *, vocab: str | Path | None = None) -> Voice:
    """Build an Xtts from the checkpoint's own config and load its weights strictly, read once."""
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts

    source = model_file(path)
    data = read_checkpoint(source)
    vocab_path = find_vocab(source, data, Path(vocab) if vocab else None)
    config = XttsConfig()
    config.from_dict(xtts_config_dict(data.get(KEY_CONFIG) or {}))
    model = Xtts(config)
    model.tokenizer = make_tokenizer(vocab_path)
    model.init_models()
    load_xtts_weights(model, data[KEY_MODEL], source)
    model.gpt.init_gpt_for_inference(kv_cache=config.model_args.kv_cache, use_deepspeed=False)
    model.eval()
    return Voice(model, source, vocab_path)


def synthesize(voice: Voice, text: str, reference_wav: str | Path, language: str, *, seed: int = 0,
               out_path: str | Path | None = None, max_new_tokens: int | None = None) -> tuple[np.ndarray, int]:
    """Speak `text` in the voice of `reference_wav`; returns (samples, sample rate) and writes a wav if asked.
    `max_new_tokens` caps the generated audio tokens (about 43 ms of audio each); None leaves XTTS's limit."""
    import soundfile as sf
    import torch

    if not text.strip():
        raise ValueError("The text to synthesise is empty: type a sentence.")
    reference = Path(reference_wav)
    if not reference.is_file():
        raise ValueError(f"Reference audio {reference} does not exist: pick a clip of the speaker.")
    torch.manual_seed(seed)
    with torch.inference_mode():
        latent, speaker = voice.model.get_conditioning_latents(audio_path=[str(reference)])
        limit = {"max_new_tokens": max_new_tokens} if max_new_tokens else {}
        out = voice.model.inference(text, language, latent, speaker, temperature=0.7, **limit)
    wav = np.asarray(out["wav"], dtype=np.float32)
    if out_path is not None:
        sf.write(out_path, wav, OUTPUT_SAMPLE_RATE)
    return wav, OUTPUT_SAMPLE_RATE
