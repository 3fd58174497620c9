"""The Vocabulary tab: extend the base vocabulary for a new language and show what the extension adds."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import gradio as gr
import pandas as pd

from utils.webui.context import ANTICIPATED, WebUIContext, error_text
from utils.xtts import TRAIN_CSV, VOCAB_FILE

EXAMPLE_COLUMNS = ["text", "tokens before", "tokens after"]


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
        out = gr.Textbox(str(ctx.config.output / "vocab" / f"vocab_{language or 'new'}.json"),
                         label="Write the extended vocabulary to")
        build_button = gr.Button("Build the extended vocabulary", variant="primary")
        summary = gr.Markdown(elem_id="vocab-summary")
        tokens = gr.Textbox(label="New tokens", lines=3, interactive=False)
        examples = gr.Dataframe(pd.DataFrame(columns=EXAMPLE_COLUMNS), label="Example encodings", wrap=True)
        result = gr.Textbox(visible=False)
    lang.change(lambda code: str(ctx.config.output / "vocab" / f"vocab_{(code or 'new').strip()}.json"), lang, out,
                api_visibility="private")
    build_button.click(partial(extend, ctx), [base, csv, lang, out], [summary, tokens, examples, result],
                       api_visibility="private")
    return VocabTab(result)


def extend(ctx: WebUIContext, base: str | None, csv: str | None, language: str | None, out: str | None):
    """(summary, new tokens, examples, written path): build the extended vocabulary and preview it."""
    from utils.vocabulary.extend import extend_vocabulary, preview_extension
    from utils.vocabulary.tokenizer import read_transcripts

    empty = pd.DataFrame(columns=EXAMPLE_COLUMNS)
    try:
        language = (language or "").strip()
        if not language:
            raise ValueError("No language code given: type the dataset's language (for example am).")
        base_path = ctx.policy.check(base or "", "Base vocabulary")
        out_path = ctx.policy.check(out or "", "Output vocabulary")
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
