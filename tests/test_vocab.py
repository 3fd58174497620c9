"""Vocabulary extension for a new language (Amharic, Ethiopic script) and text-row expansion by token string."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from utils.checkpoints.classify import classify_checkpoint
from utils.checkpoints.keys import KEY_CONFIG, KEY_MODEL, KEY_VOCAB_SHA
from utils.checkpoints.read import read_checkpoint
from utils.errors import InvalidValue
from utils.vocabulary import expand, extend
from utils.vocabulary.tokenizer import (
    VocabError,
    XttsTokenizer,
    encode_tokens,
    load_vocab,
    make_tokenizer,
    read_transcripts,
    text_token_count,
)

ROOT = Path(__file__).resolve().parent.parent
AMHARIC = [
    "ሰላም ነው። እንደምን አደርክ?",
    "ኢትዮጵያ በአፍሪካ ቀንድ የምትገኝ አገር ናት።",
    "አዲስ አበባ የኢትዮጵያ ዋና ከተማ ናት።",
    "ቡና በኢትዮጵያ ባህል ውስጥ ትልቅ ቦታ አለው።",
    "ልጆቹ በትምህርት ቤት ውስጥ ይማራሉ።",
    "ዛሬ የአየሩ ሁኔታ በጣም ጥሩ ነው።",
    "ወንዙ ከተራራው ወደ ባሕሩ ይፈሳል።",
    "እናቴ ትኩስ እንጀራ በየቀኑ ትጋግራለች።",
]
ENGLISH = "the quick brown fox jumps over the lazy dog."


def write_csv(path: Path, texts: list[str]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="|", lineterminator="\n")
        writer.writerow(["audio_file", "text", "speaker_name"])
        writer.writerows((f"wavs/clip_{i:03d}.wav", text, "speaker") for i, text in enumerate(texts))
    return path


def ids_of(path: Path) -> dict[str, int]:
    return load_vocab(path).get_vocab(with_added_tokens=True)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def base_vocab(tiny_base) -> Path:
    return tiny_base / "vocab.json"


@pytest.fixture(scope="module")
def amharic(base_vocab, tmp_path_factory) -> extend.VocabExtension:
    return extend.extend_vocabulary(base_vocab, AMHARIC, "am", tmp_path_factory.mktemp("am") / "vocab.json")


@pytest.fixture(scope="module")
def base_state(tiny_base) -> dict:
    return read_checkpoint(tiny_base / "model.pth")[KEY_MODEL]


# --- extending the vocabulary -----------------------------------------------------------------------------------


def test_base_vocab_cannot_encode_amharic(base_vocab):
    tokens = encode_tokens(make_tokenizer(base_vocab), AMHARIC[0], "am")
    assert "[UNK]" in tokens


def test_amharic_encodes_without_unk_and_base_ids_kept(base_vocab, amharic):
    new_path = Path(amharic.path)
    old, new = ids_of(base_vocab), ids_of(new_path)
    assert all(new[token] == i for token, i in old.items())
    assert amharic.language_token == "[am]" and amharic.language_token_added
    assert min(new[t] for t in amharic.added_tokens) == amharic.first_new_id == amharic.old_text_tokens
    assert (
        amharic.new_text_tokens == text_token_count(new_path) == amharic.old_text_tokens + len(amharic.added_tokens)
    )
    assert any(len(t) > 1 for t in amharic.added_tokens if t != "[am]"), "merges were learned, not only characters"

    tokenizer = make_tokenizer(new_path)
    unk = tokenizer.tokenizer.token_to_id("[UNK]")
    for text in AMHARIC:
        ids = tokenizer.encode(text, "am")
        assert unk not in ids
        assert ids[0] == new["[am]"]
    # coqui's own tokenizer loads the file and agrees with ours on a language it knows
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

    coqui = VoiceBpeTokenizer(str(new_path))
    assert coqui.get_number_tokens() == amharic.new_text_tokens
    assert coqui.encode(ENGLISH, "en") == tokenizer.encode(ENGLISH, "en")


def test_known_languages_encode_exactly_as_before(base_vocab, amharic):
    before, after = make_tokenizer(base_vocab), make_tokenizer(amharic.path)
    for text in [ENGLISH, "She sold 3 shells, Dr. Smith said!"]:
        assert after.encode(text, "en") == before.encode(text, "en")


def test_extension_is_deterministic(base_vocab, amharic, tmp_path):
    again = extend.extend_vocabulary(base_vocab, AMHARIC, "am", tmp_path / "again.json")
    assert Path(again.path).read_bytes() == Path(amharic.path).read_bytes()
    assert again.new_sha256 == amharic.new_sha256 != amharic.old_sha256


def test_extends_a_vocabulary_with_merges_written_as_strings(base_vocab, tmp_path):
    """XTTS-v2's own vocab.json, written by an older tokenizers, stores merges as "a b" strings."""
    data = json.loads(base_vocab.read_text(encoding="utf-8"))
    data["model"]["merges"] = [" ".join(m) for m in data["model"]["merges"]]
    old_style = tmp_path / "old_style.json"
    old_style.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    ext = extend.extend_vocabulary(old_style, AMHARIC, "am", tmp_path / "am.json")
    merges = json.loads(Path(ext.path).read_text(encoding="utf-8"))["model"]["merges"]
    assert all(isinstance(m, str) for m in merges) and len(merges) > len(data["model"]["merges"])
    assert make_tokenizer(ext.path).encode(ENGLISH, "en") == make_tokenizer(base_vocab).encode(ENGLISH, "en")


