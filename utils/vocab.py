"""XTTS text vocabularies: read and check a vocab.json, fingerprint it, count its text tokens.

A vocabulary is identified by the hash of its token -> id mapping (not of the file's bytes, which change
with formatting), so two files that tokenize the same way compare equal.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

REQUIRED_TOKENS = {"[STOP]": 0, "[UNK]": 1, "[SPACE]": None, "[START]": None}


class VocabError(ValueError):
    """A vocabulary file that XTTS's tokenizer cannot use."""


def load_vocab(path: str | Path):
    """Open `path` as a BPE tokenizer and check the tokens XTTS relies on; returns a `tokenizers.Tokenizer`."""
    from tokenizers import Tokenizer

    path = Path(path)
    if not path.is_file():
        raise VocabError(f"Vocabulary file {path} does not exist: pass an XTTS vocab.json with --vocab.")
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise VocabError(f"Vocabulary file {path} is not JSON ({e}): pass an XTTS vocab.json.") from e
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as e:  # the tokenizers library raises a bare Exception for malformed files
        raise VocabError(f"Vocabulary file {path} is not a tokenizer file ({e}): pass an XTTS vocab.json.") from e
    if type(tokenizer.model).__name__ != "BPE":
        raise VocabError(f"Vocabulary file {path} is not a BPE tokenizer: XTTS needs one like XTTS-v2's vocab.json.")
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    missing = [t for t in REQUIRED_TOKENS if t not in vocab]
    if missing:
        raise VocabError(f"Vocabulary file {path} lacks {', '.join(missing)}: XTTS's tokenizer needs these tokens.")
    wrong = [f"{t} (id {vocab[t]}, must be {i})" for t, i in REQUIRED_TOKENS.items() if i is not None and vocab[t] != i]
    if wrong:
        raise VocabError(f"Vocabulary file {path} has {', '.join(wrong)}: XTTS's dataset requires these ids.")
    return tokenizer


def text_token_count(path: str | Path) -> int:
    """Number of text rows a GPT needs for this vocabulary: highest id + 1, as XTTS computes it."""
    return max(load_vocab(path).get_vocab(with_added_tokens=True).values()) + 1


def vocab_sha256(path: str | Path) -> str:
    """Fingerprint of the token -> id mapping of `path`."""
    vocab = load_vocab(path).get_vocab(with_added_tokens=True)
    canonical = json.dumps(sorted(vocab.items(), key=lambda kv: kv[1]), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
