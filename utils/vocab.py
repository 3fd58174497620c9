"""XTTS text vocabularies: read, check and fingerprint a vocab.json; extend it for a new language; expand a
base model's text rows to fit the extended vocabulary.

A vocabulary is identified by the hash of its token -> id mapping (not of the file's bytes, which change
with formatting), so two files that tokenize the same way compare equal.

Extending keeps every existing token's id and every existing merge, and only adds merges that involve a new
token, so text the base vocabulary already encoded (English, ...) encodes exactly as before. Model rows are
mapped by token string, never by position, because ids may differ between two vocabularies.

CLI (from the repository root):
    python utils/vocab.py --base_vocab PATH --train_csv PATH [--eval_csv PATH] --language am --out PATH
"""

from __future__ import annotations

import argparse
import copy
import csv
import functools
import hashlib
import json
import os
import re
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

REQUIRED_TOKENS = {"[STOP]": 0, "[UNK]": 1, "[SPACE]": None, "[START]": None}
UNK_TOKEN = "[UNK]"
SPACE_TOKEN = "[SPACE]"
# Languages whose text coqui-tts 0.28's VoiceBpeTokenizer.preprocess_text cleans itself (it raises for others).
COQUI_LANGUAGES = frozenset(
    {"ar", "cs", "de", "en", "es", "fr", "hi", "hu", "it", "ja", "ko", "nl", "pl", "pt", "ru", "tr", "zh"}
)
DEFAULT_CHAR_LIMIT = 250  # coqui's check_input_length default for languages without a limit of their own
DEFAULT_MAX_NEW_TOKENS = 1000
DEFAULT_MIN_FREQUENCY = 2  # a pair must occur twice in the transcripts to become a token
EXPANDED_BASE_NAME = "expanded_base.pth"
EXPANDED_MANIFEST_NAME = "expanded_base.json"
TEXT_EMBEDDING = "text_embedding.weight"
TEXT_HEAD_WEIGHT = "text_head.weight"
TEXT_HEAD_BIAS = "text_head.bias"
_LANGUAGE_CODE = re.compile(r"^[a-z]{2,8}(?:-[a-z0-9]{1,8})*$")
_LANGUAGE_TOKEN = re.compile(r"^\[[a-z]{2,8}(?:-[a-z0-9]{1,8})*\]$")
_WHITESPACE = re.compile(r"\s+")


class VocabError(ValueError):
    """A vocabulary file that XTTS's tokenizer cannot use."""


# ---------------------------------------------------------------------------------------------------------------
# Reading and fingerprinting


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


def read_transcripts(csv_path: str | Path) -> list[str]:
    """The `text` column of a coqui dataset CSV (`audio_file|text|speaker_name`, with header), empty rows skipped."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise VocabError(f"Dataset CSV {csv_path} does not exist: pass the metadata_train.csv of your dataset.")
    try:
        with csv_path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="|")
            if reader.fieldnames is None or "text" not in reader.fieldnames:
                raise VocabError(
                    f"Dataset CSV {csv_path} has no 'text' column in its header: "
                    "expected coqui's format, audio_file|text|speaker_name."
                )
            texts = [row["text"].strip() for row in reader if (row.get("text") or "").strip()]
    except UnicodeDecodeError as e:
        raise VocabError(f"Dataset CSV {csv_path} is not UTF-8 text ({e}): save it as UTF-8.") from e
    if not texts:
        raise VocabError(f"Dataset CSV {csv_path} holds no transcripts: check that the dataset was built.")
    return texts


# ---------------------------------------------------------------------------------------------------------------
# A tokenizer that accepts any language


def clean_text_neutral(text: str) -> str:
    """Language-neutral cleaning for languages coqui does not know: NFC, lowercase (where the script has case),
    whitespace collapsed and stripped."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", text.lower())).strip()


def language_token(language: str) -> str:
    """The token XTTS's tokenizer puts before text of `language` (region dropped, zh written zh-cn, as coqui)."""
    if not _LANGUAGE_CODE.match(language or ""):
        raise VocabError(f"Language code {language!r} is not valid: use a lowercase code such as 'am' or 'pt-br'.")
    code = language.split("-")[0]
    return "[zh-cn]" if code == "zh" else f"[{code}]"


class CharLimits(dict):
    """coqui's per-language character limits, with coqui's default (250) for other languages: Xtts.inference
    indexes `tokenizer.char_limits[language]` when splitting text, which fails for a new language."""

    def __missing__(self, language: str) -> int:
        return DEFAULT_CHAR_LIMIT