def test_max_new_tokens_caps_and_refuses(base_vocab, tmp_path):
    chars = len({c for t in AMHARIC for c in t if c not in ids_of(base_vocab) and not c.isspace()})
    capped = extend.extend_vocabulary(base_vocab, AMHARIC, "am", tmp_path / "capped.json", max_new_tokens=chars + 3)
    assert len(capped.added_tokens) <= chars + 3 + 1  # the language token is not counted
    with pytest.raises(VocabError, match="max_new_tokens"):
        extend.extend_vocabulary(base_vocab, AMHARIC, "am", tmp_path / "few.json", max_new_tokens=5)


def test_latin_script_language_only_gets_its_token(base_vocab, tmp_path):
    ext = extend.extend_vocabulary(base_vocab, ["the dog sells bread", "a quiet river"], "sw", tmp_path / "sw.json")
    assert ext.added_tokens == ["[sw]"]


def test_extend_refuses_to_overwrite_base_and_bad_language(base_vocab, tmp_path):
    with pytest.raises(VocabError, match="base vocabulary itself"):
        extend.extend_vocabulary(base_vocab, AMHARIC, "am", base_vocab)
    with pytest.raises(InvalidValue, match="Language code 'Amharic language' is not valid"):
        extend.extend_vocabulary(base_vocab, AMHARIC, "Amharic language", tmp_path / "x.json")
    extension = extend.extend_vocabulary(base_vocab, AMHARIC, "es-419", tmp_path / "region.json")  # one code rule
    assert extension.language_token == "[es]"


def test_read_transcripts(tiny_dataset, tmp_path):
    texts = read_transcripts(tiny_dataset.train_csv)
    assert len(texts) == 8 and all(texts)
    bad = tmp_path / "bad.csv"
    bad.write_text("audio|words\nx.wav|hello\n", encoding="utf-8")
    with pytest.raises(VocabError, match=r"bad\.csv"):
        read_transcripts(bad)


# --- the tokenizer ----------------------------------------------------------------------------------------------


def test_tokenizer_accepts_a_language_coqui_does_not_know(base_vocab, amharic):
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

    with pytest.raises(NotImplementedError):
        VoiceBpeTokenizer(amharic.path).encode(AMHARIC[0], "am")
    tokenizer = make_tokenizer(amharic.path)
    assert tokenizer.encode(AMHARIC[0], "am")
    assert tokenizer.char_limits["am"] == 250 and tokenizer.char_limits["ja"] == 71  # Xtts.inference indexes these
    assert tokenizer.preprocess_text("  ሰላም   ነው\tHELLO  Ünïcode\u0301 ", "am") == "ሰላም ነው hello ünïcodé"
    assert tokenizer.preprocess_text(ENGLISH.upper(), "en") == VoiceBpeTokenizer().preprocess_text(ENGLISH, "en")
    with pytest.raises(VocabError, match=r"\[am\]"):  # the base vocabulary has no [am] token yet
        make_tokenizer(base_vocab).encode(AMHARIC[0], "am")


def test_tokenizer_is_picklable_and_module_import_is_light(amharic):
    import pickle

    tokenizer = make_tokenizer(amharic.path)
    clone = pickle.loads(pickle.dumps(tokenizer))
    assert type(clone) is XttsTokenizer
    assert clone.encode(AMHARIC[1], "am") == tokenizer.encode(AMHARIC[1], "am")
    probe = ("import sys, utils.vocabulary.tokenizer, utils.vocabulary.extend; "
             "assert 'TTS' not in sys.modules and 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", probe], cwd=ROOT, check=True)


def test_preview(base_vocab, amharic):
    preview = extend.preview_extension(base_vocab, amharic.path, AMHARIC, "am", n=2)
    assert preview.new_tokens == amharic.added_tokens
    assert preview.rows_added == preview.new_rows - preview.old_rows == len(amharic.added_tokens)
    assert len(preview.examples) == 2
    assert "[UNK]" in preview.examples[0].before and "[UNK]" not in preview.examples[0].after
    assert preview.examples[0].after[0] == "[am]"
    json.dumps(preview.to_dict(), ensure_ascii=False)


