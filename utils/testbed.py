"""Build a tiny XTTS-v2 base model folder and a small dataset, offline, with random weights.

Used by the test suite and by `python utils/gpt_train.py --selfcheck`. The files have exactly the layout
of the released XTTS-v2 folder (config.json, vocab.json, model.pth, dvae.pth, mel_stats.pth), so every
code path that reads a real base model reads these too; only the GPT is tiny (2 layers, 64 wide). The
voice it produces is noise: this is a pipeline check, not a model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.data.folder import write_csv
from utils.xtts import (
    CLIPS_DIR,
    COQUI_LANGUAGES,
    EVAL_CSV,
    LANG_FILE,
    OUTPUT_SAMPLE_RATE,
    SAMPLE_RATE,
    TRAIN_CSV,
    language_token,
)

SENTENCES = [
    "the quick brown fox jumps over the lazy dog.",
    "a small boat drifted slowly across the quiet lake.",
    "she sells sea shells by the sea shore every morning.",
    "the old clock in the hall struck nine times tonight.",
    "we walked home together under a bright and cold sky.",
    "fresh bread smells wonderful when it leaves the oven.",
    "the children laughed as the kite rose into the wind.",
    "please bring your notes to the meeting on friday.",
    "a gentle rain fell on the roof all through the night.",
    "the river bends twice before it reaches the sea.",
    "he painted the fence green and the door bright red.",
    "music drifted from the open window across the street.",
]
LANGUAGES = list(COQUI_LANGUAGES)
SPECIAL_TOKENS = ["[STOP]", "[UNK]", "[SPACE]"]


@dataclass(frozen=True)
class TinyDataset:
    """Where the test bed's dataset lies."""

    folder: Path
    train_csv: Path
    eval_csv: Path
    clips: list[Path]


def tiny_model_args(num_text_tokens: int) -> dict:
    """XTTS-v2's model_args with a 2-layer, 64-wide GPT; everything else as released."""
    return {
        "gpt_batch_size": 1,
        "enable_redaction": False,
        "kv_cache": True,
        "gpt_checkpoint": None,
        "clvp_checkpoint": None,
        "decoder_checkpoint": None,
        "num_chars": 255,
        "tokenizer_file": "",
        "gpt_max_audio_tokens": 605,
        "gpt_max_text_tokens": 402,
        "gpt_max_prompt_tokens": 70,
        "gpt_layers": 2,
        "gpt_n_model_channels": 64,
        "gpt_n_heads": 2,
        "gpt_number_text_tokens": num_text_tokens,
        "gpt_start_text_token": None,
        "gpt_stop_text_token": None,
        "gpt_num_audio_tokens": 1026,
        "gpt_start_audio_token": 1024,
        "gpt_stop_audio_token": 1025,
        "gpt_code_stride_len": 1024,
        "gpt_use_masking_gt_prompt_approach": True,
        "gpt_use_perceiver_resampler": True,
        "input_sample_rate": SAMPLE_RATE,
        "output_sample_rate": OUTPUT_SAMPLE_RATE,
        "output_hop_length": 256,
        "decoder_input_dim": 64,
        "d_vector_dim": 512,
        "cond_d_vector_in_each_upsampling_layer": True,
        "duration_const": 102400,
    }


