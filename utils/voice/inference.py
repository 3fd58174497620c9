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
    `max_new_tokens` caps the generated audio tokens (about 46 ms of audio each); None leaves XTTS's limit."""
    import soundfile as sf

    if not text.strip():
        raise ValueError("The text to synthesise is empty: type a sentence.")
    reference = Path(reference_wav)
    if not reference.is_file():
        raise ValueError(f"Reference audio {reference} does not exist: pick a clip of the speaker.")
    wav = speak(voice.model, text, language, conditioning(voice.model, reference), seed=seed,
                max_new_tokens=max_new_tokens)
    if out_path is not None:
        sf.write(out_path, wav, OUTPUT_SAMPLE_RATE)
    return wav, OUTPUT_SAMPLE_RATE


def conditioning(model: object, reference_wav: Path) -> tuple:
    """XTTS's conditioning (GPT latents, speaker embedding) of one reference clip, for `speak`."""
    import torch

    with torch.inference_mode():
        return model.get_conditioning_latents(audio_path=[str(reference_wav)])


def speak(model: object, text: str, language: str, voice_conditioning: tuple, *, seed: int = 0,
          max_new_tokens: int | None = None) -> np.ndarray:
    """One sentence from an Xtts ready for inference (eval mode, `init_gpt_for_inference` done), its sampling
    seeded by `seed`; samples at OUTPUT_SAMPLE_RATE."""
    import torch
    from transformers.utils import logging as hf_logging

    latent, speaker = voice_conditioning
    torch.manual_seed(seed)
    limit = {"max_new_tokens": max_new_tokens} if max_new_tokens else {}
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # XTTS also sets max_length: transformers warns that the cap wins, each call
    try:
        with torch.inference_mode():
            out = model.inference(text, language, latent, speaker, temperature=0.7, **limit)
    finally:
        hf_logging.set_verbosity(verbosity)
    return np.asarray(out["wav"], dtype=np.float32)
