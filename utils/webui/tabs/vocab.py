"""The Vocabulary tab: extend the base vocabulary for a new language and show what the extension adds."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import gradio as gr
import pandas as pd

from utils.webui.context import ANTICIPATED, WebUIContext, error_text
from utils.xtts import TRAIN_CSV, VOCAB_FILE

EXAMPLE_COLUMNS = ["text", "tokens before", "tokens after"]
VOCAB_SUBDIR = "vocab"  # <output>/vocab/<name>.json: the only place this tab writes
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass
class VocabTab:
    result_path: gr.Textbox  # the vocabulary written; the Train tab's `vocab` box follows it


def build(ctx: WebUIContext) -> VocabTab:
    base_vocab = ctx.base_vocab()
    language = ctx.dataset_language("")
    with gr.Tab("Vocabulary", id="vocabulary"):
        gr.Markdown("For a language XTTS-v2 does not know, extend its vocabulary with the dataset's text: every "
                    "existing token keeps its id, the new script's characters and frequent pairs are added, and "
                    "training expands the model's text rows once. Languages it knows need nothing here.")
        with gr.Row():
            base = gr.Textbox(str(base_vocab or ctx.config.base_dir / VOCAB_FILE), label="Base vocabulary")
            csv = gr.Textbox(str(ctx.config.dataset_dir / TRAIN_CSV), label="Dataset CSV (its text)")
            lang = gr.Textbox(language, label="Language code", info="am, sw, ...")
        with gr.Row():
            out = gr.Textbox(f"vocab_{language or 'new'}", label="Vocabulary name", scale=3,
                             info=f"written as {ctx.config.output / VOCAB_SUBDIR}/<name>.json", elem_id="vocab-name")
            replace = gr.Checkbox(False, label="Replace the vocabulary of that name if it exists",
                                  elem_id="vocab-replace")
        build_button = gr.Button("Build the extended vocabulary", variant="primary")
        summary = gr.Markdown(elem_id="vocab-summary")
        tokens = gr.Textbox(label="New tokens", lines=3, interactive=False)
        examples = gr.Dataframe(pd.DataFrame(columns=EXAMPLE_COLUMNS), label="Example encodings", wrap=True)
        result = gr.Textbox(visible=False)
    lang.change(lambda code: f"vocab_{(code or 'new').strip()}", lang, out, api_visibility="private")
    build_button.click(partial(extend, ctx), [base, csv, lang, out, replace], [summary, tokens, examples, result],
                       api_visibility="private")
    return VocabTab(result)


def vocab_target(ctx: WebUIContext, name: str | None, replace: bool) -> Path:
    """<output>/vocab/<name>.json for a plain name; refused when it exists and `replace` was not asked for."""
    name = (name or "").strip().removesuffix(".json")
    if not NAME.fullmatch(name):
        raise ValueError(f"Vocabulary name '{name}' must be a plain name (letters, digits, '_', '-', '.'; no '/'), "
                         f"e.g. vocab_am: it is written as {ctx.config.output / VOCAB_SUBDIR}/<name>.json.")
    target = ctx.config.output / VOCAB_SUBDIR / f"{name}.json"
    ctx.policy.check(target, "Output vocabulary")  # the vocab folder may be a link out of the work folders
    if target.is_symlink() or (target.exists() and not target.is_file()):
        raise ValueError(f"{target} is not a vocabulary file (a link or a folder): choose another name.")
    if target.exists() and not replace:
        raise ValueError(f"Vocabulary {target} already exists: tick 'Replace' to overwrite it, or choose another "
                         f"name.")
    return target


def extend(ctx: WebUIContext, base: str | None, csv: str | None, language: str | None, out: str | None,
           replace: bool | None = False):
    """(summary, new tokens, examples, written path): build the extended vocabulary into <output>/vocab/<out>.json
    and preview it."""
    from utils.vocabulary.extend import extend_vocabulary, preview_extension
    from utils.vocabulary.tokenizer import read_transcripts

    empty = pd.DataFrame(columns=EXAMPLE_COLUMNS)
    try:
        language = (language or "").strip()
        if not language:
            raise ValueError("No language code given: type the dataset's language (for example am).")
        base_path = ctx.policy.check(base or "", "Base vocabulary")
        out_path = vocab_target(ctx, out, bool(replace))
        texts = read_transcripts(ctx.policy.check(csv or "", "Dataset CSV"))
        ext = extend_vocabulary(base_path, texts, language, out_path)
        preview = preview_extension(base_path, out_path, texts, language)
    except ANTICIPATED as e:
        return error_text(e), "", empty, gr.skip()
    summary = (f"Wrote `{ext.path}`: {len(ext.added_tokens)} new token(s)"
               f"{' including ' + ext.language_token if ext.language_token_added else ''}; text rows "
               f"{preview.old_rows} -> {preview.new_rows} (+{preview.rows_added}). The Train tab now uses it "
               f"(box `vocab`); choose the base model or a weights-only file there to extend it.")
    rows = [(e.text, " ".join(e.before), " ".join(e.after)) for e in preview.examples]
    return summary, " ".join(preview.new_tokens), pd.DataFrame(rows, columns=EXAMPLE_COLUMNS), str(Path(ext.path))