@functools.cache
def _tokenizer_class() -> type:
    """Define XttsTokenizer on first use, so that importing this module does not import coqui-tts."""
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

    class XttsTokenizer(VoiceBpeTokenizer):
        """coqui's VoiceBpeTokenizer that also accepts languages outside its list, cleaning their text neutrally."""

        def __init__(self, vocab_file: str | os.PathLike[str]):
            super().__init__(vocab_file)
            self.vocab_path = str(vocab_file)
            self.char_limits = CharLimits(self.char_limits)

        def preprocess_text(self, txt: str, lang: str) -> str:
            """Coqui's cleaning for the languages it knows; clean_text_neutral for any other."""
            if lang in COQUI_LANGUAGES:
                return super().preprocess_text(txt, lang)
            return clean_text_neutral(txt)

        def encode(self, txt: str, lang: str) -> list[int]:
            """Coqui's encode; refuses a language outside coqui's list whose token the vocabulary lacks."""
            if lang.split("-")[0] not in COQUI_LANGUAGES:
                token = language_token(lang)
                if self.tokenizer.token_to_id(token) is None:
                    raise VocabError(
                        f"Vocabulary file {self.vocab_path} has no token {token} for language '{lang}': "
                        "extend it with utils/vocab.py first."
                    )
            return super().encode(txt, lang)

    XttsTokenizer.__qualname__ = "XttsTokenizer"  # picklable as utils.vocab.XttsTokenizer (see __getattr__)
    return XttsTokenizer


def __getattr__(name: str) -> Any:
    """Module attribute `XttsTokenizer`, created lazily (PEP 562)."""
    if name == "XttsTokenizer":
        return _tokenizer_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_tokenizer(vocab_path: str | Path) -> VoiceBpeTokenizer:
    """An XttsTokenizer for `vocab_path`, checked first (VocabError for unusable files)."""
    load_vocab(vocab_path)
    return _tokenizer_class()(str(vocab_path))


def clean_text(tokenizer: VoiceBpeTokenizer, text: str, language: str) -> str:
    """`text` as `tokenizer.encode` sees it after cleaning, before the language token and [SPACE]."""
    return tokenizer.preprocess_text(text, language.split("-")[0])


def encode_tokens(tokenizer: VoiceBpeTokenizer, text: str, language: str) -> list[str]:
    """Token strings of `text` as XTTS encodes it, also when the vocabulary lacks the language token (preview)."""
    prepared = f"{language_token(language)}{clean_text(tokenizer, text, language)}".replace(" ", SPACE_TOKEN)
    return tokenizer.tokenizer.encode(prepared).tokens


# ---------------------------------------------------------------------------------------------------------------
# Extending a vocabulary


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


