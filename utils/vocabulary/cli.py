"""`python utils/vocab.py`: extend an XTTS vocab.json with BPE tokens for a new language.

    python utils/vocab.py --base_vocab PATH --train_csv PATH [--eval_csv PATH] --language am --out PATH
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from utils.errors import UserInputError
from utils.vocabulary.extend import DEFAULT_MAX_NEW_TOKENS, DEFAULT_MIN_FREQUENCY, extend_vocabulary
from utils.vocabulary.tokenizer import read_transcripts


def build_parser() -> argparse.ArgumentParser:
    """Options of `python utils/vocab.py`."""
    p = argparse.ArgumentParser(description="Extend an XTTS vocab.json with BPE tokens for a new language.")
    p.add_argument("--base_vocab", required=True, help="the base model's vocab.json")
    p.add_argument("--train_csv", required=True, help="coqui dataset CSV (audio_file|text|speaker_name)")
    p.add_argument("--eval_csv", help="eval CSV; its transcripts must encode without [UNK] too")
    p.add_argument("--language", required=True, help="language code, e.g. am")
    p.add_argument("--out", required=True, help="where to write the extended vocab.json")
    p.add_argument("--max_new_tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    p.add_argument("--min_frequency", type=int, default=DEFAULT_MIN_FREQUENCY)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Build the extended vocabulary and print what was added, one fact per line."""
    args = build_parser().parse_args(argv)
    try:
        texts = read_transcripts(args.train_csv)
        if args.eval_csv:
            texts += read_transcripts(args.eval_csv)
        ext = extend_vocabulary(
            args.base_vocab,
            texts,
            args.language,
            args.out,
            max_new_tokens=args.max_new_tokens,
            min_frequency=args.min_frequency,
        )
    except UserInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    shown = " ".join(ext.added_tokens[:20]) + (" ..." if len(ext.added_tokens) > 20 else "")
    print(f"base vocabulary: {args.base_vocab} ({ext.old_text_tokens} text tokens)")
    print(f"transcripts read: {ext.transcripts}")
    print(f"language token {ext.language_token}: {'added' if ext.language_token_added else 'already present'}")
    print(
        f"tokens added: {len(ext.added_tokens)}"
        + (f" (ids {ext.first_new_id}-{ext.new_text_tokens - 1})" if ext.added_tokens else "")
    )
    if ext.added_tokens:
        print(f"new tokens: {shown}")
    print(f"text tokens: {ext.old_text_tokens} -> {ext.new_text_tokens}")
    print(f"written: {ext.path}")
    print(f"vocabulary sha256: {ext.new_sha256}")
    return 0

