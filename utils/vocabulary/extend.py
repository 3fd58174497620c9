"""Extend an XTTS vocabulary for a new language, and preview what the extension changes.

Extending keeps every existing token's id and every existing merge, and only adds merges that involve a new
token, so text the base vocabulary already encoded (English, ...) encodes exactly as before.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from utils.fsio import write_json_atomic
from utils.vocabulary.tokenizer import (
    UNK_TOKEN,
    VocabError,
    clean_text,
    encode_tokens,
    language_token,
    load_vocab,
    make_tokenizer,
    text_token_count,
    vocab_sha256,
)

DEFAULT_MAX_NEW_TOKENS = 1000
DEFAULT_MIN_FREQUENCY = 2  # a pair must occur twice in the transcripts to become a token


@dataclass
class VocabExtension:
    """What extend_vocabulary wrote."""

    path: str
    language: str
    language_token: str
    language_token_added: bool
    added_tokens: list[str]  # in id order, the language token first when it was added
    first_new_id: int
    old_text_tokens: int
    new_text_tokens: int
    old_sha256: str
    new_sha256: str
    transcripts: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _merge_pair(merge: str | Sequence[str]) -> tuple[str, str]:
    """A merge from a tokenizer file: "a b" (older files, XTTS-v2's) or ["a", "b"] (tokenizers >= 0.20)."""
    if isinstance(merge, str):
        a, b = merge.split(" ")
        return a, b
    a, b = merge
    return a, b


def _pieces_needing_tokens(base, texts: Iterable[str]) -> list[str]:
    """Pre-tokenized pieces of `texts` (as the BPE model sees them) that hold characters the base cannot encode."""
    vocab = base.get_vocab(with_added_tokens=True)
    pieces = []
    for text in texts:
        normalized = base.normalizer.normalize_str(text) if base.normalizer is not None else text
        words = base.pre_tokenizer.pre_tokenize_str(normalized) if base.pre_tokenizer else normalized.split()
        pieces.extend(word for word, _ in words if any(ch not in vocab for ch in word))
    return pieces


def _train_merges(pieces: list[str], max_merges: int, min_frequency: int) -> list[tuple[str, str]]:
    """BPE merges learned on `pieces` (each one word), in rank order; deterministic for the same input."""
    from tokenizers import Tokenizer
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer

    alphabet = sorted(set("".join(pieces)))
    trainer = BpeTrainer(
        vocab_size=len(alphabet) + max_merges,
        min_frequency=min_frequency,
        initial_alphabet=alphabet,
        special_tokens=[],
        show_progress=False,
    )
    tokenizer = Tokenizer(BPE(unk_token=UNK_TOKEN))
    tokenizer.train_from_iterator(pieces, trainer=trainer)
    return [_merge_pair(m) for m in json.loads(tokenizer.to_str())["model"]["merges"]]


class _TokenAdder:
    """Appends tokens to a vocab.json's model vocabulary at the next free ids, remembering which it added."""

    def __init__(self, vocab: dict[str, int], old_ids: dict[str, int]) -> None:
        self.vocab = vocab
        self.next_id = max(old_ids.values()) + 1
        self.added: list[str] = []

    def __call__(self, token: str) -> None:
        self.vocab[token] = self.next_id
        self.added.append(token)
        self.next_id += 1


def _read_base(base_vocab: Path, out_path: Path, max_new_tokens: int) -> tuple[Any, dict[str, Any]]:
    """The base as a tokenizer and as its JSON, refusing what cannot be extended."""
    if max_new_tokens < 1:
        raise VocabError(f"max_new_tokens={max_new_tokens} is too small: allow at least 1 new token.")
    if out_path.resolve() == base_vocab.resolve():
        raise VocabError(f"Output {out_path} is the base vocabulary itself: write the extended one to another file.")
    base = load_vocab(base_vocab)
    data = json.loads(base_vocab.read_text(encoding="utf-8"))
    if data["model"].get("continuing_subword_prefix") or data["model"].get("end_of_word_suffix"):
        raise VocabError(
            f"Vocabulary file {base_vocab} uses subword prefixes or suffixes, which XTTS's vocabularies do not: "
            "start from XTTS-v2's vocab.json."
        )
    return base, data


def _add_language_token(data: dict[str, Any], token: str, old_ids: dict[str, int], add: _TokenAdder) -> bool:
    """Pin the added-only tokens' ids and add the language token if missing; True when it was added."""
    vocab = data["model"]["vocab"]
    for entry in data["added_tokens"]:  # pin added-only tokens ([START]): the library renumbers them on load
        entry["id"] = vocab.setdefault(entry["content"], old_ids[entry["content"]])
    if token in old_ids:
        return False
    data["added_tokens"].append({"id": add.next_id, "content": token, "single_word": False, "lstrip": False,
                                 "rstrip": False, "normalized": False, "special": True})
    add(token)
    return True


def _add_merges(model: dict[str, Any], pieces: list[str], old_ids: dict[str, int], add: _TokenAdder, budget: int,
                min_frequency: int) -> None:
    """Learn merges on `pieces` and add those that involve a new token, within `budget` new tokens."""
    vocab = model["vocab"]
    string_merges = bool(model["merges"]) and isinstance(model["merges"][0], str)
    known_merges = {_merge_pair(m) for m in model["merges"]}
    for a, b in _train_merges(pieces, budget, min_frequency) if pieces and budget > 0 else []:
        merged = a + b
        involves_new = a not in old_ids or b not in old_ids
        if not involves_new or a not in vocab or b not in vocab or (a, b) in known_merges:
            continue
        if merged not in vocab:
            if budget == 0:
                break
            add(merged)
            budget -= 1
        known_merges.add((a, b))
        model["merges"].append(f"{a} {b}" if string_merges else [a, b])


def extend_vocabulary(
    base_vocab: str | Path,
    texts: Sequence[str],
    language: str,
    out_path: str | Path,
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    min_frequency: int = DEFAULT_MIN_FREQUENCY,
) -> VocabExtension:
    """Write to `out_path` the base vocabulary plus the language token and BPE tokens learned on `texts` for the
    characters the base cannot encode; every existing id and merge is kept, so known languages encode as before."""
    base_vocab, out_path = Path(base_vocab), Path(out_path)
    token = language_token(language)
    base, data = _read_base(base_vocab, out_path, max_new_tokens)
    tokenizer = make_tokenizer(base_vocab)
    cleaned = [clean_text(tokenizer, t, language) for t in texts if t.strip()]
    if not cleaned:
        raise VocabError("No transcripts to learn from: the dataset CSV's text column is empty.")
    old_ids = base.get_vocab(with_added_tokens=True)
    add = _TokenAdder(data["model"]["vocab"], old_ids)
    language_added = _add_language_token(data, token, old_ids, add)
    pieces = _pieces_needing_tokens(base, cleaned)
    new_chars = sorted({ch for piece in pieces for ch in piece if ch not in old_ids})
    if len(new_chars) > max_new_tokens:
        raise VocabError(
            f"The transcripts use {len(new_chars)} characters that {base_vocab} lacks, more than "
            f"max_new_tokens={max_new_tokens}: raise --max_new_tokens to at least {len(new_chars)}."
        )
    for ch in new_chars:
        add(ch)
    _add_merges(data["model"], pieces, old_ids, add, max_new_tokens - len(new_chars), min_frequency)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_path, data, ensure_ascii=False)
    _check_ids_kept(old_ids, out_path)
    _check_encodes(out_path, texts, language)
    return VocabExtension(
        path=str(out_path), language=language, language_token=token, language_token_added=language_added,
        added_tokens=add.added, first_new_id=max(old_ids.values()) + 1, old_text_tokens=max(old_ids.values()) + 1,
        new_text_tokens=text_token_count(out_path), old_sha256=vocab_sha256(base_vocab),
        new_sha256=vocab_sha256(out_path), transcripts=len(cleaned),
    )