# --- bad vocabulary files ---------------------------------------------------------------------------------------


def _bad_vocab(kind: str, base_vocab: Path, folder: Path) -> Path:
    path = folder / f"bad_{kind}.json"
    if kind == "not_json":
        path.write_text("this is not json {", encoding="utf-8")
        return path
    if kind == "not_tokenizer":
        path.write_text(json.dumps({"hello": 1}), encoding="utf-8")
        return path
    data = json.loads(base_vocab.read_text(encoding="utf-8"))
    if kind == "not_bpe":
        data["model"] = {"type": "WordLevel", "vocab": data["model"]["vocab"], "unk_token": "[UNK]"}
    else:
        token = {"missing_start": "[START]", "missing_stop": "[STOP]", "missing_space": "[SPACE]"}[kind]
        data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] != token]
        data["model"]["vocab"].pop(token, None)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("not_json", "not JSON"),
        ("not_tokenizer", "not a tokenizer file"),
        ("not_bpe", "not a BPE tokenizer"),
        ("missing_start", r"lacks \[START\]"),
        ("missing_stop", r"lacks \[STOP\]"),
        ("missing_space", r"lacks \[SPACE\]"),
    ],
)
def test_bad_vocab_files_are_refused_naming_the_file(kind, says, base_vocab, base_state, tmp_path):
    bad = _bad_vocab(kind, base_vocab, tmp_path)
    for call in (
        lambda: load_vocab(bad),
        lambda: make_tokenizer(bad),
        lambda: extend.extend_vocabulary(bad, AMHARIC, "am", tmp_path / "out.json"),
        lambda: expand.expand_text_rows(base_state, bad, base_vocab),
    ):
        with pytest.raises(VocabError, match=says) as raised:
            call()
        assert str(bad) in str(raised.value)


# --- expanding the model's text rows ----------------------------------------------------------------------------

TEXT_KEYS = ("text_embedding.weight", "text_head.weight", "text_head.bias")


def _permuted_vocab(base_vocab: Path, path: Path) -> Path:
    """The same tokens as `base_vocab` with every id except [STOP] and [UNK] reversed."""
    data = json.loads(base_vocab.read_text(encoding="utf-8"))
    ids = ids_of(base_vocab)
    data["model"]["vocab"] = ids  # added-only tokens ([START]) too, or the library renumbers them on load
    top = max(ids.values())
    remap = {i: (i if i < 2 else top + 2 - i) for i in ids.values()}
    data["model"]["vocab"] = {t: remap[i] for t, i in data["model"]["vocab"].items()}
    for added in data["added_tokens"]:
        added["id"] = remap[added["id"]]
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_rows_are_copied_by_token_string_when_ids_differ(base_vocab, tmp_path):
    permuted = _permuted_vocab(base_vocab, tmp_path / "permuted.json")
    old, new = ids_of(base_vocab), ids_of(permuted)
    assert old.keys() == new.keys() and sum(old[t] != new[t] for t in old) > 100
    rows = max(old.values()) + 1
    gen = torch.Generator().manual_seed(0)
    state = {
        "xtts.gpt.text_embedding.weight": torch.randn(rows, 8, generator=gen),
        "xtts.gpt.text_head.weight": torch.randn(rows, 8, generator=gen),
        "xtts.gpt.text_head.bias": torch.randn(rows, generator=gen),
        "xtts.gpt.other.weight": torch.randn(3, 3, generator=gen),
    }
    new_state, report = expand.expand_text_rows(state, base_vocab, permuted)
    assert report.rows_copied == rows and report.rows_initialised == 0 and report.rows_moved > 100
    assert new_state["xtts.gpt.other.weight"] is state["xtts.gpt.other.weight"]
    for suffix in TEXT_KEYS:
        key = "xtts.gpt." + suffix
        for token, old_id in old.items():
            assert torch.equal(new_state[key][new[token]], state[key][old_id]), (key, token)


