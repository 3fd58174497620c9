"""A tiny random-weight Whisper for faster-whisper, built offline in seconds: a byte-level tokenizer with
Whisper's special tokens, transformers' `WhisperForConditionalGeneration` with a small config and random
weights, converted by ctranslate2's `TransformersConverter` into a folder `WhisperModel` loads.

It exercises what a real model folder does (loading, VAD, decoding with timestamps, word alignment), and, having
learnt nothing, it emits the unruly timings real models emit now and then: segments out of order, past the end
of the audio, empty or without words."""

from __future__ import annotations

import json
from pathlib import Path

# English-only (a vocabulary under 51865 tokens is not multilingual to CTranslate2): no language detection.
SPECIAL_TOKENS = ("<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>",
                  "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>")
LOGIT_SCALE = 4.0  # random init gives logits so small that sampling is near uniform over every token
TIMESTAMP_TOKENS = 1501  # <|0.00|> ... <|30.00|>, after <|notimestamps|>, as in every Whisper vocabulary


def _byte_level_tokenizer():
    """A byte-level BPE without merges: every byte one token, then the special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    return tokenizer


def build_tiny_whisper(folder: Path, seed: int = 0, width: int = 64, layers: int = 2, heads: int = 2) -> Path:
    """Write a faster-whisper (CTranslate2) model folder with random weights into `folder`; returns it."""
    import torch
    from ctranslate2.converters import TransformersConverter
    from transformers import PreTrainedTokenizerFast, WhisperConfig, WhisperForConditionalGeneration

    folder = Path(folder)
    source = folder.parent / f"{folder.name}-transformers"
    tokenizer = _byte_level_tokenizer()
    ids = {t: tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}
    # Mostly letters, spaces and sentence marks, like a real model's text: in the output layer (not tied to the
    # input embedding) the other bytes' rows are zero and the rest scaled up, so that other bytes are rarely drawn.
    spoken = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,\u0120")  # \u0120: the byte-level space
    mute = sorted(i for token, i in tokenizer.get_vocab().items() if token not in spoken and i < ids["<|endoftext|>"])
    vocab_size = tokenizer.get_vocab_size() + TIMESTAMP_TOKENS
    config = WhisperConfig(
        vocab_size=vocab_size, num_mel_bins=80, d_model=width, encoder_layers=layers, decoder_layers=layers,
        encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=2 * width,
        decoder_ffn_dim=2 * width, max_source_positions=1500, max_target_positions=448,
        pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|endoftext|>"],
        decoder_start_token_id=ids["<|startoftranscript|>"], suppress_tokens=[],
        begin_suppress_tokens=[ids["<|endoftext|>"]], tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():
        weight = model.get_output_embeddings().weight
        weight *= LOGIT_SCALE
        weight[mute] = 0.0
    model.save_pretrained(source)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.save_pretrained(source)
    TransformersConverter(str(source), copy_files=["tokenizer.json"]).convert(str(folder), force=True)
    (folder / "preprocessor_config.json").write_text(json.dumps({"feature_size": 80, "sampling_rate": 16000,
                                                                 "hop_length": 160, "chunk_length": 30,
                                                                 "n_fft": 400}))
    return folder