def _check_ids_kept(old_ids: dict[str, int], vocab_path: Path) -> None:
    """Refuse a written vocabulary in which some base token has a different id (the model's rows would move)."""
    new_ids = load_vocab(vocab_path).get_vocab(with_added_tokens=True)
    moved = [t for t, i in old_ids.items() if new_ids.get(t) != i]
    if moved:
        raise VocabError(f"Vocabulary file {vocab_path} changed the ids of {', '.join(moved[:5])}: report this.")


def _check_encodes(vocab_path: Path, texts: Iterable[str], language: str) -> None:
    """Refuse a vocabulary under which some transcript still encodes to [UNK] (XTTS's dataset asserts on it)."""
    tokenizer = make_tokenizer(vocab_path)
    unk = tokenizer.tokenizer.token_to_id(UNK_TOKEN)
    for text in texts:
        if text.strip() and unk in tokenizer.encode(text, language):
            raise VocabError(f"Vocabulary file {vocab_path} still encodes {text[:60]!r} with [UNK]: report this.")


@dataclass
class EncodingExample:
    """One transcript's tokens under the base and the extended vocabulary."""

    text: str
    before: list[str]
    after: list[str]


@dataclass
class VocabPreview:
    """What extending the vocabulary changes, for the UI."""

    language: str
    new_tokens: list[str]
    old_rows: int
    new_rows: int
    rows_added: int
    examples: list[EncodingExample] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def preview_extension(
    base_vocab: str | Path, new_vocab: str | Path, texts: Sequence[str], language: str, n: int = 3
) -> VocabPreview:
    """New tokens, text rows added, and the first `n` transcripts' tokens before and after the extension."""
    old_ids = load_vocab(base_vocab).get_vocab(with_added_tokens=True)
    new_ids = load_vocab(new_vocab).get_vocab(with_added_tokens=True)
    before, after = make_tokenizer(base_vocab), make_tokenizer(new_vocab)
    samples = [t for t in dict.fromkeys(t.strip() for t in texts) if t][:n]
    old_rows, new_rows = max(old_ids.values()) + 1, max(new_ids.values()) + 1
    return VocabPreview(
        language=language,
        new_tokens=sorted((t for t in new_ids if t not in old_ids), key=new_ids.__getitem__),
        old_rows=old_rows,
        new_rows=new_rows,
        rows_added=new_rows - old_rows,
        examples=[
            EncodingExample(t, encode_tokens(before, t, language), encode_tokens(after, t, language)) for t in samples
        ],
    )