def test_new_rows_initialised_from_pieces_and_not_zero(base_vocab, amharic, base_state):
    new_state, report = expand.expand_text_rows(base_state, base_vocab, amharic.path)
    old, new = ids_of(base_vocab), ids_of(Path(amharic.path))
    assert report.keys == ["gpt." + s for s in TEXT_KEYS]
    assert (report.old_rows, report.new_rows) == (amharic.old_text_tokens, amharic.new_text_tokens)
    assert report.rows_copied == len(old) and report.rows_moved == 0
    assert report.rows_initialised == len(amharic.added_tokens) and report.initialised_from_languages == 1
    for suffix in TEXT_KEYS:
        key = "gpt." + suffix
        before, after = base_state[key], new_state[key]
        assert after.shape[0] == amharic.new_text_tokens and after.dtype == before.dtype
        assert torch.equal(after[: report.old_rows], before)
        added = after[report.old_rows :]
        assert torch.isfinite(added).all() and (added != 0).any(dim=-1 if added.dim() > 1 else 0).all()
        languages = [i for t, i in old.items() if t.startswith("[") and t[1:3].islower()]
        assert torch.allclose(after[new["[am]"]], before[languages].mean(dim=0), atol=1e-6)
    again, _ = expand.expand_text_rows(base_state, base_vocab, amharic.path)
    assert all(torch.equal(again[k], new_state[k]) for k in report.keys)
    assert base_state["gpt.text_embedding.weight"].shape[0] == report.old_rows  # input untouched


def test_piece_initialisation_uses_the_old_tokenizers_split(base_vocab, base_state, tmp_path):
    data = json.loads(base_vocab.read_text(encoding="utf-8"))
    data["model"]["vocab"] = ids_of(base_vocab)  # pin [START], which the file lists only as an added token
    top = max(data["model"]["vocab"].values())
    data["model"]["vocab"]["quickly"] = top + 1  # a new token the old vocabulary splits into known pieces
    path = tmp_path / "quickly.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    new_state, report = expand.expand_text_rows(base_state, base_vocab, path)
    assert report.initialised_from_pieces == 1
    old_tok = load_vocab(base_vocab)
    pieces = [t.id for t in old_tok.model.tokenize("quickly")]
    emb = base_state["gpt.text_embedding.weight"]
    assert torch.allclose(new_state["gpt.text_embedding.weight"][top + 1], emb[pieces].mean(dim=0), atol=1e-6)


def test_mismatched_row_count_is_refused(base_vocab, amharic, base_state):
    with pytest.raises(VocabError, match="rows but vocabulary"):
        expand.expand_text_rows(base_state, amharic.path, base_vocab)


def test_expand_base_checkpoint(tiny_base, base_vocab, amharic, tmp_path):
    source = tiny_base / "model.pth"
    before = sha256_file(source)
    out = expand.expand_base_checkpoint(source, base_vocab, amharic.path, tmp_path / "run")
    assert out == tmp_path / "run" / expand.EXPANDED_BASE_NAME
    assert sha256_file(source) == before

    data = torch.load(out, weights_only=True, map_location="cpu")
    assert data[KEY_MODEL]["gpt.text_embedding.weight"].shape[0] == amharic.new_text_tokens
    assert data[KEY_MODEL]["gpt.text_head.bias"].shape[0] == amharic.new_text_tokens
    assert data[KEY_VOCAB_SHA] == amharic.new_sha256
    assert isinstance(data[KEY_CONFIG], dict)
    assert data[KEY_CONFIG]["model_args"]["gpt_number_text_tokens"] == amharic.new_text_tokens

    manifest = json.loads((tmp_path / "run" / expand.EXPANDED_MANIFEST_NAME).read_text())
    assert manifest["source"] == str(source.resolve())
    assert manifest["old_vocab_sha256"] == amharic.old_sha256 and manifest["new_vocab_sha256"] == amharic.new_sha256
    assert (manifest["old_rows"], manifest["new_rows"]) == (amharic.old_text_tokens, amharic.new_text_tokens)
    assert manifest["rows_copied"] + manifest["rows_initialised"] == manifest["new_rows"]

    assert classify_checkpoint(source, amharic.path).mode == "extend_vocab"
    assert classify_checkpoint(out, amharic.path).mode == "base"


# --- CLI --------------------------------------------------------------------------------------------------------


def test_cli_end_to_end(base_vocab, amharic, tmp_path):
    train_csv = write_csv(tmp_path / "metadata_train.csv", AMHARIC[:6])
    eval_csv = write_csv(tmp_path / "metadata_eval.csv", AMHARIC[6:])
    out = tmp_path / "vocab_am.json"
    cmd = [sys.executable, "utils/vocab.py", "--base_vocab", str(base_vocab), "--train_csv", str(train_csv)]
    cmd += ["--eval_csv", str(eval_csv), "--language", "am", "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "language token [am]: added" in lines
    first, last = amharic.old_text_tokens, amharic.new_text_tokens - 1
    assert f"tokens added: {len(amharic.added_tokens)} (ids {first}-{last})" in lines
    assert f"written: {out}" in lines
    assert out.read_bytes() == Path(amharic.path).read_bytes()  # same input, another process: same file

    missing = subprocess.run(
        [*cmd[:5], str(tmp_path / "nope.csv"), "--language", "am", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1
    assert missing.stderr.strip().count("\n") == 0 and "nope.csv" in missing.stderr
