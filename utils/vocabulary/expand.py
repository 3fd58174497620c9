"""Expand a model's text rows to fit an extended vocabulary: rows are mapped by token string, never by
position, because ids may differ between two vocabularies; new rows are initialised deterministically."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from utils.checkpoints.keys import (
    FORMAT_VERSION,
    KEY_CONFIG,
    KEY_FORMAT,
    KEY_MODEL,
    KEY_VOCAB_SHA,
    text_embedding_key,
)
from utils.checkpoints.read import read_checkpoint
from utils.checkpoints.write import save_atomic
from utils.fsio import write_json_atomic
from utils.vocabulary.tokenizer import UNK_TOKEN, VocabError, load_vocab, vocab_sha256
from utils.xtts import LANGUAGE_TOKEN

if TYPE_CHECKING:
    import torch

EXPANDED_BASE_NAME = "expanded_base.pth"
EXPANDED_MANIFEST_NAME = "expanded_base.json"
TEXT_EMBEDDING = "text_embedding.weight"
TEXT_HEAD_WEIGHT = "text_head.weight"
TEXT_HEAD_BIAS = "text_head.bias"


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
    old_languages = sorted(i for t, i in old_ids.items() if LANGUAGE_TOKEN.match(t))
    plan: list[tuple[str, list[int]]] = []
    counts = dict(copied=0, moved=0, pieces=0, languages=0, mean=0)
    for row in range(new_rows):
        token = by_new_id.get(row)
        if token is not None and token in old_ids:
            plan.append(("copy", [old_ids[token]]))
            counts["copied"] += 1
            counts["moved"] += old_ids[token] != row
            continue
        if token is not None and LANGUAGE_TOKEN.match(token) and old_languages:
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
    write_json_atomic(manifest_path, manifest, ensure_ascii=False)
    return out_path