def build_vocab(path: Path, texts: list[str], vocab_size: int = 160) -> int:
    """Train a byte-pair vocabulary on `texts` in XTTS's layout ([STOP]=0, [UNK]=1, [SPACE]=2, language tags,
    [START] last); returns the number of text tokens (highest id + 1)."""
    from tokenizers import Tokenizer
    from tokenizers.models import BPE
    from tokenizers.pre_tokenizers import Whitespace
    from tokenizers.trainers import BpeTrainer

    tokenizer = Tokenizer(BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    alphabet = sorted(set("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-\":;()") | set("".join(texts)))
    specials = SPECIAL_TOKENS + [language_token(lang) for lang in LANGUAGES]  # zh as XTTS writes it: [zh-cn]
    trainer = BpeTrainer(vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet, show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.add_special_tokens(["[START]"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))
    return max(tokenizer.get_vocab().values()) + 1


def _xtts_config(num_text_tokens: int):
    from TTS.tts.configs.xtts_config import XttsArgs, XttsAudioConfig, XttsConfig

    args = XttsArgs(**tiny_model_args(num_text_tokens))
    return XttsConfig(model_args=args, audio=XttsAudioConfig(), languages=list(LANGUAGES))


def build_base(folder: Path, *, seed: int = 0, released_format: bool = True) -> Path:
    """Write a tiny base model folder in XTTS-v2's layout. With `released_format`, model.pth pickles its
    config as an `XttsConfig` object, as the file on the hub does."""
    import torch
    from TTS.tts.layers.xtts.dvae import DiscreteVAE
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.models.xtts import Xtts

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    num_tokens = build_vocab(folder / "vocab.json", SENTENCES)
    config = _xtts_config(num_tokens)
    (folder / "config.json").write_text(json.dumps(config.to_dict(), indent=2))

    torch.manual_seed(seed)
    model = Xtts(config)
    model.tokenizer = VoiceBpeTokenizer(str(folder / "vocab.json"))
    model.init_models()
    state = {"config": config if released_format else config.to_dict(), "model": model.state_dict()}
    if released_format:
        _save_in_released_format(state, folder / "model.pth")
    else:
        torch.save(state, folder / "model.pth")

    dvae = DiscreteVAE(
        channels=80, normalization=None, positional_dims=1, num_tokens=1024, codebook_dim=512, hidden_dim=512,
        num_resnet_blocks=3, kernel_size=3, num_layers=2, use_transposed_convs=False,
    )
    torch.save(dvae.state_dict(), folder / "dvae.pth")
    torch.save(torch.rand(80) + 0.5, folder / "mel_stats.pth")
    return folder


def _save_in_released_format(state: dict, path: Path) -> None:
    """Pickle the config under the module path the released XTTS-v2 model.pth uses (TTS.tts.models.xtts)."""
    import torch
    from TTS.tts.configs.xtts_config import XttsArgs, XttsAudioConfig

    classes = (XttsArgs, XttsAudioConfig)
    canonical = [c.__module__ for c in classes]
    try:
        for c in classes:
            c.__module__ = "TTS.tts.models.xtts"
        torch.save(state, path)
    finally:
        for c, module in zip(classes, canonical, strict=True):
            c.__module__ = module


def synth_clip(seconds: float, seed: int, channels: int = 1, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A voice-like signal: a gliding harmonic tone with syllable-rate amplitude and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 110 + 40 * rng.random() + 20 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    tone = sum(np.sin(k * phase) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * (3 + rng.random()) * t) ** 2
    signal = 0.2 * tone * envelope + 0.01 * rng.standard_normal(t.size)
    signal = signal.astype(np.float32)
    return np.stack([signal] * channels, axis=1) if channels > 1 else signal


def build_dataset(folder: Path, *, clips: int = 10, eval_clips: int = 2, seed: int = 0,
                  seconds: tuple[float, float] = (3.0, 5.0), sentences_per_clip: int = 1,
                  text: str | None = None) -> TinyDataset:
    """Write `clips` clips of 3-5 s (or `seconds`) and train/eval CSVs in coqui's format (paths relative to the CSV).
    Each text is `sentences_per_clip` of the test bed's sentences (about 50 characters each): a benchmark on a GPU
    asks for clips and texts of realistic length (e.g. 6-10 s, 2 sentences). `text`: every clip's text (with one
    clip length, every batch then has the same shapes, whichever clips it draws)."""
    import soundfile as sf

    folder = Path(folder)
    (folder / CLIPS_DIR).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    low, high = seconds
    rows, paths = [], []
    for i in range(clips):
        rel = f"{CLIPS_DIR}/clip_{i:03d}.wav"
        sf.write(folder / rel, synth_clip(low + (high - low) * rng.random(), seed=seed * 1000 + i), SAMPLE_RATE)
        words = text or " ".join(SENTENCES[(i * sentences_per_clip + j) % len(SENTENCES)]
                                 for j in range(sentences_per_clip))
        rows.append((rel, words, "speaker"))
        paths.append(folder / rel)
    train_csv, eval_csv = folder / TRAIN_CSV, folder / EVAL_CSV
    write_csv(train_csv, rows[eval_clips:])
    write_csv(eval_csv, rows[:eval_clips])
    (folder / LANG_FILE).write_text("en\n")
    return TinyDataset(folder, train_csv, eval_csv, paths)