def _write_json_atomic(data: Any, path: Path) -> None:
    """Write JSON to `path` via a temporary file and a rename, so a crash never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


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
    if max_new_tokens < 1:
        raise VocabError(f"max_new_tokens={max_new_tokens} is too small: allow at least 1 new token.")
    if out_path.resolve() == base_vocab.resolve():
        raise VocabError(f"Output {out_path} is the base vocabulary itself: write the extended one to another file.")
    base = load_vocab(base_vocab)
    data = json.loads(base_vocab.read_text(encoding="utf-8"))
    model = data["model"]
    if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        raise VocabError(
            f"Vocabulary file {base_vocab} uses subword prefixes or suffixes, which XTTS's vocabularies do not: "
            "start from XTTS-v2's vocab.json."
        )
    tokenizer = make_tokenizer(base_vocab)
    cleaned = [clean_text(tokenizer, t, language) for t in texts if t.strip()]
    if not cleaned:
        raise VocabError("No transcripts to learn from: the dataset CSV's text column is empty.")

    old_ids = base.get_vocab(with_added_tokens=True)
    vocab: dict[str, int] = model["vocab"]
    next_id = max(old_ids.values()) + 1
    added: list[str] = []

    def add(tok: str) -> None:
        nonlocal next_id
        vocab[tok] = next_id
        added.append(tok)
        next_id += 1

    for entry in data["added_tokens"]:  # pin added-only tokens ([START]): the library renumbers them on load
        entry["id"] = vocab.setdefault(entry["content"], old_ids[entry["content"]])
    language_added = token not in old_ids
    if language_added:
        data["added_tokens"].append(
            {
                "id": next_id,
                "content": token,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
        )
        add(token)

    pieces = _pieces_needing_tokens(base, cleaned)
    new_chars = sorted({ch for piece in pieces for ch in piece if ch not in old_ids})
    if len(new_chars) > max_new_tokens:
        raise VocabError(
            f"The transcripts use {len(new_chars)} characters that {base_vocab} lacks, more than "
            f"max_new_tokens={max_new_tokens}: raise --max_new_tokens to at least {len(new_chars)}."
        )
    for ch in new_chars:
        add(ch)

    string_merges = bool(model["merges"]) and isinstance(model["merges"][0], str)
    known_merges = {_merge_pair(m) for m in model["merges"]}
    budget = max_new_tokens - len(new_chars)
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

    out_path.parent.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(data, out_path)
    _check_ids_kept(old_ids, out_path)
    _check_encodes(out_path, texts, language)
    return VocabExtension(
        path=str(out_path),
        language=language,
        language_token=token,
        language_token_added=language_added,
        added_tokens=added,
        first_new_id=max(old_ids.values()) + 1,
        old_text_tokens=max(old_ids.values()) + 1,
        new_text_tokens=text_token_count(out_path),
        old_sha256=vocab_sha256(base_vocab),
        new_sha256=vocab_sha256(out_path),
        transcripts=len(cleaned),
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


# ---------------------------------------------------------------------------------------------------------------
# Preview for the UI


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


# ---------------------------------------------------------------------------------------------------------------
# Expanding a model's text rows


@dataclass
class ExpansionReport:
    """How expand_text_rows filled each row of the new text embedding and text head."""

    keys: list[str]
    old_rows: int
    new_rows: int
    rows_copied: int  # trained rows carried over by token string
    rows_moved: int  # of those, rows whose token has a different id in the new vocabulary
    rows_initialised: int  # new tokens (and ids without a token)
    initialised_from_pieces: int  # mean of the old rows of the pieces the old vocabulary splits the token into
    initialised_from_languages: int  # a new language token: mean of the old language tokens' rows
    initialised_from_mean: int  # no usable pieces: mean of all old rows
    tokens_dropped: int  # old tokens the new vocabulary lacks

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _row_plan(old_tok, new_tok) -> tuple[list[tuple[str, list[int]]], ExpansionReport]:
    """For each new row: ("copy", [old id]), ("mean_of", [old ids]) or ("mean_all", []); plus the counts."""
    old_ids = old_tok.get_vocab(with_added_tokens=True)
    new_ids = new_tok.get_vocab(with_added_tokens=True)
    old_rows, new_rows = max(old_ids.values()) + 1, max(new_ids.values()) + 1
    by_new_id = {i: t for t, i in new_ids.items()}
    unk = old_ids[UNK_TOKEN]
    old_languages = sorted(i for t, i in old_ids.items() if _LANGUAGE_TOKEN.match(t))
    plan: list[tuple[str, list[int]]] = []
    counts = dict(copied=0, moved=0, pieces=0, languages=0, mean=0)
    for row in range(new_rows):
        token = by_new_id.get(row)
        if token is not None and token in old_ids:
            plan.append(("copy", [old_ids[token]]))
            counts["copied"] += 1
            counts["moved"] += old_ids[token] != row
            continue
        if token is not None and _LANGUAGE_TOKEN.match(token) and old_languages:
            plan.append(("mean_of", old_languages))
            counts["languages"] += 1
            continue
        pieces = [p.id for p in old_tok.model.tokenize(token)] if token is not None else []
        pieces = [p for p in pieces if p != unk]
        if pieces:
            plan.append(("mean_of", pieces))
            counts["pieces"] += 1
        else:
            plan.append(("mean_all", []))
            counts["mean"] += 1
    report = ExpansionReport(
        keys=[],
        old_rows=old_rows,
        new_rows=new_rows,
        rows_copied=counts["copied"],
        rows_moved=counts["moved"],
        rows_initialised=counts["pieces"] + counts["languages"] + counts["mean"],
        initialised_from_pieces=counts["pieces"],
        initialised_from_languages=counts["languages"],
        initialised_from_mean=counts["mean"],
        tokens_dropped=sum(t not in new_ids for t in old_ids),
    )
    return plan, report


def _expand_rows(old: torch.Tensor, plan: list[tuple[str, list[int]]]) -> torch.Tensor:
    """A tensor with one row per plan entry, filled as the plan says (computed in float32, stored in old's dtype)."""
    import torch

    source = old.detach().to(torch.float32)
    new = source.mean(dim=0).expand(len(plan), *source.shape[1:]).clone()
    copies = [(row, ids[0]) for row, (how, ids) in enumerate(plan) if how == "copy"]
    if copies:
        rows, sources = zip(*copies, strict=True)
        new[list(rows)] = source[list(sources)]
    for row, (how, ids) in enumerate(plan):
        if how == "mean_of":
            new[row] = source[ids].mean(dim=0)
    return new.to(old.dtype).contiguous()


def expand_text_rows(
    model_state: dict[str, Any], old_vocab: str | Path, new_vocab: str | Path
) -> tuple[dict[str, Any], ExpansionReport]:
    """A copy of `model_state` whose GPT text embedding and text head have one row per token of `new_vocab`,
    trained rows carried over by token string and new rows initialised deterministically; the input is untouched."""
    from utils.checkpoints import text_embedding_key

    embedding_key = text_embedding_key(model_state)
    if embedding_key is None:
        raise VocabError("The model state has no GPT text embedding (gpt.text_embedding.weight): not an XTTS model.")
    prefix = embedding_key[: -len(TEXT_EMBEDDING)]
    keys = [
        k for k in (prefix + TEXT_EMBEDDING, prefix + TEXT_HEAD_WEIGHT, prefix + TEXT_HEAD_BIAS) if k in model_state
    ]
    old_tok, new_tok = load_vocab(old_vocab), load_vocab(new_vocab)
    plan, report = _row_plan(old_tok, new_tok)
    for key in keys:
        rows = model_state[key].shape[0]
        if rows != report.old_rows:
            raise VocabError(
                f"The checkpoint's {key} has {rows} rows but vocabulary {old_vocab} has {report.old_rows} text "
                "tokens: pass the vocabulary the checkpoint was trained with."
            )
    new_state = dict(model_state)
    for key in keys:
        new_state[key] = _expand_rows(model_state[key], plan)
    report.keys = keys
    return new_state, report


def _config_for_rows(config: Any, rows: int) -> Any:
    """The source config as a dict (XttsConfig objects converted), its GPT text-token count set to `rows`."""
    if config is None:
        return None
    as_dict = copy.deepcopy(config) if isinstance(config, dict) else config.to_dict()
    model_args = as_dict.get("model_args")
    if isinstance(model_args, dict) and "gpt_number_text_tokens" in model_args:
        model_args["gpt_number_text_tokens"] = rows
    return as_dict


def expand_base_checkpoint(
    source_checkpoint: str | Path, old_vocab: str | Path, new_vocab: str | Path, out_dir: str | Path
) -> Path:
    """Write `out_dir/expanded_base.pth` (weights only, text rows for `new_vocab`) and a manifest beside it;
    reads the source once and never modifies it. Returns the path of the .pth."""
    from utils.checkpoints import (
        FORMAT_VERSION,
        KEY_CONFIG,
        KEY_FORMAT,
        KEY_MODEL,
        KEY_VOCAB_SHA,
        read_checkpoint,
        save_atomic,
    )

    source, out_dir = Path(source_checkpoint), Path(out_dir)
    out_path, manifest_path = out_dir / EXPANDED_BASE_NAME, out_dir / EXPANDED_MANIFEST_NAME
    if out_path.exists() and out_path.resolve() == source.resolve():
        raise VocabError(f"Source {source} is the output file itself: expand into another folder.")
    data = read_checkpoint(source)
    new_state, report = expand_text_rows(data[KEY_MODEL], old_vocab, new_vocab)
    new_sha = vocab_sha256(new_vocab)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {
        KEY_CONFIG: _config_for_rows(data.get(KEY_CONFIG), report.new_rows),
        KEY_MODEL: new_state,
        KEY_VOCAB_SHA: new_sha,
        KEY_FORMAT: FORMAT_VERSION,
    }
    save_atomic(state, out_path)
    manifest = {
        "source": str(source.resolve()),
        "old_vocab": str(Path(old_vocab).resolve()),
        "new_vocab": str(Path(new_vocab).resolve()),
        "old_vocab_sha256": vocab_sha256(old_vocab),
        "new_vocab_sha256": new_sha,
        **report.to_dict(),
    }
    _write_json_atomic(manifest, manifest_path)
    return out_path


# ---------------------------------------------------------------------------------------------------------------
# CLI


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
    except VocabError as e:
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


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
